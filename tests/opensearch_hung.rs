//! A hung OpenSearch node (its JVM stopped with SIGSTOP: connections stay open, nothing is
//! answered, as in a long GC pause or a frozen VM), through the real binary: `/health` turns 503
//! naming the output once a bulk request has gone unanswered past `output_failure_threshold`,
//! without waiting out `request_timeout` first, and once the node wakes every line written
//! meanwhile is stored, once (ids from the file's identity and offset), with no stall.

mod support {
    pub mod opensearch;
    pub mod process;
}

use std::path::Path;
use std::time::{Duration, Instant};
use support::opensearch::OpenSearch;
use support::process::{
    append, assert_each_once, free_port, health_turns_503, http_get, metric, sigterm, wait_until,
    write_file, Trawl,
};

fn lines(range: std::ops::Range<usize>) -> String {
    range.map(|i| format!("hung node line {i:05}\n")).collect()
}

fn pipeline(dir: &Path, addr: &str, url: &str) -> std::path::PathBuf {
    write_file(
        dir,
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{addr}\", health: {{ output_failure_threshold: 10s }} }}\nshutdown_timeout: 60s\ninputs:\n  app:\n    type: file\n    paths: [\"{log}\"]\n    poll_interval: 100ms\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"{url}\"]\n    index: hung\n    batch: {{ max_events: 100, timeout: 100ms }}\n    retry: {{ initial_backoff: 50ms, max_backoff: 1s }}\n",
            data = dir.join("data").display(),
            log = dir.join("app.log").display(),
        ),
    )
}

#[test]
fn a_hung_node_fails_health_past_the_threshold_and_loses_nothing() {
    let os = OpenSearch::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("trawl.log");
    let app = dir.path().join("app.log");
    append(&app, &lines(0..500));
    let mut trawl = Trawl::start(&pipeline(dir.path(), &addr, &os.url), Some(&log));
    let stored = || metric(&addr, "trawl_events_out_total", "es").unwrap_or(0.0) as usize;
    let health = || http_get(&addr, "/health").map(|(s, b)| (s, b.trim().to_owned()));
    wait_until(Duration::from_secs(90), "the first lines stored", || {
        stored() == 500
    });
    assert_eq!(health().map(|h| h.0), Some(200), "healthy while delivering");

    os.signal(libc::SIGSTOP);
    let stopped = Instant::now();
    append(&app, &lines(500..1000));
    // request_timeout is left at its default (60 s): the hang must show before it.
    let turned = health_turns_503(&addr, stopped, Duration::from_secs(35));
    let stored_while_hung = stored();
    os.signal(libc::SIGCONT);
    let (after, body) = turned.unwrap_or_else(|| {
        panic!(
            "/health still 200 35 s after the node hung with 500 lines waiting (threshold 10s); \
             trawl's log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    eprintln!(
        "/health 503 {:.1} s after the node hung: {body}",
        after.as_secs_f64()
    );
    assert!(
        after >= Duration::from_secs(9),
        "503 before the threshold: {after:?}"
    );
    assert!(body.contains("\"es\""), "the output named: {body}");
    assert_eq!(stored_while_hung, 500, "nothing stored while hung");

    wait_until(
        Duration::from_secs(120),
        "every line stored after the node woke",
        || stored() >= 1000,
    );
    wait_until(Duration::from_secs(10), "/health 200 again", || {
        health().is_some_and(|h| h.0 == 200)
    });
    sigterm(&trawl);
    let status = trawl.wait(Duration::from_secs(60));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.success(),
        "trawl exited with {status}; its log:\n{text}"
    );
    assert_eq!(
        text.matches("Elasticsearch does not answer").count(),
        1,
        "the hang logged once; the log:\n{text}"
    );

    let copies = os.copies_by_message("hung");
    // Ids from the lines' offsets: a bulk request sent again after the hang overwrites.
    let want: Vec<String> = lines(0..1000).lines().map(str::to_owned).collect();
    assert_each_once(&copies, &want);
}
