//! Where the pipeline comes from: `-c` repeated, `-c` naming a `conf.d` folder, `TRAWL_CONFIG`,
//! the default, and `TRAWL_LOG_LEVEL`; errors across several files still name file, line, key.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const TRAWL: &str = env!("CARGO_BIN_EXE_trawl");

/// Runs trawl with `env` (and without the caller's TRAWL_* variables) to its end, within a
/// generous deadline; `stdin` is written first.
fn trawl(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut cmd = Command::new(TRAWL);
    cmd.args(args)
        .env_remove("TRAWL_CONFIG")
        .env_remove("TRAWL_LOG_LEVEL")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        let _ = input.write_all(stdin.as_bytes());
    }
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "trawl {args:?} did not end within 60 s; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A folder split the way packages and ConfigMaps do it: global settings, inputs and outputs in
/// files of their own, merged in name order; other files in the folder are not read.
fn conf_d(dir: &Path) -> String {
    let d = dir.display();
    write(
        dir,
        "conf.d/00-global.yaml",
        &format!("data_dir: {d}/data\nhttp: {{ enabled: false }}\n"),
    );
    write(
        dir,
        "conf.d/10-inputs.yml",
        "inputs:\n  app: { type: stdin }\nprocessors:\n  - { type: add_tags, tags: [from-conf-d] }\n",
    );
    write(
        dir,
        "conf.d/20-outputs.yaml",
        &format!("outputs:\n  out: {{ type: file, path: {d}/out.jsonl }}\n"),
    );
    write(dir, "conf.d/README.md", "not: [a pipeline\n");
    write(dir, "conf.d/old.yaml.bak", "not: [a pipeline\n");
    dir.join("conf.d").display().to_string()
}

fn delivered(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("out.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_folder_is_merged_and_runs_from_c_and_from_trawl_config() {
    let dir = tempfile::tempdir().unwrap();
    let folder = conf_d(dir.path());

    let v = trawl(&["validate", "-c", &folder], &[], "");
    assert_eq!(v.status.code(), Some(0), "{}", stderr(&v));
    let said = String::from_utf8_lossy(&v.stdout);
    assert!(
        said.contains("valid (1 inputs, 1 processors, 1 outputs)"),
        "{said}"
    );

    let r = trawl(&["run", "-c", &folder], &[], "one\n");
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let r = trawl(&["run"], &[("TRAWL_CONFIG", &folder)], "two\n");
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let events = delivered(dir.path());
    let messages: Vec<&str> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["one", "two"]);
    assert!(events.iter().all(|e| e["tags"]
        .as_array()
        .unwrap()
        .contains(&"from-conf-d".into())));
}

#[test]
fn repeated_c_merges_files_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let a = write(
        dir.path(),
        "a.yaml",
        &format!("data_dir: {d}/data\nhttp: {{ enabled: false }}\ninputs:\n  app: {{ type: stdin }}\nprocessors:\n  - {{ type: add_tags, tags: [first] }}\n"),
    );
    let b = write(
        dir.path(),
        "b.yaml",
        &format!("processors:\n  - {{ type: add_tags, tags: [second] }}\noutputs:\n  out: {{ type: file, path: {d}/out.jsonl }}\n"),
    );
    let r = trawl(&["run", "-c", &a, "-c", &b], &[], "hello\n");
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let events = delivered(dir.path());
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["tags"], serde_json::json!(["first", "second"]));
    // TRAWL_CONFIG takes the same list, separated by `:`.
    let list = format!("{a}:{b}");
    let v = trawl(&["validate"], &[("TRAWL_CONFIG", &list)], "");
    assert_eq!(v.status.code(), Some(0), "{}", stderr(&v));
}

/// The same name in two files is one component defined twice: both places are named. Errors in
/// any of the files keep their own file, line, column and key.
#[test]
fn names_are_unique_across_files_and_errors_name_their_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let a = write(
        dir.path(),
        "conf.d/a.yaml",
        &format!("data_dir: {d}/data\ninputs:\n  app: {{ type: stdin }}\noutputs:\n  out: {{ type: file, path: {d}/a.jsonl }}\n"),
    );
    let b = write(
        dir.path(),
        "conf.d/b.yaml",
        &format!("data_dir: {d}/other\ninputs:\n  web: {{ type: stdin }}\n  app: {{ type: stdin }}\noutputs:\n  out: {{ type: file, path: {d}/b.jsonl }}\n  more: {{ type: file, paht: x }}\n"),
    );
    let folder = dir.path().join("conf.d").display().to_string();
    for args in [
        vec!["validate", "-c", &folder],
        vec!["run", "-c", &a, "-c", &b],
    ] {
        let v = trawl(&args, &[], "");
        let err = stderr(&v);
        assert_eq!(v.status.code(), Some(1), "{args:?}: {err}");
        for expected in [
            format!("{b}:4:8: inputs.app: input `app` is also defined in {a}:3:8"),
            format!("{b}:6:8: outputs.out: output `out` is also defined in {a}:5:8"),
            format!("{b}:1:1: data_dir: `data_dir` is also set in {a}:1:1"),
        ] {
            assert!(
                err.contains(&expected),
                "{args:?}: expected `{expected}` in\n{err}"
            );
        }
        // `validate` goes on to build the components, as for one file.
        if args[0] == "validate" {
            let expected = format!("{b}:7:23: outputs.more.paht: unknown field `paht`");
            assert!(err.contains(&expected), "expected `{expected}` in\n{err}");
        }
    }
}

#[test]
fn an_empty_folder_or_a_missing_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let v = trawl(&["validate", "-c", empty.to_str().unwrap()], &[], "");
    assert_eq!(v.status.code(), Some(1));
    assert!(
        stderr(&v).contains("no pipeline file in this folder"),
        "{}",
        stderr(&v)
    );
    let missing = dir.path().join("missing.yaml");
    let v = trawl(&["run"], &[("TRAWL_CONFIG", missing.to_str().unwrap())], "");
    assert_eq!(v.status.code(), Some(1));
    assert!(
        stderr(&v).contains(&format!("{}:", missing.display())),
        "{}",
        stderr(&v)
    );
}

/// Without -c or TRAWL_CONFIG: /etc/trawl/trawl.yaml when the machine has one, else the embedded
/// pipeline.
#[test]
fn without_c_the_system_file_or_the_embedded_pipeline() {
    let v = trawl(&["validate"], &[], "");
    let said = String::from_utf8_lossy(&v.stdout).into_owned() + &stderr(&v);
    if Path::new("/etc/trawl/trawl.yaml").exists() {
        assert!(said.contains("/etc/trawl/trawl.yaml"), "{said}");
    } else {
        assert_eq!(v.status.code(), Some(0), "{said}");
        assert!(said.contains("<default pipeline>: valid"), "{said}");
    }
}

#[test]
fn trawl_log_level_sets_the_level_and_the_flag_wins() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    write(dir.path(), "logs/a.log", "a line\n");
    let cfg = write(
        dir.path(),
        "p.yaml",
        &format!("data_dir: {d}/data\nhttp: {{ enabled: false }}\ninputs:\n  logs: {{ type: file, paths: [\"{d}/logs/*.log\"] }}\noutputs:\n  out: {{ type: file, path: {d}/out.jsonl }}\n"),
    );
    let args = ["run", "--once", "-c", cfg.as_str()];
    // The file input says at `info` that it starts and at `debug` which file it follows.
    let info = stderr(&trawl(&args, &[], ""));
    assert!(info.contains("INFO") && !info.contains("DEBUG"), "{info}");
    let debug = stderr(&trawl(&args, &[("TRAWL_LOG_LEVEL", "debug")], ""));
    assert!(debug.contains("DEBUG"), "{debug}");
    let error = stderr(&trawl(&args, &[("TRAWL_LOG_LEVEL", "error")], ""));
    assert!(
        !error.contains("INFO") && !error.contains("DEBUG"),
        "{error}"
    );
    let flag = stderr(&trawl(
        &["--log-level", "error", "run", "--once", "-c", &cfg],
        &[("TRAWL_LOG_LEVEL", "debug")],
        "",
    ));
    assert!(!flag.contains("INFO") && !flag.contains("DEBUG"), "{flag}");
    let bad = trawl(&args, &[("TRAWL_LOG_LEVEL", "[oops")], "");
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("invalid --log-level"),
        "{}",
        stderr(&bad)
    );
}

/// `/etc/trawl/trawl.yaml` for real, without touching the machine's /etc: trawl runs in a mount
/// namespace of its own (`unshare -m`, root only) whose /etc is a copy holding that file. Without
/// `-c` it is the pipeline (run and validate, errors naming it); `TRAWL_CONFIG` and `-c` win.
#[test]
fn the_system_file_is_read_without_c_and_trawl_config_or_c_win() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var_os("CI").is_none(),
            "a mount namespace needs root"
        );
        eprintln!("skipped: a mount namespace of its own needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let system = format!(
        "data_dir: {d}/data\nhttp: {{ enabled: false }}\ninputs:\n  from_etc: {{ type: stdin }}\nprocessors:\n  - {{ type: add_tags, tags: [etc-trawl] }}\noutputs:\n  out: {{ type: file, path: {d}/out.jsonl }}\n"
    );
    let system_file = write(dir.path(), "system.yaml", &system);
    let broken_file = write(
        dir.path(),
        "broken.yaml",
        "inputs:\n  app: { type: stdn }\n",
    );
    let other = write(
        dir.path(),
        "other.yaml",
        &format!("data_dir: {d}/data\nhttp: {{ enabled: false }}\ninputs:\n  other: {{ type: stdin }}\noutputs:\n  out: {{ type: file, path: {d}/out.jsonl }}\n"),
    );
    // In the namespace: a copy of /etc (a tmpfs the namespace alone sees) with the file added.
    let in_namespace = |etc_file: &str, args: &[&str], env: &[(&str, &str)], stdin: &str| {
        let script = format!(
            "set -e; mount -t tmpfs audit-etc {d}/etc; cp -a /etc/. {d}/etc/; mkdir -p {d}/etc/trawl; \
             cp {etc_file} {d}/etc/trawl/trawl.yaml; mount --bind {d}/etc /etc; exec \"$@\""
        );
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        let mut full = vec![
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
            TRAWL,
        ];
        full.extend_from_slice(args);
        let mut cmd = Command::new("unshare");
        cmd.args(&full)
            .env_remove("TRAWL_CONFIG")
            .env_remove("TRAWL_LOG_LEVEL")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("unshare (util-linux)");
        {
            use std::io::Write;
            let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        }
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("trawl {args:?} in its namespace did not end within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    };

    let v = in_namespace(&system_file, &["validate"], &[], "");
    let said = String::from_utf8_lossy(&v.stdout).into_owned() + &stderr(&v);
    assert_eq!(v.status.code(), Some(0), "{said}");
    assert!(
        said.contains("/etc/trawl/trawl.yaml: valid (1 inputs, 1 processors, 1 outputs)"),
        "{said}"
    );
    let run = in_namespace(&system_file, &["run"], &[], "one\ntwo\n");
    assert!(run.status.success(), "{}", stderr(&run));
    let got = delivered(dir.path());
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got
        .iter()
        .all(|e| e["tags"] == serde_json::json!(["etc-trawl"])));
    std::fs::remove_file(dir.path().join("out.jsonl")).unwrap();

    // A broken system file is an error naming it, not a silent fall-back to the embedded one.
    let v = in_namespace(&broken_file, &["validate"], &[], "");
    assert_eq!(v.status.code(), Some(1), "{}", stderr(&v));
    assert!(
        stderr(&v).contains("/etc/trawl/trawl.yaml:2:"),
        "{}",
        stderr(&v)
    );

    // TRAWL_CONFIG, then -c, are read instead of it.
    for (args, env) in [
        (vec!["run"], vec![("TRAWL_CONFIG", other.as_str())]),
        (vec!["run", "-c", other.as_str()], vec![]),
    ] {
        let run = in_namespace(&broken_file, &args, &env, "three\n");
        assert!(run.status.success(), "{args:?}: {}", stderr(&run));
        let got = delivered(dir.path());
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].get("tags").is_none(), "{}", got[0]);
        std::fs::remove_file(dir.path().join("out.jsonl")).unwrap();
    }
}
