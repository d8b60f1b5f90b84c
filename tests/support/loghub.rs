//! Runs an example pipeline of `pipelines/examples/` on given log lines through the real binary
//! and compares every event with an expected split, written as a table like loghub's
//! `*_structured.csv`: one column per field, an empty cell for a field that must be absent.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// A Java stack-trace continuation line: no example's shape, so every pipeline must pass it on
/// whole with the failure tag.
pub const FOREIGN: &str = "\tat org.apache.hadoop.ipc.Client.call(Client.java:1468)";

/// A log line and the value of each column for it (`""`: the field is absent).
pub type Case<'a> = (&'a str, &'a [&'a str]);

/// Every leaf of a JSON object as (dotted path, value).
pub fn leaves(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&p, v, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

/// The fields of `event` the pipeline wrote, without `@timestamp` and `host.name` (trawl adds
/// those to every event).
fn parsed_fields(event: &Value) -> BTreeMap<String, Value> {
    let mut have = BTreeMap::new();
    leaves("", event, &mut have);
    have.remove("@timestamp");
    have.remove("host.name");
    have
}

/// Runs `trawl run -c pipelines/examples/<pipeline>` with `lines` on stdin.
pub fn run(pipeline: &str, lines: &[&str]) -> Vec<Value> {
    let data_dir = tempfile::tempdir().unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pipelines/examples")
        .join(pipeline);
    super::process::run_on_stdin(&config, data_dir.path(), &(lines.join("\n") + "\n"))
}

/// Feeds every case's line, then [`FOREIGN`], to `pipeline`: each event must hold exactly the
/// fields its row names (no more, no less), and the foreign line must come out whole, tagged
/// `_regex_parse_failure`, with nothing else added.
pub fn check(pipeline: &str, columns: &[&str], cases: &[Case]) {
    let mut lines: Vec<&str> = cases.iter().map(|(line, _)| *line).collect();
    lines.push(FOREIGN);
    let events = run(pipeline, &lines);
    assert_eq!(events.len(), lines.len(), "{pipeline}: one event per line");
    for ((line, row), event) in cases.iter().zip(&events) {
        assert_eq!(row.len(), columns.len(), "{pipeline}: row of {line}");
        let want: BTreeMap<String, Value> = columns
            .iter()
            .zip(row.iter())
            .filter(|(_, value)| !value.is_empty())
            .map(|(path, value)| ((*path).to_owned(), json!(value)))
            .collect();
        assert_eq!(parsed_fields(event), want, "{pipeline}: {line}");
    }
    let want = BTreeMap::from([
        ("message".to_owned(), json!(FOREIGN)),
        ("tags".to_owned(), json!(["_regex_parse_failure"])),
    ]);
    assert_eq!(
        parsed_fields(&events[cases.len()]),
        want,
        "{pipeline}: a line of another shape"
    );
}
