//! Live capture on `lo`: `trawl run` with an `http` input watches a local HTTP server driven
//! with keep-alive, pipelined, chunked and large-body requests; every transaction must be
//! reported with its status, and `/metrics` and `/api/graph/data` must show the traffic.

// Only the Kubernetes API server of the shared helpers is used here.
#[allow(dead_code)]
mod support;

use serde_json::Value as J;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// trawl on `pipeline` with JSON logs: the child, its log lines (echoed for failing tests) and
/// its events, each read by a thread so that neither pipe fills up.
fn start_trawl(
    pipeline: &std::path::Path,
    stdin: bool,
) -> (KillOnDrop, mpsc::Receiver<String>, mpsc::Receiver<J>) {
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_trawl"))
            .args(["--log-format", "json", "run", "-c"])
            .arg(pipeline)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("trawl: {line}");
            let _ = tx.send(line);
        }
    });
    let stdout = child.0.stdout.take().unwrap();
    let (etx, erx) = mpsc::channel::<J>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = etx.send(v);
            }
        }
    });
    (child, rx, erx)
}

/// Starts `serve` on a free port of 127.0.0.1 and writes, under `dir`, a pipeline with an
/// `http` input capturing that port on `interfaces` (YAML list items, refreshed every 300 ms)
/// into stdout, with `/metrics` on a free port. Returns the port and the pipeline's path.
fn serve_and_pipeline(dir: &std::path::Path, interfaces: &str) -> (u16, std::path::PathBuf) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || serve(listener));
    let pipeline = dir.join("p.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "inputs:\n  web:\n    type: http\n    capture: {{ interfaces: [{interfaces}], bpf_filter: \"tcp port {port}\", refresh_interfaces: 300ms }}\n    ports: [{port}]\noutputs:\n  out: {{ type: stdout }}\ndata_dir: {}\nhttp: {{ address: \"127.0.0.1:0\" }}\n",
            dir.display()
        ),
    )
    .unwrap();
    (port, pipeline)
}

/// A small HTTP/1.1 server: keep-alive, pipelining, chunked responses, large bodies, and
/// request bodies by Content-Length or chunked. Path decides the answer.
fn serve(listener: TcpListener) {
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = handle(stream);
        });
    }
}

fn read_chunked_body(buf: &mut Vec<u8>, s: &mut TcpStream) -> std::io::Result<usize> {
    // Returns bytes consumed from buf once the whole chunked body is there.
    loop {
        let mut at = 0;
        while let Some(nl) = buf[at..].windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(
                std::str::from_utf8(&buf[at..at + nl]).unwrap_or("0").trim(),
                16,
            )
            .unwrap_or(0);
            if size == 0 {
                if buf.len() >= at + nl + 4 {
                    return Ok(at + nl + 4);
                }
                break;
            }
            if buf.len() < at + nl + 2 + size + 2 {
                break;
            }
            at += nl + 2 + size + 2;
        }
        let mut tmp = [0u8; 65536];
        let n = s.read(&mut tmp)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

fn handle(mut s: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 65536];
    loop {
        let (path, len, chunked, head) = loop {
            let mut hs = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut hs);
            if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
                let len = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                    .unwrap_or(0usize);
                let chunked = req
                    .headers
                    .iter()
                    .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
                break (req.path.unwrap_or("/").to_owned(), len, chunked, n);
            }
            let n = s.read(&mut tmp)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&tmp[..n]);
        };
        buf.drain(..head);
        if chunked {
            let used = read_chunked_body(&mut buf, &mut s)?;
            buf.drain(..used);
        } else {
            while buf.len() < len {
                let n = s.read(&mut tmp)?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            buf.drain(..len);
        }
        match path.as_str() {
            "/chunked" => {
                s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n")?;
                for part in ["hello ", "chunked ", "world"] {
                    write!(s, "{:x}\r\n{part}\r\n", part.len())?;
                }
                s.write_all(b"0\r\n\r\n")?;
            }
            "/big" => {
                let body = vec![b'x'; 1 << 20];
                write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n", body.len())?;
                s.write_all(&body)?;
            }
            p if p.starts_with("/status/") => {
                let code: u16 = p[8..].parse().unwrap_or(500);
                write!(s, "HTTP/1.1 {code} X\r\nContent-Length: 2\r\n\r\nno")?;
            }
            p if p.starts_with("/upload") => {
                s.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")?
            }
            _ => s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
            )?,
        }
    }
}

/// Reads one HTTP/1.1 response (Content-Length or chunked); returns the status.
fn read_response(r: &mut BufReader<TcpStream>) -> u16 {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (mut len, mut chunked) = (0usize, false);
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        if h == "\r\n" {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
        if lower.starts_with("transfer-encoding:") {
            chunked = true;
        }
    }
    if chunked {
        loop {
            let mut sz = String::new();
            r.read_line(&mut sz).unwrap();
            let n = usize::from_str_radix(sz.trim(), 16).unwrap();
            let mut skip = vec![0u8; n + 2];
            r.read_exact(&mut skip).unwrap();
            if n == 0 {
                break;
            }
        }
    } else {
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).unwrap();
    }
    status
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn live_capture_on_lo_reports_every_transaction() {
    if let Err(e) = trawl::wire::capture::probe("lo") {
        let msg = e.to_string();
        if msg.contains("ermission") || msg.contains("not permitted") {
            println!("SKIPPED: cannot capture on lo without privileges: {msg}");
            return;
        }
        panic!("cannot open lo: {msg}");
    }
    let dir = tempfile::tempdir().unwrap();
    let (port, pipeline) = serve_and_pipeline(dir.path(), r#"lo, trawl-nope0, "veth-trawl-none*""#);
    let (mut child, rx, erx) = start_trawl(&pipeline, false);
    // Wait for the capture to start, and learn the metrics address, from trawl's log.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut capturing, mut metrics_addr) = (false, None);
    while !(capturing && metrics_addr.is_some()) {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("trawl did not start capturing on lo");
        if line.contains("capturing") {
            capturing = true;
        }
        if line.contains("serving /metrics") {
            let v: J = serde_json::from_str(&line).unwrap();
            metrics_addr = v["address"]
                .as_str()
                .or(v["fields"]["address"].as_str())
                .map(str::to_owned);
        }
    }
    let metrics_addr = metrics_addr.unwrap();

    let addr = format!("127.0.0.1:{port}");
    // Keep-alive: four requests on one connection.
    let mut expected: Vec<(&str, &str, u16)> = Vec::new();
    {
        let s = TcpStream::connect(&addr).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        for (path, status) in [
            ("/a", 200),
            ("/status/404", 404),
            ("/chunked", 200),
            ("/big", 200),
        ] {
            write!(
                w,
                "GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nUser-Agent: live-test\r\n\r\n"
            )
            .unwrap();
            assert_eq!(read_response(&mut r), status);
            expected.push(("GET", path, status));
        }
    }
    // Pipelined: three requests in one write, answers read afterwards.
    {
        let s = TcpStream::connect(&addr).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        let reqs = "GET /p1 HTTP/1.1\r\nHost: h\r\n\r\nGET /p2 HTTP/1.1\r\nHost: h\r\n\r\nGET /status/500 HTTP/1.1\r\nHost: h\r\n\r\n";
        w.write_all(reqs.as_bytes()).unwrap();
        for (path, status) in [("/p1", 200), ("/p2", 200), ("/status/500", 500)] {
            assert_eq!(read_response(&mut r), status);
            expected.push(("GET", path, status));
        }
    }
    // Large request body, then a chunked request body.
    {
        let s = TcpStream::connect(&addr).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        let body = vec![b'y'; 2 << 20];
        write!(
            w,
            "POST /upload/big HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        w.write_all(&body).unwrap();
        assert_eq!(read_response(&mut r), 201);
        expected.push(("POST", "/upload/big", 201));
        w.write_all(b"POST /upload/chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n3\r\nfgh\r\n0\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut r), 201);
        expected.push(("POST", "/upload/chunked", 201));
    }

    // Transactions arrive as the capture sees them.
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while events.len() < expected.len() {
        match erx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(e) => events.push(e),
            Err(_) => break,
        }
    }
    // Kernel counters are read every second: wait for them.
    let mut metrics = http_get(&metrics_addr, "/metrics");
    let until = Instant::now() + Duration::from_secs(5);
    while !metrics.contains("trawl_capture_kernel_dropped_total{") && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
        metrics = http_get(&metrics_addr, "/metrics");
    }
    let graph = http_get(&metrics_addr, "/api/graph/data");
    // SIGTERM: trawl drains and exits.
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let status = child.0.wait().unwrap();
    assert!(status.success(), "trawl exited with {status}");
    while let Ok(e) = erx.recv_timeout(Duration::from_secs(2)) {
        events.push(e);
    }
    // An interface that cannot be opened is logged once (not at every refresh) and skipped.
    let log: Vec<String> = rx.try_iter().collect();
    let nope = log.iter().filter(|l| l.contains("trawl-nope0")).count();
    assert_eq!(nope, 1, "{log:#?}");

    let summary: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["http"]["request"]["method"],
                e["url"]["original"],
                e["http"]["response"]["status_code"]
            )
        })
        .collect();
    assert_eq!(events.len(), expected.len(), "transactions: {summary:#?}");
    for (method, path, status) in &expected {
        let n = events
            .iter()
            .filter(|e| {
                e["http"]["request"]["method"] == *method
                    && e["url"]["original"] == *path
                    && e["http"]["response"]["status_code"] == *status as u64
            })
            .count();
        assert_eq!(n, 1, "{method} {path} {status}: {summary:#?}");
    }
    let big = events
        .iter()
        .find(|e| e["url"]["original"] == "/big")
        .unwrap();
    assert_eq!(big["http"]["response"]["body"]["bytes"], 1 << 20);
    let up = events
        .iter()
        .find(|e| e["url"]["original"] == "/upload/big")
        .unwrap();
    assert_eq!(up["http"]["request"]["body"]["bytes"], 2 << 20);
    let first = events
        .iter()
        .find(|e| e["url"]["original"] == "/a")
        .unwrap();
    assert_eq!(first["url"]["domain"], "localhost");
    assert_eq!(first["user_agent"]["original"], "live-test");
    assert_eq!(first["server"]["port"], port);
    assert!(
        events
            .iter()
            .all(|e| e.get("event").and_then(|v| v.get("reason")).is_none()),
        "no transaction incomplete: {summary:#?}"
    );

    let server = format!("127.0.0.1:{port}");
    assert!(metrics.contains(&format!("trawl_http_requests_total{{server=\"{server}\",method=\"GET\",status_class=\"2xx\",status_code=\"200\"}} 5")), "{metrics}");
    assert!(metrics.contains(&format!(
        "trawl_http_requests_total{{server=\"{server}\",method=\"GET\",status_class=\"5xx\",status_code=\"500\"}} 1"
    )));
    assert!(
        metrics.contains("trawl_capture_kernel_dropped_total{input=\"web\",interface=\"lo\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("trawl_capture_dropped_total{input=\"web\"} 0"),
        "{metrics}"
    );
    // The graph names a workload by its address, whatever port it serves on.
    assert!(graph.contains("\"target\":\"127.0.0.1\""), "{graph}");
}

/// Virtual interfaces made for one test, deleted when it ends however it ends.
/// Whether this run may create interfaces (root) and capture on `lo`; says why not.
fn can_add_interfaces_and_capture_lo() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: creating interfaces needs root (CAP_NET_ADMIN)");
        return false;
    }
    if let Err(e) = trawl::wire::capture::probe("lo") {
        println!("SKIPPED: cannot capture on lo: {e}");
        return false;
    }
    true
}

struct Links(Vec<String>);

impl Links {
    fn ip(args: &[&str]) -> Result<(), String> {
        let out = Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| format!("ip: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// A new interface, left down; the first link type the kernel offers (containers often
    /// lack the dummy module).
    fn add(&mut self, name: &str) -> Result<(), String> {
        let mut errors = Vec::new();
        for kind in ["dummy", "bridge", "ifb"] {
            match Self::ip(&["link", "add", name, "type", kind]) {
                Ok(()) => {
                    self.0.push(name.to_owned());
                    return Ok(());
                }
                Err(e) => errors.push(format!("{kind}: {e}")),
            }
        }
        Err(errors.join("; "))
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Self::ip(&["link", "del", n]);
        }
    }
}

/// One GET to the test server (which keeps connections open); its status.
fn get_status(ip: &str, port: u16, path: &str) -> u16 {
    let s = TcpStream::connect((ip, port)).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    write!(w, "GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    read_response(&mut r)
}

/// Waits until trawl logs a line `pred` accepts (lines read go to `seen`).
fn wait_for_log(
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    what: &str,
    pred: impl Fn(&str) -> bool,
) {
    if seen.iter().any(|l| pred(l)) {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("trawl never logged {what}; log: {seen:#?}"));
        let hit = pred(&line);
        seen.push(line);
        if hit {
            return;
        }
    }
}

/// k8spacket crash-looped on `tunl0: That device is not up`. trawl logs a down interface once,
/// counts it, keeps capturing on `lo`, opens it when it comes up, and picks up an interface
/// created later that matches its glob (and releases it when it goes away).
#[test]
fn a_down_interface_is_skipped_and_new_interfaces_are_picked_up() {
    if !can_add_interfaces_and_capture_lo() {
        return;
    }
    let stem = format!("trw{}", std::process::id() % 100_000);
    let (down, later) = (format!("{stem}a"), format!("{stem}b"));
    let mut links = Links(Vec::new());
    if let Err(e) = links.add(&down) {
        println!("SKIPPED: cannot create a dummy interface (CAP_NET_ADMIN, iproute2): {e}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (port, pipeline) = serve_and_pipeline(dir.path(), &format!(r#"lo, "{stem}*""#));
    let (mut child, rx, erx) = start_trawl(&pipeline, false);
    let mut log = Vec::new();
    let capturing = |name: &str| {
        let quoted = format!("\"{name}\"");
        move |l: &str| l.contains("capturing") && l.contains(&quoted)
    };
    wait_for_log(&rx, &mut log, "capturing on lo", capturing("lo"));
    wait_for_log(&rx, &mut log, "the metrics address", |l| {
        l.contains("serving /metrics")
    });
    let metrics_addr = log
        .iter()
        .filter(|l| l.contains("serving /metrics"))
        .find_map(|l| {
            let v: J = serde_json::from_str(l).ok()?;
            v["address"]
                .as_str()
                .or(v["fields"]["address"].as_str())
                .map(str::to_owned)
        })
        .expect("metrics address in the log");
    wait_for_log(&rx, &mut log, "the down interface", |l| {
        l.contains(&down) && l.contains("cannot capture")
    });
    // Several refreshes go by (300 ms each) while lo keeps capturing.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(get_status("127.0.0.1", port, "/status/404"), 404);
    let e = erx
        .recv_timeout(Duration::from_secs(15))
        .expect("no transaction from lo while an interface is down");
    assert_eq!(e["url"]["original"], "/status/404");
    assert_eq!(e["http"]["response"]["status_code"], 404);
    log.extend(rx.try_iter());
    let complaints = log
        .iter()
        .filter(|l| l.contains(&down) && l.contains("cannot capture"))
        .count();
    assert_eq!(complaints, 1, "logged once, not at every refresh: {log:#?}");
    let metrics = http_get(&metrics_addr, "/metrics");
    assert!(
        metrics.contains("trawl_capture_interface_errors_total{input=\"web\"} 1\n"),
        "{metrics}"
    );

    // It comes up: the next refresh opens it. A new matching interface is picked up too.
    Links::ip(&["link", "set", &down, "up"]).unwrap();
    wait_for_log(
        &rx,
        &mut log,
        "capturing on the interface once up",
        capturing(&down),
    );
    links.add(&later).unwrap();
    Links::ip(&["link", "set", &later, "up"]).unwrap();
    wait_for_log(
        &rx,
        &mut log,
        "capturing on the new interface",
        capturing(&later),
    );
    Links::ip(&["link", "del", &later]).unwrap();
    links.0.retain(|n| *n != later);
    wait_for_log(&rx, &mut log, "the vanished interface released", |l| {
        l.contains("released") && l.contains(&format!("\"{later}\""))
    });
    // Still capturing on lo after all that.
    assert_eq!(get_status("127.0.0.1", port, "/after"), 200);
    let e = erx
        .recv_timeout(Duration::from_secs(15))
        .expect("no transaction from lo after the interface changes");
    assert_eq!(e["url"]["original"], "/after");
    assert!(child.0.try_wait().unwrap().is_none(), "trawl kept running");
}

/// With a `kubernetes` processor in the pipeline, the service map names the endpoints of
/// known pods and ClusterIPs by workload (`namespace/name`), the others by ip:port, on
/// `/api/graph` and `/api/graph/data`. The pod cache comes from a test API server.
#[test]
fn graph_nodes_are_named_by_workload_when_kubernetes_knows_the_ip() {
    use support::kube_api::{pod, replicaset, KubeApi};
    if let Err(e) = trawl::wire::capture::probe("lo") {
        println!("SKIPPED: cannot capture on lo: {e}");
        return;
    }
    // lo answers on all of 127/8: the known server is a pod at 127.0.0.5, the unknown one is
    // at 127.0.0.6, and clients leave from 127.0.0.1, a pod of Deployment `frontend`.
    let known = TcpListener::bind("127.0.0.5:0").unwrap();
    let unknown = TcpListener::bind("127.0.0.6:0").unwrap();
    let (kp, up) = (
        known.local_addr().unwrap().port(),
        unknown.local_addr().unwrap().port(),
    );
    std::thread::spawn(move || serve(known));
    std::thread::spawn(move || serve(unknown));
    let api = KubeApi::start();
    api.apply("replicasets", replicaset("web-5d4f8b7c9", "shop", "web"));
    api.apply(
        "replicasets",
        replicaset("frontend-7c9", "shop", "frontend"),
    );
    api.apply(
        "pods",
        pod(
            "web-5d4f8b7c9-abcde",
            "shop",
            "uid-web",
            "node-a",
            "127.0.0.5",
            ("ReplicaSet", "web-5d4f8b7c9"),
            "aa",
        ),
    );
    api.apply(
        "pods",
        pod(
            "frontend-7c9-xyz",
            "shop",
            "uid-fe",
            "node-a",
            "127.0.0.1",
            ("ReplicaSet", "frontend-7c9"),
            "bb",
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "inputs:\n  app: {{ type: stdin }}\n  web:\n    type: http\n    capture: {{ interfaces: [lo], bpf_filter: \"tcp port {kp} or tcp port {up}\" }}\n    ports: [{kp}, {up}]\n\
             processors:\n  - {{ type: kubernetes, node: true, node_name: node-a, api_url: '{}', sync_timeout: 10s }}\n\
             outputs:\n  out: {{ type: stdout }}\ndata_dir: {}\nhttp: {{ address: \"127.0.0.1:0\" }}\n",
            api.url(),
            dir.path().display()
        ),
    )
    .unwrap();
    let (mut child, rx, erx) = start_trawl(&pipeline, true);
    let mut log = Vec::new();
    wait_for_log(&rx, &mut log, "capturing on lo", |l| {
        l.contains("capturing") && l.contains("\"lo\"")
    });
    wait_for_log(&rx, &mut log, "the metrics address", |l| {
        l.contains("serving /metrics")
    });
    let metrics_addr = log
        .iter()
        .filter(|l| l.contains("serving /metrics"))
        .find_map(|l| {
            let v: J = serde_json::from_str(l).ok()?;
            v["address"].as_str().map(str::to_owned)
        })
        .expect("metrics address in the log");
    // The processor starts its watch on its first event and waits for the first pod list.
    let mut stdin = child.0.stdin.take().unwrap();
    writeln!(stdin, "hello").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let e = erx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the stdin line never came out");
        if e["message"] == "hello" {
            break;
        }
    }
    assert_eq!(get_status("127.0.0.5", kp, "/a"), 200);
    assert_eq!(get_status("127.0.0.6", up, "/b"), 200);
    let (web, other) = ("shop/web".to_owned(), "127.0.0.6".to_owned());
    let deadline = Instant::now() + Duration::from_secs(20);
    let data = loop {
        let body = http_get(&metrics_addr, "/api/graph/data");
        let data: J = body
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .unwrap_or(J::Null);
        let edges = data["edges"].as_array().map(Vec::len).unwrap_or(0);
        if edges >= 2 || Instant::now() > deadline {
            break data;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut edges: Vec<(String, String)> = data["edges"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|e| {
            (
                e["source"].as_str().unwrap_or("").to_owned(),
                e["target"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    edges.sort();
    assert_eq!(
        edges,
        vec![
            ("shop/frontend".to_owned(), other.clone()),
            ("shop/frontend".to_owned(), web.clone())
        ],
        "{data}"
    );
    let nodes = data["nodes"].as_array().cloned().unwrap_or_default();
    let mut titles: Vec<&str> = nodes.iter().filter_map(|n| n["title"].as_str()).collect();
    titles.sort();
    assert_eq!(
        titles,
        vec![other.as_str(), "shop/frontend", "shop/web"],
        "{data}"
    );
    let k8spacket = http_get(&metrics_addr, "/api/graph");
    assert!(k8spacket.contains("\"target\":\"shop/web\""), "{k8spacket}");
}

/// An interface deleted while captured: its capture thread ends, and the merge of interfaces
/// stops waiting for it at once, not at the next `refresh_interfaces` (10 minutes here), so
/// the other interfaces' transactions keep coming.
#[test]
fn an_interface_deleted_mid_capture_no_longer_holds_the_others_back() {
    if !can_add_interfaces_and_capture_lo() {
        return;
    }
    let gone = format!("ops3g{}", std::process::id() % 100_000);
    let mut links = Links(Vec::new());
    if let Err(e) = links.add(&gone) {
        println!("SKIPPED: cannot create a dummy interface (CAP_NET_ADMIN, iproute2): {e}");
        return;
    }
    Links::ip(&["link", "set", &gone, "up"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (port, pipeline) = serve_and_pipeline(dir.path(), &format!("lo, {gone}"));
    let text = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(
        &pipeline,
        text.replace("refresh_interfaces: 300ms", "refresh_interfaces: 10m"),
    )
    .unwrap();
    let (child, rx, erx) = start_trawl(&pipeline, false);
    let mut log = Vec::new();
    for name in ["lo", gone.as_str()] {
        let quoted = format!("\"{name}\"");
        wait_for_log(&rx, &mut log, &format!("capturing on {name}"), |l| {
            l.contains("capturing") && l.contains(&quoted)
        });
    }
    assert_eq!(get_status("127.0.0.1", port, "/before"), 200);
    let e = erx
        .recv_timeout(Duration::from_secs(15))
        .expect("a transaction from lo while both interfaces are captured");
    assert_eq!(e["url"]["original"], "/before");

    Links::ip(&["link", "del", &gone]).unwrap();
    links.0.retain(|n| *n != gone);
    wait_for_log(
        &rx,
        &mut log,
        "the capture on the deleted interface ending",
        |l| l.contains("capture ended") && l.contains(&gone),
    );
    assert_eq!(get_status("127.0.0.1", port, "/after"), 200);
    let e = erx
        .recv_timeout(Duration::from_secs(15))
        .unwrap_or_else(|_| {
            log.extend(rx.try_iter());
            panic!("lo's transaction held back by the deleted interface; log: {log:#?}")
        });
    assert_eq!(e["url"]["original"], "/after");
    log.extend(rx.try_iter());
    assert!(
        log.iter()
            .any(|l| l.contains("released") && l.contains(&format!("\"{gone}\""))),
        "{log:#?}"
    );
    drop(child);
}

/// The packet rings of one `/proc/<pid>/smaps`: the `socket:` mappings (libpcap's TPACKET
/// rings are the only sockets trawl maps), their resident kilobytes each.
fn packet_rings_kib(pid: u32) -> Vec<u64> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut rings = Vec::new();
    let mut in_socket = false;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            in_socket = words.nth(4).is_some_and(|name| name.starts_with("socket:"));
        } else if first == "Rss:" && in_socket {
            rings.push(words.next().and_then(|k| k.parse().ok()).unwrap_or(0));
        }
    }
    rings
}

/// A node's capture on many interfaces shares one kernel buffer: with `buffer_size: 32MiB` and
/// eight interfaces there (a ninth named but absent takes no share), each ring is 4 MiB, not
/// 32 MiB each (256 MiB resident, idle); and the interface that carries traffic is still
/// captured whole.
#[test]
fn many_interfaces_share_the_kernel_buffer() {
    if !can_add_interfaces_and_capture_lo() {
        return;
    }
    let stem = format!("trr{}", std::process::id() % 100_000);
    let mut links = Links(Vec::new());
    for i in 0..7 {
        let name = format!("{stem}{i}");
        if let Err(e) = links.add(&name) {
            println!("SKIPPED: cannot create an interface (CAP_NET_ADMIN, iproute2): {e}");
            return;
        }
        Links::ip(&["link", "set", &name, "up"]).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let (port, pipeline) = serve_and_pipeline(dir.path(), &format!(r#"lo, "{stem}*", {stem}x"#));
    let text = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(
        &pipeline,
        text.replace(
            "refresh_interfaces:",
            "buffer_size: 32MiB, refresh_interfaces:",
        ),
    )
    .unwrap();
    let (child, rx, erx) = start_trawl(&pipeline, false);
    let mut log = Vec::new();
    for i in 0..7 {
        let quoted = format!("\"{stem}{i}\"");
        wait_for_log(&rx, &mut log, "capturing on every interface", |l| {
            l.contains("capturing") && l.contains(&quoted)
        });
    }
    wait_for_log(&rx, &mut log, "capturing on lo", |l| {
        l.contains("capturing") && l.contains("\"lo\"")
    });
    let rings = packet_rings_kib(child.0.id());
    assert_eq!(rings.len(), 8, "one ring per interface there: {rings:?}");
    assert!(
        rings.iter().all(|kib| *kib == 4096),
        "each interface holds an eighth of the shared 32 MiB, not 32 MiB: {rings:?} KiB"
    );
    for i in 0..20 {
        assert_eq!(get_status("127.0.0.1", port, &format!("/n{i}")), 200);
    }
    let mut seen: Vec<String> = Vec::new();
    while seen.len() < 20 {
        let e = erx
            .recv_timeout(Duration::from_secs(15))
            .unwrap_or_else(|_| panic!("only {} of 20 transactions: {seen:?}", seen.len()));
        seen.push(e["url"]["original"].as_str().unwrap_or("").to_owned());
    }
    seen.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("/n{i}")).collect();
    want.sort();
    assert_eq!(seen, want, "every request on lo, once");
}
