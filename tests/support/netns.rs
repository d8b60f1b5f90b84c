//! Network namespaces for the live capture tests: commands, a namespace with its host-side
//! veth removed however a test ends, a child's output line by line, a UDP echo server.
// Each test binary uses some of these.
#![allow(dead_code)]

use std::io::BufRead;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs `cmd args`; its standard output, or what it said on failure.
pub fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A namespace behind one veth, removed however the test ends.
pub struct Link {
    pub ns: String,
    pub host: String,
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = run("ip", &["link", "del", &self.host]);
        let _ = run("ip", &["netns", "del", &self.ns]);
    }
}

impl Link {
    /// A namespace `ns-<tag>` behind a veth pair (`<tag>-h` here, `<tag>-p` inside, 1,500-byte
    /// MTU), each end given its addresses (CIDR; IPv6 ones skip duplicate address detection,
    /// so that they work at once) and up, `lo` up inside.
    pub fn veth(tag: &str, here: &[&str], inside: &[&str]) -> Result<Link, String> {
        let link = Link {
            ns: format!("ns-{tag}"),
            host: format!("{tag}-h"),
        };
        let peer = format!("{tag}-p");
        run("ip", &["netns", "add", &link.ns])?;
        run(
            "ip",
            &[
                "link", "add", &link.host, "type", "veth", "peer", "name", &peer,
            ],
        )?;
        run("ip", &["link", "set", &peer, "netns", &link.ns])?;
        let ip_in = |args: &[&str]| {
            let mut a = vec!["netns", "exec", &link.ns, "ip"];
            a.extend_from_slice(args);
            run("ip", &a)
        };
        for (addrs, dev, at_home) in [(here, &link.host, true), (inside, &peer, false)] {
            for a in addrs {
                let mut args = vec!["addr", "add", a, "dev", dev.as_str()];
                if a.contains(':') {
                    args.push("nodad");
                }
                if at_home {
                    run("ip", &args)?;
                } else {
                    ip_in(&args)?;
                }
            }
        }
        run("ip", &["link", "set", &link.host, "mtu", "1500", "up"])?;
        ip_in(&["link", "set", &peer, "mtu", "1500", "up"])?;
        ip_in(&["link", "set", "lo", "up"])?;
        Ok(link)
    }

    /// `args` run inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]);
        c.args(args);
        c
    }
}

/// Lines of a child's pipe, read by a thread so that the pipe never fills.
pub fn lines_of(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(r).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

pub fn wait_line(rx: &mpsc::Receiver<String>, what: &str, why: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) if l.contains(what) => return l,
            Ok(l) => seen.push(l),
            Err(_) => panic!("{why}: no line with {what:?} within 30 s: {seen:#?}"),
        }
    }
}

/// Echoes every UDP datagram on port 7007, IPv4 and IPv6, back to its sender.
pub const ECHO: &str = r#"
import socket, select, sys
socks = []
for fam, addr in ((socket.AF_INET, sys.argv[1]), (socket.AF_INET6, sys.argv[2])):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((addr, 7007))
    socks.append(s)
print("ready", flush=True)
while True:
    for s in select.select(socks, [], [])[0]:
        data, peer = s.recvfrom(65535)
        s.sendto(data, peer)
"#;

/// The value of `series` (name and labels, exactly) in a Prometheus text exposition.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}
