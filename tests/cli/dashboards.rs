//! The Grafana dashboards in packaging/grafana/ query only what trawl exports: every metric
//! named in every PromQL query (panels and variables) is on the `/metrics` of a real trawl that
//! shipped a capture (`pcap_file`) and a log file, and the service map panel's data source
//! paths answer with nodes and edges; every file input metric on that `/metrics` is charted.

use crate::support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use support::process::{free_port, http_get, shared_dir, wait_until, write_file, Trawl};

const DEADLINE: Duration = Duration::from_secs(60);

/// Sample names on `/metrics`, plus the series names of every declared family (a family with
/// no series yet, such as kernel drops of a capture file, is still exported).
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(decl) = line.strip_prefix("# TYPE ") {
            let mut parts = decl.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            names.insert(name.to_owned());
            if kind == "histogram" || kind == "summary" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

/// PromQL words that are not metric names: aggregations, keywords, functions taking no
/// parenthesis right after their name (`sum by (x) (...)`).
const NOT_METRICS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
];

/// The metric names a PromQL expression selects: identifiers outside strings, label matchers
/// and ranges, not called as functions, not keywords, not label lists of `by (...)` and the like.
fn metric_names(expr: &str) -> Vec<String> {
    // Blank out strings, `{...}`, `[...]`.
    let mut plain = String::with_capacity(expr.len());
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    let mut quote: Option<char> = None;
    for c in expr.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                plain.push(' ');
            }
            (Some(_), _) => plain.push(' '),
            (None, '"' | '\'' | '`') => {
                quote = Some(c);
                plain.push(' ');
            }
            (None, '{') => {
                depth_brace += 1;
                plain.push(' ');
            }
            (None, '}') => {
                depth_brace -= 1;
                plain.push(' ');
            }
            (None, '[') => {
                depth_bracket += 1;
                plain.push(' ');
            }
            (None, ']') => {
                depth_bracket -= 1;
                plain.push(' ');
            }
            (None, c) if depth_brace > 0 || depth_bracket > 0 => {
                let _ = c;
                plain.push(' ');
            }
            (None, c) => plain.push(c),
        }
    }
    let chars: Vec<char> = plain.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let mut skip_group = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '(' && skip_group {
            // A label list: skip to its `)`.
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            skip_group = false;
            i += 1;
            continue;
        }
        let starts_word = (c.is_ascii_alphabetic() || c == '_' || c == ':')
            && (i == 0
                || !(chars[i - 1].is_ascii_alphanumeric()
                    || chars[i - 1] == '_'
                    || chars[i - 1] == '.'));
        if !starts_word {
            if !c.is_whitespace() {
                skip_group = false;
            }
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len()
            && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
        {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let next = chars[i..].iter().find(|c| !c.is_whitespace());
        if [
            "by",
            "without",
            "on",
            "ignoring",
            "group_left",
            "group_right",
        ]
        .contains(&word.as_str())
        {
            skip_group = true;
            continue;
        }
        if next == Some(&'(') || NOT_METRICS.contains(&word.as_str()) {
            continue;
        }
        names.push(word);
    }
    names
}

/// Every PromQL query of a dashboard: panel targets' `expr`, and query variables.
fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(e)) = m.get("expr") {
                out.push(e.clone());
            }
            if m.get("type") == Some(&Value::String("query".into())) {
                match m.get("query") {
                    Some(Value::String(q)) => out.push(q.clone()),
                    Some(Value::Object(q)) => {
                        if let Some(Value::String(q)) = q.get("query") {
                            out.push(q.clone());
                        }
                    }
                    _ => {}
                }
            }
            m.values().for_each(|x| queries(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| queries(x, out)),
        _ => {}
    }
}

#[test]
fn the_promql_reader_finds_metric_names_only() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.99, sum by (server, le) (rate(trawl_http_request_duration_seconds_bucket{server=~"$server"}[$__rate_interval])))"#
        ),
        ["trawl_http_request_duration_seconds_bucket"]
    );
    assert_eq!(
        metric_names(r#"count(trawl_component_up{instance=~"$i"} == 0) or vector(0)"#),
        ["trawl_component_up"]
    );
    assert_eq!(
        metric_names("sum(a_total) / on (x) group_left (y) b_total offset 5m"),
        ["a_total", "b_total"]
    );
}

#[test]
fn every_dashboard_query_names_a_metric_trawl_exports() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let addr = format!("127.0.0.1:{}", free_port());
    // The capture goes through a FIFO kept open: the input stays alive, and with it its RED
    // metrics and service map (they leave `/metrics` when a pcap_file input ends).
    let pcap =
        std::fs::read(shared_dir().join("data/pcaps/suricata-verify/http-all-headers/input.pcap"))
            .unwrap();
    let capture = d.join("capture.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&capture)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    let (keep_open, until_done) = std::sync::mpsc::channel::<()>();
    let fifo = capture.clone();
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
        f.write_all(&pcap).unwrap();
        let _ = until_done.recv();
    });
    let log = write_file(
        d,
        "app.log",
        "2026-11-30 10:00:00 INFO started\n2026-11-30 10:00:01 WARN slow\nnot a log line\n",
    );
    let cfg = write_file(
        d,
        "p.yaml",
        &format!(
            "data_dir: {dd}/data\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  cap:\n    type: pcap_file\n    path: {cap}\n  logs:\n    type: file\n    paths: [\"{log}\"]\n    start_at: beginning\nprocessors:\n  - {{ type: regex, patterns: ['^(?<ts>\\S+ \\S+) (?<log.level>\\w+) (?<message>.*)$'], when: {{ input: logs }} }}\noutputs:\n  out: {{ type: file, path: \"{dd}/out.jsonl\" }}\n",
            dd = d.display(),
            cap = capture.display(),
            log = log.display()
        ),
    );
    let _trawl = Trawl::start(&cfg, Some(&d.join("trawl.log")));
    // The capture is read to its end (its HTTP counted) and the file's lines shipped.
    let mut text = String::new();
    wait_until(
        DEADLINE,
        "the capture's HTTP and the file's lines on /metrics",
        || {
            text = http_get(&addr, "/metrics").unwrap_or_default().1;
            text.contains("trawl_http_requests_total{")
                && support::process::metric(&addr, "trawl_events_out_total", "logs") == Some(3.0)
        },
    );
    let exported = exported_names(&text);

    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("packaging/grafana");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "dashboards in {}", folder.display());
    let mut checked = 0;
    let mut node_graphs = 0;
    let mut charted = BTreeSet::new();
    for f in &files {
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let mut qs = Vec::new();
        queries(&dash, &mut qs);
        assert!(!qs.is_empty(), "{}: no queries", f.display());
        for q in &qs {
            // `label_values(metric, label)`: only the metric is a series name.
            let names: Vec<String> = match q.strip_prefix("label_values(") {
                Some(args) => vec![args.split(',').next().unwrap_or("").trim().to_owned()],
                None => metric_names(q),
            };
            assert!(
                !names.is_empty(),
                "{}: a query that names no metric: {q}",
                f.display()
            );
            for n in names {
                assert!(
                    exported.contains(&n),
                    "{}: `{n}` (in `{q}`) is not exported by trawl; exported: {exported:?}",
                    f.display()
                );
                checked += 1;
                charted.insert(n);
            }
        }
        let panels = dash["panels"].as_array().unwrap();
        for p in panels.iter().filter(|p| p["type"] == "nodeGraph") {
            node_graphs += 1;
            assert_eq!(
                p["datasource"]["type"], "hamedkarbasi93-nodegraphapi-datasource",
                "the service map reads trawl's /api/graph through the Node Graph API data source"
            );
        }
    }
    assert!(checked > 30, "only {checked} metric references checked");
    // The other way round for the file input: every figure it exports is on a dashboard (lost
    // lines first of all: they are the one loss the file input can have).
    let uncharted: Vec<&String> = exported
        .iter()
        .filter(|n| n.starts_with("trawl_file_") && !charted.contains(*n))
        .collect();
    assert!(
        uncharted.is_empty(),
        "file input metrics on no dashboard: {uncharted:?}"
    );
    assert_eq!(node_graphs, 1, "one service map panel");

    // What the Node Graph API data source asks trawl for.
    let (status, health) = http_get(&addr, "/api/health").unwrap_or_default();
    assert_eq!(status, 200, "{health}");
    let (status, fields) = http_get(&addr, "/api/graph/fields").unwrap_or_default();
    assert_eq!(status, 200);
    let fields: Value = serde_json::from_str(&fields).unwrap();
    let field_names = |k: &str| -> Vec<String> {
        fields[k]
            .as_array()
            .unwrap_or_else(|| panic!("{k} in {fields}"))
            .iter()
            .map(|f| f["field_name"].as_str().unwrap().to_owned())
            .collect()
    };
    for required in ["id", "title", "mainStat"] {
        assert!(
            field_names("nodes_fields").iter().any(|n| n == required),
            "{fields}"
        );
    }
    for required in ["id", "source", "target"] {
        assert!(
            field_names("edges_fields").iter().any(|n| n == required),
            "{fields}"
        );
    }
    let (status, data) = http_get(&addr, "/api/graph/data").unwrap_or_default();
    assert_eq!(status, 200);
    let data: Value = serde_json::from_str(&data).unwrap();
    assert!(!data["nodes"].as_array().unwrap().is_empty(), "{data}");
    assert!(!data["edges"].as_array().unwrap().is_empty(), "{data}");
    let (status, graph) = http_get(&addr, "/api/graph").unwrap_or_default();
    assert_eq!(status, 200);
    let graph: Value = serde_json::from_str(&graph).unwrap();
    assert!(!graph["edges"].as_array().unwrap().is_empty(), "{graph}");
    drop(keep_open);
    writer.join().unwrap();
}
