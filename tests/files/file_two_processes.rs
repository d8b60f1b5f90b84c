//! Two trawl processes given one `data_dir`, as in a DaemonSet rollout with `maxSurge` (the new
//! pod starts while the old one still drains) or a second `trawl run` started by hand beside
//! the service: the second must not read the files the first is reading from the same read
//! positions. It waits for the first to stop, then resumes where the first left off: every
//! line delivered once between them.

use crate::support;

use std::collections::HashMap;
use std::time::Duration;
use support::process::{
    append, assert_each_once, read_json_lines, sigterm, wait_until, write_file, Trawl,
};

/// Each of `want` delivered exactly once across the processes' outputs.
fn assert_once_between(outputs: &[Vec<serde_json::Value>], want: &[String]) {
    let mut copies: HashMap<String, usize> = HashMap::new();
    for e in outputs.iter().flatten() {
        let m = e["message"].as_str().unwrap_or_default().to_owned();
        *copies.entry(m).or_default() += 1;
    }
    assert_each_once(&copies, want);
}

#[test]
fn a_second_process_on_the_same_data_dir_waits_for_the_first_and_resumes_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let app = logs.join("app.log");
    let config = |n: u32| {
        write_file(
            dir.path(),
            &format!("pipeline-{n}.yaml"),
            &format!(
                "data_dir: {data}\nhttp: {{ enabled: false }}\nshutdown_timeout: 5s\ninputs:\n  logs:\n    type: file\n    paths: [\"{logs}/*.log\"]\n    poll_interval: 50ms\n    registry_flush: 100ms\noutputs:\n  out:\n    type: file\n    path: {out}\n",
                data = dir.path().join("data").display(),
                logs = logs.display(),
                out = dir.path().join(format!("out-{n}.jsonl")).display(),
            ),
        )
    };
    let lines = |from: usize, to: usize| -> Vec<String> {
        (from..to).map(|i| format!("rollout line {i:05}")).collect()
    };
    let delivered = |n: u32| read_json_lines(&dir.path().join(format!("out-{n}.jsonl")));
    append(&app, &(lines(0, 1000).join("\n") + "\n"));
    let log1 = dir.path().join("trawl-1.log");
    let log2 = dir.path().join("trawl-2.log");
    let mut first = Trawl::start(&config(1), Some(&log1));
    wait_until(Duration::from_secs(30), "the first 1,000 lines", || {
        delivered(1).len() == 1000
    });

    // The new instance starts while the old one still runs: it waits, and says why.
    let mut second = Trawl::start(&config(2), Some(&log2));
    wait_until(
        Duration::from_secs(30),
        "the second trawl's warning",
        || {
            std::fs::read_to_string(&log2)
                .unwrap_or_default()
                .contains("held by another trawl process")
        },
    );
    append(&app, &(lines(1000, 1500).join("\n") + "\n"));
    wait_until(
        Duration::from_secs(30),
        "lines 1,000-1,499 by the first",
        || delivered(1).len() == 1500,
    );
    // The old one drains and exits; the new one takes over from its read position.
    sigterm(&first);
    assert!(first.wait(Duration::from_secs(30)).success());
    append(&app, &(lines(1500, 2000).join("\n") + "\n"));
    wait_until(
        Duration::from_secs(30),
        "lines 1,500-1,999 by the second",
        || delivered(2).len() >= 500,
    );
    // Time for a wrong second copy to show (the second reading from 0 or from 1,000).
    std::thread::sleep(Duration::from_secs(1));
    sigterm(&second);
    assert!(second.wait(Duration::from_secs(30)).success());

    assert_once_between(&[delivered(1), delivered(2)], &lines(0, 2000));
    let text = std::fs::read_to_string(&log2).unwrap_or_default();
    assert!(
        text.matches("held by another trawl process").count() == 1,
        "the wait is logged once:\n{text}"
    );
}

fn sighup(t: &Trawl) {
    // SAFETY: kill(2) on the pid of a child the test owns and has not reaped.
    let r = unsafe { libc::kill(t.child.id() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(r, 0, "sending SIGHUP");
}

/// A reload that adds an input is held to the same rule as a start: two pipelines sharing a
/// `data_dir` (one file per team, an input copied from the other's) must not both read `app.log`
/// from one registry. The reload that would is refused; once the other lets the input go (its
/// own reload removes it), the same reload goes through and resumes from the other's offsets.
#[test]
fn a_reload_adding_an_input_whose_state_another_process_holds_is_refused_until_it_lets_go() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let spare = dir.path().join("spare");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::create_dir_all(&spare).unwrap();
    let app = logs.join("app.log");
    let input = |name: &str, folder: &std::path::Path| {
        format!(
            "  {name}:\n    type: file\n    paths: [\"{}/*.log\"]\n    poll_interval: 50ms\n    registry_flush: 100ms\n",
            folder.display()
        )
    };
    let config = |n: u32, inputs: &[(&str, &std::path::Path)]| {
        let inputs: String = inputs.iter().map(|(n, f)| input(n, f)).collect();
        write_file(
            dir.path(),
            &format!("pipeline-{n}.yaml"),
            &format!(
                "data_dir: {data}\nhttp: {{ enabled: false }}\nshutdown_timeout: 5s\ninputs:\n{inputs}outputs:\n  out:\n    type: file\n    path: {out}\n",
                data = dir.path().join("data").display(),
                out = dir.path().join(format!("out-{n}.jsonl")).display(),
            ),
        )
    };
    let lines = |from: usize, to: usize| -> Vec<String> {
        (from..to).map(|i| format!("shared line {i:05}")).collect()
    };
    let delivered = |n: u32| read_json_lines(&dir.path().join(format!("out-{n}.jsonl")));
    let log = |n: u32| {
        std::fs::read_to_string(dir.path().join(format!("trawl-{n}.log"))).unwrap_or_default()
    };
    let reloads = |n: u32, what: &str| log(n).matches(what).count();

    append(&app, &(lines(0, 1000).join("\n") + "\n"));
    let mut first = Trawl::start(
        &config(1, &[("logs", &logs), ("spare", &spare)]),
        Some(&dir.path().join("trawl-1.log")),
    );
    wait_until(Duration::from_secs(30), "the first 1,000 lines", || {
        delivered(1).len() == 1000
    });
    // Another pipeline on the same data_dir, with inputs of other names: it starts at once.
    let mut second = Trawl::start(
        &config(2, &[("other", &spare)]),
        Some(&dir.path().join("trawl-2.log")),
    );
    wait_until(Duration::from_secs(30), "the second trawl's start", || {
        log(2).contains("file input starting")
    });
    assert!(
        !log(2).contains("held by another trawl process"),
        "{}",
        log(2)
    );

    // Its reload adds `logs`, which the first is reading: refused, the second unchanged.
    config(2, &[("other", &spare), ("logs", &logs)]);
    sighup(&second);
    wait_until(Duration::from_secs(30), "the refused reload", || {
        reloads(2, "reload failed") == 1
    });
    let text = log(2);
    assert!(
        text.contains("file-logs.json.lock is held by another trawl process")
            && text.contains("reload refused"),
        "the refusal names the lock:\n{text}"
    );
    append(&app, &(lines(1000, 1500).join("\n") + "\n"));
    wait_until(
        Duration::from_secs(30),
        "lines 1,000-1,499 by the first",
        || delivered(1).len() == 1500,
    );

    // The first lets `logs` go by a reload of its own; the second's reload then goes through.
    config(1, &[("spare", &spare)]);
    sighup(&first);
    wait_until(Duration::from_secs(30), "the first's reload", || {
        reloads(1, "reloaded: ") == 1
    });
    sighup(&second);
    wait_until(Duration::from_secs(30), "the second's reload", || {
        reloads(2, "reloaded: ") == 1
    });
    append(&app, &(lines(1500, 2000).join("\n") + "\n"));
    wait_until(
        Duration::from_secs(30),
        "lines 1,500-1,999 by the second",
        || delivered(2).len() >= 500,
    );
    // Time for a wrong second copy to show.
    std::thread::sleep(Duration::from_secs(1));
    for t in [&first, &second] {
        sigterm(t);
    }
    assert!(first.wait(Duration::from_secs(30)).success());
    assert!(second.wait(Duration::from_secs(30)).success());

    assert_once_between(&[delivered(1), delivered(2)], &lines(0, 2000));
}
