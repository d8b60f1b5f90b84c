//! Typed captures for the `regex` and `dissect` parsers: the names users write after a field
//! (`(?<process.pid:int>\d+)`, `%{process.pid|int}`) or in a `types:` map, and how a captured
//! text becomes a number, a boolean, a checked IP address or a timestamp.

use crate::event::Value;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// What a captured text becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    String,
    Int,
    Float,
    Bool,
    /// Checked and written in its canonical text form (`::ffff:0a00:1` stays an IPv6 text);
    /// Elasticsearch's `ip` mapping takes it from there.
    Ip,
    /// RFC 3339 (`2026-11-30T10:00:00Z`, `2026-11-30 10:00:00.5+01:00`); other layouts belong
    /// to the `timestamp` processor.
    Timestamp,
}

/// The names users may write, with the Beats and Logstash spellings beside ours.
pub const NAMES: &str =
    "`int` (`integer`, `long`), `float` (`double`), `bool` (`boolean`), `ip`, `timestamp`, `string`";

impl Conversion {
    pub fn from_name(name: &str) -> Option<Conversion> {
        Some(match name {
            "string" | "keyword" => Conversion::String,
            "int" | "integer" | "long" => Conversion::Int,
            "float" | "double" => Conversion::Float,
            "bool" | "boolean" => Conversion::Bool,
            "ip" => Conversion::Ip,
            "timestamp" | "date" => Conversion::Timestamp,
            _ => return None,
        })
    }

    /// The typed value, or `None` when the text is not one (the caller keeps the text, tags the
    /// event and counts it: a value that does not convert is never dropped).
    pub fn apply(self, raw: &str) -> Option<Value> {
        match self {
            Conversion::String => Some(Value::String(raw.to_owned())),
            Conversion::Int => raw.parse::<i64>().ok().map(Value::Int),
            Conversion::Float => raw
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Value::Float),
            Conversion::Bool => match raw {
                "true" | "TRUE" | "True" => Some(Value::Bool(true)),
                "false" | "FALSE" | "False" => Some(Value::Bool(false)),
                _ => None,
            },
            Conversion::Ip => raw
                .parse::<IpAddr>()
                .ok()
                .map(|ip| Value::String(ip.to_string())),
            Conversion::Timestamp => DateTime::parse_from_rfc3339(raw)
                .or_else(|_| DateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S%.f%:z"))
                .ok()
                .map(|t| Value::Timestamp(t.with_timezone(&Utc))),
        }
    }
}

/// The `types:` map of a parser: capture name → type name, checked when the parser is built.
pub type TypesConfig = BTreeMap<String, TypeName>;

/// The conversion of one `types:` entry, or the configuration error at `<path>.types.<name>`.
pub fn of_entry(
    name: &str,
    ty: &TypeName,
    spec: &crate::config::ComponentSpec,
) -> Result<Conversion, crate::config::DeError> {
    Conversion::from_name(&ty.0).ok_or_else(|| {
        crate::config::DeError::new(
            format!("unknown type `{}`: expected one of {NAMES}", ty.0),
            spec.mark,
            &format!("{}.types.{name}", spec.path),
        )
    })
}

/// One type name as written, kept as text so that an unknown one is reported at its key.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct TypeName(pub String);

/// Splits `name:type` (regex) at the last `:` when what follows is a known type. A field name
/// may itself hold a `:` (`k8s:pod`); only a known type after the last one is taken as a type.
pub fn split_typed(name: &str) -> (&str, Option<Conversion>) {
    match name.rsplit_once(':') {
        Some((field, ty)) if !field.is_empty() => match Conversion::from_name(ty) {
            Some(c) => (field, Some(c)),
            None => (name, None),
        },
        _ => (name, None),
    }
}

/// The tag added to an event whose captured value did not convert.
pub const FAILURE_TAG: &str = "_type_conversion_failure";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_from_the_text_users_log() {
        assert_eq!(Conversion::Int.apply("1234"), Some(Value::Int(1234)));
        assert_eq!(Conversion::Int.apply("-7"), Some(Value::Int(-7)));
        assert_eq!(Conversion::Int.apply("12a"), None);
        assert_eq!(Conversion::Int.apply("99999999999999999999"), None);
        assert_eq!(Conversion::Float.apply("0.25"), Some(Value::Float(0.25)));
        assert_eq!(Conversion::Float.apply("NaN"), None);
        assert_eq!(Conversion::Bool.apply("True"), Some(Value::Bool(true)));
        assert_eq!(Conversion::Bool.apply("yes"), None);
        assert_eq!(
            Conversion::Ip.apply("10.0.0.1"),
            Some(Value::String("10.0.0.1".into()))
        );
        assert_eq!(
            Conversion::Ip.apply("2001:DB8::1"),
            Some(Value::String("2001:db8::1".into()))
        );
        assert_eq!(Conversion::Ip.apply("10.0.0.256"), None);
        assert_eq!(Conversion::Ip.apply("host.example"), None);
        let t = Conversion::Timestamp.apply("2026-11-30T10:00:00.5+01:00");
        assert_eq!(
            t.map(|v| serde_json::to_value(&v).unwrap()),
            Some(serde_json::json!("2026-11-30T09:00:00.500000Z"))
        );
        assert!(Conversion::Timestamp
            .apply("2026-11-30 10:00:00+00:00")
            .is_some());
        assert_eq!(Conversion::Timestamp.apply("30/Nov/2026:10:00:00"), None);
    }

    #[test]
    fn typed_names_split_only_at_a_known_type() {
        assert_eq!(split_typed("pid:int"), ("pid", Some(Conversion::Int)));
        assert_eq!(split_typed("a:b:long"), ("a:b", Some(Conversion::Int)));
        assert_eq!(split_typed("k8s:pod"), ("k8s:pod", None));
        assert_eq!(split_typed(":int"), (":int", None));
        assert_eq!(split_typed("plain"), ("plain", None));
    }
}
