//! One PostgreSQL transaction (a statement of a simple Query, an Execute, a failed login) and
//! its event fields (after the driver's common ones): OpenTelemetry's `db.*` names, as ECS
//! has none for databases, and `pgsql.*` for the rest.

use super::message::PgError;
use crate::wire::analyzer::{self, Conn, Outcome, Record};
use crate::wire::out::Fields;
use crate::wire::sql_event::{write_tags, Db};
use std::sync::Arc;

/// What the client said when it connected; shared by every transaction of the connection.
#[derive(Debug, Default, Clone)]
pub struct Session {
    pub user: Option<String>,
    pub database: Option<String>,
    pub application: Option<String>,
}

/// How the statement was sent.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Protocol {
    /// A Query message (one transaction per statement in it).
    #[default]
    Simple,
    /// Parse/Bind/Execute: one transaction per Execute.
    Extended,
    /// The StartupMessage and authentication (reported only when the server refuses it).
    Startup,
    /// A FunctionCall message.
    FunctionCall,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Simple => "simple",
            Protocol::Extended => "extended",
            Protocol::Startup => "startup",
            Protocol::FunctionCall => "function_call",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Missing {
    /// No answer within `transaction_timeout`, or before the connection or capture ended.
    Response,
    /// An answer whose request was not seen (capture started mid-connection, or a gap).
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

#[derive(Debug, Clone, Default)]
pub struct Transaction {
    pub session: Arc<Session>,
    /// The statement, literals redacted unless configured otherwise.
    pub statement: Option<Arc<str>>,
    /// The statement was longer than `max_statement_bytes` (or its message longer than the
    /// buffer): `statement` is its beginning.
    pub statement_truncated: bool,
    /// From the server's CommandComplete tag when there is one (`CREATE TABLE`), else the
    /// statement's first keyword.
    pub operation: Option<String>,
    pub protocol: Protocol,
    /// The row count of the CommandComplete tag (returned by SELECT, affected by DML).
    pub tag_rows: Option<i64>,
    /// DataRow messages seen.
    pub data_rows: u64,
    pub error: Option<PgError>,
    pub start_ns: i64,
    pub end_ns: i64,
    pub req_bytes: u64,
    pub resp_bytes: u64,
    pub missing: Option<Missing>,
    /// A stream gap was seen while the transaction was open.
    pub gap: bool,
}

impl Transaction {
    /// `pgsql.rows`: the tag's count, where the protocol gives one; else the DataRows seen
    /// (a portal suspended after N rows).
    pub fn rows(&self) -> Option<i64> {
        self.tag_rows
            .or((self.data_rows > 0).then_some(self.data_rows as i64))
    }

    pub fn outcome(&self) -> &'static str {
        match (&self.error, self.missing) {
            (Some(e), _) if is_error(&e.severity) => "failure",
            (_, Some(_)) => "unknown",
            _ => "success",
        }
    }
}

/// Errors (not warnings) by the never-localized severity.
fn is_error(severity: &str) -> bool {
    matches!(severity, "ERROR" | "FATAL" | "PANIC") || !severity.is_ascii()
}

impl analyzer::Transaction for Transaction {
    fn record(&self) -> Record<'_> {
        let outcome = match self.outcome() {
            "failure" => Outcome::Failure,
            "unknown" => Outcome::Unknown,
            _ => Outcome::Success,
        };
        Record {
            start_ns: self.start_ns,
            end_ns: self.end_ns.max(self.start_ns),
            outcome,
            reason: self.missing.map(Missing::as_str),
            request_bytes: self.req_bytes,
            response_bytes: self.resp_bytes,
            operation: self.operation.as_deref().unwrap_or(""),
            status: self.status(),
            gap: self.gap,
        }
    }

    /// `db.*` (OpenTelemetry's database names: ECS has none) and `pgsql.*`.
    fn write_fields<F: Fields>(&self, f: &mut F) {
        Db {
            system: "postgresql",
            name: self.session.database.as_deref(),
            user: self.session.user.as_deref(),
            statement: self.statement.as_deref(),
            operation: self.operation.as_deref(),
        }
        .write(f);
        f.open("pgsql");
        f.word("protocol", self.protocol.as_str());
        if let Some(n) = self.rows() {
            f.int("rows", n);
        }
        if let Some(a) = &self.session.application {
            f.str("application_name", a);
        }
        f.int("request_bytes", self.req_bytes as i64);
        f.int("response_bytes", self.resp_bytes as i64);
        if let Some(e) = &self.error {
            f.open("error");
            f.str("code", &e.code);
            f.str("message", &e.message);
            f.str("severity", &e.severity);
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
            "pgsql_statement_truncated",
        );
    }
}

impl Transaction {
    /// The metric label of the result: the SQLSTATE class (`42`: syntax or access rule,
    /// `23`: integrity constraint...), `00` for success, empty without an answer.
    fn status(&self) -> &str {
        match (&self.error, self.missing) {
            (Some(e), _) => e.code.get(..2).unwrap_or(""),
            (None, Some(_)) => "",
            (None, None) => "00",
        }
    }
}
