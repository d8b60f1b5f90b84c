//! A client of a running trawl's monitoring API, for `trawl tap` and `trawl top`: where to reach
//! it (an address, or the pipeline file's `http:` section), its bearer token, one GET per
//! connection over TCP or a unix socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// How `tap` and `top` reach the running trawl.
#[derive(clap::Args, Debug, Clone)]
pub struct ApiArgs {
    /// The monitoring address, `host:port` or `unix:/path` (default: `http.address` of the
    /// pipeline given with -c, else 127.0.0.1:5066).
    #[arg(long)]
    pub address: Option<String>,
    /// A file holding the bearer token (default: `http.bearer_token` of the pipeline given with
    /// -c, else the TRAWL_HTTP_TOKEN environment variable).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The pipeline file of the running trawl, for its `http.address` and `http.bearer_token`.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
}

/// A running trawl's monitoring API.
pub struct Api {
    pub address: String,
    token: Option<String>,
}

/// A connection to the API: TCP or a unix socket.
pub enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => s.flush(),
            Conn::Unix(s) => s.flush(),
        }
    }
}

impl Conn {
    fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(t),
            Conn::Unix(s) => s.set_read_timeout(t),
        }
    }
}

/// An answer whose head is read; the body is read from `body` (up to the connection's close).
pub struct Answer {
    pub status: u16,
    pub body: BufReader<Conn>,
}

impl Api {
    /// Resolves the address and token from the flags, the pipeline file and the environment.
    pub fn from_args(args: &ApiArgs) -> Result<Api, String> {
        let http = match &args.config {
            Some(path) => match super::load(Some(path)) {
                Ok(cfg) => Some(cfg.global.http),
                Err(errs) => {
                    let first = errs.0.first().map(|e| e.to_string()).unwrap_or_default();
                    return Err(format!("{}: {first}", path.display()));
                }
            },
            None => None,
        };
        let address = args
            .address
            .clone()
            .or_else(|| http.as_ref().map(|h| h.address.clone()))
            .unwrap_or_else(|| "127.0.0.1:5066".to_owned());
        let token = match &args.token_file {
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .map_err(|e| format!("--token-file {}: {e}", f.display()))?
                    .trim()
                    .to_owned(),
            ),
            None => http
                .and_then(|h| h.bearer_token)
                .or_else(|| std::env::var("TRAWL_HTTP_TOKEN").ok()),
        }
        .filter(|t| !t.is_empty());
        Ok(Api { address, token })
    }

    fn connect(&self) -> std::io::Result<Conn> {
        match self.address.strip_prefix("unix:") {
            Some(path) => UnixStream::connect(path).map(Conn::Unix),
            None => TcpStream::connect(&self.address).map(Conn::Tcp),
        }
    }

    /// Sends `GET target` and reads the answer's head. `read_timeout` bounds each read (none
    /// for streams, which may stay quiet for long).
    pub fn get(&self, target: &str, read_timeout: Option<Duration>) -> Result<Answer, String> {
        let mut conn = self
            .connect()
            .map_err(|e| format!("cannot reach trawl at {}: {e}", self.address))?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let auth = match &self.token {
            Some(t) => format!("Authorization: Bearer {t}\r\n"),
            None => String::new(),
        };
        write!(
            conn,
            "GET {target} HTTP/1.1\r\nHost: trawl\r\n{auth}Connection: close\r\n\r\n"
        )
        .map_err(|e| format!("{}: {e}", self.address))?;
        let mut body = BufReader::new(conn);
        let mut status_line = String::new();
        body.read_line(&mut status_line)
            .map_err(|e| format!("{}: {e}", self.address))?;
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{}: not an HTTP answer: {status_line:?}", self.address))?;
        loop {
            let mut line = String::new();
            let n = body
                .read_line(&mut line)
                .map_err(|e| format!("{}: {e}", self.address))?;
            if n == 0 || line == "\r\n" || line == "\n" {
                break;
            }
        }
        body.get_ref()
            .set_read_timeout(read_timeout)
            .map_err(|e| e.to_string())?;
        Ok(Answer { status, body })
    }

    /// `get`, reading the whole body as text; an answer other than 200 is an error that says
    /// what to do about it.
    pub fn get_text(&self, target: &str) -> Result<String, String> {
        let mut answer = self.get(target, Some(Duration::from_secs(10)))?;
        let mut text = String::new();
        answer
            .body
            .read_to_string(&mut text)
            .map_err(|e| format!("{}: {e}", self.address))?;
        match answer.status {
            200 => Ok(text),
            status => Err(self.refusal(status, &text)),
        }
    }

    /// What a non-200 answer means for the user.
    pub fn refusal(&self, status: u16, body: &str) -> String {
        match status {
            401 if self.token.is_some() => {
                format!("{} refused the bearer token given", self.address)
            }
            401 => format!(
                "{} asks for a bearer token: give --token-file, or -c with the pipeline file, or set TRAWL_HTTP_TOKEN",
                self.address
            ),
            _ => format!("{} answered {status}: {}", self.address, body.trim()),
        }
    }
}
