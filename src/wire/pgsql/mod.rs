//! The PostgreSQL analyzer: frontend/backend protocol v3 from reassembled TCP streams, one
//! transaction per statement of a simple Query and per Execute of the extended protocol, with
//! statement text (literals redacted), rows, SQLSTATE errors and response time.
//!
//! `message` frames the bytes, `conn` matches requests and answers per connection, `sql`
//! splits and redacts statements, `transaction` is the event.

pub mod conn;
pub mod message;
pub mod sql;
pub mod transaction;

pub use conn::{Conn, ConnStats, Finished, Limits};
pub use transaction::Transaction;

#[cfg(test)]
mod tests;
