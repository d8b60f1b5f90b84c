//! `/health` names a component that cannot do its job at run time, through the real binary:
//! a live capture that can open none of its interfaces is a 503, not an input quietly capturing
//! nothing.

mod support {
    pub mod process;
}

use std::io::{Read, Write};
use std::time::Duration;
use support::process::{free_port, wait_until, write_file, Trawl};

/// (status, body) of GET `path`, or `None` while trawl is not listening.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

#[test]
fn a_capture_on_no_interface_turns_health_503_naming_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let cfg = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  web:\n    type: http\n    capture: {{ interfaces: [trawl-none0] }}\noutputs:\n  out: {{ type: \"null\" }}\n",
            data = dir.path().join("data").display()
        ),
    );
    let _t = Trawl::start(&cfg, Some(&dir.path().join("trawl.log")));
    let mut last = None;
    wait_until(Duration::from_secs(30), "/health to answer 503", || {
        last = get(&addr, "/health");
        last.as_ref().is_some_and(|(status, _)| *status == 503)
    });
    let (_, body) = last.unwrap();
    assert!(body.contains("web"), "{body}");
    assert!(body.contains("trawl-none0"), "{body}");
}
