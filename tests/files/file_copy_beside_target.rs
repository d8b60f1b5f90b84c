//! logrotate's `copytruncate` of a file read through a symlink under `paths` (a container log
//! read as `/var/log/containers/*.log`), with the copy written beside the link's target, out of
//! `paths`: the lines written between trawl's last read and the truncation are only in that
//! copy, and must be read from it, once, in the file's own stream.

use crate::support;

use std::time::Duration;
use support::process::{
    append, delivered_lines, free_port, numbered_lines, wait_until, write_file, Trawl,
};

fn signal(trawl: &Trawl, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child the test owns and has not reaped.
    let r = unsafe { libc::kill(trawl.child.id() as libc::pid_t, sig) };
    assert_eq!(r, 0, "sending signal {sig}");
}

#[test]
fn the_copy_beside_a_links_target_gives_the_lines_written_before_the_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let app = root.join("pods/shop_web-1_0000-0001/app");
    let links = root.join("containers");
    for d in [&app, &links] {
        std::fs::create_dir_all(d).unwrap();
    }
    let target = app.join("app.log");
    append(&target, &numbered_lines("old", 10));
    std::os::unix::fs::symlink(&target, links.join("web-1_shop_app-0001.log")).unwrap();
    let out = root.join("events.jsonl");
    let addr = format!("127.0.0.1:{}", free_port());
    let config = write_file(
        root,
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  logs:\n    type: file\n    paths: [\"{links}/*.log\"]\n    poll_interval: 100ms\n    scan_interval: 200ms\noutputs:\n  out:\n    type: file\n    path: {out}\n",
            data = root.join("data").display(),
            links = links.display(),
            out = out.display(),
        ),
    );
    let log = root.join("trawl.log");
    let mut trawl = Trawl::start(&config, Some(&log));
    wait_until(Duration::from_secs(60), "the first 10 lines", || {
        delivered_lines(&out, "old") == 10
    });
    // trawl stopped (SIGSTOP) so that it cannot read the late lines before the truncation:
    // they are only in the copy when it reads again.
    signal(&trawl, libc::SIGSTOP);
    append(&target, &numbered_lines("late", 5));
    std::fs::copy(&target, app.join("app.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&target)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&target, &numbered_lines("new", 2));
    signal(&trawl, libc::SIGCONT);
    wait_until(
        Duration::from_secs(60),
        "the 2 lines written after the truncation",
        || delivered_lines(&out, "new") == 2,
    );
    wait_until(
        Duration::from_secs(30),
        "the 5 lines written before the truncation, from the copy beside the target",
        || delivered_lines(&out, "late") == 5,
    );
    assert!(trawl.stop(Duration::from_secs(60)).success());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        (
            delivered_lines(&out, "old"),
            delivered_lines(&out, "late"),
            delivered_lines(&out, "new")
        ),
        (10, 5, 2),
        "every line once; log:\n{text}"
    );
}
