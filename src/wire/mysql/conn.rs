//! One MySQL/MariaDB connection: the handshake (greeting, login, auth exchanges, TLS
//! upgrade), then client commands matched in order with the server's answers, each answer
//! read packet by packet (OK, ERR, result sets, prepare answers) from a queue of commands.

use super::packet::{self, Framer, Packet, Reader};
use super::transaction::{Command, Missing, Session, Transaction};
use crate::wire::sql::{self, Dialect};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::Arc;

mod answer;
use answer::Step;

/// Most prepared statements remembered per connection (a client that never closes them).
const MAX_PREPARED: usize = 1024;

/// Bounds and choices of one connection's decoding.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest packet payload kept whole; longer ones are read up to this, the rest counted.
    pub max_message_bytes: usize,
    /// Longest statement text reported.
    pub max_statement_bytes: usize,
    /// Most commands waiting for their answers (a pipelining client).
    pub max_pending: usize,
    /// Report literals as sent instead of `?`.
    pub keep_literals: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 64 * 1024,
            max_statement_bytes: 8 * 1024,
            max_pending: 1024,
            keep_literals: false,
        }
    }
}

/// What happened on a connection that the analyzer counts.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ConnStats {
    /// Packets that made no sense where they came: that direction waits for a packet it can
    /// resynchronise on.
    pub parse_errors: u64,
    /// Stream gaps.
    pub gaps: u64,
    /// Connections that went over to TLS (not decoded).
    pub encrypted: u64,
    /// Commands reported without their answer because the queue grew past `max_pending`.
    pub overflowed: u64,
}

pub type Finished = Vec<Transaction>;

#[derive(Debug, Clone, Copy, PartialEq)]
enum SideState {
    /// Framing known: every packet is read.
    Packets,
    /// Framing lost (a gap, the middle of a connection, nonsense): the next chunk that starts
    /// like a packet this side would send in sync is taken as the way back.
    Resync,
    /// TLS after an SSLRequest, or replication: not ours to read.
    Done,
}

#[derive(Debug)]
struct Side {
    framer: Framer,
    state: SideState,
    /// Bytes not yet counted in a transaction.
    bytes: u64,
}

impl Side {
    fn new() -> Side {
        Side {
            framer: Framer::default(),
            state: SideState::Resync,
            bytes: 0,
        }
    }
}

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Before the server's greeting was seen (or a capture that started later).
    Start,
    /// The greeting was seen; the client's login comes next.
    Greeted,
    /// The login was sent: auth switch and more-data packets until OK or ERR.
    Auth,
    Commands,
}

/// How far the answer to a command has got.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    /// Nothing yet, or the next result of a multi-result answer.
    First,
    /// Column definitions still to come.
    Columns(u64),
    /// Column definitions read: the EOF that ends them (without CLIENT_DEPRECATE_EOF) or rows.
    AfterColumns,
    Rows,
    /// A prepare's parameter and column definitions still to come, then an EOF after each
    /// non-empty block unless CLIENT_DEPRECATE_EOF.
    PrepareDefs {
        params: u16,
        columns: u16,
    },
    PrepareEof {
        columns: u16,
    },
    /// COM_FIELD_LIST: column definitions until an EOF.
    FieldList,
}

/// A command waiting for (the rest of) its answer.
#[derive(Debug)]
struct Pending {
    tx: Box<Transaction>,
    answer: Answer,
    /// The text of a statement being prepared (kept by id once the server gives one).
    prepare_text: Option<(Arc<str>, bool)>,
    /// The command was already reported unanswered (the queue overflowed, or it waited past
    /// the transaction timeout): its place is kept so that its answer, read by the command's
    /// shape, is reported alone and not given to the next command.
    reported: bool,
}

#[derive(Debug)]
pub struct Conn {
    client: Side,
    server: Side,
    phase: Phase,
    session: Arc<Session>,
    /// Capabilities announced by the server and, after the login, in force.
    capabilities: u32,
    /// Whether the login was seen (so `capabilities` is what both ends agreed).
    login_seen: bool,
    /// The refused login is reported: start and bytes of the handshake.
    login_start: Option<i64>,
    pending: VecDeque<Pending>,
    /// How many of the oldest `pending` are `reported` (they are always at the front).
    reported: usize,
    statements: FxHashMap<u32, (Arc<str>, bool)>,
    /// The last statement prepared (MariaDB runs statement id 0xffffffff as it).
    last_prepared: Option<u32>,
    last_ns: i64,
}

impl Default for Conn {
    fn default() -> Self {
        Conn::new()
    }
}

impl Conn {
    pub fn new() -> Conn {
        Conn {
            client: Side::new(),
            server: Side::new(),
            phase: Phase::Start,
            session: Arc::new(Session::new()),
            capabilities: 0,
            login_seen: false,
            login_start: None,
            pending: VecDeque::new(),
            reported: 0,
            statements: FxHashMap::default(),
            last_prepared: None,
            last_ns: i64::MIN,
        }
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Commands waiting for an answer (bounded by `max_pending`), and the places kept for
    /// answers to commands already reported (bounded by `max_pending` too).
    pub fn pending(&self) -> (usize, usize) {
        (self.pending.len() - self.reported, self.reported)
    }

    /// Bytes buffered for incomplete packets, both directions.
    pub fn buffered(&self) -> usize {
        self.client.framer.buffered() + self.server.framer.buffered()
    }

    pub fn client_data(
        &mut self,
        data: &[u8],
        ts: i64,
        l: &Limits,
        st: &mut ConnStats,
        out: &mut Finished,
    ) {
        self.last_ns = self.last_ns.max(ts);
        match self.client.state {
            SideState::Done => return,
            SideState::Resync if !self.client_resyncs(data) => return,
            _ => {}
        }
        self.client.state = SideState::Packets;
        let mut framer = std::mem::take(&mut self.client.framer);
        framer.feed(data, l.max_message_bytes, &mut |p| {
            if self.client.state == SideState::Packets {
                self.client_packet(p, ts, l, st, out);
            }
        });
        if self.client.state == SideState::Packets {
            self.client.framer = framer;
        }
    }

    pub fn server_data(
        &mut self,
        data: &[u8],
        ts: i64,
        l: &Limits,
        st: &mut ConnStats,
        out: &mut Finished,
    ) {
        self.last_ns = self.last_ns.max(ts);
        match self.server.state {
            SideState::Done => return,
            SideState::Resync if !self.server_resyncs(data) => return,
            _ => {}
        }
        self.server.state = SideState::Packets;
        let mut framer = std::mem::take(&mut self.server.framer);
        framer.feed(data, l.max_message_bytes, &mut |p| {
            if self.server.state == SideState::Packets {
                self.server_packet(p, ts, st, out);
            }
        });
        if self.server.state == SideState::Packets {
            self.server.framer = framer;
        }
    }

    /// Whether a chunk of client bytes, met while out of step, starts with a packet the
    /// client sends in step: a command (sequence 0, a known command byte), or the login.
    fn client_resyncs(&self, data: &[u8]) -> bool {
        let Some((len, seq, first)) = header(data) else {
            return false;
        };
        match seq {
            0 => len > 0 && is_command(first) && self.phase != Phase::Greeted,
            1 => len >= 32 && matches!(self.phase, Phase::Start | Phase::Greeted),
            _ => false,
        }
    }

    /// Whether a chunk of server bytes, met while out of step, starts an answer: the
    /// greeting, or the first packet (sequence 1) of the answer to a command.
    fn server_resyncs(&self, data: &[u8]) -> bool {
        let Some((len, seq, first)) = header(data) else {
            return false;
        };
        match seq {
            0 => data.len() >= 6 && packet::looks_like_greeting(&data[4..]),
            1 => len > 0 && matches!(first, 0x00 | 0xff | 0xfb | 0x01..=0xfa),
            _ => false,
        }
    }

    /// `n` bytes of the client's stream were never captured: back to resynchronising.
    pub fn client_gap(&mut self, _n: u32, st: &mut ConnStats) {
        if self.client.state != SideState::Done {
            st.gaps += 1;
            self.client.state = SideState::Resync;
            self.client.framer = Framer::default();
            // What waits may be missing part of its request (LOCAL INFILE data).
            for p in &mut self.pending {
                p.tx.gap = true;
            }
        }
    }

    /// `n` bytes of the server's stream were never captured: every command waiting is
    /// reported without its answer, and the server side resynchronises.
    pub fn server_gap(&mut self, _n: u32, st: &mut ConnStats, out: &mut Finished) {
        if self.server.state != SideState::Done {
            st.gaps += 1;
            self.server.state = SideState::Resync;
            self.server.framer = Framer::default();
            self.report_pending(self.last_ns, true, out);
        }
    }

    /// The connection ended (FIN, RST, idle, end of capture): what waits is reported.
    pub fn close(&mut self, ts: i64, out: &mut Finished) {
        self.last_ns = self.last_ns.max(ts);
        self.report_pending(ts, false, out);
        self.client.state = SideState::Done;
        self.server.state = SideState::Done;
        self.client.framer = Framer::default();
        self.server.framer = Framer::default();
    }

    /// Whether a command not yet reported has waited since before `deadline`.
    pub fn expires(&self, deadline: i64) -> bool {
        self.pending
            .get(self.reported)
            .is_some_and(|p| p.tx.start_ns < deadline)
    }

    /// Reports the commands that have waited since before `deadline` as unanswered. Their
    /// places stay: a server answers in order, so a late answer is theirs, not the next's.
    pub fn expire(&mut self, deadline: i64, l: &Limits, out: &mut Finished) {
        while self.expires(deadline) {
            self.report_oldest(l, out);
        }
    }

    /// The oldest command not yet reported is reported unanswered and its place kept for its
    /// answer. Past `max_pending` places kept, the answers can no longer be followed: what
    /// waits is reported, the server's side is no longer read and every command from then on
    /// is reported as it comes (a capture of the client's side only ends up here).
    fn report_oldest(&mut self, l: &Limits, out: &mut Finished) {
        if self.reported >= l.max_pending {
            self.report_pending(self.last_ns, false, out);
            self.server.state = SideState::Done;
            self.server.framer = Framer::default();
            return;
        }
        let Some(p) = self.pending.get_mut(self.reported) else {
            return;
        };
        let mut alone = Transaction::new(self.session.clone(), p.tx.command, i64::MIN);
        alone.missing = Some(Missing::Request);
        alone.late = true;
        alone.schema = p.tx.schema.clone();
        alone.statement_id = p.tx.statement_id;
        let tx = std::mem::replace(&mut p.tx, Box::new(alone));
        p.reported = true;
        self.reported += 1;
        unanswered(tx, self.last_ns, false, out);
    }

    fn report_pending(&mut self, ts: i64, gap: bool, out: &mut Finished) {
        for p in self.pending.drain(..) {
            if !p.reported {
                unanswered(p.tx, ts, gap, out);
            }
        }
        self.reported = 0;
        // A login whose answer was not seen is not reported: only refusals are.
        self.login_start = None;
    }

    /// A packet made no sense where it came: that side resynchronises; on the server's, the
    /// commands waiting are reported without their answer (what came was not one).
    fn lost(&mut self, client: bool, st: &mut ConnStats, out: &mut Finished) {
        st.parse_errors += 1;
        if client {
            self.client.state = SideState::Resync;
        } else {
            self.server.state = SideState::Resync;
            self.report_pending(self.last_ns, false, out);
        }
    }

    fn done(&mut self) {
        self.client.state = SideState::Done;
        self.server.state = SideState::Done;
        self.client.framer = Framer::default();
        self.server.framer = Framer::default();
        self.pending.clear();
        self.reported = 0;
    }

    /// The statement text as reported: redacted (unless configured otherwise) and capped.
    fn statement(&self, raw: &[u8], truncated: bool, l: &Limits) -> (Arc<str>, bool) {
        let text = String::from_utf8_lossy(raw);
        let text = text.trim();
        let mut s = if l.keep_literals {
            text.to_owned()
        } else {
            sql::redact(Dialect::Mysql, text)
        };
        let mut cut = truncated;
        if s.len() > l.max_statement_bytes {
            let mut at = l.max_statement_bytes;
            while !s.is_char_boundary(at) {
                at -= 1;
            }
            s.truncate(at);
            cut = true;
        }
        (Arc::from(s), cut)
    }

    fn client_packet(
        &mut self,
        p: Packet<'_>,
        ts: i64,
        l: &Limits,
        st: &mut ConnStats,
        out: &mut Finished,
    ) {
        self.client.bytes += p.wire_len;
        if p.seq != 0 {
            match self.phase {
                Phase::Start | Phase::Greeted if p.seq == 1 => self.login(p, ts, st, out),
                // Auth data, LOCAL INFILE contents: part of what is waiting; never read.
                _ => {
                    if let Some(w) = self.pending.back_mut() {
                        w.tx.req_bytes += std::mem::take(&mut self.client.bytes);
                    }
                }
            }
            return;
        }
        let Some(&cmd) = p.body.first() else {
            return self.lost(true, st, out);
        };
        if !is_command(cmd) {
            return self.lost(true, st, out);
        }
        self.phase = Phase::Commands;
        let body = &p.body[1..];
        let truncated = p.len > p.body.len() as u64;
        let command = Command::from_byte(cmd);
        let mut tx = Box::new(Transaction::new(self.session.clone(), command, ts));
        let mut prepare_text = None;
        match cmd {
            // COM_QUIT, COM_STMT_SEND_LONG_DATA: no answer.
            0x01 | 0x18 => {
                self.client.bytes = 0;
                return;
            }
            0x19 => {
                // COM_STMT_CLOSE: no answer; the statement is forgotten.
                if let Some(id) = Reader(body).u32() {
                    self.statements.remove(&id);
                }
                self.client.bytes = 0;
                return;
            }
            // Replication streams events from here on: not decoded.
            0x12 | 0x15 | 0x1e => return self.done(),
            0x03 => {
                let text = self.query_text(body);
                let (s, cut) = self.statement(text, truncated, l);
                tx.operation = sql::first_keyword(Dialect::Mysql, &s);
                tx.statement = Some(s);
                tx.statement_truncated = cut;
            }
            0x16 => {
                let s = self.statement(body, truncated, l);
                tx.statement = Some(s.0.clone());
                tx.statement_truncated = s.1;
                prepare_text = Some(s);
            }
            0x17 | 0xfa | 0x1c | 0x1a => {
                let id = Reader(body).u32().map(|id| match (id, self.last_prepared) {
                    (u32::MAX, Some(last)) => last,
                    _ => id,
                });
                tx.statement_id = id;
                if let Some((s, cut)) = id.and_then(|id| self.statements.get(&id)) {
                    if cmd != 0x1a && cmd != 0x1c {
                        tx.operation = sql::first_keyword(Dialect::Mysql, s);
                    }
                    tx.statement = Some(s.clone());
                    tx.statement_truncated = *cut;
                }
            }
            0x02 => tx.schema = Some(packet::text(body, 256)),
            0x11 => {
                // COM_CHANGE_USER: the new user's name; the auth data after it is not read.
                let user = packet::text(Reader(body).cstr(), 256);
                let mut s = (*self.session).clone();
                s.user = Some(user);
                self.session = Arc::new(s);
                tx.session = self.session.clone();
            }
            _ => {}
        }
        tx.req_bytes = std::mem::take(&mut self.client.bytes);
        let answer = match cmd {
            0x04 => Answer::FieldList,
            _ => Answer::First,
        };
        self.push(
            Pending {
                tx,
                answer,
                prepare_text,
                reported: false,
            },
            l,
            st,
            out,
        );
    }

    /// A COM_QUERY's text, past the query attributes a MySQL 8 client may send first.
    fn query_text<'a>(&self, body: &'a [u8]) -> &'a [u8] {
        if self.login_seen && self.capabilities & packet::CLIENT_QUERY_ATTRIBUTES != 0 {
            let mut r = Reader(body);
            return match (r.lenenc(), r.lenenc()) {
                (Some(0), Some(_)) => r.0,
                // Attributes with values: not worth decoding for the statement.
                _ => &[],
            };
        }
        body
    }

    /// The client's first packet (sequence 1): an SSLRequest, or the login.
    fn login(&mut self, p: Packet<'_>, ts: i64, st: &mut ConnStats, out: &mut Finished) {
        let caps = Reader(p.body).u32().unwrap_or(0);
        if p.len == 32 && caps & packet::CLIENT_SSL != 0 {
            // The rest is TLS (the login follows inside it).
            st.encrypted += 1;
            return self.done();
        }
        let Some(login) = packet::login(p.body) else {
            return self.lost(true, st, out);
        };
        self.capabilities = if self.phase == Phase::Greeted {
            self.capabilities & login.capabilities
        } else {
            login.capabilities
        };
        self.login_seen = true;
        let mut s = (*self.session).clone();
        s.user = login.user;
        s.database = login.database;
        s.attributes = login.attributes;
        self.session = Arc::new(s);
        self.phase = Phase::Auth;
        self.login_start = Some(ts);
    }

    fn push(&mut self, p: Pending, l: &Limits, st: &mut ConnStats, out: &mut Finished) {
        if self.server.state == SideState::Done {
            unanswered(p.tx, self.last_ns, false, out);
            return;
        }
        if self.pending.len() - self.reported >= l.max_pending {
            st.overflowed += 1;
            self.report_oldest(l, out);
            if self.server.state == SideState::Done {
                return unanswered(p.tx, self.last_ns, false, out);
            }
        }
        self.pending.push_back(p);
    }

    fn server_packet(&mut self, p: Packet<'_>, ts: i64, st: &mut ConnStats, out: &mut Finished) {
        self.server.bytes += p.wire_len;
        if p.seq == 0 && packet::looks_like_greeting(p.body) {
            if let Some(g) = packet::greeting(p.body) {
                let mut s = Session::new();
                if g.version.contains("MariaDB") {
                    s.system = "mariadb";
                }
                // MariaDB prefixes its version with "5.5.5-" for old clients.
                let v = g.version.strip_prefix("5.5.5-").unwrap_or(&g.version);
                s.server_version = Some(v.to_owned());
                s.connection_id = Some(g.connection_id);
                self.session = Arc::new(s);
                self.capabilities = g.capabilities;
                self.phase = Phase::Greeted;
                self.server.bytes = 0;
                self.client.bytes = 0;
                return;
            }
        }
        match self.phase {
            Phase::Greeted | Phase::Auth if p.seq > 0 || p.first() == Some(0xff) => {
                return self.auth_packet(p, ts, out)
            }
            Phase::Greeted | Phase::Auth | Phase::Start | Phase::Commands => {}
        }
        // Answers go to the oldest command waiting; one without a command (a capture that
        // started mid-connection) is reported as such.
        if self.pending.is_empty() {
            if p.seq != 1 {
                self.server.bytes = 0;
                return;
            }
            let mut tx = Box::new(Transaction::new(self.session.clone(), Command::Unknown, ts));
            tx.missing = Some(Missing::Request);
            self.pending.push_back(Pending {
                tx,
                answer: Answer::First,
                prepare_text: None,
                reported: false,
            });
        }
        if let Some(f) = self.pending.front_mut() {
            if f.reported && f.tx.start_ns == i64::MIN {
                // An answer reported alone starts with its first packet.
                f.tx.start_ns = ts;
            }
        }
        // A prepare answer that may still have had an EOF hands the packet on when it was
        // not one.
        for _ in 0..2 {
            match self.answer(&p, ts, out) {
                Step::Used => return,
                Step::Again => continue,
                Step::Lost => return self.lost(false, st, out),
            }
        }
    }

    /// Packets of the handshake after the login: auth switch requests and more data until
    /// OK (logged in) or ERR (refused, reported).
    fn auth_packet(&mut self, p: Packet<'_>, ts: i64, out: &mut Finished) {
        match p.first() {
            Some(0x00) => {
                self.phase = Phase::Commands;
                self.login_start = None;
                self.client.bytes = 0;
                self.server.bytes = 0;
            }
            Some(0xff) => {
                let mut tx = Transaction::new(self.session.clone(), Command::Connect, ts);
                tx.start_ns = self.login_start.take().unwrap_or(ts);
                tx.end_ns = ts;
                tx.req_bytes = std::mem::take(&mut self.client.bytes);
                tx.resp_bytes = std::mem::take(&mut self.server.bytes);
                tx.error = Some(packet::error(p.body));
                out.push(tx);
                self.phase = Phase::Commands;
            }
            // 0xfe: switch to another auth method; 0x01: more data for this one.
            _ => {}
        }
    }

    fn set_database(&mut self, db: String) {
        if self.session.database.as_deref() != Some(&db) {
            let mut s = (*self.session).clone();
            s.database = Some(db);
            self.session = Arc::new(s);
        }
    }

    fn remember(&mut self, id: u32, text: (Arc<str>, bool)) {
        if self.statements.len() >= MAX_PREPARED && !self.statements.contains_key(&id) {
            // Full: a statement prepared now is executed without its text.
            return;
        }
        self.statements.insert(id, text);
    }
}

/// A command reported without its answer.
fn unanswered(mut t: Box<Transaction>, ts: i64, gap: bool, out: &mut Finished) {
    if t.missing.is_none() {
        t.missing = Some(Missing::Response);
    }
    t.gap |= gap;
    // The time it was given up, not an answer's: the duration says how long it waited.
    t.end_ns = ts.max(t.start_ns);
    out.push(*t);
}

/// The 4-byte header at the start of `data`: (payload length, sequence id, first payload
/// byte).
fn header(data: &[u8]) -> Option<(usize, u8, u8)> {
    if data.len() < 5 {
        return None;
    }
    let len = u32::from_le_bytes([data[0], data[1], data[2], 0]) as usize;
    Some((len, data[3], data[4]))
}

/// Command bytes a client sends (COM_SLEEP, 0, is server-internal).
fn is_command(b: u8) -> bool {
    matches!(b, 0x01..=0x1f | 0xfa)
}

/// Whether a connection's first bytes are a server greeting: a packet with sequence 0 whose
/// length is the rest of the chunk or more, protocol version 10 and a version string.
pub fn looks_like_greeting(data: &[u8]) -> bool {
    matches!(header(data), Some((len, 0, 10)) if (20..1024).contains(&len))
        && data.len() >= 6
        && packet::looks_like_greeting(&data[4..])
}
