//! The MySQL decoder against a real server: a throwaway MariaDB (Debian's `mariadb-server`)
//! on a loopback port with its general log on and a user with a mysql_native_password
//! password, the known workload of tests/data/mysql/workload.py (the `mariadb` CLI, PyMySQL,
//! mysql-connector-python's server-side prepared statements) captured live by a `trawl run`
//! with a `mysql` input and by dumpcap, whose file the real trawl binary reads too
//! (`pcap_file`). Every command in the server's general log is one trawl transaction, tshark's
//! own MySQL dissector agrees on commands and errors, the live capture reports what the file
//! does, and `/metrics` and the service map (`/api/graph/data`) have the MySQL series and edge.
//! A second server takes 1,500 pipelined queries (tests/data/mysql/pipeline.py) on one
//! connection: each keeps its own answer past the decoder's queue bound.

use crate::support;

use serde_json::Value as J;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::dumpcap::Dumpcap;
use trawl::wire::sql::{self, Dialect};

const PASSWORD: &str = "sekret";
const DEADLINE: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// A child killed when dropped (mariadbd, the live trawl).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A throwaway MariaDB in `dir`, on `port`, logging every command to `general.log`.
fn start_mariadb(dir: &Path, port: u16) -> KillOnDrop {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let user: &[&str] = if root() { &["--user=mysql"] } else { &[] };
    if root() {
        let ok = Command::new("chown")
            .args(["-R", "mysql"])
            .arg(dir)
            .status()
            .map(|s| s.success());
        assert_eq!(ok.ok(), Some(true), "chown to the mysql user");
    }
    let out = Command::new("mariadb-install-db")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .args(user)
        .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
        .output()
        .expect("mariadb-install-db (Debian package mariadb-server; scripts/setup.sh)");
    assert!(
        out.status.success(),
        "mariadb-install-db: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Command::new("/usr/sbin/mariadbd")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .args(user)
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--port={port}"))
        .arg(format!("--socket={}", dir.join("sock").display()))
        .arg(format!("--pid-file={}", dir.join("pid").display()))
        .arg("--general-log=1")
        .arg(format!(
            "--general-log-file={}",
            dir.join("general.log").display()
        ))
        .arg(format!("--log-error={}", dir.join("error.log").display()))
        .args([
            "--skip-ssl",
            "--local-infile=1",
            "--innodb-buffer-pool-size=16M",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mariadbd");
    let mut server = KillOnDrop(server);
    let start = Instant::now();
    loop {
        if let Ok(Some(s)) = server.0.try_wait() {
            panic!(
                "mariadbd exited ({s}): {}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
        }
        if root_sql(dir, "SELECT 1").is_ok() {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "mariadbd did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    server
}

/// A throwaway MariaDB under `tmp` (opened to the mysql user) with a database `shop` and its
/// user `shop` (password `PASSWORD`): (the server, its folder, its port).
fn shop_server(tmp: &Path) -> (KillOnDrop, std::path::PathBuf, u16) {
    std::fs::set_permissions(tmp, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let dir = tmp.join("server");
    let port = free_port();
    let server = start_mariadb(&dir, port);
    root_sql(
        &dir,
        &format!(
            "CREATE USER 'shop'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('{PASSWORD}'); CREATE DATABASE shop; GRANT ALL ON shop.* TO 'shop'@'%'"
        ),
    )
    .unwrap();
    (server, dir, port)
}

/// Runs SQL as root over the unix socket (not captured).
fn root_sql(dir: &Path, q: &str) -> Result<String, String> {
    let out = Command::new("mariadb")
        .arg("--no-defaults")
        .arg(format!("--socket={}", dir.join("sock").display()))
        .args(["-u", "root", "-N", "-e", q])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The general log's commands per connection id: (command, argument).
fn general_log(text: &str) -> BTreeMap<u64, Vec<(String, String)>> {
    let mut by_id: BTreeMap<u64, Vec<(String, String)>> = BTreeMap::new();
    for line in text.lines() {
        // `261130 22:32:25\t     4 Query\tSELECT ...` or `\t\t     4 Query\t...`; the date is
        // optional.
        let rest = match line.split_once('\t') {
            Some((head, rest)) if head.is_empty() || head.contains(':') => rest,
            _ => continue,
        };
        let rest = rest.trim_start_matches('\t').trim_start();
        let Some((id, rest)) = rest.split_once(' ') else {
            continue;
        };
        let Ok(id) = id.parse::<u64>() else { continue };
        let Some((command, arg)) = rest.split_once('\t') else {
            continue;
        };
        by_id
            .entry(id)
            .or_default()
            .push((command.to_owned(), arg.to_owned()));
    }
    by_id
}

/// Lines of a child's pipe, read by a thread so that the pipe never fills.
fn lines_of(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Waits for a line containing `what`; fails with `why` after the deadline.
fn wait_line(rx: &mpsc::Receiver<String>, what: &str, why: &str) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) if l.contains(what) => return l,
            Ok(_) => {}
            Err(_) => panic!("{why}: no line with {what:?} within {DEADLINE:?}"),
        }
    }
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

/// What must be the same whichever way trawl saw the traffic (live or from the file).
fn essentials(e: &J) -> String {
    format!(
        "{} {} {} | {} | {} {} {}",
        e["client"]["port"],
        e["mysql"]["command"],
        e["db"]["statement"],
        e["event"]["outcome"],
        e["mysql"]["error"]["code"],
        e["mysql"]["rows"],
        e["mysql"]["affected_rows"]
    )
}

fn redact(s: &str) -> String {
    sql::redact(Dialect::Mysql, s.trim())
}

#[test]
fn every_command_the_server_logged_is_one_transaction_and_tshark_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, dir, port) = shop_server(tmp.path());
    let log_path = dir.join("general.log");
    let setup_len = std::fs::read_to_string(&log_path).unwrap().len();
    let csv = tmp.path().join("items.csv");
    std::fs::write(&csv, "secret-melon,5.25\nsecret-lime,0.5\n").unwrap();

    // trawl captures live on lo (when this machine allows capturing), serving /metrics.
    let live = match trawl::wire::capture::probe("lo") {
        Ok(()) => {
            let pipeline = tmp.path().join("live.yaml");
            let data = tmp.path().join("live-data");
            std::fs::create_dir_all(&data).unwrap();
            std::fs::write(
                &pipeline,
                format!(
                    "inputs:\n  db:\n    type: mysql\n    capture: {{ interfaces: [lo], bpf_filter: \"tcp port {port}\" }}\n    ports: [{port}]\noutputs:\n  out: {{ type: stdout }}\ndata_dir: {}\nhttp: {{ address: \"127.0.0.1:0\" }}\n",
                    data.display()
                ),
            )
            .unwrap();
            let mut trawl = KillOnDrop(
                Command::new(env!("CARGO_BIN_EXE_trawl"))
                    .args(["--log-format", "json", "run", "-c"])
                    .arg(&pipeline)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            );
            let log = lines_of(trawl.0.stderr.take().unwrap());
            let events = lines_of(trawl.0.stdout.take().unwrap());
            let serving = wait_line(&log, "serving /metrics", "trawl did not serve /metrics");
            let v: J = serde_json::from_str(&serving).unwrap();
            let addr = v["address"]
                .as_str()
                .or(v["fields"]["address"].as_str())
                .unwrap()
                .to_owned();
            wait_line(&log, "capturing", "trawl did not start capturing on lo");
            Some((trawl, events, addr))
        }
        Err(e) => {
            println!("SKIPPED the live half: cannot capture on lo: {e}");
            None
        }
    };

    let pcap = tmp.path().join("mysql.pcap");
    let mut cap = Dumpcap::on_lo(&pcap, &format!("tcp port {port}"));
    std::thread::sleep(Duration::from_millis(500));
    let workload = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mysql/workload.py");
    let wl = Command::new("python3")
        .arg(&workload)
        .args(["127.0.0.1", &port.to_string(), PASSWORD])
        .arg(&csv)
        .output()
        .unwrap();
    assert!(
        wl.status.success(),
        "workload: {}{}",
        String::from_utf8_lossy(&wl.stdout),
        String::from_utf8_lossy(&wl.stderr)
    );
    std::thread::sleep(Duration::from_millis(500));
    cap.stop();
    let log = std::fs::read_to_string(&log_path).unwrap();
    drop(server);
    let logged = general_log(&log[setup_len..]);

    // trawl reads the capture through a pipeline.
    let stdout = support::pcap_read::events_of(
        &pcap,
        &format!("protocols: {{ mysql: {{ ports: [{port}] }} }}"),
        tmp.path(),
    );
    let mut events: Vec<J> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &J| e["event"]["dataset"] == "mysql")
        .collect();
    events.sort_by_key(|e| e["event"]["start"].as_str().unwrap_or("").to_owned());
    for e in &events {
        // Times left out: a start at hh:mm:09.75... holds the price 9.75 as text too.
        let mut timeless = e.clone();
        timeless["@timestamp"].take();
        timeless["event"]["start"].take();
        timeless["event"]["end"].take();
        let text = timeless.to_string();
        for secret in [PASSWORD, "secret-", "'apple'", "wrong-password", "9.75"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(e["db"]["system"], "mariadb", "{e}");
        assert_eq!(
            e["event"]["category"],
            serde_json::json!(["database", "network"]),
            "{e}"
        );
        assert_eq!(e["db"]["user"], "shop", "{e}");
        assert_eq!(e["db"]["name"], "shop", "{e}");
        assert_eq!(e["server"]["port"], port as i64);
        assert!(e["event"]["reason"].is_null(), "{e}");
    }

    // Per connection (in the order they were made), what trawl reported and what the server
    // logged. The general log leaves out COM_PING and a prepare the server refused: those are
    // checked on their own below.
    let mut by_port: BTreeMap<i64, Vec<&J>> = BTreeMap::new();
    let mut order: Vec<i64> = Vec::new();
    for e in &events {
        let p = e["client"]["port"].as_i64().unwrap();
        if !by_port.contains_key(&p) {
            order.push(p);
        }
        by_port.entry(p).or_default().push(e);
    }
    let describe = |e: &J| -> String {
        let cmd = e["mysql"]["command"].as_str().unwrap_or("?");
        let stmt = e["db"]["statement"].as_str().unwrap_or("");
        let what = format!("{cmd} {stmt}").trim().to_owned();
        match e["mysql"]["error"]["code"].as_i64() {
            Some(code) => format!("{what} -> {code}"),
            None => what,
        }
    };
    let is_extra = |e: &J| {
        e["mysql"]["command"] == "ping"
            || (e["mysql"]["command"] == "stmt_prepare" && e["event"]["outcome"] == "failure")
    };
    let trawl_ops: Vec<Vec<String>> = order
        .iter()
        .map(|p| {
            by_port[p]
                .iter()
                .filter(|e| !is_extra(e))
                .map(|e| {
                    // The log does not record errors, nor which statement a reset is of.
                    if e["mysql"]["command"] == "stmt_reset" {
                        return "stmt_reset".to_owned();
                    }
                    let d = describe(e);
                    d.split(" -> ").next().unwrap_or("").to_owned()
                })
                .collect()
        })
        .collect();
    let log_ops: Vec<Vec<String>> = logged
        .values()
        .map(|cmds| {
            cmds.iter()
                .filter_map(|(c, arg)| match c.as_str() {
                    "Query" => Some(format!("query {}", redact(arg))),
                    "Prepare" => Some(format!("stmt_prepare {}", redact(arg))),
                    // The log shows the parameters in place; redacted, they are the `?` of the
                    // prepared text.
                    "Execute" => Some(format!("stmt_execute {}", redact(arg))),
                    "Reset stmt" => Some("stmt_reset".to_owned()),
                    "Init DB" => Some("init_db".to_owned()),
                    "Connect" if arg.starts_with("Access denied") => Some("connect".to_owned()),
                    _ => None,
                })
                .collect()
        })
        .filter(|v: &Vec<String>| !v.is_empty())
        .collect();
    assert_eq!(
        trawl_ops, log_ops,
        "trawl's commands, then the server's log"
    );
    let extras: Vec<String> = events
        .iter()
        .filter(|e| is_extra(e))
        .map(&describe)
        .collect();
    assert_eq!(
        extras,
        vec![
            "ping",
            "ping",
            "stmt_prepare SELECT nosuchcol FROM items WHERE id = ? -> 1054"
        ]
    );

    // Errors and rows, as the workload made them.
    let errors: Vec<String> = events
        .iter()
        .filter(|e| e["event"]["outcome"] == "failure")
        .map(|e| {
            format!(
                "{} {}",
                describe(e),
                e["mysql"]["error"]["sql_state"].as_str().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(
        errors,
        vec![
            "query SELECT nosuchcol FROM items -> 1054 42S22",
            "query INSERT INTO items (id, name) VALUES (?, ?) -> 1062 23000",
            "query SELECT ?; SELECT * FROM nosuch; SELECT ? -> 1146 42S02",
            "connect -> 1045 28000",
            "stmt_execute INSERT INTO items (id, name) VALUES (?, ?) -> 1062 23000",
            "stmt_prepare SELECT nosuchcol FROM items WHERE id = ? -> 1054 42S22",
        ]
    );
    let rows = |stmt: &str| -> Vec<(i64, i64)> {
        events
            .iter()
            .filter(|e| e["db"]["statement"] == stmt && e["mysql"]["command"] != "stmt_reset")
            .map(|e| {
                (
                    e["mysql"]["rows"].as_i64().unwrap_or(-1),
                    e["mysql"]["affected_rows"].as_i64().unwrap_or(-1),
                )
            })
            .collect()
    };
    assert_eq!(rows("SELECT * FROM items WHERE price > ?"), vec![(2, -1)]);
    assert_eq!(
        rows("INSERT INTO items (name, price) VALUES (?, ?), (?, ?), (?, ?)"),
        vec![(-1, 3)]
    );
    // COUNT(*), then one row: one transaction for the multi-statement query.
    assert_eq!(
        rows("SELECT COUNT(*) FROM items; SELECT name FROM items WHERE id = ?"),
        vec![(2, -1)]
    );
    assert_eq!(
        rows("SELECT COUNT(*) FROM items; UPDATE items SET price = ? WHERE id = ?; SELECT ?"),
        vec![(2, 1)]
    );
    // PyMySQL's query (its literal inline), then the prepare and its two executes (the
    // second asks for the row the CLI deleted).
    assert_eq!(
        rows("SELECT name, price FROM items WHERE id = ?"),
        vec![(1, -1), (-1, -1), (1, -1), (0, -1)]
    );
    let infile: Vec<&J> = events
        .iter()
        .filter(|e| e["mysql"]["local_infile"] == true)
        .collect();
    assert_eq!(infile.len(), 1);
    assert_eq!(infile[0]["mysql"]["affected_rows"], 2);

    // tshark's dissector on the same capture: per connection, the commands in order with the
    // error codes of their answers, as trawl reported them.
    let ts = Command::new("tshark")
        .args(["-r"])
        .arg(&pcap)
        .args(["-d", &format!("tcp.port=={port},mysql"), "-Y", "mysql"])
        .args(["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|"])
        .args([
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
            "-e",
            "mysql.command",
            "-e",
            "mysql.error_code",
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
        let (src, dst): (i64, i64) = (f[0].parse().unwrap(), f[1].parse().unwrap());
        let client = if src == port as i64 { dst } else { src };
        let v = want.entry(client).or_default();
        for c in f.get(2).unwrap_or(&"").split('|').filter(|c| !c.is_empty()) {
            // COM_QUIT, COM_STMT_CLOSE: no answer, no transaction. tshark also takes the
            // contents of the LOAD DATA LOCAL file for a command (its first byte).
            let name = match c {
                "1" | "25" => continue,
                c if !matches!(c.parse::<u8>(), Ok(b) if b <= 0x1f) => continue,
                "2" => "init_db",
                "3" => "query",
                "14" => "ping",
                "22" => "stmt_prepare",
                "23" => "stmt_execute",
                "26" => "stmt_reset",
                other => panic!("command {other} is not in the workload"),
            };
            v.push(name.to_owned());
        }
        for code in f.get(3).unwrap_or(&"").split('|').filter(|c| !c.is_empty()) {
            if code == "1045" {
                v.push("connect".to_owned());
            }
            v.push(format!("error {code}"));
        }
    }
    want.retain(|_, v| !v.is_empty());
    let mut got: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for e in &events {
        let client = e["client"]["port"].as_i64().unwrap();
        let v = got.entry(client).or_default();
        v.push(e["mysql"]["command"].as_str().unwrap_or("?").to_owned());
        if let Some(code) = e["mysql"]["error"]["code"].as_i64() {
            v.push(format!("error {code}"));
        }
    }
    assert_eq!(got, want, "trawl, then tshark");

    // The live capture reported the same transactions; /metrics has their RED series and the
    // service map an edge of protocol mysql.
    let Some((_trawl, live_events, addr)) = live else {
        return;
    };
    let want: Vec<String> = events.iter().map(essentials).collect();
    let mut seen: Vec<J> = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while seen.len() < want.len() {
        match live_events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) => {
                if let Ok(e) = serde_json::from_str::<J>(&l) {
                    if e["event"]["dataset"] == "mysql" {
                        seen.push(e);
                    }
                }
            }
            Err(_) => panic!(
                "the live capture reported {} of {} transactions",
                seen.len(),
                want.len()
            ),
        }
    }
    seen.sort_by_key(|e| e["event"]["start"].as_str().unwrap_or("").to_owned());
    let got: Vec<String> = seen.iter().map(essentials).collect();
    assert_eq!(got, want, "live, then the file");
    let metrics = http_get(&addr, "/metrics");
    let server = format!("127.0.0.1:{port}");
    for want in [
        format!("trawl_mysql_requests_total{{server=\"{server}\",operation=\"SELECT\",status=\"00\",outcome=\"success\"}}"),
        format!("trawl_mysql_requests_total{{server=\"{server}\",operation=\"CONNECT\",status=\"28\",outcome=\"failure\"}} 1"),
        format!("trawl_mysql_requests_total{{server=\"{server}\",operation=\"PREPARE\",status=\"42\",outcome=\"failure\"}} 1"),
        format!("trawl_mysql_request_duration_seconds_count{{server=\"{server}\"}}"),
        format!("trawl_mysql_errors_total{{server=\"{server}\""),
        // A clean loopback capture of a server without TLS: nothing encrypted, no gap, no
        // command left unanswered by an overflowing queue.
        "trawl_packet_mysql_encrypted_total{input=\"db\"} 0\n".to_owned(),
        "trawl_packet_mysql_gaps_total{input=\"db\"} 0\n".to_owned(),
        "trawl_packet_mysql_overflowed_total{input=\"db\"} 0\n".to_owned(),
    ] {
        assert!(metrics.contains(&want), "no {want} in\n{metrics}");
    }
    let graph = http_get(&addr, "/api/graph/data");
    assert!(
        graph.contains("\"detail__protocol\":\"mysql\""),
        "no mysql edge in {graph}"
    );
}

/// A client pipelining 1,500 queries on one connection of a real MariaDB, which answers them
/// in order: past the 1,024 commands trawl keeps waiting, the oldest are reported unanswered and
/// their answers alone, and every other query meets its own answer. Query i selects from
/// `seq_1_to_R` (R = i % 97 + 1), so an answer given to another query shows in its rows.
#[test]
fn pipelined_queries_past_the_queue_bound_each_keep_their_own_answer() {
    const QUERIES: usize = 1500;
    let tmp = tempfile::tempdir().unwrap();
    let (server, _, port) = shop_server(tmp.path());
    let pcap = tmp.path().join("pipeline.pcap");
    let mut cap = Dumpcap::on_lo(&pcap, &format!("tcp port {port}"));
    std::thread::sleep(Duration::from_millis(500));
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mysql/pipeline.py");
    let run = Command::new("python3")
        .arg(&client)
        .args(["127.0.0.1", &port.to_string(), PASSWORD])
        .arg(QUERIES.to_string())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "pipelining client: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    std::thread::sleep(Duration::from_millis(500));
    cap.stop();
    drop(server);

    let stdout = support::pcap_read::events_of(
        &pcap,
        &format!("protocols: {{ mysql: {{ ports: [{port}] }} }}"),
        tmp.path(),
    );
    let events: Vec<J> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &J| e["event"]["dataset"] == "mysql" && e["mysql"]["command"] == "query")
        // PyMySQL's own set-up (SET NAMES) comes first, answered before the batch.
        .filter(|e: &J| {
            let s = e["db"]["statement"].as_str().unwrap_or("");
            let ours = s.is_empty() || s.contains("seq_1_to_");
            assert!(ours || e["event"]["reason"].is_null(), "{e}");
            ours
        })
        .collect();
    let rows_of = |statement: &str| -> u64 {
        let r = statement.rsplit("seq_1_to_").next().unwrap_or("");
        r.parse()
            .unwrap_or_else(|_| panic!("no row count in {statement:?}"))
    };
    // In the order trawl reported them: the unanswered (as the queue overflowed), the answers
    // alone (in the order the server sent them), the paired.
    let (mut unanswered, mut alone, mut paired) = (Vec::new(), Vec::new(), Vec::new());
    for e in &events {
        match e["event"]["reason"].as_str() {
            Some("response_missing") => {
                unanswered.push(rows_of(e["db"]["statement"].as_str().unwrap()))
            }
            Some("request_missing") => alone.push(e["mysql"]["rows"].as_u64().unwrap()),
            None => {
                let want = rows_of(e["db"]["statement"].as_str().unwrap());
                assert_eq!(e["mysql"]["rows"].as_u64(), Some(want), "{e}");
                paired.push(want);
            }
            Some(other) => panic!("unexpected reason {other}: {e}"),
        }
    }
    assert!(
        !unanswered.is_empty(),
        "the capture never had more than 1,024 queries waiting: nothing was tested"
    );
    assert_eq!(
        alone, unanswered,
        "each late answer is its own query's, in order"
    );
    assert_eq!(unanswered.len() + paired.len(), QUERIES);
    let all: Vec<u64> = unanswered.iter().chain(&paired).copied().collect();
    let sent: Vec<u64> = (0..QUERIES as u64).map(|i| i % 97 + 1).collect();
    assert_eq!(all, sent, "every query once, in the order it was sent");
}
