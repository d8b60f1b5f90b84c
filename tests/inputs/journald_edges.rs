//! The `journald` input when the journal cannot be read: a cursor file journalctl refuses (set
//! aside, the journal read again) and a journalctl that cannot run (told on `/health`, not only
//! in a log line). Same tools and helpers as `journald.rs`: systemd's writer, the real journalctl.

use super::journald::{entries, have_tools, setup, write_entries, DEADLINE};
use crate::support::process::{free_port, http_get, wait_until};
use std::time::Duration;

/// A container image without journalctl, or a `journalctl:` path with a typo: nothing can be
/// read, and `/health` says so (it answered 200 while a warning said it once in the log);
/// once the program is there, entries flow and `/health` is 200 again.
#[test]
fn a_journalctl_that_cannot_run_shows_on_health_until_it_can() {
    if !have_tools() {
        return;
    }
    let s = setup("    start_at: beginning\n");
    let program = s.journal.parent().unwrap().join("bin").join("journalctl");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = std::fs::read_to_string(&s.config).unwrap().replace(
        "http: { enabled: false }",
        &format!("http: {{ address: \"{addr}\" }}"),
    );
    let cfg = cfg.replace(
        "    start_at: beginning\n",
        &format!(
            "    start_at: beginning\n    journalctl: {}\n",
            program.display()
        ),
    );
    std::fs::write(&s.config, cfg).unwrap();
    write_entries(
        &s.journal,
        1_764_700_000_000_000,
        &entries("e", 0..5, "app.service"),
    );
    let mut t = s.start();
    wait_until(DEADLINE, "/health naming journalctl", || {
        http_get(&addr, "/health")
            .is_some_and(|(code, body)| code == 503 && body.contains("cannot run"))
    });

    std::fs::create_dir_all(program.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(journalctl_path(), &program).unwrap();
    s.wait_for_count(5, "the entries once journalctl is there");
    wait_until(DEADLINE, "/health 200 again", || {
        http_get(&addr, "/health").is_some_and(|(code, _)| code == 200)
    });
    assert!(t.stop(Duration::from_secs(30)).success());
}

/// Where `journalctl` is on this machine.
fn journalctl_path() -> std::path::PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("journalctl"))
        .find(|p| p.exists())
        .expect("journalctl on PATH")
}

/// A cursor file journalctl refuses (edited by hand, a half-restored backup of `data_dir`):
/// journalctl failed on it at every retry, so the input read nothing, ever, while `/health`
/// said ok. It is set aside as the file input's unreadable registry is, and the journal read
/// from its start (entries sent again rather than lost, also with `start_at: end`).
#[test]
fn a_cursor_journalctl_refuses_is_set_aside_and_the_journal_read_from_its_start() {
    if !have_tools() {
        return;
    }
    let s = setup("    start_at: end\n");
    let registry = s.config.parent().unwrap().join("data").join("registry");
    std::fs::create_dir_all(&registry).unwrap();
    std::fs::write(registry.join("journald-host.cursor"), "not a cursor\n").unwrap();
    write_entries(
        &s.journal,
        1_764_800_000_000_000,
        &entries("kept", 0..5, "app.service"),
    );
    let mut t = s.start();
    s.wait_for_count(5, "the journal's entries despite the bad cursor");
    assert!(t.stop(Duration::from_secs(30)).success());
    assert_eq!(
        std::fs::read_to_string(registry.join("journald-host.cursor.corrupt")).unwrap(),
        "not a cursor\n"
    );
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(
        log.contains("not a cursor journalctl can seek to"),
        "not said: {log}"
    );
}
