//! The TCP forwarder in front of a test broker's PLAINTEXT listener: `cut` closes every
//! connection and refuses new ones, `restore` listens again, `hold` keeps the broker's answers
//! back while requests still pass.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A TCP forwarder from `port` to `target` that can be cut and restored.
pub(super) struct Proxy {
    pub(super) port: u16,
    pub(super) target: u16,
    pub(super) stop: Arc<Mutex<Arc<AtomicBool>>>,
    pub(super) conns: Arc<Mutex<Vec<TcpStream>>>,
    /// Set: the broker's answers wait in the proxy (`hold_answers`); cleared by `cut`.
    pub(super) hold: Arc<AtomicBool>,
}

impl Proxy {
    pub(super) fn start(port: u16, target: u16) -> Proxy {
        let p = Proxy {
            port,
            target,
            stop: Arc::new(Mutex::new(Arc::new(AtomicBool::new(false)))),
            conns: Arc::default(),
            hold: Arc::default(),
        };
        p.listen();
        p
    }

    fn listen(&self) {
        let stop = Arc::new(AtomicBool::new(false));
        *self.stop.lock().unwrap() = stop.clone();
        let listener = {
            let start = Instant::now();
            loop {
                match TcpListener::bind(("127.0.0.1", self.port)) {
                    Ok(l) => break l,
                    Err(e) if start.elapsed() < Duration::from_secs(10) => {
                        let _ = e;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(e) => panic!("proxy cannot bind port {}: {e}", self.port),
                }
            }
        };
        listener.set_nonblocking(true).unwrap();
        let (target, conns, hold) = (self.target, self.conns.clone(), self.hold.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                            continue;
                        };
                        let mut c = conns.lock().unwrap();
                        c.push(client.try_clone().unwrap());
                        c.push(server.try_clone().unwrap());
                        pipe(
                            client.try_clone().unwrap(),
                            server.try_clone().unwrap(),
                            None,
                        );
                        pipe(server, client, Some(hold.clone()));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
    }

    pub(super) fn cut(&self) {
        self.stop.lock().unwrap().store(true, Ordering::Relaxed);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        self.hold.store(false, Ordering::Relaxed);
        // Let the accept thread see the flag and drop its listener.
        std::thread::sleep(Duration::from_millis(100));
    }

    pub(super) fn restore(&self) {
        self.listen();
    }
}

/// Copies `from` to `to` until either ends; while `hold` is set, nothing is copied.
fn pipe(mut from: TcpStream, mut to: TcpStream, hold: Option<Arc<AtomicBool>>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while hold.as_ref().is_some_and(|h| h.load(Ordering::Relaxed)) {
                std::thread::sleep(Duration::from_millis(10));
            }
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
