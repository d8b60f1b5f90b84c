//! One Redis command and its reply as reported: the command's name and key (never its values
//! unless asked), the reply's type, status or error, sizes and times, written as one event's
//! fields (`analyzer::Transaction`) after the common part the driver writes for every protocol.

use super::command::Command;
use super::resp::Kind;
use crate::wire::analyzer::{self, Conn, Outcome, Record};
use crate::wire::out::Fields;

/// Why a transaction is reported without one of its halves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// No reply within `transaction_timeout`, before the connection or capture ended, or the
    /// connection stopped being followed (gap, malformed bytes).
    Response,
    /// A reply whose command was not seen.
    Request,
    /// The reply started but did not end before the connection or capture did.
    ResponseIncomplete,
    /// The client turned replies off (`CLIENT REPLY OFF|SKIP`): the server sends none.
    NoReply,
}

impl Missing {
    pub fn as_str(self) -> &'static str {
        match self {
            Missing::Response => "response_missing",
            Missing::Request => "request_missing",
            Missing::ResponseIncomplete => "response_incomplete",
            Missing::NoReply => "reply_off",
        }
    }
}

/// What is kept of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: Kind,
    /// Elements of an aggregate (pairs for a map), length of a bulk string; -1 for null.
    pub len: i64,
    /// A simple string's text (`OK`, `QUEUED`, `PONG`): a status, not stored data. Integers,
    /// bulk strings and aggregates are data: only their type and length are kept.
    pub status: Option<String>,
    /// An error's prefix (`ERR`, `WRONGTYPE`) and the rest of its text.
    pub error: Option<(String, String)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    pub command: Option<Command>,
    pub inline: bool,
    pub reply: Option<Reply>,
    pub req_start_ns: i64,
    pub req_end_ns: i64,
    pub resp_start_ns: i64,
    pub resp_end_ns: i64,
    pub req_bytes: u64,
    pub resp_bytes: u64,
    /// Some bytes of this transaction were never captured.
    pub gap: bool,
    /// The connection stopped being followed because its bytes were not RESP.
    pub malformed: bool,
    pub missing: Option<Missing>,
}

/// Transactions ready to be reported.
pub type Finished = Vec<Transaction>;

/// Longest error message kept.
const MAX_ERROR: usize = 256;

impl Reply {
    /// What is reported of a reply whose top-level value was read as `kind` with `text`.
    pub fn new(kind: Kind, len: i64, text: &[u8]) -> Reply {
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let error = kind.is_error().then(|| split_error(text));
        Reply {
            kind,
            len,
            status: (kind == Kind::SimpleString).then(|| lossy(text)),
            error,
        }
    }
}

/// An error's code (its first word when that is upper case, as Redis writes them) and message.
/// Redis quotes the arguments of an unknown command in the message: they are cut off, as values.
fn split_error(text: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(&text[..text.len().min(MAX_ERROR)]).into_owned();
    let (code, rest) = match text.split_once(' ') {
        Some((c, r)) if !c.is_empty() && c.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') => {
            (c.to_owned(), r.to_owned())
        }
        _ if !text.is_empty() && text.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') => {
            (text.clone(), String::new())
        }
        _ => (String::new(), text.clone()),
    };
    let rest = match rest.find(", with args beginning with:") {
        Some(i) => rest[..i].to_owned(),
        None => rest,
    };
    (code, rest)
}

impl Transaction {
    pub fn start_ns(&self) -> i64 {
        if self.command.is_some() {
            self.req_start_ns
        } else {
            self.resp_start_ns
        }
    }

    pub fn end_ns(&self) -> i64 {
        self.resp_end_ns.max(self.req_end_ns).max(self.start_ns())
    }

    /// Failure for an error reply, success for any other, unknown without a reply.
    pub fn outcome(&self) -> Outcome {
        match (&self.reply, self.missing) {
            (Some(r), _) if r.error.is_some() => Outcome::Failure,
            (Some(_), None) => Outcome::Success,
            _ => Outcome::Unknown,
        }
    }
}

impl analyzer::Transaction for Transaction {
    fn record(&self) -> Record<'_> {
        let reply = self.reply.as_ref();
        Record {
            start_ns: self.start_ns(),
            end_ns: self.end_ns(),
            outcome: self.outcome(),
            reason: self.missing.map(Missing::as_str),
            request_bytes: self.req_bytes,
            response_bytes: self.resp_bytes,
            operation: self.command.as_ref().map_or("", |c| c.name.as_str()),
            // The error code (`WRONGTYPE`), `ok` for any other reply, "" for none.
            status: match reply {
                Some(r) => r.error.as_ref().map_or("ok", |e| e.0.as_str()),
                None => "",
            },
            gap: self.gap,
        }
    }

    fn write_fields<F: Fields>(&self, f: &mut F) {
        f.open("redis");
        if let Some(c) = &self.command {
            f.str("command", &c.name);
            if let Some(k) = &c.key {
                f.str("key", k);
            }
            if let Some(args) = &c.args {
                let a: Vec<&str> = args.iter().map(String::as_str).collect();
                f.strs("args", &a);
            }
            f.open("request");
            f.int("bytes", self.req_bytes as i64);
            f.int("argc", c.argc);
            if self.inline {
                f.bool("inline", true);
            }
            f.close();
        }
        if let Some(r) = &self.reply {
            f.open("response");
            f.int("bytes", self.resp_bytes as i64);
            f.word("type", r.kind.as_str());
            if matches!(
                r.kind,
                Kind::Array
                    | Kind::Map
                    | Kind::Set
                    | Kind::Push
                    | Kind::BulkString
                    | Kind::Verbatim
            ) {
                f.int("length", r.len);
            }
            if let Some(s) = &r.status {
                f.str("status", s);
            }
            f.close();
        }
        f.close();
        if let Some((code, message)) = self.reply.as_ref().and_then(|r| r.error.as_ref()) {
            f.open("error");
            if !code.is_empty() {
                f.str("code", code);
            }
            f.str("message", message);
            f.close();
        }
    }

    /// The common part, the `redis` fields, and the tags (a gap, bytes that were not RESP).
    fn write<F: Fields>(&self, conn: &Conn, f: &mut F) {
        analyzer::write_common(conn, &self.record(), f);
        self.write_fields(f);
        match (self.gap, self.malformed) {
            (true, true) => f.strs("tags", &["tcp_gap", "redis_malformed"]),
            (true, false) => f.strs("tags", &["tcp_gap"]),
            (false, true) => f.strs("tags", &["redis_malformed"]),
            (false, false) => {}
        }
    }
}
