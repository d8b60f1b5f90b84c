//! `trawl test output` against a real OpenSearch node (with the security plugin: credentials
//! matter), a real Kafka broker, folders, closed ports and bad credentials: every check says what
//! works, and the exit status is 1 as soon as one output fails.

use crate::support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::kafka::{Broker, SASL_PASSWORD, SASL_USER};
use support::opensearch::OpenSearch;
use support::process::write_file;

const TRAWL: &str = env!("CARGO_BIN_EXE_trawl");

fn test_output(dir: &Path, outputs: &str) -> (i32, String) {
    let cfg = write_file(
        dir,
        "p.yaml",
        &format!(
            "data_dir: {}/data\nhttp: {{ enabled: false }}\ninputs:\n  app: {{ type: stdin }}\noutputs:\n{outputs}",
            dir.display()
        ),
    );
    let mut child = Command::new(TRAWL)
        .args(["test", "output", "-c"])
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "trawl test output did not end within 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out: Output = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// The line of `what` in the report, which must carry `word` (`ok`, `note`, `FAILED`).
fn line_of<'a>(report: &'a str, word: &str, what: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.trim_start().starts_with(word) && l.contains(what))
        .unwrap_or_else(|| panic!("no `{word} ... {what}` line in:\n{report}"))
}

#[test]
fn opensearch_version_credentials_and_template() {
    let node = OpenSearch::start_secure();
    let dir = tempfile::tempdir().unwrap();
    let es = |user: &str, password: &str| {
        format!(
            "  es:\n    type: elasticsearch\n    hosts: [\"{}\"]\n    username: {user}\n    password: \"{password}\"\n    index: \"probe-logs-%{{+yyyy.MM.dd}}\"\n",
            node.url
        )
    };

    let (code, report) = test_output(dir.path(), &es("admin", "admin"));
    assert_eq!(code, 0, "{report}");
    line_of(&report, "ok", "reachable");
    line_of(&report, "ok", "credentials: accepted");
    let version = node.get("/")["version"]["number"]
        .as_str()
        .unwrap()
        .to_owned();
    line_of(&report, "ok", &format!("version: OpenSearch {version}"));
    // Not there yet: trawl installs it itself, which is no failure.
    line_of(&report, "note", "index template trawl-probe-logs: absent");

    node.put(
        "/_index_template/trawl-probe-logs",
        &serde_json::json!({ "index_patterns": ["probe-logs-*"] }),
    );
    let (code, report) = test_output(dir.path(), &es("admin", "admin"));
    assert_eq!(code, 0, "{report}");
    line_of(&report, "ok", "index template trawl-probe-logs: present");

    let (code, report) = test_output(dir.path(), &es("admin", "wrong"));
    assert_eq!(code, 1, "{report}");
    line_of(&report, "FAILED", "credentials: refused (401)");
    assert!(report.contains("1 of 1 output(s) failed: es"), "{report}");
}

#[test]
fn kafka_metadata_topic_and_leaders() {
    let broker = Broker::shared();
    broker.create_topic("probe-present", 3);
    let dir = tempfile::tempdir().unwrap();
    let kafka = |name: &str, topic: &str| {
        format!(
            "  {name}: {{ type: kafka, brokers: [\"{}\"], topic: {topic} }}\n",
            broker.bootstrap
        )
    };

    let (code, report) = test_output(dir.path(), &kafka("k", "probe-present"));
    assert_eq!(code, 0, "{report}");
    line_of(&report, "ok", "metadata: 1 broker(s)");
    line_of(&report, "ok", "topic probe-present: exists, 3 partition(s)");
    line_of(&report, "ok", "writable: every partition has a leader");

    // A missing topic fails, and asking did not create it: it is still missing the second time.
    for _ in 0..2 {
        let (code, report) = test_output(
            dir.path(),
            &(kafka("good", "probe-present") + &kafka("bad", "probe-missing")),
        );
        assert_eq!(code, 1, "{report}");
        line_of(&report, "FAILED", "topic probe-missing");
        assert!(report.contains("1 of 2 output(s) failed: bad"), "{report}");
    }

    // A topic named by each event cannot be checked ahead: said so, not failed.
    let (code, report) = test_output(dir.path(), &kafka("k", "\"logs-%{[service]}\""));
    assert_eq!(code, 0, "{report}");
    line_of(&report, "note", "topic: the topic depends on each event");

    // SASL: the right password passes, a wrong one gets no metadata.
    let sasl = |password: &str| {
        format!(
            "  k:\n    type: kafka\n    brokers: [\"{}\"]\n    topic: probe-present\n    sasl: {{ mechanism: PLAIN, username: {SASL_USER}, password: \"{password}\" }}\n",
            broker.sasl_bootstrap
        )
    };
    let (code, report) = test_output(dir.path(), &sasl(SASL_PASSWORD));
    assert_eq!(code, 0, "{report}");
    let (code, report) = test_output(dir.path(), &sasl("wrong"));
    assert_eq!(code, 1, "{report}");
    line_of(&report, "FAILED", "metadata");
}

/// "writable" is what the broker's ACLs say of this client, found without producing: a SASL
/// user who may read a topic but not write to it fails the check (and a real produce of that
/// user is refused), the same user allowed to write passes, and a super user passes both.
#[test]
fn kafka_write_permission_comes_from_the_brokers_acls() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let broker = Broker::start_with_acls();
    broker.create_topic("probe-read-only", 1);
    broker.create_topic("probe-read-write", 1);
    broker.allow(SASL_USER, "probe-read-only", &["Describe", "Read"]);
    broker.allow(SASL_USER, "probe-read-write", &["Describe", "Write"]);
    let dir = tempfile::tempdir().unwrap();
    let sasl = |topic: &str| {
        format!(
            "  k:\n    type: kafka\n    brokers: [\"{}\"]\n    topic: {topic}\n    sasl: {{ mechanism: PLAIN, username: {SASL_USER}, password: \"{SASL_PASSWORD}\" }}\n",
            broker.sasl_bootstrap
        )
    };

    // The authorizer learns new ACLs from the metadata log a moment after they are created.
    let start = Instant::now();
    let report = loop {
        let (code, report) = test_output(dir.path(), &sasl("probe-read-only"));
        if code == 1 {
            break report;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "a topic the user may not write to still passes:\n{report}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    line_of(
        &report,
        "ok",
        "topic probe-read-only: exists, 1 partition(s)",
    );
    line_of(
        &report,
        "FAILED",
        "writable: the broker's ACLs do not let this client write to it",
    );
    assert!(report.contains("1 of 1 output(s) failed: k"), "{report}");

    // What a produce of that user gets, for real.
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.sasl_bootstrap)
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanism", "PLAIN")
        .set("sasl.username", SASL_USER)
        .set("sasl.password", SASL_PASSWORD)
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sent = rt.block_on(producer.send(
        FutureRecord::<(), str>::to("probe-read-only").payload("probe"),
        Duration::from_secs(30),
    ));
    let err = sent.err().map(|(e, _)| e.rdkafka_error_code());
    assert_eq!(
        err,
        Some(Some(
            rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed
        )),
        "a produce to the read-only topic"
    );

    let (code, report) = test_output(dir.path(), &sasl("probe-read-write"));
    assert_eq!(code, 0, "{report}");
    line_of(
        &report,
        "ok",
        "writable: every partition has a leader, and the broker lets this client write to it",
    );
    let plain = format!(
        "  k: {{ type: kafka, brokers: [\"{}\"], topic: probe-read-only }}\n",
        broker.bootstrap
    );
    let (code, report) = test_output(dir.path(), &plain);
    assert_eq!(code, 0, "a super user may write anywhere:\n{report}");
}

#[test]
fn closed_ports_and_folders() {
    let dir = tempfile::tempdir().unwrap();
    // Ports the OS gave and took back: nothing listens there.
    let closed = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let readonly = dir.path().join("readonly");
    std::fs::create_dir_all(&readonly).unwrap();
    let outputs = format!(
        "  es: {{ type: elasticsearch, hosts: [\"http://127.0.0.1:{}\"] }}\n  k: {{ type: kafka, brokers: [\"127.0.0.1:{}\"], topic: t }}\n  new_folder: {{ type: file, path: {d}/a/b/out.jsonl }}\n  console: {{ type: stdout }}\n",
        closed(),
        closed(),
        d = dir.path().display()
    );
    let (code, report) = test_output(dir.path(), &outputs);
    assert_eq!(code, 1, "{report}");
    line_of(&report, "FAILED", "reachable");
    line_of(&report, "FAILED", "metadata: no answer from the brokers");
    line_of(&report, "ok", "missing;");
    assert!(
        report.contains("2 of 4 output(s) failed: es, k"),
        "{report}"
    );
    assert!(
        !dir.path().join("a").exists(),
        "the check created the folder"
    );

    // A folder trawl may not write into (root may write anywhere: a path under a file then).
    let blocked = if unsafe { libc::geteuid() } == 0 {
        write_file(dir.path(), "plain-file", "");
        format!("{}/plain-file/out.jsonl", dir.path().display())
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&readonly, std::fs::Permissions::from_mode(0o555)).unwrap();
        format!("{}/out.jsonl", readonly.display())
    };
    let (code, report) = test_output(
        dir.path(),
        &format!("  f: {{ type: file, path: {blocked} }}\n"),
    );
    assert_eq!(code, 1, "{report}");
    line_of(&report, "FAILED", "folder");
}
