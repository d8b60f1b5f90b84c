//! The DNS analyzer: queries and responses over UDP (one message per datagram) and TCP (each
//! message after a 2-byte length), paired by id within their 5-tuple; an unanswered query is
//! reported after `transaction_timeout`, a response without its query as soon as it comes.

mod event;
pub mod message;

use super::analyzer::{self, AnySession, Protocol, Session, Settings, Side, Sink, Transport};
use super::section::{Connection, ProtocolConfig};
use crate::config::{ByteSize, Duration};
pub use event::DnsTx;
use message::Message;
use serde::Deserialize;

/// The `dns` section's own settings: none beyond the connection settings every protocol has.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {}

impl ProtocolConfig for DnsConfig {
    const NAME: &'static str = "dns";
    const SUMMARY: &'static str = "DNS queries and responses";
    const PORTS_HELP: &'static str =
        "Ports that carry DNS, over UDP and TCP (default 53); needs `--only dns`";
    /// Port 53; a UDP "connection" is a 5-tuple, so flows are forgotten sooner than TCP
    /// connections and need less buffer.
    fn connection_defaults() -> Connection {
        Connection {
            connection_timeout: Duration::from_secs(15),
            max_buffer_per_connection: ByteSize(64 * 1024),
            max_buffer_total: ByteSize(8 * 1024 * 1024),
            ..Connection::defaults(&[53])
        }
    }
    fn protocol(&self, connection: &Connection) -> Box<dyn Protocol> {
        Box::new(Dns::new(connection.settings()))
    }
}

/// Most queries waiting for their response on one flow; an older one is reported unanswered
/// to make room.
const MAX_PENDING: usize = 256;

/// `trawl_packet_dns_<name>_total`, moved where the session reports such a transaction.
const COUNTERS: [analyzer::Counter; 3] = [
    analyzer::Counter {
        name: "unanswered",
        help: "DNS queries reported without a response (timeout, flow closed, too many pending).",
    },
    analyzer::Counter {
        name: "unasked",
        help: "DNS responses whose query was not seen.",
    },
    analyzer::Counter {
        name: "tcp_resyncs",
        help: "DNS-over-TCP directions that found a message boundary again after a gap.",
    },
];
const UNANSWERED: usize = 0;
const UNASKED: usize = 1;
const RESYNCS: usize = 2;

/// DNS over UDP and TCP: the `dns` section of a packet input.
pub struct Dns {
    settings: Settings,
}

impl Dns {
    pub fn new(settings: Settings) -> Dns {
        Dns { settings }
    }
}

impl Protocol for Dns {
    fn name(&self) -> &'static str {
        DnsConfig::NAME
    }
    fn counters(&self) -> &'static [analyzer::Counter] {
        &COUNTERS
    }
    fn transports(&self) -> &'static [Transport] {
        &[Transport::Udp, Transport::Tcp]
    }
    fn settings(&self) -> &Settings {
        &self.settings
    }
    /// A plausible header: one question, a known opcode, the reserved Z bit clear, room for
    /// a question; over TCP after a length that fits the segment.
    fn recognize(&self, transport: Transport, payload: &[u8]) -> Option<Side> {
        let msg = match transport {
            Transport::Udp => payload,
            Transport::Tcp => {
                let len = u16::from_be_bytes([*payload.first()?, *payload.get(1)?]) as usize;
                // The segment may end inside the message, or hold the next one too (RFC 7766
                // 6.2.1.1 lets a client send its queries back to back).
                let rest = payload.get(2..)?;
                &rest[..len.min(rest.len())]
            }
        };
        let (_, flags, questions) = message::header(msg)?;
        let opcode = (flags >> 11) & 0xf;
        let plausible = questions == 1
            && matches!(opcode, 0 | 2 | 4 | 5)
            && flags & 0x0040 == 0
            && msg.len() >= 17;
        plausible.then_some(if flags & 0x8000 != 0 {
            Side::Server
        } else {
            Side::Client
        })
    }
    fn open(&self, transport: Transport, _: &analyzer::Conn) -> Box<dyn AnySession> {
        DnsSession {
            transport,
            pending: Vec::new(),
            streams: Default::default(),
        }
        .boxed()
    }
}

/// A message seen on the wire: decoded, with its capture times and size.
pub struct Seen {
    pub msg: Message,
    /// Capture time of its first and last byte.
    pub start_ns: i64,
    pub end_ns: i64,
    /// Bytes on the wire (the TCP length prefix included).
    pub bytes: u64,
}

/// One direction of a TCP connection: bytes of the message being read.
#[derive(Default)]
struct Framing {
    buf: Vec<u8>,
    /// Capture time of the first byte in `buf`.
    start_ns: i64,
    /// A gap lost the message boundaries: the bytes after it are searched for the next
    /// message (`resync`) before reading goes on.
    lost: bool,
}

/// Where the first whole, cleanly decoding message of the expected direction starts in `buf`
/// (bytes after a gap), or where a plausible one starts that is not whole yet: `(offset,
/// whole)`. RFC 7766 8: each message is a 2-byte length and the message, so a boundary is a
/// length whose message has a plausible header (the QR bit of this direction, one question
/// (RFC 7766 messages over TCP carry their question), the Z bit clear), fits a DNS message (at least a header) and decodes
/// without a damaged record. A stretch of a message's own bytes rarely passes all of that;
/// one that does is a false boundary, after which framing fails again and is counted.
fn resync(buf: &[u8], response: bool) -> Option<(usize, bool)> {
    for at in 0..buf.len().saturating_sub(13) {
        let len = u16::from_be_bytes([buf[at], buf[at + 1]]) as usize;
        let Some((_, flags, qd)) = message::header(&buf[at + 2..]) else {
            break;
        };
        let plausible = len >= 12
            && (flags & 0x8000 != 0) == response
            && qd == 1
            && flags & 0x0040 == 0
            && matches!((flags >> 11) & 0xf, 0 | 2 | 4 | 5);
        if !plausible {
            continue;
        }
        match buf.get(at + 2..at + 2 + len) {
            None => return Some((at, false)),
            Some(m) => {
                if message::parse(m).is_ok_and(|m| m.damaged.is_none()) {
                    return Some((at, true));
                }
            }
        }
    }
    None
}

struct DnsSession {
    transport: Transport,
    /// Queries waiting for their response, oldest first.
    pending: Vec<(Seen, bool)>,
    /// TCP framing, client then server.
    streams: [Framing; 2],
}

impl DnsSession {
    fn message(&mut self, bytes: &[u8], seen: (i64, i64, u64), out: &mut Sink<DnsTx>) {
        // A message whose question does not decode (a pointer loop, a label over 63 octets)
        // is still reported from its header, with what is wrong in `dns.anomalies`: dropped,
        // a query left nothing to see and a response left its query unanswered.
        let msg = match message::parse(bytes) {
            Ok(m) => m,
            Err(why) => match message::undecodable(bytes, why) {
                Some(m) => m,
                None => return out.malformed(),
            },
        };
        if msg.is_malformed() {
            // Reported with the records that decoded (a name past 255 octets cut to its
            // first characters), and counted.
            out.malformed();
        }
        let (start_ns, end_ns, size) = seen;
        let seen = Seen {
            msg,
            start_ns,
            end_ns,
            bytes: size,
        };
        if !seen.msg.is_response() {
            // A query with the id of one still waiting: the first went unanswered.
            if let Some(i) = self.pending.iter().position(|q| q.0.msg.id == seen.msg.id) {
                let (q, gap) = self.pending.remove(i);
                out.count(UNANSWERED, 1);
                out.push(DnsTx::unanswered(q, gap));
            }
            if self.pending.len() >= MAX_PENDING {
                let (q, gap) = self.pending.remove(0);
                out.count(UNANSWERED, 1);
                out.push(DnsTx::unanswered(q, gap));
            }
            self.pending.push((seen, false));
            return;
        }
        // A response without a question (mDNS, RFC 6762 6; some error responses) answers the
        // query whose name its first record has: mDNS sends every message with id 0, so the id
        // alone pairs unrelated announcements with a waiting query.
        let answers_name = |q: &Message| match (&q.question, seen.msg.answers.first()) {
            (Some((name, ..)), Some(a)) => a.name.eq_ignore_ascii_case(name),
            _ => true,
        };
        let matches = |q: &(Seen, bool)| {
            q.0.msg.id == seen.msg.id
                && match &seen.msg.question {
                    None => answers_name(&q.0.msg),
                    // A query whose question did not decode is answered by its id alone.
                    question => q.0.msg.question_damaged || q.0.msg.question == *question,
                }
        };
        match self.pending.iter().position(matches) {
            Some(i) => {
                let (q, gap) = self.pending.remove(i);
                out.push(DnsTx::answered(q, seen, gap));
            }
            None => {
                out.count(UNASKED, 1);
                out.push(DnsTx::unasked(seen))
            }
        }
    }
}

impl Session for DnsSession {
    type Tx = DnsTx;

    fn data(&mut self, side: Side, bytes: &[u8], ts: i64, out: &mut Sink<DnsTx>) {
        if self.transport == Transport::Udp {
            return self.message(bytes, (ts, ts, bytes.len() as u64), out);
        }
        let s = &mut self.streams[(side == Side::Server) as usize];
        if s.buf.is_empty() {
            s.start_ns = ts;
        }
        s.buf.extend_from_slice(bytes);
        if s.lost {
            match resync(&s.buf, side == Side::Server) {
                Some((at, whole)) => {
                    s.buf.drain(..at);
                    if !whole {
                        // Its end is still to come; one message is at most 64 KiB + 2.
                        return;
                    }
                    s.lost = false;
                    s.start_ns = ts;
                    out.count(RESYNCS, 1);
                }
                None => {
                    // No boundary yet: only the last bytes can still start one.
                    let keep = s.buf.len().min(13);
                    s.buf.drain(..s.buf.len() - keep);
                    return;
                }
            }
        }
        let mut done = Vec::new();
        let mut at = 0;
        while let [hi, lo, ..] = s.buf[at..] {
            let len = u16::from_be_bytes([hi, lo]) as usize;
            let Some(msg) = s.buf.get(at + 2..at + 2 + len) else {
                break;
            };
            done.push((msg.to_vec(), s.start_ns));
            s.start_ns = ts;
            at += 2 + len;
        }
        s.buf.drain(..at);
        for (msg, start) in done {
            let size = msg.len() as u64 + 2;
            self.message(&msg, (start, ts, size), out);
        }
    }

    /// The message boundaries are lost with the bytes: that direction looks for the next
    /// message in what follows (`resync`), and the queries waiting are tagged.
    fn gap(&mut self, side: Side, _: u32, _: &mut Sink<DnsTx>) {
        let s = &mut self.streams[(side == Side::Server) as usize];
        s.lost = true;
        s.buf = Vec::new();
        for q in &mut self.pending {
            q.1 = true;
        }
    }

    fn close(&mut self, _: i64, out: &mut Sink<DnsTx>) {
        for (q, gap) in self.pending.drain(..) {
            out.count(UNANSWERED, 1);
            out.push(DnsTx::unanswered(q, gap));
        }
    }

    fn expire(&mut self, deadline_ns: i64, out: &mut Sink<DnsTx>) {
        while self
            .pending
            .first()
            .is_some_and(|q| q.0.start_ns <= deadline_ns)
        {
            let (q, gap) = self.pending.remove(0);
            out.count(UNANSWERED, 1);
            out.push(DnsTx::unanswered(q, gap));
        }
    }

    fn expires(&self, deadline_ns: i64) -> bool {
        self.pending
            .first()
            .is_some_and(|q| q.0.start_ns <= deadline_ns)
    }
}
