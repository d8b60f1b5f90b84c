//! The `key_value` parser: splits `key=value` pairs out of a field, as logfmt writers (Go's
//! `log/slog` text handler, go-kit, logrus, klog's structured lines, Heroku's router) and query
//! strings write them. Quoted values and keys are unescaped; text that is not a pair is skipped.

use super::convert::{self, Conversion, TypesConfig};
use super::{
    default_field, restore_text, take_text, target_path, writable_field, Failures, Processor,
    Verdict,
};
use crate::config::{ComponentSpec, DeError};
use crate::event::{Event, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyValueConfig {
    /// The field holding the pairs.
    #[serde(default = "default_field")]
    pub field: String,
    /// Object the keys go under; absent: the event's root.
    #[serde(default)]
    pub target: Option<String>,
    /// Characters that separate pairs (any run of them is one separator).
    #[serde(default = "default_field_split")]
    pub field_split: String,
    /// Characters that separate a key from its value (the first one in a pair splits it).
    #[serde(default = "default_value_split")]
    pub value_split: String,
    /// A word with no value (`debug` in `debug user=alice`) becomes `true`, as logfmt reads it;
    /// by default such words (a klog header, a message before the pairs) are skipped.
    #[serde(default)]
    pub standalone_keys: bool,
    /// Only these keys are kept (empty: all).
    #[serde(default)]
    pub include_keys: Vec<String>,
    /// These keys are left out.
    #[serde(default)]
    pub exclude_keys: Vec<String>,
    /// Most keys taken from one event: a line of pairs without end must not give an index
    /// thousands of fields (Elasticsearch refuses a mapping past 1,000).
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Key → type (`int`, `float`, `bool`, `ip`, `timestamp`, `string`); others stay text.
    #[serde(default)]
    pub types: TypesConfig,
    /// Tag of events with no pair, an unterminated quote, a key that cannot be written, or
    /// more than `max_keys` keys.
    #[serde(default = "default_tag")]
    pub tag_on_failure: String,
    /// Events without the field pass untagged.
    #[serde(default)]
    pub ignore_missing: bool,
}

fn default_field_split() -> String {
    " \t".to_owned()
}

fn default_value_split() -> String {
    "=".to_owned()
}

fn default_max_keys() -> usize {
    100
}

fn default_tag() -> String {
    "_key_value_parse_failure".to_owned()
}

#[derive(Clone)]
pub struct KeyValue {
    field: String,
    target: Option<String>,
    field_split: Vec<char>,
    value_split: Vec<char>,
    standalone_keys: bool,
    include: BTreeSet<String>,
    exclude: BTreeSet<String>,
    max_keys: usize,
    types: BTreeMap<String, Conversion>,
    tag_on_failure: String,
    ignore_missing: bool,
    failures: Arc<Failures>,
}

/// One pair as read from the text: the key, and its value (`None` for a standalone word).
struct Pair {
    key: String,
    value: Option<String>,
}

/// What reading a line found besides its pairs.
#[derive(Default)]
struct Reading {
    pairs: Vec<Pair>,
    /// A quote opened and never closed: its value runs to the end of the text.
    unterminated: bool,
}

impl KeyValue {
    pub fn new(
        config: KeyValueConfig,
        spec: &ComponentSpec,
        failures: Arc<Failures>,
    ) -> Result<KeyValue, DeError> {
        let at = |key: &str| format!("{}.{key}", spec.path);
        let field_split: Vec<char> = config.field_split.chars().collect();
        let value_split: Vec<char> = config.value_split.chars().collect();
        if field_split.is_empty() {
            return Err(DeError::new(
                "expected at least one character that separates pairs (`\" \"`, `\"&\"`)",
                spec.mark,
                &at("field_split"),
            ));
        }
        if value_split.is_empty() {
            return Err(DeError::new(
                "expected at least one character that separates a key from its value (`\"=\"`, `\":\"`)",
                spec.mark,
                &at("value_split"),
            ));
        }
        if let Some(c) = value_split.iter().find(|c| field_split.contains(c)) {
            return Err(DeError::new(
                format!("{c:?} is in both `field_split` and `value_split`: a pair could not be told from two"),
                spec.mark,
                &at("value_split"),
            ));
        }
        if let Some(c) = field_split
            .iter()
            .chain(&value_split)
            .find(|c| matches!(c, '"' | '\\'))
        {
            return Err(DeError::new(
                format!("{c:?} quotes or escapes values; it cannot separate them"),
                spec.mark,
                &at(if value_split.contains(c) {
                    "value_split"
                } else {
                    "field_split"
                }),
            ));
        }
        if config.max_keys == 0 {
            return Err(DeError::new(
                "expected at least 1",
                spec.mark,
                &at("max_keys"),
            ));
        }
        if let Some(t) = &config.target {
            writable_field(t).map_err(|why| DeError::new(why, spec.mark, &at("target")))?;
        }
        let mut types = BTreeMap::new();
        for (name, ty) in &config.types {
            types.insert(name.clone(), convert::of_entry(name, ty, spec)?);
        }
        Ok(KeyValue {
            field: config.field,
            target: config.target,
            field_split,
            value_split,
            standalone_keys: config.standalone_keys,
            include: config.include_keys.into_iter().collect(),
            exclude: config.exclude_keys.into_iter().collect(),
            max_keys: config.max_keys,
            types,
            tag_on_failure: config.tag_on_failure,
            ignore_missing: config.ignore_missing,
            failures,
        })
    }

    fn is_field_split(&self, c: char) -> bool {
        self.field_split.contains(&c)
    }

    /// Reads every pair of `text`, left to right.
    fn read(&self, text: &str) -> Reading {
        let mut reading = Reading::default();
        let mut rest = text;
        loop {
            rest = rest.trim_start_matches(|c| self.is_field_split(c));
            let Some(first) = rest.chars().next() else {
                break;
            };
            // The key: quoted (slog quotes a key holding a space or a `=`), or up to a
            // separator of either kind. Only double quotes quote, as in logfmt: `'` is text.
            let key = if first == '"' {
                let (word, after, closed) = unquote(rest, first);
                rest = after;
                if !closed {
                    reading.unterminated = true;
                    break;
                }
                word
            } else {
                let end = rest
                    .find(|c| self.is_field_split(c) || self.value_split.contains(&c))
                    .unwrap_or(rest.len());
                let word = rest[..end].to_owned();
                rest = &rest[end..];
                word
            };
            let at_value = rest.chars().next().filter(|c| self.value_split.contains(c));
            let Some(split) = at_value else {
                // A word with no value; a quoted one is text (klog's message), never a key.
                if self.standalone_keys && first != '"' && !key.is_empty() {
                    reading.pairs.push(Pair { key, value: None });
                }
                // What is glued to a closing quote belongs to no pair: skip to the separator.
                let end = rest.find(|c| self.is_field_split(c)).unwrap_or(rest.len());
                rest = &rest[end..];
                continue;
            };
            rest = &rest[split.len_utf8()..];
            let value = match rest.chars().next() {
                Some('"') => {
                    let (value, after, closed) = unquote(rest, '"');
                    rest = after;
                    reading.unterminated |= !closed;
                    value
                }
                _ => {
                    let end = rest.find(|c| self.is_field_split(c)).unwrap_or(rest.len());
                    let value = rest[..end].to_owned();
                    rest = &rest[end..];
                    value
                }
            };
            // `=value` with no key is text, not a pair.
            if !key.is_empty() {
                reading.pairs.push(Pair {
                    key,
                    value: Some(value),
                });
            }
        }
        reading
    }
}

/// Reads a quoted text starting at `s` (which opens with `quote`), with the escapes Go's
/// `strconv.Quote` and JSON write. Returns the text, what follows the closing quote, and whether
/// the quote was closed (if not, the text runs to the end).
fn unquote(s: &str, quote: char) -> (String, &str, bool) {
    let body = &s[quote.len_utf8()..];
    let mut out = String::with_capacity(body.len().min(256));
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            return (out, &body[i + c.len_utf8()..], true);
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some((j, e)) = chars.next() else {
            out.push('\\');
            break;
        };
        let simple = match e {
            'n' => Some('\n'),
            't' => Some('\t'),
            'r' => Some('\r'),
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'v' => Some('\u{b}'),
            '\\' | '"' | '\'' | '/' => Some(e),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c);
            continue;
        }
        let digits = match e {
            'x' => 2,
            'u' => 4,
            'U' => 8,
            _ => 0,
        };
        let after = j + e.len_utf8();
        let code = body
            .get(after..after + digits)
            .filter(|h| digits > 0 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|h| u32::from_str_radix(h, 16).ok());
        match code {
            // `\xNN` in Go is a byte: below 0x80 it is that character; a byte of a UTF-8
            // sequence on its own cannot be text, so it stays written as it was.
            Some(n) if e != 'x' || n < 0x80 => match char::from_u32(n) {
                Some(c) => {
                    out.push(c);
                    for _ in 0..digits {
                        chars.next();
                    }
                }
                None => {
                    out.push('\\');
                    out.push(e);
                }
            },
            // Anything else (an octal byte, an unknown escape) is kept as written.
            _ => {
                out.push('\\');
                out.push(e);
            }
        }
    }
    (out, "", false)
}

impl Processor for KeyValue {
    fn process(&mut self, event: &mut Event) -> Verdict {
        let Some((text, from)) = take_text(event, &self.field) else {
            let (field, tag) = (&self.field, &self.tag_on_failure);
            self.failures
                .not_text(event, field, self.ignore_missing, tag);
            return Verdict::Keep;
        };
        let reading = self.read(&text);
        restore_text(event, &self.field, from, text);
        if reading.pairs.is_empty() {
            let what = format_args!("field `{}` holds no key-value pair", self.field);
            self.failures.tag(event, &self.tag_on_failure, &what);
            return Verdict::Keep;
        }
        let mut failed = reading.unterminated;
        if reading.unterminated {
            self.failures.record(&format_args!(
                "field `{}` has a quote that is never closed; its value was taken to the end",
                self.field
            ));
        }
        // Keys in the order first seen; a key given twice keeps every value, as a list.
        let mut fields: Vec<(String, Value)> = Vec::new();
        let mut conversion_failed = false;
        for Pair { key, value } in reading.pairs {
            if (!self.include.is_empty() && !self.include.contains(&key))
                || self.exclude.contains(&key)
            {
                continue;
            }
            let value = match value {
                None => Value::Bool(true),
                Some(raw) => match self.types.get(&key) {
                    None | Some(Conversion::String) => Value::String(raw),
                    Some(c) => c.apply(&raw).unwrap_or_else(|| {
                        self.failures.record(&format_args!(
                            "value `{raw}` of key `{key}` is not of type {c:?}; kept as text"
                        ));
                        conversion_failed = true;
                        Value::String(raw)
                    }),
                },
            };
            if let Some((_, earlier)) = fields.iter_mut().find(|(k, _)| *k == key) {
                match earlier {
                    Value::Array(values) => values.push(value),
                    single => {
                        let first = std::mem::take(single);
                        *single = Value::Array(vec![first, value]);
                    }
                }
                continue;
            }
            if fields.len() == self.max_keys {
                self.failures.record(&format_args!(
                    "field `{}` has more than max_keys ({}) keys; the rest are left in the text",
                    self.field, self.max_keys
                ));
                failed = true;
                break;
            }
            let path = target_path(self.target.as_deref(), &key);
            if let Err(why) = writable_field(&path) {
                self.failures
                    .record(&format_args!("key `{key}` is not written: {why}"));
                failed = true;
                continue;
            }
            fields.push((key, value));
        }
        for (key, value) in fields {
            event.insert(&target_path(self.target.as_deref(), &key), value);
        }
        if failed {
            event.add_tag(&self.tag_on_failure);
        }
        if conversion_failed {
            event.add_tag(convert::FAILURE_TAG);
        }
        Verdict::Keep
    }

    fn fork(&self) -> Option<Box<dyn Processor>> {
        Some(Box::new(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{build, event, json};
    use serde_json::json;

    fn parse(config: &str, line: &str) -> serde_json::Value {
        let mut p = build(&format!("{{type: key_value{config}}}")).unwrap();
        let mut e = event(line);
        p.process(&mut e);
        json(&e)
    }

    /// Numbers and booleans as the text a logfmt line carries them in.
    fn as_text(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => m.into_iter().map(|(k, v)| (k, as_text(v))).collect(),
            serde_json::Value::Number(n) => n.to_string().into(),
            serde_json::Value::Bool(b) => b.to_string().into(),
            other => other,
        }
    }

    #[test]
    fn every_line_gos_slog_writes_reads_as_its_json_twin() {
        // Go's log/slog wrote each record twice (tests/data/logfmt/gen.go): as logfmt, with its
        // quoting and escapes (spaces, `=`, quotes, control characters, U+2028, emoji in keys and
        // values, groups as dotted keys), and as JSON, the answer.
        let text = include_str!("../../tests/data/logfmt/slog.txt");
        let answers = include_str!("../../tests/data/logfmt/slog.jsonl");
        let mut p = build("{type: key_value, target: kv}").unwrap();
        let mut n = 0;
        for (line, answer) in text.lines().zip(answers.lines()) {
            let mut e = event(line);
            p.process(&mut e);
            let got = json(&e);
            let want = as_text(serde_json::from_str(answer).unwrap());
            assert_eq!(got["kv"], want, "line {}: {line}", n + 1);
            assert!(got.get("tags").is_none(), "line {}: {got}", n + 1);
            n += 1;
        }
        assert_eq!(n, 400);
    }

    #[test]
    fn a_heroku_router_line() {
        // The line logfmt's own description uses.
        let line = r#"at=info method=GET path="/" host=myapp.herokuapp.com request_id=8601b555-6a83-4c12-8269-97c8e32cdb22 fwd="204.204.204.204" dyno=web.1 connect=1ms service=18ms status=200 bytes=13"#;
        let e = parse(", types: {status: int, bytes: long, fwd: ip}", line);
        assert_eq!(e["at"], "info");
        assert_eq!(e["method"], "GET");
        assert_eq!(e["path"], "/");
        assert_eq!(e["host"], "myapp.herokuapp.com");
        assert_eq!(e["fwd"], "204.204.204.204");
        assert_eq!(e["dyno"], "web.1");
        assert_eq!(e["service"], "18ms");
        assert_eq!(e["status"], 200);
        assert_eq!(e["bytes"], 13);
        assert_eq!(e["message"], line, "the text stays");
        assert!(e.get("tags").is_none(), "{e}");
    }

    #[test]
    fn a_klog_structured_line_skips_its_header_and_message() {
        let line = r#"E1207 10:00:00.123456       1 controller.go:120] "Observed a panic" err="boom: \"x\"\n" pod="kube-system/coredns-1" retry=3"#;
        let e = parse(", target: kv", line);
        assert_eq!(
            e["kv"],
            json!({"err": "boom: \"x\"\n", "pod": "kube-system/coredns-1", "retry": "3"})
        );
        // With standalone keys, bare words are `true`, quoted text never is a key.
        let e = parse(
            ", target: kv, standalone_keys: true",
            "debug user=alice \"a b\"",
        );
        assert_eq!(e["kv"], json!({"debug": true, "user": "alice"}));
    }

    #[test]
    fn quotes_escapes_and_empty_values() {
        let e = parse(
            "",
            r#"a="" b= c="tab\there \u00e9\x41\U0001F600" "odd key"=1 d='single e="\q\x80""#,
        );
        assert_eq!(e["a"], "");
        assert_eq!(e["b"], "");
        assert_eq!(e["c"], "tab\there éA😀");
        assert_eq!(e["odd key"], "1");
        // Only double quotes quote, as in logfmt.
        assert_eq!(e["d"], "'single");
        // Escapes that name no character stay as written.
        assert_eq!(e["e"], "\\q\\x80");
        // Dotted keys nest, as everywhere in trawl (slog writes a group's keys so).
        assert_eq!(
            parse("", "req.method=GET req.path=/x")["req"],
            json!({"method": "GET", "path": "/x"})
        );
        // `\x+1` is no escape: `+1` is not two hex digits.
        assert_eq!(parse("", r#"a="\x+1""#)["a"], "\\x+1");
        // A value holding the value separator keeps it.
        assert_eq!(parse("", "url=/a?b=c&d=e")["url"], "/a?b=c&d=e");
    }

    #[test]
    fn a_query_string_with_a_repeated_key() {
        let e = parse(r#", field_split: "&", target: q"#, "a=1&b=2&&b=3&c=x y");
        assert_eq!(e["q"], json!({"a": "1", "b": ["2", "3"], "c": "x y"}));
    }

    #[test]
    fn include_exclude_and_max_keys() {
        let e = parse(", target: kv, include_keys: [a, b]", "a=1 b=2 c=3");
        assert_eq!(e["kv"], json!({"a": "1", "b": "2"}));
        let e = parse(", target: kv, exclude_keys: [b]", "a=1 b=2 c=3");
        assert_eq!(e["kv"], json!({"a": "1", "c": "3"}));
        let line: Vec<String> = (0..150).map(|i| format!("k{i}={i}")).collect();
        let e = parse(", target: kv", &line.join(" "));
        assert_eq!(e["kv"].as_object().unwrap().len(), 100);
        assert_eq!(e["kv"]["k99"], "99");
        assert_eq!(e["tags"], json!(["_key_value_parse_failure"]));
    }

    #[test]
    fn what_does_not_fit_is_tagged_and_nothing_is_lost() {
        // No pair at all.
        let e = parse("", "just a sentence");
        assert_eq!(e["message"], "just a sentence");
        assert_eq!(e["tags"], json!(["_key_value_parse_failure"]));
        // An unterminated quote: the value runs to the end, and the event says so.
        let e = parse("", r#"a=1 msg="never closed b=2"#);
        assert_eq!(e["a"], "1");
        assert_eq!(e["msg"], "never closed b=2");
        assert_eq!(e["tags"], json!(["_key_value_parse_failure"]));
        // Keys that cannot be written are skipped: `@timestamp` stays the event's time.
        let e = parse("", "@timestamp=yesterday a..b=1 ok=yes =orphan");
        assert_ne!(e["@timestamp"], "yesterday");
        assert_eq!(e["ok"], "yes");
        assert!(e.get("a").is_none(), "{e}");
        assert_eq!(e["tags"], json!(["_key_value_parse_failure"]));
        // A value of the wrong type is kept as text and tagged apart.
        let e = parse(", types: {status: int}", "status=OK");
        assert_eq!(e["status"], "OK");
        assert_eq!(e["tags"], json!(["_type_conversion_failure"]));
        // Binary junk: no panic, whatever comes out.
        let junk: String = (0u8..=255).map(char::from).cycle().take(4096).collect();
        let _ = parse("", &junk);
        let _ = parse("", "\"");
        let _ = parse("", "a=\"\\");
        let _ = parse("", "a=\"\\u12");
    }

    fn cases() -> u32 {
        std::env::var("TRAWL_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256)
    }

    /// logfmt's quoting: a text holding a separator, a quote, a backslash or a control
    /// character, or an empty one, is quoted with escapes.
    fn logfmt(s: &str) -> String {
        let plain = !s.is_empty()
            && !s
                .chars()
                .any(|c| c == ' ' || c == '=' || c == '"' || c == '\\' || c.is_control());
        if plain {
            return s.to_owned();
        }
        let mut out = String::from('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(cases()))]

        /// Whatever the text, no panic, and the text itself is left as it was.
        #[test]
        fn fuzz_any_text_is_read_without_harm(line in "(\\PC|[=\" \\\\\t\n]){0,60}") {
            let e = parse(", standalone_keys: true, target: kv", &line);
            proptest::prop_assert_eq!(e["message"].as_str(), Some(line.as_str()));
        }

        /// Pairs written as logfmt quotes them read back as they were.
        #[test]
        fn fuzz_pairs_written_as_logfmt_read_back(
            pairs in proptest::collection::btree_map("[^.\\s\"=@][^.]{0,8}", "\\PC{0,12}|[ =\"\\\\\n\t]{0,4}", 1..8)
        ) {
            let line: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", logfmt(k), logfmt(v))).collect();
            let e = parse(", target: kv", &line.join(" "));
            let want: serde_json::Map<String, serde_json::Value> =
                pairs.into_iter().map(|(k, v)| (k, v.into())).collect();
            proptest::prop_assert_eq!(&e["kv"], &serde_json::Value::Object(want), "{}", line.join(" "));
        }
    }

    #[test]
    fn bad_configuration_is_refused_at_its_key() {
        for (yaml, key) in [
            (
                "{type: key_value, field_split: ''}",
                "processors[0].field_split",
            ),
            (
                "{type: key_value, value_split: ' '}",
                "processors[0].value_split",
            ),
            (
                "{type: key_value, value_split: '\"'}",
                "processors[0].value_split",
            ),
            ("{type: key_value, max_keys: 0}", "processors[0].max_keys"),
            (
                "{type: key_value, types: {a: number}}",
                "processors[0].types.a",
            ),
            (
                "{type: key_value, target: '@timestamp'}",
                "processors[0].target",
            ),
        ] {
            let err = build(yaml)
                .err()
                .unwrap_or_else(|| panic!("{yaml} accepted"));
            assert_eq!(err.path.as_deref(), Some(key), "{yaml}: {err}");
        }
        assert!(build("{type: key_value, splitter: x}").is_err());
    }
}
