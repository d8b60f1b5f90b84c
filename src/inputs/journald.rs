//! The `journald` input: the systemd journal, for hosts where nothing is written to
//! /var/log/syslog (Debian 12's default). It follows `journalctl --output=json` as a child
//! process (as Filebeat's journald input does), so no libsystemd is linked into trawl.
//!
//! The cursor of the last entry every output has acknowledged is kept crash-safely under
//! `data_dir/registry/`, like file offsets: after a crash or restart reading resumes after it
//! (at least once). A batch an output gives up on stops reading; after a back-off the journal
//! is read again from the committed cursor, so nothing is skipped.

use super::lines::{LineInfo, LineSplitter};
use super::{BoxFuture, Input, InputContext};
use crate::config::{ByteSize, ComponentSpec, DeError};
use crate::event::{AckTracker, Batch, BatchStatus, Event, Value};
use crate::inputs::file::registry::write_atomic;
use crate::telemetry::metrics::ComponentMetrics;
use chrono::{TimeZone, Utc};
use serde::Deserialize;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio::process::{Child, Command};

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// The whole journal kept on disk.
    Beginning,
    /// Entries written from now on.
    #[default]
    End,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A journal folder (`/var/log/journal`, a container's mount); default: the system journal.
    #[serde(default)]
    pub directory: Option<PathBuf>,
    /// Journal files to read instead of a folder.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// Only these units (`_SYSTEMD_UNIT`, `ssh.service`); several are OR'd.
    #[serde(default)]
    pub units: Vec<String>,
    /// Only these syslog identifiers (`SYSLOG_IDENTIFIER`, `sshd`); several are OR'd.
    #[serde(default)]
    pub identifiers: Vec<String>,
    /// Raw `FIELD=value` matches as journalctl takes them (`+` between groups means OR).
    #[serde(default)]
    pub matches: Vec<String>,
    /// Where to start when there is no saved cursor (first start only).
    #[serde(default)]
    pub start_at: StartAt,
    /// The journalctl program.
    #[serde(default = "default_journalctl")]
    pub journalctl: PathBuf,
    /// Entries longer than this (as JSON) are skipped, counted and logged once.
    #[serde(default = "default_max_entry")]
    pub max_entry_bytes: ByteSize,
    /// Most batches sent and not yet acknowledged; reading pauses beyond.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight_batches: u64,
}

fn default_journalctl() -> PathBuf {
    PathBuf::from("journalctl")
}

fn default_max_entry() -> ByteSize {
    ByteSize(4 << 20)
}

fn default_max_in_flight() -> u64 {
    16
}

pub struct Journald {
    config: Config,
    cursor_path: PathBuf,
}

pub fn build(spec: &ComponentSpec, data_dir: &std::path::Path) -> Result<Journald, DeError> {
    let config: Config = crate::config::from_node(&spec.node, &spec.path)?;
    if config.directory.is_some() && !config.files.is_empty() {
        return Err(DeError::new(
            "`directory` and `files` are exclusive: choose one",
            spec.mark,
            &format!("{}.files", spec.path),
        ));
    }
    if let Some(bad) = config
        .matches
        .iter()
        .find(|m| *m != "+" && !m.contains('='))
    {
        return Err(DeError::new(
            format!("`{bad}` is not a match: expected `FIELD=value` or `+`"),
            spec.mark,
            &format!("{}.matches", spec.path),
        ));
    }
    if config.max_in_flight_batches == 0 {
        return Err(DeError::new(
            "expected at least 1",
            spec.mark,
            &format!("{}.max_in_flight_batches", spec.path),
        ));
    }
    Ok(Journald {
        cursor_path: data_dir
            .join("registry")
            .join(format!("journald-{}.cursor", escaped(&spec.name))),
        config,
    })
}

/// A file name for any input name that never collides with another's (as the file registry).
fn escaped(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!(".{b:02x}"));
        }
    }
    out
}

impl Input for Journald {
    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<anyhow::Result<()>> {
        Box::pin(async move { self.run_loop(ctx).await })
    }
}

/// How one journalctl session ended.
enum End {
    /// Shutdown asked, or the pipeline is gone.
    Stop,
    /// journalctl failed, or an output gave up on a batch: read again from the cursor.
    Retry(String),
}

impl Journald {
    async fn run_loop(self, mut ctx: InputContext) -> anyhow::Result<()> {
        if let Some(parent) = self.cursor_path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut committed = std::fs::read_to_string(&self.cursor_path)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        // `start_at` applies to the very first start only; after that, a restart resumes
        // from the cursor, and without one (nothing acknowledged yet) from the beginning, so
        // that what was written while trawl was down is not skipped.
        let mut from_end = committed.is_none()
            && !self.cursor_path.exists()
            && self.config.start_at == StartAt::End;
        if from_end {
            // Marks "started once" so that a crash before the first acknowledgement does not
            // skip what came in between.
            write_atomic(&self.cursor_path, b"")?;
        }
        let tracker = AckTracker::for_input(ctx.metrics.clone());
        let mut backoff = Duration::from_secs(1);
        let mut logged = false;
        loop {
            if ctx.shutdown.is_triggered() {
                return Ok(());
            }
            let started = std::time::Instant::now();
            match self
                .session(&mut ctx, &tracker, &mut committed, from_end)
                .await
            {
                End::Stop => return Ok(()),
                End::Retry(why) => {
                    ctx.metrics.errors.fetch_add(1, Ordering::Relaxed);
                    if started.elapsed() > Duration::from_secs(60) {
                        backoff = Duration::from_secs(1);
                    }
                    if !logged {
                        logged = true;
                        tracing::warn!(input = %ctx.name, error = %why, retry_in = ?backoff,
                            "journal reading stopped; reading again from the last acknowledged entry (logged once; counted in trawl_errors_total)");
                    }
                    // A session that read nothing started from the end; once something was
                    // acknowledged the cursor takes over.
                    from_end = from_end && committed.is_none();
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = ctx.shutdown.wait() => return Ok(()),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    fn command(&self, committed: Option<&str>, from_end: bool) -> Command {
        let mut cmd = Command::new(&self.config.journalctl);
        cmd.args([
            "--output=json",
            "--follow",
            "--all",
            "--no-pager",
            "--quiet",
        ]);
        if let Some(dir) = &self.config.directory {
            cmd.arg(format!("--directory={}", dir.display()));
        }
        for f in &self.config.files {
            cmd.arg(format!("--file={}", f.display()));
        }
        match committed {
            Some(c) => {
                cmd.arg(format!("--after-cursor={c}"));
                cmd.arg("--no-tail");
            }
            None if from_end => {
                cmd.arg("--lines=0");
            }
            None => {
                cmd.arg("--no-tail");
            }
        }
        for u in &self.config.units {
            cmd.arg(format!("_SYSTEMD_UNIT={u}"));
        }
        for i in &self.config.identifiers {
            cmd.arg(format!("SYSLOG_IDENTIFIER={i}"));
        }
        cmd.args(&self.config.matches);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    async fn session(
        &self,
        ctx: &mut InputContext,
        tracker: &AckTracker,
        committed: &mut Option<String>,
        from_end: bool,
    ) -> End {
        let mut child = match self.command(committed.as_deref(), from_end).spawn() {
            Ok(c) => c,
            Err(e) => {
                return End::Retry(format!(
                    "cannot run {}: {e}",
                    self.config.journalctl.display()
                ))
            }
        };
        let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return End::Retry("journalctl started without pipes".into());
        };
        // The last lines journalctl wrote on stderr, for the log when it fails.
        let (err_tx, mut err_rx) = tokio::sync::watch::channel(String::new());
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = err_tx.send(line);
            }
        });

        let mut splitter = LineSplitter::new(self.config.max_entry_bytes.as_usize(), 0);
        let mut buf = vec![0u8; 64 * 1024];
        let mut batch: Vec<Event> = Vec::with_capacity(ctx.batch_size);
        let mut batch_cursor: Option<String> = None;
        // Cursor of the last entry of each batch in flight, by sequence number.
        let mut in_flight: VecDeque<(u64, String)> = VecDeque::new();
        let mut oversize_logged = false;
        let mut bad_logged = false;
        let mut reading = true;
        let mut failure: Option<String> = None;
        let flush_every = Duration::from_millis(100);
        let mut flush_at: Option<tokio::time::Instant> = None;

        loop {
            let room = tracker.pending() < self.config.max_in_flight_batches;
            tokio::select! {
                biased;
                _ = ctx.shutdown.wait(), if reading => {
                    reading = false;
                    let _ = child.start_kill();
                    if !self.send(ctx, tracker, &mut batch, &mut batch_cursor, &mut in_flight).await {
                        return End::Stop;
                    }
                    flush_at = None;
                }
                acked = tracker.next() => {
                    self.settle(&acked, &mut in_flight, committed, &mut failure, ctx);
                    if failure.is_some() && reading {
                        reading = false;
                        let _ = child.start_kill();
                        batch.clear();
                        batch_cursor = None;
                    }
                }
                _ = sleep_until(flush_at), if flush_at.is_some() && reading => {
                    flush_at = None;
                    if !self.send(ctx, tracker, &mut batch, &mut batch_cursor, &mut in_flight).await {
                        return End::Stop;
                    }
                }
                n = stdout.read(&mut buf), if reading && room => {
                    let n = match n {
                        Ok(n) => n,
                        Err(e) => {
                            failure.get_or_insert(format!("reading journalctl: {e}"));
                            0
                        }
                    };
                    if n == 0 {
                        reading = false;
                        if !self.send(ctx, tracker, &mut batch, &mut batch_cursor, &mut in_flight).await {
                            return End::Stop;
                        }
                        if !ctx.shutdown.is_triggered() {
                            let status = wait_exit(&mut child).await;
                            let last = err_rx.borrow_and_update().clone();
                            failure.get_or_insert(format!("journalctl ended ({status}): {last}"));
                        }
                    }
                    let mut full = false;
                    splitter.push(&buf[..n], &mut |line: &[u8], info: LineInfo| {
                        ComponentMetrics::add(&ctx.metrics.bytes_in, info.end - info.start);
                        if info.truncated {
                            ctx.metrics.errors.fetch_add(1, Ordering::Relaxed);
                            if !oversize_logged {
                                oversize_logged = true;
                                tracing::warn!(input = %ctx.name, max_entry_bytes = self.config.max_entry_bytes.as_usize(),
                                    "journal entry longer than max_entry_bytes skipped (logged once; counted in trawl_errors_total)");
                            }
                            return;
                        }
                        match entry_event(line, &ctx.name) {
                            Some((event, cursor)) => {
                                batch.push(event);
                                batch_cursor = Some(cursor);
                            }
                            None => {
                                ctx.metrics.errors.fetch_add(1, Ordering::Relaxed);
                                if !bad_logged {
                                    bad_logged = true;
                                    tracing::warn!(input = %ctx.name, entry = %String::from_utf8_lossy(&line[..line.len().min(200)]),
                                        "journalctl wrote an entry that is not a JSON object with __CURSOR; skipped (logged once; counted in trawl_errors_total)");
                                }
                            }
                        }
                        full |= batch.len() >= ctx.batch_size;
                    });
                    if full {
                        flush_at = None;
                        if !self.send(ctx, tracker, &mut batch, &mut batch_cursor, &mut in_flight).await {
                            return End::Stop;
                        }
                    } else if !batch.is_empty() && flush_at.is_none() {
                        flush_at = Some(tokio::time::Instant::now() + flush_every);
                    }
                }
            }
            if !reading && tracker.pending() == 0 {
                return match failure {
                    _ if ctx.shutdown.is_triggered() => End::Stop,
                    Some(why) => End::Retry(why),
                    None => End::Retry("journalctl ended".into()),
                };
            }
        }
    }

    /// Sends the batch being built with an acknowledgement handle; false when the pipeline is
    /// gone.
    async fn send(
        &self,
        ctx: &InputContext,
        tracker: &AckTracker,
        batch: &mut Vec<Event>,
        cursor: &mut Option<String>,
        in_flight: &mut VecDeque<(u64, String)>,
    ) -> bool {
        let Some(c) = cursor.take() else {
            return true;
        };
        let events = std::mem::replace(batch, Vec::with_capacity(ctx.batch_size));
        let (seq, ack) = tracker.track();
        in_flight.push_back((seq, c));
        ctx.emit(Batch::new(events, ack)).await.is_ok()
    }

    /// Moves the committed cursor past every batch settled in order; stops at a failed one.
    fn settle(
        &self,
        acked: &[crate::event::Acked],
        in_flight: &mut VecDeque<(u64, String)>,
        committed: &mut Option<String>,
        failure: &mut Option<String>,
        ctx: &InputContext,
    ) {
        let mut moved = false;
        for a in acked {
            let Some(pos) = in_flight.iter().position(|(s, _)| *s == a.seq) else {
                continue;
            };
            let Some((_, cursor)) = in_flight.remove(pos) else {
                continue;
            };
            if failure.is_some() {
                continue;
            }
            match a.status {
                BatchStatus::Delivered | BatchStatus::Rejected => {
                    *committed = Some(cursor);
                    moved = true;
                }
                BatchStatus::Failed => {
                    *failure = Some("an output gave up on a batch".into());
                }
            }
        }
        if moved {
            if let Some(c) = committed.as_deref() {
                if let Err(e) = write_atomic(&self.cursor_path, c.as_bytes()) {
                    ctx.metrics.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(input = %ctx.name, path = %self.cursor_path.display(), error = %e,
                        "cannot save the journal cursor; a restart may read entries again");
                }
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn wait_exit(child: &mut Child) -> String {
    match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
        Ok(Ok(s)) => s.to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "still running".into(),
    }
}

/// Syslog severities by PRIORITY (RFC 5424).
const SEVERITIES: [&str; 8] = [
    "emergency",
    "alert",
    "critical",
    "error",
    "warning",
    "notice",
    "informational",
    "debug",
];

/// journald fields and where they go (ECS where it has a name; `systemd.*` otherwise).
const MAPPED: &[(&str, &str, bool)] = &[
    // (journal field, event path, integer)
    ("SYSLOG_IDENTIFIER", "log.syslog.appname", false),
    ("SYSLOG_FACILITY", "log.syslog.facility.code", true),
    ("SYSLOG_PID", "log.syslog.procid", false),
    ("_PID", "process.pid", true),
    ("_COMM", "process.name", false),
    ("_EXE", "process.executable", false),
    ("_CMDLINE", "process.command_line", false),
    ("_UID", "user.id", false),
    ("_GID", "user.group.id", false),
    ("_SYSTEMD_UNIT", "systemd.unit", false),
    ("_SYSTEMD_USER_UNIT", "systemd.user_unit", false),
    ("_SYSTEMD_SLICE", "systemd.slice", false),
    ("_SYSTEMD_CGROUP", "systemd.cgroup", false),
    ("_TRANSPORT", "systemd.transport", false),
    ("_HOSTNAME", "host.hostname", false),
    ("_MACHINE_ID", "host.id", false),
    ("_BOOT_ID", "host.boot.id", false),
    ("CONTAINER_NAME", "container.name", false),
    ("CONTAINER_ID_FULL", "container.id", false),
    ("CONTAINER_TAG", "container.image.tag", false),
    ("CODE_FILE", "log.origin.file.name", false),
    ("CODE_LINE", "log.origin.file.line", true),
    ("CODE_FUNC", "log.origin.function", false),
];

/// A journal field's value: text, or (for binary fields) an array of bytes journalctl prints
/// as numbers; a field given several times is an array of those.
fn field_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(items) if items.iter().all(|i| i.is_u64()) => {
            let bytes: Vec<u8> = items
                .iter()
                .filter_map(|i| i.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        serde_json::Value::Array(items) => items.first().and_then(field_text),
        _ => None,
    }
}

/// One journal entry as an event, with its cursor.
fn entry_event(line: &[u8], input: &std::sync::Arc<str>) -> Option<(Event, String)> {
    let serde_json::Value::Object(mut fields) = serde_json::from_slice(line).ok()? else {
        return None;
    };
    let cursor = fields.remove("__CURSOR").as_ref().and_then(field_text)?;
    let time = fields
        .get("__REALTIME_TIMESTAMP")
        .and_then(field_text)
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|us| Utc.timestamp_micros(us).single())
        .unwrap_or_else(Utc::now);
    let message = fields
        .remove("MESSAGE")
        .as_ref()
        .and_then(field_text)
        .unwrap_or_default();
    let mut event = Event::from_message(input.clone(), time, message);
    event.insert("input.type", Value::from("journald"));
    if let Some(p) = fields
        .get("PRIORITY")
        .and_then(field_text)
        .and_then(|p| p.parse::<usize>().ok())
    {
        event.insert("log.syslog.severity.code", Value::Int(p as i64));
        if let Some(name) = SEVERITIES.get(p) {
            event.insert("log.syslog.severity.name", Value::from(*name));
            event.insert("log.level", Value::from(*name));
        }
    }
    for (field, path, integer) in MAPPED {
        if let Some(text) = fields.get(*field).and_then(field_text) {
            let value = match (integer, text.parse::<i64>()) {
                (true, Ok(n)) => Value::Int(n),
                _ => Value::String(text),
            };
            event.insert(path, value);
        }
    }
    // The application's own fields (`sd_journal_send`, structured logging) are kept; trusted
    // fields (`_*`) and journal internals (`__*`) not mapped above are left out.
    for (k, v) in &fields {
        if k.starts_with('_') || k == "PRIORITY" || MAPPED.iter().any(|(f, _, _)| f == k) {
            continue;
        }
        if let Some(text) = field_text(v) {
            event.insert(
                &format!("journald.custom.{}", k.to_ascii_lowercase()),
                Value::String(text),
            );
        }
    }
    Some((event, cursor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_maps_to_ecs() {
        let line = br#"{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1764500000123456","MESSAGE":"Accepted publickey","PRIORITY":"6","SYSLOG_FACILITY":"10","SYSLOG_IDENTIFIER":"sshd","_PID":"812","_COMM":"sshd","_SYSTEMD_UNIT":"ssh.service","_HOSTNAME":"node-1","_BOOT_ID":"b1","ORDER_ID":"42","_CAP_EFFECTIVE":"0"}"#;
        let (e, cursor) = entry_event(line, &"j".into()).unwrap();
        assert_eq!(cursor, "s=1;i=2");
        let j = serde_json::to_value(&e.fields).unwrap();
        assert_eq!(j["message"], "Accepted publickey");
        assert_eq!(j["process"]["pid"], 812);
        assert_eq!(j["log"]["syslog"]["severity"]["name"], "informational");
        assert_eq!(j["log"]["syslog"]["facility"]["code"], 10);
        assert_eq!(j["systemd"]["unit"], "ssh.service");
        assert_eq!(j["journald"]["custom"]["order_id"], "42");
        assert!(j["journald"]["custom"].get("_cap_effective").is_none());
        assert_eq!(j["@timestamp"], "2025-11-30T10:53:20.123456Z");
    }

    #[test]
    fn binary_messages_and_bad_lines() {
        let line = br#"{"__CURSOR":"c","MESSAGE":[104,105,255]}"#;
        let (e, _) = entry_event(line, &"j".into()).unwrap();
        assert_eq!(e.message(), Some("hi\u{fffd}"));
        assert!(entry_event(b"not json", &"j".into()).is_none());
        assert!(entry_event(br#"{"MESSAGE":"no cursor"}"#, &"j".into()).is_none());
        assert!(entry_event(b"[1,2]", &"j".into()).is_none());
    }
}
