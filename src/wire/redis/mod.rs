//! The Redis decoder: RESP2 and RESP3 read incrementally from each direction of a connection
//! (`resp`), commands named and their key found (`command`), replies paired with commands in
//! order, pushes set aside (`conn`), and each pair reported as one event (`transaction`).

pub mod command;
pub mod conn;
pub mod resp;
pub mod transaction;

#[cfg(test)]
mod fuzz;

use crate::config::Duration;
use serde::Deserialize;

/// The `redis` section of a packet input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// TCP ports that carry Redis (server side); an empty list turns the decoder off.
    #[serde(default = "default_ports")]
    pub ports: Vec<u16>,
    /// Copy each command's arguments into `redis.args`. Off by default: arguments are the
    /// stored values. The arguments of `AUTH`, `HELLO`, `MIGRATE`, `ACL SETUSER` and
    /// `CONFIG SET` are never copied.
    #[serde(default)]
    pub include_args: bool,
    /// A command without a reply for this long is reported (`event.reason: response_missing`).
    /// Blocking commands (`BLPOP` with a long timeout) may need more.
    #[serde(default = "default_tx_timeout")]
    pub transaction_timeout: Duration,
    /// Most commands waiting for their replies on one connection (a pipeline deeper than this
    /// reports its oldest commands as unanswered).
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            ports: default_ports(),
            include_args: false,
            transaction_timeout: default_tx_timeout(),
            max_pending: default_max_pending(),
        }
    }
}

impl RedisConfig {
    pub fn options(&self) -> conn::Options {
        conn::Options {
            include_args: self.include_args,
            max_pending: self.max_pending.max(1),
            limits: resp::Limits::default(),
        }
    }
}

fn default_ports() -> Vec<u16> {
    vec![6379]
}
fn default_tx_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_pending() -> usize {
    1024
}
