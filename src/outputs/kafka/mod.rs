//! The `kafka` output, on librdkafka (bundled with the `rdkafka` crate): topic and key
//! templated from the event, headers, compression, `acks: all` with idempotence by default.
//! librdkafka's delivery reports settle the batches (`reports.rs`); a message refused for good
//! (too large, unknown topic) goes to the dead letters. Messages are retried without limit by
//! default, so a broker outage pauses the pipeline (librdkafka's bounded queue fills) instead
//! of losing data.

mod deliver;
mod polled;
mod producer;
mod reports;

use super::template::Template;
use crate::config::{ByteSize, Duration};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    #[default]
    Lz4,
    Zstd,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Acks {
    /// Every in-sync replica has the message (required by idempotence).
    #[default]
    All,
    /// The partition leader has it.
    One,
    /// Nobody confirms (fire and forget; implies no delivery guarantee).
    None,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The event as one JSON object.
    #[default]
    Json,
    /// The `message` field as is (events without one are sent as JSON).
    Raw,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the certificate authorities to trust.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Verify the broker's certificate and name.
    #[serde(default = "yes")]
    pub verify: bool,
}

fn yes() -> bool {
    true
}

/// A bootstrap broker as librdkafka reads one: `host`, `host:port` or `[v6]:port`, after an
/// optional security protocol (`SSL://`...). Checked when the configuration is read, so that a
/// typo is reported at its line rather than as an unreachable broker once running.
#[derive(Debug, Clone, PartialEq)]
pub struct Broker(String);

impl Broker {
    pub fn parse(s: &str) -> Result<Broker, String> {
        let s = s.trim();
        let expected = "expected `host:port` (or `host`, port 9092), e.g. `kafka-0.kafka:9092`";
        let hostport = match s.split_once("://") {
            Some((proto, rest)) => {
                let known = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];
                if !known.contains(&proto.to_ascii_lowercase().as_str()) {
                    return Err(format!(
                        "broker `{s}`: `{proto}://` is not a Kafka security protocol \
                         (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL); {expected}"
                    ));
                }
                rest
            }
            None => s,
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            match v6.split_once(']') {
                Some((addr, rest)) if addr.parse::<std::net::Ipv6Addr>().is_ok() => {
                    (addr, rest.strip_prefix(':'))
                }
                _ => {
                    return Err(format!(
                        "broker `{s}`: not an IPv6 address in `[]`; {expected}"
                    ))
                }
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let name_ok = hostport.starts_with('[')
            || (!host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')));
        if !name_ok {
            return Err(format!(
                "broker `{s}`: `{host}` is not a host name; {expected}"
            ));
        }
        if let Some(p) = port {
            if !matches!(p.parse::<u16>(), Ok(1..)) {
                return Err(format!(
                    "broker `{s}`: `{p}` is not a port (1-65535); {expected}"
                ));
            }
        }
        Ok(Broker(s.to_owned()))
    }
}

impl<'de> Deserialize<'de> for Broker {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Parsing inside the visitor lets the error carry the value's position.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Broker;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a broker such as kafka-0.kafka:9092")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Broker, E> {
                Broker::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<Broker>,
    /// Topic, with `%{[field]}` and date conversions.
    pub topic: Template,
    /// Message key (decides the partition); absent: librdkafka spreads messages.
    #[serde(default)]
    pub key: Option<Template>,
    /// Headers added to every message: name -> template.
    #[serde(default)]
    pub headers: BTreeMap<String, Template>,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default)]
    pub acks: Acks,
    /// Idempotent producer: no duplicates or reordering from librdkafka's own retries.
    #[serde(default = "yes")]
    pub idempotence: bool,
    #[serde(default)]
    pub encoding: Encoding,
    /// Larger messages go to the dead letters (librdkafka `message.max.bytes`).
    #[serde(default = "default_max_message")]
    pub max_message_bytes: ByteSize,
    /// Memory librdkafka may hold for messages not yet delivered; when full, the output waits
    /// (and so do the inputs). Also sizes librdkafka's produce requests (`batch.size`, an eighth
    /// of this, at most 1 MB), so that requests being sent do not hold as much again.
    #[serde(default = "default_queue_bytes")]
    pub queue_max_bytes: ByteSize,
    /// Most messages librdkafka may hold undelivered (each costs memory beyond its payload).
    #[serde(default = "default_queue_messages")]
    pub queue_max_messages: usize,
    /// Give up on a message after this long (its batch is then failed and read again by inputs
    /// that can); absent: retry without limit.
    #[serde(default)]
    pub delivery_timeout: Option<Duration>,
    /// How long librdkafka waits to fill a message batch (`linger.ms`).
    #[serde(default = "default_linger")]
    pub linger: Duration,
    #[serde(default)]
    pub sasl: Option<SaslConfig>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Any other librdkafka setting, passed as is (they win over the keys above). Its `debug`
    /// contexts' output shows with `--log-level debug` (or `info,trawl::outputs::kafka=debug`).
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

/// Without `delivery_timeout`, how long librdkafka keeps trying a message before the output
/// takes it back and produces it again through a new producer (`Reports::take_back`,
/// `Producers::resend`): an attempt that never ends (a partition's messages held after a leader
/// change, reproduced with the hung-broker test) then costs at most this long. The Java producer's `delivery.timeout.ms`; `librdkafka: {message.timeout.ms: ..}`
/// changes it.
const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

fn default_max_message() -> ByteSize {
    ByteSize(1_000_000)
}
// 2 MiB and 5,000 messages keep librdkafka's heap near 5 MB at full speed (13 MB with 8 MiB
// and 20,000) for the same throughput: the broker, not the queue, is what limits a busy producer.
fn default_queue_bytes() -> ByteSize {
    ByteSize(2 << 20)
}
fn default_queue_messages() -> usize {
    5_000
}
fn default_linger() -> Duration {
    Duration::from_millis(5)
}

pub struct Kafka {
    config: Config,
    client: ClientConfig,
}

impl Kafka {
    pub fn new(config: Config) -> Result<Kafka, String> {
        let client = client_config(&config)?;
        Ok(Kafka { config, client })
    }
}

/// librdkafka settings from the configuration.
pub(crate) fn client_config(c: &Config) -> Result<ClientConfig, String> {
    if c.brokers.is_empty() {
        return Err("`brokers` must list at least one broker".into());
    }
    if c.idempotence && c.acks != Acks::All {
        return Err("`idempotence: true` needs `acks: all`".into());
    }
    let mut cc = ClientConfig::new();
    let brokers: Vec<&str> = c.brokers.iter().map(|b| b.0.as_str()).collect();
    cc.set("bootstrap.servers", brokers.join(","))
        .set("client.id", "trawl")
        .set(
            "compression.codec",
            match c.compression {
                Compression::None => "none",
                Compression::Gzip => "gzip",
                Compression::Snappy => "snappy",
                Compression::Lz4 => "lz4",
                Compression::Zstd => "zstd",
            },
        )
        .set(
            "acks",
            match c.acks {
                Acks::All => "all",
                Acks::One => "1",
                Acks::None => "0",
            },
        )
        .set(
            "enable.idempotence",
            if c.idempotence { "true" } else { "false" },
        )
        .set(
            "message.max.bytes",
            c.max_message_bytes.bytes().max(1000).to_string(),
        )
        .set(
            "queue.buffering.max.kbytes",
            (c.queue_max_bytes.bytes() / 1024).max(1).to_string(),
        )
        .set(
            "queue.buffering.max.messages",
            c.queue_max_messages.max(1).to_string(),
        )
        .set("batch.size", batch_size(c).to_string())
        .set(
            "message.timeout.ms",
            c.delivery_timeout
                .map_or(ATTEMPT_TIMEOUT, |d| d.std())
                .as_millis()
                .to_string(),
        )
        .set("linger.ms", c.linger.std().as_millis().to_string())
        // librdkafka's reconnect back-off doubles up to 10 s: a broker back from a restart
        // waited up to that long for its first produce while inputs stood still. 2 s costs one
        // connection attempt every 2 s to a broker that is down.
        .set("reconnect.backoff.max.ms", "2000")
        // Statistics only for the messages librdkafka sends again on its own, counted in
        // trawl_output_retries_total: once every 5 s, a JSON document parsed for that alone.
        .set("statistics.interval.ms", "5000")
        .set_log_level(RDKafkaLogLevel::Warning);
    if c.idempotence {
        // One produce request in flight per broker. With more, a request refused without
        // being written (NOT_ENOUGH_REPLICAS as a partition's ISR shrinks or grows back, a
        // leader moving) makes the next one in flight fail OUT_OF_ORDER_SEQUENCE, and
        // librdkafka then bumps the producer epoch: a message possibly written on another
        // partition is sent again under the new epoch, where the broker cannot tell it is a
        // copy (librdkafka issue #4953). The likely cause of 2 lines CI saw twice with two of
        // three brokers down.
        cc.set("max.in.flight.requests.per.connection", "1");
    }
    let protocol = match (&c.sasl, &c.tls) {
        (Some(_), Some(_)) => "sasl_ssl",
        (Some(_), None) => "sasl_plaintext",
        (None, Some(_)) => "ssl",
        (None, None) => "plaintext",
    };
    cc.set("security.protocol", protocol);
    if let Some(s) = &c.sasl {
        if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&s.mechanism.as_str()) {
            return Err(format!(
                "sasl.mechanism `{}`: expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                s.mechanism
            ));
        }
        cc.set("sasl.mechanism", &s.mechanism)
            .set("sasl.username", &s.username)
            .set("sasl.password", &s.password);
    }
    if let Some(t) = &c.tls {
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        if t.cert_file.is_some() != t.key_file.is_some() {
            return Err("`tls.cert_file` and `tls.key_file` go together (mutual TLS)".into());
        }
        check_tls_files(t).map_err(|(key, why)| format!("tls.{key} {why}"))?;
        if let Some(p) = &t.ca_file {
            cc.set("ssl.ca.location", path(p));
        }
        if let Some(p) = &t.cert_file {
            cc.set("ssl.certificate.location", path(p));
        }
        if let Some(p) = &t.key_file {
            cc.set("ssl.key.location", path(p));
        }
        cc.set(
            "enable.ssl.certificate.verification",
            if t.verify { "true" } else { "false" },
        );
        if !t.verify {
            cc.set("ssl.endpoint.identification.algorithm", "none");
        }
    }
    for (k, v) in &c.librdkafka {
        cc.set(k, v);
    }
    // `debug` contexts log at librdkafka's debug level, which the level above drops in
    // librdkafka itself: asked for, they reach trawl's log (at `debug`, like trawl's own).
    if c.librdkafka.contains_key("debug") {
        cc.set_log_level(RDKafkaLogLevel::Debug);
    }
    // librdkafka checks each name and value as it takes them: an unknown property is an error
    // now, not when the producer starts.
    cc.create_native_config()
        .map_err(|e| format!("librdkafka: {e}"))?;
    Ok(cc)
}

/// Asks librdkafka about each of `properties` (`librdkafka:` in the pipeline file): the name of
/// the first it refuses, with its reason.
pub fn check_properties(properties: &BTreeMap<String, String>) -> Result<(), (String, String)> {
    for (k, v) in properties {
        ClientConfig::new()
            .set(k, v)
            .create_native_config()
            .map_err(|e| (k.clone(), format!("librdkafka refuses `{k}: {v}`: {e}")))?;
    }
    // What only a client made of them all finds: a CA file that is missing, a SASL mechanism
    // this build has no provider for. Without brokers the client connects nowhere.
    if !properties.is_empty() {
        let mut cc = ClientConfig::new();
        for (k, v) in properties {
            cc.set(k, v);
        }
        if let Err(e) = cc.create::<rdkafka::producer::BaseProducer>() {
            return Err((
                String::new(),
                format!("librdkafka cannot make a client of these settings: {e}"),
            ));
        }
    }
    Ok(())
}

/// A topic name Kafka accepts: 1 to 249 of `a-z A-Z 0-9 . _ -`, not `.` or `..`.
pub fn check_topic_name(topic: &str) -> Result<(), String> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if topic.is_empty() {
        Err("empty: expected a topic name".into())
    } else if topic.len() > 249 || topic == "." || topic == ".." || !topic.chars().all(legal) {
        // A name built from an event's field may be long or hold control characters.
        let shown: String = topic.chars().take(250).collect::<String>();
        let cut = if shown.len() < topic.len() { "…" } else { "" };
        Err(format!(
            "`{}{cut}` is not a Kafka topic name: expected 1 to 249 of a-z, A-Z, 0-9, `.`, `_`, `-`",
            shown.escape_debug()
        ))
    } else {
        Ok(())
    }
}

/// Checks that the files under `tls:` can be read and hold PEM blocks of their kind; an error
/// comes with the key of the file (`ca_file`). librdkafka would only say so when the producer
/// starts, in OpenSSL's words.
pub fn check_tls_files(t: &TlsConfig) -> Result<(), (&'static str, String)> {
    for (key, file, kind) in [
        ("ca_file", &t.ca_file, "CERTIFICATE"),
        ("cert_file", &t.cert_file, "CERTIFICATE"),
        ("key_file", &t.key_file, "PRIVATE KEY"),
    ] {
        check_pem(file, kind).map_err(|why| (key, why))?;
    }
    Ok(())
}

/// Checks that `file` (when set) can be read and holds a PEM block of `kind`.
fn check_pem(file: &Option<PathBuf>, kind: &str) -> Result<(), String> {
    let Some(p) = file else {
        return Ok(());
    };
    let text = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
    let marker = "-----BEGIN ";
    let found = String::from_utf8_lossy(&text)
        .lines()
        .any(|l| l.starts_with(marker) && l.trim_end().ends_with(&format!("{kind}-----")));
    if found {
        Ok(())
    } else {
        Err(format!(
            "{}: no PEM `{kind}` block found (expected a -----BEGIN ...{kind}----- line)",
            p.display()
        ))
    }
}

/// librdkafka's most bytes in one produce request: an eighth of the queue, so that the requests
/// in flight (up to 5 per broker with idempotence) stay within the queue's own size.
fn batch_size(c: &Config) -> u64 {
    (c.queue_max_bytes.bytes() / 8).clamp(16 * 1024, 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::deliver::encode;
    use super::reports::{event_from_payload, resent_since};
    use super::*;
    use crate::event::{Event, Value};
    use std::collections::HashMap;
    use std::path::Path;
    use std::sync::Arc;

    fn config(extra: &str) -> Config {
        let text = format!("outputs:\n  k:\n    type: kafka\n    brokers: [\"127.0.0.1:9092\"]\n    topic: logs\n{extra}");
        let p = crate::config::parse_str(
            "t.yaml",
            &format!("inputs: {{ i: {{ type: stdin }} }}\n{text}"),
            &|_| None,
        )
        .unwrap();
        crate::config::from_node(&p.outputs[0].spec.node, "outputs.k").unwrap()
    }

    /// librdkafka's forms pass as written; typos that would only show as an unreachable
    /// broker once running are refused, naming the broker.
    #[test]
    fn brokers_are_checked_as_librdkafka_reads_them() {
        for ok in [
            "kafka-0.kafka.svc:9092",
            "kafka",
            "10.0.0.5:19092",
            "[::1]:9092",
            "SSL://kafka:9093",
            "sasl_ssl://b-1.msk.example.com:9096",
            "my_broker:9092",
        ] {
            assert_eq!(Broker::parse(ok).map(|b| b.0), Ok(ok.to_owned()), "{ok}");
        }
        for bad in [
            "kafka//x:9092",
            "http://kafka:9092",
            "kafka:port",
            "kafka:0",
            "kafka:70000",
            ":9092",
            "",
            "[::1:9092",
            "kafka 9092",
        ] {
            let err = Broker::parse(bad).unwrap_err();
            assert!(
                err.contains(&format!("`{bad}`")) && err.contains("expected"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn settings_reach_librdkafka() {
        let c = config("    compression: zstd\n    sasl: { mechanism: SCRAM-SHA-512, username: u, password: p }\n    tls: { verify: false }\n    librdkafka: { linger.ms: \"50\" }\n");
        let cc = client_config(&c).unwrap();
        assert_eq!(cc.get("compression.codec"), Some("zstd"));
        assert_eq!(cc.get("acks"), Some("all"));
        assert_eq!(cc.get("enable.idempotence"), Some("true"));
        assert_eq!(
            cc.get("max.in.flight.requests.per.connection"),
            Some("1"),
            "idempotent: no second request in flight to fail out of order and bump the epoch"
        );
        let taken_back = client_config(&config(
            "    librdkafka: { max.in.flight.requests.per.connection: \"5\" }\n",
        ))
        .unwrap();
        assert_eq!(
            taken_back.get("max.in.flight.requests.per.connection"),
            Some("5")
        );
        let plain = client_config(&config("    acks: one\n    idempotence: false\n")).unwrap();
        assert_eq!(
            plain.get("max.in.flight.requests.per.connection"),
            None,
            "librdkafka's own default without idempotence"
        );
        assert_eq!(cc.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(cc.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(cc.get("linger.ms"), Some("50"), "passthrough wins");
        assert_eq!(
            cc.get("message.timeout.ms"),
            Some("120000"),
            "each attempt bounded; the output takes a message back and produces it again"
        );
        let bounded = client_config(&config(
            "    delivery_timeout: 30s
",
        ))
        .unwrap();
        assert_eq!(bounded.get("message.timeout.ms"), Some("30000"));
        assert_eq!(cc.get("queue.buffering.max.messages"), Some("5000"));
        assert_eq!(cc.get("queue.buffering.max.kbytes"), Some("2048"));
        assert_eq!(
            cc.get("batch.size"),
            Some("262144"),
            "an eighth of the queue"
        );
        let big = client_config(&config("    queue_max_bytes: 64MiB\n")).unwrap();
        assert_eq!(
            big.get("batch.size"),
            Some("1000000"),
            "librdkafka's default at most"
        );
    }

    #[test]
    fn tls_files_reach_librdkafka_and_bad_ones_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let cert = dir.path().join("client.pem");
        let key = dir.path().join("client.key");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let tls = |ca: &Path, cert: &Path, key: &Path| {
            format!(
                "    tls: {{ ca_file: \"{}\", cert_file: \"{}\", key_file: \"{}\" }}\n",
                ca.display(),
                cert.display(),
                key.display()
            )
        };
        let cc = client_config(&config(&tls(&ca, &cert, &key))).unwrap();
        assert_eq!(cc.get("security.protocol"), Some("ssl"));
        assert_eq!(cc.get("ssl.ca.location"), Some(ca.to_str().unwrap()));
        assert_eq!(
            cc.get("ssl.certificate.location"),
            Some(cert.to_str().unwrap())
        );
        assert_eq!(cc.get("ssl.key.location"), Some(key.to_str().unwrap()));
        assert_eq!(cc.get("enable.ssl.certificate.verification"), Some("true"));
        assert_eq!(
            cc.get("ssl.endpoint.identification.algorithm"),
            None,
            "librdkafka's default (https) stays"
        );
        let sasl = client_config(&config(
            "    sasl: { mechanism: PLAIN, username: u, password: p }\n",
        ))
        .unwrap();
        assert_eq!(sasl.get("security.protocol"), Some("sasl_plaintext"));
        assert_eq!(sasl.get("sasl.username"), Some("u"));
        assert_eq!(sasl.get("sasl.password"), Some("p"));

        let missing = dir.path().join("nope.pem");
        let err = client_config(&config(&tls(&missing, &cert, &key))).unwrap_err();
        assert!(
            err.starts_with("tls.ca_file")
                && err.contains("nope.pem")
                && err.contains("No such file"),
            "{err}"
        );
        // A key where the CA belongs.
        let err = client_config(&config(&tls(&key, &cert, &key))).unwrap_err();
        assert!(
            err.contains("tls.ca_file") && err.contains("no PEM `CERTIFICATE` block"),
            "{err}"
        );
        let err = client_config(&config(&tls(&ca, &cert, &ca))).unwrap_err();
        assert!(
            err.contains("tls.key_file") && err.contains("PRIVATE KEY"),
            "{err}"
        );
        let err = client_config(&config(&format!(
            "    tls: {{ cert_file: \"{}\" }}\n",
            cert.display()
        )))
        .unwrap_err();
        assert!(err.contains("go together"), "{err}");
    }

    #[test]
    fn idempotence_needs_acks_all() {
        assert!(client_config(&config("    acks: one\n")).is_err());
        assert!(client_config(&config("    acks: one\n    idempotence: false\n")).is_ok());
        assert!(client_config(&config(
            "    sasl: { mechanism: GSSAPI, username: u, password: p }\n"
        ))
        .is_err());
    }

    #[test]
    fn raw_encoding_and_payload_round_trip() {
        let mut e = Event::from_message("i".into(), chrono::Utc::now(), "hello".into());
        e.insert("a.b", 1i64);
        let mut out = Vec::new();
        encode(&e, Encoding::Raw, &mut out);
        assert_eq!(out, b"hello");
        out.clear();
        encode(&e, Encoding::Json, &mut out);
        let back = event_from_payload(&Arc::from("i"), &out, Encoding::Json);
        assert_eq!(back.get("a.b"), Some(&Value::Int(1)));
    }

    /// librdkafka's statistics (abridged from a real document: partitions carry many more
    /// fields): a partition's re-sends are counted once as they grow, what its queue still
    /// holds unsent does not count, the not-yet-partitioned queue (-1) and brokers' request
    /// retries do not count, and what does not parse counts nothing.
    #[test]
    fn messages_librdkafka_sent_again_are_counted_once() {
        // (txmsgs, msgs, msgq_cnt) for partitions 0 and 1 of topic `logs`.
        let doc = |p0: (u64, u64, u64), p1: (u64, u64, u64)| {
            let part = |id: i64, (tx, msgs, q): (u64, u64, u64)| {
                serde_json::json!({"partition": id, "leader": 1, "msgq_cnt": q,
                    "msgq_bytes": q * 30, "xmit_msgq_cnt": 0, "txmsgs": tx, "txbytes": tx * 30,
                    "msgs": msgs, "msgs_inflight": 0, "acked_msgid": 0})
            };
            serde_json::json!({"name": "trawl#producer-1", "type": "producer", "msg_cnt": 12,
                "txmsgs": p0.0 + p1.0,
                "brokers": {"127.0.0.1:9092/1": {"nodeid": 1, "state": "UP", "txretries": 7}},
                "topics": {"logs": {"topic": "logs", "partitions": {
                    "0": part(0, p0), "1": part(1, p1),
                    "-1": part(-1, (0, 0, 40))}}}})
            .to_string()
        };
        let mut seen = HashMap::new();
        // 100 produced to each, 90 sent, 10 waiting: nothing sent twice.
        let none = doc((90, 100, 10), (90, 100, 10));
        assert_eq!(resent_since(&mut seen, none.as_bytes()), 0);
        // The connection drops under 30 messages of partition 0: back in its queue.
        let put_back = doc((90, 100, 40), (100, 100, 0));
        assert_eq!(resent_since(&mut seen, put_back.as_bytes()), 30);
        // Sent again and acknowledged: the same 30, not counted twice.
        let again = doc((130, 100, 0), (100, 100, 0));
        assert_eq!(resent_since(&mut seen, again.as_bytes()), 0);
        // New messages waiting, then a second re-send of 5 on partition 1.
        let more = doc((130, 150, 50), (105, 100, 0));
        assert_eq!(resent_since(&mut seen, more.as_bytes()), 5);
        assert_eq!(resent_since(&mut seen, b"{not json"), 0);
        assert_eq!(resent_since(&mut seen, more.as_bytes()), 0);
    }
}
