//! The `kubernetes_parser` processor: parses each line with the parser its pod asks for in an
//! annotation (`trawl.io/parser: apache`), as Fluent Bit's `fluentbit.io/parser` and Filebeat's
//! hints do, so that a DaemonSet ships every team's logs parsed without a per-team pipeline.
//!
//! It reads the annotations the `kubernetes` processor put on the event, so it runs after it.
//! Parsers are named lists of processors: the built-in ones below, and those of `parsers:`.

use super::super::{build as build_processor, Processor, Verdict};
use crate::config::node::{parse, Mark, Node, NodeKind};
use crate::config::{from_node, ComponentSpec, DeError};
use crate::event::{Event, Value};
use crate::inputs::BuildContext;
use crate::processors::Failures;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesParserConfig {
    /// The annotation naming the parser. `<annotation>-<container>` names the parser of one
    /// container and wins over the pod-wide one.
    #[serde(default = "default_annotation")]
    pub annotation: String,
    /// The annotation that, set to `"true"`, drops the pod's logs (or one container's, with
    /// `-<container>`), as Fluent Bit's `fluentbit.io/exclude`.
    #[serde(default = "default_exclude")]
    pub exclude_annotation: String,
}

fn default_annotation() -> String {
    "trawl.io/parser".to_owned()
}

fn default_exclude() -> String {
    "trawl.io/exclude".to_owned()
}

/// The parsers every pipeline has, by name. ECS field names; typed where ECS says a number.
const BUILT_IN: &[(&str, &str)] = &[
    ("json", "[{type: json, target: '', overwrite_keys: true}]"),
    (
        // Apache and nginx share the combined log format.
        "apache",
        r#"[{type: regex, patterns: ['^(?<source.address>\S+) \S+ (?<user.name>\S+) \[(?<apache_time>[^\]]+)\] "(?<http.request.method>[A-Z]+) (?<url.original>\S+) HTTP/(?<http.version>[0-9.]+)" (?<http.response.status_code:int>\d{3}) (?:(?<http.response.body.bytes:long>\d+)|-)(?: "(?<http.request.referrer>[^"]*)" "(?<user_agent.original>[^"]*)")?'], tag_on_failure: _apache_parse_failure},
           {type: timestamp, field: apache_time, formats: '%d/%b/%Y:%H:%M:%S %z', ignore_missing: true},
           {type: remove, fields: [apache_time]}]"#,
    ),
    (
        // Kubernetes components and most Go services: `I1130 10:00:00.123456  12345 main.go:42] msg`.
        "klog",
        r#"[{type: regex, patterns: ['^(?<log.level>[IWEF])(?<klog_time>\d{4} \d\d:\d\d:\d\d\.\d+)\s+(?<process.thread.id:int>\d+) (?<log.origin.file.name>[^:\]]+):(?<log.origin.file.line:int>\d+)\] (?<message>.*)$'], tag_on_failure: _klog_parse_failure},
           {type: timestamp, field: klog_time, formats: '%m%d %H:%M:%S%.f', ignore_missing: true},
           {type: remove, fields: [klog_time]}]"#,
    ),
    (
        // logfmt, as Go's log/slog text handler, go-kit and logrus write it:
        // `time=2026-12-07T10:00:00.000Z level=WARN msg="slow query" took=2.1s`. Keys go under
        // `logfmt` (a logfmt `host=` must not replace the event's `host`); the level and the
        // time go where dashboards look, the line stays in `message`.
        "logfmt",
        r#"[{type: key_value, target: logfmt, tag_on_failure: _logfmt_parse_failure},
           {type: rename, fields: [{from: logfmt.level, to: log.level}], ignore_missing: true},
           {type: timestamp, field: logfmt.time, formats: rfc3339, ignore_missing: true},
           {type: timestamp, field: logfmt.ts, formats: rfc3339, ignore_missing: true}]"#,
    ),
];

/// `nginx` is `apache`'s format under the name nginx users look for.
const ALIASES: &[(&str, &str)] = &[("nginx", "apache")];

type Chain = Vec<Box<dyn Processor>>;

pub struct KubernetesParser {
    /// Annotation keys as the `kubernetes` processor writes them (dots become `_`).
    annotation: String,
    exclude_annotation: String,
    parsers: BTreeMap<String, Chain>,
    failures: Arc<Failures>,
}

impl KubernetesParser {
    pub fn new(spec: &ComponentSpec, ctx: &BuildContext) -> Result<KubernetesParser, DeError> {
        let config: KubernetesParserConfig =
            from_node(&spec.node.without_keys(&["parsers"]), &spec.path)?;
        let mut parsers = BTreeMap::new();
        let built_in = |name: &str, text: &str| -> Result<Chain, DeError> {
            let at = format!("{}.<built-in {name}>", spec.path);
            let node = parse(text).map_err(|e| DeError::new(e.message, spec.mark, &at))?;
            build_chain(&node, &at, &spec.file, ctx)
        };
        for (name, text) in BUILT_IN {
            parsers.insert((*name).to_owned(), built_in(name, text)?);
        }
        if let Some(user) = spec.node.get("parsers") {
            let NodeKind::Map(entries) = &user.kind else {
                return Err(DeError::new(
                    format!(
                        "expected a map of parser names to processors, found {}",
                        user.kind_name()
                    ),
                    user.mark,
                    &format!("{}.parsers", spec.path),
                ));
            };
            for (key, value) in entries {
                let name = key.as_str().unwrap_or_default().to_owned();
                let path = format!("{}.parsers.{name}", spec.path);
                parsers.insert(name, build_chain(value, &path, &spec.file, ctx)?);
            }
        }
        for (alias, target) in ALIASES {
            let text = BUILT_IN
                .iter()
                .find(|b| b.0 == *target)
                .map_or("[]", |b| b.1);
            if !parsers.contains_key(*alias) {
                parsers.insert((*alias).to_owned(), built_in(alias, text)?);
            }
        }
        Ok(KubernetesParser {
            annotation: config.annotation.replace('.', "_"),
            exclude_annotation: config.exclude_annotation.replace('.', "_"),
            parsers,
            failures: Failures::register(ctx, spec),
        })
    }
}

/// One parser: a processor or a list of them, each built as if it stood in `processors:`.
fn build_chain(node: &Node, path: &str, file: &str, ctx: &BuildContext) -> Result<Chain, DeError> {
    let items: Vec<&Node> = match &node.kind {
        NodeKind::Seq(items) => items.iter().collect(),
        NodeKind::Map(_) => vec![node],
        _ => {
            return Err(DeError::new(
                format!(
                    "expected a processor or a list of processors, found {}",
                    node.kind_name()
                ),
                node.mark,
                path,
            ))
        }
    };
    let mut chain = Chain::new();
    for (i, item) in items.iter().enumerate() {
        let at = if matches!(node.kind, NodeKind::Seq(_)) {
            format!("{path}[{i}]")
        } else {
            path.to_owned()
        };
        let type_node = item.get("type");
        let Some(type_name) = type_node.and_then(|t| t.as_str()) else {
            return Err(DeError::new(
                "expected `type:` naming a processor",
                item.mark,
                &at,
            ));
        };
        if matches!(type_name, "kubernetes" | "kubernetes_parser") {
            return Err(DeError::new(
                format!("`{type_name}` cannot be a parser: put it in `processors:`"),
                item.mark,
                &format!("{at}.type"),
            ));
        }
        if let Some(when) = item.get("when") {
            return Err(DeError::new(
                "`when` has no place in a parser: the pod's annotation chooses the parser; put `when` on the `kubernetes_parser` processor itself",
                when.mark,
                &format!("{at}.when"),
            ));
        }
        let spec = ComponentSpec {
            file: file.to_owned(),
            name: at.clone(),
            type_name: type_name.to_owned(),
            node: item.without_keys(&["type"]),
            path: at.clone(),
            mark: item.mark,
            type_mark: type_node.map_or(Mark::default(), |t| t.mark),
        };
        chain.push(build_processor(&spec, ctx)?);
    }
    Ok(chain)
}

impl KubernetesParser {
    /// The annotation's value for this event's container, else the pod's.
    fn annotation<'a>(&self, event: &'a Event, key: &str) -> Option<&'a str> {
        let annotations = event.get("kubernetes.annotations")?.as_object()?;
        if let Some(Value::String(container)) = event.get("kubernetes.container.name") {
            let specific = format!("{key}-{container}");
            if let Some(v) = annotations.get(&specific).and_then(Value::as_str) {
                return Some(v);
            }
        }
        annotations.get(key).and_then(Value::as_str)
    }
}

impl Processor for KubernetesParser {
    fn process(&mut self, event: &mut Event) -> Verdict {
        if self
            .annotation(event, &self.exclude_annotation)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        {
            return Verdict::Drop;
        }
        let Some(name) = self.annotation(event, &self.annotation) else {
            return Verdict::Keep;
        };
        let name = name.trim();
        let Some(chain) = self.parsers.get_mut(name) else {
            self.failures.record(&format_args!(
                "pod {} asks for parser `{name}`, which is neither built in nor in `parsers:`",
                event
                    .get("kubernetes.pod.name")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
            ));
            event.add_tag("_unknown_parser");
            return Verdict::Keep;
        };
        for p in chain.iter_mut() {
            if p.process(event) == Verdict::Drop {
                return Verdict::Drop;
            }
        }
        Verdict::Keep
    }
}

#[cfg(test)]
mod tests {
    use crate::event::Value;
    use crate::processors::test_support::{build, event, json};
    use crate::processors::Verdict;
    use serde_json::json;

    fn with_pod(
        message: &str,
        container: &str,
        annotations: serde_json::Value,
    ) -> crate::event::Event {
        let mut e = event(message);
        e.insert("kubernetes.pod.name", Value::String("web-1".into()));
        e.insert("kubernetes.container.name", Value::String(container.into()));
        e.insert("kubernetes.annotations", Value::from_json(annotations));
        e
    }

    #[test]
    fn the_pods_annotation_picks_a_built_in_parser() {
        let mut p = build("{type: kubernetes_parser}").unwrap();
        let mut e = with_pod(
            r#"10.0.0.9 - bob [30/Nov/2026:10:00:00 +0100] "GET /cart?id=3 HTTP/1.1" 404 153 "-" "curl/8.5.0""#,
            "nginx",
            json!({"trawl_io/parser": "nginx"}),
        );
        assert_eq!(p.process(&mut e), Verdict::Keep);
        let j = json(&e);
        assert_eq!(j["http"]["response"]["status_code"], json!(404));
        assert_eq!(j["http"]["response"]["body"]["bytes"], json!(153));
        assert_eq!(j["url"]["original"], json!("/cart?id=3"));
        assert_eq!(j["user_agent"]["original"], json!("curl/8.5.0"));
        assert_eq!(j["@timestamp"], json!("2026-11-30T09:00:00.000000Z"));
        assert!(j.get("apache_time").is_none(), "{j}");

        // A container's own annotation wins over the pod's.
        let mut e = with_pod(
            r#"{"level":"warn","msg":"slow"}"#,
            "app",
            json!({"trawl_io/parser": "apache", "trawl_io/parser-app": "json"}),
        );
        p.process(&mut e);
        assert_eq!(json(&e)["level"], json!("warn"));
        assert!(!e.has_tag("_apache_parse_failure"));
    }

    #[test]
    fn user_parsers_exclusion_and_unknown_names() {
        let mut p = build(
            "{type: kubernetes_parser, parsers: {kv: {type: dissect, tokenizer: '%{a}=%{b|int}'}}}",
        )
        .unwrap();
        let mut e = with_pod("x=5", "app", json!({"trawl_io/parser": "kv"}));
        p.process(&mut e);
        assert_eq!(json(&e)["b"], json!(5));

        let mut e = with_pod("x=5", "app", json!({"trawl_io/exclude": "true"}));
        assert_eq!(p.process(&mut e), Verdict::Drop);

        // An unknown name leaves the line as it was, tagged: never dropped.
        let mut e = with_pod("x=5", "app", json!({"trawl_io/parser": "nope"}));
        assert_eq!(p.process(&mut e), Verdict::Keep);
        assert!(e.has_tag("_unknown_parser"));
        assert_eq!(json(&e)["message"], json!("x=5"));

        // No annotation: untouched.
        let mut e = event("plain");
        let before = e.clone();
        p.process(&mut e);
        assert_eq!(e, before);
    }

    #[test]
    fn bad_parsers_name_their_key() {
        let err = build("{type: kubernetes_parser, parsers: {kv: {type: dissect}}}")
            .err()
            .unwrap();
        assert_eq!(err.path.as_deref(), Some("processors[0].parsers.kv"));
        let err = build("{type: kubernetes_parser, parsers: {kv: [{type: regex, patterns: x}, {tokenizer: y}]}}")
            .err()
            .unwrap();
        assert_eq!(err.path.as_deref(), Some("processors[0].parsers.kv[1]"));
        let err =
            build("{type: kubernetes_parser, parsers: {kv: [{type: drop, when: {has_field: a}}]}}")
                .err()
                .unwrap();
        assert_eq!(
            err.path.as_deref(),
            Some("processors[0].parsers.kv[0].when")
        );
        assert!(err.message.contains("no place in a parser"), "{err:?}");
        let err = build("{type: kubernetes_parser, parsers: {k: {type: kubernetes}}}")
            .err()
            .unwrap();
        assert_eq!(err.path.as_deref(), Some("processors[0].parsers.k.type"));
    }

    #[test]
    fn logfmt_lines() {
        let mut p = build("{type: kubernetes_parser}").unwrap();
        let mut e = with_pod(
            r#"time=2026-12-07T10:00:00.250Z level=WARN msg="slow query" took=2.1s host=db-1 req.id=7"#,
            "api",
            json!({"trawl_io/parser": "logfmt"}),
        );
        p.process(&mut e);
        let j = json(&e);
        assert_eq!(j["log"]["level"], json!("WARN"));
        assert_eq!(j["@timestamp"], json!("2026-12-07T10:00:00.250000Z"));
        assert_eq!(
            j["logfmt"],
            json!({"time": "2026-12-07T10:00:00.250Z", "msg": "slow query", "took": "2.1s", "host": "db-1", "req": {"id": "7"}})
        );
        assert!(j.get("tags").is_none(), "{j}");
        // Not logfmt: the line passes with the parser's tag.
        let mut e = with_pod("plain words", "api", json!({"trawl_io/parser": "logfmt"}));
        p.process(&mut e);
        assert!(e.has_tag("_logfmt_parse_failure"));
        assert_eq!(json(&e)["message"], json!("plain words"));
    }

    #[test]
    fn klog_lines() {
        let mut p = build("{type: kubernetes_parser}").unwrap();
        let mut e = with_pod(
            "E1130 10:00:00.123456    4242 controller.go:118] sync failed: timeout",
            "manager",
            json!({"trawl_io/parser": "klog"}),
        );
        p.process(&mut e);
        let j = json(&e);
        assert_eq!(j["message"], json!("sync failed: timeout"));
        assert_eq!(j["log"]["origin"]["file"]["line"], json!(118));
        assert_eq!(j["process"]["thread"]["id"], json!(4242));
        assert_eq!(j["log"]["level"], json!("E"));
        assert!(
            j["@timestamp"]
                .as_str()
                .unwrap()
                .ends_with("-11-30T10:00:00.123456Z"),
            "{j}"
        );
        assert!(j.get("klog_time").is_none(), "{j}");
    }
}
