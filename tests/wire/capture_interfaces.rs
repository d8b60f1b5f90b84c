//! Live capture across interfaces: a down interface skipped and opened once up, new ones
//! picked up and vanished ones released, a deleted one no longer holding the others back, one
//! kernel buffer shared by many, and the kernel's own drops counted and logged.

use crate::support;

use serde_json::Value as J;
use std::time::Duration;
use support::live_http::{
    can_add_interfaces_and_capture_lo, get_status, http_get, serve_and_pipeline, start_trawl,
    wait_for_log, wait_for_metrics_address, Links,
};

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
    let metrics_addr = wait_for_metrics_address(&rx, &mut log);
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

/// An interface deleted while captured on a handle of its own (promiscuous mode: `any` cannot
/// be promiscuous, so each interface has its handle): its capture thread ends, and the merge of
/// interfaces stops waiting for it at once, not at the next `refresh_interfaces` (10 minutes
/// here), so the other interfaces' transactions keep coming.
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
        text.replace(
            "refresh_interfaces: 300ms",
            "promiscuous: true, refresh_interfaces: 10m",
        ),
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
/// eight interfaces there (a ninth named but absent), trawl maps one 32 MiB ring, not one per
/// interface (resident from the start, idle or not: a ring per pod is what made a 40-pod node
/// cost 97 MiB); the interface that carries traffic is still captured whole, and traffic on an
/// interface that is not wanted never reaches the ring (the kernel's filter keeps the wanted
/// interfaces' packets only).
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
    assert_eq!(
        rings,
        vec![32 * 1024],
        "one ring of buffer_size for the eight interfaces, in KiB"
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

    // Connections to the captured port through an interface no pattern names: 300 SYNs (and
    // their retries) that the kernel keeps out of the ring.
    let other = format!("tro{}", std::process::id() % 100_000);
    links.add(&other).unwrap();
    let (_, peer) = addressed(&other, 214);
    let metrics_addr = wait_for_metrics_address(&rx, &mut log);
    let received = || -> Vec<u64> {
        http_get(&metrics_addr, "/metrics")
            .lines()
            .filter(|l| l.starts_with("trawl_capture_kernel_received_total{input=\"web\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect()
    };
    // The kernel's counters are read every second.
    std::thread::sleep(Duration::from_millis(1500));
    let before = received();
    assert_eq!(before.len(), 1, "one handle, one series: {before:?}");
    let target: std::net::SocketAddr = format!("{peer}:{port}").parse().unwrap();
    for _ in 0..300 {
        let _ = std::net::TcpStream::connect_timeout(&target, Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(2500));
    let after = received();
    assert!(
        after[0] < before[0] + 30,
        "the unwanted interface's SYNs reached the ring: {} packets received before, {} after",
        before[0],
        after[0]
    );
}

/// A capture whose kernel buffer is too small for a burst: pcap's drop counter is in
/// `/metrics` under the interface's name, and the loss is logged once for the episode (a
/// warning naming the input and the interface), not once per statistics read. A 64 KiB
/// buffer on an interface flooded with 1400-byte datagrams for a few seconds overflows.
#[test]
fn kernel_drops_are_counted_and_logged_once_per_episode() {
    if !can_add_interfaces_and_capture_lo() {
        return;
    }
    let name = format!("trk{}", std::process::id() % 100_000);
    let mut links = Links(Vec::new());
    if let Err(e) = links.add(&name) {
        println!("SKIPPED: cannot create an interface (CAP_NET_ADMIN, iproute2): {e}");
        return;
    }
    let (local, peer) = addressed(&name, 213);
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "inputs:\n  net:\n    type: packet\n    capture: {{ interfaces: [{name}], buffer_size: 64KiB }}\n    flows: {{ period: -1s }}\noutputs:\n  out: {{ type: stdout }}\ndata_dir: {}\nhttp: {{ address: \"127.0.0.1:0\" }}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let (_child, rx, _events) = start_trawl(&pipeline, false);
    let mut log = Vec::new();
    let quoted = format!("\"{name}\"");
    wait_for_log(&rx, &mut log, "capturing on the interface", |l| {
        l.contains("capturing") && l.contains(&quoted)
    });
    let metrics_addr = wait_for_metrics_address(&rx, &mut log);

    let socket = std::net::UdpSocket::bind(format!("{local}:0")).unwrap();
    let payload = [b'x'; 1400];
    let flood = |secs: u64| {
        let until = std::time::Instant::now() + Duration::from_secs(secs);
        while std::time::Instant::now() < until {
            for _ in 0..1000 {
                let _ = socket.send_to(&payload, (peer.as_str(), 9));
            }
        }
    };
    let dropping = |l: &str| l.contains("packets lost before trawl read them");
    // Flood until the first warning (statistics are read every second), then 2 s more of the
    // same episode.
    let start = std::time::Instant::now();
    while !log.iter().any(|l| dropping(l)) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no kernel drop logged after 20 s of flooding a 64 KiB buffer; log: {log:#?}"
        );
        flood(1);
        log.extend(rx.try_iter());
    }
    flood(2);
    std::thread::sleep(Duration::from_millis(1200));
    log.extend(rx.try_iter());
    let warnings: Vec<&String> = log.iter().filter(|l| dropping(l)).collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning for the episode: {warnings:#?}"
    );
    let w: J = serde_json::from_str(warnings[0]).unwrap();
    assert_eq!(w["level"], "WARN", "{w}");
    assert_eq!(w["input"], "net", "{w}");
    assert_eq!(w["interface"], name.as_str(), "{w}");
    let logged = w["kernel_dropped"].as_u64().unwrap_or(0);
    assert!(logged > 0, "{w}");
    let metrics = http_get(&metrics_addr, "/metrics");
    let series =
        format!("trawl_capture_kernel_dropped_total{{input=\"net\",interface=\"{name}\"}} ");
    let counted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series}in {metrics}"));
    assert!(
        counted >= logged,
        "the counter ({counted}) holds at least the drops logged ({logged})"
    );
}

/// Brings `name` up with an address in 10.`second`.x.0/24 and a peer (.2) whose link address is
/// set, so that packets to the peer leave at once, whatever kind of link it is (no ARP to wait
/// for). Returns (local, peer) addresses.
fn addressed(name: &str, second: u32) -> (String, String) {
    let net = 200 + std::process::id() % 50;
    let (local, peer) = (
        format!("10.{second}.{net}.1"),
        format!("10.{second}.{net}.2"),
    );
    for args in [
        vec!["addr", "add", &format!("{local}/24"), "dev", name],
        vec!["link", "set", name, "up"],
        vec![
            "neigh",
            "replace",
            &peer,
            "lladdr",
            "02:00:00:00:00:01",
            "dev",
            name,
        ],
    ] {
        Links::ip(&args).unwrap();
    }
    (local, peer)
}
