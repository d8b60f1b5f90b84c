//! `trawl run --watch-config` on a Kubernetes ConfigMap volume, laid out and updated as the
//! kubelet does it: the pipeline's own path never changes, only the `..data` symlink behind it is
//! swapped. Each update is reloaded, the unchanged file input keeps running, no line twice.

use crate::support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::process::{free_port, http_get, read_json_lines, reloads, wait_until, KillOnDrop};

const WAIT: Duration = Duration::from_secs(60);

/// A ConfigMap volume as the kubelet's AtomicWriter writes it: the data in a timestamped
/// folder, `..data` a symlink to it, each key a symlink through `..data`. An update writes a new
/// timestamped folder, points `..data_tmp` at it, renames that over `..data` and deletes the old
/// folder.
struct ConfigMapVolume {
    mount: PathBuf,
    generation: u32,
}

impl ConfigMapVolume {
    fn new(mount: &Path, key: &str, text: &str) -> ConfigMapVolume {
        std::fs::create_dir(mount).unwrap();
        let mut v = ConfigMapVolume {
            mount: mount.to_path_buf(),
            generation: 0,
        };
        v.update(key, text);
        std::os::unix::fs::symlink(format!("..data/{key}"), mount.join(key)).unwrap();
        v
    }

    fn folder(generation: u32) -> String {
        format!("..2026_12_01_08_00_00.{generation:09}")
    }

    fn update(&mut self, key: &str, text: &str) {
        self.generation += 1;
        let new = ConfigMapVolume::folder(self.generation);
        std::fs::create_dir(self.mount.join(&new)).unwrap();
        std::fs::write(self.mount.join(&new).join(key), text).unwrap();
        let tmp = self.mount.join("..data_tmp");
        std::os::unix::fs::symlink(&new, &tmp).unwrap();
        std::fs::rename(&tmp, self.mount.join("..data")).unwrap();
        if self.generation > 1 {
            let old = ConfigMapVolume::folder(self.generation - 1);
            std::fs::remove_dir_all(self.mount.join(old)).unwrap();
        }
    }
}

fn append(path: &Path, prefix: &str, n: usize) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let text: String = (0..n).map(|i| format!("{prefix} {i}\n")).collect();
    f.write_all(text.as_bytes()).unwrap();
}

/// The version label each delivered line got, by message; a line delivered twice fails.
fn versions(out: &Path) -> std::collections::HashMap<String, String> {
    let mut m = std::collections::HashMap::new();
    for v in read_json_lines(out) {
        let message = v["message"].as_str().unwrap_or_default().to_owned();
        let version = v["labels"]["version"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            m.insert(message.clone(), version).is_none(),
            "{message} delivered twice"
        );
    }
    m
}

/// Named both ways a manifest can: the key's path (the DaemonSet's
/// `-c /etc/trawl/config/pipeline.yaml`) and the mount folder (whose `..data` and timestamped
/// folders are not pipeline files). Two updates in a row: the second deletes the folder the
/// first one's file was read from.
#[test]
fn a_configmap_update_is_reloaded_by_watch_config() {
    for by_folder in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (app, out) = (d.join("app.log"), d.join("out.jsonl"));
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let pipeline = |version: &str| {
            format!(
                "data_dir: {}\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  app:\n    type: file\n    paths: [\"{}\"]\n    poll_interval: 50ms\n    scan_interval: 200ms\nprocessors:\n  - {{ type: add_fields, fields: {{ labels.version: \"{version}\" }} }}\noutputs:\n  sink: {{ type: file, path: \"{}\" }}\n",
                d.join("data").display(),
                app.display(),
                out.display()
            )
        };
        let mount = d.join("config");
        let mut volume = ConfigMapVolume::new(&mount, "pipeline.yaml", &pipeline("v1"));
        let source = if by_folder {
            mount.clone()
        } else {
            mount.join("pipeline.yaml")
        };
        let log = d.join("trawl.log");
        let _trawl = KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_trawl"))
                .args(["run", "--watch-config", "-c"])
                .arg(&source)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("starting trawl"),
        );
        let log = || std::fs::read_to_string(&log).unwrap_or_default();
        wait_until(WAIT, "the monitoring endpoint", || {
            http_get(&addr, "/health").is_some()
        });
        append(&app, "v1", 10);
        wait_until(WAIT, "10 lines", || versions(&out).len() == 10);

        for (n, version) in ["v2", "v3"].into_iter().enumerate() {
            volume.update("pipeline.yaml", &pipeline(version));
            wait_until(WAIT, &format!("reload {} ({version})", n + 1), || {
                reloads(&addr, "success") > n as u64
            });
            append(&app, version, 10);
            wait_until(WAIT, &format!("the lines written after {version}"), || {
                versions(&out).len() == 10 * (n + 2)
            });
        }
        let got = versions(&out);
        for (message, version) in &got {
            assert!(
                message.starts_with(&format!("{version} ")),
                "{message} labelled {version} (by folder: {by_folder}): {}",
                log()
            );
        }
        assert_eq!(reloads(&addr, "failure"), 0, "{}", log());
        assert_eq!(
            log().matches("file input starting").count(),
            1,
            "the unchanged input never restarted: {}",
            log()
        );
    }
}

/// A rollout with a configmap-reload sidecar (which sends SIGHUP when the ConfigMap changes):
/// the new pod's trawl waits for the old one's read positions (same `data_dir` on the node),
/// and the ConfigMap is updated while it waits. The SIGHUP must not kill the waiting trawl
/// (SIGHUP's default action): once the old one stops, the new one starts, reloads, and labels
/// what it ships with the updated file's version; each line arrives once.
#[test]
fn a_sighup_while_waiting_for_the_old_instance_is_a_reload_once_started() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (app, out) = (d.join("app.log"), d.join("out.jsonl"));
    let pipeline = |addr: &str, version: &str| {
        format!(
            "data_dir: {}\nhttp: {{ address: \"{addr}\" }}\nshutdown_timeout: 20s\ninputs:\n  app:\n    type: file\n    paths: [\"{}\"]\n    poll_interval: 50ms\n    scan_interval: 200ms\nprocessors:\n  - {{ type: add_fields, fields: {{ labels.version: \"{version}\" }} }}\noutputs:\n  sink: {{ type: file, path: \"{}\" }}\n",
            d.join("data").display(),
            app.display(),
            out.display()
        )
    };
    let start = |cfg: &Path, log: &Path| {
        KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_trawl"))
                .args(["run", "-c"])
                .arg(cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).unwrap())
                .spawn()
                .expect("starting trawl"),
        )
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();

    let old_addr = format!("127.0.0.1:{}", free_port());
    let (old_cfg, old_log) = (d.join("old.yaml"), d.join("old.log"));
    std::fs::write(&old_cfg, pipeline(&old_addr, "v1")).unwrap();
    let mut old = start(&old_cfg, &old_log);
    wait_until(WAIT, "the old trawl's monitoring endpoint", || {
        http_get(&old_addr, "/health").is_some()
    });
    append(&app, "v1", 10);
    wait_until(WAIT, "the old trawl's 10 lines", || {
        versions(&out).len() == 10
    });

    let new_addr = format!("127.0.0.1:{}", free_port());
    let mount = d.join("config");
    let mut volume = ConfigMapVolume::new(&mount, "pipeline.yaml", &pipeline(&new_addr, "v1"));
    let new_log = d.join("new.log");
    let mut new = start(&mount.join("pipeline.yaml"), &new_log);
    wait_until(WAIT, "the new trawl waiting for the old one", || {
        read(&new_log).contains("waiting for it to stop before starting")
    });
    volume.update("pipeline.yaml", &pipeline(&new_addr, "v2"));
    // SAFETY: kill(2) on the pid of a child this test owns and has not reaped.
    let r = unsafe { libc::kill(new.0.id() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(r, 0, "sending SIGHUP");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        matches!(new.0.try_wait(), Ok(None)),
        "the waiting trawl died of the SIGHUP: {:?}; log: {}",
        new.0.try_wait(),
        read(&new_log)
    );

    // SAFETY: as above, for the old trawl.
    let r = unsafe { libc::kill(old.0.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(r, 0, "sending SIGTERM");
    let stopped = old.0.wait().expect("the old trawl's exit");
    assert!(stopped.success(), "the old trawl's stop: {stopped}");
    wait_until(WAIT, "the new trawl's reload", || {
        reloads(&new_addr, "success") >= 1
    });
    append(&app, "v2", 10);
    wait_until(WAIT, "the lines written after the update", || {
        versions(&out).len() == 20
    });
    for (message, version) in versions(&out) {
        assert!(
            message.starts_with(&format!("{version} ")),
            "{message} labelled {version}: {}",
            read(&new_log)
        );
    }
    assert!(
        read(&new_log).contains("SIGHUP received while starting"),
        "{}",
        read(&new_log)
    );
}
