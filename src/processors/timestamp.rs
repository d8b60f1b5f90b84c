//! The `timestamp` parser: reads a field with one or more chrono formats (or `rfc3339`,
//! `epoch_s`, `epoch_ms`, `epoch_ns`) in a given time zone and writes the instant to `@timestamp`.

use super::{default_field, Failures, OneOrMany, Processor, Verdict};
use crate::config::{ComponentSpec, DeError};
use crate::event::{Event, Value};
use chrono::format::{parse, Parsed, StrftimeItems};
use chrono::{DateTime, Datelike, FixedOffset, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampConfig {
    /// The field holding the time.
    #[serde(default = "default_field")]
    pub field: String,
    /// Where the parsed instant goes.
    #[serde(default = "default_target")]
    pub target: String,
    /// chrono `strftime` formats (`%d/%b/%Y:%H:%M:%S %z`) or `rfc3339`, `epoch_s`, `epoch_ms`,
    /// `epoch_ns`, tried in order.
    pub formats: OneOrMany,
    /// Zone of times written without an offset: `UTC`, `Local`, an IANA name
    /// (`Europe/Paris`) or a fixed offset (`+02:00`).
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Tag added to events whose field matches no format.
    #[serde(default = "default_tag")]
    pub tag_on_failure: String,
    /// Events without the field pass untouched and uncounted.
    #[serde(default)]
    pub ignore_missing: bool,
}

fn default_target() -> String {
    "@timestamp".to_owned()
}

fn default_timezone() -> String {
    "UTC".to_owned()
}

fn default_tag() -> String {
    "_timestamp_parse_failure".to_owned()
}

#[derive(Debug, Clone, PartialEq)]
enum Format {
    Rfc3339,
    EpochSeconds,
    EpochMillis,
    EpochNanos,
    /// A strftime format; `has_year` false means the current year is assumed (syslog's
    /// `%b %d %H:%M:%S`).
    Chrono {
        format: String,
        has_year: bool,
    },
}

/// A time zone as users name it (`timezone:`), shared with the `syslog` parser.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Zone {
    Utc,
    Local,
    Fixed(FixedOffset),
    Named(Tz),
}

#[derive(Clone)]
pub struct Timestamp {
    field: String,
    target: String,
    formats: Vec<Format>,
    zone: Zone,
    tag_on_failure: String,
    ignore_missing: bool,
    failures: Arc<Failures>,
}

impl Timestamp {
    pub fn new(
        config: TimestampConfig,
        spec: &ComponentSpec,
        failures: Arc<Failures>,
    ) -> Result<Timestamp, DeError> {
        let zone = parse_zone(&config.timezone)
            .ok_or_else(|| DeError::new(format!("unknown time zone `{}`: expected `UTC`, `Local`, an IANA name such as `Europe/Paris`, or an offset such as `+02:00`", config.timezone), spec.mark, &format!("{}.timezone", spec.path)))?;
        let mut formats = Vec::new();
        for (i, f) in config.formats.into_vec().into_iter().enumerate() {
            let format = match f.as_str() {
                "rfc3339" | "RFC3339" | "ISO8601" => Format::Rfc3339,
                "epoch_s" | "UNIX" => Format::EpochSeconds,
                "epoch_ms" | "UNIX_MS" => Format::EpochMillis,
                "epoch_ns" => Format::EpochNanos,
                _ => {
                    // `2006-01-02` (Go, Beats) or `yyyy-MM-dd` (Joda, Logstash) would match no
                    // time at all: every event would fail.
                    let fields = StrftimeItems::new(&f).filter(|i| {
                        matches!(
                            i,
                            chrono::format::Item::Numeric(..) | chrono::format::Item::Fixed(_)
                        )
                    });
                    if fields.count() == 0 {
                        return Err(DeError::new(
                            format!("time format `{f}` has no `%` field: expected a strftime format such as `%Y-%m-%d %H:%M:%S`, or one of rfc3339, epoch_s, epoch_ms, epoch_ns"),
                            spec.mark,
                            &format!("{}.formats[{i}]", spec.path),
                        ));
                    }
                    if StrftimeItems::new(&f).any(|i| matches!(i, chrono::format::Item::Error)) {
                        return Err(DeError::new(
                            format!("invalid time format `{f}`"),
                            spec.mark,
                            &format!("{}.formats[{i}]", spec.path),
                        ));
                    }
                    let has_year = [
                        "%Y", "%y", "%G", "%g", "%C", "%s", "%F", "%D", "%x", "%c", "%+",
                    ]
                    .iter()
                    .any(|y| f.contains(y));
                    Format::Chrono {
                        format: f,
                        has_year,
                    }
                }
            };
            formats.push(format);
        }
        if formats.is_empty() {
            return Err(DeError::new(
                "`formats` is empty: expected at least one format",
                spec.mark,
                &format!("{}.formats", spec.path),
            ));
        }
        Ok(Timestamp {
            field: config.field,
            target: config.target,
            formats,
            zone,
            tag_on_failure: config.tag_on_failure,
            ignore_missing: config.ignore_missing,
            failures,
        })
    }

    fn parse(&self, value: &Value) -> Option<DateTime<Utc>> {
        self.formats
            .iter()
            .find_map(|f| parse_one(f, value, self.zone))
    }
}

impl Processor for Timestamp {
    fn process(&mut self, event: &mut Event) -> Verdict {
        let parsed = match event.get(&self.field) {
            Some(v) => self.parse(v),
            None if self.ignore_missing => return Verdict::Keep,
            None => None,
        };
        match parsed {
            Some(t) => {
                event.insert(&self.target, Value::Timestamp(t));
            }
            None => {
                self.failures.record(&format_args!(
                    "field `{}` matches none of the time formats",
                    self.field
                ));
                event.add_tag(&self.tag_on_failure);
            }
        }
        Verdict::Keep
    }

    fn fork(&self) -> Option<Box<dyn Processor>> {
        Some(Box::new(self.clone()))
    }
}

pub(crate) fn parse_zone(name: &str) -> Option<Zone> {
    match name {
        "UTC" | "utc" | "Z" => Some(Zone::Utc),
        "Local" | "local" => Some(Zone::Local),
        _ => {
            if let Ok(tz) = name.parse::<Tz>() {
                return Some(Zone::Named(tz));
            }
            let mut p = Parsed::new();
            parse(&mut p, name, StrftimeItems::new("%:z")).ok()?;
            p.to_fixed_offset().ok().map(Zone::Fixed)
        }
    }
}

fn parse_one(format: &Format, value: &Value, zone: Zone) -> Option<DateTime<Utc>> {
    match format {
        Format::Rfc3339 => DateTime::parse_from_rfc3339(value.as_str()?.trim())
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        Format::EpochSeconds => epoch(value, 1_000_000_000),
        Format::EpochMillis => epoch(value, 1_000_000),
        Format::EpochNanos => epoch(value, 1),
        Format::Chrono { format, has_year } => {
            let text = value.as_str()?.trim();
            let mut p = Parsed::new();
            parse(&mut p, text, StrftimeItems::new(format)).ok()?;
            if !has_year {
                p.set_year(now_in(zone).year() as i64).ok()?;
            }
            // A format with its own offset (`%z`) says where it is; otherwise the zone does.
            if let Ok(t) = p.to_datetime() {
                return Some(t.with_timezone(&Utc));
            }
            // A date alone (`%Y-%m-%d`) means its midnight.
            let naive = match p.to_naive_datetime_with_offset(0) {
                Ok(n) => n,
                Err(_) => p.to_naive_date().ok()?.and_hms_opt(0, 0, 0)?,
            };
            localize(naive, zone)
        }
    }
}

pub(crate) fn now_in(zone: Zone) -> NaiveDateTime {
    let now = Utc::now();
    match zone {
        Zone::Utc => now.naive_utc(),
        Zone::Local => now.with_timezone(&chrono::Local).naive_local(),
        Zone::Fixed(o) => now.with_timezone(&o).naive_local(),
        Zone::Named(tz) => now.with_timezone(&tz).naive_local(),
    }
}

/// A wall-clock time in `zone` as an instant; in a DST fold the earlier one is taken, in a gap
/// none exists and the value fails.
pub(crate) fn localize(naive: NaiveDateTime, zone: Zone) -> Option<DateTime<Utc>> {
    fn pick<T: TimeZone>(r: LocalResult<DateTime<T>>) -> Option<DateTime<Utc>> {
        r.earliest().map(|t| t.with_timezone(&Utc))
    }
    match zone {
        Zone::Utc => Some(naive.and_utc()),
        Zone::Local => pick(chrono::Local.from_local_datetime(&naive)),
        Zone::Fixed(o) => pick(o.from_local_datetime(&naive)),
        Zone::Named(tz) => pick(tz.from_local_datetime(&naive)),
    }
}

/// Epoch numbers (or numeric text) in units of `nanos_per_unit` nanoseconds.
fn epoch(value: &Value, nanos_per_unit: i64) -> Option<DateTime<Utc>> {
    let nanos: i128 = match value {
        Value::Int(i) => *i as i128 * nanos_per_unit as i128,
        Value::Float(f) if f.is_finite() => (*f * nanos_per_unit as f64) as i128,
        Value::String(s) => {
            let s = s.trim();
            match s.parse::<i64>() {
                Ok(i) => i as i128 * nanos_per_unit as i128,
                Err(_) => {
                    (s.parse::<f64>().ok().filter(|f| f.is_finite())? * nanos_per_unit as f64)
                        as i128
                }
            }
        }
        _ => return None,
    };
    let secs = i64::try_from(nanos.div_euclid(1_000_000_000)).ok()?;
    let sub = nanos.rem_euclid(1_000_000_000) as u32;
    DateTime::from_timestamp(secs, sub)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::format_timestamp;
    use crate::processors::test_support::{build, event};

    fn ts(yaml: &str, field_value: Value) -> Option<String> {
        let mut p = build(yaml).unwrap();
        let mut e = event("x");
        e.insert("t", field_value);
        e.remove("@timestamp");
        p.process(&mut e);
        match e.get("@timestamp") {
            Some(Value::Timestamp(t)) => Some(format_timestamp(t)),
            _ => {
                assert!(e.has_tag("_timestamp_parse_failure"));
                None
            }
        }
    }

    #[test]
    fn chrono_formats_in_a_zone() {
        let y = "{type: timestamp, field: t, timezone: Europe/Paris, formats: ['%d/%b/%Y:%H:%M:%S %z', '%Y-%m-%d %H:%M:%S,%3f']}";
        // The offset in the text wins over the zone.
        assert_eq!(
            ts(y, "10/Oct/2000:13:55:36 -0700".into()).as_deref(),
            Some("2000-10-10T20:55:36.000000Z")
        );
        // Summer time in Paris is UTC+2, winter UTC+1.
        assert_eq!(
            ts(y, "2015-07-29 17:41:44,747".into()).as_deref(),
            Some("2015-07-29T15:41:44.747000Z")
        );
        assert_eq!(
            ts(y, "2015-01-29 17:41:44,747".into()).as_deref(),
            Some("2015-01-29T16:41:44.747000Z")
        );
        assert_eq!(ts(y, "yesterday".into()), None);
    }

    #[test]
    fn rfc3339_epochs_and_fixed_offsets() {
        let y = "{type: timestamp, field: t, formats: [rfc3339]}";
        assert_eq!(
            ts(y, "2026-11-23T11:18:01.5+01:00".into()).as_deref(),
            Some("2026-11-23T10:18:01.500000Z")
        );
        let y = "{type: timestamp, field: t, formats: epoch_s}";
        assert_eq!(
            ts(y, Value::Int(1_000_000_000)).as_deref(),
            Some("2001-09-09T01:46:40.000000Z")
        );
        assert_eq!(
            ts(y, "1000000000.25".into()).as_deref(),
            Some("2001-09-09T01:46:40.250000Z")
        );
        let y = "{type: timestamp, field: t, formats: epoch_ms}";
        assert_eq!(
            ts(y, Value::Int(1_000_000_000_123)).as_deref(),
            Some("2001-09-09T01:46:40.123000Z")
        );
        let y = "{type: timestamp, field: t, formats: epoch_ns}";
        assert_eq!(
            ts(y, "1000000000000001000".into()).as_deref(),
            Some("2001-09-09T01:46:40.000001Z")
        );
        let y = "{type: timestamp, field: t, timezone: '+02:00', formats: '%y%m%d %H%M%S'}";
        assert_eq!(
            ts(y, "081109 203615".into()).as_deref(),
            Some("2008-11-09T18:36:15.000000Z")
        );
    }

    #[test]
    fn formats_without_a_year_take_the_current_one() {
        let y = "{type: timestamp, field: t, formats: '%b %d %H:%M:%S'}";
        let got = ts(y, "Jun 14 15:16:01".into()).unwrap();
        assert_eq!(&got[..4], Utc::now().year().to_string());
        assert_eq!(&got[4..], "-06-14T15:16:01.000000Z");
    }

    #[test]
    fn config_errors() {
        let e = build("{type: timestamp, formats: rfc3339, timezone: Mars/Olympus}")
            .err()
            .unwrap();
        assert_eq!(e.path.as_deref(), Some("processors[0].timezone"));
        for plain in ["hello", "2006-01-02 15:04:05", "yyyy-MM-dd"] {
            let e = build(&format!("{{type: timestamp, formats: ['%Y', '{plain}']}}"))
                .err()
                .unwrap();
            assert!(e.message.contains("has no `%` field"), "{plain}: {e:?}");
            assert_eq!(e.path.as_deref(), Some("processors[0].formats[1]"));
        }
        let e = build("{type: timestamp, formats: ['%Y', '%Q']}")
            .err()
            .unwrap();
        assert_eq!(e.path.as_deref(), Some("processors[0].formats[1]"));
    }
}
