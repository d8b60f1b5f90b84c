//! TLS and SASL between the `kafka` output and a real Apache Kafka broker (an SSL listener with
//! a certificate from a CA made at test time, a SASL_PLAINTEXT listener with PLAIN users): the
//! right CA or password delivers every line; a wrong one fails with a clear error in trawl's log
//! and delivers and acknowledges nothing, so every line is shipped once the setting is fixed.

use crate::support;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};
use support::kafka::{Broker, SASL_PASSWORD, SASL_USER};
use support::process::{metric, read_json_lines, write_file, Trawl};

const LINES: usize = 1000;

/// A pipeline shipping `dir/app.log` through a kafka output with `settings` (its `brokers` and
/// security keys), serving metrics on `addr`.
fn pipeline(dir: &Path, addr: &str, topic: &str, settings: &str) -> std::path::PathBuf {
    let text = format!(
        "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\nshutdown_timeout: 5s\ninputs:\n  app:\n    type: file\n    paths: [\"{app}\"]\n    poll_interval: 100ms\n    registry_flush: 200ms\noutputs:\n  k:\n    type: kafka\n    topic: {topic}\n    dead_letter: dead\n{settings}  dead:\n    type: file\n    path: {dl}\n",
        data = dir.join("data").display(),
        app = dir.join("app.log").display(),
        dl = dir.join("dead.jsonl").display()
    );
    write_file(dir, "pipeline.yaml", &text)
}

/// trawl's `/health` answer: the status line's code and the body.
fn health(addr: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connecting to /health");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("reading /health");
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (code, body)
}

fn sigterm(t: &mut Trawl) -> std::process::ExitStatus {
    // SAFETY: kill(2) on the pid of a child we own and have not reaped.
    unsafe { libc::kill(t.child.id() as libc::pid_t, libc::SIGTERM) };
    t.wait(Duration::from_secs(60))
}

/// Ships a file of `LINES` lines to `topic` with the `refused` settings until trawl's log shows
/// every one of `errors` (librdkafka's words) and trawl's own error naming the refusal, with
/// `/health` failing; stops trawl (SIGTERM: exit status 1) and checks that nothing reached Kafka or the dead
/// letters; then ships the same file with the `accepted` settings, and checks that every line
/// arrives exactly once (so the refused run acknowledged nothing) and `/health` is fine.
fn refused_then_delivered(
    broker: &Broker,
    topic: &str,
    refused: &str,
    accepted: &str,
    errors: &[&str],
) -> String {
    broker.create_topic(topic, 2);
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..LINES).map(|i| format!("{topic} line {i}")).collect();
    std::fs::write(dir.path().join("app.log"), lines.join("\n") + "\n").unwrap();
    let addr = format!("127.0.0.1:{}", support::process::free_port());

    let cfg = pipeline(dir.path(), &addr, topic, refused);
    let log = dir.path().join("refused.log");
    let mut t = Trawl::start(&cfg, Some(&log));
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let refusal = "the Kafka broker refuses the connection";
    let start = Instant::now();
    while !errors
        .iter()
        .chain([&refusal])
        .all(|e| read_log().contains(e))
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "trawl's log does not show {errors:?}:\n{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        metric(&addr, "trawl_events_out_total", "k"),
        Some(0.0),
        "nothing is counted delivered"
    );
    support::process::wait_until(
        Duration::from_secs(30),
        "events waiting in the output",
        || metric(&addr, "trawl_events_in_total", "k").is_some_and(|n| n > 0.0),
    );
    let (code, body) = health(&addr);
    assert!(code == 503 && body.contains("k"), "/health: {code} {body}");
    // Stopped while refused: the undelivered events stay unacknowledged, and the exit status
    // says the output failed.
    let status = sigterm(&mut t);
    let refused_log = read_log();
    assert_eq!(status.code(), Some(1), "{refused_log}");
    assert!(
        refused_log.contains("events undelivered; they were not acknowledged")
            && refused_log.contains("failed: output k: kafka: the broker refuses the connection"),
        "{refused_log}"
    );
    assert!(broker.read_all(topic).is_empty(), "nothing reached Kafka");
    assert!(
        read_json_lines(&dir.path().join("dead.jsonl")).is_empty(),
        "a refused connection is not the events' fault: no dead letters"
    );

    let cfg = pipeline(dir.path(), &addr, topic, accepted);
    let log = dir.path().join("accepted.log");
    let mut t = Trawl::start(&cfg, Some(&log));
    support::process::wait_until(
        Duration::from_secs(60),
        "every line delivered with the right settings",
        || metric(&addr, "trawl_events_out_total", "k") == Some(LINES as f64),
    );
    assert_eq!(health(&addr).0, 200);
    assert!(sigterm(&mut t).success());
    let records = broker.read_all(topic);
    let got: Vec<String> = records
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
            v["message"].as_str().unwrap().to_owned()
        })
        .collect();
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(got.len(), LINES, "each line once");
    assert_eq!(unique, lines.iter().collect::<HashSet<_>>(), "every line");
    refused_log
}

/// The broker's certificate is checked against `tls.ca_file`: signed by another CA, librdkafka
/// fails the TLS handshake and says why; with the CA that signed it, the lines go through.
#[test]
fn tls_verifies_the_broker_against_the_ca_file() {
    let broker = Broker::shared();
    let other = tempfile::tempdir().unwrap();
    let (other_ca, _, _) = support::process::make_certificates(other.path());
    let settings = |ca: &Path| {
        format!(
            "    brokers: [\"{}\"]\n    tls: {{ ca_file: \"{}\" }}\n",
            broker.tls_bootstrap,
            ca.display()
        )
    };
    refused_then_delivered(
        broker,
        "over-tls",
        &settings(&other_ca),
        &settings(&broker.ca_file),
        &["SSL handshake failed", "certificate verify failed"],
    );
}

/// SASL/PLAIN: the right password delivers; a wrong one is refused by the broker and trawl's
/// log says the authentication failed.
#[test]
fn sasl_plain_authenticates_and_a_wrong_password_is_refused() {
    let broker = Broker::shared();
    let settings = |password: &str| {
        format!(
            "    brokers: [\"{}\"]\n    sasl: {{ mechanism: PLAIN, username: {SASL_USER}, password: \"{password}\" }}\n",
            broker.sasl_bootstrap
        )
    };
    refused_then_delivered(
        broker,
        "over-sasl",
        &settings("not-the-password"),
        &settings(SASL_PASSWORD),
        &["Authentication failed"],
    );
}

/// TLS files that cannot work are configuration errors with their position, before anything
/// runs: a missing CA file, a CA file holding no certificate, a client certificate without key.
#[test]
fn bad_tls_files_are_refused_by_validate_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = write_file(dir.path(), "ca.txt", "this is not a certificate\n");
    let cert = write_file(
        dir.path(),
        "client.pem",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    );
    let text = format!(
        "inputs:\n  app: {{ type: stdin }}\noutputs:\n  a:\n    type: kafka\n    brokers: [\"localhost:9093\"]\n    topic: t\n    tls: {{ ca_file: /nonexistent/ca.pem }}\n  b:\n    type: kafka\n    brokers: [\"localhost:9093\"]\n    topic: t\n    sasl: {{ mechanism: SCRAM-SHA-256, username: u, password: p }}\n    tls: {{ ca_file: \"{}\" }}\n  c:\n    type: kafka\n    brokers: [\"localhost:9093\"]\n    topic: t\n    tls: {{ cert_file: \"{}\" }}\n",
        not_pem.display(),
        cert.display()
    );
    let cfg = write_file(dir.path(), "bad.yaml", &text);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["validate", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.yaml:8:21: outputs.a.tls.ca_file: /nonexistent/ca.pem: No such file"),
        "{err}"
    );
    assert!(
        err.contains("bad.yaml:14:21: outputs.b.tls.ca_file: ")
            && err.contains("ca.txt: no PEM `CERTIFICATE` block found"),
        "{err}"
    );
    assert!(
        err.contains("bad.yaml:16:9: outputs.c:")
            && err.contains("`tls.cert_file` and `tls.key_file` go together"),
        "{err}"
    );
}
