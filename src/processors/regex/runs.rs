//! A matcher for the anchored patterns most log formats are written as
//! (`^\[(?<time>[^\]]+)\] \[(?<level>\w+)\] `): literals and runs of one character class, each
//! run ending where a character its class excludes must follow. Such a pattern matches in one
//! way only, found with `memchr` or a table rather than the regex crate's general engine; the
//! regex crate keeps every other pattern.

use regex_syntax::hir::{Class, Hir, HirKind, Look};

/// A character class: its ASCII characters as a table, and what it holds above ASCII.
#[derive(Clone, Debug, PartialEq)]
struct ByteSet {
    /// ASCII characters; bytes from 0x80 set when the class holds non-ASCII characters.
    bits: [u64; 4],
    non_ascii: NonAscii,
    /// The bytes outside the set, when they are at most three: a run is then found by `memchr`.
    stops: Stops,
}

#[derive(Clone, Debug, PartialEq)]
enum NonAscii {
    None,
    All,
    /// Some (`\w`, `\d`, `\s`, `\S` are Unicode): these ranges, each character looked up.
    Some(Box<[(u32, u32)]>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stops {
    One(u8),
    Two(u8, u8),
    Three(u8, u8, u8),
    /// Too many to search for: the run is walked byte by byte on the table.
    Table,
}

impl ByteSet {
    fn new(bits: [u64; 4], non_ascii: NonAscii) -> ByteSet {
        let outside: Vec<u8> = (0..=255u8)
            .filter(|b| bits[(*b >> 6) as usize] & (1 << (b & 63)) == 0)
            .take(4)
            .collect();
        let stops = match (outside.as_slice(), &non_ascii) {
            (_, NonAscii::Some(_)) => Stops::Table,
            ([a], _) => Stops::One(*a),
            ([a, b], _) => Stops::Two(*a, *b),
            ([a, b, c], _) => Stops::Three(*a, *b, *c),
            _ => Stops::Table,
        };
        ByteSet {
            bits,
            non_ascii,
            stops,
        }
    }

    fn holds(&self, c: char) -> bool {
        match &self.non_ascii {
            _ if c.is_ascii() => self.contains(c as u8),
            NonAscii::None => false,
            NonAscii::All => true,
            NonAscii::Some(ranges) => {
                let c = c as u32;
                ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c))
            }
        }
    }

    fn non_ascii_ranges(&self) -> Vec<(u32, u32)> {
        match &self.non_ascii {
            NonAscii::None => Vec::new(),
            NonAscii::All => vec![(0x80, 0x10FFFF)],
            NonAscii::Some(r) => r.to_vec(),
        }
    }

    #[inline]
    fn contains(&self, b: u8) -> bool {
        self.bits[(b >> 6) as usize] & (1 << (b & 63)) != 0
    }

    fn disjoint(&self, other: &ByteSet) -> bool {
        let ascii = (self.bits[0] & other.bits[0]) | (self.bits[1] & other.bits[1]) == 0;
        let theirs = other.non_ascii_ranges();
        ascii
            && self
                .non_ascii_ranges()
                .iter()
                .all(|(lo, hi)| theirs.iter().all(|(olo, ohi)| lo.max(olo) > hi.min(ohi)))
    }

    /// Where the run of characters of this set that starts at `from` (a character boundary)
    /// ends.
    #[inline]
    fn run_end(&self, text: &str, from: usize) -> usize {
        let bytes = text.as_bytes();
        let hay = &bytes[from..];
        let found = match self.stops {
            Stops::One(a) => memchr::memchr(a, hay),
            Stops::Two(a, b) => memchr::memchr2(a, b, hay),
            Stops::Three(a, b, c) => memchr::memchr3(a, b, c, hay),
            Stops::Table if matches!(self.non_ascii, NonAscii::Some(_)) => {
                return self.run_end_by_char(text, from);
            }
            Stops::Table => hay.iter().position(|b| !self.contains(*b)),
        };
        from + found.unwrap_or(hay.len())
    }

    /// `run_end` for a class holding some non-ASCII characters: those are decoded and looked
    /// up, ASCII bytes read from the table.
    fn run_end_by_char(&self, text: &str, from: usize) -> usize {
        let bytes = text.as_bytes();
        let mut at = from;
        while let Some(&b) = bytes.get(at) {
            if b.is_ascii() {
                if !self.contains(b) {
                    break;
                }
                at += 1;
                continue;
            }
            match text.get(at..).and_then(|rest| rest.chars().next()) {
                Some(c) if self.holds(c) => at += c.len_utf8(),
                _ => break,
            }
        }
        at
    }
}

#[derive(Clone, Debug)]
enum Step {
    Literal(Box<[u8]>),
    /// One byte of an ASCII-only set.
    One(ByteSet),
    /// As many bytes of the set as follow, at least `min` (0 or 1).
    Run {
        set: ByteSet,
        min: usize,
        greedy: bool,
    },
    Open(usize),
    Close(usize),
    /// `$`: the end of the text.
    End,
}

/// A pattern compiled to literals and runs; see the module documentation.
#[derive(Clone, Debug)]
pub(super) struct Runs {
    steps: Vec<Step>,
    /// Capture groups, the whole match (group 0) included.
    groups: usize,
}

impl Runs {
    /// The program for `hir` (a pattern as the regex crate parses it with its default flags),
    /// or `None` when the pattern is not of that shape or could match in more than one way.
    pub fn new(hir: &Hir) -> Option<Runs> {
        let subs = match hir.kind() {
            HirKind::Concat(subs) => subs.as_slice(),
            _ => std::slice::from_ref(hir),
        };
        let (first, rest) = subs.split_first()?;
        if *first.kind() != HirKind::Look(Look::Start) {
            return None;
        }
        let mut steps = Vec::new();
        let mut groups = 1;
        for sub in rest {
            flatten(sub, &mut steps, &mut groups)?;
        }
        for (i, step) in steps.iter().enumerate() {
            let Step::Run { set, greedy, .. } = step else {
                continue;
            };
            // The run ends at the first byte outside its set; a shorter run would leave a
            // byte of the set where the next step starts, which that step must refuse.
            let next = steps[i + 1..]
                .iter()
                .find(|s| !matches!(s, Step::Open(_) | Step::Close(_)));
            let unique = match next {
                None => *greedy,
                Some(Step::Literal(l)) => std::str::from_utf8(l)
                    .ok()
                    .and_then(|l| l.chars().next())
                    .is_some_and(|c| !set.holds(c)),
                Some(Step::One(other)) => set.disjoint(other),
                Some(Step::Run {
                    set: other, min, ..
                }) => *min >= 1 && set.disjoint(other),
                Some(Step::End) => true,
                Some(Step::Open(_) | Step::Close(_)) => false,
            };
            if !unique {
                return None;
            }
        }
        Some(Runs { steps, groups })
    }

    /// How many capture groups `captures` fills, the whole match included.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Matches `text` from its start; on a match, `slots[g]` is where group `g` matched (every
    /// group takes part in a match of such a pattern) and the end of the match is returned.
    /// `slots` has `groups()` entries.
    #[inline]
    pub fn captures(&self, text: &str, slots: &mut [(usize, usize)]) -> Option<usize> {
        let b = text.as_bytes();
        let mut pos = 0;
        for step in &self.steps {
            match step {
                Step::Literal(l) => {
                    if !b[pos..].starts_with(l) {
                        return None;
                    }
                    pos += l.len();
                }
                Step::One(set) => {
                    // The set is ASCII only: the byte is a whole character or not in it.
                    if !b.get(pos).is_some_and(|c| set.contains(*c)) {
                        return None;
                    }
                    pos += 1;
                }
                Step::Run { set, min, .. } => {
                    let end = set.run_end(text, pos);
                    if end - pos < *min {
                        return None;
                    }
                    pos = end;
                }
                Step::Open(g) => slots[*g].0 = pos,
                Step::Close(g) => slots[*g].1 = pos,
                Step::End => {
                    if pos != b.len() {
                        return None;
                    }
                }
            }
        }
        slots[0] = (0, pos);
        Some(pos)
    }
}

/// Appends the steps of `hir`; `None` for anything but literals, classes, `+`/`*` of a class,
/// groups of those and a final `$`.
fn flatten(hir: &Hir, steps: &mut Vec<Step>, groups: &mut usize) -> Option<()> {
    match hir.kind() {
        HirKind::Empty => {}
        HirKind::Literal(l) => steps.push(Step::Literal(l.0.clone())),
        HirKind::Class(c) => {
            let set = class_set(c)?;
            // One character of a class with non-ASCII characters is one to four bytes.
            if set.non_ascii != NonAscii::None {
                return None;
            }
            steps.push(Step::One(set));
        }
        HirKind::Look(Look::End) => steps.push(Step::End),
        HirKind::Repetition(r) => {
            let HirKind::Class(c) = r.sub.kind() else {
                return None;
            };
            if r.max.is_some() || r.min > 1 {
                return None;
            }
            let set = class_set(c)?;
            steps.push(Step::Run {
                set,
                min: r.min as usize,
                greedy: r.greedy,
            });
        }
        HirKind::Capture(cap) => {
            let g = cap.index as usize;
            steps.push(Step::Open(g));
            flatten(&cap.sub, steps, groups)?;
            steps.push(Step::Close(g));
            *groups = (*groups).max(g + 1);
        }
        HirKind::Concat(subs) => {
            for s in subs {
                flatten(s, steps, groups)?;
            }
        }
        HirKind::Look(_) | HirKind::Alternation(_) => return None,
    }
    Some(())
}

/// The set of a class. A run of a class that holds every non-ASCII character or none ends on
/// a character boundary whichever byte stops it, so it is found on bytes (by `memchr` when
/// at most three bytes stop it); one that holds some (`\w`, `\d`, `\s`, `\S`, Unicode by
/// default) has its non-ASCII characters decoded and looked up.
fn class_set(class: &Class) -> Option<ByteSet> {
    let mut bits = [0u64; 4];
    let mut set = |lo: u32, hi: u32| {
        for b in lo..=hi.min(0x7F) {
            bits[(b >> 6) as usize] |= 1 << (b & 63);
        }
    };
    let non_ascii = match class {
        Class::Unicode(u) => {
            // Scalar values above ASCII: U+0080..=U+10FFFF less the surrogates.
            const ALL: u64 = 0x10FFFF - 0x80 + 1 - 0x800;
            let mut held = 0u64;
            let mut ranges = Vec::new();
            for r in u.ranges() {
                let (lo, hi) = (r.start() as u32, r.end() as u32);
                if lo <= 0x7F {
                    set(lo, hi);
                }
                // A range's ends are characters; what lies between may hold surrogates.
                let overlap = |a: u32, b: u32| {
                    let (s, e) = (lo.max(a), hi.min(b));
                    u64::from(if s <= e { e - s + 1 } else { 0 })
                };
                held += overlap(0x80, 0x10FFFF) - overlap(0xD800, 0xDFFF);
                if hi >= 0x80 {
                    ranges.push((lo.max(0x80), hi));
                }
            }
            if held == ALL {
                NonAscii::All
            } else if held == 0 {
                NonAscii::None
            } else {
                NonAscii::Some(ranges.into_boxed_slice())
            }
        }
        Class::Bytes(b) => {
            for r in b.ranges() {
                if r.end() > 0x7F {
                    return None;
                }
                set(u32::from(r.start()), u32::from(r.end()));
            }
            NonAscii::None
        }
    };
    if non_ascii != NonAscii::None {
        bits[2] = u64::MAX;
        bits[3] = u64::MAX;
    }
    Some(ByteSet::new(bits, non_ascii))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn runs(pattern: &str) -> Option<Runs> {
        Runs::new(&regex_syntax::Parser::new().parse(pattern).ok()?)
    }

    /// What the regex crate finds, as `captures` gives it.
    fn expected(pattern: &str, text: &str) -> Option<Vec<(usize, usize)>> {
        let re = ::regex::Regex::new(pattern).unwrap();
        let caps = re.captures(text)?;
        Some(
            (0..re.captures_len())
                .map(|g| {
                    caps.get(g)
                        .map_or((usize::MAX, 0), |m| (m.start(), m.end()))
                })
                .collect(),
        )
    }

    fn actual(r: &Runs, text: &str) -> Option<Vec<(usize, usize)>> {
        let mut slots = vec![(0, 0); r.groups()];
        r.captures(text, &mut slots)?;
        Some(slots)
    }

    /// Patterns of the shape taken, as log formats write them.
    const TAKEN: &[&str] = &[
        r"^\[(?<time>[^\]]+)\] \[(?<level>[^\]]+)\] ",
        r"^\[(?<time>[^\]]+)\] \[(?<level>[^\]]+)\] (?<message>[^\n]*)$",
        r"^(?<a>[^ ]+) (?<b>[^ ]*) (?<c>[a-z]+):",
        r"^(?<ip>[0-9.]+) - (?<user>[^ ]+) \[(?<t>[^\]]*)\] ",
        r"^(?<k>[^=]+)=(?<v>[^;]*);",
        r"^(?<all>[^\]]*)",
        r"^x(?<one>[a-c])(?<run>[^a-c]+)$",
        r"^(?<outer>a(?<inner>[^b]+)b)c",
        r"^(?<lazy>[^\]]+?)\]",
        r"^(?<a>[^ ]+) (?<b>[^x]*)$y", // `$` then a literal: never matches
        r"^(?<a>\w+) (?<b>\S+) (?<c>\d+)$",
        r"^(?<a>\d+)\.(?<b>\w*)-(?<c>\s*)x",
        r"^(?<a>\S+)\u{a0}(?<b>\d*)", // no-break space is white space
        r"^é(?<x>[^é]+)é",
        r"^\[(?<t>[^\]]+)\] \[(?<l>\w+)\] (?<m>\S*)",
    ];

    /// Patterns that could match in more than one way, or need what runs do not do.
    const REFUSED: &[&str] = &[
        r"\[(?<time>[^\]]+)\]",       // not anchored
        r"^(?<a>[^ ]+)(?<b>[^\]]+)x", // overlapping runs
        r"^(?<a>[^ ]+)[a ]",          // the next byte may be in the run
        r"^(?<a>[^ ]+?)",             // lazy at the end: shortest
        r"^(?<a>[^ ]{2,3}) ",         // bounded repetition
        r"^(?<a>ab|cd) ",             // alternation
        r"(?m)^(?<a>[^ ]+) ",         // line starts
        r"^(?<a>.) ",                 // one character of any length
        r"^(?<a>[^ ]+)é",             // the literal's first byte is in the run
        r"^(?<a>[^ ]+)(?:[^ ]+ )+",   // repetition of a group
        r"^(?<a>[^ ]+)\b",            // word boundary
        r"^é(?<x>[^é]+)ü",            // the literal's first character is in the run
        r"^(?<a>\w+)(?<b>\d+)",       // overlapping runs
        r"^(?<a>\S+)Ω",               // Ω is not white space
        r"^(?<a>\w*)é",               // é is a word character
    ];

    #[test]
    fn log_format_patterns_are_taken_and_others_refused() {
        for p in TAKEN {
            assert!(runs(p).is_some(), "{p} should be taken");
        }
        for p in REFUSED {
            assert!(runs(p).is_none(), "{p} should be refused");
        }
    }

    #[test]
    fn the_apache_error_line_splits_like_the_regex_crate() {
        let p = TAKEN[0];
        let line = "[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6";
        assert_eq!(actual(&runs(p).unwrap(), line), expected(p, line));
        assert_eq!(
            actual(&runs(p).unwrap(), line).unwrap()[2],
            (28, 33),
            "level"
        );
        assert_eq!(actual(&runs(p).unwrap(), "[Sun Dec 04] error"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn every_taken_pattern_matches_like_the_regex_crate(
            text in "[\\[\\] =;:.abcxé\n0-9Ω٣\u{a0}\u{2003}-]{0,30}",
            which in 0..TAKEN.len(),
        ) {
            let pattern = TAKEN[which];
            let r = runs(pattern).unwrap();
            prop_assert_eq!(actual(&r, &text), expected(pattern, &text), "{} on {:?}", pattern, text);
        }

        #[test]
        fn texts_shaped_like_the_pattern_match_like_the_regex_crate(
            a in "[^\\]]{0,8}", b in "[\\]a-c é٣Ω\u{a0}]{0,6}", c in "[^\\n]{0,8}",
            which in 0..TAKEN.len(),
        ) {
            // Mostly matching texts: the random ones above rarely get past the first literal.
            let text = format!("[{a}] [{b}] {c}");
            let pattern = TAKEN[which];
            let r = runs(pattern).unwrap();
            prop_assert_eq!(actual(&r, &text), expected(pattern, &text), "{} on {:?}", pattern, text);
        }
    }
}
