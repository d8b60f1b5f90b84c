//! The `syslog` parser: reads a syslog line as rsyslog, syslog-ng, `logger` and network devices
//! write it (RFC 3164 with or without `<PRI>`, rsyslog's RFC 3339 file format, RFC 5424 with
//! structured data) into `@timestamp`, `log.syslog.*`, `host.hostname`, `process.*`, `message`.

use super::timestamp::{localize, now_in, parse_zone, Zone};
use super::{default_field, restore_text, take_text, Failures, Processor, Verdict};
use crate::config::{ComponentSpec, DeError};
use crate::event::{Event, Map, Value};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use std::sync::Arc;

/// Syslog severities by code (RFC 5424), the names `log.syslog.severity.name` and `log.level`
/// take here and in the journald input.
pub const SEVERITIES: [&str; 8] = [
    "emergency",
    "alert",
    "critical",
    "error",
    "warning",
    "notice",
    "informational",
    "debug",
];

/// Facilities by code (RFC 5424; 12–15 as Linux and BSD name them).
const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// The field holding the syslog line; replaced by the line's message.
    #[serde(default = "default_field")]
    pub field: String,
    /// Zone of RFC 3164 times, which carry none: `Local` (the host's, as the syslog daemon
    /// writing the file used), `UTC`, an IANA name or an offset.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Tag of events whose field is not a syslog line.
    #[serde(default = "default_tag")]
    pub tag_on_failure: String,
    /// Events without the field pass untagged.
    #[serde(default)]
    pub ignore_missing: bool,
}

fn default_timezone() -> String {
    "Local".to_owned()
}

fn default_tag() -> String {
    "_syslog_parse_failure".to_owned()
}

#[derive(Clone)]
pub struct Syslog {
    field: String,
    zone: Zone,
    tag_on_failure: String,
    ignore_missing: bool,
    failures: Arc<Failures>,
}

/// What a line holds. Text fields borrow from the line.
#[derive(Debug, Default, PartialEq)]
struct Line<'a> {
    priority: Option<u8>,
    version: Option<u8>,
    time: Option<DateTime<Utc>>,
    hostname: Option<&'a str>,
    appname: Option<&'a str>,
    procid: Option<&'a str>,
    msgid: Option<&'a str>,
    structured_data: Option<Map>,
    message: &'a str,
}

impl Syslog {
    pub fn new(
        config: SyslogConfig,
        spec: &ComponentSpec,
        failures: Arc<Failures>,
    ) -> Result<Syslog, DeError> {
        let zone = parse_zone(&config.timezone).ok_or_else(|| {
            DeError::new(
                format!("unknown time zone `{}`: expected `Local`, `UTC`, an IANA name such as `Europe/Paris`, or an offset such as `+02:00`", config.timezone),
                spec.mark,
                &format!("{}.timezone", spec.path),
            )
        })?;
        Ok(Syslog {
            field: config.field,
            zone,
            tag_on_failure: config.tag_on_failure,
            ignore_missing: config.ignore_missing,
            failures,
        })
    }

    fn parse<'a>(&self, text: &'a str) -> Option<Line<'a>> {
        let (priority, rest) = match text.strip_prefix('<') {
            Some(r) => {
                let end = r.find('>').filter(|&e| (1..=3).contains(&e))?;
                let p: u8 = r[..end].parse().ok().filter(|&p| p <= 191)?;
                (Some(p), &r[end + 1..])
            }
            None => (None, text),
        };
        // RFC 5424: `<PRI>1 ` (a version right after the priority).
        if let (Some(_), Some(after)) = (priority, rest.strip_prefix("1 ")) {
            let mut line = rfc5424(after)?;
            line.priority = priority;
            line.version = Some(1);
            return Some(line);
        }
        let mut line = self.rfc3164(rest)?;
        line.priority = priority;
        Some(line)
    }

    /// `Mmm dd hh:mm:ss host tag[pid]: message`, or with an RFC 3339 time (rsyslog's file
    /// format), a year after the day (some devices), fractions of a second; the host may be
    /// absent (what `logger` sends to the local socket).
    fn rfc3164<'a>(&self, s: &'a str) -> Option<Line<'a>> {
        let (time, rest) = match self.bsd_time(s) {
            Some(t) => t,
            None => {
                let (word, rest) = s.split_once(' ')?;
                let t = DateTime::parse_from_rfc3339(word).ok()?.with_timezone(&Utc);
                (t, rest)
            }
        };
        let mut line = Line {
            time: Some(time),
            ..Line::default()
        };
        let rest = rest.trim_start_matches(' ');
        let (first, after_first) = rest.split_once(' ').unwrap_or((rest, ""));
        // A tag ends in `:`; a host never does.
        let rest = if tag(first).is_some() {
            rest
        } else {
            line.hostname = Some(first).filter(|h| !h.is_empty());
            after_first.trim_start_matches(' ')
        };
        let (first, after_first) = rest.split_once(' ').unwrap_or((rest, ""));
        match tag(first) {
            Some((app, pid)) => {
                line.appname = Some(app);
                line.procid = pid;
                line.message = after_first;
            }
            // No tag (`syslogd 1.4.1: restart.`: a tag has no space): the rest is the message.
            None => line.message = rest,
        }
        Some(line)
    }

    /// `Mmm dd hh:mm:ss[.frac]` (day padded with a space or not), or `Mmm dd yyyy hh:mm:ss`.
    fn bsd_time<'a>(&self, s: &'a str) -> Option<(DateTime<Utc>, &'a str)> {
        let month = MONTHS.iter().position(|m| s.starts_with(m))? as u32 + 1;
        let rest = s[3..].strip_prefix(' ')?.trim_start_matches(' ');
        let (day, rest) = rest.split_once(' ')?;
        let day: u32 = day.parse().ok()?;
        let (year, rest) = match rest.split_once(' ') {
            Some((y, r)) if y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit()) => {
                (y.parse::<i32>().ok(), r)
            }
            _ => (None, rest),
        };
        let (clock, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
        let mut parts = hms.split(':').map(|p| p.parse::<u32>().ok());
        let (h, m, sec) = (parts.next()??, parts.next()??, parts.next()??);
        if parts.next().is_some() || hms.len() != 8 {
            return None;
        }
        let nanos = match frac {
            "" => 0,
            f if f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
                f.parse::<u32>().ok()? * 10u32.pow(9 - f.len() as u32)
            }
            _ => return None,
        };
        let now = now_in(self.zone);
        let at = |year: i32| {
            NaiveDate::from_ymd_opt(year, month, day)?.and_hms_nano_opt(h, m, sec, nanos)
        };
        let naive = match year {
            Some(y) => at(y)?,
            None => {
                // No year: this one, unless that is more than a day ahead (December's lines
                // read in January).
                let this = at(now.year())?;
                if this > now + chrono::Duration::days(1) {
                    at(now.year() - 1)?
                } else {
                    this
                }
            }
        };
        Some((localize(naive, self.zone)?, rest))
    }
}

/// `app:` or `app[pid]:` → the name and the pid as written.
fn tag(word: &str) -> Option<(&str, Option<&str>)> {
    let word = word.strip_suffix(':')?;
    let (app, pid) = match word.strip_suffix(']') {
        Some(w) => {
            let (app, pid) = w.split_once('[')?;
            (app, Some(pid))
        }
        None => (word, None),
    };
    let plain = |s: &str| !s.is_empty() && !s.contains(['[', ']', ':']);
    (plain(app) && pid.is_none_or(plain)).then_some((app, pid))
}

/// `TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]`, after `<PRI>1 `; `-` is
/// nil.
fn rfc5424(s: &str) -> Option<Line<'_>> {
    let mut rest = s;
    let mut next = || {
        let (word, r) = rest.split_once(' ').unwrap_or((rest, ""));
        rest = r;
        (word != "-").then_some(word)
    };
    let time = match next() {
        Some(t) => Some(DateTime::parse_from_rfc3339(t).ok()?.with_timezone(&Utc)),
        None => None,
    };
    let (hostname, appname, procid, msgid) = (next(), next(), next(), next());
    let (structured_data, msg) = if let Some(r) = rest.strip_prefix('-') {
        (None, r)
    } else {
        let (sd, r) = structured_data(rest)?;
        (Some(sd), r)
    };
    if !msg.is_empty() && !msg.starts_with(' ') {
        return None;
    }
    let msg = msg.strip_prefix(' ').unwrap_or(msg);
    Some(Line {
        time,
        hostname,
        appname,
        procid,
        msgid,
        structured_data,
        message: msg.strip_prefix('\u{feff}').unwrap_or(msg),
        ..Line::default()
    })
}

/// `[id name="value" ...][id2 ...]` → `{id: {name: value}}`; values unescaped (`\"`, `\\`,
/// `\]`).
fn structured_data(s: &str) -> Option<(Map, &str)> {
    let mut sd = Map::new();
    let mut rest = s;
    while let Some(r) = rest.strip_prefix('[') {
        let end = r.find([' ', ']'])?;
        let id = &r[..end];
        if id.is_empty() {
            return None;
        }
        let mut params = Map::new();
        rest = &r[end..];
        while let Some(r) = rest.strip_prefix(' ') {
            let (name, r) = r.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = r.char_indices();
            let close = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next()? {
                        (_, c @ ('"' | '\\' | ']')) => value.push(c),
                        (_, c) => {
                            value.push('\\');
                            value.push(c);
                        }
                    },
                    (_, c) => value.push(c),
                }
            };
            params.insert(name, Value::String(value));
            rest = &r[close + 1..];
        }
        rest = rest.strip_prefix(']')?;
        sd.insert(id, Value::Object(params));
    }
    (!sd.is_empty()).then_some((sd, rest))
}

impl Processor for Syslog {
    fn process(&mut self, event: &mut Event) -> Verdict {
        let Some((text, from)) = take_text(event, &self.field) else {
            let (field, tag) = (&self.field, &self.tag_on_failure);
            self.failures
                .not_text(event, field, self.ignore_missing, tag);
            return Verdict::Keep;
        };
        let Some(line) = self.parse(&text) else {
            restore_text(event, &self.field, from, text);
            let what = format_args!(
                "field `{}` is not a syslog line (RFC 3164 or 5424)",
                self.field
            );
            self.failures.tag(event, &self.tag_on_failure, &what);
            return Verdict::Keep;
        };
        if let Some(p) = line.priority {
            let (facility, severity) = (usize::from(p / 8), usize::from(p % 8));
            event.insert("log.syslog.priority", Value::Int(i64::from(p)));
            event.insert("log.syslog.facility.code", Value::Int(facility as i64));
            event.insert("log.syslog.facility.name", FACILITIES[facility]);
            event.insert("log.syslog.severity.code", Value::Int(severity as i64));
            event.insert("log.syslog.severity.name", SEVERITIES[severity]);
            event.insert("log.level", SEVERITIES[severity]);
        }
        if let Some(v) = line.version {
            event.insert("log.syslog.version", Value::Int(i64::from(v)));
        }
        if let Some(t) = line.time {
            event.insert("@timestamp", Value::Timestamp(t));
        }
        if let Some(h) = line.hostname {
            event.insert("log.syslog.hostname", h);
            event.insert("host.hostname", h);
        }
        if let Some(a) = line.appname {
            event.insert("log.syslog.appname", a);
            event.insert("process.name", a);
        }
        if let Some(p) = line.procid {
            event.insert("log.syslog.procid", p);
            if let Ok(pid) = p.parse::<i64>() {
                event.insert("process.pid", Value::Int(pid));
            }
        }
        if let Some(m) = line.msgid {
            event.insert("log.syslog.msgid", m);
        }
        if let Some(sd) = line.structured_data {
            event.insert("log.syslog.structured_data", Value::Object(sd));
        }
        event.insert(&self.field, line.message);
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
        let zone = if config.contains("timezone") {
            ""
        } else {
            ", timezone: UTC"
        };
        let mut p = build(&format!("{{type: syslog{zone}{config}}}")).unwrap();
        let mut e = event(line);
        p.process(&mut e);
        json(&e)
    }

    #[test]
    fn rfc5424_examples_of_the_rfc() {
        // RFC 5424, 6.5, examples 1, 3 and 4 (example 1's BOM included).
        let e = parse("", "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \u{feff}'su root' failed for lonvick on /dev/pts/8");
        assert_eq!(e["@timestamp"], "2003-10-11T22:14:15.003000Z");
        assert_eq!(
            e["log"]["syslog"],
            json!({"priority": 34, "facility": {"code": 4, "name": "auth"}, "severity": {"code": 2, "name": "critical"},
                   "version": 1, "hostname": "mymachine.example.com", "appname": "su", "msgid": "ID47"})
        );
        assert_eq!(e["log"]["level"], "critical");
        assert_eq!(e["process"]["name"], "su");
        assert_eq!(e["message"], "'su root' failed for lonvick on /dev/pts/8");

        let e = parse(
            "",
            r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] An application event log entry..."#,
        );
        assert_eq!(
            e["log"]["syslog"]["structured_data"],
            json!({"exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"}})
        );
        assert_eq!(e["log"]["syslog"]["facility"]["name"], "local4");
        assert_eq!(e["message"], "An application event log entry...");

        let e = parse(
            "",
            r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]"#,
        );
        assert_eq!(
            e["log"]["syslog"]["structured_data"]["examplePriority@32473"]["class"],
            "high"
        );
        assert_eq!(e["message"], "");

        // Escapes in a parameter value; nil time and fields.
        let e = parse("", r#"<14>1 - - app 1234 - [x a="q\"b\\c\]d"] hi"#);
        assert_eq!(
            e["log"]["syslog"]["structured_data"]["x"]["a"],
            r#"q"b\c]d"#
        );
        assert_eq!(e["process"]["pid"], 1234);
        assert_eq!(e["log"]["syslog"]["procid"], "1234");
        assert!(e["log"]["syslog"].get("hostname").is_none());
    }

    #[test]
    fn rfc3164_as_daemons_and_devices_write_it() {
        // RFC 3164, 5.4, example 1.
        let e = parse(
            "",
            "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
        );
        assert_eq!(e["host"]["hostname"], "mymachine");
        assert_eq!(e["process"]["name"], "su");
        assert_eq!(e["log"]["syslog"]["severity"]["name"], "critical");
        assert_eq!(e["message"], "'su root' failed for lonvick on /dev/pts/8");
        assert!(
            e["@timestamp"]
                .as_str()
                .unwrap()
                .ends_with("-10-11T22:14:15.000000Z"),
            "{e}"
        );

        // A file written by rsyslog (no PRI), a space-padded day, a pid.
        let e = parse(
            "",
            "Jul  3 04:08:03 combo sshd(pam_unix)[19939]: check pass; user unknown",
        );
        assert_eq!(e["process"]["name"], "sshd(pam_unix)");
        assert_eq!(e["process"]["pid"], 19939);
        assert!(e["log"].get("syslog").unwrap().get("priority").is_none());
        assert_eq!(e["message"], "check pass; user unknown");

        // rsyslog's RFC 3339 file format (Debian 12's default), microseconds and an offset.
        let e = parse(
            "",
            "2026-12-07T18:00:01.123456+01:00 node-a CRON[4242]: (root) CMD (true)",
        );
        assert_eq!(e["@timestamp"], "2026-12-07T17:00:01.123456Z");
        assert_eq!(e["host"]["hostname"], "node-a");
        assert_eq!(e["message"], "(root) CMD (true)");

        // What `logger` sends to /dev/log: no host.
        let e = parse("", "<13>Dec  7 18:00:01 myapp[77]: hello");
        assert!(
            e.get("host").and_then(|h| h.get("hostname")).is_none(),
            "{e}"
        );
        assert_eq!(e["process"]["name"], "myapp");
        assert_eq!(e["message"], "hello");

        // A device with a year and milliseconds.
        let e = parse(
            "",
            "<189>Mar  1 2025 10:00:00.250 fw01 kernel: [ 12.5] link up",
        );
        assert_eq!(e["@timestamp"], "2025-03-01T10:00:00.250000Z");
        assert_eq!(e["process"]["name"], "kernel");
        assert_eq!(e["message"], "[ 12.5] link up");

        // No tag: the rest is the message.
        let e = parse("", "Jun 19 04:09:11 combo syslogd 1.4.1: restart.");
        assert!(e.get("process").is_none(), "{e}");
        assert_eq!(e["message"], "syslogd 1.4.1: restart.");
    }

    #[test]
    fn a_time_without_a_year_is_never_in_the_future() {
        let now = chrono::Utc::now();
        let ahead = now + chrono::Duration::days(3);
        let line = format!("{} host app: x", ahead.format("%b %e %H:%M:%S"));
        let e = parse("", &line);
        let t: chrono::DateTime<chrono::Utc> = e["@timestamp"].as_str().unwrap().parse().unwrap();
        assert!(t < now, "{line} -> {t}");
        // In a zone: the line's wall clock there.
        let e = parse(", timezone: '+02:00'", "Jan  2 2025 03:00:00 h a: x");
        assert_eq!(e["@timestamp"], "2025-01-02T01:00:00.000000Z");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
            std::env::var("TRAWL_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
        ))]

        /// Any text after any head a syslog line may start with: no panic, and a line that is
        /// not read keeps its text and gets the tag.
        #[test]
        fn fuzz_any_line_is_read_or_tagged(
            head in "(<[0-9]{1,4}>)?(1 )?((Jan|Dec) [ 0-9]{1,3} [0-9:.]{0,12} |[0-9T:.+-]{0,32} )?",
            tail in "(\\PC|[\\[\\]\" =:\\\\-]){0,40}",
        ) {
            let line = format!("{head}{tail}");
            let e = parse("", &line);
            if e.get("tags").is_some() {
                proptest::prop_assert_eq!(e["message"].as_str(), Some(line.as_str()));
            }
        }
    }

    #[test]
    fn what_is_not_syslog_is_tagged_and_unchanged() {
        for line in [
            "",
            "hello world",
            "<999>Oct 11 22:14:15 h a: x",
            "<34>1 notatime h a - - - x",
            "<34>1 2003-10-11T22:14:15Z h a - - [unclosed x=\"1\"",
            "Oct 41 22:14:15 h a: x",
            "Oct 11 22:14 h a: x",
            "<",
            "<1",
        ] {
            let e = parse("", line);
            assert_eq!(e["message"], line);
            assert_eq!(e["tags"], json!(["_syslog_parse_failure"]), "{line:?}");
        }
        assert_eq!(
            build("{type: syslog, timezone: Mars/Olympus}")
                .err()
                .unwrap()
                .path
                .as_deref(),
            Some("processors[0].timezone")
        );
    }
}
