//! Property-based fuzzing of what reads untrusted bytes through the public library: the pipeline
//! file loader, the line framing every line input (socket, stdin, files, tee) shares, and the
//! CRI/Docker container line decoders with their partial-line joining, and DNS messages.
//!
//! Runs `TRAWL_FUZZ_CASES` cases per property (default 256, a few seconds in CI); the long form
//! by hand is `TRAWL_FUZZ_CASES=100000 cargo test --release --test wire fuzz::` (see README "Fuzzing").

use proptest::prelude::*;
use std::time::Instant;
use trawl::config;
use trawl::inputs::file::batcher::Batcher;
use trawl::inputs::file::container::Format;
use trawl::inputs::file::container::{decode_cri, decode_docker};
use trawl::inputs::file::identity::FileKey;
use trawl::inputs::file::reader::{Decoder, TailMeta};
use trawl::inputs::lines::{LineInfo, LineSplitter};

fn cases() -> u32 {
    std::env::var("TRAWL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn fuzz_config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        // Findings are kept as named regression tests below, not in a proptest-regressions file.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Pipeline file loader: YAML + `${...}` interpolation + deserialisation into components.

/// A scalar as a user (or an attacker) might write it: numbers, units, booleans, paths, quoted
/// text, `${...}` expressions nested in defaults, stray YAML punctuation.
fn scalar() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("true".to_owned()),
        Just("null".to_owned()),
        Just("~".to_owned()),
        Just("-1".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("1.5e308".to_owned()),
        Just("10MiB".to_owned()),
        Just("5s".to_owned()),
        Just("0".to_owned()),
        Just("\"a: b\"".to_owned()),
        Just("'it''s'".to_owned()),
        Just("unix:/tmp/x.sock".to_owned()),
        Just("127.0.0.1:0".to_owned()),
        "[a-z_]{1,8}",
        "[ -~]{0,12}",
        "\\PC{0,6}",
    ];
    leaf.prop_recursive(4, 16, 2, |inner| {
        prop_oneof![
            ("[A-Z_]{1,4}", inner.clone()).prop_map(|(v, d)| format!("${{{v}:-{d}}}")),
            ("[A-Z_]{1,4}", inner.clone()).prop_map(|(v, d)| format!("${{{v}-{d}}}")),
            "[A-Z_]{1,4}".prop_map(|v| format!("${{{v}}}")),
            ("[A-Z_]{1,4}", inner.clone()).prop_map(|(v, d)| format!("${{{v}:?{d}}}")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("{a}$${b}")),
        ]
    })
}

/// Keys of the pipeline schema (top level, components, their settings) plus a few unknown ones.
fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "inputs",
        "processors",
        "outputs",
        "data_dir",
        "http",
        "shutdown_timeout",
        "pipeline",
        "type",
        "address",
        "format",
        "max_line_bytes",
        "max_connections",
        "idle_timeout",
        "paths",
        "start_at",
        "path",
        "max_size",
        "codec",
        "fields",
        "tags",
        "field",
        "target",
        "pattern",
        "when",
        "inputs",
        "dead_letter",
        "buffer",
        "kind",
        "max_events",
        "when_full",
        "enabled",
        "bearer_token",
        "batch_size",
        "queue_batches",
        "exclude",
        "multiline",
        "from",
        "to",
        "equals",
        "contains",
        "regexp",
        "and",
        "or",
        "not",
        "unknown_key",
        "x",
    ])
    .prop_map(str::to_owned)
}

fn type_name() -> impl Strategy<Value = String> {
    // Only components whose build touches nothing outside the temporary data_dir.
    prop::sample::select(vec![
        "stdin",
        "socket",
        "file",
        "pcap_file",
        "stdout",
        "null",
        "add_tags",
        "add_fields",
        "rename",
        "remove",
        "drop",
        "regex",
        "dissect",
        "json",
        "key_value",
        "syslog",
        "redact",
        "throttle",
        "timestamp",
        "nosuch",
    ])
    .prop_map(str::to_owned)
}

#[derive(Debug, Clone)]
enum Doc {
    Scalar(String),
    Seq(Vec<Doc>),
    Map(Vec<(String, Doc)>),
}

fn doc() -> impl Strategy<Value = Doc> {
    let leaf = scalar().prop_map(Doc::Scalar);
    leaf.prop_recursive(5, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Doc::Seq),
            prop::collection::vec((key(), inner.clone()), 0..5).prop_map(Doc::Map),
            (type_name(), prop::collection::vec((key(), inner), 0..4)).prop_map(|(t, mut m)| {
                m.insert(0, ("type".to_owned(), Doc::Scalar(t)));
                Doc::Map(m)
            }),
        ]
    })
}

/// Writes `d` as block YAML (maps and sequences) or flow YAML, with quoting for scalars that
/// would otherwise break the structure.
fn render(d: &Doc, indent: usize, flow: bool, out: &mut String) {
    let quote = |s: &str| {
        if s.is_empty()
            || s.contains(|c: char| ":#{}[],&*!|>'\"%@`\n".contains(c) || c.is_control())
            || s.starts_with([' ', '-', '?'])
            || s.ends_with(' ')
        {
            if s.starts_with(['\'', '"']) && s.len() > 1 && s.ends_with(&s[..1]) {
                s.to_owned()
            } else {
                format!("{:?}", s)
            }
        } else {
            s.to_owned()
        }
    };
    let pad = " ".repeat(indent);
    match d {
        Doc::Scalar(s) => out.push_str(&quote(s)),
        Doc::Seq(items) if flow || items.is_empty() => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render(x, indent, true, out);
            }
            out.push(']');
        }
        Doc::Map(entries) if flow || entries.is_empty() => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push_str(": ");
                render(v, indent, true, out);
            }
            out.push('}');
        }
        Doc::Seq(items) => {
            for x in items {
                out.push('\n');
                out.push_str(&pad);
                out.push_str("- ");
                render(x, indent + 2, matches!(x, Doc::Map(_) | Doc::Seq(_)), out);
            }
        }
        Doc::Map(entries) => {
            for (k, v) in entries {
                out.push('\n');
                out.push_str(&pad);
                out.push_str(k);
                out.push(':');
                if !matches!(v, Doc::Map(e) if !e.is_empty())
                    && !matches!(v, Doc::Seq(e) if !e.is_empty())
                {
                    out.push(' ');
                }
                render(v, indent + 2, false, out);
            }
        }
    }
}

/// Byte-level damage applied to a rendered file: what an editor slip or a hostile file adds.
#[derive(Debug, Clone)]
enum Mutation {
    Insert(usize, &'static str),
    Delete(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let piece = prop::sample::select(vec![
        ":",
        " ",
        "\n",
        "\t",
        "- ",
        "&a ",
        "*a",
        "&b [*a, *a, *a]",
        "<<: *a\n",
        "${",
        "}",
        "${X:-${",
        "'",
        "\"",
        "{",
        "[",
        "---\n",
        "!!binary ",
        "? ",
        "#",
        "\u{feff}",
        "|\n  ",
    ]);
    prop_oneof![
        (any::<usize>(), piece).prop_map(|(at, s)| Mutation::Insert(at, s)),
        (any::<usize>(), 1usize..8).prop_map(|(at, n)| Mutation::Delete(at, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(text: &mut String, m: &Mutation) {
    let at = |text: &String, i: usize| {
        let mut i = i % (text.len() + 1);
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    match m {
        Mutation::Insert(i, s) => {
            let i = at(text, *i);
            text.insert_str(i, s);
        }
        Mutation::Delete(i, n) => {
            let i = at(text, *i);
            let mut j = (i + n).min(text.len());
            while !text.is_char_boundary(j) {
                j += 1;
            }
            text.replace_range(i..j, "");
        }
        Mutation::Truncate(i) => {
            let i = at(text, *i);
            text.truncate(i);
        }
    }
}

fn env(name: &str) -> Option<String> {
    match name {
        "A" => Some("1".into()),
        "B" => Some(String::new()),
        "C" => Some("x: y\n- z".into()),
        "D" => Some("${A}".into()),
        _ => None,
    }
}

/// Loads `text` the way `trawl validate` does (parse, interpolate, build every component) and
/// checks what a user relies on: no panic, and every error names a line and column inside the
/// file and says what is wrong.
fn load_and_check(text: &str, data_dir: &std::path::Path) -> Result<(), TestCaseError> {
    let lines = text.lines().count().max(1) + 1;
    let check = |errs: &config::ConfigErrors| -> Result<(), TestCaseError> {
        prop_assert!(!errs.0.is_empty(), "an Err without any error");
        for e in &errs.0 {
            prop_assert!(
                e.mark.line >= 1 && e.mark.line <= lines && e.mark.col >= 1,
                "error outside the file ({} lines): {e}",
                lines
            );
            prop_assert!(!e.message.is_empty(), "an error without a message: {e}");
        }
        Ok(())
    };
    match config::parse_partial("fuzz.yaml", text, &env) {
        Err(errs) => check(&errs)?,
        Ok((mut cfg, errs)) => {
            if !errs.is_empty() {
                check(&errs)?;
            }
            cfg.global.data_dir = data_dir.to_path_buf();
            if let Err(errs) = trawl::pipeline::Pipeline::build(cfg, Vec::new()) {
                check(&errs)?;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(fuzz_config())]

    #[test]
    fn pipeline_files_from_the_schema_load_or_fail_at_a_position(
        d in doc(),
        muts in prop::collection::vec(mutation(), 0..3),
    ) {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut text = String::new();
        // Always a pipeline-shaped top level; `d` fills the component sections.
        text.push_str("inputs:\n  in:\n    type: stdin\n");
        if let Doc::Map(entries) = &d {
            for (k, v) in entries {
                text.push_str(k);
                text.push(':');
                let mut body = String::new();
                render(v, 2, false, &mut body);
                if !body.starts_with('\n') {
                    text.push(' ');
                }
                text.push_str(&body);
                text.push('\n');
            }
        } else {
            text.push_str("outputs:\n  out: ");
            render(&d, 4, true, &mut text);
            text.push('\n');
        }
        for m in &muts {
            apply(&mut text, m);
        }
        load_and_check(&text, dir.path())?;
    }

    #[test]
    fn random_text_never_panics_the_loader(text in "\\PC{0,200}") {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        load_and_check(&text, dir.path())?;
    }

    #[test]
    fn alias_bombs_of_any_shape_are_refused_in_bounded_time(
        width in 2usize..12,
        levels in 2usize..12,
    ) {
        let mut text = format!("{}: &{} [x, x]\n", anchor(0), anchor(0));
        for l in 1..levels {
            let refs = vec![format!("*{}", anchor(l - 1)); width].join(", ");
            text.push_str(&format!("{}: &{} [{refs}]\n", anchor(l), anchor(l)));
        }
        let started = Instant::now();
        let res = config::parse_str("bomb.yaml", &text, &env);
        // The expansion is width^levels nodes: past the cap it must be refused, not built.
        let expanded = (width as f64).powi(levels as i32 - 1);
        if expanded > 200_000.0 {
            let errs = res.err().ok_or_else(|| TestCaseError::fail("bomb accepted"))?;
            prop_assert!(errs.to_string().contains("alias bomb"), "{errs}");
        }
        // Not a timing assertion on the code's speed: a guard that the property test itself
        // cannot hang CI if the cap stops working.
        prop_assert!(started.elapsed().as_secs() < 60);
    }

    #[test]
    fn interpolation_of_nested_expressions_never_panics(s in scalar(), junk in "[${}:?\\-A-D]{0,24}") {
        for text in [s.clone(), junk.clone(), format!("{s}{junk}")] {
            let mut warnings = Vec::new();
            let _ = config::interpolate::expand(&text, &env, config::Mark::default(), &mut warnings);
        }
        // Oracle: text without `$` is left exactly as written; `$$` is one literal dollar.
        let plain = s.replace('$', "");
        let mut w = Vec::new();
        prop_assert_eq!(
            config::interpolate::expand(&plain, &env, config::Mark::default(), &mut w).ok(),
            Some(plain.clone())
        );
        prop_assert_eq!(
            config::interpolate::expand(&format!("{plain}$${plain}"), &env, config::Mark::default(), &mut w).ok(),
            Some(format!("{plain}${plain}"))
        );
    }
}

fn anchor(level: usize) -> String {
    format!("l{level}")
}

#[test]
fn deeply_nested_flow_collections_are_refused_not_a_crash() {
    // 100k nested `[`: each layer is a node; recursion over the tree (interpolation,
    // deserialisation, drop) must not overflow the stack.
    for open in ["[", "{a: "] {
        let depth = 100_000;
        let text = format!("inputs: {}", open.repeat(depth));
        let dir = tempfile::tempdir().unwrap();
        let _ = load_and_check(&text, dir.path());
        let close = if open == "[" { "]" } else { "}" };
        let text = format!("inputs: {}x{}", open.repeat(depth), close.repeat(depth));
        // The YAML parser's recursion limit refuses it, at a position.
        match config::parse_str("deep.yaml", &text, &env) {
            Ok(_) => panic!("{depth} levels of nesting accepted"),
            Err(errs) => assert!(errs.to_string().contains("deep.yaml:1:"), "{errs}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Line framing (socket, stdin, files, tee).

/// Lines as a sender writes them: lengths around the cap, `\n` or `\r\n` endings, bytes that
/// are not UTF-8, embedded `\r`.
fn lines_in() -> impl Strategy<Value = (Vec<(Vec<u8>, bool)>, usize)> {
    (1usize..24).prop_flat_map(|max| {
        let line = prop::collection::vec(
            prop_oneof![8 => b'a'..=b'z', 1 => Just(b'\r'), 1 => any::<u8>().prop_filter("no newline", |b| *b != b'\n')],
            0..(max * 2 + 3),
        );
        (prop::collection::vec((line, any::<bool>()), 0..12), Just(max))
    })
}

/// What the framing must produce, from the definition: a line is the bytes before `\n` with
/// one trailing `\r` removed; longer than the cap, it is cut to the cap and flagged.
/// Lines as (bytes, truncated, start offset).
type Framed = Vec<(Vec<u8>, bool, u64)>;

fn expected(lines: &[(Vec<u8>, bool)], max: usize) -> Framed {
    let mut out = Vec::new();
    let mut at = 0u64;
    for (l, crlf) in lines {
        let mut content = l.clone();
        if *crlf {
            content.push(b'\r');
        }
        let start = at;
        at += content.len() as u64 + 1;
        if content.last() == Some(&b'\r') {
            content.pop();
        }
        let truncated = content.len() > max;
        content.truncate(max);
        out.push((content, truncated, start));
    }
    out
}

fn frame(bytes: &[u8], cuts: &[usize], max: usize) -> (Framed, Vec<LineInfo>, usize) {
    let mut s = LineSplitter::new(max, 0);
    let mut out = Vec::new();
    let mut infos = Vec::new();
    let mut most_pending = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points.dedup();
    for w in points.windows(2) {
        s.push(&bytes[w[0]..w[1]], &mut |l, i| {
            out.push((l.to_vec(), i.truncated, i.start));
            infos.push(i);
        });
        most_pending = most_pending.max(s.pending());
    }
    s.finish(&mut |l, i| {
        out.push((l.to_vec(), i.truncated, i.start));
        infos.push(i);
    });
    (out, infos, most_pending)
}

proptest! {
    #![proptest_config(fuzz_config())]

    #[test]
    fn lines_out_equal_lines_in_whatever_the_split_points(
        (lines, max) in lines_in(),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let mut bytes = Vec::new();
        for (l, crlf) in &lines {
            bytes.extend_from_slice(l);
            if *crlf {
                bytes.push(b'\r');
            }
            bytes.push(b'\n');
        }
        let (got, infos, most_pending) = frame(&bytes, &cuts, max);
        prop_assert_eq!(got, expected(&lines, max));
        // Memory stays bounded by the cap (plus a byte that may be the `\r` of `\r\n`).
        prop_assert!(most_pending <= max + 1, "{} bytes held for a cap of {}", most_pending, max);
        // Reading resumes after a line's newline: ends increase and the last is the stream's end.
        for w in infos.windows(2) {
            prop_assert!(w[0].end <= w[1].start, "{:?}", infos);
        }
        // (A line cut before its newline arrived ends where it was cut, see `LineInfo::end`.)
        if let Some(last) = infos.last().filter(|i| !i.truncated) {
            prop_assert_eq!(last.end, bytes.len() as u64);
        }
    }

    #[test]
    fn an_unterminated_last_line_is_kept_whatever_the_split_points(
        (lines, max) in lines_in(),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
        tail in prop::collection::vec(b'a'..=b'z', 1..30),
    ) {
        let mut bytes = Vec::new();
        for (l, crlf) in &lines {
            bytes.extend_from_slice(l);
            if *crlf {
                bytes.push(b'\r');
            }
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(&tail);
        let (got, _, _) = frame(&bytes, &cuts, max);
        let (whole, _, _) = frame(&bytes, &[], max);
        prop_assert_eq!(got, whole);
    }
}

#[test]
fn a_line_of_exactly_the_cap_ending_in_crlf_is_not_truncated_when_split() {
    // Found by `lines_out_equal_lines_in_whatever_the_split_points`: `abcd\r\n` with a cap of 4
    // was flagged truncated when the `\r` or the `\n` came in a later read.
    let want = vec![(b"abcd".to_vec(), false, 0u64), (b"z".to_vec(), false, 6)];
    for cut in 0..=8 {
        let (got, _, _) = frame(b"abcd\r\nz\n", &[cut], 4);
        assert_eq!(got, want, "split at {cut}");
    }
}

// ---------------------------------------------------------------------------------------------
// Container lines: CRI and Docker json-file, partial records joined.

/// Where a file's decoder hands its lines, as the file input has it: each line's event read
/// back as (message, stream, cut).
struct Sink {
    meta: TailMeta,
    batcher: Batcher,
}

impl Sink {
    fn new() -> Sink {
        let key = FileKey { dev: 1, ino: 1 };
        Sink {
            meta: TailMeta::new(key, 1, 0, "/var/log/containers/c.log".into(), None),
            batcher: Batcher::new("f".into(), 1 << 20),
        }
    }

    fn line(&mut self, dec: &mut Decoder, record: &[u8], info: LineInfo) {
        dec.line(record, info, Instant::now(), &self.meta, &mut self.batcher);
    }

    fn flush(&mut self, dec: &mut Decoder) {
        let Sink { meta, batcher } = self;
        dec.flush(Instant::now(), meta, batcher);
    }

    fn events(&mut self) -> Vec<(String, Option<String>, bool)> {
        let mut out = Vec::new();
        while let Some(built) = self.batcher.take_any() {
            for e in built.lines.into_events() {
                let text = |path: &str| e.get(path).and_then(|v| v.as_str()).map(str::to_owned);
                let cut = e.get("log.flags").is_some_and(|f| {
                    f.to_json()
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x == "truncated"))
                });
                out.push((text("message").unwrap_or_default(), text("stream"), cut));
            }
        }
        out
    }
}

fn cri_time() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("2016-10-06T00:17:09.669794202Z".to_owned()),
        Just("2024-02-29T23:59:60Z".to_owned()),
        Just("2024-01-01T00:00:00+01:00".to_owned()),
        "[0-9T:.Z+-]{0,32}",
    ]
}

proptest! {
    #![proptest_config(fuzz_config())]

    #[test]
    fn cri_and_docker_decoders_never_panic_on_damaged_lines(
        time in cri_time(),
        stream in prop::sample::select(vec!["stdout", "stderr", "stdin", "", "stdout "]),
        tag in prop::sample::select(vec!["F", "P", "P:x", "F:", "", "X", "p"]),
        msg in prop::collection::vec(any::<u8>(), 0..40),
        cut in any::<usize>(),
        flip in any::<(usize, u8)>(),
    ) {
        let mut line = format!("{time} {stream} {tag} ").into_bytes();
        line.extend_from_slice(&msg);
        let n = line.len();
        line[flip.0 % n] ^= flip.1;
        for l in [&line[..], &line[..cut % (n + 1)]] {
            let _ = decode_cri(l);
            let _ = decode_docker(l);
            let _ = trawl::inputs::file::container::detect(l);
        }
        let json = serde_json::json!({"log": String::from_utf8_lossy(&msg), "stream": stream, "time": time}).to_string();
        let mut j = json.into_bytes();
        let jn = j.len();
        let _ = decode_docker(&j[..cut % (jn + 1)]);
        j[flip.0 % jn] ^= flip.1;
        let _ = decode_docker(&j);
    }

    #[test]
    fn joining_partial_records_gives_back_the_full_line(
        lines in prop::collection::vec(
            (prop::collection::vec("[ -~]{0,20}", 1..5), prop::sample::select(vec!["stdout", "stderr"])),
            1..8,
        ),
        docker in any::<bool>(),
    ) {
        // Each line is written as P parts and a final F part (or Docker pieces without `\n`
        // and a last piece with it), stdout and stderr interleaved as the runtime writes them.
        let max = 1 << 20;
        let mut dec = Decoder::new(if docker { Format::Docker } else { Format::Cri }, None, max);
        let mut sink = Sink::new();
        let mut at = 0u64;
        for (parts, stream) in &lines {
            for (i, part) in parts.iter().enumerate() {
                let last = i + 1 == parts.len();
                let record = if docker {
                    let log = if last { format!("{part}\n") } else { part.clone() };
                    serde_json::json!({"log": log, "stream": stream, "time": "2024-05-01T10:00:00.5Z"}).to_string()
                } else {
                    format!("2024-05-01T10:00:00.5Z {stream} {} {part}", if last { "F" } else { "P" })
                };
                let info = LineInfo { truncated: false, start: at, end: at + record.len() as u64 + 1 };
                at = info.end;
                sink.line(&mut dec, record.as_bytes(), info);
            }
        }
        sink.flush(&mut dec);
        let out = sink.events();
        // A line with nothing in it is skipped, as a blank line of a plain file is.
        let want: Vec<(String, Option<String>)> = lines
            .iter()
            .map(|(parts, s)| (parts.concat(), Some(s.to_string())))
            .filter(|(text, _)| !text.is_empty())
            .collect();
        let got: Vec<(String, Option<String>)> = out.iter().map(|l| (l.0.clone(), l.1.clone())).collect();
        prop_assert_eq!(got, want);
        prop_assert!(out.iter().all(|l| !l.2));
    }

    #[test]
    fn a_partial_line_never_grows_past_the_cap(
        parts in prop::collection::vec("[a-z]{0,40}", 1..30),
        max in 1usize..64,
    ) {
        let mut dec = Decoder::new(Format::Cri, None, max);
        let mut sink = Sink::new();
        let info = LineInfo { truncated: false, start: 0, end: 1 };
        for p in &parts {
            let record = format!("2024-05-01T10:00:00Z stdout P {p}");
            sink.line(&mut dec, record.as_bytes(), info);
        }
        sink.line(&mut dec, b"2024-05-01T10:00:00Z stdout F end", info);
        let out = sink.events();
        prop_assert_eq!(out.len(), 1);
        let full = format!("{}end", parts.concat());
        prop_assert_eq!(&out[0].0, &full[..full.len().min(max)]);
        prop_assert_eq!(out[0].2, full.len() > max);
    }
}

// ---------------------------------------------------------------------------------------------
// DNS messages: any bytes, and real messages with bytes changed, decode or are refused (never a
// panic, never a hang on compression pointers that loop).

/// A response to `www.example.com A` with a compressed CNAME and A record, as servers send.
fn dns_response() -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
    m.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
    m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6]);
    m.extend_from_slice(b"\x03web\xc0\x10");
    m.extend_from_slice(&[0xc0, 45, 0, 1, 0, 1, 0, 0, 1, 0, 0, 4, 192, 0, 2, 7]);
    m
}

proptest! {
    #![proptest_config(fuzz_config())]

    #[test]
    fn dns_parse_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = trawl::wire::dns::message::parse(&bytes);
    }

    #[test]
    fn dns_parse_takes_damaged_real_messages(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut m = dns_response();
        for (at, b) in flips {
            let i = at % m.len();
            m[i] = b;
        }
        let end = m.len() - cut % 8;
        if let Ok(msg) = trawl::wire::dns::message::parse(&m[..end]) {
            prop_assert!(msg.answers.len() <= trawl::wire::dns::message::MAX_ANSWERS);
            for a in &msg.answers {
                prop_assert!(a.name.len() <= trawl::wire::dns::message::MAX_NAME_TEXT);
            }
        }
    }
}
