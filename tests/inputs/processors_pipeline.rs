//! A pipeline that parses, tags and decides by conditions, run end to end with the binary:
//! dissect, json, timestamp, add_tags with `when:`, rename, remove and drop.

use crate::support;

use serde_json::{json, Value};
use std::process::Command;

const PIPELINE: &str = r#"
inputs:
  app: { type: stdin }
processors:
  - type: dissect
    tokenizer: '%{date} %{time} %{log.level} %{log.logger}: %{message}'
  - type: timestamp
    field: date
    formats: '%Y-%m-%d'
    timezone: Europe/Paris
  - { type: add_tags, tags: [k8s-beat] }
  - type: json
    target: payload
    when: { regexp: { message: '^\{' } }
  - type: add_tags
    tags: [alert]
    when:
      or:
        - equals: { log.level: ERROR }
        - range: { payload.status.gte: 500 }
  - type: drop
    when: { and: [ {equals: {log.level: DEBUG}}, {not: {contains: {message: keep}}} ] }
  - { type: rename, fields: [{from: log.logger, to: service.name}] }
  - { type: remove, fields: [time] }
  - type: add_fields
    fields: { event.kind: alert }
    when: { contains: { tags: alert } }
outputs:
  console: { type: stdout }
http: { enabled: false }
"#;

fn run(input: &str) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, PIPELINE).unwrap();
    support::process::run_on_stdin(&file, dir.path(), input)
}

#[test]
fn parses_tags_and_decides_by_conditions() {
    let events = run(concat!(
        "2026-07-01 10:00:00 INFO web: started\n",
        "2026-07-01 10:00:01 ERROR web: disk full\n",
        "2026-07-01 10:00:02 DEBUG web: noisy\n",
        "2026-07-01 10:00:03 DEBUG web: keep this one\n",
        "2026-07-01 10:00:04 INFO api: {\"status\": 503, \"path\": \"/x\"}\n",
        "2026-07-01 10:00:05 INFO api: {broken\n",
        "a line of another shape\n",
    ));
    assert_eq!(
        events.len(),
        6,
        "the DEBUG line without `keep` is dropped: {events:#?}"
    );
    let e = &events[0];
    assert_eq!(e["message"], "started");
    assert_eq!(e["service"]["name"], "web");
    assert!(e.get("time").is_none());
    assert_eq!(e["log"], json!({"level": "INFO"}));
    // Midnight in Paris in summer is 22:00 UTC the day before.
    assert_eq!(e["@timestamp"], "2026-06-30T22:00:00.000000Z");
    assert_eq!(e["tags"], json!(["k8s-beat"]));

    assert_eq!(events[1]["tags"], json!(["k8s-beat", "alert"]));
    assert_eq!(events[1]["event"]["kind"], "alert");
    assert_eq!(events[2]["message"], "keep this one");
    assert!(events[2].get("event").is_none());

    assert_eq!(events[3]["payload"], json!({"status": 503, "path": "/x"}));
    assert_eq!(events[3]["tags"], json!(["k8s-beat", "alert"]));

    assert_eq!(
        events[4]["tags"],
        json!(["k8s-beat", "_json_parse_failure"])
    );
    assert_eq!(events[4]["message"], "{broken");

    let odd = &events[5];
    assert_eq!(odd["message"], "a line of another shape");
    assert_eq!(
        odd["tags"],
        json!([
            "_dissect_parse_failure",
            "_timestamp_parse_failure",
            "k8s-beat",
            "_rename_failure"
        ])
    );
}

#[test]
fn validate_reports_processor_errors_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        "inputs:\n  app: { type: stdin }\nprocessors:\n  - { type: regex, patterns: '(?<a>' }\n  - { type: dissect, tokenizer: '%{a}%{b}' }\n  - { type: add_tags, tags: [x], when: { range: { code.over: 3 } } }\noutputs:\n  o: { type: stdout }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["validate", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("processors[0].patterns[0]: invalid pattern"),
        "{err}"
    );
    assert!(
        err.contains("processors[1].tokenizer: two keys without a delimiter"),
        "{err}"
    );
    assert!(
        err.contains("processors[2].when: range key `code.over`"),
        "{err}"
    );
}

/// An access log parsed with typed captures: the status is a number (so a `range` condition
/// sees it), the client address is checked, and a line whose size is `-` keeps it as text,
/// tagged, instead of losing the line.
#[test]
fn typed_captures_reach_the_output_as_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        r#"
inputs:
  app: { type: stdin }
processors:
  - type: regex
    types: { source.ip: ip }
    patterns: '^(?<source.ip>\S+) "(?<http.request.method>\w+) (?<url.path>\S+)" (?<http.response.status_code:int>\d+) (?<http.response.body.bytes:long>\S+) (?<event.duration:float>\S+)$'
  - type: add_tags
    tags: [server_error]
    when: { range: { http.response.status_code.gte: 500 } }
outputs:
  console: { type: stdout }
http: { enabled: false }
"#,
    )
    .unwrap();
    let events = support::process::run_on_stdin(
        &file,
        dir.path(),
        concat!(
            "10.0.0.7 \"GET /a\" 200 512 0.004\n",
            "2001:db8::2 \"POST /b\" 503 - 1.5\n",
        ),
    );
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["http"]["response"]["status_code"], json!(200));
    assert_eq!(events[0]["http"]["response"]["body"]["bytes"], json!(512));
    assert_eq!(events[0]["event"]["duration"], json!(0.004));
    assert_eq!(events[0]["source"]["ip"], json!("10.0.0.7"));
    assert!(events[0].get("tags").is_none(), "{}", events[0]);
    assert_eq!(events[1]["http"]["response"]["status_code"], json!(503));
    assert_eq!(events[1]["http"]["response"]["body"]["bytes"], json!("-"));
    let tags = events[1]["tags"].as_array().cloned().unwrap_or_default();
    assert!(tags.contains(&json!("server_error")), "{}", events[1]);
    assert!(
        tags.contains(&json!("_type_conversion_failure")),
        "{}",
        events[1]
    );
}

/// Every type, inline and from a `types:` map, in `regex` and in `dissect` alike: a syslog-like
/// line whose pid, share, flag, address and instant reach the output as a number, a float, a
/// boolean, a canonical address and a UTC instant; a value that does not convert stays text and
/// tags its event.
#[test]
fn regex_and_dissect_convert_int_float_bool_ip_and_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        r#"
inputs:
  app: { type: stdin }
processors:
  - type: regex
    when: { contains: { message: "re " } }
    types: { client.ip: ip, at: timestamp }
    patterns: '^re (?<at>\S+) (?<process.pid:int>\S+) (?<share:float>\S+) (?<ok:bool>\S+) (?<client.ip>\S+)$'
  - type: dissect
    when: { contains: { message: "di " } }
    types: { share: float, client.ip: ip }
    tokenizer: 'di %{at|timestamp} %{process.pid|int} %{share} %{ok|bool} %{client.ip}'
outputs:
  console: { type: stdout }
http: { enabled: false }
"#,
    )
    .unwrap();
    let events = support::process::run_on_stdin(
        &file,
        dir.path(),
        concat!(
            "re 2026-11-30T10:00:00.5+01:00 4242 0.25 true 2001:DB8:0:0::0002\n",
            "di 2026-11-30T10:00:00.5+01:00 4242 0.25 true 2001:DB8:0:0::0002\n",
            "re yesterday 4x2 .5x False 300.1.1.1\n",
            "di yesterday 4x2 .5x False 300.1.1.1\n",
        ),
    );
    assert_eq!(events.len(), 4, "{events:?}");
    for e in &events[..2] {
        assert_eq!(e["process"]["pid"], json!(4242), "{e}");
        assert_eq!(e["share"], json!(0.25), "{e}");
        assert_eq!(e["ok"], json!(true), "{e}");
        assert_eq!(e["client"]["ip"], json!("2001:db8::2"), "{e}");
        assert_eq!(e["at"], json!("2026-11-30T09:00:00.500000Z"), "{e}");
        assert!(e.get("tags").is_none(), "{e}");
    }
    for e in &events[2..] {
        assert_eq!(e["process"]["pid"], json!("4x2"), "{e}");
        assert_eq!(e["share"], json!(".5x"), "{e}");
        assert_eq!(e["ok"], json!(false), "{e}");
        assert_eq!(e["client"]["ip"], json!("300.1.1.1"), "{e}");
        assert_eq!(e["at"], json!("yesterday"), "{e}");
        let tags = e["tags"].as_array().cloned().unwrap_or_default();
        assert!(tags.contains(&json!("_type_conversion_failure")), "{e}");
    }
}
