//! Batches an output gives up on are read again from their file while trawl runs, also when
//! the file changed meanwhile: renamed away out of `paths` (kubelet's rotation) while the reading
//! again backs off, or copytruncated (the failed lines are then in the copy, under the same
//! stream id, so Elasticsearch stores each line once). Only lines whose bytes are nowhere any
//! more are lost, and those are counted on `/metrics` and logged once.

use crate::support;

use std::path::Path;
use std::time::Duration;
use support::es_server::EsServer;
use support::process::{append, free_port, metric, wait_until, write_file, Trawl};

fn lines(what: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{what} line {i:04}")).collect()
}

fn log_has(log: &Path, text: &str) -> bool {
    std::fs::read_to_string(log).is_ok_and(|l| l.contains(text))
}

/// Where `text` first appears in the log, if it does.
fn log_position(log: &Path, text: &str) -> Option<usize> {
    std::fs::read_to_string(log).ok()?.find(text)
}

/// A pipeline file → Elasticsearch (`id_from: origin`) whose output gives a batch up as `retry`
/// says; `close_inactive` of the file input as given.
fn pipeline(
    dir: &Path,
    es: &EsServer,
    paths: &str,
    extra: &str,
    retry: &str,
    close_inactive: &str,
) -> std::path::PathBuf {
    write_file(
        dir,
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\n{extra}inputs:\n  logs:\n    type: file\n    paths: {paths}\n    poll_interval: 100ms\n    scan_interval: 200ms\n    registry_flush: 100ms\n    close_inactive: {close_inactive}\n    close_removed: 1s\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"{url}\"]\n    index: logs\n    id_from: origin\n    batch: {{ max_events: 500, timeout: 100ms }}\n    retry: {retry}\n",
            data = dir.join("data").display(),
            url = es.url
        ),
    )
}

/// A folder of logs, the Elasticsearch stand-in (refusing everything from the start when
/// `unavailable`), and a pipeline between them following `globs` in the folder.
struct Setup {
    dir: tempfile::TempDir,
    logs: std::path::PathBuf,
    es: EsServer,
    config: std::path::PathBuf,
    /// trawl's stderr.
    log: std::path::PathBuf,
}

fn setup(
    globs: &[&str],
    extra: &str,
    retry: &str,
    close_inactive: &str,
    unavailable: bool,
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let es = EsServer::start();
    es.with(|s| s.unavailable = unavailable);
    let paths: Vec<String> = globs
        .iter()
        .map(|g| format!("\"{}/{g}\"", logs.display()))
        .collect();
    let config = pipeline(
        dir.path(),
        &es,
        &format!("[{}]", paths.join(", ")),
        extra,
        retry,
        close_inactive,
    );
    let log = dir.path().join("trawl.log");
    Setup {
        dir,
        logs,
        es,
        config,
        log,
    }
}

/// A graceful stop that must exit 0.
fn stop_cleanly(trawl: &mut Trawl) {
    let status = trawl.stop(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM: trawl exited with {status}");
}

fn assert_once(es: &EsServer, expected: &[&[String]]) {
    let m = es.with(|s| s.copies_by_message("logs"));
    let all: Vec<&String> = expected.iter().flat_map(|x| x.iter()).collect();
    let wrong: Vec<&&String> = all
        .iter()
        .filter(|l| m.get(**l).copied().unwrap_or(0) != 1)
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} lines not stored exactly once (first: {:?}, {} times)",
        wrong.len(),
        all.len(),
        wrong.first(),
        wrong.first().and_then(|l| m.get(**l)).copied().unwrap_or(0)
    );
}

/// A file whose batches fail and which is renamed out of `paths` while their reading again
/// backs off (1 s, longer than `close_inactive`): it is read again from where delivery stopped
/// and delivered while trawl runs, and its offset is committed (a restart sends nothing again).
#[test]
fn failed_batches_of_a_file_renamed_away_are_delivered_without_a_restart() {
    let Setup {
        dir,
        logs,
        es,
        config,
        log,
    } = setup(
        &["*.log"],
        "http: { enabled: false }\n",
        "{ initial_backoff: 10ms, max_backoff: 50ms, max_attempts: 2 }",
        "200ms",
        true,
    );
    let app = logs.join("0.log");
    let old = lines("old", 300);
    append(&app, &(old.join("\n") + "\n"));
    let mut trawl = Trawl::start(&config, Some(&log));
    wait_until(
        Duration::from_secs(60),
        "a batch given up (its file read again after 1 s)",
        || log_has(&log, "an output failed a batch read from this file"),
    );
    // kubelet's rotation: renamed away, out of `paths`; a new file takes its name.
    std::fs::rename(&app, logs.join("0.log.20261130-101010")).unwrap();
    let new = lines("new", 100);
    append(&app, &(new.join("\n") + "\n"));
    es.with(|s| s.unavailable = false);
    es.wait_for_messages(
        "logs",
        &[&old, &new],
        Duration::from_secs(90),
        "the 300 lines of the renamed file and the 100 of the new one stored while trawl runs",
    );
    stop_cleanly(&mut trawl);
    let writes = es.with(|s| s.writes);
    // A restart resumes at the committed offsets: the renamed file's are at its end.
    let log2 = dir.path().join("trawl-2.log");
    let mut trawl = Trawl::start(&config, Some(&log2));
    append(&app, "after the restart\n");
    es.wait_for_messages(
        "logs",
        &[&["after the restart".to_owned()]],
        Duration::from_secs(60),
        "the line written after the restart stored",
    );
    trawl.stop(Duration::from_secs(30));
    let again = es.with(|s| s.writes) - writes - 1;
    assert_eq!(
        again, 0,
        "{again} lines sent again after a clean restart: the registry stalled behind the failed batches"
    );
    assert_once(&es, &[&new]);
}

/// copytruncate while a batch of the file is failing: the failed lines are no longer in the
/// file but in its copy, read again from there under the same stream id (each stored once).
/// `copy_first`: the copy is there before trawl sees the truncation (logrotate's order, found
/// by the next scan); otherwise it appears only after the batch failed.
fn failed_batch_read_again_from_the_copy(copy_first: bool) {
    let Setup {
        dir,
        logs,
        es,
        config,
        log,
    } = setup(
        &["*.log", "*.log.*"],
        "http: { enabled: false }\n",
        "{ initial_backoff: 3s, max_backoff: 3s, max_attempts: 3 }",
        "1s",
        true,
    );
    let app = logs.join("app.log");
    let old = lines("old", 500);
    append(&app, &(old.join("\n") + "\n"));
    let mut trawl = Trawl::start(&config, Some(&log));
    wait_until(Duration::from_secs(60), "the first bulk request", || {
        es.with(|s| s.requests) > 0
    });
    // Made outside `paths`, renamed in: a copy found only when it is complete.
    let outside = dir.path().join("app.log.1");
    std::fs::copy(&app, &outside).unwrap();
    if copy_first {
        std::fs::rename(&outside, logs.join("app.log.1")).unwrap();
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(&app)
        .unwrap()
        .set_len(0)
        .unwrap();
    let new = lines("new", 100);
    append(&app, &(new.join("\n") + "\n"));
    wait_until(
        Duration::from_secs(60),
        "the batch of the truncated file given up",
        || log_has(&log, "an output failed a batch"),
    );
    let truncated_at = log_position(&log, "file truncated");
    let failed_at = log_position(&log, "an output failed a batch");
    assert!(
        truncated_at.is_some() && truncated_at < failed_at,
        "the case under test needs the truncation seen before the output gave up (6 s later); it was not:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    if !copy_first {
        std::fs::rename(&outside, logs.join("app.log.1")).unwrap();
    }
    es.with(|s| s.unavailable = false);
    es.wait_for_messages(
        "logs",
        &[&old, &new],
        Duration::from_secs(90),
        "the 500 failed lines (now in the copy) and the 100 new ones stored",
    );
    stop_cleanly(&mut trawl);
    assert_once(&es, &[&old, &new]);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.contains("are lost"),
        "a loss was logged though every line was delivered:\n{text}"
    );
}

#[test]
fn a_failed_batch_of_a_copytruncated_file_is_read_again_from_the_copy() {
    failed_batch_read_again_from_the_copy(true);
}

#[test]
fn a_failed_batch_is_read_again_from_a_copy_found_after_the_failure() {
    failed_batch_read_again_from_the_copy(false);
}

/// A plain truncation (no copy anywhere) while a batch of the file is failing: its lines are
/// truly gone. That is counted (`trawl_file_lost_lines_total`) and said once, with the file.
#[test]
fn lines_of_a_failed_batch_truncated_away_for_good_are_counted_and_logged_once() {
    let addr = format!("127.0.0.1:{}", free_port());
    let Setup {
        logs,
        es,
        config,
        log,
        // Bound, not `..`: the folder would go with the rest of the temporary.
        dir: _dir,
    } = setup(
        &["*.log"],
        &format!("http: {{ address: \"{addr}\" }}\n"),
        "{ initial_backoff: 3s, max_backoff: 3s, max_attempts: 3 }",
        "1s",
        true,
    );
    let app = logs.join("app.log");
    let old = lines("old", 500);
    append(&app, &(old.join("\n") + "\n"));
    let mut trawl = Trawl::start(&config, Some(&log));
    wait_until(Duration::from_secs(60), "the first bulk request", || {
        es.with(|s| s.requests) > 0
    });
    std::fs::OpenOptions::new()
        .write(true)
        .open(&app)
        .unwrap()
        .set_len(0)
        .unwrap();
    let new = lines("new", 100);
    append(&app, &(new.join("\n") + "\n"));
    wait_until(
        Duration::from_secs(60),
        "the batch of the truncated file given up",
        || log_has(&log, "an output failed a batch"),
    );
    es.with(|s| s.unavailable = false);
    // The truncated content is waited for as a copy for a while (a copy may still appear);
    // then its failed lines are lost.
    wait_until(
        Duration::from_secs(120),
        "the failed lines counted as lost on /metrics",
        || metric(&addr, "trawl_file_lost_lines_total", "logs").is_some_and(|v| v > 0.0),
    );
    let m = es.with(|s| s.copies_by_message("logs"));
    assert!(
        new.iter().all(|l| m.get(l) == Some(&1)),
        "the new lines stored once"
    );
    let lost = metric(&addr, "trawl_file_lost_lines_total", "logs").unwrap_or(0.0) as usize;
    let missing = old.iter().filter(|l| !m.contains_key(*l)).count();
    assert_eq!(
        lost, missing,
        "lines counted lost ({lost}) are the old lines never stored ({missing})"
    );
    trawl.stop(Duration::from_secs(30));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let said: Vec<&str> = text.lines().filter(|l| l.contains("are lost")).collect();
    assert_eq!(said.len(), 1, "the loss is said once:\n{text}");
    assert!(
        said[0].contains(&app.display().to_string()),
        "the loss names the file: {}",
        said[0]
    );
}

/// A batch given up after earlier lines of its file were delivered: the file is read again from
/// where delivery stopped, under the same stream id, so each line is stored once. (It used to
/// look truncated when read again, and was read from 0 under a new stream id: the lines already
/// delivered were stored a second time under other `_id`s, and the registry fell back to 0.)
#[test]
fn a_batch_given_up_is_read_again_from_where_delivery_stopped_under_the_same_ids() {
    let Setup {
        logs,
        es,
        config,
        log,
        // Bound, not `..`: the folder would go with the rest of the temporary.
        dir: _dir,
    } = setup(
        &["*.log"],
        "http: { enabled: false }\n",
        "{ initial_backoff: 10ms, max_backoff: 50ms, max_attempts: 2 }",
        "1s",
        false,
    );
    let app = logs.join("app.log");
    let first = lines("first", 300);
    append(&app, &(first.join("\n") + "\n"));
    let mut trawl = Trawl::start(&config, Some(&log));
    es.wait_for_messages(
        "logs",
        &[&first],
        Duration::from_secs(60),
        "the first 300 lines stored",
    );
    es.with(|s| s.unavailable = true);
    let second = lines("second", 200);
    append(&app, &(second.join("\n") + "\n"));
    wait_until(
        Duration::from_secs(60),
        "a batch of the next 200 lines given up",
        || log_has(&log, "an output failed a batch read from this file"),
    );
    es.with(|s| s.unavailable = false);
    es.wait_for_messages(
        "logs",
        &[&second],
        Duration::from_secs(60),
        "the 200 lines given up stored after all",
    );
    stop_cleanly(&mut trawl);
    assert_once(&es, &[&first, &second]);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.contains("file truncated"),
        "reading again after the failure was taken for a truncation:\n{text}"
    );
}
