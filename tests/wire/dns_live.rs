//! DNS against a real server: Debian's dnsmasq with a few local records and `log-queries=extra`
//! answers dig over UDP and TCP on `lo` while `trawl run` (a `dns` input) and tshark capture
//! the same traffic. Every query in dnsmasq's log is one trawl transaction with the same name,
//! type, response code and answers; tshark's decoding of the capture agrees; a query nobody
//! answers is reported after the transaction timeout; `/metrics` has the DNS RED series and the
//! service map a DNS edge.

use serde_json::Value as J;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
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

/// Lines of a child's pipe, read by a thread so that the pipe never fills.
fn lines_of(r: impl Read + Send + 'static, echo: &'static str) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            eprintln!("{echo}: {line}");
            let _ = tx.send(line);
        }
    });
    rx
}

/// Waits for a line containing `what`, returning it; fails with `why` after 20 s.
fn wait_line(rx: &mpsc::Receiver<String>, what: &str, why: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(what) => return l,
            Ok(_) => {}
            Err(_) => panic!("{why}: no line with {what:?} within 20 s"),
        }
    }
}

/// A port free for both UDP and TCP on 127.0.0.1.
fn free_port() -> u16 {
    for _ in 0..50 {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
}

fn dig(port: u16, name: &str, qtype: &str, tcp: bool) {
    let mut c = Command::new("dig");
    c.args([
        "@127.0.0.1",
        "-p",
        &port.to_string(),
        name,
        qtype,
        "+tries=1",
        "+time=2",
    ]);
    if tcp {
        c.arg("+tcp");
    }
    let out = c.output().expect("dig (bind9-dnsutils) is not installed");
    assert!(out.status.success(), "dig {name} {qtype}: {out:?}");
}

/// One query of dnsmasq's log: client port, type, name, and what it answered (rcode, and
/// the (name, data) of each `config` line: an address, or `<CNAME>`, `<MX>`...).
#[derive(Debug)]
struct Logged {
    client_port: u16,
    qtype: String,
    name: String,
    rcode: String,
    answers: Vec<(String, String)>,
}

/// `dnsmasq[pid]: SERIAL 127.0.0.1/PORT query[A] NAME from 127.0.0.1` and the lines with the
/// same serial after it.
fn parse_log(log: &str) -> Vec<Logged> {
    let mut out: Vec<(String, Logged)> = Vec::new();
    for line in log.lines() {
        let Some((_, rest)) = line.split_once("]: ") else {
            continue;
        };
        let w: Vec<&str> = rest.split_whitespace().collect();
        if w.len() < 4 || !w[1].starts_with("127.0.0.1/") {
            continue;
        }
        let serial = format!("{} {}", w[0], w[1]);
        let port: u16 = w[1]["127.0.0.1/".len()..].parse().unwrap();
        if let Some(t) = w[2]
            .strip_prefix("query[")
            .and_then(|t| t.strip_suffix(']'))
        {
            out.push((
                serial,
                Logged {
                    client_port: port,
                    qtype: t.to_owned(),
                    name: w[3].to_owned(),
                    rcode: "NOERROR".into(),
                    answers: Vec::new(),
                },
            ));
        } else if w[2] == "config" && w.len() >= 6 {
            let Some((_, q)) = out.iter_mut().rev().find(|(s, _)| *s == serial) else {
                continue;
            };
            match (w[3], w[5]) {
                (_, "NXDOMAIN") => q.rcode = "NXDOMAIN".into(),
                ("error", rcode) => q.rcode = rcode.to_owned(),
                (name, data) => q.answers.push((name.to_owned(), data.to_owned())),
            }
        }
    }
    out.into_iter().map(|(_, q)| q).collect()
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

#[test]
fn dnsmasq_queries_over_udp_and_tcp_are_transactions() {
    if let Err(e) = trawl::wire::capture::probe("lo") {
        println!("SKIPPED: cannot capture on lo: {e}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // A socket that receives queries and never answers them.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let filter = format!("port {port} or port {silent_port}");

    let pcap = dir.path().join("dns.pcapng");
    let mut tshark = KillOnDrop(
        Command::new("tshark")
            .args(["-i", "lo", "-f", &filter, "-w"])
            .arg(&pcap)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tshark is not installed"),
    );
    let tshark_err = lines_of(tshark.0.stderr.take().unwrap(), "tshark");
    wait_line(&tshark_err, "Capturing on", "tshark did not start");

    let pipeline = dir.path().join("p.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "inputs:\n  dns:\n    type: dns\n    capture: {{ interfaces: [lo], bpf_filter: \"{filter}\" }}\n    ports: [{port}, {silent_port}]\n    transaction_timeout: 1s\noutputs:\n  out: {{ type: stdout }}\ndata_dir: {}\nhttp: {{ address: \"127.0.0.1:0\" }}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut trawl = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_trawl"))
            .args(["--log-format", "json", "run", "-c"])
            .arg(&pipeline)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let log = lines_of(trawl.0.stderr.take().unwrap(), "trawl");
    let (etx, events) = mpsc::channel::<J>();
    let stdout = trawl.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = etx.send(v);
            }
        }
    });
    let serving = wait_line(&log, "serving /metrics", "trawl did not serve /metrics");
    let metrics_addr = crate::support::process::metrics_address(&serving).expect("an address");
    wait_line(&log, "capturing", "trawl did not start capturing on lo");

    let mut dnsmasq = KillOnDrop(
        Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                &format!("--port={port}"),
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--log-queries=extra",
                "--log-facility=-",
                "--pid-file=",
                "--user=root",
                "--local=/analyzers.test/",
                "--host-record=web.analyzers.test,192.0.2.10,2001:db8::10",
                "--cname=alias.analyzers.test,web.analyzers.test",
                "--txt-record=txt.analyzers.test,hello world",
                "--mx-host=analyzers.test,mail.analyzers.test,10",
                "--srv-host=_http._tcp.analyzers.test,web.analyzers.test,80,0,5",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dnsmasq (dnsmasq-base) is not installed"),
    );
    let dnsmasq_log = lines_of(dnsmasq.0.stderr.take().unwrap(), "dnsmasq");
    wait_line(&dnsmasq_log, "cleared cache", "dnsmasq did not start");

    let queries = [
        ("web.analyzers.test", "A", false),
        ("web.analyzers.test", "AAAA", false),
        ("alias.analyzers.test", "A", false),
        ("nope.analyzers.test", "A", false),
        ("txt.analyzers.test", "TXT", false),
        ("analyzers.test", "MX", false),
        ("_http._tcp.analyzers.test", "SRV", false),
        ("example.com", "A", false),
        ("web.analyzers.test", "A", true),
        ("alias.analyzers.test", "AAAA", true),
        ("nope.analyzers.test", "TXT", true),
    ];
    for (name, qtype, tcp) in queries {
        dig(port, name, qtype, tcp);
    }
    // Nobody answers this one: dig gives up, trawl reports it after its 1 s timeout.
    let _ = Command::new("dig")
        .args(["@127.0.0.1", "-p", &silent_port.to_string()])
        .args(["unanswered.analyzers.test", "A", "+tries=1", "+time=1"])
        .output();

    let want = queries.len() + 1;
    let mut txs: Vec<J> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while txs.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(e) => txs.push(e),
            Err(_) => panic!(
                "{} of {want} DNS transactions within 30 s: {txs:#?}",
                txs.len()
            ),
        }
    }
    // Nothing more comes (no duplicate for any query).
    assert!(
        events.recv_timeout(Duration::from_secs(2)).is_err(),
        "more events than queries"
    );

    let metrics = http_get(&metrics_addr, "/metrics");
    let graph = http_get(&metrics_addr, "/api/graph/data");
    drop(dnsmasq);
    let mut logged_lines = Vec::new();
    while let Ok(l) = dnsmasq_log.recv_timeout(Duration::from_secs(1)) {
        logged_lines.push(l);
    }
    let _ = Command::new("kill")
        .args(["-INT", &tshark.0.id().to_string()])
        .status();
    let _ = tshark.0.wait();

    // dnsmasq's record, one for one.
    let logged = parse_log(&logged_lines.join("\n"));
    assert_eq!(logged.len(), queries.len(), "dnsmasq logged {logged:#?}");
    let answered: Vec<&J> = txs
        .iter()
        .filter(|t| t["destination"]["port"] == port as i64)
        .collect();
    assert_eq!(answered.len(), logged.len());
    for q in &logged {
        let matching: Vec<&&J> = answered
            .iter()
            .filter(|t| {
                t["client"]["port"] == q.client_port as i64
                    && t["dns"]["question"]["name"] == q.name.as_str()
                    && t["dns"]["question"]["type"] == q.qtype.as_str()
            })
            .collect();
        assert_eq!(matching.len(), 1, "{q:?} in {answered:#?}");
        let t = matching[0];
        assert_eq!(t["dns"]["response_code"], q.rcode.as_str(), "{q:?}: {t}");
        assert_eq!(t["dns"]["type"], "answer");
        assert_eq!(t["event"]["dataset"], "dns");
        assert_eq!(t["network"]["protocol"], "dns");
        let answers = t["dns"]["answers"].as_array().cloned().unwrap_or_default();
        assert_eq!(answers.len(), q.answers.len(), "{q:?}: {t}");
        for ((name, data), a) in q.answers.iter().zip(&answers) {
            assert_eq!(a["name"], name.as_str(), "{q:?}: {t}");
            match data.strip_prefix('<').and_then(|d| d.strip_suffix('>')) {
                Some(rtype) => assert_eq!(a["type"], rtype, "{q:?}: {t}"),
                None => assert_eq!(a["data"], data.as_str(), "{q:?}: {t}"),
            }
            assert_eq!(a["class"], "IN");
        }
        let outcome = if q.rcode == "REFUSED" {
            "failure"
        } else {
            "success"
        };
        assert_eq!(t["event"]["outcome"], outcome, "{t}");
        assert!(t["event"]["duration"].as_i64().unwrap() >= 0);
    }
    // Each query went over the transport dig used (dnsmasq's log does not say which).
    let mut sent: Vec<(String, String, &str)> = queries
        .iter()
        .map(|(n, ty, tcp)| {
            (
                n.to_string(),
                ty.to_string(),
                if *tcp { "tcp" } else { "udp" },
            )
        })
        .collect();
    let mut seen: Vec<(String, String, &str)> = answered
        .iter()
        .map(|t| {
            (
                t["dns"]["question"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                t["dns"]["question"]["type"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                t["network"]["transport"].as_str().unwrap_or(""),
            )
        })
        .collect();
    sent.sort();
    seen.sort();
    assert_eq!(seen, sent);

    let lost: Vec<&J> = txs
        .iter()
        .filter(|t| t["destination"]["port"] == silent_port as i64)
        .collect();
    assert_eq!(lost.len(), 1, "{txs:#?}");
    assert_eq!(lost[0]["event"]["reason"], "response_missing");
    assert_eq!(lost[0]["event"]["outcome"], "unknown");
    assert_eq!(lost[0]["dns"]["type"], "query");
    assert_eq!(
        lost[0]["dns"]["question"]["name"],
        "unanswered.analyzers.test"
    );

    // tshark, on the same traffic: every response it decodes is the one trawl paired with
    // the query of that client port and id, with the same rcode and addresses.
    let fields = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-d", &format!("tcp.port=={port},dns")])
        .args(["-Y", "dns.flags.response == 1", "-T", "fields"])
        .args(["-e", "udp.dstport", "-e", "tcp.dstport", "-e", "dns.id"])
        .args(["-e", "dns.qry.name", "-e", "dns.flags.rcode"])
        .args(["-e", "dns.a", "-e", "dns.aaaa", "-e", "dns.count.answers"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&fields.stdout);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|r| r.len() >= 8)
        .collect();
    assert_eq!(rows.len(), answered.len(), "tshark saw {text}");
    for r in rows {
        let client_port: i64 = [r[0], r[1]].iter().find_map(|p| p.parse().ok()).unwrap();
        let id = i64::from_str_radix(r[2].trim_start_matches("0x"), 16).unwrap();
        let t = answered
            .iter()
            .find(|t| t["client"]["port"] == client_port && t["dns"]["id"] == id)
            .unwrap_or_else(|| panic!("tshark's response {r:?} is not a trawl transaction"));
        assert_eq!(t["dns"]["question"]["name"], r[3], "{t}");
        let rcode = [
            "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
        ][r[4].parse::<usize>().unwrap()];
        assert_eq!(t["dns"]["response_code"], rcode, "{t}");
        let tshark_ips: BTreeSet<String> = [r[5], r[6]]
            .iter()
            .flat_map(|s| s.split(','))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let trawl_ips: BTreeSet<String> = t["dns"]["resolved_ip"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        // tshark lists the addresses of every section (an SRV answer's additional records);
        // `resolved_ip` those of the answers.
        assert!(trawl_ips.is_subset(&tshark_ips), "{t}");
        if t["dns"]["additionals_count"].as_i64() <= Some(1) {
            assert_eq!(trawl_ips, tshark_ips, "{t}");
        }
        assert_eq!(
            t["dns"]["answers_count"],
            r[7].parse::<i64>().unwrap(),
            "{t}"
        );
    }

    for want in [
        format!("trawl_dns_requests_total{{server=\"127.0.0.1:{port}\",operation=\"A\",status=\"NOERROR\",outcome=\"success\"}} 3"),
        format!("trawl_dns_requests_total{{server=\"127.0.0.1:{port}\",operation=\"A\",status=\"REFUSED\",outcome=\"failure\"}} 1"),
        format!("trawl_dns_errors_total{{server=\"127.0.0.1:{silent_port}\",operation=\"A\"}} 1"),
        format!("trawl_dns_request_duration_seconds_count{{server=\"127.0.0.1:{port}\"}} 11"),
        "trawl_packet_dns_parse_errors_total{input=\"dns\"} 0".to_owned(),
        // The protocol's own counters (`Protocol::counters`): the one query nobody answered.
        "trawl_packet_dns_unanswered_total{input=\"dns\"} 1".to_owned(),
        "trawl_packet_dns_unasked_total{input=\"dns\"} 0".to_owned(),
    ] {
        assert!(metrics.contains(&want), "no {want} in\n{metrics}");
    }
    // The service map: the queries make a DNS edge to the server.
    let graph: J = graph
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or_else(|| panic!("no graph JSON in {graph}"));
    assert!(
        graph["edges"].as_array().is_some_and(|e| e
            .iter()
            .any(|e| e["detail__protocol"] == "dns" && e["target"] == "127.0.0.1")),
        "no dns edge in {graph}"
    );
}
