//! `trawl pcap` as a user drives it: a capture (pcap or pcapng) piped on standard input (`-`)
//! or written into a FIFO gives the same events as the file; a signal while a FIFO stays open
//! still reports everything decoded; a damaged capture fed to a pipeline (`-c`) exits 1; a
//! gzipped capture reads as the plain one.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

fn captures() -> PathBuf {
    let candidates = [
        std::env::var_os("TRAWL_SHARED_DIR").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared")),
        Some(PathBuf::from("/work/shared")),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(|p| p.join("data/pcaps/suricata-verify"))
        .find(|p| p.is_dir())
        .expect("shared/ not found: set TRAWL_SHARED_DIR")
}

/// The capture `name` as classic pcap, and converted to pcapng by tshark into `dir`.
fn both_formats(name: &str, dir: &Path) -> [PathBuf; 2] {
    let pcap = captures().join(name).join("input.pcap");
    let ng = dir.join(format!("{name}.pcapng"));
    let st = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-F", "pcapng", "-w"])
        .arg(&ng)
        .stderr(Stdio::null())
        .status()
        .expect("tshark is needed to write pcapng");
    assert!(st.success(), "tshark could not convert {}", pcap.display());
    let mut magic = [0u8; 4];
    std::fs::File::open(&ng)
        .unwrap()
        .read_exact(&mut magic)
        .unwrap();
    assert_eq!(
        magic,
        [0x0a, 0x0d, 0x0d, 0x0a],
        "{} is pcapng",
        ng.display()
    );
    [pcap, ng]
}

fn trawl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trawl"));
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// Waits for `child` to exit within the deadline (killed and failed otherwise); returns its
/// exit code, standard output (unless the caller took it) and standard error.
fn finish(mut child: Child, what: &str) -> (Option<i32>, String, String) {
    let out = child.stdout.take();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        match out {
            Some(mut o) => o.read_to_string(&mut s).map(|_| s),
            None => Ok(s),
        }
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).map(|_| s)
    });
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("{what}: trawl pcap still running after {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code(),
        out.join().unwrap().unwrap(),
        err.join().unwrap().unwrap(),
    )
}

/// `trawl pcap PATH`'s output, which must succeed with at least one flow and one transaction.
fn from_file(path: &Path) -> String {
    let child = trawl().arg("pcap").arg(path).spawn().unwrap();
    let (code, out, err) = finish(child, "file");
    assert_eq!(code, Some(0), "{}: {err}", path.display());
    assert!(out.contains("\"dataset\":\"http\""), "{out}");
    assert!(out.contains("\"dataset\":\"flow\""), "{out}");
    out
}

/// `trawl pcap -` fed `bytes` on standard input, as `finish` reports it.
fn on_stdin(bytes: &[u8], what: &str) -> (Option<i32>, String, String) {
    let mut child = trawl()
        .args(["pcap", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feed = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&feed));
    let done = finish(child, what);
    writer.join().unwrap().unwrap();
    done
}

fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(st.success(), "mkfifo {}", path.display());
}

#[test]
fn pcap_and_pcapng_on_stdin_and_through_a_fifo_give_the_events_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["http-all-headers", "http-multiple100", "bug-130"] {
        for file in both_formats(name, dir.path()) {
            let want = from_file(&file);
            let bytes = std::fs::read(&file).unwrap();

            // `cat file | trawl pcap -`
            let (code, out, err) = on_stdin(&bytes, "stdin");
            assert_eq!(code, Some(0), "{} on stdin: {err}", file.display());
            assert_eq!(out, want, "{} on stdin", file.display());

            // A FIFO that a writer fills, then closes.
            let fifo = dir.path().join(format!("{name}.fifo"));
            let _ = std::fs::remove_file(&fifo);
            mkfifo(&fifo);
            let child = trawl().arg("pcap").arg(&fifo).spawn().unwrap();
            let (path, feed) = (fifo.clone(), bytes.clone());
            let writer = std::thread::spawn(move || {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)?
                    .write_all(&feed)
            });
            let (code, out, err) = finish(child, "fifo");
            writer.join().unwrap().unwrap();
            assert_eq!(code, Some(0), "{} through a FIFO: {err}", file.display());
            assert_eq!(out, want, "{} through a FIFO", file.display());
        }
    }
}

/// A writer puts a whole capture into a FIFO and keeps it open (a live `tcpdump -w` would):
/// trawl reports the completed transaction as it comes, and on SIGTERM, SIGINT or SIGHUP
/// reports every open flow too, then exits 0: the same events as reading the file.
#[test]
fn a_signal_on_an_open_fifo_reports_everything_decoded_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let file = captures().join("http-all-headers/input.pcap");
    let want = from_file(&file);
    let bytes = std::fs::read(&file).unwrap();
    for (sig, sig_name) in [
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGHUP, "SIGHUP"),
    ] {
        let fifo = dir.path().join(format!("{sig_name}.fifo"));
        mkfifo(&fifo);
        let mut cmd = trawl();
        // trawl leaves a signal its parent ignored ignored (as under `nohup`); a test run
        // started as a background job of a script ignores SIGINT, so the signals this test
        // sends are given their default disposition, as an interactive shell gives them.
        // SAFETY: only async-signal-safe signal(2) calls between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
                    libc::signal(sig, libc::SIG_DFL);
                }
                Ok(())
            });
        }
        let mut child = cmd.arg("pcap").arg(&fifo).spawn().unwrap();
        let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        writer.write_all(&bytes).unwrap();

        let (tx, rx) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let reader = std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut got = Vec::new();
        let end = Instant::now() + DEADLINE;
        while !got
            .iter()
            .any(|l: &String| l.contains("\"dataset\":\"http\""))
        {
            let left = end.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => got.push(l),
                Err(_) => {
                    let _ = child.kill();
                    panic!("{sig_name}: no transaction printed while the FIFO is open: {got:?}");
                }
            }
        }
        // SAFETY: kill(2) on the pid of our own child.
        assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
        let (code, _, err) = finish(child, sig_name);
        reader.join().unwrap();
        got.extend(rx.try_iter());
        drop(writer);
        assert_eq!(code, Some(0), "{sig_name}: {err}");
        let got = got.iter().map(|l| format!("{l}\n")).collect::<String>();
        assert_eq!(got, want, "{sig_name}: the events of the whole capture");
    }
}

#[test]
fn a_damaged_capture_through_a_pipeline_exits_1_after_delivering_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let whole = std::fs::read(captures().join("http-all-headers/input.pcap")).unwrap();
    // Cut inside the last record: what came before holds the whole transaction.
    let damaged = dir.path().join("damaged.pcap");
    std::fs::write(&damaged, &whole[..whole.len() - 10]).unwrap();

    let child = trawl().arg("pcap").arg(&damaged).spawn().unwrap();
    let (code, plain, err) = finish(child, "without -c");
    assert_eq!(code, Some(1), "without -c: {err}");
    let count = |text: &str, dataset: &str| {
        let tag = format!("\"dataset\":\"{dataset}\"");
        text.lines().filter(|l| l.contains(&tag)).count()
    };
    assert!(
        count(&plain, "http") >= 1 && count(&plain, "flow") >= 1,
        "{plain}"
    );

    let p = dir.path().join("p.yaml");
    std::fs::write(
        &p,
        format!(
            "inputs: {{}}\noutputs:\n  out: {{ type: stdout }}\ndata_dir: {}\nhttp: {{ enabled: false }}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let child = trawl()
        .arg("pcap")
        .arg(&damaged)
        .arg("-c")
        .arg(&p)
        .spawn()
        .unwrap();
    let (code, out, err) = finish(child, "with -c");
    assert_eq!(code, Some(1), "with -c: {err}");
    assert!(err.contains("damaged"), "{err}");
    for dataset in ["http", "flow"] {
        assert_eq!(
            count(&out, dataset),
            count(&plain, dataset),
            "{dataset} events delivered through the pipeline: {out}"
        );
    }
}

/// `gzip FILE` as the `gzip` tool writes it, one member a call.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip is needed");
    let mut stdin = child.stdin.take().unwrap();
    let feed = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&feed));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// Captures are archived gzipped (`tcpdump -w - | gzip`, rotated `.pcap.gz`): a gzipped pcap
/// or pcapng, as a file or on standard input, and one gzip wrote in two members, give the
/// events of the plain file; a gzipped capture cut short is damage, reported as for a cut
/// pcap (exit 1, the file named) after what came before.
#[test]
fn gzipped_captures_give_the_events_of_the_plain_file_and_a_cut_one_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    for file in both_formats("http-all-headers", dir.path()) {
        let want = from_file(&file);
        let bytes = std::fs::read(&file).unwrap();
        let packed = gzip(&bytes);
        let gz = dir.path().join("capture.gz");
        std::fs::write(&gz, &packed).unwrap();
        let (code, out, err) = finish(trawl().arg("pcap").arg(&gz).spawn().unwrap(), "gz file");
        assert_eq!(
            (code, &out),
            (Some(0), &want),
            "{} gzipped: {err}",
            file.display()
        );

        let (code, out, err) = on_stdin(&packed, "gz on stdin");
        assert_eq!(
            (code, &out),
            (Some(0), &want),
            "{} gzipped on stdin: {err}",
            file.display()
        );

        let half = bytes.len() / 2;
        let mut members = gzip(&bytes[..half]);
        members.extend(gzip(&bytes[half..]));
        std::fs::write(&gz, &members).unwrap();
        let (code, out, err) = finish(trawl().arg("pcap").arg(&gz).spawn().unwrap(), "members");
        assert_eq!(
            (code, &out),
            (Some(0), &want),
            "{} in two members: {err}",
            file.display()
        );

        // Cut inside the compressed data near its end: the transaction came before.
        std::fs::write(&gz, &packed[..packed.len() - 40]).unwrap();
        let (code, out, err) = finish(trawl().arg("pcap").arg(&gz).spawn().unwrap(), "cut");
        assert_eq!(code, Some(1), "{} gzipped and cut: {err}", file.display());
        assert!(
            err.contains("damaged") && err.contains("capture.gz"),
            "{err}"
        );
        assert!(out.contains("\"dataset\":\"http\""), "{out}");
    }
}

/// `--only pgsql` with `--pgsql-ports` reports the capture's PostgreSQL statements and
/// nothing else; on the default port (5432) the same capture (server on 43469) has none; a
/// ports option for a protocol not reported, and VXLAN port 0, are refused with exit 2.
#[test]
fn protocols_are_chosen_with_only_and_their_ports_options() {
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pgsql/workload.pcap");
    let run = |args: &[&str]| {
        let child = trawl().arg("pcap").args(args).arg(&pcap).spawn().unwrap();
        finish(child, &args.join(" "))
    };
    let (code, out, err) = run(&["--only", "pgsql", "--pgsql-ports", "43469"]);
    assert_eq!(code, Some(0), "{err}");
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.len() >= 10, "{out}");
    for e in &events {
        assert_eq!(e["event"]["dataset"], "pgsql", "{e}");
        assert_eq!(
            e["event"]["category"],
            serde_json::json!(["database", "network"])
        );
        assert_eq!(e["server"]["port"], 43469);
    }
    let (code, out, err) = run(&["--only", "pgsql"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out, "",
        "nothing on PostgreSQL's default port in this capture"
    );
    let (code, out, _) = run(&["--only", "flows,pgsql", "--pgsql-ports", "43469"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("\"dataset\":\"flow\"") && out.contains("\"dataset\":\"pgsql\""));
    let (code, _, err) = run(&["--vxlan-ports", "4789,0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--vxlan-ports") && err.contains('0'), "{err}");
    let (code, _, err) = run(&["--dns-ports", "53"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--only dns"), "{err}");
}

/// `trawl pcap FILE -c PIPELINE` reads the file in place of the pipeline's packet input: its
/// protocol sections (PostgreSQL on the capture's port, HTTP) decide what is decoded, and the
/// events keep that input's name, so an output routed to it receives them. The same statements
/// as `--only pgsql` reports; nothing is captured live.
#[test]
fn a_pipeline_s_packet_input_gives_its_protocols_to_the_capture_file() {
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pgsql/workload.pcap");
    let dir = tempfile::tempdir().unwrap();
    let child = trawl()
        .args(["pcap", "--only", "pgsql", "--pgsql-ports", "43469"])
        .arg(&pcap)
        .spawn()
        .unwrap();
    let (code, plain, err) = finish(child, "--only pgsql");
    assert_eq!(code, Some(0), "{err}");
    let statements = plain.lines().count();
    assert!(statements >= 10, "{plain}");

    let p = dir.path().join("p.yaml");
    std::fs::write(
        &p,
        format!(
            "inputs:\n  db:\n    type: packet\n    capture: {{ interfaces: [no-such-interface] }}\n    protocols:\n      pgsql: {{ ports: [43469] }}\n      http: {{ ports: [8080] }}\noutputs:\n  out: {{ type: stdout, inputs: [db] }}\ndata_dir: {}\nhttp: {{ enabled: false }}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let child = trawl()
        .arg("pcap")
        .arg(&pcap)
        .arg("-c")
        .arg(&p)
        .spawn()
        .unwrap();
    let (code, out, err) = finish(child, "with -c");
    assert_eq!(code, Some(0), "{err}");
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let pgsql: Vec<_> = events
        .iter()
        .filter(|e| e["event"]["dataset"] == "pgsql")
        .collect();
    assert_eq!(pgsql.len(), statements, "{out}");
    // No `flows:` in the input: no flow events, as its live capture would give none.
    assert_eq!(pgsql.len(), events.len(), "{out}");
    for e in pgsql {
        assert_eq!(e["server"]["port"], 43469, "{e}");
    }

    // Two packet inputs: which one the file stands for is not guessed.
    std::fs::write(
        &p,
        format!(
            "inputs:\n  a: {{ type: dns }}\n  b: {{ type: packet, protocols: {{ pgsql: {{}} }} }}\noutputs:\n  out: {{ type: stdout }}\ndata_dir: {}\nhttp: {{ enabled: false }}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let child = trawl()
        .arg("pcap")
        .arg(&pcap)
        .arg("-c")
        .arg(&p)
        .spawn()
        .unwrap();
    let (code, out, err) = finish(child, "two packet inputs");
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("2 packet inputs (a, b)"), "{err}");
}
