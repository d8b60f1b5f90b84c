//! One MySQL/MariaDB transaction (a command and its answer, or a refused login) and its
//! event fields after the driver's common ones: OpenTelemetry's `db.*` names, as ECS has
//! none for databases, and `mysql.*` for the protocol's own.

use super::packet::MyError;
use crate::wire::analyzer::{self, Conn, Outcome, Record};
use crate::wire::out::Fields;
use crate::wire::sql_event::{write_tags, Db};
use std::sync::Arc;

/// What the greeting and the login said; shared by every transaction of the connection.
#[derive(Debug, Default, Clone)]
pub struct Session {
    /// `mariadb` when the server's version says so, else `mysql`.
    pub system: &'static str,
    pub server_version: Option<String>,
    pub connection_id: Option<u32>,
    pub user: Option<String>,
    pub database: Option<String>,
    pub attributes: Vec<(String, String)>,
}

impl Session {
    pub fn new() -> Session {
        Session {
            system: "mysql",
            ..Session::default()
        }
    }
}

/// The command a transaction answers: `mysql.command`, named as the protocol names it
/// (`COM_QUERY` is `query`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The handshake (reported only when the server refuses the login).
    Connect,
    Query,
    InitDb,
    FieldList,
    Statistics,
    ProcessInfo,
    ProcessKill,
    Debug,
    Ping,
    ChangeUser,
    StmtPrepare,
    StmtExecute,
    StmtReset,
    StmtFetch,
    SetOption,
    ResetConnection,
    /// MariaDB's COM_STMT_BULK_EXECUTE.
    StmtBulkExecute,
    /// Any other command answered by OK or ERR (the decoder knows its byte, not its name).
    Other(u8),
    /// An answer whose command was not captured.
    Unknown,
}

impl Command {
    pub fn from_byte(b: u8) -> Command {
        match b {
            0x02 => Command::InitDb,
            0x03 => Command::Query,
            0x04 => Command::FieldList,
            0x09 => Command::Statistics,
            0x0a => Command::ProcessInfo,
            0x0c => Command::ProcessKill,
            0x0d => Command::Debug,
            0x0e => Command::Ping,
            0x11 => Command::ChangeUser,
            0x16 => Command::StmtPrepare,
            0x17 => Command::StmtExecute,
            0x1a => Command::StmtReset,
            0x1b => Command::SetOption,
            0x1c => Command::StmtFetch,
            0x1f => Command::ResetConnection,
            0xfa => Command::StmtBulkExecute,
            b => Command::Other(b),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Connect => "connect",
            Command::Query => "query",
            Command::InitDb => "init_db",
            Command::FieldList => "field_list",
            Command::Statistics => "statistics",
            Command::ProcessInfo => "process_info",
            Command::ProcessKill => "process_kill",
            Command::Debug => "debug",
            Command::Ping => "ping",
            Command::ChangeUser => "change_user",
            Command::StmtPrepare => "stmt_prepare",
            Command::StmtExecute => "stmt_execute",
            Command::StmtReset => "stmt_reset",
            Command::StmtFetch => "stmt_fetch",
            Command::SetOption => "set_option",
            Command::ResetConnection => "reset_connection",
            Command::StmtBulkExecute => "stmt_bulk_execute",
            Command::Other(_) => "other",
            Command::Unknown => "unknown",
        }
    }

    /// The operation label of a command without SQL of its own.
    fn operation(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::InitDb => "INIT DB",
            Command::FieldList => "FIELD LIST",
            Command::Statistics => "STATISTICS",
            Command::ProcessInfo => "PROCESS INFO",
            Command::ProcessKill => "PROCESS KILL",
            Command::Debug => "DEBUG",
            Command::Ping => "PING",
            Command::ChangeUser => "CHANGE USER",
            Command::StmtPrepare => "PREPARE",
            Command::StmtReset => "RESET STATEMENT",
            Command::StmtFetch => "FETCH",
            Command::SetOption => "SET OPTION",
            Command::ResetConnection => "RESET CONNECTION",
            Command::Query | Command::StmtExecute | Command::StmtBulkExecute => "",
            Command::Other(_) | Command::Unknown => "",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Missing {
    /// No answer within `transaction_timeout`, or before the connection or capture ended.
    Response,
    /// An answer whose command was not seen (capture started mid-connection, or a gap).
    Request,
}

impl Missing {
    pub fn as_str(self) -> &'static str {
        match self {
            Missing::Response => "response_missing",
            Missing::Request => "request_missing",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Transaction {
    pub session: Arc<Session>,
    pub command: Command,
    /// The statement (of a query, a prepare, or the prepare an execute runs), literals
    /// redacted unless configured otherwise.
    pub statement: Option<Arc<str>>,
    pub statement_truncated: bool,
    /// The statement's first keyword (`SELECT`), or the command's name (`PING`).
    pub operation: Option<String>,
    /// The schema COM_INIT_DB asked for.
    pub schema: Option<String>,
    pub statement_id: Option<u32>,
    /// COM_STMT_PREPARE's answer: parameters and columns of the statement.
    pub prepared: Option<(u16, u16)>,
    /// Rows of the result sets (text or binary).
    pub rows: u64,
    /// A result set was seen (so `rows` is meaningful even when 0).
    pub result_set: bool,
    /// The sum of the affected rows of the OK packets, when there was one.
    pub affected_rows: Option<u64>,
    pub insert_id: u64,
    pub warnings: u64,
    /// Results in the answer: result sets and OK packets (more than one for a
    /// multi-statement query or a procedure call).
    pub results: u32,
    /// The server asked for a local file (LOAD DATA LOCAL INFILE).
    pub local_infile: bool,
    pub error: Option<MyError>,
    pub start_ns: i64,
    pub end_ns: i64,
    pub req_bytes: u64,
    pub resp_bytes: u64,
    pub missing: Option<Missing>,
    pub gap: bool,
    /// The answer to a command already reported without one: the command was counted in the
    /// metrics then, so this one is not.
    pub late: bool,
}

impl Transaction {
    pub fn new(session: Arc<Session>, command: Command, ts: i64) -> Transaction {
        Transaction {
            session,
            command,
            statement: None,
            statement_truncated: false,
            operation: Some(command.operation())
                .filter(|o| !o.is_empty())
                .map(String::from),
            schema: None,
            statement_id: None,
            prepared: None,
            rows: 0,
            result_set: false,
            affected_rows: None,
            insert_id: 0,
            warnings: 0,
            results: 0,
            local_infile: false,
            error: None,
            start_ns: ts,
            end_ns: ts,
            req_bytes: 0,
            resp_bytes: 0,
            missing: None,
            gap: false,
            late: false,
        }
    }

    pub fn outcome(&self) -> Outcome {
        match (&self.error, self.missing) {
            (Some(_), _) => Outcome::Failure,
            (None, Some(_)) => Outcome::Unknown,
            (None, None) => Outcome::Success,
        }
    }

    /// The metric label of the result: the SQLSTATE class (`42`: syntax or access rule,
    /// `23`: integrity constraint, `HY` when the server gives none), `00` for success, empty
    /// without an answer.
    fn status(&self) -> &str {
        match (&self.error, self.missing) {
            (Some(e), _) => e
                .sql_state
                .as_deref()
                .and_then(|s| s.get(..2))
                .unwrap_or("HY"),
            (None, Some(_)) => "",
            (None, None) => "00",
        }
    }
}

impl analyzer::Transaction for Transaction {
    fn counted_before(&self) -> bool {
        self.late
    }

    fn record(&self) -> Record<'_> {
        Record {
            start_ns: self.start_ns,
            end_ns: self.end_ns.max(self.start_ns),
            outcome: self.outcome(),
            reason: self.missing.map(Missing::as_str),
            request_bytes: self.req_bytes,
            response_bytes: self.resp_bytes,
            operation: self.operation.as_deref().unwrap_or(""),
            status: self.status(),
            gap: self.gap,
        }
    }

    /// `db.*` (OpenTelemetry's database names) and `mysql.*`.
    fn write_fields<F: Fields>(&self, f: &mut F) {
        let s = &self.session;
        Db {
            system: s.system,
            name: self.schema.as_deref().or(s.database.as_deref()),
            user: s.user.as_deref(),
            statement: self.statement.as_deref(),
            operation: self.operation.as_deref(),
        }
        .write(f);
        f.open("mysql");
        f.word("command", self.command.as_str());
        if let Command::Other(b) = self.command {
            f.int("command_code", b as i64);
        }
        if self.result_set {
            f.int("rows", self.rows as i64);
        }
        if let Some(n) = self.affected_rows {
            f.int("affected_rows", n as i64);
        }
        if self.insert_id != 0 {
            f.int("insert_id", self.insert_id as i64);
        }
        if self.warnings != 0 {
            f.int("warnings", self.warnings as i64);
        }
        if self.results > 1 {
            f.int("results", self.results as i64);
        }
        if let Some(id) = self.statement_id {
            f.int("statement_id", id as i64);
        }
        if let Some((params, columns)) = self.prepared {
            f.int("params", params as i64);
            f.int("columns", columns as i64);
        }
        if self.local_infile {
            f.bool("local_infile", true);
        }
        f.int("request_bytes", self.req_bytes as i64);
        f.int("response_bytes", self.resp_bytes as i64);
        if let Some(v) = &s.server_version {
            f.str("server_version", v);
        }
        if let Some(id) = s.connection_id {
            f.int("connection_id", id as i64);
        }
        if !s.attributes.is_empty() {
            f.open("client");
            for (k, v) in &s.attributes {
                f.entry(k, v);
            }
            f.close();
        }
        if let Some(e) = &self.error {
            f.open("error");
            f.int("code", e.code as i64);
            if let Some(st) = &e.sql_state {
                f.str("sql_state", st);
            }
            f.str("message", &e.message);
            f.close();
        }
        f.close();
    }

    fn write<F: Fields>(&self, conn: &Conn, f: &mut F) {
        let r = self.record();
        analyzer::write_common(conn, &r, f);
        self.write_fields(f);
        write_tags(
            f,
            self.gap,
            self.statement_truncated,
            "mysql_statement_truncated",
        );
    }
}
