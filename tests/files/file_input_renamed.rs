//! Renaming a file input in the pipeline file. Its offsets are kept under its name, so the
//! renamed input starts without them and reads its files again: `trawl validate` and the start
//! must say so, naming the old registry, and `take_over: <former name>` must resume the files
//! at their offsets.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;
use support::process::{
    append, delivered_lines, free_port, numbered_lines, reloads, wait_until, write_file, Trawl,
};

fn config(root: &Path, input: &str, extra: &str) -> PathBuf {
    config_at(root, input, extra, "127.0.0.1:0")
}

fn config_at(root: &Path, input: &str, extra: &str, addr: &str) -> PathBuf {
    write_file(
        root,
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  {input}:\n    type: file\n    paths: [\"{logs}/*.log\"]\n{extra}outputs:\n  out:\n    type: file\n    path: {out}\n",
            data = root.join("data").display(),
            logs = root.join("logs").display(),
            out = root.join("events.jsonl").display(),
        ),
    )
}

/// An app's log, `root/logs/app.log`, and where the pipeline delivers, `root/events.jsonl`.
fn app_log(root: &Path) -> (PathBuf, PathBuf) {
    let logs = root.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    (logs.join("app.log"), root.join("events.jsonl"))
}

/// `trawl validate -c root/pipeline.yaml`.
fn validate(root: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["validate", "-c"])
        .arg(root.join("pipeline.yaml"))
        .output()
        .unwrap()
}

/// `trawl validate`'s warnings for the pipeline file as it is.
fn validate_warnings(root: &Path) -> Vec<String> {
    let out = validate(root);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .map(str::to_owned)
        .collect()
}

/// Runs trawl until `want` lines of `what` are delivered, then stops it (SIGTERM); its log.
fn run_until(root: &Path, what: &str, want: usize) -> String {
    let log = root.join(format!("trawl-{what}.log"));
    let mut trawl = Trawl::start(&root.join("pipeline.yaml"), Some(&log));
    let out = root.join("events.jsonl");
    wait_until(
        Duration::from_secs(60),
        &format!("{want} {what} lines"),
        || delivered_lines(&out, what) >= want,
    );
    // A moment for a line read twice to show.
    std::thread::sleep(Duration::from_millis(500));
    support::process::sigterm(&trawl);
    assert!(trawl.wait(Duration::from_secs(60)).success());
    std::fs::read_to_string(&log).unwrap_or_default()
}

fn warned(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            l.contains("WARN") && l.contains("registry of a file input the pipeline no longer has")
        })
        .collect()
}

#[test]
fn a_renamed_file_input_is_said_and_take_over_resumes_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (app, out) = app_log(root);
    append(&app, &numbered_lines("one", 10));
    config(root, "logs", "");
    let first = run_until(root, "one", 10);
    assert!(
        warned(&first).is_empty(),
        "first start: nothing to say\n{first}"
    );

    // The same name again: its offsets are found, nothing read twice, nothing said.
    append(&app, &numbered_lines("two", 10));
    assert_eq!(validate_warnings(root), Vec::<String>::new());
    let again = run_until(root, "two", 10);
    assert!(
        warned(&again).is_empty(),
        "same name: nothing to say\n{again}"
    );
    assert_eq!(delivered_lines(&out, "one"), 10);

    // Renamed: `validate` says it before the start, and the start says it again.
    config(root, "app", "");
    let said = validate_warnings(root);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains("`app`")
            && said[0].contains("file-logs.json (1 files")
            && said[0].contains("take_over"),
        "names the input, the old registry and the remedy: {}",
        said[0]
    );
    append(&app, &numbered_lines("three", 10));
    let renamed = run_until(root, "three", 10);
    let said = warned(&renamed);
    assert_eq!(said.len(), 1, "said once\n{renamed}");
    assert!(
        said[0].contains("input=app") && said[0].contains("file-logs.json (1 files"),
        "names the input and the old registry: {}",
        said[0]
    );
    // What it warns of: the files were read again from their start.
    assert_eq!(
        delivered_lines(&out, "one"),
        20,
        "read again under the new name"
    );

    // Renamed again, with `take_over`: resumed where `app` left them, nothing said.
    config(root, "web", "    take_over: app\n");
    assert_eq!(validate_warnings(root), Vec::<String>::new());
    append(&app, &numbered_lines("four", 10));
    let taken = run_until(root, "four", 10);
    assert!(
        warned(&taken).is_empty(),
        "take_over: nothing to warn of\n{taken}"
    );
    assert!(taken.contains("took over the registry"), "{taken}");
    assert_eq!(
        (
            delivered_lines(&out, "one"),
            delivered_lines(&out, "two"),
            delivered_lines(&out, "three"),
            delivered_lines(&out, "four")
        ),
        (20, 20, 10, 10),
        "with take_over, only the new lines are read"
    );
}

/// `take_over` naming the input itself, or nothing, is refused at its key.
#[test]
fn take_over_of_the_input_itself_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for bad in ["web", "\"\""] {
        config(root, "web", &format!("    take_over: {bad}\n"));
        let out = validate(root);
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            text.contains("pipeline.yaml:7:") && text.contains("inputs.web.take_over"),
            "names the file, line and key: {text}"
        );
    }
}

/// The same rename by a reload (SIGHUP) while the app writes: the old input stops once its
/// lines are acknowledged, and the new one takes its registry over: every line once.
#[test]
fn a_file_input_renamed_by_a_reload_with_take_over_reads_each_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (app, out) = app_log(root);
    let addr = format!("127.0.0.1:{}", free_port());
    append(&app, &numbered_lines("one", 100));
    let cfg = config_at(root, "logs", "", &addr);
    let log = root.join("trawl.log");
    let mut trawl = Trawl::start(&cfg, Some(&log));
    wait_until(Duration::from_secs(60), "the first 100 lines", || {
        delivered_lines(&out, "one") == 100
    });
    let writer = {
        let app = app.clone();
        std::thread::spawn(move || {
            for i in 0..200 {
                append(&app, &format!("two line {i:04}\n"));
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    config_at(root, "app", "    take_over: logs\n", &addr);
    // SAFETY: kill(2) on the pid of a child we own and have not reaped.
    unsafe { libc::kill(trawl.child.id() as i32, libc::SIGHUP) };
    wait_until(Duration::from_secs(60), "the reload", || {
        reloads(&addr, "success") == 1
    });
    writer.join().unwrap();
    wait_until(
        Duration::from_secs(60),
        "the 200 lines written across it",
        || delivered_lines(&out, "two") >= 200,
    );
    std::thread::sleep(Duration::from_millis(500));
    support::process::sigterm(&trawl);
    assert!(trawl.wait(Duration::from_secs(60)).success());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("took over the registry"), "{text}");
    assert_eq!(
        (delivered_lines(&out, "one"), delivered_lines(&out, "two")),
        (100, 200),
        "each line once across the renaming reload\n{text}"
    );
}
