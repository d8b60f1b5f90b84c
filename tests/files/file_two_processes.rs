//! Two trawl processes given one `data_dir`, as in a DaemonSet rollout with `maxSurge` (the new
//! pod starts while the old one still drains) or a second `trawl run` started by hand beside
//! the service: the second must not read the files the first is reading from the same read
//! positions. It waits for the first to stop, then resumes where the first left off: every
//! line delivered once between them. A reload that adds an input is held to the same rule.

use crate::support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::process::{
    append, assert_each_once, read_json_lines, sigterm, wait_until, write_file, Trawl,
};

/// Two trawl processes numbered 1 and 2 on one `data_dir`, each with its pipeline file, output
/// (`out-N.jsonl`) and log (`trawl-N.log`), and `logs/app.log`, which they must share out.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        Node { dir }
    }

    fn folder(&self, name: &str) -> PathBuf {
        let f = self.dir.path().join(name);
        std::fs::create_dir_all(&f).unwrap();
        f
    }

    fn app(&self) -> PathBuf {
        self.dir.path().join("logs/app.log")
    }

    /// Writes process `n`'s pipeline: a `file` input per (name, folder), one file output.
    fn config(&self, n: u32, inputs: &[(&str, &Path)]) -> PathBuf {
        let inputs: String = inputs
            .iter()
            .map(|(name, folder)| {
                format!(
                    "  {name}:\n    type: file\n    paths: [\"{}/*.log\"]\n    poll_interval: 50ms\n    registry_flush: 100ms\n",
                    folder.display()
                )
            })
            .collect();
        write_file(
            self.dir.path(),
            &format!("pipeline-{n}.yaml"),
            &format!(
                "data_dir: {data}\nhttp: {{ enabled: false }}\nshutdown_timeout: 5s\ninputs:\n{inputs}outputs:\n  out:\n    type: file\n    path: {out}\n",
                data = self.dir.path().join("data").display(),
                out = self.dir.path().join(format!("out-{n}.jsonl")).display(),
            ),
        )
    }

    fn start(&self, n: u32, inputs: &[(&str, &Path)]) -> Trawl {
        let log = self.dir.path().join(format!("trawl-{n}.log"));
        Trawl::start(&self.config(n, inputs), Some(&log))
    }

    fn log(&self, n: u32) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("trawl-{n}.log"))).unwrap_or_default()
    }

    fn delivered(&self, n: u32) -> Vec<serde_json::Value> {
        read_json_lines(&self.dir.path().join(format!("out-{n}.jsonl")))
    }

    /// Appends lines `from..to` to `app.log` and waits for process `n` to have delivered
    /// `total` lines.
    fn write_and_wait(&self, from: usize, to: usize, n: u32, total: usize) {
        append(&self.app(), &(lines(from, to).join("\n") + "\n"));
        wait_until(
            Duration::from_secs(30),
            &format!("lines {from}-{} by trawl {n}", to - 1),
            || self.delivered(n).len() >= total,
        );
    }

    /// Each of lines 0..`to` delivered exactly once between the two, given time for a wrong
    /// second copy to show first.
    fn assert_each_line_once(&self, to: usize) {
        std::thread::sleep(Duration::from_secs(1));
        let mut copies: HashMap<String, usize> = HashMap::new();
        for e in self.delivered(1).iter().chain(self.delivered(2).iter()) {
            let m = e["message"].as_str().unwrap_or_default().to_owned();
            *copies.entry(m).or_default() += 1;
        }
        assert_each_once(&copies, &lines(0, to));
    }
}

fn lines(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("shared line {i:05}")).collect()
}

fn sighup(t: &Trawl) {
    // SAFETY: kill(2) on the pid of a child the test owns and has not reaped.
    let r = unsafe { libc::kill(t.child.id() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(r, 0, "sending SIGHUP");
}

#[test]
fn a_second_process_on_the_same_data_dir_waits_for_the_first_and_resumes_after_it() {
    let node = Node::new();
    let logs = node.folder("logs");
    let mut first = node.start(1, &[("logs", &logs)]);
    node.write_and_wait(0, 1000, 1, 1000);

    // The new instance starts while the old one still runs: it waits, and says why.
    let mut second = node.start(2, &[("logs", &logs)]);
    wait_until(
        Duration::from_secs(30),
        "the second trawl's warning",
        || node.log(2).contains("held by another trawl process"),
    );
    node.write_and_wait(1000, 1500, 1, 1500);
    // The old one drains and exits; the new one takes over from its read position.
    sigterm(&first);
    assert!(first.wait(Duration::from_secs(30)).success());
    node.write_and_wait(1500, 2000, 2, 500);
    // A wrong second copy: the second reading from 0 or from 1,000.
    node.assert_each_line_once(2000);
    sigterm(&second);
    assert!(second.wait(Duration::from_secs(30)).success());
    let text = node.log(2);
    assert!(
        text.matches("held by another trawl process").count() == 1,
        "the wait is logged once:\n{text}"
    );
}

/// A reload that adds an input is held to the same rule as a start: two pipelines sharing a
/// `data_dir` (one file per team, an input copied from the other's) must not both read `app.log`
/// from one registry. The reload that would is refused; once the other lets the input go (its
/// own reload removes it), the same reload goes through and resumes from the other's offsets.
#[test]
fn a_reload_adding_an_input_whose_state_another_process_holds_is_refused_until_it_lets_go() {
    let node = Node::new();
    let logs = node.folder("logs");
    let spare = node.folder("spare");
    let reloads = |n: u32, what: &str| node.log(n).matches(what).count();
    let mut first = node.start(1, &[("logs", &logs), ("spare", &spare)]);
    node.write_and_wait(0, 1000, 1, 1000);
    // Another pipeline on the same data_dir, with inputs of other names: it starts at once.
    let mut second = node.start(2, &[("other", &spare)]);
    wait_until(Duration::from_secs(30), "the second trawl's start", || {
        node.log(2).contains("file input starting")
    });
    assert!(
        !node.log(2).contains("held by another trawl process"),
        "{}",
        node.log(2)
    );

    // Its reload adds `logs`, which the first is reading: refused, the second unchanged.
    node.config(2, &[("other", &spare), ("logs", &logs)]);
    sighup(&second);
    wait_until(Duration::from_secs(30), "the refused reload", || {
        reloads(2, "reload failed") == 1
    });
    let text = node.log(2);
    assert!(
        text.contains("file-logs.json.lock is held by another trawl process")
            && text.contains("reload refused"),
        "the refusal names the lock:\n{text}"
    );
    node.write_and_wait(1000, 1500, 1, 1500);

    // The first lets `logs` go by a reload of its own; the second's reload then goes through.
    node.config(1, &[("spare", &spare)]);
    sighup(&first);
    wait_until(Duration::from_secs(30), "the first's reload", || {
        reloads(1, "reloaded: ") == 1
    });
    sighup(&second);
    wait_until(Duration::from_secs(30), "the second's reload", || {
        reloads(2, "reloaded: ") == 1
    });
    node.write_and_wait(1500, 2000, 2, 500);
    node.assert_each_line_once(2000);
    for t in [&first, &second] {
        sigterm(t);
    }
    assert!(first.wait(Duration::from_secs(30)).success());
    assert!(second.wait(Duration::from_secs(30)).success());
}

/// `trawl pcap FILE -c PIPELINE` runs the pipeline's other inputs too. Pointed at the running
/// service's pipeline (a capture replayed on the node where trawl runs), their read positions
/// are the service's: the one-off command is refused at once, naming the holder, rather than
/// waiting for a service that is not stopping, and it reads no line the service reads.
#[test]
fn a_one_off_pcap_run_on_a_pipeline_in_use_is_refused_at_once_and_reads_nothing() {
    let node = Node::new();
    let logs = node.folder("logs");
    let mut service = node.start(1, &[("logs", &logs)]);
    node.write_and_wait(0, 500, 1, 500);

    let capture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/http_edge_cases.pcap");
    let mut pcap = std::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
        .arg("pcap")
        .arg(&capture)
        .arg("-c")
        .arg(node.config(2, &[("logs", &logs)]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting trawl pcap");
    // The pipeline's shutdown_timeout is 5 s: a start that waits for the holder ends in 15.
    let mut status = None;
    for _ in 0..600 {
        status = pcap.try_wait().expect("trawl pcap's status");
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if status.is_none() {
        let _ = pcap.kill();
    }
    let out = pcap.wait_with_output().expect("trawl pcap's output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "refused; its log:\n{err}");
    assert!(
        err.contains("file-logs.json.lock is held by another trawl process (pid ")
            && err.contains(&service.child.id().to_string()),
        "the refusal names the lock and the service's pid:\n{err}"
    );
    assert!(
        !err.contains("waiting for it to stop"),
        "a one-off command does not wait for a running service:\n{err}"
    );
    assert!(node.delivered(2).is_empty(), "the refused run read nothing");

    node.write_and_wait(500, 1000, 1, 1000);
    node.assert_each_line_once(1000);
    sigterm(&service);
    assert!(service.wait(Duration::from_secs(30)).success());
}
