//! A reload that fixes a broken `elasticsearch` output (a wrong port, as a typo in `hosts`)
//! against a real OpenSearch node (`tests/support/opensearch.rs`): the old output cannot
//! deliver, so the reload retires it instead of waiting for it for ever, and the fixed output
//! delivers the lines the old one held (read again from the file) and what follows, each once.

use crate::support;

use std::path::Path;
use std::time::Duration;
use support::opensearch::OpenSearch;
use support::process::{assert_each_once, free_port, reload_fixing_the_output, wait_until};

const WAIT: Duration = Duration::from_secs(120);

fn pipeline(d: &Path, addr: &str, host: &str, index: &str, buffer: &str) -> String {
    format!(
        "data_dir: {data}\nhttp: {{ address: \"{addr}\", health: {{ output_failure_threshold: 1s }} }}\nshutdown_timeout: 2s\ninputs:\n  app:\n    type: file\n    paths: [\"{app}\"]\n    poll_interval: 50ms\n    scan_interval: 200ms\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"{host}\"]\n    index: {index}\n{buffer}    batch: {{ max_events: 100, timeout: 100ms }}\n    retry: {{ initial_backoff: 50ms, max_backoff: 1s }}\n    dead_letter: dead\n  dead:\n    type: file\n    path: {dl}\n",
        data = d.join("data").display(),
        app = d.join("app.log").display(),
        dl = d.join("dead.jsonl").display(),
    )
}

/// The user's day: a new pipeline goes out with a typo in the port; nothing arrives, `/health`
/// says so, the user fixes the file and reloads. The reload must take effect (before, it waited
/// for the broken output to deliver what it held, which it never could, and only a restart
/// helped) and every line must be in the index once: the held ones too, nothing dead-lettered.
#[test]
fn a_reload_fixing_a_wrong_host_delivers_what_the_broken_output_held() {
    fix_a_wrong_host("reload-fixed-host", "");
}

/// The same with a disk buffer: the file input's lines were acknowledged once on disk, so the
/// buffer, not the file, holds them: the fixed output replays them from it.
#[test]
fn a_reload_fixing_a_wrong_host_delivers_what_the_disk_buffer_held() {
    fix_a_wrong_host("reload-fixed-host-disk", "    buffer: { type: disk }\n");
}

fn fix_a_wrong_host(index: &str, buffer: &str) {
    let os = OpenSearch::shared();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = d.join("pipeline.yaml");
    let addr = format!("127.0.0.1:{}", free_port());
    // Nothing listens there: every request is refused.
    let wrong = format!("http://127.0.0.1:{}", free_port());
    let (_trawl, want) = reload_fixing_the_output(
        d,
        &cfg,
        &addr,
        (
            &pipeline(d, &addr, &wrong, index, buffer),
            &pipeline(d, &addr, &os.url, index, buffer),
        ),
        WAIT,
    );
    wait_until(WAIT, "every line in the index", || {
        os.copies_by_message(index).len() >= want.len()
    });
    assert_each_once(&os.copies_by_message(index), &want);
    assert!(
        !d.join("dead.jsonl").exists()
            || std::fs::read_to_string(d.join("dead.jsonl"))
                .unwrap_or_default()
                .is_empty(),
        "nothing dead-lettered"
    );
}
