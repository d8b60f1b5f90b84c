//! The .deb under a real systemd: a Debian container (debootstrap, podman `--systemd=always`)
//! whose PID 1 is systemd installs the package, `systemctl start`s and `reload`s trawl (the
//! unit's ExecReload: a changed pipeline is counted in /metrics, a broken one fails the reload
//! and keeps the service), `apt-get remove` stops it, and a reinstall resumes from the kept
//! registry (nothing twice, nothing lost). Measured here on 2 busy cores: 96 s, and 264 s the
//! first time, when the base is made with debootstrap (network needed then only).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs where podman, runc, debootstrap and dpkg-deb are installed, as root (scripts/setup.sh
/// installs them), unless TRAWL_TEST_SYSTEMD=0; otherwise skipped loudly, and a failure in CI
/// (`CI=true`).
fn enabled() -> bool {
    if std::env::var_os("TRAWL_TEST_SYSTEMD").is_some_and(|v| v == "0") {
        eprintln!("skipped: TRAWL_TEST_SYSTEMD=0");
        return false;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = ["podman", "runc", "debootstrap", "dpkg-deb"]
        .into_iter()
        .filter(|tool| !std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
        .collect();
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if missing.is_empty() && root {
        return true;
    }
    let why = if root {
        format!(
            "{} not installed (scripts/setup.sh installs them)",
            missing.join(", ")
        )
    } else {
        "not root (debootstrap needs it)".to_owned()
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "the .deb under systemd cannot run: {why}"
    );
    eprintln!("skipped: the .deb under systemd: {why}");
    false
}

fn storage() -> PathBuf {
    root().join("target/containers-systemd")
}

fn podman() -> Command {
    let s = storage();
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(s.join("root"))
        .arg("--runroot")
        .arg(s.join("run"))
        .args(["--storage-driver", "vfs"]);
    c
}

fn run(mut c: Command, what: &str) -> Output {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

const IMAGE: &str = "localhost/trawl-systemd:bookworm";

/// Debian with systemd as init and the libraries the package depends on, made once.
fn base_image() {
    let exists = podman()
        .args(["image", "exists", IMAGE])
        .status()
        .is_ok_and(|s| s.success());
    if exists {
        return;
    }
    let rootfs = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        rootfs.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut d = Command::new("debootstrap");
    d.args([
        "--variant=minbase",
        "--include=systemd,systemd-sysv,dbus,procps,libpcap0.8,libssl3,zlib1g",
        "bookworm",
    ])
    .arg(rootfs.path())
    .arg(std::env::var("DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into()));
    run(d, "debootstrap");
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(rootfs.path())
        .args(["-c", "."])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut import = podman();
    import
        .args([
            "import",
            "--change",
            "CMD [\"/lib/systemd/systemd\"]",
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "-",
            IMAGE,
        ])
        .stdin(tar.stdout.take().unwrap());
    run(import, "podman import");
    assert!(tar.wait().unwrap().success(), "tar of the base");
}

/// A running systemd container, removed on drop.
struct Machine {
    name: String,
}

impl Machine {
    fn start(pkg_dir: &Path) -> Machine {
        let name = format!("trawl-systemd-{}", std::process::id());
        let mut c = podman();
        c.args(["run", "-d", "--name", &name, "--systemd=always"])
            .args(["--runtime", "runc", "--network", "none"])
            .args([
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=4096:4096",
            ])
            .arg("-v")
            .arg(format!("{}:/pkg:ro", pkg_dir.display()))
            .args([IMAGE, "/lib/systemd/systemd"]);
        run(c, "podman run --systemd=always");
        let m = Machine { name };
        m.wait("systemd to be up", |m| {
            let s = m.sh_out("systemctl is-system-running || true");
            s.trim() == "running" || s.trim() == "degraded"
        });
        m
    }

    fn sh(&self, script: &str) -> Output {
        let mut c = podman();
        c.args(["exec", &self.name, "bash", "-c", script]);
        c.output().expect("podman exec")
    }

    fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "`{script}` failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn sh_out(&self, script: &str) -> String {
        String::from_utf8_lossy(&self.sh(script).stdout).into_owned()
    }

    fn wait(&self, what: &str, mut f: impl FnMut(&Machine) -> bool) {
        let start = Instant::now();
        while !f(self) {
            if start.elapsed() > Duration::from_secs(120) {
                let journal = self.sh_out("journalctl -u trawl --no-pager | tail -40");
                panic!("timed out after 120 s waiting for {what}; trawl's journal:\n{journal}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// trawl's /metrics, read with bash alone (the container has no HTTP client).
    fn metrics(&self) -> String {
        self.sh_out(
            "exec 3<>/dev/tcp/127.0.0.1/5066 && printf 'GET /metrics HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n' >&3 && cat <&3",
        )
    }

    fn messages(&self) -> Vec<String> {
        self.sh_out("cat /var/lib/trawl/out.jsonl 2>/dev/null || true")
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["message"].as_str().map(str::to_owned))
            .collect()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", "-t", "0", &self.name]).output();
    }
}

fn pipeline(label: &str) -> String {
    format!(
        "inputs:\n  app:\n    type: file\n    paths: [/var/log/app.log]\n    start_at: beginning\n    registry_flush: 100ms\n\
         processors:\n  - {{ type: add_fields, fields: {{ labels.pipeline: \"{label}\" }} }}\n\
         outputs:\n  out: {{ type: file, path: /var/lib/trawl/out.jsonl }}\n\
         data_dir: /var/lib/trawl\nhttp: {{ address: \"127.0.0.1:5066\" }}\n"
    )
}

#[test]
fn the_deb_starts_reloads_stops_on_remove_and_resumes_on_reinstall_under_systemd() {
    if !enabled() {
        return;
    }
    let started = Instant::now();
    base_image();
    let pkg = tempfile::tempdir().unwrap();
    let mut build = Command::new(root().join("packaging/deb/build.sh"));
    build
        .arg(pkg.path())
        .env("TRAWL_BIN", env!("CARGO_BIN_EXE_trawl"));
    run(build, "packaging/deb/build.sh");
    let deb = std::fs::read_dir(pkg.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().ends_with(".deb"))
        .expect("a .deb was built")
        .file_name();
    let deb = format!("/pkg/{}", deb.to_string_lossy());

    let m = Machine::start(pkg.path());
    let install = format!("DEBIAN_FRONTEND=noninteractive apt-get install -y -q {deb}");
    m.sh_ok(&install);
    assert_eq!(
        m.sh_out("systemctl is-enabled trawl").trim(),
        "enabled",
        "postinst enables the unit"
    );
    m.sh_ok(&format!(
        "cat > /etc/trawl/trawl.yaml <<'EOF'\n{}EOF",
        pipeline("one")
    ));
    m.sh_ok("seq -f 'first %05g' 0 99 >> /var/log/app.log");
    m.sh_ok("systemctl start trawl");
    m.wait("the first 100 lines", |m| m.messages().len() >= 100);
    let pid = m.sh_ok("systemctl show -p MainPID --value trawl");

    // `systemctl reload` with a changed pipeline: validated, SIGHUP, counted; same process.
    m.sh_ok(&format!(
        "cat > /etc/trawl/trawl.yaml <<'EOF'\n{}EOF",
        pipeline("two")
    ));
    m.sh_ok("systemctl reload trawl");
    m.wait("the reload in /metrics", |m| {
        m.metrics()
            .contains("trawl_config_reloads_total{result=\"success\"} 1")
    });
    m.sh_ok("seq -f 'second %05g' 0 99 >> /var/log/app.log");
    m.wait("the next 100 lines", |m| m.messages().len() >= 200);
    let out = m.sh_ok("grep 'second 00050' /var/lib/trawl/out.jsonl");
    assert!(out.contains("\"pipeline\":\"two\""), "{out}");
    assert_eq!(
        m.sh_ok("systemctl show -p MainPID --value trawl"),
        pid,
        "reloaded in place, not restarted"
    );

    // A broken pipeline: the reload command fails (ExecReload's validate) and trawl keeps
    // running the pipeline it has.
    m.sh_ok(
        "cp /etc/trawl/trawl.yaml /root/good.yaml && echo 'colour: blue' >> /etc/trawl/trawl.yaml",
    );
    assert!(
        !m.sh("systemctl reload trawl").status.success(),
        "a broken pipeline fails the reload"
    );
    assert_eq!(m.sh_out("systemctl is-active trawl").trim(), "active");
    m.sh_ok("cp /root/good.yaml /etc/trawl/trawl.yaml");

    // Remove: stopped by prerm, nothing left running, the registry kept.
    m.sh_ok("DEBIAN_FRONTEND=noninteractive apt-get remove -y -q trawl");
    assert_eq!(m.sh_out("systemctl is-active trawl").trim(), "inactive");
    let ps = m.sh_out("ps -eo comm");
    assert!(
        !ps.lines().any(|l| l.trim() == "trawl"),
        "trawl still running after remove:\n{ps}"
    );
    m.sh_ok("test -d /var/lib/trawl/registry");

    // Written while removed; a reinstall resumes after what was delivered.
    m.sh_ok("seq -f 'third %05g' 0 49 >> /var/log/app.log");
    m.sh_ok(&install);
    m.sh_ok("systemctl start trawl");
    m.wait("the 50 lines written while removed", |m| {
        m.messages().iter().any(|x| x == "third 00049")
    });
    m.sh_ok("systemctl stop trawl");
    let got = m.messages();
    let mut seen = std::collections::HashMap::new();
    for x in &got {
        *seen.entry(x.as_str()).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        twice.is_empty(),
        "sent again after the reinstall: {twice:?}"
    );
    assert_eq!(seen.len(), 250, "every line once");
    eprintln!("took {:?}", started.elapsed());
}
