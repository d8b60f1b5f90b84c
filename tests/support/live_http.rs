//! Live capture tests' shared parts: trawl run with JSON logs and its events read by threads,
//! a small HTTP/1.1 server to capture (its answers or a test's, logged when asked), flow events'
//! packets summed, and virtual interfaces made (and deleted) per test.

use super::process::KillOnDrop;
use serde_json::Value as J;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// trawl on `pipeline` with JSON logs: the child, its log lines (echoed for failing tests) and
/// its events, each read by a thread so that neither pipe fills up.
pub fn start_trawl(
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
pub fn serve_and_pipeline(dir: &std::path::Path, interfaces: &str) -> (u16, std::path::PathBuf) {
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
/// request bodies by Content-Length or chunked. Path decides the answer (`answer`).
pub fn serve(listener: TcpListener) {
    serve_with(listener, answer, None);
}

/// One request as the server read it; `body` is its Content-Length (a chunked body is read
/// through, not counted).
pub struct Asked {
    pub method: String,
    pub path: String,
    pub body: usize,
}

/// One response the server wrote, with the request it answers: what a test compares trawl's
/// transactions with.
#[derive(Clone, Debug)]
pub struct Answered {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub request_body: usize,
    pub response_body: usize,
}

/// Writes the response to one request; returns its status and body bytes.
pub type Answer = fn(&mut TcpStream, &Asked) -> std::io::Result<(u16, usize)>;

/// `serve` answering with `answer`, each response added to `log` (when given) once written.
pub fn serve_with(listener: TcpListener, answer: Answer, log: Option<Arc<Mutex<Vec<Answered>>>>) {
    for stream in listener.incoming().flatten() {
        let log = log.clone();
        std::thread::spawn(move || {
            let _ = handle(stream, answer, log.as_deref());
        });
    }
}

pub fn read_chunked_body(buf: &mut Vec<u8>, s: &mut TcpStream) -> std::io::Result<usize> {
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

fn handle(
    mut s: TcpStream,
    answer: Answer,
    log: Option<&Mutex<Vec<Answered>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 65536];
    loop {
        let (method, path, len, chunked, head) = loop {
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
                let method = req.method.unwrap_or("").to_owned();
                break (method, req.path.unwrap_or("/").to_owned(), len, chunked, n);
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
        let asked = Asked {
            method,
            path,
            body: len,
        };
        let (status, response_body) = answer(&mut s, &asked)?;
        if let Some(log) = log {
            log.lock().expect("server log").push(Answered {
                method: asked.method,
                path: asked.path,
                status,
                request_body: asked.body,
                response_body,
            });
        }
    }
}

/// `serve`'s answers: `/chunked` in three chunks, `/big` 1 MiB, `/status/<code>`, `/upload..`
/// 201, anything else 200 `hello`.
fn answer(s: &mut TcpStream, asked: &Asked) -> std::io::Result<(u16, usize)> {
    Ok(match asked.path.as_str() {
        "/chunked" => {
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n")?;
            let parts = ["hello ", "chunked ", "world"];
            for part in parts {
                write!(s, "{:x}\r\n{part}\r\n", part.len())?;
            }
            s.write_all(b"0\r\n\r\n")?;
            (200, parts.concat().len())
        }
        "/big" => {
            let body = vec![b'x'; 1 << 20];
            write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n", body.len())?;
            s.write_all(&body)?;
            (200, body.len())
        }
        p if p.starts_with("/status/") => {
            let code: u16 = p[8..].parse().unwrap_or(500);
            write!(s, "HTTP/1.1 {code} X\r\nContent-Length: 2\r\n\r\nno")?;
            (code, 2)
        }
        p if p.starts_with("/upload") => {
            s.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")?;
            (201, 0)
        }
        _ => {
            s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
            )?;
            (200, 5)
        }
    })
}

/// Reads one HTTP/1.1 response (Content-Length or chunked); returns the status.
pub fn read_response(r: &mut BufReader<TcpStream>) -> u16 {
    read_response_sized(r).0
}

/// Reads one HTTP/1.1 response (Content-Length or chunked); returns the status and the body's
/// length (without chunk framing).
pub fn read_response_sized(r: &mut BufReader<TcpStream>) -> (u16, usize) {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {line:?}"));
    let (mut len, mut chunked) = (0usize, false);
    loop {
        let mut h = String::new();
        r.read_line(&mut h).expect("header");
        if h == "\r\n" || h.is_empty() {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("transfer-encoding:") {
            chunked = true;
        }
    }
    if !chunked {
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).expect("body");
        return (status, len);
    }
    let mut total = 0;
    loop {
        let mut sz = String::new();
        r.read_line(&mut sz).expect("chunk size");
        let n = usize::from_str_radix(sz.trim(), 16).expect("a chunk size");
        let mut skip = vec![0u8; n + 2];
        r.read_exact(&mut skip).expect("chunk");
        total += n;
        if n == 0 {
            return (status, total);
        }
    }
}

pub fn http_get(addr: &str, path: &str) -> String {
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

/// Whether this run may create interfaces (root) and capture on `lo`; says why not.
pub fn can_add_interfaces_and_capture_lo() -> bool {
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

/// Virtual interfaces made for one test, deleted when it ends however it ends.
pub struct Links(pub Vec<String>);

impl Links {
    pub fn ip(args: &[&str]) -> Result<(), String> {
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
    pub fn add(&mut self, name: &str) -> Result<(), String> {
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
pub fn get_status(ip: &str, port: u16, path: &str) -> u16 {
    let s = TcpStream::connect((ip, port)).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    write!(w, "GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    read_response(&mut r)
}

/// Waits until trawl logs a line `pred` accepts (lines read go to `seen`).
pub fn wait_for_log(
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

/// Waits until trawl logs its `/metrics` address (lines read go to `seen`); the address.
pub fn wait_for_metrics_address(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>) -> String {
    wait_for_log(rx, seen, "the metrics address", |l| {
        l.contains("serving /metrics")
    });
    seen.iter()
        .find_map(|l| super::process::metrics_address(l))
        .expect("metrics address in the log")
}

/// The packets of flow events, both directions of each: what a test compares with a capture's
/// or the kernel's own count.
pub fn flow_packets(flows: &[&J]) -> u64 {
    flows
        .iter()
        .map(|f| {
            f["source"]["packets"].as_u64().unwrap_or(0)
                + f["destination"]["packets"].as_u64().unwrap_or(0)
        })
        .sum()
}
