//! `trawl test output`: connects to each output as it would deliver and says what works, check
//! by check (reachable, version, credentials, template; brokers, topic, leaders, write
//! permission; folder), without writing anything a user would see.

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
/// partitions has a leader, and the broker lets this client write to it: what a produce needs.
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
        checks.push(match write_authorized(client.native_ptr(), topic) {
            Ok(Some(true)) => Check::ok(
                "writable",
                "every partition has a leader, and the broker lets this client write to it",
            ),
            Ok(Some(false)) => Check::failed(
                "writable",
                "the broker's ACLs do not let this client write to it (WRITE is not among its \
                 authorized operations on the topic); produce requests would be refused",
            ),
            Ok(None) => Check::note(
                "writable",
                "every partition has a leader; the broker does not report this client's \
                 permissions (before Kafka 2.3)",
            ),
            Err(e) => Check::note(
                "writable",
                format!("every partition has a leader; permissions not checked: {e}"),
            ),
        });
    }
    checks
}

/// Whether the broker lets this client write to `topic`: a DescribeTopics request asking for
/// the client's own authorized operations (KIP-430, Kafka 2.3+), which needs no right beyond
/// seeing the topic, so even ACLs that refuse produce requests are found without producing.
/// `Ok(None)` when the broker does not report them.
fn write_authorized(
    rk: *mut rdkafka::bindings::rd_kafka_t,
    topic: &str,
) -> Result<Option<bool>, String> {
    use rdkafka::bindings as rd;
    use std::ffi::{c_char, CString};

    let name = CString::new(topic).map_err(|_| "the topic name holds a NUL byte".to_owned())?;
    let timeout_ms = KAFKA_METADATA_TIMEOUT.as_millis() as i32;
    // SAFETY: `rk` is the live handle of the producer `kafka_checks` holds for the whole call.
    // Every object made here is destroyed below, after the answer was read out of the event
    // (the event owns the descriptions the answer points into); the names array and the CString
    // outlive the call that copies them.
    unsafe {
        let mut names = [name.as_ptr()];
        let topics = rd::rd_kafka_TopicCollection_of_topic_names(names.as_mut_ptr(), 1);
        let options = rd::rd_kafka_AdminOptions_new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
        );
        let queue = rd::rd_kafka_queue_new(rk);
        let mut errstr = [0 as c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options,
            timeout_ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        let err = rd::rd_kafka_AdminOptions_set_include_authorized_operations(options, 1);
        if !err.is_null() {
            rd::rd_kafka_error_destroy(err);
        }
        rd::rd_kafka_DescribeTopics(rk, topics, options, queue);
        let event = rd::rd_kafka_queue_poll(queue, timeout_ms.saturating_add(1000));
        let answer = if event.is_null() {
            Err(format!("no answer within {KAFKA_METADATA_TIMEOUT:?}"))
        } else if rd::rd_kafka_event_type(event) != rd::RD_KAFKA_EVENT_DESCRIBETOPICS_RESULT {
            Err("an unexpected answer to DescribeTopics".to_owned())
        } else if rd::rd_kafka_event_error(event)
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            Err(text(rd::rd_kafka_event_error_string(event)))
        } else {
            let result = rd::rd_kafka_event_DescribeTopics_result(event);
            let mut count = 0;
            let descriptions = rd::rd_kafka_DescribeTopics_result_topics(result, &mut count);
            if descriptions.is_null() || count == 0 {
                Err("the broker described no topic".to_owned())
            } else {
                let description = *descriptions;
                let error = rd::rd_kafka_TopicDescription_error(description);
                if !error.is_null()
                    && rd::rd_kafka_error_code(error)
                        != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                {
                    Err(text(rd::rd_kafka_error_string(error)))
                } else {
                    let mut n = 0;
                    let ops =
                        rd::rd_kafka_TopicDescription_authorized_operations(description, &mut n);
                    if ops.is_null() {
                        Ok(None)
                    } else {
                        // Read as integers: a code this librdkafka does not know is no enum value.
                        let ops = std::slice::from_raw_parts(ops.cast::<u32>(), n);
                        let write =
                            rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_WRITE as u32;
                        let all = rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_ALL as u32;
                        Ok(Some(ops.iter().any(|&op| op == write || op == all)))
                    }
                }
            }
        };
        if !event.is_null() {
            rd::rd_kafka_event_destroy(event);
        }
        rd::rd_kafka_queue_destroy(queue);
        rd::rd_kafka_AdminOptions_destroy(options);
        rd::rd_kafka_TopicCollection_destroy(topics);
        answer
    }
}

/// librdkafka's text (a C string it owns), copied.
///
/// # Safety
/// `p` is null or a NUL-terminated string that lives for the call.
unsafe fn text(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        return "(no reason given)".to_owned();
    }
    // SAFETY: non-null and NUL-terminated, by this function's contract.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
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
