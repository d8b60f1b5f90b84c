//! Processors on several threads (`pipeline.workers`), end to end with the real binary: two
//! files are written while trawl, parsing them with a regex on four worker threads, is killed
//! with SIGKILL and restarted; afterwards every line is in the output file, and each file's
//! lines come out in file order (a restart may only go back to re-send, never skip ahead).

use crate::support;

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};
use support::process::{wait_until, Trawl};

const PER_FILE: u64 = 60_000;

/// Appends `PER_FILE` numbered lines to each of `paths`, in chunks, over about `seconds`.
fn write_lines(paths: &[std::path::PathBuf], seconds: u64) -> std::thread::JoinHandle<()> {
    let paths = paths.to_vec();
    std::thread::spawn(move || {
        let mut files: Vec<_> = paths
            .iter()
            .map(|p| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .expect("opening a test log for append")
            })
            .collect();
        let chunks = seconds * 10;
        let per_chunk = PER_FILE.div_ceil(chunks);
        let start = Instant::now();
        let mut i = 0;
        for c in 0..chunks {
            let end = ((c + 1) * per_chunk).min(PER_FILE);
            for (f, name) in files.iter_mut().zip(["a", "b"]) {
                let mut buf = String::new();
                for n in i..end {
                    buf.push_str(&format!(
                        "{name} {n:07} GET /api/items/{n} status=200 took={}ms\n",
                        n % 997
                    ));
                }
                f.write_all(buf.as_bytes())
                    .expect("appending to a test log");
            }
            i = end;
            let due = Duration::from_millis(100 * (c + 1));
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    })
}

/// Names of the threads of a running process.
fn thread_names(pid: u32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|s| s.trim().to_owned())
        .collect()
}

/// (file, line number) of every output record, in output order. A line cut by a SIGKILL in
/// the middle of the output's write is left out (and counted by `cut_lines`).
fn parsed(out: &Path) -> Vec<(String, u64)> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            let src = v["src"]
                .as_str()
                .unwrap_or_else(|| panic!("no `src` in {v}"));
            let n = v["n"]
                .as_u64()
                .unwrap_or_else(|| panic!("`n` not an int in {v}"));
            (src.to_owned(), n)
        })
        .collect()
}

fn cut_lines(out: &Path) -> usize {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
        .count()
}

#[test]
fn parsing_on_four_threads_keeps_every_line_and_file_order_through_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = [dir.path().join("a.log"), dir.path().join("b.log")];
    let out = dir.path().join("out.jsonl");
    let cfg = dir.path().join("trawl.yaml");
    std::fs::write(
        &cfg,
        format!(
            r#"data_dir: {data}
http: {{ enabled: false }}
pipeline: {{ workers: 4, batch_size: 256 }}
inputs:
  logs:
    type: file
    paths: ["{a}", "{b}"]
    poll_interval: 50ms
    registry_flush: 200ms
processors:
  - type: regex
    patterns: ['^(?<src>[ab]) (?<n:int>\d+) (?<verb>[A-Z]+) (?<path>\S+) status=(?<status:int>\d+) took=(?<took:int>\d+)ms$']
outputs:
  out: {{ type: file, path: "{out}" }}
"#,
            data = dir.path().join("data").display(),
            a = logs[0].display(),
            b = logs[1].display(),
            out = out.display(),
        ),
    )
    .expect("writing the pipeline file");
    let trawl_log = dir.path().join("trawl.log");

    let writer = write_lines(&logs, 6);
    let mut kills = 0;
    let mut saw_workers = false;
    let mut pause = 700u64;
    while !writer.is_finished() || kills < 3 {
        let mut t = Trawl::start(&cfg, Some(&trawl_log));
        std::thread::sleep(Duration::from_millis(pause));
        let names = thread_names(t.child.id());
        saw_workers |= names
            .iter()
            .filter(|n| n.starts_with("trawl-proc-"))
            .count()
            == 4;
        t.kill9();
        kills += 1;
        pause = 500 + (pause * 7919 + 13) % 900;
    }
    writer.join().expect("writer thread");

    let mut t = Trawl::start(&cfg, Some(&trawl_log));
    let want = 2 * PER_FILE as usize;
    wait_until(
        Duration::from_secs(120),
        "every line of both files in the output",
        || parsed(&out).into_iter().collect::<BTreeSet<_>>().len() >= want,
    );
    t.kill9();

    assert!(
        saw_workers,
        "trawl never ran four `trawl-proc-*` threads with `pipeline.workers: 4`"
    );
    let cut = cut_lines(&out);
    assert!(
        cut <= kills,
        "{cut} unreadable output lines for {kills} kills"
    );
    let records = parsed(&out);
    let distinct: BTreeSet<&(String, u64)> = records.iter().collect();
    for name in ["a", "b"] {
        for n in 0..PER_FILE {
            assert!(
                distinct.contains(&(name.to_owned(), n)),
                "line {n} of {name}.log is missing from the output"
            );
        }
    }
    // Per file, each record follows the previous line or goes back (a re-send after a kill):
    // a jump forward would be a batch handed on before an earlier one of the same file.
    let mut last: HashMap<&str, u64> = HashMap::new();
    let mut going_back = 0;
    for (src, n) in &records {
        match last.get(src.as_str()) {
            None => assert_eq!(*n, 0, "{src}.log's first record is line {n}, not line 0"),
            Some(&prev) => {
                assert!(
                    *n <= prev + 1,
                    "{src}.log: line {n} came right after line {prev} (order lost between batches)"
                );
                if *n <= prev {
                    going_back += 1;
                }
            }
        }
        last.insert(src.as_str(), *n);
    }
    // A restart re-sends at most once per file per kill.
    assert!(
        going_back <= 2 * kills,
        "{going_back} returns to earlier lines for {kills} kills"
    );
}

/// `trawl run --once -c cfg` to its end (every file read to its end, delivered and committed);
/// fails the test if it fails or is still running after two minutes.
fn run_once(cfg: &Path, log: &Path) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_trawl"));
    cmd.args(["run", "--once", "-c"]).arg(cfg);
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("opening trawl's log");
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr);
    let mut t = Trawl {
        child: cmd.spawn().expect("starting the trawl binary"),
    };
    let status = t.wait(Duration::from_secs(120));
    assert!(
        status.success(),
        "trawl run --once failed ({status}): {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Appends lines `from..to` of input `src` to `path`, shaped like an Apache error log.
fn append_numbered(path: &Path, src: &str, from: u64, to: u64) {
    let mut buf = String::new();
    for n in from..to {
        buf.push_str(&format!(
            "[{n}] [{src}] worker {} done: {}\n",
            n % 7,
            "x".repeat((n % 50) as usize)
        ));
    }
    support::process::append(path, &buf);
}

/// (src, n) of every output record, in output order, with no line left unreadable.
fn records(out: &Path) -> Vec<(String, u64)> {
    // No kill in these runs: every output line must be whole.
    assert_eq!(cut_lines(out), 0, "unreadable output lines without a kill");
    parsed(out)
}

/// Per input, the records are exactly lines `from..to`, each once, in file order.
fn assert_exactly_in_order(records: &[(String, u64)], src: &str, from: u64, to: u64) {
    let got: Vec<u64> = records
        .iter()
        .filter(|(s, _)| s == src)
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(
        got.len() as u64,
        to - from,
        "input {src}: {} records for lines {from}..{to}",
        got.len()
    );
    for (i, n) in got.iter().enumerate() {
        assert_eq!(
            *n,
            from + i as u64,
            "input {src}: record {i} is line {n}, expected line {} (order lost or a line twice)",
            from + i as u64
        );
    }
}

#[test]
fn two_inputs_parsed_on_four_threads_arrive_once_each_in_order_and_are_committed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let out = dir.path().join("out.jsonl");
    let cfg = dir.path().join("trawl.yaml");
    let log = dir.path().join("trawl.log");
    // Small batches from two inputs: many batches in the workers at once, finishing out of
    // order, from both inputs. The pattern is the literal-and-runs kind (`[^\]]+`).
    std::fs::write(
        &cfg,
        format!(
            r#"data_dir: {data}
http: {{ enabled: false }}
pipeline: {{ workers: 4, batch_size: 64 }}
inputs:
  a: {{ type: file, paths: ["{a}"] }}
  b: {{ type: file, paths: ["{b}"] }}
processors:
  - type: regex
    patterns: ['^\[(?<n:int>[^\]]+)\] \[(?<src>[^\]]+)\] (?<message>.*)$']
outputs:
  out: {{ type: file, path: "{out}" }}
"#,
            data = dir.path().join("data").display(),
            a = a.display(),
            b = b.display(),
            out = out.display(),
        ),
    )
    .expect("writing the pipeline file");
    const FIRST: u64 = 40_000;
    const MORE: u64 = 5_000;
    append_numbered(&a, "a", 0, FIRST);
    append_numbered(&b, "b", 0, FIRST / 2);

    run_once(&cfg, &log);
    let first = records(&out);
    assert_exactly_in_order(&first, "a", 0, FIRST);
    assert_exactly_in_order(&first, "b", 0, FIRST / 2);

    // What was acknowledged is committed: a second run sends only what was added since, once.
    append_numbered(&a, "a", FIRST, FIRST + MORE);
    append_numbered(&b, "b", FIRST / 2, FIRST / 2 + MORE);
    run_once(&cfg, &log);
    let all = records(&out);
    let second = &all[first.len()..];
    assert_exactly_in_order(second, "a", FIRST, FIRST + MORE);
    assert_exactly_in_order(second, "b", FIRST / 2, FIRST / 2 + MORE);
    let parsed_message = serde_json::from_str::<serde_json::Value>(
        std::fs::read_to_string(&out)
            .expect("reading the output")
            .lines()
            .next()
            .expect("an output line"),
    )
    .expect("a JSON line");
    assert_eq!(
        parsed_message["message"], "worker 0 done: ",
        "the line is replaced by its `message` capture: {parsed_message}"
    );
}
