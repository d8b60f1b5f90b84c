//! The `journald` input against real journal files: entries are written by systemd's own
//! `systemd-journal-remote` (the journal format is systemd's, not ours), read by the real
//! `journalctl` that trawl runs, and shipped by the binary to a file output. Checks the ECS
//! fields, following new entries, filters, the cursor across kill -9 (nothing lost while
//! trawl was down), a journal folder that appears late, `multiline` (a Java trace per unit,
//! kill -9 mid-trace), a reload that changes the input's match and a cursor that cannot be
//! saved (its disk remounted read-only).

use crate::support;

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::process::{free_port, http_get, read_json_lines, reloads, wait_until, Trawl};

const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";
/// How long any one wait may take before the test fails.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

pub(crate) fn have_tools() -> bool {
    let ok = Path::new(JOURNAL_REMOTE).exists()
        && Command::new("journalctl")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "journalctl and systemd-journal-remote are needed (scripts/setup.sh installs them)"
        );
        eprintln!("skipped: journalctl or systemd-journal-remote missing");
    }
    ok
}

/// Appends entries to `dir/remote.journal` in systemd's export format, through systemd's own
/// writer. Each entry: (message, unit, pid, priority). Times increase from `t0` (µs).
pub(crate) fn write_entries(dir: &Path, t0: u64, entries: &[(String, &str, u32, u8)]) {
    let mut export = Vec::new();
    for (i, (message, unit, pid, priority)) in entries.iter().enumerate() {
        write!(
            export,
            "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID=0123456789abcdef0123456789abcdef\n\
             MESSAGE={message}\nPRIORITY={priority}\n_PID={pid}\n_SYSTEMD_UNIT={unit}\n\
             SYSLOG_IDENTIFIER={}\n_HOSTNAME=node-7\n\n",
            t0 + i as u64 * 1000,
            t0 + i as u64 * 1000,
            unit.trim_end_matches(".service"),
        )
        .unwrap();
    }
    let mut child = Command::new(JOURNAL_REMOTE)
        .arg(format!("--output={}", dir.join("remote.journal").display()))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&export).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "systemd-journal-remote: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn entries<'a>(
    prefix: &str,
    range: std::ops::Range<usize>,
    unit: &'a str,
) -> Vec<(String, &'a str, u32, u8)> {
    range
        .map(|i| {
            (
                format!("{prefix} {i:05}"),
                unit,
                1000 + i as u32,
                (i % 8) as u8,
            )
        })
        .collect()
}

pub(crate) struct Setup {
    pub(crate) _tmp: tempfile::TempDir,
    pub(crate) journal: PathBuf,
    pub(crate) out: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) log: PathBuf,
}

pub(crate) fn setup(extra: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let journal = tmp.path().join("journal");
    std::fs::create_dir_all(&journal).unwrap();
    let out = tmp.path().join("out.jsonl");
    let config = tmp.path().join("p.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: {}\nhttp: {{ enabled: false }}\nshutdown_timeout: 10s\ninputs:\n  host:\n    type: journald\n    directory: {}\n{extra}\
             outputs:\n  out: {{ type: file, path: \"{}\" }}\n",
            tmp.path().join("data").display(),
            journal.display(),
            out.display()
        ),
    )
    .unwrap();
    let log = tmp.path().join("trawl.log");
    Setup {
        journal,
        out,
        config,
        log,
        _tmp: tmp,
    }
}

impl Setup {
    pub(crate) fn start(&self) -> Trawl {
        Trawl::start(&self.config, Some(&self.log))
    }

    /// Waits until the output holds at least `n` events.
    pub(crate) fn wait_for_count(&self, n: usize, what: &str) {
        wait_until(DEADLINE, what, || messages(&self.out).len() >= n);
    }
}

pub(crate) fn messages(out: &Path) -> Vec<String> {
    if !out.exists() {
        return Vec::new();
    }
    read_json_lines(out)
        .iter()
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn journal_entries_arrive_with_ecs_fields_and_new_ones_follow() {
    if !have_tools() {
        return;
    }
    let s = setup("    start_at: beginning\n");
    write_entries(
        &s.journal,
        1_764_500_000_000_000,
        &entries("boot", 0..50, "ssh.service"),
    );
    let mut t = s.start();
    s.wait_for_count(50, "the first 50 entries");
    write_entries(
        &s.journal,
        1_764_500_100_000_000,
        &entries("later", 0..30, "cron.service"),
    );
    s.wait_for_count(80, "the 30 entries written while running");
    assert!(t.stop(Duration::from_secs(30)).success());

    let events = read_json_lines(&s.out);
    let got: Vec<&str> = events
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    let want: Vec<String> = (0..50)
        .map(|i| format!("boot {i:05}"))
        .chain((0..30).map(|i| format!("later {i:05}")))
        .collect();
    assert_eq!(got, want, "every entry once, in journal order");
    let e: &Value = &events[3];
    assert_eq!(e["process"]["pid"], 1003);
    assert_eq!(e["log"]["syslog"]["severity"]["code"], 3);
    assert_eq!(e["log"]["level"], "error");
    assert_eq!(e["systemd"]["unit"], "ssh.service");
    assert_eq!(e["log"]["syslog"]["appname"], "ssh");
    assert_eq!(e["host"]["hostname"], "node-7");
    assert_eq!(e["@timestamp"], "2025-11-30T10:53:20.003000Z");
    assert_eq!(events[60]["systemd"]["unit"], "cron.service");
}

#[test]
fn kill_9_loses_nothing_written_before_or_while_down() {
    if !have_tools() {
        return;
    }
    let s = setup("    start_at: beginning\n");
    write_entries(
        &s.journal,
        1_764_500_000_000_000,
        &entries("a", 0..2000, "app.service"),
    );
    let mut t = s.start();
    s.wait_for_count(500, "some entries delivered");
    t.kill9();
    // Written while trawl is down.
    write_entries(
        &s.journal,
        1_764_500_500_000_000,
        &entries("b", 0..500, "app.service"),
    );
    let mut t = s.start();
    wait_until(
        Duration::from_secs(60),
        "every entry after the restart",
        || {
            let m = messages(&s.out);
            m.iter().any(|x| x == "b 00499") && m.iter().any(|x| x == "a 01999")
        },
    );
    assert!(t.stop(Duration::from_secs(30)).success());
    let got = messages(&s.out);
    let unique: std::collections::BTreeSet<&String> = got.iter().collect();
    for i in 0..2000 {
        assert!(unique.contains(&format!("a {i:05}")), "a {i:05} lost");
    }
    for i in 0..500 {
        assert!(unique.contains(&format!("b {i:05}")), "b {i:05} lost");
    }
    // A restart re-sends at most what was in flight at the kill (16 batches at most).
    let duplicates = got.len() - unique.len();
    assert!(duplicates <= 16 * 1024, "{duplicates} duplicates");

    // A clean restart re-sends nothing: the cursor was committed at shutdown.
    let before = got.len();
    let mut t = s.start();
    std::thread::sleep(Duration::from_secs(2));
    assert!(t.stop(Duration::from_secs(30)).success());
    assert_eq!(
        messages(&s.out).len(),
        before,
        "a clean restart re-sent entries"
    );
}

#[test]
fn start_at_end_skips_history_once_and_units_filter() {
    if !have_tools() {
        return;
    }
    let s = setup("    units: [web.service]\n");
    write_entries(
        &s.journal,
        1_764_500_000_000_000,
        &entries("old", 0..20, "web.service"),
    );
    let mut t = s.start();
    // start_at: end (the default) on the very first start: history is skipped. Wait until
    // journalctl is following, then write.
    std::thread::sleep(Duration::from_secs(2));
    write_entries(
        &s.journal,
        1_764_500_100_000_000,
        &entries("new", 0..10, "web.service"),
    );
    write_entries(
        &s.journal,
        1_764_500_200_000_000,
        &entries("other", 0..10, "db.service"),
    );
    s.wait_for_count(10, "the new web entries");
    assert!(t.stop(Duration::from_secs(30)).success());
    // Written while stopped: read on the next start, although start_at is `end`.
    write_entries(
        &s.journal,
        1_764_500_300_000_000,
        &entries("down", 0..5, "web.service"),
    );
    let mut t = s.start();
    s.wait_for_count(15, "entries written while stopped");
    std::thread::sleep(Duration::from_millis(500));
    assert!(t.stop(Duration::from_secs(30)).success());
    let got = messages(&s.out);
    let want: Vec<String> = (0..10)
        .map(|i| format!("new {i:05}"))
        .chain((0..5).map(|i| format!("down {i:05}")))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn a_journal_folder_that_is_missing_is_retried_not_fatal() {
    if !have_tools() {
        return;
    }
    let s = setup("    start_at: beginning\n");
    std::fs::remove_dir_all(&s.journal).unwrap();
    let mut t = s.start();
    std::thread::sleep(Duration::from_secs(2));
    assert!(t.child.try_wait().unwrap().is_none(), "trawl exited");
    std::fs::create_dir_all(&s.journal).unwrap();
    write_entries(
        &s.journal,
        1_764_500_000_000_000,
        &entries("late", 0..5, "x.service"),
    );
    s.wait_for_count(5, "entries of the late folder");
    assert!(t.stop(Duration::from_secs(30)).success());
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert_eq!(
        log.matches("journal reading stopped").count(),
        1,
        "logged once:\n{log}"
    );
}

/// The lines a Java program writes for one failed request, as journald stores them: one
/// entry per line.
fn java_trace(k: usize) -> Vec<String> {
    let mut lines = vec![
        format!("2026-11-30 12:00:{:02} ERROR request {k} failed", k % 60),
        format!("java.lang.IllegalStateException: boom {k}"),
    ];
    for f in 0..5 {
        lines.push(format!(
            "\tat com.example.Handler.step{f}(Handler.java:{k})"
        ));
    }
    lines.push(format!("Caused by: java.io.IOException: disk {k}"));
    lines.push("\t... 3 more".into());
    lines
}

/// Trace lines of `app.service` (pid 4242) with a `cron.service` tick (pid 77) between every
/// two of them, as two programs logging at once interleave in the journal.
fn interleaved(trace_lines: &[String], first_tick: usize) -> Vec<(String, &'static str, u32, u8)> {
    let mut out = Vec::new();
    for (i, l) in trace_lines.iter().enumerate() {
        out.push((l.clone(), "app.service", 4242, 3));
        out.push((format!("tick {:05}", first_tick + i), "cron.service", 77, 6));
    }
    out
}

#[test]
fn multiline_joins_a_java_trace_per_unit_and_kill_9_mid_trace_reads_it_again_whole() {
    if !have_tools() {
        return;
    }
    let s = setup("    start_at: beginning\n    multiline: { preset: java, timeout: 60s }\n");
    // Traces 0..20 whole, then the first 4 lines of trace 20: trawl holds them, waiting for
    // the rest, when it is killed.
    let mut lines: Vec<String> = (0..20).flat_map(java_trace).collect();
    let t20 = java_trace(20);
    lines.extend(t20[..4].iter().cloned());
    let before = interleaved(&lines, 0);
    write_entries(&s.journal, 1_764_500_000_000_000, &before);
    let mut t = s.start();
    let header = |k: usize| java_trace(k)[0].clone();
    wait_until(Duration::from_secs(30), "trace 19 delivered", || {
        messages(&s.out).iter().any(|m| m.starts_with(&header(19)))
    });
    t.kill9();
    assert!(
        !messages(&s.out).iter().any(|m| m.starts_with(&header(20))),
        "trace 20 was sent before its end was written"
    );

    // The rest of trace 20 and 10 more traces, written while trawl is down; a last line of
    // each program ends the last trace.
    let mut rest: Vec<String> = t20[4..].to_vec();
    rest.extend((21..31).flat_map(java_trace));
    rest.push("2026-11-30 12:59:59 INFO done".into());
    let after = interleaved(&rest, lines.len());
    write_entries(&s.journal, 1_764_500_500_000_000, &after);
    let mut t = s.start();
    wait_until(
        Duration::from_secs(60),
        "trace 30 after the restart",
        || messages(&s.out).iter().any(|m| m.starts_with(&header(30))),
    );
    assert!(t.stop(Duration::from_secs(30)).success());

    let events = read_json_lines(&s.out);
    let whole: std::collections::BTreeMap<String, usize> =
        (0..31).map(|k| (java_trace(k).join("\n"), k)).collect();
    let mut traces_seen = std::collections::BTreeSet::new();
    let mut ticks = std::collections::BTreeSet::new();
    for e in &events {
        let m = e["message"].as_str().unwrap_or_default();
        match e["systemd"]["unit"].as_str() {
            Some("app.service") => {
                let Some(k) = whole.get(m) else {
                    panic!("an app.service event that is not one whole trace:\n{m}");
                };
                traces_seen.insert(*k);
                assert_eq!(e["process"]["pid"], 4242);
                assert_eq!(e["log"]["flags"][0], "multiline");
                assert_eq!(e["log"]["level"], "error");
            }
            Some("cron.service") => {
                assert!(m.starts_with("tick ") && !m.contains('\n'), "{m}");
                ticks.insert(m.to_owned());
            }
            other => panic!("unexpected unit {other:?}"),
        }
    }
    assert_eq!(traces_seen.len(), 31, "traces lost: {traces_seen:?}");
    // Every tick but the last, which multiline holds until the next tick or its timeout.
    let all_ticks = lines.len() + rest.len();
    for i in 0..all_ticks - 1 {
        assert!(ticks.contains(&format!("tick {i:05}")), "tick {i:05} lost");
    }
    let first_20 = events
        .iter()
        .find(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(&header(20)))
        })
        .unwrap();
    // The event has the fields (time) of its first entry, written before the kill.
    assert!(
        first_20["@timestamp"]
            .as_str()
            .is_some_and(|t| t.starts_with("2025-11-30T10:53:20")),
        "{}",
        first_20["@timestamp"]
    );
}

/// `max_joined_sources: 2`: a third program's trace starting sends the trace held longest
/// (whole, as it stands), without waiting for its hour-long timeout; the two others stay held.
#[test]
fn a_source_beyond_max_joined_sources_sends_the_event_held_longest() {
    if !have_tools() {
        return;
    }
    let s = setup(
        "    start_at: beginning\n    max_joined_sources: 2\n    multiline: { preset: java, timeout: 1h }\n",
    );
    let mut entries = Vec::new();
    for (unit, k) in [("a.service", 1), ("b.service", 2), ("c.service", 3)] {
        for l in java_trace(k) {
            entries.push((l, unit, 100 + k as u32, 3));
        }
    }
    write_entries(&s.journal, 1_764_500_000_000_000, &entries);
    let t = s.start();
    let whole = |k: usize| java_trace(k).join("\n");
    wait_until(Duration::from_secs(30), "a.service's trace sent", || {
        messages(&s.out).contains(&whole(1))
    });
    // Nothing else ends b's or c's trace: they are held (an hour), not sent in pieces.
    let sent = messages(&s.out);
    assert_eq!(sent, [whole(1)], "{sent:?}");
    drop(t);
}

/// Children of `pid` named `comm`, with their state letter (`Z`: a zombie not reaped).
fn children(pid: u32, comm: &str) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last `)`.
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: u32 = f.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == pid && head.ends_with(&format!("({comm}")) {
            out.push((child, state));
        }
    }
    out
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A reload that changes the journald input's match: the input is drained and rebuilt, the
/// new one resumes from the saved cursor with the new match (nothing before the cursor sent
/// again, nothing after it lost), and the old journalctl is killed and reaped.
#[test]
fn a_reload_that_changes_the_match_keeps_the_cursor_and_reaps_the_old_journalctl() {
    if !have_tools() {
        return;
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let units = |u: &str| format!("    start_at: beginning\n    units: [{u}]\n");
    let s = setup(&units("web.service"));
    let with_http = |text: String| {
        text.replace(
            "http: { enabled: false }",
            &format!("http: {{ address: \"{addr}\" }}"),
        )
    };
    let v1 = with_http(std::fs::read_to_string(&s.config).unwrap());
    let v2 = v1.replace(&units("web.service"), &units("web.service, db.service"));
    assert_ne!(v1, v2);
    std::fs::write(&s.config, &v1).unwrap();
    let rewrite = |text: &str| {
        let tmp = s.config.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &s.config).unwrap();
    };
    let sighup = |t: &Trawl| {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(t.child.id() as i32, libc::SIGHUP) };
    };
    let delivered = |prefix: &str, n: usize| {
        let m = messages(&s.out);
        (0..n).all(|i| m.contains(&format!("{prefix} {i:05}")))
    };

    write_entries(
        &s.journal,
        1_764_500_000_000_000,
        &entries("web", 0..100, "web.service"),
    );
    let t = s.start();
    let pid = t.child.id();
    wait_until(Duration::from_secs(30), "web 0..100", || {
        delivered("web", 100)
    });
    // Written after the last web entry, so after the saved cursor: read once db is matched.
    write_entries(
        &s.journal,
        1_764_500_100_000_000,
        &entries("db", 0..50, "db.service"),
    );
    let first = children(pid, "journalctl");
    assert_eq!(first.len(), 1, "one journalctl: {first:?}");

    rewrite(&v2);
    sighup(&t);
    wait_until(Duration::from_secs(30), "the reload", || {
        reloads(&addr, "success") >= 1
    });
    wait_until(Duration::from_secs(30), "db 0..50 after the reload", || {
        delivered("db", 50)
    });
    let now = children(pid, "journalctl");
    assert_eq!(now.len(), 1, "one journalctl after the reload: {now:?}");
    assert_ne!(
        now[0].0, first[0].0,
        "the changed input runs a new journalctl"
    );
    assert!(
        !Path::new(&format!("/proc/{}", first[0].0)).exists(),
        "the old journalctl is gone and reaped (a zombie keeps its /proc entry)"
    );
    let fds_before = fds(pid);

    // Ten more changes back and forth while web entries keep coming.
    for round in 0..10u64 {
        rewrite(if round % 2 == 0 { &v1 } else { &v2 });
        sighup(&t);
        wait_until(Duration::from_secs(30), "the reload", || {
            reloads(&addr, "success") > round + 1
        });
        write_entries(
            &s.journal,
            1_764_500_200_000_000 + round * 1_000_000,
            &entries(&format!("web{round}"), 0..20, "web.service"),
        );
        wait_until(Duration::from_secs(30), "the round's web entries", || {
            delivered(&format!("web{round}"), 20)
        });
    }
    wait_until(Duration::from_secs(30), "one journalctl, no zombie", || {
        let c = children(pid, "journalctl");
        c.len() == 1 && c[0].1 != 'Z'
    });
    let fds_after = fds(pid);
    assert!(
        fds_after <= fds_before + 2,
        "descriptors {fds_before} -> {fds_after} over 10 reloads"
    );
    let mut t = t;
    assert!(t.stop(Duration::from_secs(30)).success());

    let got = messages(&s.out);
    let mut seen = std::collections::HashMap::new();
    for m in &got {
        *seen.entry(m.as_str()).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "sent twice across reloads: {twice:?}");
    assert_eq!(got.len(), 100 + 50 + 10 * 20);
}

/// The disk of `data_dir` turns read-only while entries flow (a remount of a small tmpfs of the
/// test's own): entries keep coming, the failure is logged once (was: a warning per batch) and
/// `/health` answers 503 naming the input and the cursor file (was: 200) until a save works.
#[test]
fn a_cursor_that_cannot_be_saved_is_logged_once_and_shows_on_health() {
    if !have_tools() {
        return;
    }
    let s = setup("    start_at: beginning\n");
    let data = s.config.with_file_name("data");
    std::fs::create_dir_all(&data).unwrap();
    let mount = |args: &[&str]| {
        Command::new("mount")
            .args(args)
            .arg(&data)
            .status()
            .is_ok_and(|st| st.success())
    };
    if !mount(&["-t", "tmpfs", "-o", "size=1m", "tmpfs"]) {
        eprintln!("SKIPPED: mount -t tmpfs not allowed here (needs root)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(data.clone());
    let addr = format!("127.0.0.1:{}", free_port());
    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        text.replace(
            "http: { enabled: false }",
            &format!("http: {{ address: \"{addr}\" }}"),
        ),
    )
    .unwrap();
    let health = || http_get(&addr, "/health").unwrap_or((0, String::new()));
    let t0 = 1_764_600_000_000_000;
    write_entries(&s.journal, t0, &entries("c", 0..50, "app.service"));
    let mut t = s.start();
    s.wait_for_count(50, "the first entries");
    wait_until(DEADLINE, "/health 200", || health().0 == 200);

    // `remount,ro` is refused while a file there is open for writing: retried.
    wait_until(DEADLINE, "remount ro", || mount(&["-o", "remount,ro"]));
    write_entries(
        &s.journal,
        t0 + 50_000,
        &entries("c", 50..100, "app.service"),
    );
    s.wait_for_count(100, "entries while the cursor cannot be saved");
    write_entries(
        &s.journal,
        t0 + 100_000,
        &entries("c", 100..150, "app.service"),
    );
    s.wait_for_count(150, "more entries while the cursor cannot be saved");
    let cursor = data.join("registry/journald-host.cursor");
    let mut body = String::new();
    wait_until(Duration::from_secs(10), "/health 503", || {
        let (status, b) = health();
        body = b;
        status == 503
    });
    assert!(
        body.contains("input host") && body.contains(&cursor.display().to_string()),
        "/health names the input and the cursor file: {body}"
    );

    wait_until(DEADLINE, "remount rw", || mount(&["-o", "remount,rw"]));
    write_entries(
        &s.journal,
        t0 + 150_000,
        &entries("c", 150..160, "app.service"),
    );
    s.wait_for_count(160, "entries once writable again");
    wait_until(Duration::from_secs(10), "/health 200 again", || {
        health().0 == 200
    });
    assert!(t.stop(Duration::from_secs(30)).success());
    let log = std::fs::read_to_string(&s.log).unwrap_or_default();
    assert_eq!(
        log.matches("cannot save the journal cursor").count(),
        1,
        "logged once; the log:\n{log}"
    );
    assert_eq!(
        log.matches("journal cursor saved again").count(),
        1,
        "{log}"
    );
}
