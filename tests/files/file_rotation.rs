//! The `file` input across rotation with the real binary: by rename, by copytruncate, behind
//! kubelet's symlinks, `kill -9` and restart, and files rotated or created while trawl was
//! stopped: every line delivered exactly once. Events are read from trawl's stdout (a file).

use crate::pod::kubelet_gzip;
use crate::support;

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::stdout_run::{counts, line, messages, pipeline, Trawl};

const LINES: usize = 200_000;
const ROTATE_EVERY: usize = 20_000;

/// Writes LINES lines to `dir/app.log`, calling `rotate(n)` every ROTATE_EVERY lines.
fn write_with_rotation(dir: &Path, rotate: impl Fn(usize)) {
    let path = dir.join("app.log");
    let mut w = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap(),
    );
    for i in 0..LINES {
        if i > 0 && i % ROTATE_EVERY == 0 {
            w.flush().unwrap();
            drop(w);
            rotate(i / ROTATE_EVERY);
            w = std::io::BufWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .unwrap(),
            );
        }
        writeln!(w, "{}", line(i)).unwrap();
        if i % 5000 == 0 {
            w.flush().unwrap();
        }
    }
    w.flush().unwrap();
}

fn assert_exactly_once(ev: &[Value]) {
    let c = counts(ev);
    let missing: Vec<usize> = (0..LINES)
        .filter(|i| !c.contains_key(&line(*i)))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "missing lines, first ones: {missing:?}");
    let dups: Vec<(&String, &usize)> = c.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(dups.is_empty(), "duplicated lines: {dups:?}");
    assert_eq!(ev.len(), LINES, "no other events");
}

#[test]
fn rotation_by_rename_delivers_every_line_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let cfg = pipeline(&d, &format!(
        "    type: file\n    paths: [\"{}/app.log\"]\n    scan_interval: 1s\n    poll_interval: 50ms\n    close_removed: 1s",
        d.display()
    ));
    std::fs::write(d.join("app.log"), b"").unwrap();
    let t = Trawl::start(&d, &cfg, "out.json");
    std::thread::sleep(Duration::from_millis(500));
    write_with_rotation(&d, |n| {
        std::fs::rename(d.join("app.log"), d.join(format!("app.log.{n}"))).unwrap()
    });
    let ev = t.wait_for(90, "every line", |ev| ev.len() >= LINES);
    // Let anything extra (a duplicate) arrive before judging.
    std::thread::sleep(Duration::from_millis(1500));
    let ev = if t.events().len() > ev.len() {
        t.events()
    } else {
        ev
    };
    assert_exactly_once(&ev);
}

#[test]
fn copytruncate_delivers_every_line_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let cfg = pipeline(&d, &format!(
        "    type: file\n    paths: [\"{}/app.log*\"]\n    scan_interval: 1s\n    poll_interval: 50ms",
        d.display()
    ));
    std::fs::write(d.join("app.log"), b"").unwrap();
    let t = Trawl::start(&d, &cfg, "out.json");
    std::thread::sleep(Duration::from_millis(500));
    write_with_rotation(&d, |n| {
        // What logrotate's copytruncate does: copy, then truncate in place.
        std::fs::copy(d.join("app.log"), d.join(format!("app.log.{n}"))).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(d.join("app.log"))
            .unwrap()
            .set_len(0)
            .unwrap();
    });
    let ev = t.wait_for(90, "every line", |ev| ev.len() >= LINES);
    std::thread::sleep(Duration::from_millis(1500));
    let ev = if t.events().len() > ev.len() {
        t.events()
    } else {
        ev
    };
    assert_exactly_once(&ev);
}

#[test]
fn kill_9_then_restart_loses_nothing_and_duplicates_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let total = 300_000;
    std::fs::write(d.join("app.log"), b"").unwrap();
    // The application keeps writing (5,000 lines every 30 ms) while trawl is killed.
    // Half of the lines are written only after the kill, so the kill is always mid-stream.
    let (killed_tx, killed_rx) = std::sync::mpsc::channel::<()>();
    let writer = {
        let path = d.join("app.log");
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
            for chunk in 0..total / 5000 {
                if chunk == total / 10_000 {
                    let _ = killed_rx.recv();
                }
                let mut buf = String::new();
                for i in chunk * 5000..(chunk + 1) * 5000 {
                    buf.push_str(&line(i));
                    buf.push('\n');
                }
                f.write_all(buf.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(30));
            }
        })
    };
    let cfg = pipeline(
        &d,
        &format!(
            "    type: file\n    paths: [\"{}/app.log\"]\n    registry_flush: 100ms",
            d.display()
        ),
    );
    let mut first = Trawl::start(&d, &cfg, "out1.json");
    first.wait_for(60, "a first part", |ev| ev.len() >= 20_000);
    first.kill9();
    let before = first.events();
    killed_tx.send(()).unwrap();
    assert!(
        before.len() <= total / 2,
        "killed mid-stream (got {} of {total})",
        before.len()
    );
    writer.join().unwrap();

    let second = Trawl::start(&d, &cfg, "out2.json");
    let seen = |ev: &[Value]| {
        let mut c = counts(&before);
        for m in messages(ev) {
            *c.entry(m).or_insert(0) += 1;
        }
        c
    };
    let after = second.wait_for(60, "the rest", |ev| seen(ev).len() >= total);
    std::thread::sleep(Duration::from_millis(500));
    let after = if second.events().len() > after.len() {
        second.events()
    } else {
        after
    };
    let c = seen(&after);
    assert_eq!(c.len(), total, "every line delivered across the crash");
    let duplicates = before.len() + after.len() - total;
    // Re-read: what was in flight plus at most one registry flush interval of delivery.
    eprintln!(
        "kill -9: {} before, {} after, {duplicates} duplicates",
        before.len(),
        after.len()
    );
    assert!(
        duplicates <= before.len(),
        "duplicates bounded: {duplicates}"
    );
    assert!(
        duplicates < 60_000,
        "duplicates bounded by what was in flight: {duplicates}"
    );
    // The restart resumed: it did not start over.
    assert_ne!(after[0]["message"], serde_json::json!(line(0)));
}

/// kubelet's layout: `/var/log/containers/*.log` are symlinks into `/var/log/pods`, and kubelet
/// rotates the target (rename, then the runtime creates a new `0.log`), never the link. With
/// scanning effectively off, only the watch on the target's folder can find each new file, and
/// several rotations in a burst must still deliver every line once, labelled from the link's name.
#[test]
fn kubelet_rotation_behind_a_symlink_delivers_every_line_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let target_dir = d.join("pods/shop_web-7d9_0b1c-22/nginx");
    std::fs::create_dir_all(&target_dir).unwrap();
    std::fs::create_dir_all(d.join("containers")).unwrap();
    let target = target_dir.join("0.log");
    std::fs::write(&target, b"").unwrap();
    let id = "a".repeat(64);
    std::os::unix::fs::symlink(
        &target,
        d.join(format!("containers/web-7d9_shop_nginx-{id}.log")),
    )
    .unwrap();
    let input = format!(
        "    type: file\n    paths: [\"{}/containers/*.log\"]\n    scan_interval: 1h\n",
        d.display()
    );
    let trawl = Trawl::start(d, &pipeline(d, &input), "out.json");
    trawl.wait_for(10, "the first file to be followed", |_| {
        std::fs::read_to_string(d.join("out.json.stderr")).is_ok_and(|s| s.contains("starting"))
    });
    std::thread::sleep(Duration::from_millis(500));

    const ROTATIONS: usize = 6;
    const PER_FILE: usize = 3000;
    let mut n = 0;
    for r in 0..=ROTATIONS {
        let mut w = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&target)
            .unwrap();
        let mut text = String::new();
        for _ in 0..PER_FILE {
            text.push_str(&format!(
                "2026-11-23T10:00:00.000000000Z stdout F {}\n",
                line(n)
            ));
            n += 1;
        }
        w.write_all(text.as_bytes()).unwrap();
        drop(w);
        if r < ROTATIONS {
            std::fs::rename(&target, target_dir.join(format!("0.log.2026112310000{r}"))).unwrap();
        }
    }
    let ev = trawl.wait_for(30, "every line", |ev| ev.len() >= n);
    std::thread::sleep(Duration::from_millis(500));
    drop(ev);
    let ev = trawl.events();
    let c = counts(&ev);
    let missing: Vec<usize> = (0..n)
        .filter(|i| !c.contains_key(&line(*i)))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "missing lines, first ones: {missing:?}");
    assert_eq!(ev.len(), n, "every line exactly once");
    let e = &ev[n - 1];
    assert_eq!(e["kubernetes"]["pod"]["name"], "web-7d9");
    assert_eq!(e["kubernetes"]["namespace"], "shop");
    assert_eq!(e["kubernetes"]["container"]["name"], "nginx");
    assert_eq!(e["container"]["id"], id.as_str());
    assert_eq!(e["stream"], "stdout");
}

/// A rolling update of the DaemonSet: trawl is stopped, kubelet rotates a file it was reading,
/// and the restarted trawl resumes the rotated file at its saved offset (it is no longer under
/// `paths`), reads the new one, and leaves alone rotated history it never read.
#[test]
fn a_file_rotated_while_trawl_was_stopped_is_resumed_from_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (target_dir, target, id) =
        kubelet_container(d, "shop_web-7d9_0b1c-22/nginx", "web-7d9_shop_nginx", 'b');
    // History from before trawl ever ran: not in the registry, not to be shipped.
    std::fs::write(
        target_dir.join("0.log.20261122-000000"),
        cri_lines(900_000, 900_010),
    )
    .unwrap();
    std::fs::write(
        target_dir.join("0.log.20261121-000000.gz"),
        b"\x1f\x8b junk",
    )
    .unwrap();
    std::fs::write(&target, cri_lines(0, 1000)).unwrap();
    let input = format!(
        "    type: file\n    paths: [\"{}/containers/*.log\"]\n",
        d.display()
    );
    let config = pipeline(d, &input);
    let mut first = Trawl::start(d, &config, "out1.json");
    first.wait_for(20, "the first 1000 lines", |ev| ev.len() >= 1000);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(first.child.id() as i32, libc::SIGTERM) };
    let status = first.child.wait().unwrap();
    assert!(status.success(), "graceful stop: {status:?}");

    let mut w = std::fs::OpenOptions::new()
        .append(true)
        .open(&target)
        .unwrap();
    w.write_all(cri_lines(1000, 2000).as_bytes()).unwrap();
    drop(w);
    std::fs::rename(&target, target_dir.join("0.log.20261123-100000")).unwrap();
    std::fs::write(&target, cri_lines(2000, 3000)).unwrap();

    let second = Trawl::start(d, &config, "out2.json");
    let ev2 = second.wait_for(20, "the rotated rest and the new file", |ev| {
        ev.len() >= 2000
    });
    std::thread::sleep(Duration::from_millis(700));
    let ev2 = if second.events().len() > ev2.len() {
        second.events()
    } else {
        ev2
    };
    let all: Vec<Value> = first
        .events()
        .into_iter()
        .chain(ev2.iter().cloned())
        .collect();
    let c = counts(&all);
    let missing: Vec<usize> = (0..3000)
        .filter(|i| !c.contains_key(&line(*i)))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "missing lines, first ones: {missing:?}");
    assert_eq!(
        all.len(),
        3000,
        "every line once, no history: {:?}",
        c.keys().find(|k| k.contains("09000"))
    );
    let resumed = ev2
        .iter()
        .find(|e| e["message"] == line(1000).as_str())
        .expect("line 1000");
    assert_eq!(resumed["kubernetes"]["pod"]["name"], "web-7d9");
    assert_eq!(resumed["container"]["id"], id.as_str());
}

/// A rolling update during which kubelet rotates the file trawl was reading and, at its next
/// rotation, gzips it (`0.log.<date>.gz`, the uncompressed file deleted). The restarted trawl
/// finds the file by its first bytes in the `.gz` and reads on from where it stopped, with the
/// file's own name and pod labels: nothing lost, nothing twice. A third start reads nothing.
#[test]
fn lines_of_a_file_compressed_while_trawl_was_stopped_are_read_from_the_gz() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (target_dir, target, _) =
        kubelet_container(d, "shop_web-3e1_0c4d-55/app", "web-3e1_shop_app", 'e');
    std::fs::write(&target, cri_lines(0, 1000)).unwrap();
    let input = format!(
        "    type: file\n    paths: [\"{}/containers/*.log\"]\n",
        d.display()
    );
    let config = pipeline(d, &input);
    let mut first = Trawl::start(d, &config, "out1.json");
    let before = first.wait_for(20, "the first 1000 lines", |ev| ev.len() >= 1000);
    first.stop();
    let file_path = before[0]["log"]["file"]["path"].clone();

    let mut w = std::fs::OpenOptions::new()
        .append(true)
        .open(&target)
        .unwrap();
    w.write_all(cri_lines(1000, 1500).as_bytes()).unwrap();
    drop(w);
    let rotated = target_dir.join("0.log.20261123-100000");
    std::fs::rename(&target, &rotated).unwrap();
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(target_dir.join("0.log.20261123-100000.gz")).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(&std::fs::read(&rotated).unwrap()).unwrap();
    gz.finish().unwrap();
    std::fs::remove_file(&rotated).unwrap();
    // Someone else's compressed file beside it, and one that is not gzip at all.
    let mut other = flate2::write::GzEncoder::new(
        std::fs::File::create(target_dir.join("0.log.20261122-000000.gz")).unwrap(),
        flate2::Compression::fast(),
    );
    other
        .write_all(cri_lines(900_000, 900_010).as_bytes())
        .unwrap();
    other.finish().unwrap();
    std::fs::write(
        target_dir.join("0.log.20261121-000000.gz"),
        b"\x1f\x8b junk",
    )
    .unwrap();
    // And one that begins as the file did but ends before where trawl had read to: not it.
    let mut alike = flate2::write::GzEncoder::new(
        std::fs::File::create(target_dir.join("0.log.20261123-090000.gz")).unwrap(),
        flate2::Compression::fast(),
    );
    alike.write_all(cri_lines(0, 200).as_bytes()).unwrap();
    alike.finish().unwrap();
    std::fs::write(&target, cri_lines(1500, 1600)).unwrap();

    let mut second = Trawl::start(d, &config, "out2.json");
    second.wait_for(20, "the unread 500 lines and the new file's 100", |ev| {
        ev.len() >= 600
    });
    std::thread::sleep(Duration::from_millis(500));
    second.stop();
    let events = second.events();
    let mut got: Vec<String> = messages(&events);
    got.sort();
    let mut want: Vec<String> = (1000..1600).map(line).collect();
    want.sort();
    assert_eq!(got, want, "lines 1000-1599, each once");
    let resumed = events
        .iter()
        .find(|e| e["message"] == line(1000).as_str())
        .expect("line 1000");
    assert_eq!(resumed["kubernetes"]["pod"]["name"], "web-3e1");
    assert_eq!(
        resumed["log"]["file"]["path"], file_path,
        "under the name it was read by"
    );
    let log = second.stderr();
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("was compressed while trawl was stopped"))
        .collect();
    assert_eq!(said.len(), 1, "said once: {log}");
    assert!(
        said[0].contains("lines=500") && said[0].contains("0.log.20261123-100000.gz"),
        "{}",
        said[0]
    );
    assert!(!log.contains("lost_lines"), "nothing counted lost: {log}");

    let mut third = Trawl::start(d, &config, "out3.json");
    std::thread::sleep(Duration::from_millis(1500));
    third.stop();
    assert!(third.events().is_empty(), "nothing read twice");
    assert!(
        !third
            .stderr()
            .contains("was compressed while trawl was stopped"),
        "counted once: {}",
        third.stderr()
    );
}

/// The same stop across two rotations, in kubelet's order: the first rotated file is gzipped
/// and deleted, then `0.log` is rotated again and containerd creates a new one, which ext4
/// gives the inode just freed. The new `0.log` is a new file (born after trawl last saw the
/// old one), not the old one truncated: it is read from its start, and the old one's unread
/// lines come from the `.gz`. trawl took it for a truncation and lost those lines unsaid.
#[test]
fn a_new_file_given_the_inode_of_a_gzipped_one_is_not_taken_for_its_truncation() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (target_dir, target, _) =
        kubelet_container(d, "shop_api-5f2_77ab-01/app", "api-5f2_shop_app", 'f');
    std::fs::write(&target, cri_lines(0, 1000)).unwrap();
    let old_inode = std::fs::metadata(&target).unwrap().ino();
    let input = format!(
        "    type: file\n    paths: [\"{}/containers/*.log\"]\n",
        d.display()
    );
    let config = pipeline(d, &input);
    let mut first = Trawl::start(d, &config, "out1.json");
    first.wait_for(20, "the first 1000 lines", |ev| ev.len() >= 1000);
    first.stop();
    // A second later: told apart also by a registry that keeps `last_seen` in seconds only.
    std::thread::sleep(Duration::from_millis(1100));

    let mut w = std::fs::OpenOptions::new()
        .append(true)
        .open(&target)
        .unwrap();
    w.write_all(cri_lines(1000, 1500).as_bytes()).unwrap();
    drop(w);
    let rotated1 = target_dir.join("0.log.20261123-100000");
    std::fs::rename(&target, &rotated1).unwrap();
    std::fs::write(&target, cri_lines(1500, 1600)).unwrap();
    // kubelet's second rotation: compress the first (a `.tmp` renamed to `.gz`, the plain file
    // deleted), rename `0.log`, and containerd opens a new one.
    kubelet_gzip(&rotated1);
    std::fs::rename(&target, target_dir.join("0.log.20261123-110000")).unwrap();
    std::fs::write(&target, cri_lines(1600, 1700)).unwrap();
    let reused = std::fs::metadata(&target).unwrap().ino() == old_inode;

    let mut second = Trawl::start(d, &config, "out2.json");
    second.wait_for(20, "lines 1000-1699", |ev| ev.len() >= 700);
    std::thread::sleep(Duration::from_millis(500));
    second.stop();
    let mut got = messages(&second.events());
    got.sort();
    let mut want: Vec<String> = (1000..1700).map(line).collect();
    want.sort();
    assert_eq!(
        got, want,
        "lines 1000-1699, each once (inode reused: {reused})"
    );
    if reused {
        assert!(
            second
                .stderr()
                .contains("a new file has the inode of a file trawl was reading"),
            "{}",
            second.stderr()
        );
    } else {
        eprintln!("the file system did not give the new 0.log the freed inode: the reuse was not exercised");
    }
}

/// kubelet creates `0.log` and renames it away on its own schedule, not trawl's: during a
/// rolling update (or while trawl waited on a full pipeline and was then killed) a `0.log` can
/// be created, written and rotated without trawl ever seeing it. No registry knows it, but it
/// was written after trawl first ran, so its lines are the user's, not history: read at the
/// next start. A rotated file last written before trawl first ran stays unread at every start.
#[test]
fn a_file_created_and_rotated_while_trawl_was_stopped_is_read_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (target_dir, target, id) =
        kubelet_container(d, "shop_web-5c1_0a2e-31/app", "web-5c1_shop_app", 'c');
    // History, last written an hour before trawl first ran.
    let history = target_dir.join("0.log.20261122-000000");
    std::fs::write(&history, cri_lines(900_000, 900_010)).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&history)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    std::fs::write(&target, cri_lines(0, 1000)).unwrap();
    let input = format!(
        "    type: file\n    paths: [\"{}/containers/*.log\"]\n",
        d.display()
    );
    let config = pipeline(d, &input);
    let stop = |t: &mut Trawl| {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(t.child.id() as i32, libc::SIGTERM) };
        let status = t.child.wait().unwrap();
        assert!(status.success(), "graceful stop: {status:?}");
    };
    let mut first = Trawl::start(d, &config, "out1.json");
    first.wait_for(20, "the first 1000 lines", |ev| ev.len() >= 1000);
    stop(&mut first);

    // While trawl is stopped: the followed 0.log gets more lines and is rotated; kubelet's next
    // 0.log is written and rotated too; a third one is current at the restart.
    let write = |path: &Path, text: String| {
        let mut w = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        w.write_all(text.as_bytes()).unwrap();
    };
    write(&target, cri_lines(1000, 1500));
    std::fs::rename(&target, target_dir.join("0.log.20261123-100000")).unwrap();
    write(&target, cri_lines(1500, 2500));
    std::fs::rename(&target, target_dir.join("0.log.20261123-110000")).unwrap();
    write(&target, cri_lines(2500, 3000));

    let mut second = Trawl::start(d, &config, "out2.json");
    second.wait_for(
        30,
        "the rest of the first 0.log, all of the unseen one and the current one",
        |ev| ev.len() >= 2000,
    );
    // Anything more (history, a second copy) would come within the scans of the next second.
    std::thread::sleep(Duration::from_millis(1500));
    stop(&mut second);
    let all: Vec<Value> = first.events().into_iter().chain(second.events()).collect();
    let c = counts(&all);
    let missing: Vec<usize> = (0..3000).filter(|i| !c.contains_key(&line(*i))).collect();
    assert!(
        missing.is_empty(),
        "{} lines missing, the first: {:?} (1500..2500 are the 0.log created and rotated while trawl was stopped)",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let twice: Vec<&String> = c
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(l, _)| l)
        .take(5)
        .collect();
    assert!(twice.is_empty(), "lines delivered twice: {twice:?}");
    assert_eq!(
        all.len(),
        3000,
        "every line once and no history (900000..900010): {:?}",
        c.keys().find(|k| k.contains("90000"))
    );
    let unseen = all
        .iter()
        .find(|e| e["message"] == line(1500).as_str())
        .expect("line 1500");
    assert_eq!(unseen["kubernetes"]["pod"]["name"], "web-5c1");
    assert_eq!(unseen["container"]["id"], id.as_str());
}

/// A container that starts while trawl runs and writes fast: kubelet rotates its first `0.log`
/// (renamed `0.log.<time>`, a new `0.log` opened) before any scan found its link, here one
/// every 3 s without `watch_events` (the setting for file systems whose events are unreliable).
/// The rotated file is outside `paths` and was never followed; it is read all the same, under
/// the link's name, before kubelet compresses and deletes it. Before the fix its lines came only
/// if trawl happened to restart meanwhile.
#[test]
fn a_new_containers_first_log_rotated_before_a_scan_found_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("containers")).unwrap();
    let input = format!(
        "    type: file\n    paths: [\"{}/containers/*.log\"]\n    watch_events: false\n    scan_interval: 3s\n",
        d.display()
    );
    let config = pipeline(d, &input);
    let mut trawl = Trawl::start(d, &config, "out.json");
    // Past the first scan: what follows is found by a later one.
    std::thread::sleep(Duration::from_millis(1500));
    let (target_dir, target, _) =
        kubelet_container(d, "shop_cart-7d9_1b3f-42/app", "cart-7d9_shop_app", 'e');
    std::fs::write(&target, cri_lines(0, 500)).unwrap();
    std::fs::rename(&target, target_dir.join("0.log.20261204-220000")).unwrap();
    std::fs::write(&target, cri_lines(500, 800)).unwrap();
    trawl.wait_for(20, "both files of the new container", |ev| ev.len() >= 800);
    // A second copy would come with the next scans.
    std::thread::sleep(Duration::from_secs(4));
    trawl.stop();
    let all = trawl.events();
    let c = counts(&all);
    let missing: Vec<usize> = (0..800).filter(|i| !c.contains_key(&line(*i))).collect();
    assert!(
        missing.is_empty(),
        "{} lines missing, the first: {:?} (0..500 are the rotated first 0.log)",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(all.len(), 800, "every line once");
    let first = all
        .iter()
        .find(|e| e["message"] == line(0).as_str())
        .expect("line 0");
    assert_eq!(first["kubernetes"]["pod"]["name"], "cart-7d9");
}

/// kubelet's layout under `d`: `pods/<pod>/0.log` and its `/var/log/containers`-style link
/// `containers/<link>-<id>.log`, the container id being 64 times `id_char`. Returns the
/// pod folder, the `0.log` path and the id.
fn kubelet_container(d: &Path, pod: &str, link: &str, id_char: char) -> (PathBuf, PathBuf, String) {
    let target_dir = d.join("pods").join(pod);
    std::fs::create_dir_all(&target_dir).unwrap();
    std::fs::create_dir_all(d.join("containers")).unwrap();
    let target = target_dir.join("0.log");
    let id = id_char.to_string().repeat(64);
    std::os::unix::fs::symlink(&target, d.join(format!("containers/{link}-{id}.log"))).unwrap();
    (target_dir, target, id)
}

/// Lines `from..to` as containerd writes them (CRI, full lines).
fn cri_lines(from: usize, to: usize) -> String {
    (from..to)
        .map(|i| format!("2026-11-23T10:00:00.000000000Z stdout F {}\n", line(i)))
        .collect()
}
