//! A hung OpenSearch node (its JVM stopped with SIGSTOP: connections stay open, nothing is
//! answered, as in a long GC pause or a frozen VM), through the real binary: `/health` turns 503
//! naming the output once a bulk request has gone unanswered past `output_failure_threshold`,
//! without waiting out `request_timeout` first, and once the node wakes every line written
//! meanwhile is stored, once (ids from the file's identity and offset), with no stall. A live
//! capture held by the hung node: with a disk buffer every transaction made meanwhile is stored;
//! without one, what is dropped is counted and logged, never silent.

use crate::support;

use serde_json::json;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::opensearch::OpenSearch;
use support::process::{
    append, assert_each_once, free_port, health_turns_503, http_get, metric, sigterm, wait_until,
    write_file, Trawl,
};

fn lines(range: std::ops::Range<usize>) -> String {
    range.map(|i| format!("hung node line {i:05}\n")).collect()
}

fn pipeline(dir: &Path, addr: &str, url: &str) -> std::path::PathBuf {
    write_file(
        dir,
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{addr}\", health: {{ output_failure_threshold: 10s }} }}\nshutdown_timeout: 60s\ninputs:\n  app:\n    type: file\n    paths: [\"{log}\"]\n    poll_interval: 100ms\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"{url}\"]\n    index: hung\n    batch: {{ max_events: 100, timeout: 100ms }}\n    retry: {{ initial_backoff: 50ms, max_backoff: 1s }}\n",
            data = dir.join("data").display(),
            log = dir.join("app.log").display(),
        ),
    )
}

#[test]
fn a_hung_node_fails_health_past_the_threshold_and_loses_nothing() {
    let os = OpenSearch::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("trawl.log");
    let app = dir.path().join("app.log");
    append(&app, &lines(0..500));
    let mut trawl = Trawl::start(&pipeline(dir.path(), &addr, &os.url), Some(&log));
    let stored = || metric(&addr, "trawl_events_out_total", "es").unwrap_or(0.0) as usize;
    let health = || http_get(&addr, "/health").map(|(s, b)| (s, b.trim().to_owned()));
    wait_until(Duration::from_secs(90), "the first lines stored", || {
        stored() == 500
    });
    assert_eq!(health().map(|h| h.0), Some(200), "healthy while delivering");

    os.signal(libc::SIGSTOP);
    let stopped = Instant::now();
    append(&app, &lines(500..1000));
    // request_timeout is left at its default (60 s): the hang must show before it.
    let turned = health_turns_503(&addr, stopped, Duration::from_secs(35));
    let stored_while_hung = stored();
    os.signal(libc::SIGCONT);
    let (after, body) = turned.unwrap_or_else(|| {
        panic!(
            "/health still 200 35 s after the node hung with 500 lines waiting (threshold 10s); \
             trawl's log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    eprintln!(
        "/health 503 {:.1} s after the node hung: {body}",
        after.as_secs_f64()
    );
    assert!(
        after >= Duration::from_secs(9),
        "503 before the threshold: {after:?}"
    );
    assert!(body.contains("\"es\""), "the output named: {body}");
    assert_eq!(stored_while_hung, 500, "nothing stored while hung");

    wait_until(
        Duration::from_secs(120),
        "every line stored after the node woke",
        || stored() >= 1000,
    );
    wait_until(Duration::from_secs(10), "/health 200 again", || {
        health().is_some_and(|h| h.0 == 200)
    });
    sigterm(&trawl);
    let status = trawl.wait(Duration::from_secs(60));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.success(),
        "trawl exited with {status}; its log:\n{text}"
    );
    assert_eq!(
        text.matches("Elasticsearch does not answer").count(),
        1,
        "the hang logged once; the log:\n{text}"
    );

    let copies = os.copies_by_message("hung");
    // Ids from the lines' offsets: a bulk request sent again after the hang overwrites.
    let want: Vec<String> = lines(0..1000).lines().map(str::to_owned).collect();
    assert_each_once(&copies, &want);
}

/// Two nodes in `hosts`, one of them hung (its JVM stopped): a request sent to it is not
/// answered before `request_timeout` (here longer than the test), so it holds one of the two
/// `concurrency` slots; the other slot goes on to the healthy node, request after request. Before,
/// hosts took turns whatever they held, so the next request to the hung node took the second
/// slot too and nothing more was sent anywhere until the timeout.
#[test]
fn a_hung_node_among_the_hosts_holds_one_request_and_the_others_flow() {
    let healthy = OpenSearch::shared();
    let hung = OpenSearch::start(&[]);
    hung.signal(libc::SIGSTOP);
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let app = dir.path().join("app.log");
    append(&app, &lines(0..3000));
    let cfg = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  app: {{ type: file, paths: [\"{app}\"] }}\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"{a}\", \"{b}\"]\n    index: hung-among\n    setup: {{ template: {{ enabled: false }} }}\n    concurrency: 2\n    request_timeout: 600s\n    batch: {{ max_events: 100, timeout: 100ms }}\n",
            data = dir.path().join("data").display(),
            app = app.display(),
            a = healthy.url,
            b = hung.url,
        ),
    );
    let mut trawl = Trawl::start(&cfg, None);
    let count = || {
        if !healthy.exists("/hung-among") {
            return 0;
        }
        let _ = healthy.post("/hung-among/_refresh", &json!({}));
        healthy.get("/hung-among/_count")["count"]
            .as_u64()
            .unwrap_or(0)
    };
    // All but the one request the hung node holds (100 lines).
    wait_until(
        Duration::from_secs(120),
        "every line but one request's stored on the healthy node",
        || count() >= 2900,
    );
    trawl.kill9();
    hung.signal(libc::SIGCONT);
}

/// A keep-alive HTTP/1.1 server answering every GET with a short body.
fn serve(listener: TcpListener) {
    for s in listener.incoming().map_while(Result::ok) {
        std::thread::spawn(move || {
            let mut r = BufReader::new(s.try_clone()?);
            let mut s = s;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line)? == 0 {
                    return Ok::<(), std::io::Error>(());
                }
                if line == "\r\n" {
                    s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")?;
                }
            }
        });
    }
}

/// One keep-alive connection asking `/req/NNNNN` every 50 ms until `stop`; the paths it got
/// an answer to (the client's own log).
fn drive(port: u16, stop: Arc<AtomicBool>, answered: Arc<Mutex<Vec<String>>>) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut s = s;
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let path = format!("/req/{i:05}");
        write!(s, "GET {path} HTTP/1.1\r\nHost: shop\r\n\r\n").unwrap();
        let mut line = String::new();
        while line != "\r\n" {
            line.clear();
            r.read_line(&mut line).unwrap();
        }
        let mut body = [0u8; 3];
        r.read_exact(&mut body).unwrap();
        answered.lock().unwrap().push(path);
        i += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn capture_pipeline(
    dir: &Path,
    name: &str,
    addr: &str,
    url: &str,
    port: u16,
    buffer: &str,
) -> std::path::PathBuf {
    write_file(
        dir,
        &format!("{name}.yaml"),
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  node:\n    type: packet\n    capture: {{ interfaces: [lo], bpf_filter: \"tcp port {port}\" }}\n    protocols:\n      http: {{ ports: [{port}] }}\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"{url}\"]\n    index: {name}\n    batch: {{ max_events: 100, timeout: 100ms }}\n    retry: {{ initial_backoff: 50ms, max_backoff: 1s }}\n{buffer}",
            data = dir.join(format!("data-{name}")).display(),
        ),
    )
}

/// A node's live capture while its Elasticsearch hangs for 15 s (JVM stopped), two trawls on
/// the same traffic: the one with a disk buffer stores every transaction the client made and
/// drops none; the one without drops what the full pipeline cannot hold, and each transaction
/// missing from its index is counted in `trawl_events_dropped_total` and the dropping logged
/// once (was: counted, but not one log line).
#[test]
fn a_live_capture_held_by_a_hung_node_buffers_or_counts_and_logs_its_drops() {
    let os = OpenSearch::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || serve(listener));
    let [a, b] = support::process::server_ports::<2>();
    let (buffered, dropping) = (format!("127.0.0.1:{a}"), format!("127.0.0.1:{b}"));
    let logs = [
        dir.path().join("buffered.log"),
        dir.path().join("dropping.log"),
    ];
    let mut trawls = [
        Trawl::start(
            &capture_pipeline(
                dir.path(),
                "buffered",
                &buffered,
                &os.url,
                port,
                "    buffer: { type: disk }\n",
            ),
            Some(&logs[0]),
        ),
        Trawl::start(
            &capture_pipeline(dir.path(), "dropping", &dropping, &os.url, port, ""),
            Some(&logs[1]),
        ),
    ];
    for addr in [&buffered, &dropping] {
        wait_until(
            Duration::from_secs(30),
            "the capture open (/health 200)",
            || http_get(addr, "/health").is_some_and(|(s, _)| s == 200),
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(Mutex::new(Vec::new()));
    let client = {
        let (stop, answered) = (stop.clone(), answered.clone());
        std::thread::spawn(move || drive(port, stop, answered))
    };
    let stored = |addr: &str| metric(addr, "trawl_events_out_total", "es").unwrap_or(0.0) as usize;
    wait_until(
        Duration::from_secs(60),
        "the first transactions stored",
        || stored(&buffered) >= 20 && stored(&dropping) >= 20,
    );
    os.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(15));
    os.signal(libc::SIGCONT);
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    let made: Vec<String> = answered.lock().unwrap().clone();
    let dropped =
        |addr: &str| metric(addr, "trawl_events_dropped_total", "node").unwrap_or(0.0) as usize;
    wait_until(
        Duration::from_secs(60),
        "every transaction stored or dropped",
        || stored(&buffered) >= made.len() && stored(&dropping) + dropped(&dropping) >= made.len(),
    );
    let counted = dropped(&dropping);
    for (trawl, log) in trawls.iter_mut().zip(&logs) {
        sigterm(trawl);
        let status = trawl.wait(Duration::from_secs(60));
        assert!(
            status.success(),
            "trawl exited with {status}; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    let paths = |index: &str| -> std::collections::HashMap<String, usize> {
        let mut m = std::collections::HashMap::new();
        for doc in os.docs(index) {
            if let Some(p) = doc["url"]["path"].as_str() {
                *m.entry(p.to_owned()).or_insert(0) += 1;
            }
        }
        m
    };
    let kept = paths("buffered");
    let lost: Vec<&String> = made.iter().filter(|p| !kept.contains_key(*p)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} transactions lost with a disk buffer: {:?}",
        lost.len(),
        made.len(),
        &lost[..lost.len().min(5)]
    );
    assert_eq!(dropped(&buffered), 0, "no drop with a disk buffer");

    let kept = paths("dropping");
    let missing = made.iter().filter(|p| !kept.contains_key(*p)).count();
    eprintln!(
        "{} transactions made; without a buffer {missing} missing, {counted} counted dropped",
        made.len()
    );
    assert!(
        missing > 0,
        "a 15 s hang fills the pipeline: this test needs drops to look at"
    );
    assert_eq!(missing, counted, "every missing transaction counted");
    let text = std::fs::read_to_string(&logs[1]).unwrap_or_default();
    let warned: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("dropping"))
        .collect();
    assert_eq!(warned.len(), 1, "the drops logged once; the log:\n{text}");
    assert!(
        warned[0].contains("node") && warned[0].contains("trawl_events_dropped_total"),
        "the line names the input and the counter: {}",
        warned[0]
    );
}
