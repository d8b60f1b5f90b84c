//! The PostgreSQL decoder against a real server: a throwaway PostgreSQL cluster (Debian's
//! `postgresql`) on a loopback port logging every statement, the known workload of
//! tests/data/pgsql/workload.py (psql and psycopg 3) captured by dumpcap, and the real trawl
//! binary reading that capture; at the same time a live trawl (`type: packet` with a `pgsql`
//! protocol section) captures the same traffic on `lo`. For both, every operation in the
//! server's log is one trawl transaction; tshark's own PostgreSQL dissector agrees on every
//! command tag and error code; the live one's /metrics and service map count them.

use crate::support;

use serde_json::Value as J;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::dumpcap::Dumpcap;
use trawl::wire::pgsql::sql;

const PASSWORD: &str = "sekret";

fn pg_bin(name: &str) -> PathBuf {
    let dir = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/setup.sh: postgresql)")
        .flatten()
        .map(|e| e.path().join("bin"))
        .find(|p| p.join("initdb").exists())
        .expect("no /usr/lib/postgresql/*/bin/initdb");
    dir.join(name)
}

/// Runs a PostgreSQL program as the `postgres` user (initdb refuses root).
fn as_postgres(program: &Path, args: &[&str]) -> Command {
    let mut c = if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    c.args(args);
    c
}

fn run_ok(mut c: Command, what: &str) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The cluster, stopped when dropped.
struct Server {
    data: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let d = self.data.to_string_lossy().into_owned();
        let _ = as_postgres(&pg_bin("pg_ctl"), &["-D", &d, "stop", "-m", "immediate"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A throwaway cluster in `tmp` on a free loopback port, with a database `shop` and the
/// postgres user's password `PASSWORD`: (the cluster, its port, its log).
fn start_cluster(tmp: &Path) -> (Server, u16, PathBuf) {
    let data = tmp.join("data");
    let pwfile = tmp.join("pw");
    std::fs::write(&pwfile, PASSWORD).unwrap();
    std::fs::set_permissions(&pwfile, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let d = data.to_string_lossy().into_owned();
    run_ok(
        as_postgres(
            &pg_bin("initdb"),
            &[
                "-D",
                &d,
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
            ],
        ),
        "initdb",
    );
    let port = free_port();
    let log = tmp.join("server.log");
    let sock = tmp.to_string_lossy().into_owned();
    let opts = format!(
        "-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c log_statement=all -c log_min_error_statement=error -c ssl=off"
    );
    let server = Server { data: data.clone() };
    run_ok(
        as_postgres(
            &pg_bin("pg_ctl"),
            &[
                "-D",
                &d,
                "-l",
                &log.to_string_lossy(),
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        ),
        "pg_ctl start",
    );
    run_ok(
        as_postgres(
            Path::new("psql"),
            &[
                "-X",
                "-q",
                "-h",
                &sock,
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-c",
                "CREATE DATABASE shop",
            ],
        ),
        "create database",
    );
    (server, port, log)
}

/// The live trawl, stopped with SIGTERM so that it writes what it holds; killed when dropped.
struct LiveTrawl(Child);

impl LiveTrawl {
    fn stop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        panic!("the live trawl did not stop within 20 s");
    }
}

impl Drop for LiveTrawl {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// What the server logged after `from` bytes of its log: (operations, failed statements),
/// literals redacted as trawl reports them.
fn logged(log: &str) -> (Vec<String>, Vec<String>) {
    let (mut ops, mut failed) = (Vec::new(), Vec::new());
    let (mut last, mut error) = (String::new(), false);
    for line in log.lines() {
        // `2026-11-30 19:25:28.498 UTC [7472] LOG:  statement: ...`
        let Some(at) = line.find("] ") else { continue };
        let line = &line[at + 2..];
        if let Some(q) = line.strip_prefix("LOG:  statement: ") {
            ops.extend(
                sql::split(sql::Dialect::Postgres, q)
                    .into_iter()
                    .map(|s| sql::redact(sql::Dialect::Postgres, s)),
            );
            last = q.to_owned();
        } else if let Some(rest) = line.strip_prefix("LOG:  execute ") {
            let q = &rest[rest.find(": ").map_or(0, |i| i + 2)..];
            ops.push(sql::redact(sql::Dialect::Postgres, q));
            last = q.to_owned();
        } else if line.starts_with("ERROR:  ") {
            error = true;
        } else if let Some(q) = line.strip_prefix("STATEMENT:  ") {
            if error {
                if q != last {
                    ops.push(sql::redact(sql::Dialect::Postgres, q));
                }
                failed.push(sql::redact(sql::Dialect::Postgres, q));
            }
            error = false;
        }
    }
    (ops, failed)
}

/// A command tag as (command, rows): `INSERT 0 3` is (`INSERT`, 3).
fn tag(t: &str) -> (String, Option<i64>) {
    let mut words: Vec<&str> = t.split_whitespace().collect();
    let rows = words.last().and_then(|w| w.parse::<i64>().ok());
    if rows.is_some() {
        words.pop();
        if words.len() == 2 && words[0] == "INSERT" {
            words.pop();
        }
    }
    (words.join(" "), rows)
}

/// The lines of `r`, as they come, from a thread (so that the pipe never fills).
fn lines_of(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Waits for a line containing `what`, returning it; fails after 30 s.
fn wait_line(rx: &mpsc::Receiver<String>, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(what) => return l,
            Ok(_) => {}
            Err(_) => panic!("trawl logged no line with {what:?} within 30 s"),
        }
    }
}

/// A plain HTTP/1.0 GET of trawl's own endpoint.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.split_once("\r\n\r\n")
        .map(|b| b.1.to_owned())
        .unwrap_or_default()
}

/// The sum of a metric family's series whose labels contain each of `labels`.
fn metric_sum(metrics: &str, family: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) && labels.iter().all(|w| l.contains(w)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// trawl's pgsql events, in the order their statements started.
fn pgsql_events(stdout: &str) -> Vec<J> {
    let mut events: Vec<J> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|e: &J| e["event"]["dataset"] == "pgsql")
        .collect();
    events.sort_by_key(|e| e["event"]["start"].as_str().unwrap_or("").to_owned());
    events
}

/// Every statement the server logged (`ops`, in order) is one of `events`, the failed ones
/// failures, and nothing secret is in any event. `what` names the trawl that reported them.
fn check_events(events: &[J], ops: &[String], failed: &[String], port: u16, what: &str) {
    let statements: Vec<String> = events
        .iter()
        .map(|e| e["db"]["statement"].as_str().unwrap_or("-").to_owned())
        .collect();
    assert_eq!(
        statements, ops,
        "{what}: trawl's statements, then the server's log"
    );
    let errors: Vec<String> = events
        .iter()
        .filter(|e| e["event"]["outcome"] == "failure")
        .map(|e| e["db"]["statement"].as_str().unwrap_or("-").to_owned())
        .collect();
    assert_eq!(errors, failed, "{what}");
    for e in events {
        assert_eq!(e["db"]["system"], "postgresql");
        assert_eq!(
            e["event"]["category"],
            serde_json::json!(["database", "network"])
        );
        assert_eq!(e["db"]["name"], "shop");
        assert_eq!(e["db"]["user"], "postgres");
        assert_eq!(e["server"]["port"], port as i64);
        assert!(e["event"]["reason"].is_null(), "{what}: {e}");
        let text = e.to_string();
        assert!(
            !text.contains(PASSWORD) && !text.contains("'apple'"),
            "{what}: {text}"
        );
    }
}

#[test]
fn every_statement_the_server_logged_is_one_transaction_and_tshark_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let (server, port, log) = start_cluster(tmp.path());
    let setup_len = std::fs::read_to_string(&log).unwrap().len();

    let pcap = tmp.path().join("pg.pcap");
    let mut cap = Dumpcap::on_lo(&pcap, &format!("tcp port {port}"));
    // The live trawl: one `packet` input with flows (for the service map) and pgsql.
    let live_dir = tmp.path().join("live");
    std::fs::create_dir_all(&live_dir).unwrap();
    let live_pipeline = tmp.path().join("live.yaml");
    std::fs::write(
        &live_pipeline,
        format!(
            "inputs:\n  node:\n    type: packet\n    capture: {{ interfaces: [lo], bpf_filter: \"tcp port {port}\" }}\n    flows: {{ service_map: true }}\n    protocols:\n      pgsql: {{ ports: [{port}] }}\noutputs:\n  out: {{ type: stdout }}\ndata_dir: {}\nhttp: {{ address: \"127.0.0.1:0\" }}\n",
            live_dir.display()
        ),
    )
    .unwrap();
    let mut live = LiveTrawl(
        Command::new(env!("CARGO_BIN_EXE_trawl"))
            .args(["--log-format", "json", "run", "-c"])
            .arg(&live_pipeline)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let live_log = lines_of(live.0.stderr.take().unwrap());
    let live_out = live.0.stdout.take().unwrap();
    let live_stdout = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(live_out).read_to_string(&mut s);
        s
    });
    let serving: J = serde_json::from_str(&wait_line(&live_log, "serving /metrics")).unwrap();
    let metrics_addr = serving["address"]
        .as_str()
        .or(serving["fields"]["address"].as_str())
        .unwrap()
        .to_owned();
    wait_line(&live_log, "capturing");
    std::thread::sleep(Duration::from_millis(500));
    let workload = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pgsql/workload.py");
    let wl = Command::new("python3")
        .arg(&workload)
        .args(["127.0.0.1", &port.to_string(), PASSWORD])
        .output()
        .unwrap();
    assert!(
        wl.status.success(),
        "workload: {}",
        String::from_utf8_lossy(&wl.stderr)
    );
    std::thread::sleep(Duration::from_millis(500));
    cap.stop();
    let server_log = std::fs::read_to_string(&log).unwrap();
    drop(server);
    let (ops, failed) = logged(&server_log[setup_len..]);
    assert!(ops.len() >= 25, "the workload ran: {ops:?}");

    // The live trawl counted every statement in its RED metrics (the clients have closed
    // their connections, so nothing is waiting for a timeout) and drew a pgsql edge.
    let server = format!("server=\"127.0.0.1:{port}\"");
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let m = http_get(&metrics_addr, "/metrics");
        if metric_sum(&m, "trawl_pgsql_requests_total", &[&server]) >= ops.len() as f64 {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "live trawl counted {} of {} statements within 30 s:\n{m}",
            metric_sum(&m, "trawl_pgsql_requests_total", &[&server]),
            ops.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        metric_sum(&metrics, "trawl_pgsql_requests_total", &[&server]),
        ops.len() as f64,
        "{metrics}"
    );
    let failures = metric_sum(
        &metrics,
        "trawl_pgsql_requests_total",
        &[&server, "outcome=\"failure\""],
    );
    assert_eq!(failures, failed.len() as f64, "{metrics}");
    assert_eq!(
        metric_sum(
            &metrics,
            "trawl_pgsql_request_duration_seconds_count",
            &[&server]
        ),
        ops.len() as f64,
        "{metrics}"
    );
    // The protocol's own counters are registered: the server runs with ssl=off, so no
    // connection went over to encryption, and nothing was lost.
    for family in ["encrypted", "gaps", "overflowed"] {
        let line = format!("trawl_packet_pgsql_{family}_total{{input=\"node\"}} 0");
        assert!(metrics.contains(&line), "no {line} in\n{metrics}");
    }
    let graph: J = serde_json::from_str(&http_get(&metrics_addr, "/api/graph/data")).unwrap();
    let edge = graph["edges"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["detail__protocol"] == "pgsql"))
        .unwrap_or_else(|| panic!("no pgsql edge in {graph}"));
    assert_eq!(edge["source"], "127.0.0.1", "{graph}");
    assert_eq!(edge["target"], "127.0.0.1", "{graph}");
    live.stop();
    let live_events = pgsql_events(&live_stdout.join().unwrap());
    check_events(&live_events, &ops, &failed, port, "live trawl");

    // trawl reads the capture through a pipeline (`pgsql:` beside `path`, the form written
    // before `protocols:`).
    let stdout =
        support::pcap_read::events_of(&pcap, &format!("pgsql: {{ ports: [{port}] }}"), tmp.path());
    let events = pgsql_events(&stdout);
    check_events(&events, &ops, &failed, port, "trawl reading the capture");

    // tshark's dissector on the same capture: every command tag and SQLSTATE, per connection
    // in order, is what trawl reported.
    let ts = Command::new("tshark")
        .args(["-r"])
        .arg(&pcap)
        .args([
            "-d",
            &format!("tcp.port=={port},pgsql"),
            "-Y",
            &format!("tcp.srcport=={port}"),
        ])
        .args(["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|"])
        .args([
            "-e",
            "tcp.dstport",
            "-e",
            "pgsql.tag",
            "-e",
            "pgsql.code",
            "-e",
            "pgsql.severity",
        ])
        .output()
        .expect("tshark is installed (scripts/setup.sh)");
    assert!(
        ts.status.success(),
        "{}",
        String::from_utf8_lossy(&ts.stderr)
    );
    let mut want: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&ts.stdout).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let client: i64 = f[0].parse().unwrap();
        let v = want.entry(client).or_default();
        for t in f.get(1).unwrap_or(&"").split('|').filter(|t| !t.is_empty()) {
            let (op, rows) = tag(t);
            v.push(format!("{op} {rows:?}"));
        }
        // Classes 00-02 are notices and warnings (NoticeResponse), not errors.
        let errors = f.get(2).unwrap_or(&"").split('|');
        for c in errors.filter(|c| !c.is_empty() && !matches!(&c[..2], "00" | "01" | "02")) {
            v.push(format!("error {c}"));
        }
    }
    want.retain(|_, v| !v.is_empty());
    let mut got: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for e in &events {
        let client = e["client"]["port"].as_i64().unwrap();
        let entry = match e["pgsql"]["error"]["code"].as_str() {
            Some(c) => format!("error {c}"),
            None => format!(
                "{} {:?}",
                e["db"]["operation"].as_str().unwrap_or(""),
                e["pgsql"]["rows"].as_i64()
            ),
        };
        got.entry(client).or_default().push(entry);
    }
    assert_eq!(got, want, "trawl, then tshark");
}

/// A client pipelining 1,500 simple queries on one connection of a real PostgreSQL, which
/// answers them in order: past the 1,024 requests trawl keeps waiting, the oldest are given up
/// (reported unanswered, their answers skipped to their ReadyForQuery), and every other query
/// meets its own answer. Query i selects from table `rR` of R rows (R = i % 97 + 1), so an
/// answer given to another query shows in its row count.
#[test]
fn pipelined_queries_past_the_queue_bound_each_keep_their_own_answer() {
    const QUERIES: usize = 1500;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let (server, port, _) = start_cluster(tmp.path());
    let pcap = tmp.path().join("pipeline.pcap");
    let mut cap = Dumpcap::on_lo(&pcap, &format!("tcp port {port}"));
    std::thread::sleep(Duration::from_millis(500));
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pgsql/pipeline.py");
    let mut run = Command::new("python3");
    run.arg(&client)
        .args(["127.0.0.1", &port.to_string(), PASSWORD])
        .arg(QUERIES.to_string());
    run_ok(run, "pipelining client");
    std::thread::sleep(Duration::from_millis(500));
    cap.stop();
    drop(server);

    let stdout = support::pcap_read::events_of(
        &pcap,
        &format!("protocols: {{ pgsql: {{ ports: [{port}] }} }}"),
        tmp.path(),
    );
    let rows_of = |statement: &str| -> Option<u64> {
        statement.strip_prefix("SELECT n FROM r")?.parse().ok()
    };
    let (mut unanswered, mut paired) = (Vec::new(), Vec::new());
    for e in pgsql_events(&stdout) {
        let Some(want) = e["db"]["statement"].as_str().and_then(rows_of) else {
            // The set-up (CREATE TABLE ...) before the batch, answered one by one.
            assert!(e["event"]["reason"].is_null(), "{e}");
            continue;
        };
        match e["event"]["reason"].as_str() {
            Some("response_missing") => unanswered.push(want),
            None => {
                assert_eq!(e["pgsql"]["rows"].as_u64(), Some(want), "{e}");
                paired.push(want);
            }
            Some(other) => panic!("unexpected reason {other}: {e}"),
        }
    }
    assert!(
        !unanswered.is_empty(),
        "the capture never had more than 1,024 queries waiting: nothing was tested"
    );
    assert_eq!(unanswered.len() + paired.len(), QUERIES);
    let all: Vec<u64> = unanswered.iter().chain(&paired).copied().collect();
    let sent: Vec<u64> = (0..QUERIES as u64).map(|i| i % 97 + 1).collect();
    assert_eq!(all, sent, "every query once, in the order it was sent");
}
