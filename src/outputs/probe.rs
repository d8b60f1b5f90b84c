//! `trawl test output`: connects to each output as it would deliver and says what works, check
//! by check (reachable, version, credentials, template; brokers, topic, leaders; folder), without
//! writing anything a user would see.

use super::{elasticsearch, file, kafka};
use crate::config::{from_node, ComponentSpec};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};
use std::path::Path;
use std::time::Duration;

/// How long Kafka metadata may take to come back.
const KAFKA_METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Works, with a remark (a template trawl will install at the first delivery).
    Note,
    Failed,
}

/// One thing checked, and what was found.
#[derive(Debug, Clone)]
pub struct Check {
    pub what: String,
    pub outcome: Outcome,
    pub detail: String,
}

impl Check {
    pub fn ok(what: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            what: what.into(),
            outcome: Outcome::Ok,
            detail: detail.into(),
        }
    }
    pub fn note(what: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            what: what.into(),
            outcome: Outcome::Note,
            detail: detail.into(),
        }
    }
    pub fn failed(what: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            what: what.into(),
            outcome: Outcome::Failed,
            detail: detail.into(),
        }
    }
}

/// Checks the output `spec` describes (already validated by building the pipeline).
pub async fn probe(spec: &ComponentSpec) -> Vec<Check> {
    let config_error = |e: String| vec![Check::failed("configuration", e)];
    match spec.type_name.as_str() {
        "elasticsearch" => match from_node::<elasticsearch::Config>(&spec.node, &spec.path) {
            Ok(c) => elasticsearch::probe(&c).await,
            Err(e) => config_error(e.message),
        },
        "kafka" => match from_node::<kafka::Config>(&spec.node, &spec.path) {
            Ok(c) => {
                let cc = match kafka::client_config(&c) {
                    Ok(cc) => cc,
                    Err(e) => return config_error(e),
                };
                let topic = c.topic.is_static().then(|| c.topic.source().to_owned());
                tokio::task::spawn_blocking(move || kafka_checks(cc, topic.as_deref()))
                    .await
                    .unwrap_or_else(|e| vec![Check::failed("metadata", e.to_string())])
            }
            Err(e) => config_error(e.message),
        },
        "file" => match from_node::<file::Config>(&spec.node, &spec.path) {
            Ok(c) => vec![file_check(&c.path)],
            Err(e) => config_error(e.message),
        },
        other => vec![Check::ok(
            "connection",
            format!("nothing to connect to for a `{other}` output"),
        )],
    }
}

/// Brokers answer metadata; the topic exists (never created by asking); each of its
/// partitions has a leader, which is what a produce needs (ACLs cannot be read without rights
/// of their own, so they are not checked).
fn kafka_checks(mut cc: ClientConfig, topic: Option<&str>) -> Vec<Check> {
    // A metadata request for a missing topic must not create it.
    cc.set("allow.auto.create.topics", "false");
    let producer: BaseProducer = match cc.create() {
        Ok(p) => p,
        Err(e) => return vec![Check::failed("client", e.to_string())],
    };
    let client = producer.client();
    let mut checks = Vec::new();
    let md = match client.fetch_metadata(topic, KAFKA_METADATA_TIMEOUT) {
        Ok(md) => md,
        Err(e) => {
            return vec![Check::failed(
                "metadata",
                format!("no answer from the brokers within {KAFKA_METADATA_TIMEOUT:?}: {e}"),
            )]
        }
    };
    let brokers: Vec<String> = md
        .brokers()
        .iter()
        .map(|b| format!("{}:{} (id {})", b.host(), b.port(), b.id()))
        .collect();
    checks.push(Check::ok(
        "metadata",
        format!("{} broker(s): {}", brokers.len(), brokers.join(", ")),
    ));
    let Some(topic) = topic else {
        checks.push(Check::note(
            "topic",
            "the topic depends on each event: not checked",
        ));
        return checks;
    };
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        checks.push(Check::failed(
            format!("topic {topic}"),
            "not in the brokers' answer",
        ));
        return checks;
    };
    if let Some(e) = t.error() {
        let e = rdkafka::types::RDKafkaErrorCode::from(e);
        checks.push(Check::failed(
            format!("topic {topic}"),
            format!("{e}: the topic does not exist or this client may not see it"),
        ));
        return checks;
    }
    checks.push(Check::ok(
        format!("topic {topic}"),
        format!("exists, {} partition(s)", t.partitions().len()),
    ));
    let leaderless: Vec<String> = t
        .partitions()
        .iter()
        .filter(|p| p.leader() < 0 || p.error().is_some())
        .map(|p| p.id().to_string())
        .collect();
    if t.partitions().is_empty() || !leaderless.is_empty() {
        checks.push(Check::failed(
            "writable",
            format!(
                "partitions without a leader: [{}]; produce requests to them would fail",
                leaderless.join(", ")
            ),
        ));
    } else {
        checks.push(Check::ok("writable", "every partition has a leader"));
    }
    checks
}

/// The output's folder can take a new file (tried with an empty one, removed at once), or, when
/// missing, the nearest existing folder above it can take the folders to create.
fn file_check(path: &Path) -> Check {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let mut existing = folder.as_path();
    while !existing.exists() {
        match existing.parent() {
            Some(p) if !p.as_os_str().is_empty() => existing = p,
            _ => break,
        }
    }
    let what = format!("folder {}", folder.display());
    if path.is_dir() {
        return Check::failed(
            what,
            format!("{} is a folder, expected a file", path.display()),
        );
    }
    let probe = existing.join(format!(".trawl-test-output-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            if existing == folder {
                Check::ok(what, "writable")
            } else {
                Check::ok(what, format!("missing; {} can take it", existing.display()))
            }
        }
        Err(e) => Check::failed(
            what,
            format!("cannot create a file in {}: {e}", existing.display()),
        ),
    }
}
