//! The `journald` input when the journal under it changes or cannot be read: a saved cursor
//! whose entry was vacuumed while trawl was stopped, or that the input's changed matches no
//! longer read (nothing after it is lost, and it is said), a cursor file journalctl refuses
//! (set aside, the journal read again) and a journalctl that cannot run (told on `/health`).
//! Same tools and helpers as `journald.rs`: systemd's own writer and the real journalctl.

use super::journald::{entries, have_tools, messages, setup, write_entries, DEADLINE};
use crate::support::process::{free_port, http_get, wait_until};
use std::time::Duration;

/// A host vacuums its journal (`journalctl --vacuum-time`, or a small `SystemMaxUse`) while
/// trawl is stopped for an upgrade: the entry of the saved cursor is gone, and every entry of
/// the journal that is left must still be shipped. journalctl's `--after-cursor` skipped the
/// first of them without a word, as if it were the cursor's own entry.
#[test]
fn entries_after_a_vacuumed_cursor_are_all_read_and_the_gap_is_said() {
    if !have_tools() {
        return;
    }
    let s = setup("    start_at: beginning\n");
    write_entries(
        &s.journal,
        1_764_600_000_000_000,
        &entries("old", 0..20, "app.service"),
    );
    let mut t = s.start();
    s.wait_for_count(20, "the first journal's entries");
    assert!(t.stop(Duration::from_secs(30)).success());

    // Vacuumed: the file holding the cursor's entry is deleted; later entries are in a new one.
    for f in std::fs::read_dir(&s.journal).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    write_entries(
        &s.journal,
        1_764_600_100_000_000,
        &entries("new", 0..10, "app.service"),
    );
    let mut t = s.start();
    // Entries come in journal order: once the last is there, the first would be too.
    wait_until(DEADLINE, "the last entry of the new journal", || {
        messages(&s.out).iter().any(|m| m == "new 00009")
    });
    assert!(t.stop(Duration::from_secs(30)).success());
    let got = messages(&s.out);
    for i in 0..10 {
        let m = format!("new {i:05}");
        assert!(got.contains(&m), "{m} lost; got {got:?}");
    }
    assert_eq!(got.len(), 30, "each entry once: {got:?}");
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(
        log.contains("saved journal cursor's entry is not among the entries this input reads"),
        "the vacuumed cursor was not said: {log}"
    );
}

/// An operator narrows an input's `units` while trawl is stopped: the saved cursor is a
/// `db.service` entry the input no longer reads. The first `web.service` entry after it was
/// skipped (`--after-cursor` steps over one entry whatever it is). Then the reverse, with
/// nothing matching after the cursor yet: the input must wait for new entries and read them
/// (journalctl's `--cursor` with `--follow` waits forever there).
#[test]
fn a_changed_match_reads_every_matching_entry_after_the_saved_cursor() {
    if !have_tools() {
        return;
    }
    let units = |u: &str| format!("    start_at: beginning\n    units: [{u}]\n");
    let s = setup(&units("web.service, db.service"));
    let base = std::fs::read_to_string(&s.config).unwrap();
    let config = |u: &str| {
        let text = base.replace(&units("web.service, db.service"), &units(u));
        std::fs::write(&s.config, text).unwrap();
    };
    write_entries(
        &s.journal,
        1_764_700_000_000_000,
        &entries("web", 0..10, "web.service"),
    );
    write_entries(
        &s.journal,
        1_764_700_100_000_000,
        &entries("db", 0..5, "db.service"),
    );
    let mut t = s.start();
    s.wait_for_count(15, "web and db entries");
    assert!(t.stop(Duration::from_secs(30)).success());

    // The cursor is `db 00004`; the input now reads web only.
    write_entries(
        &s.journal,
        1_764_700_200_000_000,
        &entries("web", 10..20, "web.service"),
    );
    config("web.service");
    let mut t = s.start();
    wait_until(DEADLINE, "web 00019", || {
        messages(&s.out).iter().any(|m| m == "web 00019")
    });
    assert!(t.stop(Duration::from_secs(30)).success());
    let got = messages(&s.out);
    assert!(
        got.iter().any(|m| m == "web 00010"),
        "web 00010 skipped: {got:?}"
    );

    // The cursor is `web 00019`; the input now reads db only, and no db entry is there yet.
    config("db.service");
    let mut t = s.start();
    std::thread::sleep(Duration::from_millis(500));
    write_entries(
        &s.journal,
        1_764_700_300_000_000,
        &entries("db", 5..10, "db.service"),
    );
    wait_until(DEADLINE, "db entries written after the start", || {
        messages(&s.out).iter().any(|m| m == "db 00009")
    });
    assert!(t.stop(Duration::from_secs(30)).success());
    let got = messages(&s.out);
    assert_eq!(got.len(), 30, "every entry once: {got:?}");
}

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

/// A journald input renamed in the pipeline file (`host` → `system`) while trawl was stopped
/// and the journal grew. Without `take_over`, `trawl validate` warns, naming the former cursor:
/// the renamed input would start at `start_at` (here the whole journal again). With
/// `take_over: host` it resumes after the former input's last entry: what was written while
/// trawl was stopped arrives, and nothing twice.
#[test]
fn a_renamed_input_is_warned_of_and_with_take_over_resumes_from_the_former_cursor() {
    if !have_tools() {
        return;
    }
    let s = setup("    start_at: beginning\n");
    write_entries(
        &s.journal,
        1_764_700_000_000_000,
        &entries("a", 0..20, "app.service"),
    );
    let mut t = s.start();
    s.wait_for_count(20, "the former input's entries");
    assert!(t.stop(Duration::from_secs(30)).success());
    write_entries(
        &s.journal,
        1_764_700_100_000_000,
        &entries("b", 0..15, "app.service"),
    );

    let text = std::fs::read_to_string(&s.config).unwrap();
    let renamed = text.replace("  host:\n", "  system:\n");
    assert_ne!(renamed, text, "the input is named `host` in the setup");
    std::fs::write(&s.config, &renamed).unwrap();
    let validate = || {
        let v = std::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
            .args(["validate", "-c"])
            .arg(&s.config)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&v.stderr).into_owned();
        assert!(v.status.success(), "{said}");
        said
    };
    let said = validate();
    assert!(
        said.contains("journald input `system` has no journal cursor yet")
            && said.contains("journald-host.cursor (a cursor")
            && said.contains("take_over"),
        "validate names the former cursor: {said}"
    );

    std::fs::write(
        &s.config,
        renamed.replace("  system:\n", "  system:\n    take_over: host\n"),
    )
    .unwrap();
    let said = validate();
    assert!(!said.contains("warning"), "{said}");
    let mut t = s.start();
    wait_until(DEADLINE, "the entries written while stopped", || {
        messages(&s.out).iter().any(|m| m == "b 00014")
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(t.stop(Duration::from_secs(30)).success());
    let log = std::fs::read_to_string(&s.log).unwrap_or_default();
    assert!(log.contains("took over the journal cursor"), "{log}");
    let got = messages(&s.out);
    let mut want: Vec<String> = (0..20).map(|i| format!("a {i:05}")).collect();
    want.extend((0..15).map(|i| format!("b {i:05}")));
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(sorted, want, "each entry once");
}
