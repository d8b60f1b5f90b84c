//! The registered protocols and the ones a packet input runs: `super::register` names each
//! protocol's config type once, and everything that lists protocols (the `protocols:` section,
//! `trawl pcap`'s options, the shorthand input types) reads that one list from here.
//!
//! A configured protocol is held type-erased (`Configured`), in the order protocols claim a
//! connection by content, which is the order of `super::register`.

use super::analyzer::Protocol;
use super::section::{Connection, ProtocolConfig, Section};
use crate::config::{from_node, DeError, Node};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::any::Any;
use std::fmt;
use std::sync::OnceLock;

/// What `super::register` tells about each protocol: its config type, once.
pub trait Registry {
    fn protocol<C: ProtocolConfig>(&mut self);
}

/// A registered protocol as code that does not know its type sees it.
pub struct Registered {
    /// The config key, `network.protocol` and metric prefix (`ProtocolConfig::NAME`).
    pub name: &'static str,
    /// What `trawl pcap --only <name>` reports (`ProtocolConfig::SUMMARY`).
    pub summary: &'static str,
    /// The help of `trawl pcap --<name>-ports` (`ProtocolConfig::PORTS_HELP`).
    pub ports_help: &'static str,
    /// The section with its defaults, as `<name>:` alone gives it.
    pub default: fn() -> Box<dyn Configured>,
    /// The section read from a config node whose key path is the second argument.
    pub read: ReadSection,
}

/// Reads a protocol's section from a config node at a key path.
pub type ReadSection = fn(&Node, &str) -> Result<Box<dyn Configured>, DeError>;

fn default_section<C: ProtocolConfig>() -> Box<dyn Configured> {
    Box::new(Section::<C>::default())
}

fn read_section<C: ProtocolConfig>(
    node: &Node,
    path: &str,
) -> Result<Box<dyn Configured>, DeError> {
    Ok(Box::new(from_node::<Section<C>>(node, path)?))
}

/// Every registered protocol, in claiming order.
pub fn registered() -> &'static [Registered] {
    struct Table(Vec<Registered>);
    impl Registry for Table {
        fn protocol<C: ProtocolConfig>(&mut self) {
            self.0.push(Registered {
                name: C::NAME,
                summary: C::SUMMARY,
                ports_help: C::PORTS_HELP,
                default: default_section::<C>,
                read: read_section::<C>,
            });
        }
    }
    static TABLE: OnceLock<Vec<Registered>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Table(Vec::new());
        super::register(&mut t);
        t.0
    })
}

/// The registered protocol called `name`.
pub fn find(name: &str) -> Option<&'static Registered> {
    registered().iter().find(|r| r.name == name)
}

/// The names of the registered protocols, in claiming order (serde's "expected one of").
pub fn names() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| registered().iter().map(|r| r.name).collect())
}

/// One configured protocol, whatever its type: a `Section<C>` of a registered `C`.
pub trait Configured: fmt::Debug + Send {
    fn name(&self) -> &'static str;
    /// The shared connection settings (`ports` and the rest).
    fn connection(&self) -> &Connection;
    fn connection_mut(&mut self) -> &mut Connection;
    /// Its analyzer.
    fn open(&self) -> Box<dyn Protocol>;
    /// `ProtocolConfig::max_series`.
    fn max_series(&self) -> Option<usize>;
    fn clone_box(&self) -> Box<dyn Configured>;
    /// For `Protocols::get`.
    fn as_any(&self) -> &dyn Any;
}

impl<C: ProtocolConfig> Configured for Section<C> {
    fn name(&self) -> &'static str {
        C::NAME
    }
    fn connection(&self) -> &Connection {
        &self.connection
    }
    fn connection_mut(&mut self) -> &mut Connection {
        &mut self.connection
    }
    fn open(&self) -> Box<dyn Protocol> {
        self.config.protocol(&self.connection)
    }
    fn max_series(&self) -> Option<usize> {
        self.config.max_series()
    }
    fn clone_box(&self) -> Box<dyn Configured> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The protocols a packet input runs (`protocols:` of `packet` and `pcap_file`), each at most
/// once, in claiming order.
#[derive(Debug, Default)]
pub struct Protocols {
    sections: Vec<Box<dyn Configured>>,
}

impl Clone for Protocols {
    fn clone(&self) -> Self {
        Protocols {
            sections: self.sections.iter().map(|s| s.clone_box()).collect(),
        }
    }
}

impl Protocols {
    /// Adds a protocol's section, in its claiming place; one already there is replaced.
    pub fn insert(&mut self, section: Box<dyn Configured>) {
        let rank = |name: &str| names().iter().position(|n| *n == name);
        self.sections.retain(|s| s.name() != section.name());
        let at = self
            .sections
            .iter()
            .position(|s| rank(s.name()) > rank(section.name()))
            .unwrap_or(self.sections.len());
        self.sections.insert(at, section);
    }

    /// `insert` of a section whose type the caller knows.
    pub fn with<C: ProtocolConfig>(mut self, section: Section<C>) -> Protocols {
        self.insert(Box::new(section));
        self
    }

    /// The section of protocol `C`, when configured.
    pub fn get<C: ProtocolConfig>(&self) -> Option<&Section<C>> {
        self.sections
            .iter()
            .find_map(|s| s.as_any().downcast_ref::<Section<C>>())
    }

    /// Whether the protocol called `name` is configured.
    pub fn contains(&self, name: &str) -> bool {
        self.sections.iter().any(|s| s.name() == name)
    }

    /// The configured analyzers, in the order they claim connections.
    pub fn open(&self) -> Vec<Box<dyn Protocol>> {
        self.sections.iter().map(|s| s.open()).collect()
    }

    /// Whether no protocol is configured.
    pub fn is_empty(&self) -> bool {
        self.sections.is_empty()
    }

    /// Names of the configured protocols, in claiming order.
    pub fn names(&self) -> Vec<&'static str> {
        self.sections.iter().map(|s| s.name()).collect()
    }

    /// The service map's cap on label values: the first configured protocol's that has one.
    pub fn max_series(&self) -> Option<usize> {
        self.sections.iter().find_map(|s| s.max_series())
    }
}

impl<'de> Deserialize<'de> for Protocols {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ProtocolsVisitor)
    }
}

struct ProtocolsVisitor;

impl<'de> Visitor<'de> for ProtocolsVisitor {
    type Value = Protocols;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of protocol sections")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Protocols, A::Error> {
        let mut protocols = Protocols::default();
        while let Some(name) = map.next_key_seed(NameSeed)? {
            if protocols.contains(name) {
                return Err(de::Error::duplicate_field(name));
            }
            let mut read = ReadValue {
                name,
                map: &mut map,
                section: None,
                de: std::marker::PhantomData,
            };
            super::register(&mut read);
            match read.section {
                Some(section) => protocols.insert(section?),
                None => return Err(de::Error::unknown_field(name, names())),
            }
        }
        Ok(protocols)
    }
}

/// A key of `protocols:`: a registered name, or "unknown field" marked at the key.
struct NameSeed;

impl<'de> DeserializeSeed<'de> for NameSeed {
    type Value = &'static str;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for NameSeed {
    type Value = &'static str;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a protocol name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        names()
            .iter()
            .find(|n| **n == v)
            .copied()
            .ok_or_else(|| E::unknown_field(v, names()))
    }
}

/// Reads the value of the key `name` as the section of the registered type with that name.
struct ReadValue<'m, 'de, A: MapAccess<'de>> {
    name: &'static str,
    map: &'m mut A,
    section: Option<Result<Box<dyn Configured>, A::Error>>,
    de: std::marker::PhantomData<&'de ()>,
}

impl<'de, A: MapAccess<'de>> Registry for ReadValue<'_, 'de, A> {
    fn protocol<C: ProtocolConfig>(&mut self) {
        if self.section.is_none() && C::NAME == self.name {
            // `dns:` with no settings is an empty map for `Section`: the defaults.
            let read = self.map.next_value::<Section<C>>();
            self.section = Some(read.map(|s| Box::new(s) as Box<dyn Configured>));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config key is the analyzer's name, and each is registered once.
    #[test]
    fn each_registered_name_is_its_analyzers_name_once() {
        for r in registered() {
            assert_eq!((r.default)().open().name(), r.name);
            assert_eq!((r.default)().name(), r.name);
            assert_eq!(names().iter().filter(|n| **n == r.name).count(), 1);
        }
        assert_eq!(
            names(),
            ["http2", "http", "tls", "redis", "pgsql", "mysql", "dns"]
        );
    }

    #[test]
    fn an_unknown_protocol_is_refused_at_its_key_naming_the_registered_ones() {
        let node = crate::config::node::parse("dns: {}\nmysq: {}\n").expect("yaml");
        let e = from_node::<Protocols>(&node, "inputs.net.protocols").unwrap_err();
        assert_eq!(
            e.path.as_deref(),
            Some("inputs.net.protocols.mysq"),
            "{e:?}"
        );
        assert_eq!(
            e.mark,
            Some(crate::config::Mark { line: 2, col: 1 }),
            "{e:?}"
        );
        for name in names() {
            assert!(e.message.contains(&format!("`{name}`")), "{e:?}");
        }
    }

    #[test]
    fn sections_keep_the_claiming_order_whatever_the_insertion_order() {
        let mut p = Protocols::default();
        for name in ["dns", "http", "redis", "http2"] {
            p.insert((find(name).unwrap().default)());
        }
        assert_eq!(p.names(), ["http2", "http", "redis", "dns"]);
        let mut dns = (find("dns").unwrap().default)();
        dns.connection_mut().ports = vec![5353];
        p.insert(dns);
        assert_eq!(p.names(), ["http2", "http", "redis", "dns"]);
        assert_eq!(
            p.get::<super::super::dns::DnsConfig>()
                .unwrap()
                .connection
                .ports,
            [5353]
        );
    }
}
