//! One port, two protocols, captured live: a server in a namespace speaks HTTP/1.1 and
//! prior-knowledge h2c on 8080 (tests/data/http2/shared_port_server.py), curl talks both to it
//! over a veth (and a Python h2 client for several streams at once on one connection), and
//! `trawl run` captures the host end as a sidecar or DaemonSet would.

use crate::support;

use serde_json::Value as J;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::live_http::start_trawl;
use support::netns::{lines_of, wait_line, Link};
use support::process::KillOnDrop;

/// One request as a client sends it: method, path, body.
type Request = (&'static str, &'static str, &'static str);

/// HTTP/1.1 keep-alive connections, one curl call (`--next`) each.
const HTTP1: [&[Request]; 2] = [
    &[
        ("GET", "/a", ""),
        ("POST", "/b", "name=trawl&port=8080"),
        ("GET", "/missing", ""),
    ],
    &[("PUT", "/c/1", "0123456789abcdef"), ("GET", "/d?x=1", "")],
];

/// h2c connections with prior knowledge, one stream each: Debian 12's curl (7.88.1) opens a
/// second stream on a reused prior-knowledge connection without ever sending it.
const H2C: [Request; 3] = [
    ("GET", "/h2/one", ""),
    ("POST", "/h2/post", "abcdefg"),
    ("GET", "/missing/h2", ""),
];

/// One h2c connection with every stream open at once and bodies in three-byte DATA frames
/// interleaved across streams (tests/data/http2/multi_stream_client.py), as gRPC channels use
/// HTTP/2: what curl's one stream a connection leaves untested.
const H2C_STREAMS: [Request; 5] = [
    ("GET", "/h2/many/1", ""),
    ("POST", "/h2/many/2", "first-body-of-twenty-"),
    ("GET", "/missing/many/3", ""),
    ("PUT", "/h2/many/4", "0123456789abcdef0123456789abcdef0123"),
    ("POST", "/h2/many/5", "x"),
];

/// What one transaction says, or what it should say: dataset, method, path, status, request
/// and response body bytes, and why it is incomplete (empty when it is not).
type Summary = (String, String, String, u64, u64, u64, String);

/// The server's contract (its module doc): 404 for /missing..., 201 for a POST, else 200; the
/// body is "<METHOD> <path> <request body bytes>\n".
fn expected(dataset: &str, (method, path, body): Request) -> Summary {
    let status = if path.starts_with("/missing") {
        404
    } else if method == "POST" {
        201
    } else {
        200
    };
    let answer = format!("{method} {path} {}\n", body.len());
    (
        dataset.into(),
        method.into(),
        path.split('?').next().unwrap_or(path).into(),
        status,
        body.len() as u64,
        answer.len() as u64,
        String::new(),
    )
}

fn summary(e: &J) -> Summary {
    let s = |v: &J| v.as_str().unwrap_or("?").to_owned();
    (
        s(&e["event"]["dataset"]),
        s(&e["http"]["request"]["method"]),
        s(&e["url"]["path"]),
        e["http"]["response"]["status_code"].as_u64().unwrap_or(0),
        e["http"]["request"]["body"]["bytes"].as_u64().unwrap_or(0),
        e["http"]["response"]["body"]["bytes"].as_u64().unwrap_or(0),
        e["event"]["reason"].as_str().unwrap_or("").to_owned(),
    )
}

/// Sends `requests` to `server` on one connection with curl (`--next` keeps it alive).
fn curl(server: &str, requests: &[Request], h2c: bool) {
    let mut c = Command::new("curl");
    for (i, (method, path, body)) in requests.iter().enumerate() {
        if i > 0 {
            c.arg("--next");
        }
        c.args(["-sS", "-o", "/dev/null", "--max-time", "10", "-X", method]);
        if h2c {
            c.arg("--http2-prior-knowledge");
        }
        if !body.is_empty() {
            c.args(["--data-binary", body]);
        }
        c.arg(format!("http://{server}:8080{path}"));
    }
    let out = c.output().expect("curl (scripts/setup.sh installs it)");
    assert!(out.status.success(), "curl {requests:?}: {out:?}");
}

/// A namespace `tag` behind a veth on `subnet`.0/24 with the server on .2:8080, trawl capturing
/// the host end with `protocols`, and every client done: trawl's events once it has stopped.
fn capture(tag: &str, subnet: &str, protocols: &str) -> Vec<J> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let link = Link::veth(
        tag,
        &[&format!("{subnet}.1/24")],
        &[&format!("{subnet}.2/24")],
    )
    .expect("a namespace behind a veth");
    let server_addr = format!("{subnet}.2");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/http2/shared_port_server.py"
    );
    let mut server = KillOnDrop(
        link.exec(&["python3", script, &server_addr, "8080"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 in the namespace"),
    );
    let ready = lines_of(server.0.stdout.take().expect("the server's stdout"));
    wait_line(&ready, "ready", "the server (python3-h2: scripts/setup.sh)");
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "inputs:\n  node:\n    type: packet\n    capture: {{ interfaces: [\"{}\"], bpf_filter: \"tcp port 8080\" }}\n    protocols: {protocols}\n\
             outputs:\n  out: {{ type: stdout }}\ndata_dir: {}\nhttp: {{ address: \"127.0.0.1:0\" }}\n",
            link.host,
            dir.path().display()
        ),
    )
    .expect("write the pipeline");
    let (mut trawl, logs, events) = start_trawl(&pipeline, false);
    wait_line(&logs, "capturing", "trawl's capture");
    for requests in HTTP1 {
        curl(&server_addr, requests, false);
    }
    for request in H2C {
        curl(&server_addr, &[request], true);
    }
    let mut client = Command::new("python3");
    client.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/http2/multi_stream_client.py"
    ));
    client.args([server_addr.as_str(), "8080"]);
    for (method, path, body) in H2C_STREAMS {
        client.arg(if body.is_empty() {
            format!("{method}:{path}")
        } else {
            format!("{method}:{path}:{body}")
        });
    }
    let out = client
        .output()
        .expect("python3 (python3-h2: scripts/setup.sh)");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "done 5",
        "the multi-stream client: {out:?}"
    );
    // The last FIN/ACKs leave within milliseconds; the capture hands on its last block.
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(trawl.0.id() as i32, libc::SIGTERM) };
    let status = trawl.0.wait().expect("wait for trawl");
    assert!(status.success(), "trawl exited with {status}");
    events.iter().collect()
}

fn root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        println!("SKIPPED: namespaces and veths need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)");
    }
    root
}

fn sorted(mut v: Vec<Summary>) -> Vec<Summary> {
    v.sort();
    v
}

#[test]
fn http1_and_h2c_on_one_port_are_each_reported_by_their_protocol() {
    if !root() {
        return;
    }
    let evs = capture(
        "h2sp",
        "10.231.17",
        "{ http: { ports: [8080] }, http2: { ports: [8080] } }",
    );
    let want: Vec<Summary> = HTTP1
        .iter()
        .flat_map(|c| c.iter().map(|r| expected("http", *r)))
        .chain(H2C.iter().map(|r| expected("http2", *r)))
        .chain(H2C_STREAMS.iter().map(|r| expected("http2", *r)))
        .collect();
    assert_eq!(
        sorted(evs.iter().map(summary).collect()),
        sorted(want),
        "{evs:#?}"
    );
    // The five streams came on one connection: one client port among their events.
    let ports: std::collections::BTreeSet<u64> = evs
        .iter()
        .filter(|e| {
            e["url"]["path"]
                .as_str()
                .is_some_and(|p| p.contains("/many/"))
        })
        .filter_map(|e| e["source"]["port"].as_u64())
        .collect();
    assert_eq!(
        ports.len(),
        1,
        "one connection for the five streams: {ports:?}"
    );
}

/// A port only `http` follows: its HTTP/1.1 is as before, and an h2c connection is not
/// HTTP/1.x (was: each one a malformed `PRI *` request with `response_missing`).
#[test]
fn with_only_http_on_the_port_h2c_is_not_taken_for_http1() {
    if !root() {
        return;
    }
    let evs = capture("h2sq", "10.231.18", "{ http: { ports: [8080] } }");
    let want: Vec<Summary> = HTTP1
        .iter()
        .flat_map(|c| c.iter().map(|r| expected("http", *r)))
        .collect();
    assert_eq!(
        sorted(evs.iter().map(summary).collect()),
        sorted(want),
        "{evs:#?}"
    );
}
