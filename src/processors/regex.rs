//! The `regex` parser: named captures become fields (`(?<log.level>\w+)` nests, and
//! `(?<process.pid:int>\d+)` or a `types:` map types them), several patterns are tried in order,
//! and an event no pattern matches passes unchanged with a tag.

mod runs;

use super::convert::{self, Conversion, TypesConfig};
use super::{
    default_field, default_trim_chars, restore_text, take_text, target_path, Failures, FieldPath,
    OneOrMany, Processor, Trim, Verdict,
};
use crate::config::{ComponentSpec, DeError};
use crate::event::{Event, Value};
use ::regex::{CaptureLocations, Regex};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexConfig {
    /// The field to parse.
    #[serde(default = "default_field")]
    pub field: String,
    /// Object the captured fields go under; absent: the event's root.
    #[serde(default)]
    pub target: Option<String>,
    /// One pattern or a list, tried in order until one matches.
    pub patterns: OneOrMany,
    /// Which side of every captured value to trim of `trim_chars` (`none`, `left`, `right`,
    /// `all`): lets a pattern end in `(?<message>.*)$` rather than the slower `(.*?)\s*$`.
    #[serde(default)]
    pub trim_values: Trim,
    /// Characters `trim_values` removes.
    #[serde(default = "default_trim_chars")]
    pub trim_chars: String,
    /// Tag added to events no pattern matches.
    #[serde(default = "default_tag")]
    pub tag_on_failure: String,
    /// Events without the field pass untouched and uncounted.
    #[serde(default)]
    pub ignore_missing: bool,
    /// Capture name → type (`int`, `float`, `bool`, `ip`, `timestamp`, `string`), for the
    /// captures that do not say it inline (`(?<name:int>...)`).
    #[serde(default)]
    pub types: TypesConfig,
}

fn default_tag() -> String {
    "_regex_parse_failure".to_owned()
}

/// What finds a pattern's captures: the regex crate, or for the anchored literal-and-runs
/// patterns log formats are mostly written as, `runs` (the same matches, by `memchr`).
#[derive(Clone)]
enum Engine {
    Regex(Regex, CaptureLocations),
    Runs(runs::Runs, Vec<(usize, usize)>),
}

impl Engine {
    /// `pattern` is `regex`'s source, parsed again to see whether `runs` can match it.
    fn new(regex: Regex, pattern: &str) -> Engine {
        let hir = regex_syntax::Parser::new().parse(pattern).ok();
        match hir.as_ref().and_then(runs::Runs::new) {
            Some(r) if r.groups() == regex.captures_len() => {
                let slots = vec![(0, 0); r.groups()];
                Engine::Runs(r, slots)
            }
            _ => {
                let locations = regex.capture_locations();
                Engine::Regex(regex, locations)
            }
        }
    }

    /// Where the match ends, its groups then read by `group`.
    #[inline]
    fn find(&mut self, text: &str) -> Option<usize> {
        match self {
            Engine::Regex(regex, locations) => {
                regex.captures_read(locations, text).map(|m| m.end())
            }
            Engine::Runs(runs, slots) => runs.captures(text, slots),
        }
    }

    #[inline]
    fn group(&self, group: usize) -> Option<(usize, usize)> {
        match self {
            Engine::Regex(_, locations) => locations.get(group),
            Engine::Runs(_, slots) => slots.get(group).copied(),
        }
    }
}

/// One compiled pattern and, for each capture group, the event path it fills.
#[derive(Clone)]
struct Pattern {
    engine: Engine,
    /// Indexed like the capture groups; `None` for unnamed groups.
    paths: Vec<Option<FieldPath>>,
    /// Indexed like the capture groups: what the captured text becomes.
    conversions: Vec<Conversion>,
    /// The pattern without a last `(?<name>.*)$`, when it ends so (see `split_rest`).
    head: Option<Head>,
    /// The group that writes text to the parsed field itself (`(?<message>...)` parsing
    /// `message`), when no other group writes to, under or above that field: its value is
    /// made in the parsed text's own buffer, cut down in place, rather than copied out of it
    /// while the text is dropped (an allocation and a free per event saved).
    in_place: Option<usize>,
    /// Some group writes the parsed field, under it or above it, and not in place: the
    /// parsed text must be back in its field before the captures are written.
    restore_first: bool,
}

/// A pattern's head, for patterns ending in `(?<name>.*)$`: the capture is then the rest of
/// the text after where the head matched, when that rest holds no line feed. A capture that
/// runs to the end of the line was half of the matching work on typical log lines (onepass
/// walks it byte by byte).
#[derive(Clone)]
struct Head {
    engine: Engine,
    /// The group the rest of the text fills: the last one of the whole pattern.
    rest_group: usize,
}

impl Pattern {
    /// Matches `text` and pushes (group, start, end) for every named group that took part.
    fn capture(&mut self, text: &str, spans: &mut Vec<(usize, usize, usize)>) -> bool {
        if let Some(head) = &mut self.head {
            let Some(end) = head.engine.find(text) else {
                // The whole pattern is the head followed by more: no head, no match.
                return false;
            };
            // `.` does not match `\n`: with one in the rest, another way through the head may
            // be the one the whole pattern takes, which only the whole pattern can tell.
            if memchr::memchr(b'\n', &text.as_bytes()[end..]).is_none() {
                for (group, path) in self.paths.iter().enumerate() {
                    if path.is_none() {
                        continue;
                    }
                    if group == head.rest_group {
                        spans.push((group, end, text.len()));
                    } else if let Some((s, e)) = head.engine.group(group) {
                        spans.push((group, s, e));
                    }
                }
                return true;
            }
        }
        if self.engine.find(text).is_none() {
            return false;
        }
        for (group, path) in self.paths.iter().enumerate() {
            if path.is_some() {
                if let Some((s, e)) = self.engine.group(group) {
                    spans.push((group, s, e));
                }
            }
        }
        true
    }
}

/// For a pattern (names already translated) that is exactly a head followed by
/// `(?<trawl_N>.*)$`, the head compiled alone and N's group. Checked on the parsed patterns, not
/// the text: flags such as `(?s)` or `(?m)`, or an alternation at the top, change what the end
/// means, and then the whole pattern is used as it is.
fn split_rest(internal: &str, whole: &Regex) -> Option<Head> {
    use regex_syntax::hir::{HirKind, Look};
    let body = internal.strip_suffix(".*)$")?;
    let open = body.rfind(&format!("(?<{INTERNAL_PREFIX}"))?;
    let name = body[open + 3..].strip_suffix('>')?;
    internal_index(name)?;
    let head_text = &internal[..open];
    let parse = |p: &str| regex_syntax::Parser::new().parse(p).ok();
    let full = parse(internal)?;
    let head_hir = parse(head_text)?;
    let dot_star = parse(".*")?;
    let HirKind::Concat(subs) = full.kind() else {
        return None;
    };
    let [before @ .., rest, end] = subs.as_slice() else {
        return None;
    };
    let HirKind::Capture(cap) = rest.kind() else {
        return None;
    };
    if cap.name.as_deref() != Some(name)
        || *cap.sub != dot_star
        || *end.kind() != HirKind::Look(Look::End)
        || regex_syntax::hir::Hir::concat(before.to_vec()) != head_hir
    {
        return None;
    }
    let regex = Regex::new(head_text).ok()?;
    let rest_group = whole.captures_len().checked_sub(1)?;
    if cap.index as usize != rest_group || regex.captures_len() != rest_group {
        return None;
    }
    Some(Head {
        engine: Engine::new(regex, head_text),
        rest_group,
    })
}

#[derive(Clone)]
pub struct RegexParser {
    field: String,
    patterns: Vec<Pattern>,
    tag_on_failure: String,
    ignore_missing: bool,
    failures: Arc<Failures>,
    /// Captured values waiting to be written: (group, start, end) in the parsed text, trimmed
    /// (reused across events).
    values: Vec<(usize, usize, usize)>,
    /// The same values copied out, when the text must go back first (reused across events).
    owned: Vec<(usize, String)>,
    /// Where they are in the parsed text: (group, start, end), reused across events.
    spans: Vec<(usize, usize, usize)>,
    trim: Trim,
    trim_chars: Vec<char>,
}

impl RegexParser {
    pub fn new(
        config: RegexConfig,
        spec: &ComponentSpec,
        failures: Arc<Failures>,
    ) -> Result<RegexParser, DeError> {
        let sources = config.patterns.into_vec();
        if sources.is_empty() {
            return Err(DeError::new(
                "`patterns` is empty: expected at least one pattern",
                spec.mark,
                &format!("{}.patterns", spec.path),
            ));
        }
        let mut types = std::collections::BTreeMap::new();
        for (name, ty) in &config.types {
            let conversion = convert::of_entry(name, ty, spec)?;
            types.insert(name.as_str(), conversion);
        }
        let mut typed_names = std::collections::BTreeSet::new();
        let mut patterns = Vec::new();
        for (i, src) in sources.iter().enumerate() {
            let (internal, names) = translate_names(src);
            let at =
                |why: String| DeError::new(why, spec.mark, &format!("{}.patterns[{i}]", spec.path));
            let names: Vec<(&str, Conversion)> = names
                .iter()
                .map(|n| {
                    let (field, inline) = convert::split_typed(n);
                    if let (None, Some((_, ty))) = (inline, n.rsplit_once(':')) {
                        return Err(at(format!(
                            "unknown type `{ty}` in the group name `{n}`: expected one of {}",
                            convert::NAMES
                        )));
                    }
                    super::writable_field(&target_path(config.target.as_deref(), field))
                        .map_err(at)?;
                    typed_names.insert(field.to_owned());
                    let conversion = inline
                        .or_else(|| types.get(field).copied())
                        .unwrap_or(Conversion::String);
                    Ok((field, conversion))
                })
                .collect::<Result<_, DeError>>()?;
            let regex = Regex::new(&internal).map_err(|e| {
                DeError::new(
                    format!("invalid pattern: {e}"),
                    spec.mark,
                    &format!("{}.patterns[{i}]", spec.path),
                )
            })?;
            let paths = regex
                .capture_names()
                .map(|n| {
                    n.and_then(internal_index)
                        .map(|k| FieldPath::new(&target_path(config.target.as_deref(), names[k].0)))
                })
                .collect();
            let conversions: Vec<Conversion> = regex
                .capture_names()
                .map(|n| {
                    n.and_then(internal_index)
                        .map_or(Conversion::String, |k| names[k].1)
                })
                .collect();
            let head = split_rest(&internal, &regex);
            let full_paths: Vec<Option<String>> = regex
                .capture_names()
                .map(|n| {
                    n.and_then(internal_index)
                        .map(|k| target_path(config.target.as_deref(), names[k].0))
                })
                .collect();
            let (in_place, restore_first) =
                in_place_group(&full_paths, &conversions, &config.field);
            patterns.push(Pattern {
                // Tried only when there is no head (or the rest holds a line feed).
                engine: Engine::new(regex, &internal),
                paths,
                conversions,
                head,
                in_place,
                restore_first,
            });
        }
        // A typo in `types:` would silently leave a field as text.
        if let Some(name) = types.keys().find(|n| !typed_names.contains(**n)) {
            return Err(DeError::new(
                format!("`{name}` is not a capture name of any pattern"),
                spec.mark,
                &format!("{}.types.{name}", spec.path),
            ));
        }
        Ok(RegexParser {
            field: config.field,
            patterns,
            tag_on_failure: config.tag_on_failure,
            ignore_missing: config.ignore_missing,
            failures,
            values: Vec::new(),
            owned: Vec::new(),
            spans: Vec::new(),
            trim: config.trim_values,
            trim_chars: config.trim_chars.chars().collect(),
        })
    }
}

impl Processor for RegexParser {
    fn process(&mut self, event: &mut Event) -> Verdict {
        let Some((text, from)) = take_text(event, &self.field) else {
            let (field, tag) = (&self.field, &self.tag_on_failure);
            self.failures
                .not_text(event, field, self.ignore_missing, tag);
            return Verdict::Keep;
        };
        // Where each value is in the text first; how they are written depends on whether a
        // capture replaces the parsed field itself (`(?<message>...)`), see below.
        self.values.clear();
        let mut matched = None;
        for (p, pattern) in self.patterns.iter_mut().enumerate() {
            self.spans.clear();
            if pattern.capture(&text, &mut self.spans) {
                for &(group, s, e) in &self.spans {
                    let value = self.trim.apply(&text[s..e], &self.trim_chars);
                    // A trimmed value is a slice of `text[s..e]`: its offsets follow.
                    let start = value.as_ptr() as usize - text.as_ptr() as usize;
                    self.values.push((group, start, start + value.len()));
                }
                matched = Some(p);
                break;
            }
        }
        let Some(p) = matched else {
            restore_text(event, &self.field, from, text);
            self.failures
                .record(&format_args!("no pattern matches field `{}`", self.field));
            event.add_tag(&self.tag_on_failure);
            return Verdict::Keep;
        };
        let pattern = &self.patterns[p];
        let mut failed = false;
        if pattern.restore_first {
            // A capture replaces the parsed field (typed), or writes under or above it: the
            // values are copied out, the text goes back, then the captures are written.
            self.owned.clear();
            for &(group, start, end) in &self.values {
                self.owned.push((group, text[start..end].to_owned()));
            }
            restore_text(event, &self.field, from, text);
            for (group, value) in self.owned.drain(..) {
                failed |= write(pattern, group, value, event, &self.failures);
            }
        } else {
            // The text goes back into its field (where it was, so the field keeps its place)
            // after the other values were copied out of it, cut down to the in-place value.
            let mut in_place = None;
            for &(group, start, end) in &self.values {
                if pattern.in_place == Some(group) {
                    in_place = Some((start, end));
                    continue;
                }
                let value = text[start..end].to_owned();
                failed |= write(pattern, group, value, event, &self.failures);
            }
            let mut text = text;
            if let Some((start, end)) = in_place {
                text.truncate(end);
                text.drain(..start);
            }
            restore_text(event, &self.field, from, text);
        }
        if failed {
            event.add_tag(convert::FAILURE_TAG);
        }
        Verdict::Keep
    }

    fn fork(&self) -> Option<Box<dyn Processor>> {
        Some(Box::new(self.clone()))
    }
}

/// Writes one captured value, typed; true when it is kept as text for not being of its type.
fn write(
    pattern: &Pattern,
    group: usize,
    value: String,
    event: &mut Event,
    failures: &Failures,
) -> bool {
    let Some(path) = &pattern.paths[group] else {
        return false;
    };
    let mut failed = false;
    let typed = match pattern.conversions[group] {
        Conversion::String => Value::String(value),
        c => match c.apply(&value) {
            Some(v) => v,
            None => {
                failures.record(&format_args!(
                    "captured value `{value}` is not of type {c:?}; kept as text"
                ));
                failed = true;
                Value::String(value)
            }
        },
    };
    path.insert(event, typed);
    failed
}

const INTERNAL_PREFIX: &str = "trawl_";

/// Of a pattern's groups (their full paths), the one that writes text to `field` itself, when
/// no other group's path is that field, inside it or one of its parents; and whether, without
/// such a group, some group still writes to one of those (then the parsed text must be back
/// in place before the captures are written).
fn in_place_group(
    paths: &[Option<String>],
    conversions: &[Conversion],
    field: &str,
) -> (Option<usize>, bool) {
    let nested = |outer: &str, inner: &str| {
        inner.len() > outer.len()
            && inner.starts_with(outer)
            && inner.as_bytes()[outer.len()] == b'.'
    };
    let mut same = Vec::new();
    let mut related = false;
    for (group, path) in paths.iter().enumerate() {
        let Some(path) = path else { continue };
        if path == field {
            same.push(group);
        } else if nested(field, path) || nested(path, field) {
            related = true;
        }
    }
    match same.as_slice() {
        [] => (None, related),
        [g] if !related && conversions[*g] == Conversion::String => (Some(*g), false),
        _ => (None, true),
    }
}

fn internal_index(name: &str) -> Option<usize> {
    name.strip_prefix(INTERNAL_PREFIX)?.parse().ok()
}

/// Rewrites every named group (`(?<name>` or `(?P<name>`) to an internal name the regex crate
/// accepts whatever the user's name holds (`log.level`, `@timestamp`), and returns the user's
/// names in order. Escapes and character classes are skipped so that `\(?<x>` or `[(?<]` stay.
fn translate_names(pattern: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut names = Vec::new();
    let mut class_depth = 0usize;
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        if c == '\\' {
            let mut it = rest.char_indices();
            it.next();
            let end = it
                .next()
                .map(|(i, ch)| i + ch.len_utf8())
                .unwrap_or(rest.len());
            out.push_str(&rest[..end]);
            rest = &rest[end..];
            continue;
        }
        if c == '[' {
            class_depth += 1;
        } else if c == ']' && class_depth > 0 {
            class_depth -= 1;
        } else if c == '(' && class_depth == 0 {
            let open = if rest.starts_with("(?P<") {
                Some(4)
            } else if rest.starts_with("(?<")
                && !rest.starts_with("(?<=")
                && !rest.starts_with("(?<!")
            {
                Some(3)
            } else {
                None
            };
            if let Some(open) = open {
                if let Some(close) = rest[open..].find('>') {
                    let name = &rest[open..open + close];
                    out.push_str(&format!("(?<{INTERNAL_PREFIX}{}>", names.len()));
                    names.push(name.to_owned());
                    rest = &rest[open + close + 1..];
                    continue;
                }
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    (out, names)
}

#[cfg(test)]
mod tests;
