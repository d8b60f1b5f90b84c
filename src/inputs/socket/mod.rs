//! The `socket` input: newline-delimited lines or JSON lines over Unix or TCP stream sockets,
//! one event per line; the receiving end of `trawl tee --forward`. Each connection is read by
//! its own task; a full pipeline pauses reading (back-pressure reaches the sender). With
//! `multiline:` lines are joined per connection, so two senders' traces never mix. A sender
//! that opens with the acknowledgement protocol's hello (`trawl tee --forward`) is told which
//! of its lines the outputs have (`acks`).

mod acks;

use super::lines::{LineInfo, LineSplitter};
use super::multiline::{self, Line, Multiline};
use super::BadLines;
use super::{BoxFuture, Input, InputContext};
use crate::config::{ByteSize, ComponentSpec, DeError};
use crate::event::{Batch, BatchAck, Event, Value};
use crate::inputs::tee::ack::HELLO;
use crate::telemetry::metrics::ComponentMetrics;
use acks::Acks;
use chrono::Utc;
use serde::Deserialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Each line is the `message`.
    #[default]
    Lines,
    /// Each line is a JSON object whose keys become the event's fields (`message`, `stream`...);
    /// a line that is not an object is kept as `message`, tagged and counted as an error.
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `unix:/path/to.sock` or `tcp:HOST:PORT` (also plain `HOST:PORT`).
    pub address: String,
    #[serde(default)]
    pub format: Format,
    /// Longer lines are cut to this size and flagged `log.flags: [truncated]`.
    #[serde(default = "default_max_line")]
    pub max_line_bytes: ByteSize,
    /// Most connections served at once; more wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed, so that idle clients cannot
    /// hold every slot (`0`: never). `trawl tee --forward` reconnects by itself.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: crate::config::Duration,
    /// Joins the lines of one event (stack traces) per connection, as the file input's
    /// `multiline`; `format: lines` only.
    #[serde(default)]
    pub multiline: Option<multiline::Config>,
    /// Unix sockets: the socket file's permissions, in octal (`"0660"`: its owner and group may
    /// connect, which takes write access). Default: what the umask leaves. Set where the
    /// senders run as other users of a shared group (a pod's `fsGroup`), instead of a shell's
    /// `umask`: a shell between the container runtime and trawl loses trawl's capabilities.
    #[serde(default)]
    pub socket_mode: Option<String>,
}

fn default_idle_timeout() -> crate::config::Duration {
    crate::config::Duration::from_secs(300)
}

fn default_max_line() -> ByteSize {
    ByteSize(1 << 20)
}

fn default_max_connections() -> usize {
    256
}

enum Address {
    Unix(std::path::PathBuf),
    Tcp(String),
}

pub struct Socket {
    config: Config,
    address: Address,
    multiline: Option<Multiline>,
    /// `socket_mode`, read.
    mode: Option<u32>,
}

pub fn build(spec: &ComponentSpec) -> Result<Socket, DeError> {
    let config: Config = crate::config::from_node(&spec.node, &spec.path)?;
    super::check_line_limit(spec, "max_line_bytes", config.max_line_bytes)?;
    if config.max_connections == 0 {
        return Err(DeError::new(
            "expected at least 1 (with 0 no sender could ever connect)",
            spec.node
                .get("max_connections")
                .map_or(spec.mark, |n| n.mark),
            &format!("{}.max_connections", spec.path),
        ));
    }
    let address = if let Some(p) = config.address.strip_prefix("unix:") {
        Address::Unix(p.into())
    } else {
        Address::Tcp(
            config
                .address
                .strip_prefix("tcp:")
                .unwrap_or(&config.address)
                .to_owned(),
        )
    };
    if let Err(why) = check_address(&address) {
        return Err(DeError {
            message: format!(
                "`{}`: {why}; expected `unix:/path/to.sock` or `tcp:HOST:PORT`",
                config.address
            ),
            mark: spec.node.get("address").map(|n| n.mark),
            path: Some(format!("{}.address", spec.path)),
            also: Vec::new(),
        });
    }
    let multiline = multiline::for_input(config.multiline.as_ref(), spec)?;
    if multiline.is_some() && config.format == Format::Json {
        return Err(DeError {
            message: "`multiline` joins raw lines: it needs `format: lines` (a JSON sender sends one object per event)".into(),
            mark: spec.node.get("multiline").map(|n| n.mark),
            path: Some(format!("{}.multiline", spec.path)),
            also: Vec::new(),
        });
    }
    let mode = match &config.socket_mode {
        None => None,
        Some(text) => {
            let at = |message: String| DeError {
                message,
                mark: spec.node.get("socket_mode").map(|n| n.mark),
                path: Some(format!("{}.socket_mode", spec.path)),
                also: Vec::new(),
            };
            if !matches!(address, Address::Unix(_)) {
                return Err(at("`socket_mode` is for `unix:` addresses only".into()));
            }
            match u32::from_str_radix(text.trim_start_matches("0o"), 8) {
                Ok(m) if m <= 0o777 => Some(m),
                _ => {
                    return Err(at(format!(
                        "`{text}` is not a mode: expected octal permissions in quotes, such as \"0660\""
                    )))
                }
            }
        }
    };
    Ok(Socket {
        config,
        address,
        multiline,
        mode,
    })
}

/// What `bind` would refuse, found when the file is checked rather than when the input starts
/// (and, on a reload, after the input it replaces has already stopped).
fn check_address(address: &Address) -> Result<(), String> {
    match address {
        Address::Unix(p) => {
            // `sun_path` holds 108 bytes with the terminating NUL.
            let len = p.as_os_str().len();
            if len == 0 {
                Err("the socket path is empty".into())
            } else if len > 107 {
                Err(format!(
                    "the socket path is {len} bytes, Unix sockets allow at most 107"
                ))
            } else {
                Ok(())
            }
        }
        Address::Tcp(addr) => {
            let Some((host, port)) = addr.rsplit_once(':') else {
                return Err("no port".into());
            };
            if port.parse::<u16>().is_err() {
                return Err(format!("`{port}` is not a port (0 to 65535)"));
            }
            let bracketed = host.len() >= 2 && host.starts_with('[') && host.ends_with(']');
            if host.is_empty() {
                Err("no host (`0.0.0.0` listens on every interface)".into())
            } else if host.contains(':') && !bracketed {
                Err(format!(
                    "`{host}` is not a host (an IPv6 address goes in brackets; only unix: and tcp: are known)"
                ))
            } else {
                Ok(())
            }
        }
    }
}

impl Input for Socket {
    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<anyhow::Result<()>> {
        Box::pin(async move {
            let ctx = Arc::new(ctx);
            let limit = Arc::new(tokio::sync::Semaphore::new(
                self.config.max_connections.max(1),
            ));
            // Said once for the input, not once per connection.
            let bad_lines = Arc::new(BadLines::default());
            match &self.address {
                Address::Unix(path) => {
                    remove_stale_socket(path)?;
                    let listener = tokio::net::UnixListener::bind(path).map_err(|e| {
                        anyhow::anyhow!("cannot listen on unix:{}: {e}", path.display())
                    })?;
                    if let Some(mode) = self.mode {
                        use std::os::unix::fs::PermissionsExt;
                        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                            .map_err(|e| {
                                anyhow::anyhow!(
                                    "cannot give unix:{} the mode {mode:o}: {e}",
                                    path.display()
                                )
                            })?;
                    }
                    // What this process created; only that is removed at exit, never a socket
                    // another trawl bound at the same path meanwhile.
                    let created = file_id(path);
                    tracing::info!(input = %ctx.name, address = %format!("unix:{}", path.display()), "listening");
                    let accepted = accept_loop(
                        || async { listener.accept().await.map(|(s, _)| s) },
                        &limit,
                        &self.config,
                        self.multiline.as_ref(),
                        &ctx,
                        &bad_lines,
                    )
                    .await;
                    if created.is_some() && file_id(path) == created {
                        let _ = std::fs::remove_file(path);
                    }
                    accepted?;
                }
                Address::Tcp(addr) => {
                    let listener = tokio::net::TcpListener::bind(addr)
                        .await
                        .map_err(|e| anyhow::anyhow!("cannot listen on tcp:{addr}: {e}"))?;
                    tracing::info!(input = %ctx.name, address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "listening");
                    accept_loop(
                        || async { listener.accept().await.map(|(s, _)| s) },
                        &limit,
                        &self.config,
                        self.multiline.as_ref(),
                        &ctx,
                        &bad_lines,
                    )
                    .await?;
                }
            }
            Ok(())
        })
    }
}

/// Device and inode of a path, to recognise the socket file this process made.
fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Removes a socket file left by a process that is gone (bind would fail on it), and refuses
/// to take over one that a live process still listens on: that would silently steal its
/// senders, and its exit would then delete our socket.
pub(crate) fn remove_stale_socket(path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if !is_socket {
        return Ok(());
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(anyhow::anyhow!(
            "cannot listen on unix:{}: another process is listening on it (a second trawl?); stop it or choose another path",
            path.display()
        )),
        Err(_) => {
            let _ = std::fs::remove_file(path);
            Ok(())
        }
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

fn event_of(
    line: &[u8],
    info: LineInfo,
    format: Format,
    ctx: &InputContext,
    bad_lines: &BadLines,
) -> Option<Event> {
    if line.is_empty() && !info.truncated {
        return None;
    }
    let now = Utc::now();
    let mut event = match format {
        Format::Json if !info.truncated => {
            match serde_json::from_slice::<serde_json::Value>(line) {
                Ok(v @ serde_json::Value::Object(_)) => {
                    let mut e = Event::new(ctx.name.clone(), now);
                    if let Value::Object(m) = Value::from_json(v) {
                        for (k, v) in m.iter() {
                            e.fields.insert(k.clone(), v.clone());
                        }
                    }
                    // A sender's time (tee's read time) stays a timestamp, not text. One that
                    // cannot be read is replaced by the arrival time, visibly: tagged, and the
                    // sender's text kept in `error.message`.
                    let bad = match e.fields.get("@timestamp") {
                        Some(Value::Timestamp(_)) => None,
                        None => Some(None),
                        Some(Value::String(t)) => match chrono::DateTime::parse_from_rfc3339(t) {
                            Ok(t) => {
                                let t = Value::Timestamp(t.with_timezone(&Utc));
                                e.fields.insert("@timestamp", t);
                                None
                            }
                            Err(_) => Some(Some(format!("\"{t}\""))),
                        },
                        Some(other) => Some(Some(other.to_json().to_string())),
                    };
                    if let Some(unreadable) = bad {
                        e.fields.insert("@timestamp", Value::Timestamp(now));
                        if let Some(given) = unreadable {
                            ctx.metrics.errors.fetch_add(1, Ordering::Relaxed);
                            e.insert(
                                "error.message",
                                Value::from(format!(
                                    "invalid @timestamp {given}: expected RFC 3339; replaced by the arrival time"
                                )),
                            );
                            e.add_tag("_timestamp_parse_failure");
                        }
                    }
                    e
                }
                other => {
                    let why = match other {
                        Err(e) => format!("not JSON: {e}"),
                        Ok(v) => format!("a JSON {}, not an object", json_kind(&v)),
                    };
                    bad_lines.not_json_object(ctx, info.start, &why);
                    let mut e = Event::from_message(
                        ctx.name.clone(),
                        now,
                        String::from_utf8_lossy(line).into_owned(),
                    );
                    // As the `json` processor marks what it cannot decode: findable downstream,
                    // not only counted.
                    e.add_tag("_json_parse_failure");
                    e.insert("error.message", Value::from(why));
                    e
                }
            }
        }
        _ => {
            let (line, replaced) = Line::decoded(line, info);
            if replaced {
                bad_lines.replaced(ctx, info.start);
            }
            Event::from_message(ctx.name.clone(), now, line.text)
        }
    };
    if info.truncated {
        event.insert("log.flags", Value::Array(vec![Value::from("truncated")]));
    }
    Some(event)
}

/// Reads one connection to its end, emitting a batch after each read.
/// Accepts connections (Unix or TCP alike) until shutdown, at most `limit` served at once.
async fn accept_loop<S, F, Fut>(
    mut accept: F,
    limit: &Arc<tokio::sync::Semaphore>,
    cfg: &Config,
    multiline: Option<&Multiline>,
    ctx: &Arc<InputContext>,
    bad_lines: &Arc<BadLines>,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<S>>,
{
    let mut shutdown = ctx.shutdown.clone();
    let mut full_logged = false;
    loop {
        if limit.available_permits() == 0 && !full_logged {
            full_logged = true;
            tracing::warn!(input = %ctx.name, max_connections = cfg.max_connections, idle_timeout = ?cfg.idle_timeout.std(), "connection limit reached: new senders wait until a connection ends or is idle for idle_timeout (logged once)");
        }
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => p?,
            _ = shutdown.wait() => return connections_ended(limit, cfg).await,
        };
        tokio::select! {
            r = accept() => match r {
                Ok(stream) => {
                    let ctx = ctx.clone();
                    let cfg = cfg.clone();
                    // A clone starts empty: each connection joins its own lines.
                    let joiner = multiline.cloned();
                    let bad_lines = bad_lines.clone();
                    tokio::spawn(async move { serve(stream, &cfg, joiner, &ctx, &bad_lines).await; drop(permit); });
                }
                Err(e) => tracing::warn!(input = %ctx.name, error = %e, "accept failed"),
            },
            _ = shutdown.wait() => {
                drop(permit);
                return connections_ended(limit, cfg).await;
            }
        }
    }
}

/// Waits for every connection to end: each stops reading at shutdown, sends what it read and,
/// for a sender that asked for acknowledgements, tells it what the outputs delivered before
/// the pipeline's drain deadline.
async fn connections_ended(
    limit: &Arc<tokio::sync::Semaphore>,
    cfg: &Config,
) -> anyhow::Result<()> {
    let all = u32::try_from(cfg.max_connections.max(1)).unwrap_or(u32::MAX);
    let _ = limit.acquire_many(all).await;
    Ok(())
}

/// Events read from a connection and not yet sent, each with the connection offset just past
/// its last line.
#[derive(Default)]
struct Taken {
    events: Vec<Event>,
    ends: Vec<u64>,
}

impl Taken {
    fn push(&mut self, event: Option<Event>, end: u64) {
        if let Some(e) = event {
            self.events.push(e);
            self.ends.push(end);
        }
    }
}

/// One line of a connection: an event, or a part of the event its joiner is building.
fn take_line(
    line: &[u8],
    info: LineInfo,
    cfg: &Config,
    joiner: &mut Option<Multiline>,
    taken: &mut Taken,
    ctx: &InputContext,
    bad_lines: &BadLines,
) {
    let Some(m) = joiner.as_mut() else {
        taken.push(event_of(line, info, cfg.format, ctx, bad_lines), info.end);
        return;
    };
    let (line, replaced) = Line::decoded(line, info);
    if replaced {
        bad_lines.replaced(ctx, info.start);
    }
    m.push(line, std::time::Instant::now(), &mut |l| {
        let end = l.end;
        taken.push(joined_event(l, ctx), end)
    });
}

fn joined_event(line: Line, ctx: &InputContext) -> Option<Event> {
    if line.text.is_empty() && !line.truncated {
        return None;
    }
    let flags = multiline::flags(&line);
    let mut event = Event::from_message(ctx.name.clone(), Utc::now(), line.text);
    if let Some(flags) = flags {
        event.insert("log.flags", flags);
    }
    Some(event)
}

async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

/// Where everything read so far is taken into events or skipped: the offset before the
/// unfinished line and before the lines a joiner holds.
fn covered(splitter: &LineSplitter, joiner: &Option<Multiline>) -> u64 {
    let read = splitter.position() - splitter.pending() as u64;
    match joiner.as_ref().and_then(Multiline::pending_start) {
        Some(held) => read.min(held),
        None => read,
    }
}

/// Sends what was taken in batches of at most `batch_size`; with acknowledgements, the last
/// batch covers the connection up to `covered` (also when it is empty: skipped lines are
/// acknowledged too). False when the pipeline is gone.
async fn send(
    taken: &mut Taken,
    covered: u64,
    acks: Option<&mut (Acks, u64)>,
    ctx: &InputContext,
) -> bool {
    let Some((acks, sent_upto)) = acks else {
        while !taken.events.is_empty() {
            let take = taken.events.len().min(ctx.batch_size.max(1));
            let rest = taken.events.split_off(take);
            let batch = std::mem::replace(&mut taken.events, rest);
            let ack = BatchAck::lost_if_failed(&ctx.metrics, batch.len(), None);
            if ctx.emit(Batch::new(batch, ack)).await.is_err() {
                return false;
            }
        }
        taken.ends.clear();
        return true;
    };
    while !taken.events.is_empty() || covered > *sent_upto {
        let take = taken.events.len().min(ctx.batch_size.max(1));
        let rest = taken.events.split_off(take);
        let batch = std::mem::replace(&mut taken.events, rest);
        let ends = taken.ends.split_off(take);
        let end = if ends.is_empty() {
            covered
        } else {
            taken.ends.last().copied().unwrap_or(covered)
        };
        taken.ends = ends;
        *sent_upto = end.max(*sent_upto);
        let ack = acks.track(end);
        if ctx.emit(Batch::new(batch, ack)).await.is_err() {
            return false;
        }
    }
    true
}

async fn failed(acks: &Option<(Acks, u64)>) {
    match acks {
        Some((a, _)) => a.failed().await,
        None => std::future::pending().await,
    }
}

/// Reads one connection to its end. A sender whose first bytes are the acknowledgement
/// protocol's hello gets its lines acknowledged once the outputs have them; others are read as
/// plain lines, and nothing is ever written to them.
async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    cfg: &Config,
    mut joiner: Option<Multiline>,
    ctx: &InputContext,
    bad_lines: &BadLines,
) {
    let (mut reader, writer) = tokio::io::split(stream);
    let mut writer = Some(writer);
    let mut splitter = LineSplitter::new(cfg.max_line_bytes.as_usize(), 0);
    let mut buf = vec![0u8; 64 * 1024];
    let mut taken = Taken::default();
    let mut shutdown = ctx.shutdown.clone();
    let idle = cfg.idle_timeout.positive();
    // The first bytes, until they tell whether the sender said hello.
    let mut head: Option<Vec<u8>> = Some(Vec::new());
    // With acknowledgements: the connection's, and the offset the last batch covered.
    let mut acks: Option<(Acks, u64)> = None;
    let mut stopped = false;
    loop {
        let due = joiner.as_ref().and_then(|m| m.deadline());
        let read = async {
            match idle {
                Some(d) => tokio::time::timeout(d, reader.read(&mut buf)).await,
                None => Ok(reader.read(&mut buf).await),
            }
        };
        let n = tokio::select! {
            r = read => match r {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    tracing::debug!(input = %ctx.name, error = %e, "connection read failed");
                    0
                }
                // A sender waiting for acknowledgements is not idle.
                Err(_) if acks.as_ref().is_some_and(|(a, _)| a.pending()) => continue,
                Err(_) => {
                    tracing::debug!(input = %ctx.name, "closing a connection idle for idle_timeout");
                    0
                }
            },
            // The sender is quiet while an event waits for more lines: sent after `timeout`.
            _ = sleep_until(due), if due.is_some() => {
                if let Some(m) = joiner.as_mut() {
                    m.flush_if_due(std::time::Instant::now(), &mut |l| {
                        let end = l.end;
                        taken.push(joined_event(l, ctx), end)
                    });
                }
                if !send(&mut taken, covered(&splitter, &joiner), acks.as_mut(), ctx).await {
                    return;
                }
                continue;
            }
            // Dropping the connection unacknowledged: the sender sends it all again.
            _ = failed(&acks) => return,
            _ = shutdown.wait() => {
                stopped = true;
                0
            }
        };
        let mut data = &buf[..n];
        let first;
        if let Some(h) = head.as_mut() {
            h.extend_from_slice(data);
            let said_hello = h.starts_with(HELLO);
            if n > 0 && !said_hello && HELLO.starts_with(h) {
                continue; // Too few bytes yet to tell.
            }
            if said_hello {
                if let Some(w) = writer.take() {
                    acks = Some((Acks::start(w, ctx.name.clone()), 0));
                }
            }
            first = head.take().unwrap_or_default();
            data = &first;
        }
        if data.is_empty() && n == 0 {
            break;
        }
        ComponentMetrics::add(&ctx.metrics.bytes_in, data.len() as u64);
        splitter.push(data, &mut |l, i| {
            take_line(l, i, cfg, &mut joiner, &mut taken, ctx, bad_lines)
        });
        if !send(&mut taken, covered(&splitter, &joiner), acks.as_mut(), ctx).await {
            return;
        }
        if n == 0 {
            break;
        }
    }
    // At a shutdown, an acknowledging sender sends its unfinished line and the lines being
    // joined again, whole, to the next trawl; cut here they would arrive in two pieces.
    if !(stopped && acks.is_some()) {
        splitter.finish(&mut |l, i| take_line(l, i, cfg, &mut joiner, &mut taken, ctx, bad_lines));
        if let Some(m) = joiner.as_mut() {
            m.flush(&mut |l| {
                let end = l.end;
                taken.push(joined_event(l, ctx), end)
            });
        }
    }
    let end = covered(&splitter, &joiner);
    if !send(&mut taken, end, acks.as_mut(), ctx).await {
        return;
    }
    if let Some((a, _)) = acks {
        a.finish().await;
    }
}
