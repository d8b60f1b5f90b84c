//! The container image for the tests that run it: built once per test run by
//! scripts/build-image.sh (buildah, no daemon) into target/containers, run with podman and runc;
//! and whether it can be here at all (tools, root, TRAWL_TEST_IMAGE=0, CI).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether the image can be built and run here: podman, buildah, runc and debootstrap installed
/// (scripts/setup.sh installs them) and root (debootstrap, chroot builds), and not turned off
/// with TRAWL_TEST_IMAGE=0. Otherwise the tests say so loudly and pass, except in CI
/// (`CI=true`), where they fail.
pub fn enabled() -> bool {
    static WHY_NOT: OnceLock<Option<String>> = OnceLock::new();
    let why_not = WHY_NOT.get_or_init(|| {
        if std::env::var_os("TRAWL_TEST_IMAGE").is_some_and(|v| v == "0") {
            return Some("TRAWL_TEST_IMAGE=0".into());
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        let missing: Vec<&str> = ["podman", "buildah", "runc", "debootstrap"]
            .into_iter()
            .filter(|tool| !std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
            .collect();
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        match (missing.is_empty(), root) {
            (true, true) => None,
            (false, _) => Some(format!(
                "{} not installed (scripts/setup.sh installs them)",
                missing.join(", ")
            )),
            (true, false) => {
                Some("not root (debootstrap and buildah's chroot builds need it)".into())
            }
        }
    });
    match why_not {
        None => true,
        Some(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("the image tests cannot run in CI: {why}")
        }
        Some(why) => {
            eprintln!("SKIPPED: the image is not built or run here: {why}");
            println!("SKIPPED: the image is not built or run here: {why}");
            false
        }
    }
}

/// podman on the storage scripts/build-image.sh builds into.
pub fn podman() -> Command {
    let store = root().join("target/containers");
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(store.join("root"))
        .arg("--runroot")
        .arg(store.join("run"))
        .args(["--storage-driver", "vfs"]);
    c
}

/// `podman run` with what this machine needs (runc, explicit limits); `extra` before the image.
pub fn run_args(extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "run",
        "--rm",
        "--runtime",
        "runc",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=4096:4096",
        // Only the container's own loopback: no bridge or veth on the host, where other tests
        // capture (the live capture here is on the container's `lo`).
        "--network",
        "none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// Runs `cmd` to completion, killed after `limit`.
pub fn output_within(mut cmd: Command, stdin: Option<&[u8]>, limit: Duration) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("podman runs");
    if let Some(data) = stdin {
        use std::io::Write;
        let mut w = child.stdin.take().expect("stdin");
        w.write_all(data).expect("feed stdin");
    }
    let pid = child.id();
    let deadline = Instant::now() + limit;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(out) => return out.expect("podman output"),
            Err(_) if Instant::now() > deadline => {
                // SAFETY: signalling our own child by pid.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                panic!("{cmd:?} did not finish within {limit:?}");
            }
            Err(_) => {}
        }
    }
}

/// Builds the image once per test run; its name.
pub fn image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let mut c = Command::new(root().join("scripts/build-image.sh"));
        // The binary this test run was built with, not a second `cargo build`.
        c.arg("localhost/trawl:test")
            .env("TRAWL_BIN", env!("CARGO_BIN_EXE_trawl"));
        let out = output_within(c, None, Duration::from_secs(3600));
        assert!(
            out.status.success(),
            "build-image.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    })
}

pub fn run_in_image(extra: &[&str], args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut c = podman();
    c.args(run_args(extra)).arg(image()).args(args);
    output_within(c, stdin, Duration::from_secs(300))
}

pub fn events(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
