//! One container's log as a container runtime writes it and kubelet rotates it, for the tests
//! of lines the runtime split across a rotation (`file_cri_rotation*`).

use crate::support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use support::process::append;
use support::stdout_run::{pipeline, Trawl};

/// One container's log as the runtime and kubelet keep it, in a temp dir: the container's
/// `0.log` under `pods/<ns>_<pod>_<uid>/<container>/` with its link in `containers/` (CRI),
/// or Docker's `<id>-json.log`; what the runtime writes to it, and kubelet's rotations.
pub struct Pod {
    /// The node's folders, shared by the pods of one node (`another_cri`).
    dir: Arc<tempfile::TempDir>,
    /// The folder holding the log and its rotated files.
    folder: PathBuf,
    /// The log the runtime writes to.
    log: PathBuf,
    docker: bool,
    rotations: usize,
}

impl Pod {
    /// kubelet's layout for containerd (CRI format).
    pub fn cri() -> Pod {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        std::fs::create_dir_all(dir.path().join("containers")).unwrap();
        Pod::cri_container(dir, "web-7d9", "0b1c-22", "nginx", 'c')
    }

    /// A container's `0.log` under `pods/shop_<pod>_<uid>/<container>/`, with its link in
    /// `containers/` named with a 64-character id of `id`s.
    fn cri_container(
        dir: Arc<tempfile::TempDir>,
        pod: &str,
        uid: &str,
        container: &str,
        id: char,
    ) -> Pod {
        let folder = dir
            .path()
            .join(format!("pods/shop_{pod}_{uid}/{container}"));
        std::fs::create_dir_all(&folder).unwrap();
        let log = folder.join("0.log");
        std::fs::write(&log, b"").unwrap();
        let id: String = std::iter::repeat_n(id, 64).collect();
        std::os::unix::fs::symlink(
            &log,
            dir.path()
                .join(format!("containers/{pod}_shop_{container}-{id}.log")),
        )
        .unwrap();
        Pod {
            dir,
            folder,
            log,
            docker: false,
            rotations: 0,
        }
    }

    /// Docker's json-file driver.
    pub fn docker() -> Pod {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("docker/containers/abc");
        std::fs::create_dir_all(&folder).unwrap();
        let log = folder.join("abc-json.log");
        std::fs::write(&log, b"").unwrap();
        Pod {
            dir: Arc::new(dir),
            folder,
            log,
            docker: true,
            rotations: 0,
        }
    }

    /// Another container's log (CRI) in the same node folders, as kubelet lays out a pod
    /// started later: followed by the same pipeline.
    pub fn another_cri(&self, pod: &str, container: &str) -> Pod {
        Pod::cri_container(self.dir.clone(), pod, "9f3e-41", container, 'd')
    }

    /// The log the runtime writes to now.
    pub fn log(&self) -> &Path {
        &self.log
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A pipeline following the container's log (through its link for CRI) to stdout.
    pub fn config(&self) -> String {
        let paths = if self.docker {
            format!("{}/*-json.log", self.folder.display())
        } else {
            format!("{}/containers/*.log", self.root().display())
        };
        pipeline(
            self.root(),
            &format!("    type: file\n    paths: [\"{paths}\"]\n    close_removed: 2s\n"),
        )
    }

    /// The runtime writes these records: (stream, `P` or `F`, text), stamped with the time of
    /// writing as a runtime does. Docker's `P` is a `log` without its final newline.
    pub fn writes(&self, records: &[(&str, &str, &str)]) {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let text: String = records
            .iter()
            .map(|(stream, tag, text)| {
                if self.docker {
                    let log = if *tag == "F" {
                        format!("{text}\n")
                    } else {
                        (*text).to_owned()
                    };
                    serde_json::json!({"log": log, "stream": stream, "time": now}).to_string()
                        + "\n"
                } else {
                    format!("{now} {stream} {tag} {text}\n")
                }
            })
            .collect();
        append(&self.log, &text);
    }

    /// kubelet's rotation (`0.log` renamed to `0.log.<time>`, Docker's `-json.log` to
    /// `-json.log.1`); the runtime reopens a new log. Returns the rotated file.
    pub fn rotate(&mut self) -> PathBuf {
        self.rotations += 1;
        let name = self.log.file_name().unwrap().to_string_lossy().into_owned();
        let to = if self.docker {
            format!("{name}.{}", self.rotations)
        } else {
            format!("{name}.20261123-10000{}", self.rotations)
        };
        let rotated = self.folder.join(to);
        std::fs::rename(&self.log, &rotated).unwrap();
        std::fs::write(&self.log, b"").unwrap();
        rotated
    }

    /// kubelet's rotation as it runs it (`rotateLatestLog` after `compressUncompressedLogs`):
    /// the rotated files still plain, but for none, are gzipped (the newest rotated one is
    /// kept plain), then the log is renamed and the runtime reopens a new one. Returns the
    /// file just rotated.
    pub fn kubelet_rotate(&mut self) -> PathBuf {
        if self.rotations > 0 {
            let name = self.log.file_name().unwrap().to_string_lossy().into_owned();
            let newest = self
                .folder
                .join(format!("{name}.20261123-10000{}", self.rotations));
            kubelet_gzip(&newest);
        }
        self.rotate()
    }

    pub fn start(&self, out: &str) -> Trawl {
        Trawl::start(self.root(), &self.config(), out)
    }
}

/// A JSON log line long enough that containerd splits it, in two halves.
pub fn split_json_line(n: usize) -> (String, String, String) {
    let whole = format!(
        "{{\"level\":\"info\",\"n\":{n},\"msg\":\"{}\"}}",
        "x".repeat(300)
    );
    let (a, b) = whole.split_at(150);
    (whole.clone(), a.to_owned(), b.to_owned())
}

/// What kubelet's `compressLog` does: `<f>.tmp` written, renamed to `<f>.gz`, `<f>` deleted.
pub fn kubelet_gzip(plain: &Path) {
    let tmp = kubelet_gzip_started(plain);
    kubelet_gzip_finished(plain, &tmp);
}

/// The first half of `compressLog`: the gzip of `plain` written to `<f>.tmp` (returned), as a
/// start in the middle of kubelet's compression finds it.
pub fn kubelet_gzip_started(plain: &Path) -> PathBuf {
    let tmp = plain.with_file_name(format!(
        "{}.tmp",
        plain.file_name().unwrap().to_string_lossy()
    ));
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&tmp).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(&std::fs::read(plain).unwrap()).unwrap();
    enc.finish().unwrap().sync_all().unwrap();
    tmp
}

/// The second half: `<f>.tmp` renamed to `<f>.gz` (the same inode), `<f>` deleted.
pub fn kubelet_gzip_finished(plain: &Path, tmp: &Path) {
    let gz = plain.with_file_name(format!(
        "{}.gz",
        plain.file_name().unwrap().to_string_lossy()
    ));
    std::fs::rename(tmp, &gz).unwrap();
    std::fs::remove_file(plain).unwrap();
}
