//! Multiline: joins the lines of one logical event (a stack trace) as Filebeat does, with
//! `pattern`, `negate` and `match: after|before`, caps on lines and bytes, and a timeout that
//! flushes an event whose end never comes. Presets cover Java, Python and Go traces. Shared by
//! every line input (file, stdin, socket, tee, journald); each keeps one joiner per source.

pub use super::lines::Line;
use crate::config::{ByteSize, DeError, Duration, Mark};
use regex::Regex;
use serde::Deserialize;
use std::time::Instant;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Match {
    /// Lines selected by the pattern are appended to the line before them.
    #[default]
    After,
    /// Lines selected by the pattern are prepended to the line after them.
    Before,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Java stack traces: `\tat ...`, `... 5 more`, `Caused by:`, `Suppressed:` and the
    /// exception line follow the line that logged them.
    Java,
    /// Python tracebacks: `Traceback (most recent call last):`, indented frames, the final
    /// `SomethingError: ...` line and the chained-exception notes.
    Python,
    /// Go panics: `goroutine N [...]:`, function lines, indented file lines and blank lines
    /// follow the `panic:` line.
    Go,
}

impl Preset {
    fn pattern(self) -> &'static str {
        match self {
            Preset::Java => {
                r"^(\s+at\s|\s+\.\.\.\s+\d+\s+(more|common frames omitted)|\s*Caused by:|\s*Suppressed:|[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)+(Exception|Error|Throwable)\b)"
            }
            Preset::Python => {
                r"^(Traceback \(most recent call last\):|\s|$|[A-Za-z_][\w.]*(Error|Exception|Warning|Exit|Interrupt)\b|During handling of the above exception|The above exception was the direct cause)"
            }
            Preset::Go => {
                r"^(\s|$|goroutine \d+ \[|created by |\[signal |[\w./*()-]+\(.*\)$|exit status \d+)"
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Regular expression selecting lines (with `negate`: the lines it does not match).
    #[serde(default)]
    pub pattern: Option<String>,
    /// A ready pattern (`java`, `python`, `go`) with `match: after`; exclusive with `pattern`.
    #[serde(default)]
    pub preset: Option<Preset>,
    /// Select the lines the pattern does NOT match.
    #[serde(default)]
    pub negate: bool,
    /// Where selected lines go: `after` (appended to the previous line) or `before`.
    #[serde(default, rename = "match")]
    pub match_: Match,
    /// Most lines in one event; further lines are dropped from it and the event flagged.
    #[serde(default = "default_max_lines")]
    pub max_lines: usize,
    /// Most bytes in one event; the rest is cut and the event flagged `truncated`.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// An event waiting for more lines is sent after this long without one.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
}

fn default_max_lines() -> usize {
    500
}

fn default_max_bytes() -> ByteSize {
    ByteSize(10 << 20)
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Config {
    /// Checks the pattern; `path` is where `multiline` sits in the pipeline file.
    pub fn compile(&self, mark: Option<Mark>, path: &str) -> Result<Multiline, DeError> {
        let err = |message: String, path: &str| DeError {
            message,
            mark,
            path: Some(path.to_owned()),
            also: Vec::new(),
        };
        let (pattern, negate, match_) = match (&self.pattern, self.preset) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "`pattern` and `preset` are exclusive: choose one".into(),
                    path,
                ))
            }
            (None, None) => return Err(err("expected `pattern` or `preset`".into(), path)),
            (Some(p), None) => (p.as_str(), self.negate, self.match_),
            (None, Some(preset)) => (preset.pattern(), false, Match::After),
        };
        let re = Regex::new(pattern)
            .map_err(|e| err(format!("invalid pattern: {e}"), &format!("{path}.pattern")))?;
        Ok(Multiline {
            re,
            negate,
            match_,
            max_lines: self.max_lines.max(1),
            max_bytes: self.max_bytes.as_usize().max(1),
            timeout: self
                .timeout
                .positive()
                .unwrap_or(std::time::Duration::from_secs(5)),
            pending: None,
        })
    }
}

struct Pending {
    line: Line,
    lines: usize,
    last: Instant,
}

/// The joining state of one source (a file, a connection, a stream).
pub struct Multiline {
    re: Regex,
    negate: bool,
    match_: Match,
    max_lines: usize,
    max_bytes: usize,
    timeout: std::time::Duration,
    pending: Option<Pending>,
}

impl Clone for Multiline {
    fn clone(&self) -> Self {
        Multiline {
            re: self.re.clone(),
            negate: self.negate,
            match_: self.match_,
            max_lines: self.max_lines,
            max_bytes: self.max_bytes,
            timeout: self.timeout,
            pending: None,
        }
    }
}

impl Multiline {
    /// Feeds one line; calls `out` with every event completed by it.
    pub fn push(&mut self, line: Line, now: Instant, out: &mut dyn FnMut(Line)) {
        let selected = self.re.is_match(&line.text) != self.negate;
        match self.match_ {
            Match::After => {
                if selected && self.pending.is_some() {
                    self.append(line, now);
                } else {
                    self.flush(out);
                    self.start(line, now);
                }
            }
            Match::Before => {
                if self.pending.is_some() {
                    self.append(line, now);
                } else {
                    self.start(line, now);
                }
                if !selected {
                    self.flush(out);
                }
            }
        }
    }

    fn start(&mut self, mut line: Line, now: Instant) {
        if line.text.len() > self.max_bytes {
            cut(&mut line.text, self.max_bytes);
            line.truncated = true;
        }
        self.pending = Some(Pending {
            line,
            lines: 1,
            last: now,
        });
    }

    fn append(&mut self, line: Line, now: Instant) {
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        p.last = now;
        p.line.end = line.end;
        p.line.multiline = true;
        p.line.truncated |= line.truncated;
        p.line.partial |= line.partial;
        if p.lines >= self.max_lines {
            p.line.truncated = true;
            return;
        }
        p.lines += 1;
        let room = self.max_bytes.saturating_sub(p.line.text.len());
        if room == 0 {
            p.line.truncated = true;
            return;
        }
        p.line.text.push('\n');
        if line.text.len() + 1 > room {
            p.line.text.push_str(&line.text);
            cut(&mut p.line.text, self.max_bytes);
            p.line.truncated = true;
        } else {
            p.line.text.push_str(&line.text);
        }
    }

    /// Sends the event being built, if any.
    pub fn flush(&mut self, out: &mut dyn FnMut(Line)) {
        if let Some(p) = self.pending.take() {
            out(p.line);
        }
    }

    /// Sends the event being built if no line came for `timeout`.
    pub fn flush_if_due(&mut self, now: Instant, out: &mut dyn FnMut(Line)) {
        if matches!(&self.pending, Some(p) if now.duration_since(p.last) >= self.timeout) {
            self.flush(out);
        }
    }

    /// The `start` of the first line of the event being joined, if one is held.
    pub fn pending_start(&self) -> Option<u64> {
        self.pending.as_ref().map(|p| p.line.start)
    }

    /// When the pending event, if any, is due.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.as_ref().map(|p| p.last + self.timeout)
    }
}

/// Compiles an input's `multiline:` key, if set, with errors pointing at it in the file.
pub fn for_input(
    config: Option<&Config>,
    spec: &crate::config::ComponentSpec,
) -> Result<Option<Multiline>, DeError> {
    let Some(config) = config else {
        return Ok(None);
    };
    let mark = spec
        .node
        .get("multiline")
        .map(|n| n.mark)
        .or(Some(spec.mark));
    config
        .compile(mark, &format!("{}.multiline", spec.path))
        .map(Some)
}

/// `log.flags` for a line: `multiline` when joined, `truncated` when cut (as the file input).
pub fn flags(line: &Line) -> Option<crate::event::Value> {
    use crate::event::Value;
    let mut flags = Vec::new();
    if line.multiline {
        flags.push(Value::from("multiline"));
    }
    if line.truncated {
        flags.push(Value::from("truncated"));
    }
    (!flags.is_empty()).then_some(Value::Array(flags))
}

/// Cuts a string to at most `max` bytes on a character boundary.
fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cfg: &str, lines: &[&str]) -> Vec<String> {
        let cfg: Config = serde_json::from_str(cfg).unwrap();
        let mut m = cfg.compile(None, "multiline").unwrap();
        let mut out = Vec::new();
        let now = Instant::now();
        for (i, l) in lines.iter().enumerate() {
            let line = Line {
                text: l.to_string(),
                start: i as u64,
                end: i as u64 + 1,
                ..Line::default()
            };
            m.push(line, now, &mut |l| out.push(l.text));
        }
        m.flush(&mut |l| out.push(l.text));
        out
    }

    // The four combinations as the Filebeat reference describes them.
    #[test]
    fn negate_and_match_like_filebeat() {
        let lines = ["[a", " b", " c", "[d", " e"];
        assert_eq!(
            run(r#"{"pattern":"^\\s","match":"after"}"#, &lines),
            vec!["[a\n b\n c", "[d\n e"]
        );
        assert_eq!(
            run(
                r#"{"pattern":"^\\[","negate":true,"match":"after"}"#,
                &lines
            ),
            vec!["[a\n b\n c", "[d\n e"]
        );
        let lines = ["a \\", "b \\", "c", "d"];
        assert_eq!(
            run(r#"{"pattern":"\\\\$","match":"before"}"#, &lines),
            vec!["a \\\nb \\\nc", "d"]
        );
        let lines = ["x", "y", "END", "z", "END"];
        assert_eq!(
            run(
                r#"{"pattern":"^END$","negate":true,"match":"before"}"#,
                &lines
            ),
            vec!["x\ny\nEND", "z\nEND"]
        );
    }

    #[test]
    fn java_preset_and_caps() {
        let lines = [
            "2024-01-01 ERROR failed",
            "java.lang.IllegalStateException: boom",
            "\tat com.x.A.b(A.java:1)",
            "Caused by: java.io.IOException: io",
            "\t... 3 more",
            "2024-01-01 INFO next",
        ];
        let got = run(r#"{"preset":"java"}"#, &lines);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].lines().count(), 5);
        let got = run(
            r#"{"pattern":"^\\s","max_lines":2}"#,
            &["a", " b", " c", " d"],
        );
        assert_eq!(got, vec!["a\n b"]);
    }

    #[test]
    fn timeout_flushes() {
        let cfg: Config = serde_json::from_str(r#"{"preset":"python","timeout":1}"#).unwrap();
        let mut m = cfg.compile(None, "m").unwrap();
        let t0 = Instant::now();
        let mut out = Vec::new();
        m.push(
            Line {
                text: "Traceback (most recent call last):".into(),
                ..Line::default()
            },
            t0,
            &mut |l| out.push(l),
        );
        m.flush_if_due(t0 + std::time::Duration::from_millis(500), &mut |l| {
            out.push(l)
        });
        assert!(out.is_empty());
        m.flush_if_due(t0 + std::time::Duration::from_secs(1), &mut |l| out.push(l));
        assert_eq!(out.len(), 1);
    }
}
