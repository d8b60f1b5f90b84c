//! The container image, built here by scripts/build-image.sh (buildah, no daemon) and run with
//! podman: `trawl validate` on every shipped pipeline, stdin to stdout, `trawl pcap` on a
//! capture, live capture on the container's loopback with NET_RAW alone (and a clear error
//! without it), the static forwarder in an image that holds nothing else, and the .deb's
//! remove/purge in a container.
//! Runs wherever podman, buildah, runc and debootstrap are installed, as root (3.5 to 4.5
//! minutes here, 5.5 the first time, when the base is made); skipped loudly elsewhere or with
//! TRAWL_TEST_IMAGE=0, and a failure in CI (`CI=true`).

use crate::support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::image::{enabled, events, image, output_within, podman, root, run_args, run_in_image};
use support::process::shared_dir;

#[test]
fn shipped_pipelines_validate_inside_the_image() {
    if !enabled() {
        return;
    }
    let mut files = Vec::new();
    for dir in ["pipelines", "pipelines/tee", "pipelines/examples"] {
        for e in std::fs::read_dir(root().join(dir))
            .expect("pipelines")
            .flatten()
        {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "yaml") {
                files.push(
                    p.strip_prefix(root().join("pipelines"))
                        .expect("under")
                        .to_owned(),
                );
            }
        }
    }
    assert!(files.len() > 5, "{files:?}");
    // One container validates them all (a container start costs seconds on vfs storage); each
    // file's verdict is a line of its own, and every file must have one.
    let mut script = String::new();
    for f in &files {
        let name = f.to_str().expect("utf-8");
        let tee = if f.starts_with("tee") { " --tee" } else { "" };
        script.push_str(&format!(
            "if err=$(trawl validate -c '/etc/trawl/pipelines/{name}'{tee} 2>&1); then echo 'ok {name}'; \
             else echo 'FAILED {name}'; printf '%s\\n' \"$err\"; fi\n"
        ));
    }
    let env = [
        "-e",
        "ELASTICSEARCH_HOST=es.example",
        "-e",
        "ELASTICSEARCH_PASSWORD=secret",
        "-e",
        "TRAWL_HTTP_TOKEN=token",
        "-e",
        "KAFKA_BROKERS=127.0.0.1:9092",
        "-e",
        "PCAP=capture.pcap",
        "-e",
        "NODE_NAME=node-1",
        "-e",
        "POD_NAME=web-1",
        "-e",
        "POD_NAMESPACE=prod",
        "-e",
        "POD_IP=10.0.0.5",
        "--entrypoint",
        "bash",
    ];
    let out = run_in_image(&env, &["-c", &script], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in &files {
        let ok = format!("ok {}", f.display());
        assert!(
            text.lines().any(|l| l == ok),
            "{} did not validate in the image:\n{text}",
            f.display()
        );
    }
}

#[test]
fn stdin_to_stdout_as_the_image_user_without_any_capability() {
    if !enabled() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("p.yaml"),
        "inputs: { in: { type: stdin } }\noutputs: { out: { type: stdout } }\n",
    )
    .expect("write");
    let vol = format!("{}:/t:ro", dir.path().display());
    let lines: String = (0..1000).map(|i| format!("line {i}\n")).collect();
    // No capability at all: the binary's file capabilities (`=p`) must not stop it from starting.
    let out = run_in_image(
        &["-i", "--cap-drop", "ALL", "-v", &vol],
        &["run", "-c", "/t/p.yaml"],
        Some(lines.as_bytes()),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<String> = events(&out)
        .iter()
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect();
    let want: Vec<String> = (0..1000).map(|i| format!("line {i}")).collect();
    assert_eq!(got, want);
    // Not root where capture is not needed.
    let id = run_in_image(&["--entrypoint", "id"], &["-u"], None);
    assert_eq!(String::from_utf8_lossy(&id.stdout).trim(), "65532");
}

#[test]
fn pcap_file_decoded_inside_the_image() {
    if !enabled() {
        return;
    }
    let dir = shared_dir().join("data/pcaps/suricata-verify/http-all-headers");
    let vol = format!("{}:/data:ro", dir.display());
    let out = run_in_image(
        &["-v", &vol],
        &["pcap", "/data/input.pcap", "--only", "http"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ev = events(&out);
    // The capture holds one transaction: GET /download.html answered 200.
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["http"]["request"]["method"], "GET");
    assert_eq!(ev[0]["url"]["path"], "/download.html");
    assert_eq!(ev[0]["http"]["response"]["status_code"], 200);
}

/// The container script of the live capture: trawl captures HTTP on `lo` while bash asks trawl's
/// own /health over the loopback; every wait is bounded.
const LIVE: &str = r#"
trawl run -c /t/p.yaml > /tmp/out 2> /tmp/err & pid=$!
for i in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/5067) 2>/dev/null && break
  sleep 0.1
done
# The monitoring address answers before the capture thread has its handle open: probes sent in
# between are not on the wire trawl reads. Wait for the capture to say it is running.
for i in $(seq 100); do
  grep -q capturing /tmp/err && break
  sleep 0.1
done
for i in 1 2 3; do
  exec 3<>/dev/tcp/127.0.0.1/5067
  printf 'GET /health?probe=%s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$i" >&3
  timeout 10 cat <&3 > /dev/null; exec 3<&-
done
sleep 2; kill -TERM $pid; wait $pid; echo "exit=$?" >&2
echo "uid=$(id -u)" >&2; cat /tmp/err >&2; cat /tmp/out
"#;

fn capture_pipeline(dir: &Path) {
    std::fs::write(
        dir.join("p.yaml"),
        "inputs:\n  http: { type: http, capture: { interfaces: [lo] }, ports: [5067] }\n\
         outputs: { out: { type: stdout } }\n\
         data_dir: /tmp/trawl\nhttp: { address: 127.0.0.1:5067 }\n",
    )
    .expect("write");
}

#[test]
fn live_capture_on_loopback_with_net_raw_only() {
    if !enabled() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    capture_pipeline(dir.path());
    let vol = format!("{}:/t:ro", dir.path().display());
    let caps = [
        "--cap-drop",
        "ALL",
        "--cap-add",
        "NET_RAW",
        "-v",
        &vol,
        "--entrypoint",
        "bash",
    ];
    let out = run_in_image(&caps, &["-c", LIVE], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exit=0"), "trawl did not stop cleanly:\n{err}");
    // As the image's user: the capability comes from the binary's permitted set, raised by trawl.
    assert!(err.contains("uid=65532"), "{err}");
    let probes: Vec<String> = events(&out)
        .iter()
        .filter(|e| e["http"]["response"]["status_code"] == 200)
        .filter_map(|e| e["url"]["original"].as_str().map(str::to_owned))
        .collect();
    for i in 1..=3 {
        assert!(
            probes.contains(&format!("/health?probe={i}")),
            "probe {i} not captured: {probes:?}\n{err}"
        );
    }
}

#[test]
fn capture_without_net_raw_says_it_needs_net_raw() {
    if !enabled() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    capture_pipeline(dir.path());
    let vol = format!("{}:/t:ro", dir.path().display());
    let script = r#"
trawl run -c /t/p.yaml > /tmp/out 2> /tmp/err & pid=$!
for i in $(seq 300); do grep -q NET_RAW /tmp/err && break; sleep 0.1; done
kill -TERM $pid; wait $pid; echo "exit=$?" >&2; cat /tmp/err >&2
"#;
    let out = run_in_image(
        &["--cap-drop", "ALL", "-v", &vol, "--entrypoint", "bash"],
        &["-c", script],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    // Said once, when the input starts (not per interface or per refresh).
    assert_eq!(
        err.matches("live capture needs the capability NET_RAW")
            .count(),
        1,
        "no clear word on NET_RAW:\n{err}"
    );
    // trawl itself started (the exec was not refused) and stopped on SIGTERM.
    assert!(err.contains("SIGTERM received"), "{err}");
}

#[test]
fn forwarder_runs_in_an_image_with_nothing_else() {
    if !enabled() {
        return;
    }
    // The receiving trawl (the sidecar), its socket in a folder shared with the app container.
    let dir = tempfile::tempdir().expect("temp dir");
    let sock_dir = dir.path().join("run");
    std::fs::create_dir(&sock_dir).expect("mkdir");
    // As in the sidecar manifest: both containers share a group, the socket is group-writable.
    std::os::unix::fs::chown(&sock_dir, Some(0), Some(65532)).expect("chown");
    std::fs::set_permissions(
        &sock_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o2770),
    )
    .expect("chmod");
    std::fs::write(
        dir.path().join("p.yaml"),
        "inputs: { app: { type: socket, address: 'unix:/run/trawl/app.sock', format: json } }\n\
         outputs: { out: { type: stdout } }\ndata_dir: /tmp/trawl\nhttp: { enabled: false }\n",
    )
    .expect("write");
    let conf = format!("{}:/t:ro", dir.path().display());
    let run = format!("{}:/run/trawl", sock_dir.display());
    let name = format!("trawl-sidecar-{}", std::process::id());
    // Removed however the test ends: it runs detached.
    struct Container(String);
    impl Drop for Container {
        fn drop(&mut self) {
            let _ = podman()
                .args(["rm", "-f", &self.0])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
    let _sidecar = Container(name.clone());
    let mut start = podman();
    // Not `--rm`: its output is read after it stops.
    let args: Vec<String> = run_args(&[
        "-d", "--name", &name, "--user", "0", "-v", &conf, "-v", &run,
    ])
    .into_iter()
    .filter(|a| a != "--rm")
    .collect();
    start
        .args(args)
        .args(["--entrypoint", "sh", image(), "-c"])
        .arg("umask 0007 && exec trawl run -c /t/p.yaml");
    let started = output_within(start, None, Duration::from_secs(120));
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sock_dir.join("app.sock").exists() {
        assert!(
            Instant::now() < deadline,
            "the sidecar's socket never appeared"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The app image: the image's forwarder and nothing else (no libc, no loader, no shell), run
    // as a stranger user, as the sidecar manifest's init container copies it.
    let copy_dir = tempfile::tempdir().expect("temp dir");
    let store = root().join("target/containers");
    let cname = format!("trawl-forwarder-{}", std::process::id());
    let mut create = podman();
    create.args(["create", "--name", &cname, image()]);
    let created = output_within(create, None, Duration::from_secs(120));
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let mut cp = podman();
    cp.arg("cp")
        .arg(format!("{cname}:/usr/lib/trawl/trawl-forward"))
        .arg(copy_dir.path());
    let copied = output_within(cp, None, Duration::from_secs(120));
    let mut rm = podman();
    rm.args(["rm", "-f", &cname]);
    output_within(rm, None, Duration::from_secs(60));
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    let mut app = Command::new("buildah");
    app.arg("--root")
        .arg(store.join("root"))
        .arg("--runroot")
        .arg(store.join("run"))
        .args(["--storage-driver", "vfs", "from", "scratch"]);
    let ctr = output_within(app, None, Duration::from_secs(60));
    let ctr = String::from_utf8_lossy(&ctr.stdout).trim().to_owned();
    let buildah = |args: &[&str]| {
        let mut c = Command::new("buildah");
        c.arg("--root")
            .arg(store.join("root"))
            .arg("--runroot")
            .arg(store.join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args);
        let out = output_within(c, None, Duration::from_secs(120));
        assert!(
            out.status.success(),
            "buildah {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // One file at /trawl/trawl-forward, where the manifest's init container puts it (copying
    // the folder to /trawl and then running `/trawl` was the old test's "permission denied":
    // exec of a directory).
    let file = copy_dir.path().join("trawl-forward");
    buildah(&[
        "copy",
        "--chmod",
        "0755",
        &ctr,
        file.to_str().expect("utf-8"),
        "/trawl/trawl-forward",
    ]);
    buildah(&["commit", "--rm", &ctr, "localhost/trawl-app-test"]);
    let mut c = podman();
    c.args(run_args(&[
        "--user",
        "1234:1234",
        "--group-add",
        "65532",
        "-v",
        &run,
    ]))
    .args([
        "localhost/trawl-app-test",
        "/trawl/trawl-forward",
        "--log-level",
        "error",
    ])
    .args([
        "--forward",
        "unix:/run/trawl/app.sock",
        "--spill-dir",
        "/run/trawl",
        "--",
    ])
    // The app: the only program in the image.
    .args(["/trawl/trawl-forward", "--version"]);
    let app_out = output_within(c, None, Duration::from_secs(120));

    // Stop the sidecar (it drains on SIGTERM), then read what it shipped.
    let mut stop = podman();
    stop.args(["stop", "-t", "30", &name]);
    // 30 s of drain at most, and whatever the storage lock costs while another build holds it.
    output_within(stop, None, Duration::from_secs(300));
    let mut logs = podman();
    logs.args(["logs", &name]);
    let shipped = output_within(logs, None, Duration::from_secs(60));

    assert!(
        app_out.status.success(),
        "{}",
        String::from_utf8_lossy(&app_out.stderr)
    );
    let version = String::from_utf8_lossy(&app_out.stdout).trim().to_owned();
    assert!(
        version.starts_with("trawl-forward "),
        "app output not passed through: {version:?}"
    );
    let got: Vec<String> = events(&shipped)
        .iter()
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        got,
        [version],
        "{}",
        String::from_utf8_lossy(&shipped.stderr)
    );
}

#[test]
fn deb_keeps_state_on_remove_and_cleans_it_on_purge() {
    if !enabled() {
        return;
    }
    image();
    let out_dir = tempfile::tempdir().expect("temp dir");
    let out = output_within(
        {
            let mut c = Command::new(root().join("packaging/deb/build.sh"));
            c.arg(out_dir.path())
                .env("TRAWL_BIN", env!("CARGO_BIN_EXE_trawl"));
            c
        },
        None,
        Duration::from_secs(300),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The packaged binary is stripped: no symbol table.
    let deb = std::fs::read_dir(out_dir.path())
        .expect("deb folder")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("a .deb");
    let tree = tempfile::tempdir().expect("temp dir");
    let x = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(tree.path())
        .status();
    assert!(x.is_ok_and(|s| s.success()), "dpkg-deb -x failed");
    let sections = Command::new("readelf")
        .arg("-S")
        .arg(tree.path().join("usr/bin/trawl"))
        .output()
        .expect("readelf runs");
    assert!(sections.status.success());
    assert!(
        !String::from_utf8_lossy(&sections.stdout).contains(".symtab"),
        "not stripped"
    );
    let vol = format!("{}:/deb:ro", out_dir.path().display());
    // In the image (it has the libraries), as root: install, remove, purge.
    let script = r#"set -e
dpkg -i /deb/*.deb > /dev/null
trawl --version > /dev/null
mkdir -p /var/lib/trawl/registry && echo offsets > /var/lib/trawl/registry/state
dpkg -r trawl > /dev/null
test ! -e /usr/bin/trawl || { echo "binary left after remove"; exit 1; }
test -e /var/lib/trawl/registry/state || { echo "state removed on remove"; exit 1; }
dpkg -P trawl > /dev/null
test ! -e /var/lib/trawl || { echo "state left after purge"; exit 1; }
echo lifecycle-ok"#;
    let run = run_in_image(
        &["--user", "0", "-v", &vol, "--entrypoint", "sh"],
        &["-c", script],
        None,
    );
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(
        text.contains("lifecycle-ok"),
        "{text}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
}
