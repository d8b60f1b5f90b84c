//! One Redis command and its reply as reported: the command's name and key (never its values
//! unless asked), the reply's type, status or error, sizes and times, written as one event's
//! fields through `Report`. The connection's endpoints are written by the analyzer around it.

use super::command::Command;
use super::resp::Kind;
use crate::wire::out::{Fields, Fixed, Report};

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

static EVENT: Fixed = Fixed::new(|f| {
    f.str("kind", "event");
    f.strs("category", &["network", "database"]);
    f.strs("type", &["connection", "protocol"]);
    f.str("dataset", "redis");
});

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

    /// `failure` for an error reply, `success` for any other, `unknown` without a reply.
    pub fn outcome(&self) -> &'static str {
        match (&self.reply, self.missing) {
            (Some(r), _) if r.error.is_some() => "failure",
            (Some(_), None) => "success",
            _ => "unknown",
        }
    }
}

impl Report for Transaction {
    fn write<F: Fields>(&self, f: &mut F) {
        let (start, end) = (self.start_ns(), self.end_ns());
        f.time("@timestamp", start);
        f.open("event");
        f.fixed(&EVENT);
        f.time("start", start);
        f.time("end", end);
        f.int("duration", end - start);
        f.word("outcome", self.outcome());
        if let Some(m) = self.missing {
            f.word("reason", m.as_str());
        }
        f.close();
        f.open("network");
        f.word("transport", "tcp");
        f.word("protocol", "redis");
        f.int("bytes", (self.req_bytes + self.resp_bytes) as i64);
        f.close();
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
        }
        if self.command.is_some() {
            f.open("request");
            f.int("bytes", self.req_bytes as i64);
            if let Some(c) = &self.command {
                f.int("argc", c.argc);
            }
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
        match (self.gap, self.malformed) {
            (true, true) => f.strs("tags", &["tcp_gap", "redis_malformed"]),
            (true, false) => f.strs("tags", &["tcp_gap"]),
            (false, true) => f.strs("tags", &["redis_malformed"]),
            (false, false) => {}
        }
    }
}
