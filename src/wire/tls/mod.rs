//! The TLS handshake decoder: ClientHello and ServerHello (with the certificate while it is
//! still in clear, TLS <= 1.2) from reassembled TCP streams, reported as one event per
//! handshake with the negotiated parameters, JA3/JA3S/JA4 fingerprints and how it ended.
//!
//! `conn` is the per-connection state machine (record layer and handshake), `hello` and
//! `x509` parse messages, `fingerprint` and `names` turn them into the event's strings,
//! `event` writes it.

pub mod conn;
pub mod event;
pub mod fingerprint;
pub mod hello;
pub mod names;
pub mod x509;

#[cfg(test)]
mod tests;

pub use conn::{Conn, ConnStats, Handshake, Limits, Unfinished};
