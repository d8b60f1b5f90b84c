//! The `redact` processor through the real binary: what an app logs with secrets in it (a card
//! number, tokens, a password in a URL, logfmt and JSON pairs) leaves trawl masked, the rest of
//! each line as written; and a pipeline naming an unknown detector fails `trawl validate` at it.

use crate::support;
use std::path::Path;
use support::process::{run_on_stdin, validate};

fn pipeline(dir: &Path, processors: &str) -> std::path::PathBuf {
    let p = dir.join("redact.yaml");
    std::fs::write(
        &p,
        format!(
            "inputs:\n  app: {{ type: stdin }}\nprocessors:\n{processors}\
             outputs:\n  o: {{ type: stdout }}\nhttp: {{ enabled: false }}\n"
        ),
    )
    .unwrap();
    p
}

#[test]
fn secrets_an_app_logs_leave_masked_and_the_rest_of_each_line_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let p = pipeline(
        tmp.path(),
        "  - { type: json, target: doc, ignore_missing: true, tag_on_failure: not_json }\n  \
         - { type: redact, fields: [message, doc.auth], builtins: [credit_card, authorization, url_password, password], tag: redacted }\n",
    );
    // (line written by the app, message as shipped)
    let cases = [
        (
            "payment ok card=5555 5555 5555 4444 amount=12.50",
            "payment ok card=[REDACTED] amount=12.50",
        ),
        (
            "GET /x took 1733611234561 ms id=4111111111111112",
            "GET /x took 1733611234561 ms id=4111111111111112",
        ),
        (
            "dial postgres://orders:Pa55w0rd!@10.0.0.5:5432/orders failed",
            "dial postgres://orders:[REDACTED]@10.0.0.5:5432/orders failed",
        ),
        (
            "time=2026-12-07T10:00:00Z level=warn msg=\"retry\" client_secret=\"abc def\" attempt=2",
            "time=2026-12-07T10:00:00Z level=warn msg=\"retry\" client_secret=\"[REDACTED]\" attempt=2",
        ),
        (
            "upstream said: Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.x",
            "upstream said: Authorization: Bearer [REDACTED]",
        ),
        ("nothing to hide here", "nothing to hide here"),
    ];
    let mut input: String = cases.iter().map(|(l, _)| format!("{l}\n")).collect();
    // A JSON line whose parsed field is masked too: the parsed copy is what indexes search.
    input.push_str("{\"auth\":\"Authorization: Basic dXNlcjpwYXNz\",\"user\":\"bob\"}\n");
    let events = run_on_stdin(&p, tmp.path(), &input);
    assert_eq!(events.len(), cases.len() + 1, "{events:?}");
    for ((line, want), e) in cases.iter().zip(&events) {
        assert_eq!(e["message"], *want, "{line}: {e}");
        let tagged = e["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "redacted"));
        assert_eq!(tagged, line != want, "{line}: {e}");
    }
    let last = &events[cases.len()];
    assert_eq!(
        last["doc"]["auth"], "Authorization: Basic [REDACTED]",
        "{last}"
    );
    assert_eq!(last["doc"]["user"], "bob", "{last}");
    assert_eq!(
        last["message"], "{\"auth\":\"Authorization: Basic [REDACTED]\",\"user\":\"bob\"}",
        "{last}"
    );
}

#[test]
fn an_unknown_detector_or_a_bad_pattern_fails_validate_at_its_line_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let p = pipeline(
        tmp.path(),
        "  - type: redact\n    builtins:\n      - email\n      - ssn\n",
    );
    let (code, err) = validate(&p);
    assert_eq!(code, Some(1), "{err}");
    let f = p.display().to_string();
    assert!(
        err.contains(&format!(
            "{f}:7:9: processors[0].builtins[1]: unknown detector `ssn`"
        )),
        "{err}"
    );
    let p = pipeline(
        tmp.path(),
        "  - { type: redact, patterns: ['token=(?<secret>\\w+', 'ok'] }\n",
    );
    let (code, err) = validate(&p);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("processors[0].patterns[0]: expected a regular expression"),
        "{err}"
    );
}
