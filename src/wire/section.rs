//! A protocol's configuration section: the connection settings every protocol has (ports,
//! timeouts, table size, reassembly budgets; defaults per protocol) read from the same map as
//! the protocol's own keys, and `ProtocolConfig`, what a protocol's folder tells about itself.
//!
//! serde's `flatten` does not combine with `deny_unknown_fields`, so `Section` splits the map
//! itself: the connection keys are taken out as they come and every other key goes to the
//! protocol's own struct (which refuses unknown keys), each read where it was written so that
//! an error keeps its file:line:col and key path.

use super::analyzer::{Protocol, Settings};
use crate::config::{ByteSize, Duration};
use serde::de::{
    self, value::MapAccessDeserializer, DeserializeOwned, DeserializeSeed, Deserializer,
    IntoDeserializer, MapAccess, Visitor,
};
use serde::Deserialize;
use std::fmt;
use std::marker::PhantomData;

/// The settings the driver needs of every protocol (`analyzer::Settings` in config units).
#[derive(Clone, Debug, PartialEq)]
pub struct Connection {
    /// Ports that carry the protocol (either end); empty: recognised by content, as the
    /// protocol can (`Protocol::recognize`).
    pub ports: Vec<u16>,
    /// A request without an answer for this long is reported (`event.reason: response_missing`).
    pub transaction_timeout: Duration,
    /// A connection or UDP flow without packets for this long is closed, its open requests
    /// reported.
    pub connection_timeout: Duration,
    /// Most connections (and UDP flows) followed at once; more are counted, not followed.
    pub max_connections: usize,
    /// Out-of-order bytes buffered per direction of a TCP connection.
    pub max_buffer_per_connection: ByteSize,
    /// Out-of-order bytes buffered across all of this protocol's connections.
    pub max_buffer_total: ByteSize,
}

/// The keys of `Connection`, in the order `Split::connection_value` reads them.
const CONNECTION_KEYS: [&str; 6] = [
    "ports",
    "transaction_timeout",
    "connection_timeout",
    "max_connections",
    "max_buffer_per_connection",
    "max_buffer_total",
];

impl Connection {
    /// The defaults most TCP request/response protocols share; a protocol changes what
    /// differs (`ports` always).
    pub fn defaults(ports: &[u16]) -> Connection {
        Connection {
            ports: ports.to_vec(),
            transaction_timeout: Duration::from_secs(10),
            connection_timeout: Duration::from_secs(60),
            max_connections: 50_000,
            max_buffer_per_connection: ByteSize(256 * 1024),
            max_buffer_total: ByteSize(32 * 1024 * 1024),
        }
    }

    /// What the driver needs, in nanoseconds and bytes.
    pub fn settings(&self) -> Settings {
        let ns = |d: &Duration| d.millis.max(0).saturating_mul(1_000_000);
        Settings {
            ports: self.ports.clone(),
            transaction_timeout_ns: ns(&self.transaction_timeout),
            connection_timeout_ns: ns(&self.connection_timeout),
            max_connections: self.max_connections,
            max_buffer_per_connection: self.max_buffer_per_connection.as_usize(),
            max_buffer_total: self.max_buffer_total.as_usize(),
        }
    }
}

/// A protocol's own settings (everything but `Connection`), as its folder defines them, and
/// what the rest of trawl needs to know of the protocol without knowing its type: the type
/// is registered once, in `super::register`.
pub trait ProtocolConfig: DeserializeOwned + Default + Clone + fmt::Debug + Send + 'static {
    /// The key of its section under `protocols:`, `network.protocol`, `event.dataset` and the
    /// `trawl_<name>_*` metric prefix: the analyzer's `Protocol::name`.
    const NAME: &'static str;
    /// What `trawl pcap --only <name>` reports, for `trawl pcap --help`.
    const SUMMARY: &'static str;
    /// The help of `trawl pcap --<name>-ports`: the transports and default ports.
    const PORTS_HELP: &'static str;
    /// This protocol's defaults for the connection settings.
    fn connection_defaults() -> Connection;
    /// The analyzer these settings describe.
    fn protocol(&self, connection: &Connection) -> Box<dyn Protocol>;
    /// Cap on distinct label values per RED metric family, when the protocol sets one (HTTP's
    /// `max_series`); the service map takes the first protocol's that does.
    fn max_series(&self) -> Option<usize> {
        None
    }
}

/// One protocol's section: the shared connection settings and the protocol's own.
#[derive(Clone, Debug)]
pub struct Section<C> {
    pub connection: Connection,
    pub config: C,
}

impl<C: ProtocolConfig> Default for Section<C> {
    fn default() -> Self {
        Section {
            connection: C::connection_defaults(),
            config: C::default(),
        }
    }
}

impl<C: ProtocolConfig> Section<C> {
    /// The section with the default settings on `ports`.
    pub fn on_ports(ports: Vec<u16>) -> Section<C> {
        let mut s = Section::<C>::default();
        s.connection.ports = ports;
        s
    }
}

impl<'de, C: ProtocolConfig> Deserialize<'de> for Section<C> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(SectionVisitor(PhantomData))
    }
}

struct SectionVisitor<C>(PhantomData<C>);

impl<'de, C: ProtocolConfig> Visitor<'de> for SectionVisitor<C> {
    type Value = Section<C>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of protocol settings")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Section<C>, A::Error> {
        let mut split = Split {
            map,
            connection: C::connection_defaults(),
        };
        let config = C::deserialize(MapAccessDeserializer::new(&mut split))?;
        Ok(Section {
            connection: split.connection,
            config,
        })
    }
}

/// The section's map as the protocol's own struct sees it: the connection keys are read
/// into `connection` on the way and never shown to it.
struct Split<A> {
    map: A,
    connection: Connection,
}

impl<'de, A: MapAccess<'de>> Split<A> {
    fn connection_value(&mut self, key: usize) -> Result<(), A::Error> {
        let c = &mut self.connection;
        match key {
            0 => c.ports = self.map.next_value()?,
            1 => c.transaction_timeout = self.map.next_value()?,
            2 => c.connection_timeout = self.map.next_value()?,
            3 => c.max_connections = self.map.next_value()?,
            4 => c.max_buffer_per_connection = self.map.next_value()?,
            _ => c.max_buffer_total = self.map.next_value()?,
        }
        Ok(())
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Split<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let mut seed = Some(seed);
        loop {
            match self.map.next_key_seed(KeySeed(&mut seed))? {
                None => return Ok(None),
                Some(Key::Own(v)) => return Ok(Some(v)),
                Some(Key::Connection(i)) => self.connection_value(i)?,
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

enum Key<K> {
    Connection(usize),
    Own(K),
}

/// Reads a key: a connection key is kept, any other is handed to the protocol's struct while
/// the key's own deserializer is still running, so that "unknown field" is marked at the key.
struct KeySeed<'s, K>(&'s mut Option<K>);

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<'_, K> {
    type Value = Key<K::Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<'de, K: DeserializeSeed<'de>> Visitor<'de> for KeySeed<'_, K> {
    type Value = Key<K::Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a setting name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if let Some(i) = CONNECTION_KEYS.iter().position(|k| *k == v) {
            return Ok(Key::Connection(i));
        }
        let Some(seed) = self.0.take() else {
            return Err(E::custom("a setting name was read twice"));
        };
        seed.deserialize(v.into_deserializer())
            .map(Key::Own)
            .map_err(|e: E| {
                let text = e.to_string();
                if text.starts_with("unknown field") {
                    E::custom(format!(
                        "{text}, or a connection setting: {}",
                        CONNECTION_KEYS.map(|k| format!("`{k}`")).join(", ")
                    ))
                } else {
                    e
                }
            })
    }
}

/// A section given with no settings (`dns:`) turns its analyzer on with its defaults (serde
/// would read the empty value as `None`).
pub fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{from_node, Mark};
    use crate::wire::registry::Protocols;
    use crate::wire::{dns, http, pgsql, redis, tls};

    fn parse(yaml: &str) -> Result<Protocols, crate::config::DeError> {
        let node = crate::config::node::parse(yaml).expect("yaml");
        from_node(&node, "inputs.net.protocols")
    }

    #[test]
    fn connection_keys_and_own_keys_share_one_map_with_per_protocol_defaults() {
        let p = parse("dns: {ports: [5353], transaction_timeout: 2s}\nredis:\n  include_args: true\n  max_connections: 7\npgsql:\n").unwrap();
        let dns = p.get::<dns::DnsConfig>().unwrap();
        assert_eq!(dns.connection.ports, vec![5353]);
        assert_eq!(dns.connection.transaction_timeout, Duration::from_secs(2));
        assert_eq!(
            dns.connection.connection_timeout,
            dns::DnsConfig::connection_defaults().connection_timeout
        );
        let redis = p.get::<redis::RedisConfig>().unwrap();
        assert!(redis.config.include_args);
        assert_eq!(redis.connection.max_connections, 7);
        assert_eq!(redis.connection.ports, vec![6379]);
        assert_eq!(
            p.get::<pgsql::PgsqlConfig>().unwrap().connection.ports,
            vec![5432]
        );
        assert!(p.get::<http::HttpConfig>().is_none() && p.get::<tls::TlsConfig>().is_none());
        assert_eq!(p.names(), ["redis", "pgsql", "dns"]);
    }

    #[test]
    fn a_typo_is_refused_at_its_key_with_the_key_path() {
        let e = parse("tls: {}\nredis:\n  ports: [6379]\n  max_conections: 7\n").unwrap_err();
        assert_eq!(e.mark, Some(Mark { line: 4, col: 3 }), "{e:?}");
        assert_eq!(
            e.path.as_deref(),
            Some("inputs.net.protocols.redis.max_conections")
        );
        assert!(
            e.message.contains("unknown field `max_conections`"),
            "{e:?}"
        );
        assert!(e.message.contains("`max_connections`"), "{e:?}");
        let e = parse("pgsql:\n  transaction_timeout: soon\n").unwrap_err();
        assert_eq!(e.mark, Some(Mark { line: 2, col: 24 }), "{e:?}");
        assert_eq!(
            e.path.as_deref(),
            Some("inputs.net.protocols.pgsql.transaction_timeout")
        );
        let e = parse("mysq: {}\n").unwrap_err();
        assert_eq!(e.mark, Some(Mark { line: 1, col: 1 }), "{e:?}");
    }
}
