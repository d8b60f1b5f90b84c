//! Directory fsyncs, watched in the real binary's system calls (strace): a new file or a rename is
//! durable only once its folder is fsynced, so the disk buffer's segments and the file output's
//! rotations must be followed by an fsync of their folder before what they hold is relied on.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::process::write_file;

/// One traced system call: its name and its whole line as strace wrote it (with `-y`, every
/// descriptor argument and result carries its path: `fsync(7</data/buffers/out>)`).
struct Call {
    name: String,
    line: String,
}

impl Call {
    /// The path of the descriptor in the first argument (`fsync(7</a/b>)` → `/a/b`).
    fn fd_path(&self) -> Option<&str> {
        let args = self.line.split_once('(')?.1;
        let start = args.find('<')? + 1;
        let end = start + args[start..].find('>')?;
        Some(&args[start..end])
    }

    /// The quoted path arguments (`rename("a", "b")` → [a, b]; `openat(AT_FDCWD, "p", ...)` → [p]).
    fn quoted(&self) -> Vec<&str> {
        self.line.split('"').skip(1).step_by(2).collect()
    }

    fn creates(&self, path: &str) -> bool {
        self.name == "openat"
            && self.line.contains("O_CREAT")
            && self.quoted().first() == Some(&path)
    }

    fn syncs(&self, path: &str) -> bool {
        matches!(self.name.as_str(), "fsync" | "fdatasync") && self.fd_path() == Some(path)
    }
}

/// Runs `trawl run -c config` under strace until it exits at the end of `input` on stdin, and
/// returns the file, rename and sync calls of all its threads in the order they were made.
fn traced_run(dir: &Path, config: &Path, input: &[u8]) -> Vec<Call> {
    let trace = dir.join("strace.txt");
    let mut child = Command::new("strace")
        .args(["-f", "-y", "-qq", "-o"])
        .arg(&trace)
        .args([
            "-e",
            "trace=openat,fsync,fdatasync,rename,renameat,renameat2",
            env!("CARGO_BIN_EXE_trawl"),
            "run",
            "-c",
        ])
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting strace (scripts/setup.sh installs it)");
    // A write error means trawl ended early: its stderr, read below, says why.
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        let _ = stdin.write_all(input);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for strace") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("trawl under strace did not end within 120 s of its stdin's end");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(
        status.success(),
        "trawl under strace exited {status}:\n{err}"
    );
    parse(&std::fs::read_to_string(&trace).expect("strace's output"))
}

/// strace -f lines: `PID name(args) = result`, or a call cut in two by another thread's
/// (`PID name(args <unfinished ...>` ... `PID <... name resumed>) = result`); the cut call is
/// kept where it started, with its arguments (the order that matters is when a call was made).
fn parse(text: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    for raw in text.lines() {
        let Some((_pid, rest)) = raw.trim_start().split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if rest.starts_with("<...") || rest.starts_with("+++") || rest.starts_with("---") {
            continue;
        }
        let Some((name, _)) = rest.split_once('(') else {
            continue;
        };
        calls.push(Call {
            name: name.to_owned(),
            line: rest.to_owned(),
        });
    }
    calls
}

fn lines(n: usize) -> Vec<u8> {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!("line {i:06} {}\n", "y".repeat(180)));
    }
    text.into_bytes()
}

fn canonical_tempdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    // strace -y prints resolved paths.
    let path = dir.path().canonicalize().unwrap();
    (dir, path)
}

#[test]
fn disk_buffer_fsyncs_its_folder_after_creating_a_segment_before_syncing_records_into_it() {
    let (_guard, dir) = canonical_tempdir();
    let out = dir.join("out");
    // A 1 MiB segment (the smallest: max_size/8, at least 1 MiB): 8,000 events of ~300 bytes
    // fill more than two, so the first segment and the rolled ones are both seen.
    let config = write_file(
        &dir,
        "pipeline.yaml",
        &format!(
            "data_dir: {}\nhttp: {{ enabled: false }}\ninputs:\n  app: {{ type: stdin }}\noutputs:\n  out:\n    type: file\n    path: {}/events.jsonl\n    buffer: {{ type: disk, max_size: 8MiB }}\n",
            dir.join("data").display(),
            out.display()
        ),
    );
    let calls = traced_run(&dir, &config, &lines(8000));
    let buffer = dir.join("data/buffers/out");
    let buffer_dir = buffer.to_str().unwrap();
    let segments: Vec<(usize, String)> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.name == "openat" && c.line.contains("O_CREAT"))
        .filter_map(|(i, c)| {
            let p = c.quoted().first()?.to_string();
            (p.starts_with(buffer_dir) && p.ends_with(".seg")).then_some((i, p))
        })
        .collect();
    assert!(
        segments.len() >= 2,
        "expected the first segment and at least one rolled one to be created, saw {segments:?}"
    );
    let mut seen = std::collections::HashSet::new();
    for (at, seg) in segments {
        if !seen.insert(seg.clone()) {
            continue; // opened again (recovery), not created
        }
        // Records are acknowledged after they are synced: the folder entry must be durable
        // before the first of them.
        let first_record_sync = calls[at..]
            .iter()
            .position(|c| c.syncs(&seg))
            .map(|p| at + p);
        let dir_sync = calls[at..]
            .iter()
            .position(|c| c.syncs(buffer_dir))
            .map(|p| at + p);
        match (dir_sync, first_record_sync) {
            (Some(d), Some(r)) => assert!(
                d < r,
                "{seg}: its folder was fsynced (call {d}) only after records in it were (call {r})"
            ),
            (Some(_), None) => {}
            (None, _) => panic!("{seg} was created but {buffer_dir} was never fsynced after it"),
        }
    }
    // The buffer's folder is itself new in `buffers/`: that entry must be durable too.
    let created = calls
        .iter()
        .position(|c| c.creates(&format!("{buffer_dir}/{:020}.seg", 0)))
        .expect("the first segment is 00000000000000000000.seg");
    let parent = dir.join("data/buffers");
    assert!(
        calls[created..]
            .iter()
            .any(|c| c.syncs(parent.to_str().unwrap())),
        "{} was never fsynced after the buffer folder was made in it",
        parent.display()
    );
}

#[test]
fn file_output_with_sync_fsyncs_its_folder_after_every_rotation() {
    let (_guard, dir) = canonical_tempdir();
    let out = dir.join("out");
    let config = write_file(
        &dir,
        "pipeline.yaml",
        &format!(
            "data_dir: {}\nhttp: {{ enabled: false }}\ninputs:\n  app: {{ type: stdin }}\noutputs:\n  out:\n    type: file\n    path: {}/events.jsonl\n    max_size: 64KiB\n    max_files: 3\n    sync: true\n",
            dir.join("data").display(),
            out.display()
        ),
    );
    let calls = traced_run(&dir, &config, &lines(2000));
    let active = out.join("events.jsonl");
    let active = active.to_str().unwrap();
    let out_dir = out.to_str().unwrap();
    // The rotation's last step: the active file becomes `.1`.
    let rotations: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            c.name.starts_with("rename") && {
                let q = c.quoted();
                q.len() == 2 && q[0] == active && q[1] == format!("{active}.1")
            }
        })
        .map(|(i, _)| i)
        .collect();
    assert!(
        rotations.len() >= 3,
        "2,000 events of ~300 bytes in 64 KiB files should rotate several times, saw {}",
        rotations.len()
    );
    let first_create = calls
        .iter()
        .position(|c| c.creates(active))
        .expect("the output creates its file");
    assert!(
        calls[first_create..rotations[0]]
            .iter()
            .any(|c| c.syncs(out_dir)),
        "{out_dir} was not fsynced after {active} was first created"
    );
    for (k, &at) in rotations.iter().enumerate() {
        let next = rotations.get(k + 1).copied().unwrap_or(calls.len());
        let window = &calls[at..next];
        let created = window
            .iter()
            .position(|c| c.creates(active))
            .unwrap_or_else(|| panic!("rotation {k}: {active} was not created again"));
        // Neither the renames nor the new file survive a power loss until the folder is
        // fsynced; the file's lines were, so without it a rotation can be undone under them.
        assert!(
            window[created..].iter().any(|c| c.syncs(out_dir)),
            "rotation {k}: {out_dir} was not fsynced after the renames and the new {active} \
             (before the next rotation)"
        );
    }
}
