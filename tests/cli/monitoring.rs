//! The monitoring endpoint through the real binary: HEAD answers without a body, a bearer token
//! when one is configured, and a unix socket address for hosts where no port should be open.

use crate::support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::process::{free_port, KillOnDrop};

fn start(dir: &Path, http: &str) -> KillOnDrop {
    let p = dir.join("p.yaml");
    std::fs::write(
        &p,
        format!(
            "data_dir: {}/data\nhttp: {http}\ninputs:\n  app: {{ type: stdin }}\noutputs:\n  out: {{ type: \"null\" }}\n",
            dir.display()
        ),
    )
    .unwrap();
    KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_trawl"))
            .args(["run", "-c"])
            .arg(&p)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// The raw answer to `request`, retried until the server is up (bounded).
fn ask<S: Read + Write>(connect: impl Fn() -> std::io::Result<S>, request: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = connect() {
            s.write_all(request.as_bytes()).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "the monitoring endpoint never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tcp(port: u16) -> impl Fn() -> std::io::Result<std::net::TcpStream> {
    move || std::net::TcpStream::connect(("127.0.0.1", port))
}

#[test]
fn head_answers_carry_headers_and_no_body() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _t = start(dir.path(), &format!("{{ address: \"127.0.0.1:{port}\" }}"));
    let get = ask(tcp(port), "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = ask(tcp(port), "HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(get.starts_with("HTTP/1.1 200"), "{get}");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (get_head, get_body) = get.split_once("\r\n\r\n").unwrap();
    let (head_head, head_body) = head.split_once("\r\n\r\n").unwrap();
    assert!(!get_body.is_empty());
    assert_eq!(head_body, "", "HEAD must not send a body");
    // Same headers, Content-Length included (the size GET would send).
    assert_eq!(get_head, head_head);
    let post = ask(
        tcp(port),
        "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    assert!(post.contains("Allow: GET, HEAD"), "{post}");
}

#[test]
fn a_bearer_token_guards_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _t = start(
        dir.path(),
        &format!(
            "{{ address: \"127.0.0.1:{port}\", bearer_token: \"${{TRAWL_T_TOKEN:-t0k3n}}\" }}"
        ),
    );
    for path in ["/metrics", "/health", "/api/graph"] {
        let none = ask(
            tcp(port),
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"),
        );
        assert!(none.starts_with("HTTP/1.1 401"), "{path}: {none}");
        assert!(none.contains("WWW-Authenticate: Bearer"));
        assert!(!none.contains("trawl_events"), "{none}");
        let wrong = ask(
            tcp(port),
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t0k3m\r\n\r\n"),
        );
        assert!(wrong.starts_with("HTTP/1.1 401"), "{path}: {wrong}");
    }
    let ok = ask(
        tcp(port),
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t0k3n\r\n\r\n",
    );
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("trawl_events_in_total"), "{ok}");
}

#[test]
fn a_unix_socket_address_serves_health() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("monitor.sock");
    let _t = start(
        dir.path(),
        &format!("{{ address: \"unix:{}\" }}", sock.display()),
    );
    let s = sock.clone();
    let health = ask(
        move || std::os::unix::net::UnixStream::connect(&s),
        "GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"status\":\"ok\""), "{health}");
}
