//! One Redis connection seen from the wire: a RESP reader per direction and the FIFO of commands
//! waiting for their reply (pipelining). Replies carry no id, so pairing is by order: pushes
//! (pub/sub messages, `MONITOR` lines, RESP3 `>` values) are set aside, and a connection whose
//! order is lost (a gap outside a bulk payload, bytes that are not RESP) is given up, counted.

use super::command::{self, Effect, PubSub};
use super::resp::{AfterGap, Kind, Limits, Message, Reader};
use super::transaction::{Finished, Missing, Reply, Transaction};
use std::collections::VecDeque;

/// What the connection needs from the analyzer's configuration.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Copy a command's arguments into `redis.args` (never those of `AUTH`, `HELLO`...).
    pub include_args: bool,
    /// Most commands waiting for a reply; older ones are reported as unanswered, and their
    /// replies, when they come, skipped.
    pub max_pending: usize,
    pub limits: Limits,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            include_args: false,
            max_pending: 1024,
            limits: Limits::default(),
        }
    }
}

/// Counters the analyzer publishes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConnStats {
    /// Streams that stopped being RESP.
    pub parse_errors: u64,
    pub gaps: u64,
    /// Connections no longer followed (their order lost to a gap or malformed bytes).
    pub abandoned: u64,
    /// Server messages that answer no command: pub/sub messages, `MONITOR` lines, pushes.
    pub pushes: u64,
    /// Replies to commands already reported as unanswered (timeout, too many pending).
    pub late_replies: u64,
}

struct Pending {
    tx: Transaction,
    effect: Effect,
}

/// Further confirmations still due for an (un)subscribe already reported.
#[derive(Debug, Clone, Copy)]
struct Confirmations {
    family: PubSub,
    subscribe: bool,
    /// How many more; `None` for an unsubscribe from all, which ends when the subscription
    /// count stops falling.
    remaining: Option<usize>,
    last_count: i64,
}

pub struct Conn {
    client: Reader,
    server: Reader,
    opts: Options,
    pending: VecDeque<Pending>,
    /// Replies still due to commands already reported as unanswered.
    owed: u64,
    confirmations: Option<Confirmations>,
    /// Subscribed (RESP2): arrays shaped as pub/sub messages are pushes.
    subscribed: bool,
    /// After `MONITOR`: simple strings are the server's command feed.
    monitoring: bool,
    /// `CLIENT REPLY OFF` in force; `CLIENT REPLY SKIP` pending for the next command.
    reply_off: bool,
    skip_next: bool,
    /// Picked up mid-stream: each side waits for a chunk that starts a message, and the
    /// server's for the first command seen.
    client_waits: bool,
    server_waits: bool,
    given_up: bool,
}

impl Conn {
    /// `from_start`: the connection's first bytes are seen (its SYN was), so both streams start
    /// on a message boundary.
    pub fn new(opts: Options, from_start: bool) -> Conn {
        Conn {
            client: Reader::new(true, opts.limits),
            server: Reader::new(false, opts.limits),
            opts,
            pending: VecDeque::new(),
            owed: 0,
            confirmations: None,
            subscribed: false,
            monitoring: false,
            reply_off: false,
            skip_next: false,
            client_waits: !from_start,
            server_waits: !from_start,
            given_up: false,
        }
    }

    /// No longer followed: the analyzer may drop it.
    pub fn given_up(&self) -> bool {
        self.given_up
    }

    /// Bytes held, for the memory bound.
    pub fn buffered(&self) -> usize {
        self.client.held() + self.server.held() + self.pending.len() * 160
    }

    /// In-order bytes from the client.
    pub fn client_data(&mut self, data: &[u8], ts: i64, st: &mut ConnStats, out: &mut Finished) {
        if self.given_up || data.is_empty() {
            return;
        }
        if self.client_waits {
            if !starts_command(data) {
                return;
            }
            self.client_waits = false;
        }
        let mut msgs = Vec::new();
        let r = self.client.feed(data, ts, &mut |m| msgs.push(m));
        for m in msgs {
            self.command(m, out);
        }
        if r.is_err() {
            st.parse_errors += 1;
            self.give_up(true, st, out);
        }
    }

    /// In-order bytes from the server.
    pub fn server_data(&mut self, data: &[u8], ts: i64, st: &mut ConnStats, out: &mut Finished) {
        if self.given_up || data.is_empty() {
            return;
        }
        if self.server_waits {
            if self.pending.is_empty() || self.client_waits {
                return;
            }
            if !matches!(
                data[0],
                b'+' | b'-' | b':' | b'$' | b'*' | b'_' | b'%' | b'>' | b'~'
            ) {
                return;
            }
            self.server_waits = false;
        }
        let mut msgs = Vec::new();
        let r = self.server.feed(data, ts, &mut |m| msgs.push(m));
        for m in msgs {
            self.reply(m, st, out);
        }
        if r.is_err() {
            st.parse_errors += 1;
            self.give_up(true, st, out);
        }
    }

    /// `n` bytes from the client were never captured.
    pub fn client_gap(&mut self, n: u64, st: &mut ConnStats, out: &mut Finished) {
        st.gaps += 1;
        if self.given_up || self.client_waits {
            return;
        }
        if self.client.gap(n) == AfterGap::Lost {
            self.give_up(false, st, out);
        }
    }

    /// `n` bytes from the server were never captured.
    pub fn server_gap(&mut self, n: u64, st: &mut ConnStats, out: &mut Finished) {
        st.gaps += 1;
        if self.given_up || self.server_waits {
            return;
        }
        if self.server.gap(n) == AfterGap::Lost {
            self.give_up(false, st, out);
        }
    }

    /// The connection ended (or the capture did): every command still waiting is reported.
    pub fn close(&mut self, out: &mut Finished) {
        let cut = !self.server.at_boundary() && !self.given_up;
        for (i, p) in self.pending.drain(..).enumerate() {
            let mut tx = p.tx;
            tx.missing = Some(if i == 0 && cut {
                Missing::ResponseIncomplete
            } else {
                Missing::Response
            });
            out.push(tx);
        }
    }

    /// The oldest command waiting has waited since before `deadline`.
    pub fn expires(&self, deadline: i64) -> bool {
        self.pending
            .front()
            .is_some_and(|p| p.tx.req_end_ns < deadline)
    }

    /// Reports the commands waiting since before `deadline`; their replies, if they come, are
    /// skipped so that later ones still meet their commands.
    pub fn expire(&mut self, deadline: i64, out: &mut Finished) {
        while self.expires(deadline) {
            if let Some(p) = self.pending.pop_front() {
                self.unanswered(p, out);
            }
        }
    }

    fn unanswered(&mut self, p: Pending, out: &mut Finished) {
        let mut tx = p.tx;
        tx.missing = Some(Missing::Response);
        out.push(tx);
        self.owed += 1;
    }

    fn give_up(&mut self, malformed: bool, st: &mut ConnStats, out: &mut Finished) {
        self.given_up = true;
        st.abandoned += 1;
        for p in self.pending.drain(..) {
            let mut tx = p.tx;
            tx.missing = Some(Missing::Response);
            tx.gap |= !malformed;
            tx.malformed |= malformed;
            out.push(tx);
        }
    }

    fn command(&mut self, m: Message, out: &mut Finished) {
        let (cmd, effect) = command::describe(&m.items, m.len, self.opts.include_args);
        let tx = Transaction {
            command: Some(cmd),
            inline: m.kind == Kind::Inline,
            req_start_ns: m.start_ns,
            req_end_ns: m.end_ns,
            req_bytes: m.bytes,
            gap: m.gap,
            ..Transaction::default()
        };
        // Commands the server will not answer are reported at once.
        let silent = match effect {
            Effect::ReplyOn => {
                self.reply_off = false;
                self.skip_next = false;
                false
            }
            Effect::ReplyOff => {
                self.reply_off = true;
                true
            }
            Effect::ReplySkip => {
                // SKIP itself is not answered, nor is the command after it.
                self.skip_next = !self.reply_off;
                true
            }
            _ if self.skip_next => {
                self.skip_next = false;
                true
            }
            _ => self.reply_off,
        };
        if silent {
            let mut tx = tx;
            tx.missing = Some(Missing::NoReply);
            out.push(tx);
            return;
        }
        if self.pending.len() >= self.opts.max_pending {
            if let Some(p) = self.pending.pop_front() {
                self.unanswered(p, out);
            }
        }
        self.pending.push_back(Pending { tx, effect });
    }

    fn reply(&mut self, m: Message, st: &mut ConnStats, out: &mut Finished) {
        // Pub/sub: RESP3 pushes always, RESP2 arrays while subscribed.
        let pubsub = match m.kind {
            Kind::Push => Some(m.items.first().and_then(|k| command::pubsub_kind(k))),
            Kind::Array if self.subscribed || self.awaits_confirmation() => m
                .items
                .first()
                .and_then(|k| command::pubsub_kind(k))
                .map(Some),
            _ => None,
        };
        if let Some(kind) = pubsub {
            match kind {
                Some((family, Some(subscribe))) => self.confirmation(m, family, subscribe, st, out),
                // A published message, or another RESP3 push (`invalidate`...).
                _ => st.pushes += 1,
            }
            return;
        }
        if self.monitoring && m.kind == Kind::SimpleString {
            st.pushes += 1;
            return;
        }
        self.confirmations = None;
        if self.owed > 0 {
            self.owed -= 1;
            st.late_replies += 1;
            return;
        }
        let reply = reply_of(&m);
        match self.pending.pop_front() {
            Some(p) => {
                match p.effect {
                    Effect::Monitor if reply.error.is_none() => self.monitoring = true,
                    Effect::Reset if reply.error.is_none() => {
                        self.subscribed = false;
                        self.monitoring = false;
                        self.reply_off = false;
                        self.skip_next = false;
                    }
                    _ => {}
                }
                out.push(answered(p.tx, reply, &m));
            }
            None => out.push(Transaction {
                reply: Some(reply),
                resp_start_ns: m.start_ns,
                resp_end_ns: m.end_ns,
                resp_bytes: m.bytes,
                gap: m.gap,
                missing: Some(Missing::Request),
                ..Transaction::default()
            }),
        }
    }

    /// The next reply due is an (un)subscribe's confirmation.
    fn awaits_confirmation(&self) -> bool {
        self.confirmations.is_some()
            || self.pending.front().is_some_and(|p| {
                matches!(p.effect, Effect::Subscribe(..) | Effect::Unsubscribe(..))
            })
    }

    /// A `subscribe`/`unsubscribe` confirmation: the reply to the first (un)subscribe waiting,
    /// or one of the further confirmations of one already answered (one per channel).
    fn confirmation(
        &mut self,
        m: Message,
        family: PubSub,
        subscribe: bool,
        st: &mut ConnStats,
        out: &mut Finished,
    ) {
        let count: i64 = m
            .items
            .get(2)
            .and_then(|c| std::str::from_utf8(c).ok()?.parse().ok())
            .unwrap_or(0);
        self.subscribed = count > 0;
        if let Some(c) = &mut self.confirmations {
            let same = c.family == family && c.subscribe == subscribe;
            let due = match c.remaining {
                Some(n) => n > 0,
                None => count < c.last_count,
            };
            if same && due {
                if let Some(n) = &mut c.remaining {
                    *n -= 1;
                }
                c.last_count = count;
                return;
            }
            self.confirmations = None;
        }
        let head_matches = self.owed == 0
            && self.pending.front().is_some_and(|p| match p.effect {
                Effect::Subscribe(f, _) => subscribe && f == family,
                Effect::Unsubscribe(f, _) => !subscribe && f == family,
                _ => false,
            });
        if !head_matches {
            // A confirmation nobody asked for here (a shard channel moved away, or a command
            // not seen): set aside.
            st.pushes += 1;
            return;
        }
        let Some(p) = self.pending.pop_front() else {
            return;
        };
        let remaining = match p.effect {
            Effect::Subscribe(_, n) | Effect::Unsubscribe(_, n) if n > 0 => Some(n - 1),
            _ => None,
        };
        self.confirmations = Some(Confirmations {
            family,
            subscribe,
            remaining,
            last_count: count,
        });
        let reply = reply_of(&m);
        out.push(answered(p.tx, reply, &m));
    }
}

/// Whether a chunk (a segment, mostly) starts a command: an array of bulk strings, or an
/// inline command's known name followed by a blank or the end of the line.
pub fn starts_command(data: &[u8]) -> bool {
    match data {
        [b'*', d, ..] => d.is_ascii_digit(),
        _ => {
            let end = data
                .iter()
                .position(|b| b.is_ascii_whitespace())
                .unwrap_or(data.len());
            end < data.len() && command::is_known(&data[..end])
        }
    }
}

fn reply_of(m: &Message) -> Reply {
    let text = match m.kind {
        Kind::BulkError => m.items.first().map_or(&[][..], |t| t.as_slice()),
        _ => m.text.as_slice(),
    };
    Reply::new(m.kind, m.len, text)
}

fn answered(mut tx: Transaction, reply: Reply, m: &Message) -> Transaction {
    tx.reply = Some(reply);
    tx.resp_start_ns = m.start_ns;
    tx.resp_end_ns = m.end_ns;
    tx.resp_bytes = m.bytes;
    tx.gap |= m.gap;
    tx
}

#[cfg(test)]
mod tests;
