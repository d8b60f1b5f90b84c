//! How an HTTP/2 connection starts on the wire: the client's preface (prior knowledge), or an
//! HTTP/1.1 request with `Upgrade: h2c` that becomes stream 1 once the server answers 101
//! (RFC 7540 §3.2); anything else stops the connection being followed.

use super::conn::{Conn, ConnStats, Phase, PREFACE};
use super::headers::Fields;
use super::transaction::{Request, Response, Transaction};
use crate::wire::analyzer::Side;

/// Longest HTTP/1.1 head read before an upgrade.
const MAX_H1_HEAD: usize = 16 * 1024;

impl Conn {
    /// Reads the start of a direction; returns the bytes used.
    pub(super) fn start(
        &mut self,
        side: Side,
        data: &[u8],
        ts: i64,
        st: &mut ConnStats,
        out: &mut Vec<Transaction>,
    ) -> usize {
        let upgrade = self.upgrade;
        let dir = self.dir(side);
        let before = dir.start.len();
        // The preface (client) or a frame (server, prior knowledge) need no HTTP/1 head.
        let first = if before > 0 { dir.start[0] } else { data[0] };
        // A server asked for an upgrade answers in HTTP/1.1 (a 101, or a refusal); one that
        // speaks HTTP/2 by prior knowledge only sends its frames instead (nginx's `http2`
        // listener: SETTINGS, then GOAWAY with last stream 0), which settle stream 1.
        let h1 = match side {
            Side::Client => first != b'P',
            Side::Server => first == b'H',
        };
        if side == Side::Client && !h1 {
            let n = (PREFACE.len() - before).min(data.len());
            dir.start.extend_from_slice(&data[..n]);
            if dir.start.len() < PREFACE.len() && PREFACE.starts_with(&dir.start) {
                return n;
            }
            if dir.start == PREFACE {
                dir.phase = Phase::Frames;
            } else {
                st.malformed += 1;
                dir.phase = Phase::Stopped;
            }
            dir.start = Vec::new();
            return n;
        }
        if !h1 {
            dir.phase = Phase::Frames;
            return 0;
        }
        // An HTTP/1.1 head: the client's upgrade request, or the server's answer to it.
        let n = data.len().min(MAX_H1_HEAD + 4 - before);
        dir.start.extend_from_slice(&data[..n]);
        let Some(end) = dir.start.windows(4).position(|w| w == b"\r\n\r\n") else {
            if dir.start.len() >= MAX_H1_HEAD {
                st.malformed += 1;
                dir.phase = Phase::Stopped;
            }
            return n;
        };
        let head = std::mem::take(&mut dir.start);
        let used = (end + 4) - before;
        let text = String::from_utf8_lossy(&head[..end]);
        match side {
            Side::Client => self.upgrade_request(&text, end + 4, ts, st),
            Side::Server => {
                let dir = self.dir(side);
                let status = text.split(' ').nth(1).unwrap_or("");
                if text.starts_with("HTTP/1.") && status == "101" {
                    dir.phase = Phase::Frames;
                    if upgrade {
                        self.switched(end + 4, ts, out);
                    }
                } else {
                    // Not upgraded: the connection stays HTTP/1.1 (the `http` decoder's).
                    st.malformed += 1;
                    dir.phase = Phase::Stopped;
                    self.client.phase = Phase::Stopped;
                    self.streams.clear();
                    self.reset_by_client.clear();
                }
            }
        }
        used
    }

    /// The 101 answers the upgrade request in HTTP/1.1 (RFC 9110 §15.2.2): that exchange is
    /// reported at once, with the HTTP/1.1 bytes so far; stream 1 keeps the request's fields for
    /// its HTTP/2 answer, and only the bytes that come after (a body still being sent).
    fn switched(&mut self, head_len: usize, ts: i64, out: &mut Vec<Transaction>) {
        let Some(s1) = self.streams.get_mut(&1) else {
            return;
        };
        out.push(Transaction {
            request: s1.request.clone(),
            response: Some(Response {
                status: Some(101),
                content_type: None,
            }),
            req_start_ns: s1.req_start_ns,
            req_end_ns: s1.req_end_ns,
            resp_start_ns: ts,
            resp_end_ns: ts,
            req_header_bytes: std::mem::take(&mut s1.req_header_bytes),
            req_body_bytes: std::mem::take(&mut s1.req_body_bytes),
            req_bytes: std::mem::take(&mut s1.req_bytes),
            resp_header_bytes: head_len as u64,
            resp_bytes: head_len as u64,
            client_done: true,
            server_done: true,
            switched: true,
            ..Default::default()
        });
    }

    /// An HTTP/1.1 request asking for `Upgrade: h2c` becomes stream 1 (RFC 7540 §3.2).
    fn upgrade_request(&mut self, text: &str, head_len: usize, ts: i64, st: &mut ConnStats) {
        let mut lines = text.split("\r\n");
        let request_line = lines.next().unwrap_or("");
        let mut parts = request_line.split(' ');
        let (method, target, version) = (parts.next(), parts.next(), parts.next());
        let mut f = Fields::default();
        let (mut h2c, mut body) = (false, 0usize);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "upgrade" => {
                    h2c |= value
                        .split(',')
                        .any(|p| p.trim().eq_ignore_ascii_case("h2c"))
                }
                "content-length" => body = value.parse().unwrap_or(0),
                _ => f.take(&name, value),
            }
        }
        let (Some(method), Some(target), Some(v)) = (method, target, version) else {
            st.malformed += 1;
            self.client.phase = Phase::Stopped;
            return;
        };
        if !h2c || !v.starts_with("HTTP/1.") {
            // Plain HTTP/1.1 on a port given to http2: not ours to decode.
            st.malformed += 1;
            self.client.phase = Phase::Stopped;
            self.server.phase = Phase::Stopped;
            return;
        }
        self.upgrade = true;
        self.last_client_stream = 1;
        let body = body.min(u32::MAX as usize);
        self.streams.insert(
            1,
            Transaction {
                stream_id: 1,
                request: Some(Request {
                    method: method.to_owned(),
                    path: target.to_owned(),
                    authority: f.authority.take(),
                    scheme: Some("http".to_owned()),
                    content_type: f.content_type.take(),
                    user_agent: f.user_agent.take(),
                }),
                req_start_ns: ts,
                req_end_ns: ts,
                req_header_bytes: head_len as u64,
                req_bytes: head_len as u64,
                client_done: body == 0,
                ..Default::default()
            },
        );
        self.client.phase = if body > 0 {
            Phase::UpgradeBody(body)
        } else {
            Phase::AwaitPreface
        };
    }
}
