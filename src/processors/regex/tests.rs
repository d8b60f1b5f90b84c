//! The regex processor against its users' patterns: named and typed captures, several
//! patterns tried in turn, failures tagged, and a pattern split at its head matching as a whole.

use super::*;
use crate::processors::test_support::{build, event, json};
use serde_json::json;

#[test]
fn the_seed_pattern_works_as_written() {
    let mut p = build(
        r#"{type: regex, patterns: ['(?<time>\d\d\d\d\/[^\[]*) (?<level>\[[^ ]*)(?<context>.[^"]*)']}"#,
    )
    .unwrap();
    let mut e = event(r#"2024/05/06 10:11:12 [error] 1234#0: *5 open() "/x" failed"#);
    assert_eq!(p.process(&mut e), Verdict::Keep);
    assert_eq!(e.get("time").unwrap().as_str(), Some("2024/05/06 10:11:12"));
    assert_eq!(e.get("level").unwrap().as_str(), Some("[error]"));
    assert_eq!(
        e.get("context").unwrap().as_str(),
        Some(" 1234#0: *5 open() ")
    );
    assert!(!e.has_tag("_regex_parse_failure"));
}

#[test]
fn dotted_and_odd_names_nest() {
    let mut p = build(r#"{type: regex, patterns: '^(?<@ts>\S+) (?P<log.level>\w+) (?<log.origin.function>\w+): (?<message>.*)$'}"#).unwrap();
    let mut e = event("2026-01-01T00:00:00Z WARN main: disk almost full");
    p.process(&mut e);
    let j = json(&e);
    assert_eq!(
        j["log"],
        json!({"level": "WARN", "origin": {"function": "main"}})
    );
    assert_eq!(j["@ts"], json!("2026-01-01T00:00:00Z"));
    assert_eq!(j["message"], json!("disk almost full"));
}

#[test]
fn patterns_are_tried_in_order_and_target_nests() {
    let mut p = build(r#"{type: regex, target: parsed, patterns: ['^(?<a>\d+)$', '^(?<b>\w+)$']}"#)
        .unwrap();
    let mut e = event("abc");
    p.process(&mut e);
    assert_eq!(json(&e)["parsed"], json!({"b": "abc"}));
    let mut e = event("42");
    p.process(&mut e);
    assert_eq!(json(&e)["parsed"], json!({"a": "42"}));
}

#[test]
fn no_match_passes_unchanged_with_a_tag() {
    let mut p = build(r#"{type: regex, patterns: '^(?<n>\d+)$'}"#).unwrap();
    let mut e = event("not a number");
    let before = e.clone();
    assert_eq!(p.process(&mut e), Verdict::Keep);
    assert!(e.has_tag("_regex_parse_failure"));
    e.remove("tags");
    assert_eq!(e, before);
}

#[test]
fn trim_values() {
    let mut p =
        build(r#"{type: regex, trim_values: all, patterns: '^(?<a>[^|]*)\|(?<b>.*)$'}"#).unwrap();
    let mut e = event("  x |  y  ");
    p.process(&mut e);
    assert_eq!(json(&e)["a"], "x");
    assert_eq!(json(&e)["b"], "y");
}

/// A capture that replaces the parsed field (made in the field's own text) leaves the
/// field where it was, and captures into, under or above the field, typed, twice, or not
/// taking part, give the documents written here from the rules (last write wins, a
/// dotted name nests, a scalar in the way of a path becomes an object).
#[test]
fn captures_written_to_the_parsed_field_itself_or_around_it() {
    let at = chrono::DateTime::from_timestamp(1_764_547_200, 0).unwrap_or_default();
    let run = |yaml: &str, field: &str, text: &str| {
        let mut p = build(yaml).unwrap();
        let mut e = Event::new("app".into(), at);
        e.insert(field, text);
        e.insert("after", "kept");
        assert_eq!(p.process(&mut e), Verdict::Keep);
        e.to_json_string()
    };
    let ts = r#""@timestamp":"2025-12-01T00:00:00.000000Z""#;
    assert_eq!(
        run(
            r#"{type: regex, trim_values: all, patterns: '^\[(?<level>\w+)\] (?<message>.*)$'}"#,
            "message",
            "[WARN]   disk full  "
        ),
        format!(r#"{{{ts},"message":"disk full","after":"kept","level":"WARN"}}"#)
    );
    assert_eq!(
        run(
            r#"{type: regex, patterns: '^(?<message:int>\d+) (?<rest>.*)$'}"#,
            "message",
            "42 ok"
        ),
        format!(r#"{{{ts},"message":42,"after":"kept","rest":"ok"}}"#)
    );
    assert_eq!(
        run(
            r#"{type: regex, patterns: '^(?<message.code>\d+) (?<message.text>.*)$'}"#,
            "message",
            "42 ok"
        ),
        format!(r#"{{{ts},"message":{{"code":"42","text":"ok"}},"after":"kept"}}"#)
    );
    assert_eq!(
        run(
            r#"{type: regex, patterns: '^(?<message>\w+) (?<message>.*)$'}"#,
            "message",
            "a b c"
        ),
        format!(r#"{{{ts},"message":"b c","after":"kept"}}"#)
    );
    assert_eq!(
        run(
            r#"{type: regex, field: log.original, patterns: '^(?<log.level>\w+) (?<log.original>.*)$'}"#,
            "log.original",
            "INFO started"
        ),
        format!(r#"{{{ts},"log":{{"original":"started","level":"INFO"}},"after":"kept"}}"#)
    );
    assert_eq!(
        run(
            r#"{type: regex, field: log.original, patterns: '^(?<log>\w+)'}"#,
            "log.original",
            "INFO started"
        ),
        format!(r#"{{{ts},"log":"INFO","after":"kept"}}"#)
    );
    // The in-place group did not take part: the field keeps its whole text.
    assert_eq!(
        run(
            r#"{type: regex, patterns: '^(?<level>\w+):(?: (?<message>.+))?$'}"#,
            "message",
            "INFO:"
        ),
        format!(r#"{{{ts},"message":"INFO:","after":"kept","level":"INFO"}}"#)
    );
}

#[test]
fn unmatched_optional_groups_are_absent() {
    let mut p = build(r#"{type: regex, patterns: '^(?<name>\w+)(\[(?<pid>\d+)\])?:'}"#).unwrap();
    let mut e = event("cron: x");
    p.process(&mut e);
    assert_eq!(e.get("name").unwrap().as_str(), Some("cron"));
    assert!(e.get("pid").is_none());
}

#[test]
fn missing_field_and_bad_pattern() {
    let mut p = build(r#"{type: regex, field: nope, patterns: '(?<a>.)'}"#).unwrap();
    let mut e = event("x");
    p.process(&mut e);
    assert!(e.has_tag("_regex_parse_failure"));
    let err = build(r#"{type: regex, patterns: ['ok', '(?<a>']}"#)
        .err()
        .unwrap();
    assert_eq!(err.path.as_deref(), Some("processors[0].patterns[1]"));
    assert!(err.message.contains("invalid pattern"), "{}", err.message);
}

#[test]
fn typed_captures_inline_and_by_map() {
    let mut p = build(
        r#"{type: regex, types: {ok: bool, client.ip: ip}, patterns: '^(?<client.ip>\S+) (?<process.pid:int>\d+) (?<took:float>\S+) (?<ok>\w+) (?<at:timestamp>\S+)$'}"#,
    )
    .unwrap();
    let mut e = event("10.1.2.3 4321 0.5 true 2026-11-30T10:00:00Z");
    p.process(&mut e);
    let j = json(&e);
    assert_eq!(j["process"]["pid"], json!(4321));
    assert_eq!(j["took"], json!(0.5));
    assert_eq!(j["ok"], json!(true));
    assert_eq!(j["client"]["ip"], json!("10.1.2.3"));
    assert!(matches!(e.get("at"), Some(Value::Timestamp(_))));
    assert!(!e.has_tag(convert::FAILURE_TAG));

    // A value that is not of its type stays as text, tagged and counted: never dropped.
    let mut e = event("not-an-ip 4321 0.5 maybe 2026-11-30T10:00:00Z");
    p.process(&mut e);
    let j = json(&e);
    assert_eq!(j["client"]["ip"], json!("not-an-ip"));
    assert_eq!(j["ok"], json!("maybe"));
    assert_eq!(j["process"]["pid"], json!(4321));
    assert!(e.has_tag(convert::FAILURE_TAG));
}

#[test]
fn types_map_errors_name_the_key() {
    let err = build(r#"{type: regex, types: {pid: number}, patterns: '(?<pid>\d+)'}"#)
        .err()
        .unwrap();
    assert_eq!(err.path.as_deref(), Some("processors[0].types.pid"));
    assert!(
        err.message.contains("unknown type `number`"),
        "{}",
        err.message
    );
    let err = build(r#"{type: regex, types: {pdi: int}, patterns: '(?<pid>\d+)'}"#)
        .err()
        .unwrap();
    assert_eq!(err.path.as_deref(), Some("processors[0].types.pdi"));
}

#[test]
fn names_are_translated_outside_escapes_and_classes() {
    let (t, names) = translate_names(r"\(?<x>[(?<y>](?<a.b>z)(?P<c>w)(?<=q)");
    assert_eq!(t, r"\(?<x>[(?<y>](?<trawl_0>z)(?<trawl_1>w)(?<=q)");
    assert_eq!(names, vec!["a.b", "c"]);
}

/// Whether a pattern (user names) is matched through its head.
fn has_head(pattern: &str) -> bool {
    let (internal, _) = translate_names(pattern);
    let whole = Regex::new(&internal).unwrap();
    split_rest(&internal, &whole).is_some()
}

#[test]
fn only_patterns_that_end_in_the_rest_of_the_text_are_split() {
    assert!(has_head(
        r"^\[(?<time>[^\]]+)\] \[(?<level>[^\]]+)\] (?<message>.*)$"
    ));
    assert!(has_head(r"(?<a>\d+) (?<log.msg>.*)$"));
    assert!(has_head(r"^(?<m>.*)$"));
    // `.` matching `\n`, `$` at every line end, a lazy or a partial rest, an alternation
    // at the top, a rest nested in a group, an escaped `$`: the whole pattern is used.
    assert!(!has_head(r"(?s)^(?<a>\w+) (?<m>.*)$"));
    assert!(!has_head(r"(?m)^(?<a>\w+) (?<m>.*)$"));
    assert!(!has_head(r"^(?<a>\w+) (?<m>.*?)$"));
    assert!(!has_head(r"^(?<a>\w+) (?<m>.+)$"));
    assert!(!has_head(r"^a|(?<a>\w+) (?<m>.*)$"));
    assert!(!has_head(r"^(x(?<m>.*)$)"));
    assert!(!has_head(r"^(?<a>\w+) (?<m>.*)\$"));
    assert!(!has_head(r"^(?<a>\w+) (?<m>.*)"));
}

/// The fields a pattern gives, as the regex crate reads its named groups: the processor's
/// answer must be this one whether or not it matched through the head.
fn expected(pattern: &str, text: &str) -> Option<Vec<(String, String)>> {
    let re = Regex::new(pattern).unwrap();
    let caps = re.captures(text)?;
    Some(
        re.capture_names()
            .flatten()
            .filter_map(|n| caps.name(n).map(|m| (n.to_owned(), m.as_str().to_owned())))
            .collect(),
    )
}

#[test]
fn a_pattern_matched_through_its_head_gives_what_the_whole_pattern_gives() {
    let patterns = [
        r"^\[(?<time>[^\]]+)\] \[(?<level>[^\]]+)\] (?<message>.*)$",
        r"(?<word>\w+) (?<rest>.*)$",
        r"^(?<a>a|a\nb)(?<rest>.*)$",
        r"^(?<a>x)?(?<b>\d*)(?<rest>.*)$",
    ];
    let texts = [
        "[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6",
        "[Sun Dec 04 04:47:44 2005] [error] first line\nsecond line",
        "[Sun Dec 04] [notice] ",
        "[no level] here",
        "  leading spaces then words here",
        "one\ntwo three",
        "a\nbc",
        "abc",
        "x12 tail",
        "",
        "\n",
        "é ü ß",
    ];
    for pattern in patterns {
        assert!(has_head(pattern), "{pattern} should be split");
        let names: Vec<String> = Regex::new(pattern)
            .unwrap()
            .capture_names()
            .flatten()
            .map(str::to_owned)
            .collect();
        let yaml = format!(
            "{{type: regex, field: text, patterns: ['{}']}}",
            pattern.replace('\'', "''")
        );
        for text in texts {
            let mut p = build(&yaml).unwrap();
            let mut e = event("m");
            e.fields.insert("text", Value::String(text.to_owned()));
            p.process(&mut e);
            match expected(pattern, text) {
                None => assert!(e.has_tag("_regex_parse_failure"), "{pattern} on {text:?}"),
                Some(fields) => {
                    assert!(!e.has_tag("_regex_parse_failure"), "{pattern} on {text:?}");
                    for name in &names {
                        let want = fields
                            .iter()
                            .find(|(n, _)| n == name)
                            .map(|(_, v)| v.as_str());
                        let got = e.get(name).map(|v| v.as_str().unwrap());
                        assert_eq!(got, want, "{pattern} on {text:?}: field {name}");
                    }
                }
            }
        }
    }
}
