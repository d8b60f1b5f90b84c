//! The Redis decoder against a real `redis-server` (Debian's package) on loopback: `trawl run`
//! with a `redis` input captures a workload of plain commands, a pipelined batch, an error, a
//! MULTI/EXEC transaction, an inline command, pub/sub in RESP2 and RESP3 (HELLO 3). The
//! server's own `MONITOR` feed (read over a unix socket, which is not captured) must match
//! trawl's transactions one for one, per connection and in order; tshark on a capture of the
//! same traffic counts the same errors.

use crate::support;

use serde_json::Value as J;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::dumpcap::Dumpcap;

const DEADLINE: Duration = Duration::from_secs(60);

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// `redis-server` on `port` of 127.0.0.1 and on a unix socket under `dir`, with nothing saved.
fn start_redis(dir: &Path, port: u16) -> (KillOnDrop, PathBuf) {
    let sock = dir.join("redis.sock");
    let conf = dir.join("redis.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\nunixsocket {}\nunixsocketperm 700\nsave \"\"\nappendonly no\ndir {}\ndaemonize no\nlogfile {}\n",
            sock.display(),
            dir.display(),
            dir.join("redis.log").display()
        ),
    )
    .expect("write redis.conf");
    let child = Command::new("redis-server")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("redis-server (Debian package redis-server; scripts/setup.sh installs it)");
    let child = KillOnDrop(child);
    let start = Instant::now();
    while UnixStream::connect(&sock).is_err() || TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < DEADLINE, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, sock)
}

/// A blocking reader of one RESP value from a socket, as a client library has; returns the
/// value's text (errors prefixed by `-`, pushes by `>`) for the workload's checks.
struct Resp<S: Read> {
    r: BufReader<S>,
}

impl<S: Read> Resp<S> {
    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).expect("read a reply");
        assert!(l.ends_with("\r\n"), "connection closed mid-reply: {l:?}");
        l.truncate(l.len() - 2);
        l
    }
    fn value(&mut self) -> String {
        let l = self.line();
        let (t, rest) = l.split_at(1);
        match t {
            "$" | "=" | "!" => {
                let n: i64 = rest.parse().expect("length");
                if n < 0 {
                    return "(nil)".into();
                }
                let mut b = vec![0; n as usize + 2];
                self.r.read_exact(&mut b).expect("bulk");
                String::from_utf8_lossy(&b[..n as usize]).into_owned()
            }
            "*" | "~" | ">" | "%" => {
                let n: i64 = rest.parse().expect("length");
                let n = if t == "%" { n * 2 } else { n };
                let items: Vec<String> = (0..n.max(0)).map(|_| self.value()).collect();
                format!("{}[{}]", if t == ">" { ">" } else { "" }, items.join(","))
            }
            "-" => format!("-{rest}"),
            _ => rest.to_owned(),
        }
    }
}

struct Client {
    w: TcpStream,
    r: Resp<TcpStream>,
}

impl Client {
    fn connect(port: u16) -> Client {
        let w = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        w.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let r = Resp {
            r: BufReader::new(w.try_clone().expect("clone")),
        };
        Client { w, r }
    }
    fn port(&self) -> u16 {
        self.w.local_addr().expect("addr").port()
    }
    fn send(&mut self, words: &[&str]) {
        self.w.write_all(&encode(words)).expect("send");
    }
    fn call(&mut self, words: &[&str]) -> String {
        self.send(words);
        self.r.value()
    }
}

fn encode(words: &[&str]) -> Vec<u8> {
    let mut b = format!("*{}\r\n", words.len()).into_bytes();
    for w in words {
        b.extend_from_slice(format!("${}\r\n{w}\r\n", w.len()).as_bytes());
    }
    b
}

/// trawl on `pipeline`: the child, its events (read by a thread so the pipe never fills) and
/// the address it serves /metrics on.
fn start_trawl(pipeline: &Path) -> (KillOnDrop, mpsc::Receiver<J>, String) {
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_trawl"))
            .args(["--log-format", "json", "run", "-c"])
            .arg(pipeline)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start trawl"),
    );
    let stderr = child.0.stderr.take().expect("stderr");
    let (ltx, logs) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("trawl: {line}");
            let _ = ltx.send(line);
        }
    });
    let start = Instant::now();
    let metrics_addr = loop {
        let left = DEADLINE.saturating_sub(start.elapsed());
        let line = logs
            .recv_timeout(left)
            .expect("trawl logged no 'serving /metrics' within the deadline");
        if line.contains("serving /metrics") {
            let v: J = serde_json::from_str(&line).expect("a JSON log line");
            break v["address"]
                .as_str()
                .or(v["fields"]["address"].as_str())
                .expect("the address in the log line")
                .to_owned();
        }
    };
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<J>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    (child, rx, metrics_addr)
}

/// A plain HTTP/1.0 GET of trawl's own endpoint: the body.
fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to trawl's http address");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").expect("request");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("response");
    body.split_once("\r\n\r\n")
        .map(|b| b.1.to_owned())
        .unwrap_or_default()
}

fn get<'a>(e: &'a J, path: &str) -> &'a J {
    path.split('.').fold(e, |v, k| &v[k])
}

/// The command a MONITOR line shows: `1700000000.1 [0 127.0.0.1:5000] "client" "setname" "x"`
/// gives the client port and the name as trawl reports it (container commands with their
/// subcommand).
fn monitor_entry(line: &str) -> Option<(u16, String)> {
    let open = line.find('[')?;
    let close = line[open..].find(']')? + open;
    let addr = line[open + 1..close].split(' ').nth(1)?;
    let port = addr.rsplit(':').next()?.parse().ok()?;
    let words: Vec<String> = line[close + 1..]
        .split('"')
        .skip(1)
        .step_by(2)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let name = match words.first()?.as_str() {
        "CLIENT" | "CONFIG" | "OBJECT" | "COMMAND" => format!("{} {}", words[0], words.get(1)?),
        _ => words[0].clone(),
    };
    Some((port, name))
}

#[test]
fn redis_transactions_match_the_servers_monitor_one_for_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let (_redis, sock) = start_redis(dir.path(), port);

    // tshark's capture of the same traffic, the independent oracle.
    let pcap = dir.path().join("redis.pcap");
    let mut dumpcap = Dumpcap::on_lo(&pcap, &format!("tcp port {port}"));

    let pipeline = dir.path().join("p.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "inputs:\n  cache:\n    type: redis\n    capture: {{ interfaces: [lo], bpf_filter: \"tcp port {port}\" }}\n    ports: [{port}]\noutputs:\n  out: {{ type: stdout }}\ndata_dir: {}\nhttp: {{ address: \"127.0.0.1:0\" }}\n",
            dir.path().display()
        ),
    )
    .expect("pipeline");
    let (_trawl, events, metrics_addr) = start_trawl(&pipeline);

    // Wait until trawl (and dumpcap) see the port: PINGs on one connection until one is
    // reported.
    let mut warm = Client::connect(port);
    let start = Instant::now();
    'warm: loop {
        assert!(start.elapsed() < DEADLINE, "trawl never reported a PING");
        assert_eq!(warm.call(&["PING"]), "PONG");
        while let Ok(e) = events.recv_timeout(Duration::from_millis(300)) {
            if get(&e, "redis.command") == "PING" {
                break 'warm;
            }
        }
    }
    let warm_port = warm.port();

    // The server's record, from now on, read over the unix socket.
    let mut mon_w = UnixStream::connect(&sock).expect("monitor");
    mon_w.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut mon = Resp {
        r: BufReader::new(mon_w.try_clone().expect("clone")),
    };
    mon_w.write_all(b"MONITOR\r\n").expect("monitor");
    assert_eq!(mon.value(), "OK");

    // RESP2: commands, an error, a pipeline, a transaction, an inline command.
    let mut a = Client::connect(port);
    assert_eq!(a.call(&["SET", "user:1", "secret-value"]), "OK");
    assert_eq!(a.call(&["GET", "user:1"]), "secret-value");
    assert!(a.call(&["LPUSH", "user:1", "x"]).starts_with("-WRONGTYPE"));
    let batch: Vec<u8> = (0..20)
        .flat_map(|i| encode(&["INCR", &format!("counter:{i}")]))
        .collect();
    a.w.write_all(&batch).expect("pipeline");
    for _ in 0..20 {
        assert_eq!(a.r.value(), "1");
    }
    assert_eq!(a.call(&["MULTI"]), "OK");
    assert_eq!(a.call(&["SET", "tx", "1"]), "QUEUED");
    assert_eq!(a.call(&["INCR", "tx"]), "QUEUED");
    assert_eq!(a.call(&["EXEC"]), "[OK,2]");
    a.w.write_all(b"PING\r\n").expect("inline");
    assert_eq!(a.r.value(), "PONG");
    assert_eq!(a.call(&["CLIENT", "SETNAME", "app"]), "OK");

    // RESP2 pub/sub: messages on a subscribed connection are not replies.
    let mut sub2 = Client::connect(port);
    assert_eq!(sub2.call(&["SUBSCRIBE", "news"]), "[subscribe,news,1]");
    // RESP3 via HELLO 3: pushes.
    let mut sub3 = Client::connect(port);
    assert!(sub3.call(&["HELLO", "3"]).contains("proto,3"));
    assert_eq!(sub3.call(&["SUBSCRIBE", "news"]), ">[subscribe,news,1]");
    let mut publisher = Client::connect(port);
    assert_eq!(publisher.call(&["PUBLISH", "news", "hello"]), "2");
    assert_eq!(sub2.r.value(), "[message,news,hello]");
    assert_eq!(sub3.r.value(), ">[message,news,hello]");
    // RESP3 allows any command while subscribed; the push came first.
    assert_eq!(publisher.call(&["PUBLISH", "news", "again"]), "2");
    assert_eq!(sub3.call(&["GET", "user:1"]), ">[message,news,again]");
    assert_eq!(sub3.r.value(), "secret-value");
    assert_eq!(sub2.r.value(), "[message,news,again]");
    assert_eq!(sub2.call(&["UNSUBSCRIBE"]), "[unsubscribe,news,0]");
    assert_eq!(sub3.call(&["UNSUBSCRIBE", "news"]), ">[unsubscribe,news,0]");

    let workload_ports = [a.port(), sub2.port(), sub3.port(), publisher.port()];
    for c in [&mut a, &mut sub2, &mut sub3, &mut publisher] {
        assert_eq!(c.call(&["QUIT"]), "OK");
    }
    // A marker on the warm-up connection ends the server's list.
    assert_eq!(warm.call(&["ECHO", "end-of-workload"]), "end-of-workload");

    // The server's list: every command of the workload connections.
    let mut expected: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < DEADLINE,
            "MONITOR showed only {expected:?}"
        );
        let line = mon.value();
        if line.contains("\"end-of-workload\"") {
            break;
        }
        if let Some((p, name)) = monitor_entry(&line) {
            if workload_ports.contains(&p) {
                expected.entry(p).or_default().push(name);
            }
        }
    }
    let total: usize = expected.values().map(Vec::len).sum();
    assert!(total >= 35, "{expected:?}");

    // trawl's list, per connection in capture order.
    let mut seen: BTreeMap<u16, Vec<J>> = BTreeMap::new();
    let start = Instant::now();
    while seen.values().map(Vec::len).sum::<usize>() < total {
        let left = DEADLINE.saturating_sub(start.elapsed());
        match events.recv_timeout(left) {
            Ok(e) => {
                let p = get(&e, "client.port").as_u64().unwrap_or(0) as u16;
                if p != warm_port && get(&e, "network.protocol") == "redis" {
                    seen.entry(p).or_default().push(e);
                }
            }
            Err(_) => panic!("trawl reported {seen:?}, MONITOR {expected:?}"),
        }
    }
    for e in seen.values_mut() {
        e.sort_by_key(|e| get(e, "event.start").as_str().unwrap_or("").to_owned());
    }
    let names: BTreeMap<u16, Vec<String>> = seen
        .iter()
        .map(|(p, es)| {
            let n = es
                .iter()
                .map(|e| get(e, "redis.command").as_str().unwrap_or("?").to_owned())
                .collect();
            (*p, n)
        })
        .collect();
    assert_eq!(
        names, expected,
        "one transaction per command the server ran"
    );

    let all: Vec<&J> = seen.values().flatten().collect();
    for e in &all {
        assert_eq!(get(e, "event.dataset"), "redis");
        assert_eq!(
            get(e, "event.category"),
            &serde_json::json!(["database", "network"])
        );
        assert!(
            get(e, "redis.request.bytes").as_i64().unwrap_or(0) > 0,
            "{e}"
        );
        assert!(
            get(e, "redis.response.bytes").as_i64().unwrap_or(0) > 0,
            "{e}"
        );
        assert!(get(e, "event.duration").as_i64().is_some(), "{e}");
        assert!(
            !e.to_string().contains("secret-value"),
            "values never reported: {e}"
        );
    }
    let failures: Vec<&&J> = all
        .iter()
        .filter(|e| get(e, "event.outcome") == "failure")
        .collect();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(get(failures[0], "error.code"), "WRONGTYPE");
    assert_eq!(get(failures[0], "redis.command"), "LPUSH");
    assert_eq!(get(failures[0], "redis.key"), "user:1");
    let by = |name: &str| all.iter().find(|e| get(e, "redis.command") == name);
    let hello = by("HELLO").expect("HELLO");
    assert_eq!(get(hello, "redis.response.type"), "map");
    let exec = by("EXEC").expect("EXEC");
    assert_eq!(get(exec, "redis.response.type"), "array");
    assert_eq!(get(exec, "redis.response.length"), 2);
    assert!(all
        .iter()
        .any(|e| get(e, "redis.command") == "PING" && get(e, "redis.request.inline") == true));
    assert!(all.iter().all(|e| get(e, "event.outcome") != "unknown"));

    // tshark: the same error. dumpcap is stopped as a user would, so that it writes all.
    // libpcap hands packets over in batches: give the last ones time to reach the file.
    // Live RED metrics, service-map edge and the protocol's own counters: every command of
    // the workload is counted (the warm-up connection's too), the WRONGTYPE as the one
    // failure, and the pub/sub messages (which answer no command) as pushes.
    let metrics = http_get(&metrics_addr, "/metrics");
    let server = format!("server=\"127.0.0.1:{port}\"");
    let sum = |family: &str, labels: &[&str]| -> f64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with(&format!("{family}{{")) && labels.iter().all(|w| l.contains(w))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        sum("trawl_redis_requests_total", &[&server]) >= total as f64,
        "{metrics}"
    );
    assert_eq!(
        sum(
            "trawl_redis_requests_total",
            &[&server, "outcome=\"failure\""]
        ),
        1.0,
        "{metrics}"
    );
    // The duration histogram has every answered command (all of them: none went unanswered),
    // its buckets end at the count; the errors counter has the WRONGTYPE reply, on LPUSH.
    let answered = sum("trawl_redis_requests_total", &[&server])
        - sum(
            "trawl_redis_requests_total",
            &[&server, "outcome=\"unknown\""],
        );
    let count = sum("trawl_redis_request_duration_seconds_count", &[&server]);
    assert!(count >= total as f64, "{metrics}");
    assert_eq!(count, answered, "{metrics}");
    assert_eq!(
        sum(
            "trawl_redis_request_duration_seconds_bucket",
            &[&server, "le=\"+Inf\""]
        ),
        count,
        "{metrics}"
    );
    assert!(
        sum("trawl_redis_request_duration_seconds_sum", &[&server]) > 0.0,
        "{metrics}"
    );
    let wrongtype = format!("trawl_redis_errors_total{{{server},operation=\"LPUSH\"}} 1\n");
    assert!(metrics.contains(&wrongtype), "no {wrongtype} in {metrics}");
    assert_eq!(
        sum("trawl_redis_errors_total", &[&server]),
        sum("trawl_redis_requests_total", &[&server])
            - sum(
                "trawl_redis_requests_total",
                &[&server, "outcome=\"success\""]
            ),
        "errors are the failed and unanswered commands: {metrics}"
    );
    assert!(
        sum("trawl_packet_redis_pushes_total", &["input=\"cache\""]) >= 4.0,
        "the four pub/sub messages: {metrics}"
    );
    assert_eq!(
        sum("trawl_packet_redis_gaps_total", &["input=\"cache\""]),
        0.0
    );
    let graph: J =
        serde_json::from_str(&http_get(&metrics_addr, "/api/graph/data")).expect("graph JSON");
    assert!(
        graph["edges"].as_array().is_some_and(|e| e
            .iter()
            .any(|e| e["detail__protocol"] == "redis" && e["target"] == "127.0.0.1")),
        "no redis edge in {graph}"
    );

    std::thread::sleep(Duration::from_secs(2));
    dumpcap.stop();
    let out = Command::new("tshark")
        .args(["-r"])
        .arg(&pcap)
        .args([
            "-d",
            &format!("tcp.port=={port},resp"),
            "-Y",
            "resp.error",
            "-T",
            "fields",
            "-e",
            "resp.error",
        ])
        .output()
        .expect("tshark");
    let errors = String::from_utf8_lossy(&out.stdout);
    let errors: Vec<&str> = errors.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        errors.len(),
        1,
        "tshark saw errors {errors:?} in {} bytes: {}",
        std::fs::metadata(&pcap).map_or(0, |m| m.len()),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(errors[0].starts_with("WRONGTYPE"), "{errors:?}");
}
