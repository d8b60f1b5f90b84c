//! What the `elasticsearch` output does with events it cannot deliver, through the real binary
//! against the stand-in in `tests/support/es_server.rs`: a `200` without items is a failed
//! request, an item refused forever is dead-lettered after its attempts or age, and a batch
//! given up on is dead-lettered and committed (or failed and counted without a dead letter).

use crate::support;

use std::path::Path;
use std::time::Duration;
use support::es_server::EsServer;
use support::process::{
    free_port, metric, read_json_lines, sigterm, wait_until, write_file, Trawl,
};

/// A pipeline `input` → `es` with `es_extra` under the output, and `dead` (a file) when
/// `dead_letter` is set.
fn pipeline(dir: &Path, addr: &str, input: &str, es_url: &str, es_extra: &str, dead_letter: bool) {
    let dl = if dead_letter {
        format!(
            "    dead_letter: dead\n  dead:\n    type: file\n    path: {}\n",
            dir.join("dead.jsonl").display()
        )
    } else {
        String::new()
    };
    let text = format!(
        "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\nshutdown_timeout: 30s\ninputs:\n  app: {input}\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"{es_url}\"]\n    index: logs\n    batch: {{ max_events: 50, timeout: 50ms }}\n{es_extra}{dl}",
        data = dir.join("data").display(),
    );
    write_file(dir, "pipeline.yaml", &text);
}

fn count(addr: &str, name: &str) -> f64 {
    metric(addr, name, "es").unwrap_or(-1.0)
}

/// A proxy or a wrong URL answering `200 {}` has stored nothing: the events must not count as
/// delivered. With `retry.max_attempts` spent and no dead letter, their batches fail, are
/// counted in `trawl_events_failed_total`, and the reason is logged once. stdin cannot read
/// them again: the input counts them lost too, and the run exits 1 saying so.
#[test]
fn a_2xx_answer_without_items_is_a_failed_request_not_a_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start();
    es.with(|s| s.empty_ok_requests = u64::MAX);
    let addr = format!("127.0.0.1:{}", free_port());
    pipeline(
        dir.path(),
        &addr,
        "{ type: stdin }",
        &es.url,
        "    retry: { initial_backoff: 10ms, max_backoff: 50ms, max_attempts: 3 }\n",
        false,
    );
    let log = dir.path().join("trawl.log");
    let mut t = Trawl::start(&dir.path().join("pipeline.yaml"), Some(&log));
    let input: String = (0..120).map(|i| format!("line {i}\n")).collect();
    t.feed(input.as_bytes());
    wait_until(
        Duration::from_secs(30),
        "120 events counted in trawl_events_failed_total",
        || count(&addr, "trawl_events_failed_total") == 120.0,
    );
    assert_eq!(
        count(&addr, "trawl_events_out_total"),
        0.0,
        "nothing counts as stored"
    );
    wait_until(
        Duration::from_secs(30),
        "stdin's 120 lost events in its trawl_events_failed_total",
        || metric(&addr, "trawl_events_failed_total", "app") == Some(120.0),
    );
    let status = t.finish(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "trawl exited with {status}");
    assert!(
        es.with(|s| s.requests) >= 3,
        "each request was tried 3 times"
    );

    let log = std::fs::read_to_string(&log).unwrap();
    let lost: Vec<&str> = log.lines().filter(|l| l.contains("events lost")).collect();
    assert!(
        lost.len() == 1 && lost[0].contains("input app: 120 events"),
        "the exit names the input and its loss:\n{log}"
    );
    let gave_up: Vec<&str> = log.lines().filter(|l| l.contains("giving up")).collect();
    assert_eq!(gave_up.len(), 1, "logged once:\n{log}");
    assert!(
        gave_up[0].contains("items") && gave_up[0].contains("max_attempts"),
        "the reason is in the message: {}",
        gave_up[0]
    );
}

/// An item Elasticsearch refuses with a 5xx forever (a red index, a broken shard) would hold
/// its batch, and with in-order acknowledgements its input, forever. After
/// `retry.max_item_attempts` it goes to the dead letter with the reason, and the rest flows.
#[test]
fn an_item_refused_forever_is_dead_lettered_after_its_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start();
    es.with(|s| s.unavailable_message_containing = Some("POISON".into()));
    let addr = format!("127.0.0.1:{}", free_port());
    pipeline(
        dir.path(),
        &addr,
        "{ type: stdin }",
        &es.url,
        "    retry: { initial_backoff: 10ms, max_backoff: 100ms, max_item_attempts: 4 }\n",
        true,
    );
    let mut t = Trawl::start(&dir.path().join("pipeline.yaml"), None);
    let input: String = (0..500)
        .map(|i| {
            if i == 123 {
                "line 123 POISON\n".to_owned()
            } else {
                format!("line {i}\n")
            }
        })
        .collect();
    t.feed(input.as_bytes());
    let dead_path = dir.path().join("dead.jsonl");
    wait_until(
        Duration::from_secs(30),
        "the poisoned event in the dead letters",
        || !read_json_lines(&dead_path).is_empty(),
    );
    let status = t.finish(Duration::from_secs(60));
    assert!(status.success(), "trawl exited with {status}");

    assert_eq!(es.with(|s| s.docs_in("logs").len()), 499);
    assert_eq!(es.with(|s| s.items_503), 4, "tried exactly 4 times");
    let dead = read_json_lines(&dead_path);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["message"], "line 123 POISON");
    assert_eq!(dead[0]["error"]["type"], "retries_exhausted");
    let why = dead[0]["error"]["message"].as_str().unwrap();
    assert!(
        why.contains("4 attempts") && why.contains("unavailable_shards_exception"),
        "{why}"
    );
}

/// Without a `dead_letter` output, an item given up on by age goes to the default dead-letter
/// file `data_dir/dead_letter/<output>.jsonl`, counted in `trawl_events_failed_total`.
#[test]
fn without_a_dead_letter_output_an_expired_item_goes_to_the_default_file() {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start();
    es.with(|s| s.unavailable_message_containing = Some("POISON".into()));
    let addr = format!("127.0.0.1:{}", free_port());
    pipeline(
        dir.path(),
        &addr,
        "{ type: stdin }",
        &es.url,
        "    retry: { initial_backoff: 10ms, max_backoff: 100ms, max_item_attempts: 0, max_item_age: 1s }\n",
        false,
    );
    let mut t = Trawl::start(&dir.path().join("pipeline.yaml"), None);
    t.feed(b"first\nsecond POISON\nthird\n");
    let default_file = dir.path().join("data/dead_letter/es.jsonl");
    wait_until(
        Duration::from_secs(30),
        "the poisoned event in data_dir/dead_letter/es.jsonl",
        || !read_json_lines(&default_file).is_empty(),
    );
    wait_until(Duration::from_secs(10), "the failure counted", || {
        count(&addr, "trawl_events_failed_total") == 1.0
    });
    let status = t.finish(Duration::from_secs(60));
    assert!(status.success(), "trawl exited with {status}");

    assert_eq!(es.with(|s| s.docs_in("logs").len()), 2);
    assert!(es.with(|s| s.items_503) >= 2, "retried until 1s old");
    let dead = read_json_lines(&default_file);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["message"], "second POISON");
    assert_eq!(dead[0]["error"]["type"], "retries_exhausted");
    assert_eq!(dead[0]["trawl"]["dead_letter"]["output"], "es");
}

/// A cluster that is down past `retry.max_attempts`: with a `dead_letter` output, the events go
/// there and their batches are acknowledged, so a restarted trawl does not read them again.
#[test]
fn a_batch_given_up_on_goes_to_the_dead_letter_and_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start();
    es.with(|s| s.unavailable = true);
    let addr = format!("127.0.0.1:{}", free_port());
    let app_log = dir.path().join("app.log");
    let first: String = (0..40).map(|i| format!("before {i}\n")).collect();
    std::fs::write(&app_log, &first).unwrap();
    pipeline(
        dir.path(),
        &addr,
        &format!(
            "{{ type: file, paths: [\"{}\"], registry_flush: 100ms }}",
            app_log.display()
        ),
        &es.url,
        "    retry: { initial_backoff: 10ms, max_backoff: 50ms, max_attempts: 2 }\n",
        true,
    );
    let cfg = dir.path().join("pipeline.yaml");
    let dead_path = dir.path().join("dead.jsonl");
    let mut t = Trawl::start(&cfg, None);
    wait_until(
        Duration::from_secs(30),
        "40 events in the dead letters",
        || read_json_lines(&dead_path).len() == 40,
    );
    for d in read_json_lines(&dead_path) {
        assert_eq!(d["error"]["type"], "retries_exhausted");
        assert!(
            d["error"]["message"].as_str().unwrap().contains("503"),
            "{d}"
        );
    }
    sigterm(&t);
    let status = t.wait(Duration::from_secs(60));
    assert!(status.success(), "trawl exited with {status}");

    // The cluster is back; a restarted trawl ships only what was written since.
    es.with(|s| s.unavailable = false);
    let mut t = Trawl::start(&cfg, None);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&app_log)
        .unwrap();
    std::io::Write::write_all(&mut f, b"after 0\nafter 1\n").unwrap();
    wait_until(Duration::from_secs(30), "the new lines stored", || {
        es.with(|s| s.docs_in("logs").len()) >= 2
    });
    sigterm(&t);
    let status = t.wait(Duration::from_secs(60));
    assert!(status.success(), "trawl exited with {status}");
    let stored: Vec<String> = es.with(|s| {
        s.docs_in("logs")
            .iter()
            .map(|(_, d)| d["message"].as_str().unwrap().to_owned())
            .collect()
    });
    assert_eq!(
        stored.len(),
        2,
        "dead-lettered events were committed, not read again: {stored:?}"
    );
    assert_eq!(read_json_lines(&dead_path).len(), 40, "dead-lettered once");
}
