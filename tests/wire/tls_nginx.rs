//! The TLS analyzer against a real nginx on `lo`: trawl's live `tls` input watches curl and
//! openssl s_client handshakes (TLS 1.2 and 1.3, SNI, ALPN h2 and http/1.1, a handshake with
//! no shared cipher). Each request in nginx's access log ($ssl_protocol $ssl_cipher
//! $ssl_server_name) and each failed handshake in its error log is one trawl event, and
//! tshark on the same traffic (captured by dumpcap) agrees on JA3 and JA3S.

use crate::support;

use serde_json::Value as J;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn nginx(dir: &Path, port: u16) -> support::nginx::Nginx {
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        ])
        .args(["-subj", "/O=Trawl Test/CN=tls.trawl.test"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(ok.success());
    let d = dir.display();
    support::nginx::start(
        dir,
        port,
        "$remote_port $ssl_protocol $ssl_cipher $ssl_server_name $status",
        &format!(
            "    listen 127.0.0.1:{port} ssl http2;\n    server_name tls.trawl.test;\n\
             ssl_certificate {d}/cert.pem;\n    ssl_certificate_key {d}/key.pem;\n\
             ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_ciphers ECDHE+AESGCM;\n\
             location / {{ return 200 \"ok\\n\"; }}"
        ),
    )
}

/// trawl with a live `tls` input on `lo`, its events read by a thread.
/// trawl capturing `port` on lo: the child, its events and the address of its /metrics.
fn trawl(dir: &Path, port: u16) -> (KillOnDrop, mpsc::Receiver<J>, String) {
    let pipeline = dir.join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "inputs:\n  tls:\n    type: tls\n    capture: {{ interfaces: [lo], bpf_filter: \"tcp port {port}\" }}\n    ports: [{port}]\noutputs:\n  out: {{ type: stdout }}\ndata_dir: {}\nhttp: {{ address: \"127.0.0.1:0\" }}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_trawl"))
            .args(["--log-format", "json", "run", "-c"])
            .arg(&pipeline)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (ltx, lrx) = mpsc::channel::<String>();
    let stderr = child.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("trawl: {line}");
            let _ = ltx.send(line);
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
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut metrics_addr = None;
    loop {
        let line = lrx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("trawl did not serve /metrics and start capturing on lo");
        if line.contains("serving /metrics") {
            let v: J = serde_json::from_str(&line).unwrap();
            metrics_addr = v["address"]
                .as_str()
                .or(v["fields"]["address"].as_str())
                .map(str::to_owned);
        }
        if line.contains("capturing") {
            break;
        }
    }
    (
        child,
        erx,
        metrics_addr.expect("trawl logged its /metrics address before capturing"),
    )
}

/// A plain HTTP/1.0 GET of trawl's own endpoint: the body.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.split_once("\r\n\r\n")
        .map(|b| b.1.to_owned())
        .unwrap_or_default()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().expect("client");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// OpenSSL's cipher names (what nginx logs) to the IANA ones (what trawl reports), as
/// `openssl ciphers -stdname` lists them.
fn iana_names() -> HashMap<String, String> {
    run(Command::new("openssl").args(["ciphers", "-stdname", "ALL"]))
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let iana = w.next()?;
            w.next()?; // "-"
            Some((w.next()?.to_owned(), iana.to_owned()))
        })
        .collect()
}

#[test]
fn nginx_handshakes_match_its_logs_and_tshark() {
    if let Err(e) = trawl::wire::capture::probe("lo") {
        println!("SKIPPED: cannot capture on lo: {e}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _nginx = nginx(dir.path(), port);
    let pcap = dir.path().join("tls.pcap");
    let dumpcap = KillOnDrop(
        Command::new("dumpcap")
            .args(["-q", "-i", "lo", "-f", &format!("tcp port {port}"), "-w"])
            .arg(&pcap)
            .stderr(Stdio::null())
            .spawn()
            .expect("dumpcap (tshark's package)"),
    );
    let (_trawl, events, metrics_addr) = trawl(dir.path(), port);
    wait_for("dumpcap to start", || pcap.exists());
    std::thread::sleep(Duration::from_millis(500));

    let url = format!("https://tls.trawl.test:{port}/");
    let resolve = format!("tls.trawl.test:{port}:127.0.0.1");
    let curl = |args: &[&str]| {
        let body = run(Command::new("curl")
            .args(["-sk", "--resolve", &resolve])
            .args(args)
            .arg(&url));
        assert_eq!(body, "ok\n", "curl {args:?}");
    };
    curl(&["--tlsv1.3", "--http2"]);
    curl(&["--tlsv1.2", "--tls-max", "1.2", "--http1.1"]);
    curl(&["--tlsv1.3", "--http1.1"]);
    // No shared cipher: the server ends the handshake with an alert.
    run(Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args([
            "-tls1_2",
            "-cipher",
            "AES128-SHA",
            "-servername",
            "tls.trawl.test",
        ]));

    let mut got: Vec<J> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 4 {
        match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(e) => got.push(e),
            Err(_) => panic!("trawl reported {} of 4 handshakes: {got:#?}", got.len()),
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    // SIGTERM, so that dumpcap writes out what it holds.
    let mut dumpcap = dumpcap;
    let _ = Command::new("kill")
        .arg(dumpcap.0.id().to_string())
        .status();
    let _ = dumpcap.0.wait();
    let by_port: HashMap<i64, &J> = got
        .iter()
        .map(|e| (e["source"]["port"].as_i64().unwrap_or(0), e))
        .collect();

    // The server's own record: one access-log line per established connection.
    let names = iana_names();
    let access = std::fs::read_to_string(dir.path().join("access.log")).unwrap();
    let mut established = 0;
    for line in access.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (cport, proto, cipher, sni) = (f[0].parse::<i64>().unwrap(), f[1], f[2], f[3]);
        let e = by_port
            .get(&cport)
            .unwrap_or_else(|| panic!("no trawl event for nginx's {line}: {got:#?}"));
        established += 1;
        assert_eq!(e["event"]["dataset"], "tls");
        assert_eq!(e["event"]["outcome"], "success", "{line}");
        assert_eq!(e["tls"]["established"], true, "{line}");
        assert_eq!(
            e["tls"]["version"].as_str(),
            proto.strip_prefix("TLSv"),
            "{line}"
        );
        assert_eq!(
            e["tls"]["cipher"].as_str(),
            Some(names.get(cipher).map_or(cipher, String::as_str)),
            "{line}"
        );
        assert_eq!(e["tls"]["client"]["server_name"], sni, "{line}");
    }
    assert_eq!(established, 3, "{access}");
    // nginx logs a failed handshake at `info`.
    let errors = std::fs::read_to_string(dir.path().join("error.log")).unwrap();
    let failed: Vec<&str> = errors
        .lines()
        .filter(|l| l.contains("SSL_do_handshake() failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{errors}");
    assert!(failed[0].contains("no shared cipher"), "{}", failed[0]);
    let failures: Vec<&J> = got
        .iter()
        .filter(|e| e["event"]["outcome"] == "failure")
        .collect();
    assert_eq!(failures.len(), 1, "{got:#?}");
    assert_eq!(
        failures[0]["tls"]["alert"]["description"],
        "handshake_failure"
    );
    assert_eq!(failures[0]["tls"]["alert"]["source"], "server");
    // h2 was offered by the first curl only; TLS 1.3 keeps the choice encrypted, so only the
    // offer is visible.
    assert!(got.iter().any(|e| e["tls"]["client"]["alpn"][0] == "h2"));

    // Live RED metrics and service-map edge: each handshake counted, the refused one as the
    // one failure.
    let metrics = http_get(&metrics_addr, "/metrics");
    let server = format!("server=\"127.0.0.1:{port}\"");
    let sum = |labels: &[&str]| -> f64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("trawl_tls_requests_total{") && labels.iter().all(|w| l.contains(w))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(sum(&[&server]), got.len() as f64, "{metrics}");
    assert_eq!(sum(&[&server, "outcome=\"failure\""]), 1.0, "{metrics}");
    // The duration histogram has every handshake, the errors counter the refused one.
    let duration = format!(
        "trawl_tls_request_duration_seconds_count{{{server}}} {}\n",
        got.len()
    );
    assert!(metrics.contains(&duration), "no {duration} in {metrics}");
    let errors: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("trawl_tls_errors_total{") && l.contains(&server))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(errors, 1.0, "{metrics}");
    assert!(
        metrics.contains("trawl_packet_tls_gaps_total{input=\"tls\"} 0"),
        "{metrics}"
    );
    let graph: J = serde_json::from_str(&http_get(&metrics_addr, "/api/graph/data")).unwrap();
    assert!(
        graph["edges"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["detail__protocol"] == "tls")),
        "no tls edge in {graph}"
    );

    // tshark on the same packets: JA3 and JA3S per client port.
    let out = run(Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-d", &format!("tcp.port=={port},tls")])
        .args(["-Y", "tls.handshake.type == 1 || tls.handshake.type == 2"])
        .args(["-T", "fields", "-e", "tcp.srcport", "-e", "tcp.dstport"])
        .args(["-e", "tls.handshake.ja3", "-e", "tls.handshake.ja3s"]));
    let mut checked = 0;
    for line in out.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 4 {
            continue;
        }
        let (src, dst) = (f[0].parse::<i64>().unwrap(), f[1].parse::<i64>().unwrap());
        if !f[2].is_empty() {
            assert_eq!(by_port[&src]["tls"]["client"]["ja3"], f[2], "{line}");
            checked += 1;
        }
        if !f[3].is_empty() {
            assert_eq!(by_port[&dst]["tls"]["server"]["ja3s"], f[3], "{line}");
            checked += 1;
        }
    }
    assert_eq!(checked, 7, "4 ClientHellos and 3 ServerHellos: {out}");
}
