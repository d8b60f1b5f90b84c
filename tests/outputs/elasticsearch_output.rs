//! The `elasticsearch` output through the real binary against the Elasticsearch stand-in in
//! `tests/support/es_server.rs`: partial bulk failures, dead letters, deterministic ids,
//! `create` conflicts, auth, failover; and against a real cluster when `TRAWL_TEST_ES_URL` is set.

use crate::support;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;
use support::es_server::EsServer;
use support::process::{read_json_lines, write_file, Trawl};

fn config(dir: &Path, hosts: &str, es_extra: &str) -> std::path::PathBuf {
    let dl = dir.join("dead.jsonl");
    let text = format!(
        "data_dir: {data}\nhttp: {{ enabled: false }}\nshutdown_timeout: 60s\ninputs:\n  app: {{ type: stdin }}\noutputs:\n  es:\n    type: elasticsearch\n    hosts: {hosts}\n    dead_letter: dead\n    batch: {{ max_events: 200, timeout: 100ms }}\n    retry: {{ initial_backoff: 20ms, max_backoff: 200ms }}\n{es_extra}  dead:\n    type: file\n    path: {dl}\n",
        data = dir.join("data").display(),
        dl = dl.display()
    );
    write_file(dir, "pipeline.yaml", &text)
}

fn lines(n: usize, bad_every: usize) -> String {
    (0..n)
        .map(|i| {
            if bad_every > 0 && i % bad_every == 7 {
                format!("line {i} BAD\n")
            } else {
                format!("line {i}\n")
            }
        })
        .collect()
}

fn run(cfg: &Path, input: &str, env: &[(&str, &str)]) {
    let mut env = env.to_vec();
    env.push(("TRAWL_HOSTNAME", "web-1"));
    let mut t = Trawl::start_env(cfg, None, &env);
    t.feed(input.as_bytes());
    let status = t.finish(Duration::from_secs(120));
    assert!(status.success(), "trawl exited with {status}");
}

#[test]
fn partial_failures_store_every_good_event_once_and_dead_letter_the_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start();
    es.with(|s| {
        s.item_429_percent = 20;
        s.reject_message_containing = Some("BAD".into());
        s.fail_requests.extend([503, 429, 503]);
    });
    let cfg = config(
        dir.path(),
        &format!("[\"{}\"]", es.url),
        "    index: \"logs-%{[host.name]}-%Y.%m.%d\"\n",
    );
    let n = 5000;
    run(&cfg, &lines(n, 100), &[]);

    let today = chrono::Utc::now().format("%Y.%m.%d").to_string();
    let index = format!("logs-web-1-{today}");
    let (stored, writes, items_429, gzip, requests) = es.with(|s| {
        let msgs: Vec<String> = s
            .docs_in(&index)
            .iter()
            .map(|(_, d)| d["message"].as_str().unwrap().to_owned())
            .collect();
        (msgs, s.writes, s.items_429, s.gzip_requests, s.requests)
    });
    let bad: HashSet<String> = (0..n)
        .filter(|i| i % 100 == 7)
        .map(|i| format!("line {i} BAD"))
        .collect();
    let good: HashSet<String> = (0..n)
        .filter(|i| i % 100 != 7)
        .map(|i| format!("line {i}"))
        .collect();
    let stored_set: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(
        stored.len(),
        good.len(),
        "every good event stored exactly once (no duplicates)"
    );
    assert_eq!(stored_set, good);
    assert_eq!(
        writes as usize,
        good.len(),
        "no good event was written twice"
    );
    assert!(
        items_429 > 500,
        "the server answered 429 on about 20% of items ({items_429})"
    );
    assert_eq!(
        gzip,
        requests - 3,
        "every bulk body is gzip-compressed (3 requests were refused whole before reading)"
    );

    let dead = read_json_lines(&dir.path().join("dead.jsonl"));
    let dead_msgs: HashSet<String> = dead
        .iter()
        .map(|d| d["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        dead.len(),
        bad.len(),
        "each rejected event is dead-lettered once"
    );
    assert_eq!(dead_msgs, bad);
    for d in &dead {
        assert_eq!(d["error"]["type"], "mapper_parsing_exception");
        assert!(
            d["error"]["message"]
                .as_str()
                .unwrap()
                .contains("failed to parse field"),
            "{d}"
        );
        assert_eq!(d["trawl"]["dead_letter"]["output"], "es");
        let original: serde_json::Value =
            serde_json::from_str(d["event"]["original"].as_str().unwrap()).unwrap();
        assert_eq!(original["message"], d["message"]);
    }
}

#[test]
fn ids_from_fields_make_a_resend_overwrite_and_create_conflicts_count_as_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start();
    let input = lines(1000, 0);
    // `index` with ids from the message: the second run overwrites.
    let cfg = config(
        dir.path(),
        &format!("[\"{}\"]", es.url),
        "    index: plain\n    id_from: fields\n    id_fields: [message]\n",
    );
    run(&cfg, &input, &[]);
    run(&cfg, &input, &[]);
    es.with(|s| {
        assert_eq!(
            s.docs_in("plain").len(),
            1000,
            "re-sent events overwrite instead of duplicating"
        );
        assert_eq!(s.writes, 2000);
    });
    // `create` (data streams): the copies are refused with 409, which means already stored.
    let cfg = config(
        dir.path(),
        &format!("[\"{}\"]", es.url),
        "    index: stream\n    op_type: create\n    id_from: fields\n    id_fields: [message]\n",
    );
    run(&cfg, &input, &[]);
    run(&cfg, &input, &[]);
    es.with(|s| {
        assert_eq!(s.docs_in("stream").len(), 1000);
        assert_eq!(s.items_409, 1000);
    });
    assert!(
        read_json_lines(&dir.path().join("dead.jsonl")).is_empty(),
        "conflicts are not dead letters"
    );
}

#[test]
fn basic_auth_and_failover_to_a_live_host() {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start();
    es.with(|s| s.require_auth = Some("Basic ZWxhc3RpYzpjaGFuZ2VtZQ==".into()));
    let dead_host = format!("http://127.0.0.1:{}", support::process::free_port());
    let cfg = config(
        dir.path(),
        &format!("[\"{dead_host}\", \"{}\"]", es.url),
        "    index: auth\n    username: elastic\n    password: \"${ES_TEST_PASSWORD}\"\n    compression: none\n",
    );
    run(&cfg, &lines(500, 0), &[("ES_TEST_PASSWORD", "changeme")]);
    es.with(|s| {
        assert_eq!(s.docs_in("auth").len(), 500);
        assert_eq!(s.gzip_requests, 0);
    });

    // An API key instead; a wrong one is retried, never dropped, so here it must be right.
    es.with(|s| s.require_auth = Some("ApiKey aWQ6a2V5".into()));
    let cfg = config(
        dir.path(),
        &format!("[\"{}\"]", es.url),
        "    index: apikey\n    api_key: aWQ6a2V5\n",
    );
    run(&cfg, &lines(100, 0), &[]);
    assert_eq!(es.with(|s| s.docs_in("apikey").len()), 100);
}

#[test]
fn invalid_settings_are_reported_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let text = "inputs:\n  app: { type: stdin }\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"http://localhost:9200\"]\n    index: \"logs-%Q\"\n  k:\n    type: kafka\n    brokers: [\"localhost:9092\"]\n    topic: t\n    acks: one\n    buffer: { type: disk, when_full: sometimes }\n";
    let cfg = write_file(dir.path(), "bad.yaml", text);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["validate", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("outputs.es.index") && err.contains("unknown conversion `%Q`"),
        "{err}"
    );
    assert!(
        err.contains("idempotence: true` needs `acks: all`"),
        "{err}"
    );
    assert!(err.contains("outputs.k.buffer.when_full"), "{err}");
}

/// Runs against a real cluster when `TRAWL_TEST_ES_URL` is set (e.g. http://localhost:9200,
/// with `TRAWL_TEST_ES_USERNAME`/`TRAWL_TEST_ES_PASSWORD` if it needs them).
#[test]
fn real_cluster_when_configured() {
    let Ok(url) = std::env::var("TRAWL_TEST_ES_URL") else {
        eprintln!(
            "skipped: TRAWL_TEST_ES_URL is not set (no real Elasticsearch cluster to test against)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let index = format!("trawl-test-{}", std::process::id());
    let mut extra = format!("    index: {index}\n    id_from: fields\n    id_fields: [message]\n");
    if let Ok(u) = std::env::var("TRAWL_TEST_ES_USERNAME") {
        extra.push_str(&format!("    username: {u}\n    password: \"${{TRAWL_TEST_ES_PASSWORD}}\"\n    tls: {{ verify: false }}\n"));
    }
    let cfg = config(dir.path(), &format!("[\"{url}\"]"), &extra);
    run(&cfg, &lines(100, 0), &[]);
    run(&cfg, &lines(100, 0), &[]);
    let client = reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let mut req = client
        .get(format!("{url}/{index}/_count"))
        .query(&[("refresh", "true")]);
    if let Ok(u) = std::env::var("TRAWL_TEST_ES_USERNAME") {
        req = req.basic_auth(u, std::env::var("TRAWL_TEST_ES_PASSWORD").ok());
    }
    let _ = client.post(format!("{url}/{index}/_refresh")).send();
    let count: serde_json::Value = req.send().unwrap().json().unwrap();
    assert_eq!(count["count"], 100, "{count}");
}

#[test]
fn tls_verifies_the_server_against_the_ca_file_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = support::process::make_certificates(dir.path());
    let es = EsServer::start_tls(&cert, &key);
    assert!(es.url.starts_with("https://"));

    // Trusted through `tls.ca_file`: delivered.
    let cfg = config(
        dir.path(),
        &format!("[\"{}\"]", es.url),
        &format!("    index: tls\n    tls: {{ ca_file: {} }}\n", ca.display()),
    );
    run(&cfg, &lines(200, 0), &[]);
    assert_eq!(es.with(|s| s.docs_in("tls").len()), 200);

    // Without the CA the certificate is refused: nothing is sent, and nothing is dropped either
    // (the events wait for a retry that can succeed).
    let cfg = config(
        dir.path(),
        &format!("[\"{}\"]", es.url),
        "    index: untrusted\n",
    );
    let log = dir.path().join("untrusted.log");
    let mut t = Trawl::start(&cfg, Some(&log));
    t.feed(lines(10, 0).as_bytes());
    support::process::wait_until(
        Duration::from_secs(20),
        "a certificate error in the log",
        || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .to_lowercase()
                .contains("certificate")
        },
    );
    t.kill9();
    assert_eq!(es.with(|s| s.docs_in("untrusted").len()), 0);
    assert!(
        read_json_lines(&dir.path().join("dead.jsonl")).is_empty(),
        "a TLS failure is not the events' fault"
    );
}

/// A cluster whose `http.max_content_length` is smaller than the requests: each request
/// answered 413 is sent again in halves until it fits, so every event is stored exactly once;
/// an event over the limit on its own goes to the dead letters with the reason.
#[test]
fn requests_over_max_content_length_are_split_and_a_single_oversized_event_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start();
    let max = 16 * 1024;
    es.with(|s| s.max_content_length = Some(max));
    // Requests of 200 events of ~150 bytes of NDJSON each are ~30 KB: two halvings to fit.
    let cfg = config(
        dir.path(),
        &format!("[\"{}\"]", es.url),
        "    index: split\n",
    );
    let n = 1000;
    let huge = format!("huge {}", "x".repeat(20 * 1024));
    let mut input = String::new();
    for i in 0..n {
        input.push_str(&format!("line {i} {}\n", "p".repeat(40)));
        if i == 500 {
            input.push_str(&huge);
            input.push('\n');
        }
    }
    let log = dir.path().join("trawl.log");
    let mut t = Trawl::start_env(&cfg, Some(&log), &[("TRAWL_HOSTNAME", "web-1")]);
    t.feed(input.as_bytes());
    let status = t.finish(Duration::from_secs(120));
    assert!(status.success(), "trawl exited with {status}");

    let (stored, writes, requests_413, largest) = es.with(|s| {
        let msgs: Vec<String> = s
            .docs_in("split")
            .iter()
            .map(|(_, d)| d["message"].as_str().unwrap().to_owned())
            .collect();
        (msgs, s.writes, s.requests_413, s.largest_body)
    });
    let want: HashSet<String> = (0..n)
        .map(|i| format!("line {i} {}", "p".repeat(40)))
        .collect();
    assert_eq!(stored.len(), n, "every event that fits stored once");
    assert_eq!(stored.into_iter().collect::<HashSet<_>>(), want);
    assert_eq!(writes as usize, n, "nothing written twice");
    assert!(
        requests_413 >= 5,
        "the first requests were too large ({requests_413} answered 413)"
    );
    assert!(largest <= max, "only bodies within the limit were taken");
    // Each of the five requests is split again (a cluster's limit does not change): said once,
    // not once per halving of every request.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        text.matches("too large (413)").count(),
        1,
        "the splitting is logged once: {text}"
    );

    let dead = read_json_lines(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 1, "only the oversized event is dead-lettered");
    assert_eq!(dead[0]["message"], huge.as_str());
    assert_eq!(dead[0]["error"]["type"], "http_413");
    assert!(
        dead[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("http.max_content_length"),
        "{}",
        dead[0]
    );
}

/// An index template naming a field some events lack: those events go to the dead letters
/// (`template_error`, naming the field), are counted in `trawl_events_failed_total`, and do not
/// hold up the others, which land in the index of their own field's value.
#[test]
fn index_template_with_a_missing_field_dead_letters_and_counts_those_events() {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start();
    let addr = format!("127.0.0.1:{}", support::process::free_port());
    let text = format!(
        "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  app: {{ type: stdin }}\nprocessors:\n  - {{ type: json, field: message, ignore_missing: true }}\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"{url}\"]\n    index: \"logs-%{{[ns]}}\"\n    dead_letter: dead\n    batch: {{ max_events: 50, timeout: 100ms }}\n  dead:\n    type: file\n    path: {dl}\n",
        data = dir.path().join("data").display(),
        url = es.url,
        dl = dir.path().join("dead.jsonl").display()
    );
    let cfg = write_file(dir.path(), "pipeline.yaml", &text);
    let mut t = Trawl::start(&cfg, None);
    let mut input = String::new();
    for i in 0..300 {
        match i % 3 {
            0 => input.push_str(&format!("{{\"ns\":\"prod\",\"n\":{i}}}\n")),
            1 => input.push_str(&format!("{{\"ns\":\"dev\",\"n\":{i}}}\n")),
            _ => input.push_str(&format!("plain line {i}\n")),
        }
    }
    t.feed(input.as_bytes());
    support::process::wait_until(Duration::from_secs(30), "100 failed events counted", || {
        support::process::metric(&addr, "trawl_events_failed_total", "es") == Some(100.0)
    });
    let status = t.finish(Duration::from_secs(60));
    assert!(status.success(), "trawl exited with {status}");

    let (prod, dev, total) = es.with(|s| {
        (
            s.docs_in("logs-prod").len(),
            s.docs_in("logs-dev").len(),
            s.docs.len(),
        )
    });
    assert_eq!((prod, dev, total), (100, 100, 200));
    let dead = read_json_lines(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 100);
    for d in &dead {
        assert!(d["message"].as_str().unwrap().starts_with("plain line "));
        assert_eq!(d["error"]["type"], "template_error");
        let why = d["error"]["message"].as_str().unwrap();
        assert!(
            why.contains("`ns`") && why.contains("logs-%{[ns]}"),
            "{why}"
        );
    }
}
