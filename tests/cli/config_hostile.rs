//! Hostile and confusing pipeline files through `trawl validate`: each is refused (or read) with
//! a message that names the file, line and column and says what was expected, and none of them
//! makes trawl use memory without bound.

use std::path::Path;
use std::process::{Command, Output};

fn validate(dir: &Path, bytes: &[u8], env: &[(&str, &str)]) -> (i32, String) {
    let p = dir.join("p.yaml");
    std::fs::write(&p, bytes).unwrap();
    let out: Output = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["validate", "-c"])
        .arg(&p)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code().unwrap_or(-1), text)
}

const BASE: &str = "inputs:\n  app: { type: stdin }\noutputs:\n  o: { type: stdout }\n";

#[test]
fn an_alias_bomb_is_refused_at_its_position() {
    let dir = tempfile::tempdir().unwrap();
    // Nine levels of ten aliases each: 10^9 nodes if expanded, under 500 bytes as written.
    let mut bomb = String::from(BASE) + "x0: &x0 [a, a, a, a, a, a, a, a, a, a]\n";
    for i in 1..10 {
        let prev = format!("*x{}", i - 1);
        bomb += &format!("x{i}: &x{i} [{}]\n", [prev.as_str(); 10].join(","));
    }
    let (code, err) = validate(dir.path(), bomb.as_bytes(), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("p.yaml:"), "{err}");
    assert!(err.contains("alias"), "{err}");
}

#[test]
fn a_byte_order_mark_is_not_part_of_the_first_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = [b"\xef\xbb\xbf".as_slice(), BASE.as_bytes()].concat();
    let (code, out) = validate(dir.path(), &text, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("valid (1 inputs"), "{out}");
}

#[test]
fn a_second_document_is_an_error_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{BASE}---\ninputs:\n  other: {{ type: stdin }}\n");
    let (code, err) = validate(dir.path(), text.as_bytes(), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("p.yaml:5:"), "{err}");
    assert!(err.contains("second YAML document"), "{err}");
}

#[test]
fn nested_defaults_are_expanded() {
    let dir = tempfile::tempdir().unwrap();
    let text = "inputs:\n  app: { type: stdin }\noutputs:\n  o: { type: file, path: \"${TRAWL_T_UNSET:-${TRAWL_T_DIR}/out.jsonl}\" }\n";
    let (code, out) = validate(dir.path(), text.as_bytes(), &[("TRAWL_T_DIR", "/tmp")]);
    assert_eq!(code, 0, "{out}");
    // The expanded value is what the file output uses: run it and look for the file.
    let out_dir = dir.path().join("o");
    std::fs::create_dir(&out_dir).unwrap();
    let p = dir.path().join("run.yaml");
    std::fs::write(
        &p,
        format!(
            "data_dir: {}\nhttp: {{ enabled: false }}\n{text}",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["run", "-c"])
        .arg(&p)
        .env("TRAWL_T_DIR", &out_dir)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello\n").unwrap();
    }
    assert!(child.wait().unwrap().success());
    let written = std::fs::read_to_string(out_dir.join("out.jsonl")).unwrap();
    assert!(written.contains("\"hello\""), "{written}");
}

#[test]
fn numbers_out_of_range_are_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{BASE}pipeline: {{ batch_size: -1 }}\n");
    let (code, err) = validate(dir.path(), text.as_bytes(), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("p.yaml:5:")
            && err.contains("expected a whole number (0 or more), found `-1`"),
        "{err}"
    );
    assert!(!err.contains("string"), "{err}");
    // Once wrapped to -1s ("never wait"), now refused.
    let text = format!("{BASE}shutdown_timeout: 9223372036854775807\n");
    let (code, err) = validate(dir.path(), text.as_bytes(), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("p.yaml:5:") && err.contains("not a usable duration"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_utf8_names_the_first_bad_byte() {
    let dir = tempfile::tempdir().unwrap();
    let text = [BASE.as_bytes(), b"tags: [caf\xe9]\n".as_slice()].concat();
    let (code, err) = validate(dir.path(), &text, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("p.yaml:5:11:"), "{err}");
    assert!(err.contains("not UTF-8"), "{err}");
}

/// `-c /dev/zero` (endless) and `-c` a FIFO nobody writes: refused at once, naming the file and
/// without a `:0:0` position, instead of filling memory or waiting forever.
#[test]
fn a_device_or_fifo_named_as_the_pipeline_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.yaml");
    let made = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) on a NUL-terminated path in this test's folder.
    assert_eq!(unsafe { libc::mkfifo(made.as_ptr(), 0o600) }, 0);
    for path in [Path::new("/dev/zero"), fifo.as_path()] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_trawl"))
            .args(["validate", "-c"])
            .arg(path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > std::time::Duration::from_secs(20) {
                let _ = child.kill();
                panic!("validate -c {} still running after 20 s", path.display());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        let want = format!(
            "{}: cannot read the pipeline file: not a regular file",
            path.display()
        );
        assert!(err.contains(&want), "{err}");
    }
}

/// Merge keys, as Kubernetes users write them: shared settings under an `x-` key, merged into
/// each output with `<<`, its own keys winning. The merged pipeline runs as written out in full
/// (`run --once` on stdin); a `<<` of something that is not a mapping is refused at its place.
#[test]
fn merge_keys_share_settings_and_the_components_own_keys_win() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let text = format!(
        "x-file: &file {{type: file, path: {}, format: text}}\ninputs:\n  app: {{type: stdin}}\noutputs:\n  f:\n    <<: *file\n    format: json\n",
        out.display()
    );
    let (code, err) = validate(dir.path(), text.as_bytes(), &[]);
    assert_eq!(code, 0, "{err}");
    let p = dir.path().join("p.yaml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["run", "--once", "-c"])
        .arg(&p)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"merged\n").unwrap();
    }
    assert!(child.wait().unwrap().success());
    let written = std::fs::read_to_string(&out).unwrap();
    let event: serde_json::Value = serde_json::from_str(written.trim()).unwrap();
    assert_eq!(
        event["message"], "merged",
        "format json, not text: {written}"
    );

    let (code, err) = validate(
        dir.path(),
        BASE.replace("o: { type: stdout }", "o: { <<: 3, type: stdout }")
            .as_bytes(),
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("p.yaml:4:8:") && err.contains("`<<` merges a mapping"),
        "{err}"
    );
}

/// Every entry refused: the errors name the entries, without a spurious "no inputs" / "no
/// outputs" at line 1 on top of them. A section with no entry at all still says so.
#[test]
fn refused_entries_are_not_also_reported_as_an_empty_section() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = validate(
        dir.path(),
        b"inputs:\n  app: {typ: stdin}\noutputs:\n  c: {type: stdot}\n",
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("p.yaml:2:8: inputs.app: missing key `type`"),
        "{err}"
    );
    assert!(
        err.contains("p.yaml:4:13: outputs.c.type: unknown type `stdot`"),
        "{err}"
    );
    assert!(err.contains("invalid (2 errors)"), "{err}");
    let (code, err) = validate(
        dir.path(),
        b"inputs: {}\noutputs:\n  c: {type: stdout}\n",
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no inputs"), "{err}");
    // Sections written as lists, the Filebeat way: one error each, at the list.
    let (code, err) = validate(
        dir.path(),
        b"inputs:\n  - type: stdin\noutputs:\n  - type: stdout\n",
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("p.yaml:2:3: inputs: expected a mapping of names to inputs, found a list"),
        "{err}"
    );
    assert!(
        err.contains("p.yaml:4:3: outputs: expected a mapping of names to outputs, found a list"),
        "{err}"
    );
    assert!(err.contains("invalid (2 errors)"), "{err}");
}

/// A component given by an alias that lacks a key was reported at the anchor, once per alias,
/// all at the same place; and an alias inside its own anchor's node silently became null.
#[test]
fn an_alias_is_reported_where_it_stands_and_a_recursive_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = "inputs:\n  a: &in {type: file}\n  b: *in\noutputs:\n  o: {type: stdout}\n";
    let (code, err) = validate(dir.path(), text.as_bytes(), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("p.yaml:2:10: inputs.a: missing field `paths`"),
        "{err}"
    );
    assert!(
        err.contains("p.yaml:3:6: inputs.b: missing field `paths`"),
        "{err}"
    );

    let text = "inputs:\n  a: {type: file, paths: &p [x, *p]}\noutputs:\n  o: {type: stdout}\n";
    let (code, err) = validate(dir.path(), text.as_bytes(), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("p.yaml:2:33:"), "{err}");
    assert!(err.contains("would never end"), "{err}");
}

/// A tag from another tool's loader (`!secret`, `!env`) was ignored: the pipeline ran with the
/// tag's argument as the value itself. YAML's own `!!str` makes a number text.
#[test]
fn tags_of_other_loaders_are_refused_and_core_tags_read() {
    let dir = tempfile::tempdir().unwrap();
    let text = "inputs:\n  app: {type: stdin}\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [es:9200]\n    password: !secret es_password\n";
    let (code, err) = validate(dir.path(), text.as_bytes(), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("p.yaml:7:"), "{err}");
    assert!(err.contains("`!secret` is not read by trawl"), "{err}");

    let p = dir.path().join("str.yaml");
    std::fs::write(
        &p,
        "inputs:\n  app: {type: stdin}\nprocessors:\n  - {type: add_fields, fields: {build: !!str 0123, n: 0123}}\noutputs:\n  o: {type: stdout}\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["run", "-c"])
        .arg(&p)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"hi\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(line.contains(r#""build":"0123""#), "{line}");
    assert!(line.contains(r#""n":123"#), "{line}");
}

/// The YAML parser takes a NUL for the end of the file: a stray NUL (or a file saved as
/// UTF-16) made everything after it vanish, and the error said "no outputs".
#[test]
fn a_control_character_is_refused_where_it_stands_not_taken_for_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let text = b"inputs:\n  app: {type: stdin}\n\0\noutputs:\n  o: {type: stdout}\n";
    let (code, err) = validate(dir.path(), text, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("p.yaml:3:1:"), "{err}");
    assert!(err.contains("U+0000"), "{err}");
    assert!(!err.contains("no outputs"), "{err}");
}
