//! The loghub samples parsed by the example pipelines in `pipelines/examples/`, run through the
//! real binary and compared line by line with each sample's `*_structured.csv` ground truth.

use crate::support;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use support::loghub::leaves;
use support::process::shared_dir;

/// Splits CSV text into rows (RFC 4180: quoted fields, `""` escapes, newlines in quotes).
pub(crate) fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// Every leaf of a JSON object as (dotted path, value).
/// Runs `pipeline` on `log` and checks every output line against the CSV row of the same
/// number: each column named in `columns` must be the field it maps to (an empty cell: the
/// field is absent), and no other field than those and `extra` may be present.
fn check(name: &str, pipeline: &str, columns: &[(&str, &str)], extra: &[&str]) {
    let dir = shared_dir().join("data/logs/loghub").join(name);
    let log = dir.join(format!("{name}_2k.log"));
    let csv = std::fs::read_to_string(dir.join(format!("{name}_2k.log_structured.csv")))
        .unwrap_or_else(|e| {
            panic!(
                "cannot read the ground truth of {name} under {} ({e}); set TRAWL_SHARED_DIR",
                dir.display()
            )
        });
    let rows = parse_csv(&csv);
    let header = &rows[0];
    let data_dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["run", "-c"])
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("pipelines/examples")
                .join(pipeline),
        )
        .env("TRAWL_DATA_DIR", data_dir.path())
        .stdin(Stdio::from(std::fs::File::open(&log).unwrap()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{pipeline}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let events: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), rows.len() - 1, "{name}: one event per line");

    let allowed: BTreeSet<&str> = columns
        .iter()
        .map(|(_, p)| *p)
        .chain(extra.iter().copied())
        .chain(["@timestamp", "host.name"])
        .collect();
    for (i, (row, event)) in rows[1..].iter().zip(&events).enumerate() {
        let mut have = BTreeMap::new();
        leaves("", event, &mut have);
        for path in have.keys() {
            assert!(
                allowed.contains(path.as_str()),
                "{name} line {}: unexpected field `{path}` in {event}",
                i + 1
            );
        }
        for (column, path) in columns {
            let col = header
                .iter()
                .position(|h| h == column)
                .unwrap_or_else(|| panic!("{name}: no column {column}"));
            let want = &row[col];
            let got = have.get(*path);
            match got {
                Some(Value::String(s)) => {
                    assert_eq!(s, want, "{name} line {}: {column} -> {path}", i + 1)
                }
                None => assert_eq!(
                    want,
                    "",
                    "{name} line {}: {column} -> {path} is missing in {event}",
                    i + 1
                ),
                Some(other) => panic!(
                    "{name} line {}: {path} is {other}, expected text {want:?}",
                    i + 1
                ),
            }
        }
    }
}

#[test]
fn apache_by_regex_with_timestamp() {
    check(
        "Apache",
        "loghub-apache.yaml",
        &[
            ("Time", "time"),
            ("Level", "log.level"),
            ("Content", "message"),
        ],
        &[],
    );
    // The timestamp processor turned the first line's time into @timestamp.
    let dir = shared_dir().join("data/logs/loghub/Apache/Apache_2k.log");
    let first = std::fs::read_to_string(dir)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["run", "-c"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/examples/loghub-apache.yaml"))
        .env("TRAWL_DATA_DIR", tempfile::tempdir().unwrap().path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(first.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["@timestamp"], "2005-12-04T04:47:44.000000Z");
}

#[test]
fn hdfs_by_dissect() {
    check(
        "HDFS",
        "loghub-hdfs.yaml",
        &[
            ("Date", "date"),
            ("Time", "time"),
            ("Pid", "process.pid"),
            ("Level", "log.level"),
            ("Component", "log.logger"),
            ("Content", "message"),
        ],
        &[],
    );
}

#[test]
fn spark_by_dissect() {
    check(
        "Spark",
        "loghub-spark.yaml",
        &[
            ("Date", "date"),
            ("Time", "time"),
            ("Level", "log.level"),
            ("Component", "log.logger"),
            ("Content", "message"),
        ],
        &[],
    );
}

#[test]
fn openssh_by_dissect() {
    check(
        "OpenSSH",
        "loghub-openssh.yaml",
        &[
            ("Date", "month"),
            ("Day", "day"),
            ("Time", "time"),
            ("Component", "host.hostname"),
            ("Pid", "process.pid"),
            ("Content", "message"),
        ],
        &["process.name"],
    );
}

#[test]
fn linux_by_regex_with_optional_pid() {
    check(
        "Linux",
        "loghub-linux.yaml",
        &[
            ("Month", "month"),
            ("Date", "day"),
            ("Time", "time"),
            ("Level", "host.hostname"),
            ("Component", "process.name"),
            ("PID", "process.pid"),
            ("Content", "message"),
        ],
        &[],
    );
}

#[test]
fn zookeeper_by_regex() {
    check(
        "Zookeeper",
        "loghub-zookeeper.yaml",
        &[
            ("Date", "date"),
            ("Time", "time"),
            ("Level", "log.level"),
            ("Node", "process.thread.name"),
            ("Component", "log.logger"),
            ("Id", "log.origin.file.line"),
            ("Content", "message"),
        ],
        &[],
    );
}
