//! A bounded HTTP/1.1 load on the loopback for the live-capture benchmark: serves on
//! 127.0.0.1:PORT and drives it with keep-alive connections at a fixed request rate for a
//! fixed time, then prints what it achieved. Usage: http_load PORT RPS SECONDS [CONNECTIONS]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

const BODY: &[u8] = b"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789";

fn response() -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        BODY.len()
    )
    .into_bytes();
    r.extend_from_slice(BODY);
    r
}

fn serve(mut s: TcpStream) {
    let resp = response();
    let mut buf = vec![0u8; 8192];
    let mut have = 0;
    loop {
        let n = match s.read(&mut buf[have..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        have += n;
        // Requests end with an empty line; answer each complete one.
        while let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            if s.write_all(&resp).is_err() {
                return;
            }
            buf.copy_within(end + 4..have, 0);
            have -= end + 4;
        }
        if have == buf.len() {
            return;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (port, rps, secs, conns) = (arg(1, 0) as u16, arg(2, 20_000), arg(3, 10), arg(4, 8));
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            std::thread::spawn(move || serve(s));
        }
    });
    let resp_len = response().len();
    let per_conn = rps as f64 / conns as f64;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let workers: Vec<_> = (0..conns)
        .map(|c| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                s.set_nodelay(true).ok();
                let mut buf = vec![0u8; 4096];
                let mut done = 0u64;
                let t0 = Instant::now();
                while Instant::now() < deadline {
                    // Pace: the requests due by now, in small bursts, then sleep.
                    let due = (t0.elapsed().as_secs_f64() * per_conn) as u64;
                    if done >= due {
                        std::thread::sleep(Duration::from_micros(500));
                        continue;
                    }
                    let req = format!("GET /items/{}?c={c} HTTP/1.1\r\nHost: load.local\r\nUser-Agent: http_load\r\n\r\n", done % 1000);
                    if s.write_all(req.as_bytes()).is_err() {
                        break;
                    }
                    let mut got = 0;
                    while got < resp_len {
                        match s.read(&mut buf[got..]) {
                            Ok(0) | Err(_) => return done,
                            Ok(n) => got += n,
                        }
                    }
                    done += 1;
                }
                done
            })
        })
        .collect();
    let total: u64 = workers.into_iter().map(|w| w.join().unwrap_or(0)).sum();
    let el = start.elapsed().as_secs_f64();
    println!("{port} {total} {:.0}", total as f64 / el);
}
