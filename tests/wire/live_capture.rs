//! Live capture on `lo`: `trawl run` with an `http` input watches a local HTTP server driven
//! with keep-alive, pipelined, chunked and large-body requests; every transaction must be
//! reported with its status, and `/metrics` and `/api/graph/data` must show the traffic.
//! Interfaces coming, going and sharing the kernel buffer: tests/wire/capture_interfaces.rs.

use crate::support;

use serde_json::Value as J;
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};
use support::live_http::{
    get_status, http_get, read_response, serve, serve_and_pipeline, start_trawl, wait_for_log,
    wait_for_metrics_address,
};

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
        if let Some(a) = support::process::metrics_address(&line) {
            metrics_addr = Some(a);
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
    // The three names are captured through one socket, its counters under their patterns.
    assert!(
        metrics.contains(
            "trawl_capture_kernel_dropped_total{input=\"web\",interface=\"lo,trawl-nope0,veth-trawl-none*\"} 0"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("trawl_capture_dropped_total{input=\"web\"} 0"),
        "{metrics}"
    );
    // The graph names a workload by its address, whatever port it serves on.
    assert!(graph.contains("\"target\":\"127.0.0.1\""), "{graph}");
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
    let metrics_addr = wait_for_metrics_address(&rx, &mut log);
    // The processor starts its watch on its first event and waits for its first lists.
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
