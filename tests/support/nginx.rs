//! Debian's nginx as a throwaway server of the protocol tests (tls_nginx, http2_grpc): one
//! worker, everything under the test's directory, one `server` block and an access log in the
//! test's own format, started in the foreground and killed when dropped. Tests declare
//! `mod support { pub mod nginx; }`.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nginx, killed when dropped.
pub struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts nginx in `dir` with `server` (the directives inside its `server { }` block, which
/// listens on `port` of 127.0.0.1) and an access log `dir/access.log` in `log_format`; returns
/// once the port accepts connections.
pub fn start(dir: &Path, port: u16, log_format: &str, server: &str) -> Nginx {
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/tmp;\n\
         log_format test '{log_format}';\n\
         server {{\n    access_log {d}/access.log test;\n{server}\n  }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new("nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off; master_process off;"])
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (scripts/setup.sh installs it)");
    let nginx = Nginx(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nginx did not listen on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    nginx
}
