//! `trawl-forward` (forwarder/, built by scripts/build-forwarder.sh), the program the sidecar
//! manifest puts in app containers: linked statically (no loader, no shared library), and
//! shipping to a real trawl's socket input what `trawl tee --forward` ships, spooled while
//! the sidecar is down, with the app's output passed through and its exit code returned.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the forwarder once per test run; its path.
fn forwarder() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new(root().join("scripts/build-forwarder.sh"))
            .output()
            .expect("scripts/build-forwarder.sh runs");
        assert!(
            out.status.success(),
            "build-forwarder.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

fn readelf(flag: &str, file: &Path) -> String {
    let out = Command::new("readelf")
        .arg(flag)
        .arg(file)
        .output()
        .expect("readelf runs (binutils)");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_forwarder_needs_no_loader_and_no_shared_library() {
    let bin = forwarder();
    let headers = readelf("-l", bin);
    assert!(
        !headers.contains("INTERP"),
        "the forwarder asks for a program interpreter:\n{headers}"
    );
    let dynamic = readelf("-d", bin);
    assert!(
        !dynamic.contains("(NEEDED)"),
        "the forwarder links shared libraries:\n{dynamic}"
    );
    // It starts: static glibc start-up and Rust's runtime initialisation run.
    let out = Command::new(bin).arg("--version").output().expect("runs");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("trawl-forward "));
}

#[test]
fn lines_spooled_while_the_sidecar_is_down_reach_it_as_trawl_tee_sends_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let sock = d.join("app.sock");
    // 2,000 stdout lines while nothing listens (past the 4 KiB memory buffer: they spill to
    // disk), one stderr line, one line past --max-line-bytes, a pause during which the sidecar
    // starts, a last line without its newline, and exit status 3.
    let script = "i=0; while [ $i -lt 2000 ]; do echo \"early line $i\"; i=$((i+1)); done; \
                  echo 'on stderr' >&2; printf '%0300d\\n' 7; sleep 2; printf 'late line'; exit 3";
    let passed = d.join("passed.out");
    let mut fwd = Command::new(forwarder())
        .args(["--log-level", "off", "--forward"])
        .arg(format!("unix:{}", sock.display()))
        .args(["--memory-buffer", "4KiB", "--max-line-bytes", "256"])
        .arg("--spill-dir")
        .arg(d)
        .args(["--", "sh", "-c", script])
        .stdout(std::fs::File::create(&passed).expect("create"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("the forwarder starts");
    let pid = fwd.id();
    std::thread::sleep(Duration::from_millis(800));
    let side_cfg = d.join("side.yaml");
    std::fs::write(
        &side_cfg,
        format!(
            "data_dir: {0}/data\nhttp: {{ enabled: false }}\ninputs:\n  app: {{ type: socket, address: \"unix:{1}\", format: json }}\noutputs:\n  out: {{ type: stdout }}\n",
            d.display(),
            sock.display()
        ),
    )
    .expect("write");
    let side_out = d.join("side.json");
    let mut side = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(["--log-level", "off", "run", "-c"])
        .arg(&side_cfg)
        .stdout(std::fs::File::create(&side_out).expect("create"))
        .spawn()
        .expect("trawl starts");
    let fwd_out = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if fwd.try_wait().expect("wait").is_some() {
                break fwd.wait_with_output().expect("output");
            }
            if Instant::now() > deadline {
                let _ = fwd.kill();
                let _ = side.kill();
                panic!("the forwarder did not exit within 60s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let text = std::fs::read_to_string(&side_out).unwrap_or_default();
        let events: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if events.len() >= 2003 || Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = side.kill();
    let _ = side.wait();

    assert_eq!(fwd_out.status.code(), Some(3), "the app's exit status");
    assert_eq!(String::from_utf8_lossy(&fwd_out.stderr), "on stderr\n");
    let mut want_out: String = (0..2000).map(|i| format!("early line {i}\n")).collect();
    want_out.push_str(&format!("{:0300}\n", 7));
    want_out.push_str("late line");
    assert!(
        std::fs::read_to_string(&passed).expect("read") == want_out,
        "stdout not passed through byte for byte"
    );

    let stdout: Vec<&Value> = events.iter().filter(|e| e["stream"] == "stdout").collect();
    let stderr: Vec<&Value> = events.iter().filter(|e| e["stream"] == "stderr").collect();
    assert_eq!(
        (stdout.len(), stderr.len()),
        (2002, 1),
        "every line once, nothing else"
    );
    for (i, e) in stdout[..2000].iter().enumerate() {
        assert_eq!(e["message"], format!("early line {i}"), "in order");
    }
    let long = stdout[2000];
    assert_eq!(long["message"].as_str().map(str::len), Some(256));
    assert_eq!(long["log"]["flags"], serde_json::json!(["truncated"]));
    assert_eq!(stdout[2001]["message"], "late line");
    assert_eq!(stderr[0]["message"], "on stderr");
    // Stamped by the forwarder as trawl stamps events: RFC 3339, UTC, microseconds.
    let stamp = stdout[0]["@timestamp"].as_str().unwrap_or_default();
    assert!(
        stamp.len() == 27 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
        "{stamp:?}"
    );
    assert!(
        !d.join(format!("trawl-tee-{pid}.spill")).exists(),
        "spill file removed at exit"
    );
}
