//! `${VAR}`, `${VAR:-default}` and `${VAR:?message}` in the pipeline file. Substitution is done
//! on scalar values after parsing, not on the raw text: comments are left alone, positions stay
//! exact, and a variable holding `: ` or a newline cannot change the file's structure.

use super::node::{Mark, Node, NodeKind};

/// What went wrong substituting one value.
#[derive(Debug, Clone, PartialEq)]
pub struct InterpolationError {
    pub mark: Mark,
    /// The key path to the value (`inputs.app.paths[0]`), empty where `expand` was called alone.
    pub path: String,
    pub message: String,
}

/// Substitutes in every scalar value of `node` (keys are left as written). Returns warnings for
/// variables that are unset and have no default (they expand to the empty string, as in Beats).
pub fn interpolate(
    node: &mut Node,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<InterpolationError>,
    warnings: &mut Vec<InterpolationError>,
) {
    interpolate_at(node, "", env, errors, warnings)
}

fn interpolate_at(
    node: &mut Node,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<InterpolationError>,
    warnings: &mut Vec<InterpolationError>,
) {
    let mark = node.mark;
    let at = |mut e: InterpolationError| {
        e.path = path.to_owned();
        e
    };
    match &mut node.kind {
        NodeKind::Scalar { value, .. } => {
            if value.contains('$') {
                let mut found = Vec::new();
                match expand(value, env, mark, &mut found) {
                    Ok(v) => *value = v,
                    Err(e) => errors.push(at(e)),
                }
                warnings.extend(found.into_iter().map(at));
            }
        }
        NodeKind::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_at(item, &format!("{path}[{i}]"), env, errors, warnings);
            }
        }
        NodeKind::Map(entries) => {
            for (k, v) in entries {
                let key = k.as_str().unwrap_or("?");
                let inner = if path.is_empty() {
                    key.to_owned()
                } else {
                    format!("{path}.{key}")
                };
                interpolate_at(v, &inner, env, errors, warnings);
            }
        }
    }
}

/// How deep defaults may nest (`${A:-${B:-${C}}}` is 3): deep enough for any real file,
/// shallow enough that a hostile value cannot recurse without bound.
const MAX_NESTING: usize = 8;

/// Expands one string.
pub fn expand(
    input: &str,
    env: &dyn Fn(&str) -> Option<String>,
    mark: Mark,
    warnings: &mut Vec<InterpolationError>,
) -> Result<String, InterpolationError> {
    expand_nested(input, env, mark, warnings, 0)
}

/// The `}` that closes a `${` whose body starts `body`, skipping nested `${...}`.
fn closing_brace(body: &str) -> Option<usize> {
    let b = body.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'$' if b.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn expand_nested(
    input: &str,
    env: &dyn Fn(&str) -> Option<String>,
    mark: Mark,
    warnings: &mut Vec<InterpolationError>,
    depth: usize,
) -> Result<String, InterpolationError> {
    if depth > MAX_NESTING {
        return Err(InterpolationError {
            mark,
            path: String::new(),
            message: format!("`${{...}}` nested deeper than {MAX_NESTING} levels in `{input}`"),
        });
    }
    // A default is itself expanded (`${A:-${B}}`), only when it is used.
    let default =
        |arg: &str, warnings: &mut Vec<InterpolationError>| -> Result<String, InterpolationError> {
            if arg.contains('$') {
                expand_nested(arg, env, mark, warnings, depth + 1)
            } else {
                Ok(arg.to_owned())
            }
        };
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            // `$$` is a literal dollar.
            out.push('$');
            rest = stripped;
            continue;
        }
        let Some(body_start) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = closing_brace(body_start) else {
            return Err(InterpolationError {
                mark,
                path: String::new(),
                message: format!("unterminated `${{` in `{input}`: expected `}}`"),
            });
        };
        let body = &body_start[..end];
        rest = &body_start[end + 1..];
        let (name, op, arg) = split_body(body);
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(InterpolationError {
                mark,
                path: String::new(),
                message: format!(
                    "invalid variable reference `${{{body}}}`: expected ${{NAME}}, ${{NAME:-default}} or ${{NAME:?message}}"
                ),
            });
        }
        let value = env(name);
        match op {
            None => match value {
                Some(v) => out.push_str(&v),
                None => warnings.push(InterpolationError {
                    mark,
                    path: String::new(),
                    message: format!(
                        "environment variable `{name}` is not set; using an empty value"
                    ),
                }),
            },
            Some(":-") => match value {
                Some(v) if !v.is_empty() => out.push_str(&v),
                _ => out.push_str(&default(arg, warnings)?),
            },
            Some("-") => match value {
                Some(v) => out.push_str(&v),
                None => out.push_str(&default(arg, warnings)?),
            },
            Some(":?") | Some("?") => match value {
                Some(v) if op == Some("?") || !v.is_empty() => out.push_str(&v),
                _ => {
                    let state = if value.is_some() {
                        "is empty"
                    } else {
                        "is not set"
                    };
                    let message = if arg.is_empty() {
                        format!("environment variable `{name}` {state}: it is required")
                    } else {
                        format!("environment variable `{name}` {state}: {arg}")
                    };
                    return Err(InterpolationError {
                        mark,
                        path: String::new(),
                        message,
                    });
                }
            },
            Some(_) => unreachable!("split_body only returns known operators"),
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn split_body(body: &str) -> (&str, Option<&'static str>, &str) {
    for (i, c) in body.char_indices() {
        if c == ':' || c == '-' || c == '?' {
            let tail = &body[i..];
            for op in [":-", ":?", "-", "?"] {
                if let Some(arg) = tail.strip_prefix(op) {
                    return (&body[..i], Some(op), arg);
                }
            }
            return (body, None, "");
        }
    }
    (body, None, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("es.local".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn run(s: &str) -> (Result<String, InterpolationError>, usize) {
        let mut w = Vec::new();
        let r = expand(s, &env, Mark::default(), &mut w);
        (r, w.len())
    }

    #[test]
    fn every_form() {
        assert_eq!(
            run("http://${HOST}:9200").0.unwrap(),
            "http://es.local:9200"
        );
        assert_eq!(run("${PORT:-9200}").0.unwrap(), "9200");
        assert_eq!(run("${EMPTY:-x}").0.unwrap(), "x");
        assert_eq!(run("${EMPTY-x}").0.unwrap(), "");
        assert_eq!(run("${MISSING-x}").0.unwrap(), "x");
        assert_eq!(run("${HOST:?need a host}").0.unwrap(), "es.local");
        assert_eq!(run("cost $$5 and $x").0.unwrap(), "cost $5 and $x");
        assert_eq!(run("${HOST:-a:-b}").0.unwrap(), "es.local");
        assert_eq!(run("${MISSING:-a:-b}").0.unwrap(), "a:-b");
    }

    #[test]
    fn defaults_nest() {
        assert_eq!(run("${MISSING:-${HOST}}").0.unwrap(), "es.local");
        assert_eq!(
            run("x${MISSING:-${NOPE:-${HOST}}}y").0.unwrap(),
            "xes.localy"
        );
        assert_eq!(run("${HOST:-${MISSING:?never}}").0.unwrap(), "es.local");
        assert!(run("${MISSING:-${NOPE:?need one}}").0.is_err());
        assert_eq!(run("${MISSING:-${NOPE}}"), (Ok(String::new()), 1));
        let deep = "${A:-".repeat(20) + &"}".repeat(20);
        assert!(run(&deep).0.unwrap_err().message.contains("nested deeper"));
        assert!(run("${MISSING:-${HOST}").0.is_err(), "unterminated");
    }

    #[test]
    fn unset_without_default_warns_and_required_fails() {
        let (r, warnings) = run("${MISSING}");
        assert_eq!(r.unwrap(), "");
        assert_eq!(warnings, 1);
        let e = run("${MISSING:?set it in the DaemonSet}").0.unwrap_err();
        assert_eq!(
            e.message,
            "environment variable `MISSING` is not set: set it in the DaemonSet"
        );
        let e = run("${EMPTY:?}").0.unwrap_err();
        assert!(e.message.contains("is required"));
        assert!(run("${HOST").0.is_err());
        assert!(run("${BAD NAME}").0.is_err());
    }

    #[test]
    fn keys_and_comments_are_untouched() {
        let mut n = super::super::node::parse("# ${MISSING:?x}\nk${HOST}: ${HOST}\n").unwrap();
        let (mut e, mut w) = (Vec::new(), Vec::new());
        interpolate(&mut n, &env, &mut e, &mut w);
        assert!(e.is_empty());
        assert_eq!(n.get("k${HOST}").unwrap().as_str(), Some("es.local"));
    }
}
