//! Templates for names that depend on the event: `%{[kubernetes.namespace]}` inserts a field,
//! `%Y.%m.%d` formats the event's own `@timestamp` (not the time of sending), so an event
//! re-sent after a day still lands in the index of its day. Parsed once, rendered per event.

use crate::event::Event;
use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Deserializer};
use std::fmt::Write as _;

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(String),
    Field(String),
    /// One strftime conversion letter: `Y`, `y`, `m`, `d`, `H`, `M`, `j`.
    Time(char),
}

/// A parsed template. Deserializes from a string; a bad template is a configuration error.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

/// Why a template could not be rendered for one event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("field `{0}` used in the template is missing or not a scalar")]
    Missing(String),
}

const TIME_LETTERS: &str = "YymdHMj";

impl Template {
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                text.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => text.push('%'),
                Some('{') => {
                    let mut inner = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => inner.push(c),
                            None => return Err(format!("`{s}`: unclosed `%{{`")),
                        }
                    }
                    // `%{[a.b]}` (Beats/Logstash style) and `%{a.b}` are both accepted.
                    let path = inner.trim().trim_start_matches('[').trim_end_matches(']');
                    let path = path.replace("][", ".");
                    if path.is_empty() {
                        return Err(format!("`{s}`: empty field reference `%{{}}`"));
                    }
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Field(path));
                }
                Some(l) if TIME_LETTERS.contains(l) => {
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Time(l));
                }
                Some(other) => {
                    return Err(format!(
                        "`{s}`: unknown conversion `%{other}` (expected %{{[field]}}, %Y, %y, %m, %d, %H, %M, %j or %%)"
                    ))
                }
                None => return Err(format!("`{s}`: a template cannot end with `%`")),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template {
            source: s.to_owned(),
            parts,
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// True when the template does not depend on the event.
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// Renders for `event` into `out` (cleared first).
    pub fn render_into(&self, event: &Event, out: &mut String) -> Result<(), RenderError> {
        out.clear();
        let mut ts: Option<DateTime<Utc>> = None;
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(path) => match event.get(path).and_then(|v| v.to_text()) {
                    Some(v) => out.push_str(&v),
                    None => return Err(RenderError::Missing(path.clone())),
                },
                Part::Time(letter) => {
                    let t = *ts.get_or_insert_with(|| event.timestamp().unwrap_or_else(Utc::now));
                    let _ = match letter {
                        'Y' => write!(out, "{:04}", t.year()),
                        'y' => write!(out, "{:02}", t.year().rem_euclid(100)),
                        'm' => write!(out, "{:02}", t.month()),
                        'd' => write!(out, "{:02}", t.day()),
                        'H' => write!(out, "{:02}", t.hour()),
                        'M' => write!(out, "{:02}", t.minute()),
                        _ => write!(out, "{:03}", t.ordinal()),
                    };
                }
            }
        }
        Ok(())
    }

    pub fn render(&self, event: &Event) -> Result<String, RenderError> {
        let mut s = String::new();
        self.render_into(event, &mut s)?;
        Ok(s)
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Parsing inside the visitor lets the error carry the value's position.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Template;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a template such as logs-%{[kubernetes.namespace]}-%Y.%m.%d")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Template, E> {
                Template::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut e = Event::from_message("t".into(), t, "m".into());
        e.insert("kubernetes.namespace", "prod");
        e.insert("n", 7i64);
        e
    }

    #[test]
    fn fields_and_event_date() {
        let t = Template::parse("logs-%{[kubernetes.namespace]}-%Y.%m.%d").unwrap();
        assert_eq!(t.render(&event()).unwrap(), "logs-prod-2026.01.02");
        let t = Template::parse("x.%{n}.%H%M.%j.%%").unwrap();
        assert_eq!(t.render(&event()).unwrap(), "x.7.0304.002.%");
        assert!(Template::parse("static").unwrap().is_static());
    }

    #[test]
    fn missing_fields_and_bad_templates() {
        let t = Template::parse("logs-%{[nope]}").unwrap();
        assert_eq!(t.render(&event()), Err(RenderError::Missing("nope".into())));
        assert!(Template::parse("a-%{x").is_err());
        assert!(Template::parse("a-%Q").is_err());
        assert!(Template::parse("a-%").is_err());
    }
}
