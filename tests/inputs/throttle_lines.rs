//! The `throttle` processor through the real binary, on a node's day: one app logging in a loop
//! beside a quiet one. The noisy file gets its first `limit` lines through, the quiet one all of
//! its lines; what was dropped is counted on `/metrics` and its offsets are committed, so the
//! file input neither stalls behind it nor reads it again after a restart.

use crate::support;
use std::collections::HashMap;
use std::time::Duration;
use support::process::{
    append, free_port, metric, read_json_lines, validate, wait_until, write_file, Trawl,
};

#[test]
fn a_noisy_file_is_held_to_its_limit_the_quiet_one_passes_whole_and_nothing_is_read_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let logs = d.join("logs");
    std::fs::create_dir(&logs).unwrap();
    write_file(
        &logs,
        "noisy.log",
        &support::process::numbered_lines("noisy", 2000),
    );
    write_file(
        &logs,
        "quiet.log",
        &support::process::numbered_lines("quiet", 20),
    );
    let out = d.join("out.jsonl");
    let addr = format!("127.0.0.1:{}", free_port());
    let cfg = write_file(
        d,
        "p.yaml",
        &format!(
            "data_dir: {d}/data\nhttp: {{ address: \"{addr}\" }}\n\
             pipeline: {{ workers: 2 }}\n\
             inputs:\n  app: {{ type: file, paths: [\"{logs}/*.log\"] }}\n\
             processors:\n  - {{ type: throttle, limit: 100, window: 1h, key_fields: [log.file.path] }}\n\
             outputs:\n  o: {{ type: file, path: \"{out}\" }}\n",
            d = d.display(),
            logs = logs.display(),
            out = out.display()
        ),
    );
    let log = d.join("trawl.log");
    let mut trawl = Trawl::start(&cfg, Some(&log));
    let dropped = || metric(&addr, "trawl_events_dropped_total", "#0");
    wait_until(Duration::from_secs(60), "1,900 noisy lines dropped", || {
        dropped() == Some(1900.0)
    });
    wait_until(Duration::from_secs(30), "120 lines delivered", || {
        read_json_lines(&out).len() == 120
    });
    // 100 of the noisy file, in file order, and every quiet line. Which 100: with two worker
    // threads, the lines of whichever batch reached the budget first.
    let by_file = |events: &[serde_json::Value]| {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for e in events {
            let msg = e["message"].as_str().unwrap().to_owned();
            let who = msg.split(' ').next().unwrap().to_owned();
            m.entry(who).or_default().push(msg);
        }
        m
    };
    let first = by_file(&read_json_lines(&out));
    let want = |who: &str, n: usize| -> Vec<String> {
        (0..n).map(|i| format!("{who} line {i:04}")).collect()
    };
    let noisy = first["noisy"].clone();
    assert_eq!(noisy.len(), 100);
    assert!(noisy.windows(2).all(|w| w[0] < w[1]), "{noisy:?}");
    assert_eq!(first["quiet"], want("quiet", 20));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("a key passed its limit").count(),
        1,
        "logged once: {text}"
    );
    assert!(text.contains("noisy.log"), "the log names the key: {text}");
    assert!(trawl.stop(Duration::from_secs(30)).success());

    // Restarted: the dropped lines were acknowledged with the rest, so nothing is read again;
    // lines written since are read, and a fresh budget lets them through.
    append(&logs.join("noisy.log"), "noisy line 2000\n");
    append(&logs.join("quiet.log"), "quiet line 0020\n");
    let _trawl = Trawl::start(&cfg, Some(&log));
    wait_until(Duration::from_secs(60), "the two new lines", || {
        read_json_lines(&out).len() >= 122
    });
    std::thread::sleep(Duration::from_millis(1500));
    let all = by_file(&read_json_lines(&out));
    let mut noisy = noisy;
    noisy.push("noisy line 2000".into());
    assert_eq!(all["noisy"], noisy);
    assert_eq!(all["quiet"], want("quiet", 21));
}

#[test]
fn a_limit_of_zero_fails_validate_at_its_line_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write_file(
        tmp.path(),
        "p.yaml",
        "inputs:\n  app: { type: stdin }\nprocessors:\n  - type: throttle\n    limit: 0\n\
         outputs:\n  o: { type: stdout }\n",
    );
    let (code, err) = validate(&p);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("{}:5:12: processors[0].limit:", p.display())),
        "{err}"
    );
}

/// A minute an app logged at 100 lines/s, read as one backlog (after an outage, a restart):
/// with `clock: event` it passes whole under a limit of 100/s; on the processing clock the
/// same limit keeps about one second's worth.
#[test]
fn a_backlog_passes_on_the_event_clock_at_the_rate_it_was_written() {
    let tmp = tempfile::tempdir().unwrap();
    let start = chrono::Utc::now() - chrono::Duration::minutes(30);
    let backlog: String = (0..6000)
        .map(|i| {
            let t = start + chrono::Duration::milliseconds(i * 10);
            format!(
                "{{\"time\":\"{}\",\"msg\":\"line {i:04}\"}}\n",
                t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            )
        })
        .collect();
    let run = |clock: &str| {
        let p = write_file(
            tmp.path(),
            &format!("{clock}.yaml"),
            &format!(
                "inputs:\n  app: {{ type: stdin }}\nprocessors:\n  \
                 - {{ type: json, target: doc }}\n  \
                 - {{ type: timestamp, field: doc.time, formats: [rfc3339] }}\n  \
                 - {{ type: throttle, limit: 100, window: 1s, clock: {clock} }}\n\
                 outputs:\n  o: {{ type: stdout }}\nhttp: {{ enabled: false }}\n"
            ),
        );
        support::process::run_on_stdin(&p, tmp.path(), &backlog)
    };
    let events = run("event");
    assert_eq!(events.len(), 6000);
    assert_eq!(events[5999]["doc"]["msg"], "line 5999");
    let n = run("processing").len();
    // One second's budget, plus what the seconds of reading earn back.
    assert!((100..3000).contains(&n), "{n} of 6000 passed");
}
