//! Credentials written in an Elasticsearch host URL (`http://user:pass@host:9200`) are used, and
//! never printed: not in the warnings of an outage, not in the debug lines of every retry, not in
//! `trawl validate`'s messages.

use crate::support;

use std::time::Duration;
use support::es_server::EsServer;
use support::process::{free_port, write_file, Trawl};

const PASSWORD: &str = "pa55-Xq7";

fn pipeline(dir: &std::path::Path, host: &str, extra: &str) -> std::path::PathBuf {
    write_file(
        dir,
        "p.yaml",
        &format!(
            "data_dir: {}\nhttp: {{ enabled: false }}\nshutdown_timeout: 5s\ninputs:\n  app: {{ type: stdin }}\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"{host}\"]\n    index: creds\n    compression: none\n    batch: {{ max_events: 50, timeout: 50ms }}\n    retry: {{ initial_backoff: 20ms, max_backoff: 100ms{extra} }}\n",
            dir.join("data").display()
        ),
    )
}

#[test]
fn credentials_in_a_host_url_authenticate_and_never_reach_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    // An unreachable host: the outage is logged (warn) and every retry (debug).
    let port = free_port();
    let cfg = pipeline(
        dir.path(),
        &format!("http://elastic:{PASSWORD}@127.0.0.1:{port}"),
        ", max_attempts: 3",
    );
    let log = dir.path().join("trawl.log");
    let mut t = Trawl::start_env(&cfg, Some(&log), &[("TRAWL_LOG_LEVEL", "debug")]);
    t.feed(b"one\ntwo\n");
    t.finish(Duration::from_secs(60));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("127.0.0.1:{port}")),
        "the host is named: {text}"
    );
    assert!(!text.contains(PASSWORD), "the password was logged:\n{text}");

    // A reachable one that requires exactly those credentials: they are sent.
    let es = EsServer::start();
    let header = format!("Basic {}", base64_of(&format!("elastic:{PASSWORD}")));
    es.with(|s| s.require_auth = Some(header));
    let host = es
        .url
        .replacen("http://", &format!("http://elastic:{PASSWORD}@"), 1);
    let cfg = pipeline(dir.path(), &host, "");
    let mut t = Trawl::start(&cfg, Some(&log));
    t.feed(b"a\nb\nc\n");
    assert!(t.finish(Duration::from_secs(60)).success());
    assert_eq!(es.with(|s| s.docs_in("creds").len()), 3);

    // A host URL `validate` refuses is named without its credentials.
    let cfg = pipeline(dir.path(), &format!("ftp://elastic:{PASSWORD}@es:9200"), "");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["validate", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("ftp://es:9200"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}
