//! One HELP and one TYPE per metric family on `/metrics`, whatever renders it: several
//! components write the same family (one packet input each, one processor each), and the
//! Prometheus text format wants each family's samples together under one header.

use std::collections::HashMap;

/// One family: its header lines and its samples, in the order they came.
#[derive(Default)]
struct Family {
    help: Option<String>,
    kind: Option<String>,
    samples: Vec<String>,
}

/// The family a sample line belongs to: `current` when the sample is one of its series
/// (histograms and summaries add `_bucket`, `_sum`, `_count`), else its own name.
fn family_of<'a>(sample: &'a str, current: Option<&'a str>) -> &'a str {
    let name = sample.split(['{', ' ']).next().unwrap_or(sample);
    if let Some(cur) = current {
        let suffix = name.strip_prefix(cur);
        if matches!(suffix, Some("" | "_bucket" | "_sum" | "_count")) {
            return cur;
        }
    }
    name
}

/// Regroups a text exposition so that each family appears once, with the first HELP and TYPE
/// given for it and every sample rendered for it, families in the order first seen.
pub fn merge_families(text: &str) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut families: HashMap<String, Family> = HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let (name, header) = if let Some(rest) = line.strip_prefix("# HELP ") {
            let (n, h) = rest.split_once(' ').unwrap_or((rest, ""));
            (n.to_owned(), Some((true, h)))
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (n, k) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            (n.to_owned(), Some((false, k)))
        } else if line.starts_with('#') {
            continue;
        } else {
            (family_of(line, current.as_deref()).to_owned(), None)
        };
        let f = families.entry(name.clone()).or_insert_with(|| {
            order.push(name.clone());
            Family::default()
        });
        match header {
            Some((true, help)) => {
                f.help.get_or_insert_with(|| help.to_owned());
            }
            Some((false, kind)) => {
                f.kind.get_or_insert_with(|| kind.to_owned());
            }
            None => f.samples.push(line.to_owned()),
        }
        current = Some(name);
    }
    let mut out = String::with_capacity(text.len());
    for name in order {
        let Some(f) = families.get(&name) else {
            continue;
        };
        if let Some(h) = &f.help {
            out.push_str(&format!("# HELP {name} {h}\n"));
        }
        if let Some(k) = &f.kind {
            out.push_str(&format!("# TYPE {name} {k}\n"));
        }
        for s in &f.samples {
            out.push_str(s);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_written_by_several_components_appear_once() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{input=\"x\"} 1\n\
                    # HELP h Latency.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\nh_count 1\n\
                    # HELP a_total A.\n# TYPE a_total counter\na_total{input=\"y\"} 2\n\
                    # TYPE g gauge\ng 3\n";
        assert_eq!(
            merge_families(text),
            "# HELP a_total A.\n# TYPE a_total counter\na_total{input=\"x\"} 1\na_total{input=\"y\"} 2\n\
             # HELP h Latency.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\nh_count 1\n\
             # TYPE g gauge\ng 3\n"
        );
    }
}
