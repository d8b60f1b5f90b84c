//! `trawl validate` says what `run` will do: what would fail or misbehave at run time is
//! rejected up front with file, line, column and key, and `run` refuses it the same way.

mod support {
    pub mod process;
}

use std::process::Command;
use std::time::Duration;
use support::process::{write_file, Trawl};

const TRAWL: &str = env!("CARGO_BIN_EXE_trawl");

/// `a.dead_letter: b` with `b.dead_letter: a`: a letter rejected again would bounce forever
/// (growing at each turn) and shutdown could never drain it. Chains that end are fine.
#[test]
fn a_dead_letter_cycle_is_rejected_where_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = |n: &str| dir.path().join(n).display().to_string();
    let cycle = write_file(
        dir.path(),
        "cycle.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ enabled: false }}\ninputs:\n  app: {{ type: stdin }}\noutputs:\n  main: {{ type: file, path: {m}, dead_letter: a }}\n  a: {{ type: file, path: {a}, dead_letter: b }}\n  b: {{ type: file, path: {b}, dead_letter: c }}\n  c: {{ type: file, path: {c}, dead_letter: a }}\n",
            data = out("data"),
            m = out("m.log"),
            a = out("a.log"),
            b = out("b.log"),
            c = out("c.log"),
        ),
    );
    let v = Command::new(TRAWL)
        .args(["validate", "-c"])
        .arg(&cycle)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&v.stderr);
    assert_eq!(v.status.code(), Some(1), "{err}");
    let f = cycle.display().to_string();
    // Reported once, at the first member's `dead_letter:` value (line 7: output `a`).
    let text = std::fs::read_to_string(&cycle).unwrap();
    let line7 = text.lines().nth(6).unwrap();
    let col = line7.find("dead_letter: ").unwrap() + "dead_letter: ".len() + 1;
    assert!(
        err.contains(&format!(
            "{f}:7:{col}: outputs.a.dead_letter: dead-letter cycle a → b → c → a"
        )),
        "{err}"
    );
    assert_eq!(err.matches("dead-letter cycle").count(), 1, "{err}");
    assert!(err.contains("invalid (1 error)"), "{err}");

    // `run` refuses it too, at once, instead of hanging at shutdown.
    let mut t = Trawl::start(&cycle, Some(&dir.path().join("run.log")));
    let status = t.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1));
    let log = std::fs::read_to_string(dir.path().join("run.log")).unwrap();
    assert!(log.contains("dead-letter cycle a → b → c → a"), "{log}");

    // The same outputs as a chain that ends: valid.
    let chain = write_file(
        dir.path(),
        "chain.yaml",
        &std::fs::read_to_string(&cycle)
            .unwrap()
            .replace(", dead_letter: a }\n", " }\n"),
    );
    let v = Command::new(TRAWL)
        .args(["validate", "-c"])
        .arg(&chain)
        .output()
        .unwrap();
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );
}

#[test]
fn an_output_that_is_its_own_dead_letter_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_file(
        dir.path(),
        "self.yaml",
        "inputs:\n  app: { type: stdin }\noutputs:\n  a: { type: stdout, dead_letter: a }\n",
    );
    let v = Command::new(TRAWL)
        .args(["validate", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&v.stderr);
    assert_eq!(v.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{}:4:35: outputs.a.dead_letter: `a` is not another output",
            cfg.display()
        )),
        "{err}"
    );
}
