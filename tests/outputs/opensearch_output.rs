//! The `elasticsearch` output through the real binary against a real OpenSearch 2.19 node
//! (`tests/support/opensearch.rs`): bulk `index` and `create` with deterministic ids, mapping
//! conflicts dead-lettered, real 429s from a tiny write queue, an index blocked, closed or not
//! created yet held for, gzip and plain bodies, the ECS
//! index template (typed fields, CIDR queries on `client.ip`, data streams) and Beats-style hosts.

use crate::support;

use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::opensearch::OpenSearch;
use support::process::{
    free_port, http_get, read_json_lines, shared_dir, wait_until, write_file, Trawl,
};

/// A pipeline from stdin (JSON lines are parsed into fields) to the node, dead letters to a file.
fn config(dir: &Path, hosts: &str, es_extra: &str) -> PathBuf {
    let text = format!(
        "data_dir: {data}\nhttp: {{ enabled: false }}\nshutdown_timeout: 60s\ninputs:\n  app: {{ type: stdin }}\nprocessors:\n  - {{ type: json, field: message }}\noutputs:\n  es:\n    type: elasticsearch\n    hosts: {hosts}\n    dead_letter: dead\n    batch: {{ max_events: 200, timeout: 100ms }}\n    retry: {{ initial_backoff: 20ms, max_backoff: 500ms }}\n{es_extra}  dead:\n    type: file\n    path: {dl}\n",
        data = dir.join("data").display(),
        dl = dir.join("dead.jsonl").display()
    );
    write_file(dir, "pipeline.yaml", &text)
}

fn run(cfg: &Path, input: &str, log: Option<&Path>) {
    let mut t = Trawl::start(cfg, log);
    t.feed(input.as_bytes());
    let status = t.finish(Duration::from_secs(300));
    assert!(status.success(), "trawl exited with {status}");
}

fn lines(prefix: &str, n: usize) -> String {
    (0..n).map(|i| format!("{prefix} {i}\n")).collect()
}

fn messages(docs: &[Value]) -> Vec<String> {
    docs.iter()
        .map(|d| d["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// `index` with ids from the message: a second run overwrites (each document at version 2).
/// `create` with the same ids: the second run's copies are answered 409 by the node, which
/// counts as delivered (nothing dead-lettered, trawl exits cleanly). Both with gzip bodies and
/// without.
#[test]
fn index_and_create_with_deterministic_ids_store_each_event_once() {
    let os = OpenSearch::shared();
    let dir = tempfile::tempdir().unwrap();
    let hosts = format!("[\"{}\"]", os.url);
    let input = lines("event", 1000);

    let cfg = config(
        dir.path(),
        &hosts,
        "    index: ids-index\n    id_from: fields\n    id_fields: [message]\n",
    );
    run(&cfg, &input, None);
    run(&cfg, &input, None);
    let docs = os.docs("ids-index");
    assert_eq!(docs.len(), 1000, "re-sent events overwrite, not duplicate");
    assert_eq!(
        messages(&docs).into_iter().collect::<HashSet<_>>(),
        input.lines().map(str::to_owned).collect::<HashSet<_>>()
    );
    let one = os.post(
        "/ids-index/_search",
        &json!({"size": 1000, "version": true, "query": {"match_all": {}}}),
    );
    for hit in one["hits"]["hits"].as_array().unwrap() {
        assert_eq!(hit["_version"], 2, "each document written twice: {hit}");
    }

    for (index, compression) in [("ids-create-gzip", "gzip"), ("ids-create-plain", "none")] {
        let cfg = config(
            dir.path(),
            &hosts,
            &format!("    index: {index}\n    op_type: create\n    id_from: fields\n    id_fields: [message]\n    compression: {compression}\n"),
        );
        run(&cfg, &input, None);
        run(&cfg, &input, None);
        let docs = os.docs(index);
        assert_eq!(docs.len(), 1000, "{index}: each event stored once");
        let hits = os.post(
            &format!("/{index}/_search"),
            &json!({"size": 1000, "version": true, "query": {"match_all": {}}}),
        );
        for hit in hits["hits"]["hits"].as_array().unwrap() {
            assert_eq!(
                hit["_version"], 1,
                "a create conflict does not write: {hit}"
            );
        }
    }
    assert!(
        read_json_lines(&dir.path().join("dead.jsonl")).is_empty(),
        "409 conflicts are not dead letters"
    );
    eprintln!(
        "shared node: started in {:.1} s, RSS {} MiB",
        os.startup.as_secs_f64(),
        os.rss_kib().unwrap_or(0) / 1024
    );
}

/// A field that is a number in some events and an object in others: the node answers the
/// latter 400 `mapper_parsing_exception` per item; they go to the dead letters with the node's
/// reason, the others are stored.
#[test]
fn mapping_conflicts_are_dead_lettered_with_the_nodes_reason() {
    let os = OpenSearch::shared();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!("[\"{}\"]", os.url),
        "    index: conflicts\n",
    );
    // Numbers first, in their own request, so that `size` is mapped `long` before any object.
    let mut input = String::new();
    for i in 0..100 {
        input.push_str(&format!("{{\"message\":\"n {i}\",\"size\":{i}}}\n"));
    }
    let mut t = Trawl::start(&cfg, None);
    t.feed(input.as_bytes());
    wait_until(Duration::from_secs(60), "the numbers stored", || {
        os.exists("/conflicts") && {
            let _ = os.post("/conflicts/_refresh", &json!({}));
            os.get("/conflicts/_count")["count"] == 100
        }
    });
    let mut input = String::new();
    for i in 0..300 {
        if i % 3 == 0 {
            input.push_str(&format!(
                "{{\"message\":\"o {i}\",\"size\":{{\"bytes\":{i}}}}}\n"
            ));
        } else {
            input.push_str(&format!("{{\"message\":\"m {i}\",\"size\":{i}}}\n"));
        }
    }
    t.feed(input.as_bytes());
    let status = t.finish(Duration::from_secs(120));
    assert!(status.success(), "trawl exited with {status}");

    let mapping = os.get("/conflicts/_mapping");
    assert_eq!(
        mapping["conflicts"]["mappings"]["properties"]["size"]["type"],
        "long"
    );
    let stored: HashSet<String> = messages(&os.docs("conflicts")).into_iter().collect();
    let want: HashSet<String> = (0..100)
        .map(|i| format!("n {i}"))
        .chain((0..300).filter(|i| i % 3 != 0).map(|i| format!("m {i}")))
        .collect();
    assert_eq!(stored, want);

    let dead = read_json_lines(&dir.path().join("dead.jsonl"));
    let dead_msgs: HashSet<String> = messages(&dead).into_iter().collect();
    let want_dead: HashSet<String> = (0..300)
        .filter(|i| i % 3 == 0)
        .map(|i| format!("o {i}"))
        .collect();
    assert_eq!(dead.len(), 100, "each refused event dead-lettered once");
    assert_eq!(dead_msgs, want_dead);
    for d in &dead {
        assert_eq!(d["error"]["type"], "mapper_parsing_exception", "{d}");
        let why = d["error"]["message"].as_str().unwrap();
        assert!(why.contains("[size]"), "the reason names the field: {why}");
        assert_eq!(d["trawl"]["dead_letter"]["output"], "es");
    }
}

/// A node whose write pool takes one task and queues one more answers most items of
/// concurrent requests 429 `rejected_execution_exception`: trawl sends those again until
/// every event is stored, once (ids from the node, so a duplicate would show).
#[test]
fn real_429s_from_a_tiny_write_queue_lose_and_duplicate_nothing() {
    let os = OpenSearch::start(&[
        ("thread_pool.write.size", "1"),
        ("thread_pool.write.queue_size", "1"),
    ]);
    // Several shards, so that one bulk request is several write tasks.
    os.put(
        "/busy",
        &json!({"settings": {"number_of_shards": 4, "number_of_replicas": 0}}),
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!("[\"{}\"]", os.url),
        "    index: busy\n    id_from: none\n    concurrency: 4\n",
    );
    let n = 5000;
    let input = lines("busy", n);
    run(&cfg, &input, None);

    let rejected = os.write_rejections();
    assert!(
        rejected > 0,
        "the node rejected writes (thread_pool.write.rejected = {rejected})"
    );
    let stored = messages(&os.docs("busy"));
    assert_eq!(
        stored.len(),
        n,
        "every event stored once ({rejected} rejections)"
    );
    assert_eq!(
        stored.into_iter().collect::<HashSet<_>>(),
        input.lines().map(str::to_owned).collect::<HashSet<_>>()
    );
    assert!(read_json_lines(&dir.path().join("dead.jsonl")).is_empty());
    eprintln!(
        "tiny-queue node: {rejected} write rejections; started in {:.1} s, RSS {} MiB",
        os.startup.as_secs_f64(),
        os.rss_kib().unwrap_or(0) / 1024
    );
}

/// A way an index stops taking writes: its name, how it starts and ends, the error it answers.
type Episode = (&'static str, fn(&OpenSearch), fn(&OpenSearch), &'static str);

/// The index is missing on a cluster that creates none on demand (`action.auto_create_index`,
/// here for `blocked*` only so that the other tests on this node keep theirs: each item answered
/// 404 `index_not_found_exception` until someone creates it), an operator puts a write block on
/// it (`index.blocks.write`, as before a shrink: 403 `cluster_block_exception`), the disk
/// watermark makes it read-only (429 `cluster_block_exception`), or it is closed for maintenance
/// (400 `index_closed_exception`). Those are the index's state, not the events' fault: the events
/// wait and are retried (until `retry.max_item_age`), nothing is dead-lettered, each episode is
/// logged once and `/health` names the output past its threshold; once the index takes writes
/// again every line is stored, once, and `/health` is 200 again.
#[test]
fn a_blocked_or_closed_index_holds_events_until_it_takes_writes_again() {
    let os = OpenSearch::shared();
    let dir = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let dead = dir.path().join("dead.jsonl");
    let cfg = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{http}\", health: {{ output_failure_threshold: 1s }} }}\nshutdown_timeout: 60s\ninputs:\n  app: {{ type: stdin }}\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"{url}\"]\n    index: blocked\n    id_from: none\n    dead_letter: dead\n    batch: {{ max_events: 100, timeout: 100ms }}\n    retry: {{ initial_backoff: 20ms, max_backoff: 500ms }}\n  dead:\n    type: file\n    path: {dl}\n",
            data = dir.path().join("data").display(),
            url = os.url,
            dl = dead.display()
        ),
    );
    os.put(
        "/blocked",
        &json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}}),
    );
    let log = dir.path().join("trawl.log");
    let mut t = Trawl::start(&cfg, Some(&log));
    let mut input = String::new();
    let mut stored_before = 0;
    let episodes: [Episode; 4] = [
        (
            "missing",
            |os| {
                os.put(
                    "/_cluster/settings",
                    &json!({"persistent": {"action.auto_create_index": "-blocked*,+*"}}),
                );
                os.delete("/blocked");
            },
            |os| {
                assert!(!os.exists("/blocked"), "the node created no index");
                os.put(
                    "/blocked",
                    &json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}}),
                );
                os.put(
                    "/_cluster/settings",
                    &json!({"persistent": {"action.auto_create_index": null}}),
                );
            },
            "index_not_found_exception",
        ),
        (
            "write",
            |os| {
                os.put("/blocked/_settings", &json!({"index.blocks.write": true}));
            },
            |os| {
                os.put("/blocked/_settings", &json!({"index.blocks.write": false}));
            },
            "cluster_block_exception",
        ),
        (
            "flood",
            |os| {
                os.put(
                    "/blocked/_settings",
                    &json!({"index.blocks.read_only_allow_delete": true}),
                );
            },
            |os| {
                os.put(
                    "/blocked/_settings",
                    &json!({"index.blocks.read_only_allow_delete": null}),
                );
            },
            "cluster_block_exception",
        ),
        (
            "closed",
            |os| {
                os.post("/blocked/_close", &json!({}));
            },
            |os| {
                os.post("/blocked/_open?wait_for_active_shards=1", &json!({}));
            },
            "index_closed_exception",
        ),
    ];
    for (name, block, lift, error) in episodes {
        block(os);
        let lines = lines(name, 100);
        input.push_str(&lines);
        t.feed(lines.as_bytes());
        let mut health = None;
        wait_until(
            Duration::from_secs(60),
            &format!("{name}: /health 503 while the index refuses writes (or dead letters)"),
            || {
                health = http_get(&http, "/health");
                !read_json_lines(&dead).is_empty()
                    || health.as_ref().is_some_and(|(status, _)| *status == 503)
            },
        );
        let dead_letters = read_json_lines(&dead);
        assert!(
            dead_letters.is_empty(),
            "{name}: {} events refused for the index's state were dead-lettered, first: {}",
            dead_letters.len(),
            dead_letters[0]
        );
        let (_, body) = health.unwrap();
        assert!(
            body.contains("\"es\"") && body.contains(error),
            "{name}: /health names the output and the reason: {body}"
        );
        // A few more refused rounds (back-off up to 500 ms): nothing stored or dead-lettered.
        std::thread::sleep(Duration::from_secs(1));
        assert!(read_json_lines(&dead).is_empty(), "{name}");
        if name != "closed" && name != "missing" {
            // (A closed or missing index cannot be searched.)
            assert_eq!(os.docs("blocked").len(), stored_before, "{name}");
        }
        lift(os);
        stored_before += 100;
        wait_until(
            Duration::from_secs(60),
            &format!("{name}: the held events stored"),
            || os.docs("blocked").len() == stored_before,
        );
        wait_until(
            Duration::from_secs(60),
            &format!("{name}: /health 200 once the index takes writes"),
            || http_get(&http, "/health").is_some_and(|(status, _)| status == 200),
        );
    }
    let status = t.finish(Duration::from_secs(120));
    assert!(status.success(), "trawl exited with {status}");
    let stored = messages(&os.docs("blocked"));
    assert_eq!(stored.len(), 400, "every event stored once");
    assert_eq!(
        stored.into_iter().collect::<HashSet<_>>(),
        input.lines().map(str::to_owned).collect::<HashSet<_>>()
    );
    assert!(read_json_lines(&dead).is_empty());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        text.matches("refuses to write the index").count(),
        4,
        "each episode is logged once: {text}"
    );
}

/// A pipeline reading real captures (HTTP and flows) into `index`, with `es_extra` keys.
fn capture_config(dir: &Path, url: &str, es_extra: &str) -> PathBuf {
    let pcaps = shared_dir().join("data/pcaps/suricata-verify");
    let mut inputs = String::new();
    for (name, capture) in [
        ("ten", "bug-130"),
        ("public", "http-all-headers"),
        ("office", "http-options-method"),
    ] {
        inputs.push_str(&format!(
            "  {name}:\n    type: pcap_file\n    path: {}\n    http: {{ ports: [80] }}\n    flows: {{ period: -1s }}\n",
            pcaps.join(capture).join("input.pcap").display()
        ));
    }
    let text = format!(
        "data_dir: {data}\nhttp: {{ enabled: false }}\ninputs:\n{inputs}outputs:\n  es:\n    type: elasticsearch\n    hosts: [\"{url}\"]\n    batch: {{ max_events: 100, timeout: 100ms }}\n{es_extra}",
        data = dir.join("data").display(),
    );
    write_file(dir, "capture.yaml", &text)
}

fn property<'a>(mapping: &'a Value, path: &str) -> &'a Value {
    let mut cur = mapping;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        cur = &cur[p];
        if i + 1 < parts.len() {
            cur = &cur["properties"];
        }
    }
    &cur["type"]
}

/// HTTP transactions and flows from real captures land with ECS types from the template trawl
/// installs, so that a CIDR `term` and a `range` on `client.ip` find the right events (on a
/// keyword they would find none); the same into a data stream with `op_type: create`.
#[test]
fn the_index_template_types_ecs_fields_and_ip_queries_work() {
    let os = OpenSearch::shared();
    let dir = tempfile::tempdir().unwrap();
    assert!(!os.exists("/_index_template/trawl-web"));
    let cfg = capture_config(dir.path(), &os.url, "    index: \"web-%Y.%m.%d\"\n");
    run(&cfg, "", None);
    assert!(
        os.exists("/_index_template/trawl-web"),
        "template installed under its default name"
    );
    check_typed_and_queryable(os, "web-*");

    // A data stream: the template says so, and `create` is what data streams take.
    let cfg = capture_config(
        dir.path(),
        &os.url,
        "    index: logs-trawl-web\n    op_type: create\n    setup: { template: { name: trawl-stream, pattern: \"logs-trawl-*\", data_stream: true } }\n",
    );
    run(&cfg, "", None);
    let streams = os.get("/_data_stream/logs-trawl-web");
    assert_eq!(
        streams["data_streams"][0]["name"], "logs-trawl-web",
        "{streams}"
    );
    check_typed_and_queryable(os, "logs-trawl-web");
}

fn check_typed_and_queryable(os: &OpenSearch, index: &str) {
    let mappings = os.get(&format!("/{index}/_mapping"));
    let (_, first) = mappings
        .as_object()
        .and_then(|m| m.iter().next())
        .expect("an index");
    let props = &first["mappings"]["properties"];
    for (field, want) in [
        ("@timestamp", "date"),
        ("client.ip", "ip"),
        ("server.ip", "ip"),
        ("source.ip", "ip"),
        ("destination.ip", "ip"),
        ("source.port", "long"),
        ("destination.bytes", "long"),
        ("url.path", "keyword"),
        ("url.original", "keyword"),
        ("http.request.method", "keyword"),
        ("http.response.status_code", "long"),
        ("event.duration", "long"),
        ("network.transport", "keyword"),
        ("network.community_id", "keyword"),
        ("flow.final", "boolean"),
    ] {
        assert_eq!(
            property(props, field),
            want,
            "{index}: {field} mapped as {want}"
        );
    }

    let docs = os.docs(index);
    let http: Vec<&Value> = docs.iter().filter(|d| d["http"].is_object()).collect();
    let flows = docs.iter().filter(|d| d["flow"].is_object()).count();
    assert!(
        http.len() >= 3 && flows >= 3,
        "{index}: HTTP events and flows from the three captures ({} and {flows})",
        http.len()
    );
    let client_ips: Vec<std::net::IpAddr> = http
        .iter()
        .filter_map(|d| d["client"]["ip"].as_str()?.parse().ok())
        .collect();
    let in_ten = client_ips
        .iter()
        .filter(|ip| matches!(ip, std::net::IpAddr::V4(v4) if v4.octets()[0] == 10))
        .count();
    let in_192_168 = client_ips
        .iter()
        .filter(|ip| matches!(ip, std::net::IpAddr::V4(v4) if v4.octets()[..2] == [192, 168]))
        .count();
    assert!(
        in_ten > 0 && in_192_168 > 0 && in_ten + in_192_168 < client_ips.len(),
        "{index}: the captures have clients in 10/8, 192.168/16 and elsewhere: {client_ips:?}"
    );

    let cidr = os.search(index, &json!({"term": {"client.ip": "10.0.0.0/8"}}));
    assert_eq!(cidr.len(), in_ten, "{index}: client.ip in 10.0.0.0/8");
    assert!(cidr.iter().all(|d| d["client"]["ip"]
        .as_str()
        .is_some_and(|ip| ip.starts_with("10."))));
    let range = os.search(
        index,
        &json!({"range": {"client.ip": {"gte": "192.168.0.0", "lte": "192.168.255.255"}}}),
    );
    assert_eq!(range.len(), in_192_168, "{index}: client.ip range");
    let not_found = os.search(index, &json!({"term": {"url.path": "/no/such/path"}}));
    assert!(not_found.is_empty());
    let path = http[0]["url"]["path"].as_str().expect("url.path");
    let by_path = os.search(index, &json!({"term": {"url.path": path}}));
    assert!(!by_path.is_empty(), "{index}: exact url.path {path} found");
}

/// A template that cannot be installed (another of the same priority claims the same indices,
/// which the node refuses) holds the events back, logged once with the node's answer; once
/// the other is gone trawl installs its own and delivers everything. `enabled: false` installs
/// nothing.
#[test]
fn a_template_the_node_refuses_holds_events_back_until_it_can_be_installed() {
    let os = OpenSearch::shared();
    os.put(
        "/_index_template/someone-elses",
        // 160: the priority trawl gives its `clash-logs*` (150 and the pattern's fixed length).
        &json!({"index_patterns": ["clash-*"], "priority": 160, "template": {"settings": {"number_of_replicas": 0}}}),
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!("[\"{}\"]", os.url),
        "    index: clash-logs\n",
    );
    let log = dir.path().join("trawl.log");
    let mut t = Trawl::start(&cfg, Some(&log));
    t.feed(lines("held", 100).as_bytes());
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(
        Duration::from_secs(60),
        "the template error in the log",
        || read_log().contains("cannot install the index template"),
    );
    // A few more failed attempts (backoff up to 500 ms).
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !os.exists("/clash-logs"),
        "nothing indexed without the template"
    );
    let text = read_log();
    assert_eq!(
        text.matches("cannot install the index template").count(),
        1,
        "logged once: {text}"
    );
    assert!(
        text.contains("someone-elses") || text.contains("same priority"),
        "the node's reason is in the log: {text}"
    );

    let deleted = reqwest::blocking::Client::new()
        .delete(format!("{}/_index_template/someone-elses", os.url))
        .send()
        .unwrap();
    assert!(deleted.status().is_success());
    let status = t.finish(Duration::from_secs(120));
    assert!(status.success(), "trawl exited with {status}");
    assert!(os.exists("/_index_template/trawl-clash-logs"));
    assert_eq!(os.docs("clash-logs").len(), 100);

    let cfg = config(
        dir.path(),
        &format!("[\"{}\"]", os.url),
        "    index: untemplated\n    setup: { template: { enabled: false } }\n",
    );
    run(&cfg, &lines("plain", 10), None);
    assert_eq!(os.docs("untemplated").len(), 10);
    assert!(!os.exists("/_index_template/trawl-untemplated"));
}

/// Two outputs (here two runs) writing `overlap-*` and `overlap-web-*`: their templates' patterns
/// overlap, which the node refuses at equal priority; each is installed, the more specific one
/// above the other, and the events of both are indexed.
#[test]
fn templates_of_overlapping_index_names_are_both_installed() {
    let os = OpenSearch::shared();
    let dir = tempfile::tempdir().unwrap();
    for (index, prefix) in [("overlap-%Y", "short"), ("overlap-web-%Y", "long")] {
        let cfg = config(
            dir.path(),
            &format!("[\"{}\"]", os.url),
            &format!("    index: \"{index}\"\n"),
        );
        run(&cfg, &lines(prefix, 20), None);
    }
    let priority = |name: &str| {
        os.get(&format!("/_index_template/{name}"))["index_templates"][0]["index_template"]
            ["priority"]
            .as_u64()
    };
    let (short, long) = (priority("trawl-overlap"), priority("trawl-overlap-web"));
    assert!(
        matches!((short, long), (Some(s), Some(l)) if l > s),
        "both installed, the longer pattern above: {short:?} {long:?}"
    );
    let year = chrono::Utc::now().format("%Y");
    assert_eq!(os.docs(&format!("overlap-{year}")).len(), 20);
    assert_eq!(os.docs(&format!("overlap-web-{year}")).len(), 20);
}

/// `hosts: ["127.0.0.1:PORT"]` as pasted from a Packetbeat configuration means http://; a host
/// that cannot be used is reported at its own position under `hosts`.
#[test]
fn hosts_without_a_scheme_are_http_and_bad_hosts_point_at_the_key() {
    let os = OpenSearch::shared();
    let dir = tempfile::tempdir().unwrap();
    let bare = os.url.trim_start_matches("http://");
    let cfg = config(
        dir.path(),
        &format!("[\"{bare}\"]"),
        "    index: bare-host\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["validate", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run(&cfg, &lines("bare", 50), None);
    assert_eq!(os.docs("bare-host").len(), 50);

    let text = "inputs:\n  app: { type: stdin }\noutputs:\n  es:\n    type: elasticsearch\n    hosts:\n      - \"es:9200\"\n      - \"ftp://es:21\"\n      - \"es:port\"\n";
    let bad = write_file(dir.path(), "bad.yaml", text);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["validate", "-c"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.yaml:8:9") && err.contains("outputs.es.hosts[1]") && err.contains("ftp"),
        "{err}"
    );
    assert!(!err.contains("relative URL without a base"), "{err}");
}

/// Basic auth against a node with the security plugin: with the right password every event is
/// stored; with a wrong one the node answers 401, which is retried, so nothing is stored and
/// nothing is dead-lettered (the events are not at fault) until trawl is stopped.
#[test]
fn basic_auth_against_the_security_plugin() {
    let os = OpenSearch::start_secure();
    let anonymous = reqwest::blocking::get(format!("{}/", os.url)).unwrap();
    assert_eq!(anonymous.status(), 401, "the node demands credentials");
    let dir = tempfile::tempdir().unwrap();
    let hosts = format!("[\"{}\"]", os.url);
    let cfg = config(
        dir.path(),
        &hosts,
        "    index: secured\n    username: admin\n    password: \"${OS_TEST_PASSWORD}\"\n",
    );
    let mut t = Trawl::start_env(&cfg, None, &[("OS_TEST_PASSWORD", "admin")]);
    t.feed(lines("secured", 300).as_bytes());
    let status = t.finish(Duration::from_secs(120));
    assert!(status.success(), "trawl exited with {status}");
    assert_eq!(os.docs("secured").len(), 300);

    let log = dir.path().join("wrong.log");
    let cfg = config(
        dir.path(),
        &hosts,
        "    index: refused\n    username: admin\n    password: wrong\n    setup: { template: { enabled: false } }\n",
    );
    let mut t = Trawl::start(&cfg, Some(&log));
    t.feed(lines("refused", 10).as_bytes());
    wait_until(Duration::from_secs(60), "a 401 in the log", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("401")
    });
    t.kill9();
    assert!(
        !os.exists("/refused"),
        "nothing stored with a wrong password"
    );
    assert!(read_json_lines(&dir.path().join("dead.jsonl")).is_empty());
    eprintln!(
        "secure node: started in {:.1} s, RSS {} MiB",
        os.startup.as_secs_f64(),
        os.rss_kib().unwrap_or(0) / 1024
    );
}

/// Template settings that cannot work are refused by `trawl validate`, saying what to set.
#[test]
fn template_settings_that_cannot_work_fail_validation() {
    let dir = tempfile::tempdir().unwrap();
    for (keys, want) in [
        (
            "    index: \"%{[kubernetes.namespace]}-logs\"\n",
            "set `setup.template.pattern`",
        ),
        (
            "    index: logs-web\n    setup: { template: { data_stream: true } }\n",
            "needs `op_type: create`",
        ),
        (
            "    setup: { template: { enabled: yes, pattren: \"x-*\" } }\n",
            "outputs.es.setup.template.pattren",
        ),
    ] {
        let text = format!(
            "inputs:\n  app: {{ type: stdin }}\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"es:9200\"]\n{keys}"
        );
        let cfg = write_file(dir.path(), "t.yaml", &text);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
            .args(["validate", "-c"])
            .arg(&cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{keys}: {err}");
        assert!(
            err.contains("t.yaml:") && err.contains(want),
            "{keys}: {err}"
        );
    }
}

/// An index whose only primary cannot be assigned (red: allocation asks for a node that does
/// not exist) takes no write; the node waits for the shard as long as the bulk request's
/// `timeout` says, then answers that item 503 `unavailable_shards_exception`. trawl asks for
/// half its `request_timeout`, so the answer comes before its own wait ends: the item is tried
/// until `max_item_age`, dead-lettered with the node's reason, and the events beside it in the
/// same requests are stored and acknowledged. Before, the node's default (1 m, as long as
/// `request_timeout`) outlasted every attempt: the batch was never settled, nothing was
/// dead-lettered, and the stop timed out with the stored events unacknowledged.
#[test]
fn an_item_for_a_red_index_is_dead_lettered_and_the_rest_delivered() {
    let os = OpenSearch::shared();
    let dir = tempfile::tempdir().unwrap();
    os.put(
        "/red-held?wait_for_active_shards=0",
        &json!({"settings": {
            "index.number_of_replicas": 0,
            "index.routing.allocation.require._name": "no-such-node"
        }}),
    );
    let text = format!(
        "data_dir: {data}\nhttp: {{ enabled: false }}\nshutdown_timeout: 60s\ninputs:\n  app: {{ type: stdin }}\nprocessors:\n  - {{ type: json, field: message }}\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"{url}\"]\n    index: \"%{{[target]}}\"\n    setup: {{ template: {{ enabled: false }} }}\n    dead_letter: dead\n    request_timeout: 6s\n    batch: {{ max_events: 200, timeout: 100ms }}\n    retry: {{ initial_backoff: 20ms, max_backoff: 500ms, max_item_age: 15s }}\n  dead:\n    type: file\n    path: {dl}\n",
        data = dir.path().join("data").display(),
        url = os.url,
        dl = dir.path().join("dead.jsonl").display()
    );
    let cfg = write_file(dir.path(), "pipeline.yaml", &text);
    let input: String = (0..400)
        .map(|i| {
            let target = if i == 150 { "red-held" } else { "green-beside" };
            format!("{{\"message\":\"m {i}\",\"target\":\"{target}\"}}\n")
        })
        .collect();
    // `finish` closes stdin and waits for a clean exit: every batch settled.
    run(&cfg, &input, None);
    let _ = os.post("/green-beside/_refresh", &json!({}));
    assert_eq!(os.get("/green-beside/_count")["count"], 399);
    let dead = read_json_lines(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!(dead[0]["message"], "m 150");
    let why = dead[0]["error"]["message"].as_str().unwrap_or_default();
    assert!(why.contains("unavailable_shards_exception"), "{}", dead[0]);
    os.delete("/red-held");
}

/// An output naming an ingest `pipeline` that is not on the cluster yet (deployed after trawl,
/// or deleted by mistake): the node refuses each item 400 "pipeline with id [..] does not
/// exist". That is the setting's state, not the events' fault: they wait, as for an index not
/// created yet, and are stored once the pipeline exists, none dead-lettered. Before, every event
/// sent meanwhile went to the dead letters.
#[test]
fn events_wait_for_an_ingest_pipeline_created_after_them() {
    let os = OpenSearch::shared();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!("[\"{}\"]", os.url),
        "    index: piped\n    pipeline: trawl-later\n",
    );
    let mut t = Trawl::start(&cfg, None);
    t.feed(lines("p", 300).as_bytes());
    // Refused at least once before the pipeline exists.
    std::thread::sleep(Duration::from_secs(3));
    assert!(!os.exists("/_ingest/pipeline/trawl-later"));
    os.put(
        "/_ingest/pipeline/trawl-later",
        &json!({"description": "created after trawl started", "processors": []}),
    );
    let status = t.finish(Duration::from_secs(120));
    assert!(status.success(), "trawl exited with {status}");
    let stored: HashSet<String> = messages(&os.docs("piped")).into_iter().collect();
    assert_eq!(stored.len(), 300);
    assert!(read_json_lines(&dir.path().join("dead.jsonl")).is_empty());
    os.delete("/_ingest/pipeline/trawl-later");
}
