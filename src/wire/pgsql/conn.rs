//! One PostgreSQL connection: client and server messages (each direction in order) matched
//! through a queue of the answers the client's messages are waiting for, the way the server
//! answers them: in order, and after an error in the extended protocol, nothing until Sync.

use super::message::{self, Frame, Framer, Malformed, PgError};
use super::sql;
use super::transaction::{Missing, Protocol, Session, Transaction};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::Arc;

/// Bounds and choices of one connection's decoding.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest message body kept whole; longer ones are read up to this and the rest skipped.
    pub max_message_bytes: usize,
    /// Longest statement text reported.
    pub max_statement_bytes: usize,
    /// Most client messages waiting for their answers (a long pipeline).
    pub max_pending: usize,
    /// Most prepared statements and portals remembered per connection.
    pub max_prepared: usize,
    /// Report literals as sent instead of `?`.
    pub keep_literals: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 64 * 1024,
            max_statement_bytes: 8 * 1024,
            max_pending: 1024,
            max_prepared: 1024,
            keep_literals: false,
        }
    }
}

/// What happened on a connection that the analyzer counts.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ConnStats {
    /// Malformed messages: that direction is no longer decoded.
    pub parse_errors: u64,
    /// Stream gaps: that direction is no longer decoded.
    pub gaps: u64,
    /// Connections that went over to TLS or GSSAPI encryption (not decoded).
    pub encrypted: u64,
    /// Transactions reported as missing their answer because the pipeline grew past
    /// `max_pending`.
    pub overflowed: u64,
}

pub type Finished = Vec<Transaction>;

#[derive(Debug, Clone, Copy, PartialEq)]
enum SideState {
    Messages,
    /// TLS or GSSAPI after the server accepted the request: not ours to read.
    Encrypted,
    /// A gap or a malformed message: framing is lost for good.
    Lost,
}

#[derive(Debug)]
struct Side {
    framer: Framer,
    state: SideState,
    /// No byte seen yet: the first ones tell a connection's start from the middle of one.
    fresh: bool,
    /// Bytes not yet counted in a transaction.
    bytes: u64,
}

impl Default for Side {
    fn default() -> Self {
        Side {
            framer: Framer::default(),
            state: SideState::Messages,
            fresh: true,
            bytes: 0,
        }
    }
}

/// A simple Query's statements and how far the server's answers have got.
#[derive(Debug)]
struct QueryState {
    session: Arc<Session>,
    statements: Vec<(Arc<str>, bool)>,
    next: usize,
    /// When the current statement started (the Query, or the end of the statement before).
    start_ns: i64,
    req_bytes: u64,
    data_rows: u64,
    /// An error ended the Query: the statements after it did not run.
    failed: bool,
}

/// A client message waiting for its answer.
#[derive(Debug)]
enum Expect {
    Startup,
    Parse(Option<(Arc<str>, bool)>),
    Bind(Option<(Arc<str>, bool)>),
    Describe(Option<(Arc<str>, bool)>),
    Close,
    Execute(Box<Transaction>),
    FunctionCall(Box<Transaction>),
    Sync,
    Query(Box<QueryState>),
}

impl Expect {
    fn start_ns(&self) -> Option<i64> {
        match self {
            Expect::Execute(t) | Expect::FunctionCall(t) => Some(t.start_ns),
            Expect::Query(q) => Some(q.start_ns),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct Conn {
    client: Side,
    server: Side,
    session: Arc<Session>,
    pending: VecDeque<Expect>,
    /// ReadyForQuery messages still due to groups (the requests up to a Sync, or a Query)
    /// given up when the pipeline grew past `max_pending`: the server's messages up to each
    /// answer that group and are skipped, so that later answers meet their own requests.
    skip_ready: u64,
    /// The client is still sending a group given up: its requests are reported unanswered
    /// as they come, up to the Sync that ends it.
    giving_up: bool,
    /// Prepared statements by name ("" is the unnamed one), and the statement of each portal.
    statements: FxHashMap<Box<[u8]>, (Arc<str>, bool)>,
    portals: FxHashMap<Box<[u8]>, (Arc<str>, bool)>,
    /// Capture time of the last message, for the start of the oldest open request.
    last_ns: i64,
    /// A gap was seen: transactions still open carry the tag.
    gap: bool,
    /// Encrypted by TLS (an SSLRequest answered `S`, or a direct ClientHello): the rest is
    /// TLS's to read, once the driver has taken it (`take_tls`).
    tls: bool,
}

impl Default for Conn {
    fn default() -> Self {
        Conn::new()
    }
}

impl Conn {
    pub fn new() -> Conn {
        Conn {
            client: Side::default(),
            server: Side::default(),
            session: Arc::new(Session::default()),
            pending: VecDeque::new(),
            skip_ready: 0,
            giving_up: false,
            statements: FxHashMap::default(),
            portals: FxHashMap::default(),
            last_ns: i64::MIN,
            gap: false,
            tls: false,
        }
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Requests waiting for an answer (bounded by `max_pending`).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Bytes buffered for incomplete messages, both directions.
    pub fn buffered(&self) -> usize {
        self.client.framer.buf.len() + self.server.framer.buf.len()
    }

    /// Whether both directions turned to TLS/GSSAPI or were lost: nothing more to decode.
    pub fn done(&self) -> bool {
        self.client.state != SideState::Messages && self.server.state != SideState::Messages
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
        if self.client.state != SideState::Messages || data.is_empty() {
            return;
        }
        let first;
        let mut data = data;
        if self.client.fresh {
            // A connection seen from its start opens with an untyped packet (StartupMessage,
            // SSLRequest...): a length, then a version code no typed message begins like; or
            // with a TLS record (direct TLS, PostgreSQL 17). Typed messages never start with
            // 0 or 0x16, so only those wait for the eight bytes that tell.
            let mut head = std::mem::take(&mut self.client.framer.buf);
            head.extend_from_slice(data);
            if head.len() < 8 && matches!(head[0], 0 | 0x16) {
                self.client.framer.buf = head;
                return;
            }
            self.client.fresh = false;
            self.client.framer.untyped = looks_like_startup(&head) || is_tls_record(&head);
            first = head;
            data = &first;
        }
        if self.client.framer.untyped && self.client.framer.buf.is_empty() && is_tls_record(data) {
            // A ClientHello where a startup packet would be: encrypted from here.
            self.encrypted(st);
            self.tls = true;
            return;
        }
        let mut framer = std::mem::take(&mut self.client.framer);
        let r = framer.feed(
            data,
            true,
            l.max_message_bytes,
            &mut |fr: &mut Framer, m: Frame<'_>| self.client_message(fr, m, ts, l, st, out),
        );
        if self.client.state == SideState::Messages {
            self.client.framer = framer;
        }
        if let Err(e) = r {
            self.malformed(true, e, st);
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
        if self.server.state != SideState::Messages || data.is_empty() {
            return;
        }
        if self.server.fresh {
            self.server.fresh = false;
            // The one-byte answer to an SSLRequest whose request was not followed.
            if data.len() == 1 && matches!(data[0], b'S' | b'N' | b'G') {
                self.server.framer.untyped = true;
            }
        }
        let mut framer = std::mem::take(&mut self.server.framer);
        let r = framer.feed(
            data,
            false,
            l.max_message_bytes,
            &mut |_: &mut Framer, m: Frame<'_>| self.server_message(m, ts, st, out),
        );
        if self.server.state == SideState::Messages {
            self.server.framer = framer;
        }
        if let Err(e) = r {
            self.malformed(false, e, st);
        }
    }

    /// `n` bytes of the client's stream were never captured: its framing is lost.
    pub fn client_gap(&mut self, _n: u32, st: &mut ConnStats) {
        if self.client.state == SideState::Messages {
            st.gaps += 1;
            self.client.state = SideState::Lost;
            self.client.framer = Framer::default();
            self.gap = true;
        }
    }

    /// `n` bytes of the server's stream were never captured: its framing is lost, and every
    /// request waiting is reported without its answer.
    pub fn server_gap(&mut self, _n: u32, st: &mut ConnStats, out: &mut Finished) {
        if self.server.state == SideState::Messages {
            st.gaps += 1;
            self.server.state = SideState::Lost;
            self.server.framer = Framer::default();
            self.gap = true;
            self.report_pending(self.last_ns, out);
        }
    }

    /// The connection ended (FIN, RST, idle, end of capture): what waits is reported.
    pub fn close(&mut self, ts: i64, out: &mut Finished) {
        self.last_ns = self.last_ns.max(ts);
        self.report_pending(ts, out);
        self.client.state = SideState::Lost;
        self.server.state = SideState::Lost;
        self.client.framer = Framer::default();
        self.server.framer = Framer::default();
    }

    /// Whether a request has waited since before `deadline`.
    pub fn expires(&self, deadline: i64) -> bool {
        self.pending
            .iter()
            .find_map(Expect::start_ns)
            .is_some_and(|s| s < deadline)
    }

    /// Reports the requests that have waited since before `deadline` as unanswered, with
    /// what was queued before them. A group's Sync stays queued, so that the group's answers,
    /// if they come, are reported apart (`request_missing`) rather than given to the next
    /// group.
    pub fn expire(&mut self, deadline: i64, out: &mut Finished) {
        while let Some(i) = self
            .pending
            .iter()
            .position(|e| e.start_ns().is_some_and(|s| s < deadline))
        {
            for e in self.pending.drain(..=i) {
                unanswered(e, self.last_ns, false, out);
            }
        }
    }

    /// Gives up the oldest group of requests (up to a Sync, or one Query) for `max_pending`:
    /// they are reported unanswered and their answers skipped up to the group's
    /// ReadyForQuery. Answers are matched by their order within a group, so giving up one
    /// request alone would pair the rest with the wrong answers (the fifth Execute given the
    /// first one's CommandComplete). Returns how many requests were given up.
    fn give_up_group(&mut self, out: &mut Finished) -> u64 {
        self.skip_ready += 1;
        self.giving_up = true;
        let mut n = 0;
        while let Some(old) = self.pending.pop_front() {
            let ends = ends_group(&old);
            n += 1;
            unanswered(old, self.last_ns, self.gap, out);
            if ends {
                self.giving_up = false;
                break;
            }
        }
        n
    }

    fn report_pending(&mut self, ts: i64, out: &mut Finished) {
        let gap = self.gap;
        for e in self.pending.drain(..) {
            unanswered(e, ts, gap, out);
        }
    }

    /// Whether the connection turned TLS since the last call.
    pub fn take_tls(&mut self) -> bool {
        std::mem::take(&mut self.tls)
    }

    fn encrypted(&mut self, st: &mut ConnStats) {
        st.encrypted += 1;
        self.client.state = SideState::Encrypted;
        self.server.state = SideState::Encrypted;
        self.client.framer = Framer::default();
        self.server.framer = Framer::default();
        // The Startup that follows inside TLS is not ours to see.
        self.pending.clear();
    }

    fn malformed(&mut self, client: bool, _e: Malformed, st: &mut ConnStats) {
        st.parse_errors += 1;
        let side = if client {
            &mut self.client
        } else {
            &mut self.server
        };
        side.state = SideState::Lost;
        side.framer = Framer::default();
    }

    fn push(&mut self, e: Expect, l: &Limits, st: &mut ConnStats, out: &mut Finished) {
        if self.server.state != SideState::Messages {
            // No answer will be read: the request is reported as it is.
            unanswered(e, self.last_ns, self.gap, out);
            return;
        }
        if !self.giving_up && self.pending.len() >= l.max_pending {
            st.overflowed += self.give_up_group(out);
        }
        if self.giving_up {
            self.giving_up = !ends_group(&e);
            st.overflowed += 1;
            unanswered(e, self.last_ns, self.gap, out);
            return;
        }
        self.pending.push_back(e);
    }

    fn new_tx(
        &self,
        protocol: Protocol,
        statement: Option<(Arc<str>, bool)>,
        ts: i64,
    ) -> Transaction {
        let operation = statement
            .as_ref()
            .and_then(|s| sql::first_keyword(sql::Dialect::Postgres, &s.0));
        let (statement, statement_truncated) = match statement {
            Some((s, t)) => (Some(s), t),
            None => (None, false),
        };
        Transaction {
            session: self.session.clone(),
            statement,
            statement_truncated,
            operation,
            protocol,
            start_ns: ts,
            end_ns: ts,
            gap: self.gap,
            ..Default::default()
        }
    }

    /// The statement text as reported: redacted (unless configured otherwise) and capped.
    fn statement(&self, raw: &[u8], truncated: bool, l: &Limits) -> (Arc<str>, bool) {
        let text = String::from_utf8_lossy(raw);
        let text = text.trim();
        let mut s = if l.keep_literals {
            text.to_owned()
        } else {
            sql::redact(sql::Dialect::Postgres, text)
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

    fn client_message(
        &mut self,
        fr: &mut Framer,
        m: Frame<'_>,
        ts: i64,
        l: &Limits,
        st: &mut ConnStats,
        out: &mut Finished,
    ) {
        self.client.bytes += m.wire_len;
        let mut r = message::Reader(m.body);
        match m.kind {
            0 => match r.u32() {
                Some(message::PROTOCOL_3) => {
                    let s = message::startup_params(r.0);
                    self.session = Arc::new(Session {
                        user: s.user,
                        database: s.database,
                        application: s.application,
                    });
                    self.push(Expect::Startup, l, st, out);
                }
                Some(message::SSL_REQUEST | message::GSSENC_REQUEST) => {
                    // The server answers one byte; then the client sends TLS or a Startup.
                    fr.untyped = true;
                    self.server.framer.untyped = true;
                }
                Some(message::CANCEL_REQUEST) => {}
                _ => {
                    st.parse_errors += 1;
                    self.client.state = SideState::Lost;
                }
            },
            b'Q' => {
                let text = String::from_utf8_lossy(r.cstr()).into_owned();
                let mut statements: Vec<(Arc<str>, bool)> =
                    sql::split(sql::Dialect::Postgres, &text)
                        .into_iter()
                        .map(|s| self.statement(s.as_bytes(), false, l))
                        .collect();
                if statements.is_empty() {
                    statements.push((Arc::from(""), false));
                }
                if m.truncated {
                    if let Some(last) = statements.last_mut() {
                        last.1 = true;
                    }
                }
                let req_bytes = std::mem::take(&mut self.client.bytes);
                let q = QueryState {
                    session: self.session.clone(),
                    statements,
                    next: 0,
                    start_ns: ts,
                    req_bytes,
                    data_rows: 0,
                    failed: false,
                };
                self.push(Expect::Query(Box::new(q)), l, st, out);
            }
            b'P' => {
                let name = r.cstr();
                let stmt = self.statement(r.cstr(), m.truncated, l);
                self.remember(true, name, stmt.clone(), l);
                self.push(Expect::Parse(Some(stmt)), l, st, out);
            }
            b'B' => {
                let portal = r.cstr();
                let stmt = self.statements.get(r.cstr()).cloned();
                if let Some(s) = &stmt {
                    self.remember(false, portal, s.clone(), l);
                } else {
                    self.portals.remove(portal);
                }
                self.push(Expect::Bind(stmt), l, st, out);
            }
            b'D' => {
                let stmt = match r.u8() {
                    Some(b'S') => self.statements.get(r.cstr()).cloned(),
                    _ => self.portals.get(r.cstr()).cloned(),
                };
                self.push(Expect::Describe(stmt), l, st, out);
            }
            b'E' => {
                let stmt = self.portals.get(r.cstr()).cloned();
                let mut t = self.new_tx(Protocol::Extended, stmt, ts);
                t.req_bytes = std::mem::take(&mut self.client.bytes);
                self.push(Expect::Execute(Box::new(t)), l, st, out);
            }
            b'C' => {
                match r.u8() {
                    Some(b'S') => self.statements.remove(r.cstr()),
                    _ => self.portals.remove(r.cstr()),
                };
                self.push(Expect::Close, l, st, out);
            }
            b'S' => self.push(Expect::Sync, l, st, out),
            b'F' => {
                let mut t = self.new_tx(Protocol::FunctionCall, None, ts);
                t.operation = Some("FUNCTION CALL".into());
                t.req_bytes = std::mem::take(&mut self.client.bytes);
                self.push(Expect::FunctionCall(Box::new(t)), l, st, out);
            }
            // Passwords, SASL and GSSAPI tokens ('p') are never read; COPY data, Flush and
            // Terminate need no answer.
            _ => {}
        }
    }

    fn remember(&mut self, statement: bool, name: &[u8], s: (Arc<str>, bool), l: &Limits) {
        let map = if statement {
            &mut self.statements
        } else {
            &mut self.portals
        };
        if map.len() >= l.max_prepared && !map.contains_key(name) {
            // Full: a statement prepared now is reported without its text.
            return;
        }
        map.insert(name.into(), s);
    }

    fn server_message(&mut self, m: Frame<'_>, ts: i64, st: &mut ConnStats, out: &mut Finished) {
        if self.skip_ready > 0 {
            // An answer to a group given up (see `push`).
            if m.kind == b'Z' {
                self.skip_ready -= 1;
            }
            return;
        }
        self.server.bytes += m.wire_len;
        match m.kind {
            // 'N' goes on in clear: the client sends its StartupMessage next.
            0 => {
                if let Some(&answer @ (b'S' | b'G')) = m.body.first() {
                    self.encrypted(st);
                    self.tls = answer == b'S';
                }
            }
            b'1' => self.pop_step(|e| matches!(e, Expect::Parse(_))),
            b'2' => self.pop_step(|e| matches!(e, Expect::Bind(_))),
            b'3' => self.pop_step(|e| matches!(e, Expect::Close)),
            b'T' | b'n' => self.pop_step(|e| matches!(e, Expect::Describe(_))),
            b'D' => match self.pending.front_mut() {
                Some(Expect::Execute(t)) => t.data_rows += 1,
                Some(Expect::Query(q)) => q.data_rows += 1,
                _ => {}
            },
            b'C' | b'I' | b's' => {
                let (op, rows) = if m.kind == b'C' {
                    let (op, rows) = message::command_tag(m.body);
                    (Some(op).filter(|o| !o.is_empty()), rows)
                } else {
                    (None, None)
                };
                self.completed(op, rows, None, ts, out);
            }
            b'V' => {
                self.completed(None, None, None, ts, out);
            }
            b'E' => {
                let e = message::error_fields(m.body);
                self.failed(e, ts, out);
            }
            b'Z' => self.ready(ts, out),
            // Authentication requests, parameter status, key data, notices (not errors),
            // notifications, COPY and parameter descriptions carry nothing reported.
            _ => {}
        }
    }

    /// Pops the answered Parse/Bind/Describe/Close at the front, when it is one.
    fn pop_step(&mut self, is: impl Fn(&Expect) -> bool) {
        if self.pending.front().is_some_and(is) {
            self.pending.pop_front();
        }
    }

    /// Steps answered without reply earlier (a Describe of a statement without result has
    /// NoData, but a Bind is always answered): skipped up to the next Execute or Query.
    fn skip_steps(&mut self) {
        while matches!(
            self.pending.front(),
            Some(Expect::Parse(_) | Expect::Bind(_) | Expect::Describe(_) | Expect::Close)
        ) {
            self.pending.pop_front();
        }
    }

    fn take_resp_bytes(&mut self) -> u64 {
        std::mem::take(&mut self.server.bytes)
    }

    /// A CommandComplete, EmptyQueryResponse, PortalSuspended or FunctionCallResponse.
    fn completed(
        &mut self,
        op: Option<String>,
        rows: Option<i64>,
        err: Option<PgError>,
        ts: i64,
        out: &mut Finished,
    ) {
        self.skip_steps();
        let resp_bytes = self.take_resp_bytes();
        let gap = self.gap;
        match self.pending.front_mut() {
            Some(Expect::Execute(_)) | Some(Expect::FunctionCall(_)) => {
                if let Some(Expect::Execute(mut t) | Expect::FunctionCall(mut t)) =
                    self.pending.pop_front()
                {
                    finish(&mut t, op, rows, err, ts, resp_bytes);
                    out.push(*t);
                }
            }
            Some(Expect::Query(q)) => {
                let mut t = query_tx(q, gap, ts);
                finish(&mut t, op, rows, err, ts, resp_bytes);
                out.push(t);
            }
            _ => {
                // No request waiting: one-sided capture, a gap, or the middle of a connection.
                let mut t = self.new_tx(Protocol::Simple, None, ts);
                t.missing = Some(Missing::Request);
                finish(&mut t, op, rows, err, ts, resp_bytes);
                out.push(t);
            }
        }
    }

    fn failed(&mut self, e: PgError, ts: i64, out: &mut Finished) {
        match self.pending.front() {
            Some(Expect::Startup) => {
                self.pending.pop_front();
                let mut t = self.new_tx(Protocol::Startup, None, ts);
                t.operation = Some("STARTUP".into());
                t.req_bytes = std::mem::take(&mut self.client.bytes);
                t.resp_bytes = self.take_resp_bytes();
                t.error = Some(e);
                out.push(t);
            }
            Some(Expect::Query(_)) => {
                self.completed(None, None, Some(e), ts, out);
                if let Some(Expect::Query(q)) = self.pending.front_mut() {
                    q.failed = true;
                }
            }
            Some(Expect::Execute(_) | Expect::FunctionCall(_)) => {
                self.completed(None, None, Some(e), ts, out);
                self.discard_until_sync();
            }
            Some(Expect::Parse(s) | Expect::Bind(s) | Expect::Describe(s)) => {
                // The server skips everything up to Sync: the error is the answer to the
                // first Execute among what it skips, or to the step itself.
                let stmt = s.clone();
                self.pending.pop_front();
                let exec = self.discard_until_sync();
                let mut t = match exec {
                    Some(t) => *t,
                    None => self.new_tx(Protocol::Extended, stmt, ts),
                };
                finish(&mut t, None, None, Some(e), ts, self.take_resp_bytes());
                out.push(t);
            }
            _ => {
                // FATAL shutdown messages, or an answer whose request was not seen.
                self.completed(None, None, Some(e), ts, out);
            }
        }
    }

    /// Drops what the server skips after an error in the extended protocol; returns the
    /// first Execute among it.
    fn discard_until_sync(&mut self) -> Option<Box<Transaction>> {
        let mut first = None;
        while let Some(e) = self.pending.front() {
            if matches!(e, Expect::Sync | Expect::Query(_)) {
                break;
            }
            if let Some(Expect::Execute(t)) = self.pending.pop_front() {
                first.get_or_insert(t);
            }
        }
        first
    }

    /// ReadyForQuery: the Query or Sync at the front is answered; startup is over.
    fn ready(&mut self, ts: i64, out: &mut Finished) {
        while let Some(e) = self.pending.pop_front() {
            match e {
                Expect::Query(q) => {
                    // A Query answered by nothing but ReadyForQuery: reported unanswered.
                    if q.next == 0 {
                        unanswered(Expect::Query(q), ts, self.gap, out);
                    }
                    break;
                }
                Expect::Sync => break,
                Expect::Startup => {
                    // Authentication bytes belong to no statement.
                    self.client.bytes = 0;
                    self.server.bytes = 0;
                    break;
                }
                other => unanswered(other, ts, self.gap, out),
            }
        }
    }
}

/// The transaction of a simple Query's current statement; the next one starts now.
fn query_tx(q: &mut QueryState, gap: bool, ts: i64) -> Transaction {
    let stmt = q.statements.get(q.next).cloned();
    let operation = stmt
        .as_ref()
        .and_then(|s| sql::first_keyword(sql::Dialect::Postgres, &s.0));
    let t = Transaction {
        session: q.session.clone(),
        statement_truncated: stmt.as_ref().is_some_and(|s| s.1),
        statement: stmt.map(|s| s.0),
        operation,
        protocol: Protocol::Simple,
        start_ns: q.start_ns,
        end_ns: ts,
        req_bytes: std::mem::take(&mut q.req_bytes),
        data_rows: std::mem::take(&mut q.data_rows),
        gap,
        ..Default::default()
    };
    q.next += 1;
    q.start_ns = ts;
    t
}

fn finish(
    t: &mut Transaction,
    op: Option<String>,
    rows: Option<i64>,
    err: Option<PgError>,
    ts: i64,
    resp_bytes: u64,
) {
    if op.is_some() {
        t.operation = op;
    }
    t.tag_rows = rows;
    t.error = err;
    t.end_ns = ts;
    t.resp_bytes += resp_bytes;
}

/// Whether the server answers `e` with a ReadyForQuery, which ends the group of requests
/// it belongs to.
fn ends_group(e: &Expect) -> bool {
    matches!(e, Expect::Sync | Expect::Query(_) | Expect::Startup)
}

/// A request reported without its answer.
fn unanswered(e: Expect, ts: i64, gap: bool, out: &mut Finished) {
    let mut t = match e {
        Expect::Execute(t) | Expect::FunctionCall(t) => *t,
        Expect::Query(mut q) if !q.failed && q.next < q.statements.len() => {
            let start = q.start_ns;
            query_tx(&mut q, gap, start)
        }
        _ => return,
    };
    t.missing = Some(Missing::Response);
    t.gap |= gap;
    // The time it was given up, not an answer's: the duration says how long it waited.
    t.end_ns = ts.max(t.start_ns);
    out.push(t);
}

/// Whether a connection's first client bytes are an untyped startup packet.
pub fn looks_like_startup(data: &[u8]) -> bool {
    if data.len() < 8 {
        return false;
    }
    let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    let code = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
    (8..=10_000).contains(&len)
        && matches!(
            code,
            message::PROTOCOL_3
                | message::SSL_REQUEST
                | message::GSSENC_REQUEST
                | message::CANCEL_REQUEST
        )
}

/// A TLS handshake record header (content type 22, major version 3).
fn is_tls_record(data: &[u8]) -> bool {
    data.len() >= 2 && data[0] == 0x16 && data[1] == 3
}
