//! The `journald` input: the systemd journal, for hosts where nothing is written to
//! /var/log/syslog (Debian 12's default). It follows `journalctl --output=json` as a child
//! process (as Filebeat's journald input does), so no libsystemd is linked into trawl.
//!
//! The cursor of the last entry every output has acknowledged (with `multiline`: the last entry
//! of the last event acknowledged whole, see `joining`) is kept crash-safely under
//! `data_dir/registry/`, like file offsets: after a crash or restart reading resumes after it
//! (at least once). A batch an output gives up on stops reading; after a back-off the journal
//! is read again from the committed cursor, so nothing is skipped.

mod entry;
mod joining;
mod resume;

use super::lines::{LineInfo, LineSplitter};
use super::multiline::{self, Multiline};
use super::{BoxFuture, Input, InputContext};
use crate::config::{ByteSize, ComponentSpec, DeError};
use crate::event::{AckTracker, Batch, BatchStatus, Event};
use crate::inputs::file::registry::write_atomic;
use crate::telemetry::metrics::ComponentMetrics;
use joining::{Joined, Joiners, Ledger};
use resume::Start;
use serde::Deserialize;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Joins the entries of one event (a stack trace logged line by line), per source (unit,
    /// identifier, process), as the file input's `multiline`.
    #[serde(default)]
    pub multiline: Option<multiline::Config>,
    /// With `multiline`: the most sources joined at once; an entry of a new source beyond
    /// sends the event held longest, as it stands. Bounds memory when a host runs thousands
    /// of units or containers.
    #[serde(default = "default_max_joined_sources")]
    pub max_joined_sources: usize,
    /// With `multiline`: the most entries read and not yet committed beyond those in flight
    /// (held by joiners, or delivered after one still held); reading waits beyond, until a
    /// joiner's timeout sends its event.
    #[serde(default = "default_max_held_entries")]
    pub max_held_entries: usize,
    /// The input's former name, when it was renamed: its first start resumes from that
    /// input's cursor (copied) instead of `start_at`.
    #[serde(default)]
    pub take_over: Option<String>,
}

fn default_max_joined_sources() -> usize {
    1024
}

fn default_max_held_entries() -> usize {
    100_000
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
    multiline: Option<Multiline>,
    cursor_path: PathBuf,
    /// Set while the cursor cannot be saved, so the failure is logged once, not every batch.
    cursor_failing: AtomicBool,
}

pub fn build(spec: &ComponentSpec, data_dir: &std::path::Path) -> Result<Journald, DeError> {
    let config: Config = crate::config::from_node(&spec.node, &spec.path)?;
    // Errors point at the key's own line, not the input's: in a long block it is found at once.
    let at = |key: &str| spec.node.get(key).map_or(spec.mark, |n| n.mark);
    super::check_line_limit(spec, "max_entry_bytes", config.max_entry_bytes)?;
    if config.directory.is_some() && !config.files.is_empty() {
        return Err(DeError::new(
            "`directory` and `files` are exclusive: choose one",
            at("files"),
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
            at("matches"),
            &format!("{}.matches", spec.path),
        ));
    }
    for (key, value) in [
        (
            "max_in_flight_batches",
            config.max_in_flight_batches as usize,
        ),
        ("max_joined_sources", config.max_joined_sources),
        ("max_held_entries", config.max_held_entries),
    ] {
        if value == 0 {
            return Err(DeError::new(
                "expected at least 1",
                at(key),
                &format!("{}.{key}", spec.path),
            ));
        }
    }
    if let Err(why) = crate::inputs::orphans::check_take_over(spec, config.take_over.as_ref()) {
        return Err(DeError::new(
            why,
            at("take_over"),
            &format!("{}.take_over", spec.path),
        ));
    }
    Ok(Journald {
        multiline: multiline::for_input(config.multiline.as_ref(), spec)?,
        cursor_path: data_dir
            .join("registry")
            .join(crate::inputs::orphans::cursor_file_name(&spec.name)),
        config,
        cursor_failing: AtomicBool::new(false),
    })
}

impl Input for Journald {
    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<anyhow::Result<()>> {
        Box::pin(async move { self.run_loop(ctx).await })
    }

    fn state_file(&self) -> Option<&std::path::Path> {
        Some(&self.cursor_path)
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
        if let Some(from) = &self.config.take_over {
            crate::inputs::orphans::take_over(
                crate::inputs::orphans::Kept::Cursor,
                &ctx.name,
                from,
                &self.cursor_path,
            );
        }
        // Without a cursor that can be saved every restart would read the journal again from
        // wherever the last save left it: refused at start, saying what is needed.
        crate::inputs::file::registry::check_writable(&self.cursor_path).map_err(|e| {
            anyhow::anyhow!(
                "cannot write the journal cursor {}: {e}; the journald input keeps its position there, so `data_dir` must be writable",
                self.cursor_path.display()
            )
        })?;
        let mut committed = std::fs::read_to_string(&self.cursor_path)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        let mut started_before = self.cursor_path.exists();
        if let Some(c) = committed.as_deref().filter(|c| !entry::is_cursor(c)) {
            self.set_aside(c, &ctx.name);
            committed = None;
            // From the start, whatever `start_at` says, and marked as started.
            write_atomic(&self.cursor_path, b"")?;
            started_before = true;
        }
        // `start_at` applies to the very first start only; after that, a restart resumes
        // from the cursor, and without one (nothing acknowledged yet) from the beginning, so
        // that what was written while trawl was down is not skipped.
        let mut from_end =
            committed.is_none() && !started_before && self.config.start_at == StartAt::End;
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

    /// A saved cursor journalctl would refuse (an edit by hand, a half-restored backup):
    /// journalctl failed on it at every retry, so nothing was ever read again while `/health`
    /// said ok. As the file input does with a registry it cannot parse, the file is moved
    /// aside, said once, and the journal is read from its start: sent again rather than lost
    /// (also with `start_at: end`, which would skip what came since the last save).
    fn set_aside(&self, cursor: &str, input: &str) {
        let mut aside = self.cursor_path.clone().into_os_string();
        aside.push(".corrupt");
        let moved = std::fs::rename(&self.cursor_path, &aside);
        let shown: String = cursor.chars().take(200).collect();
        tracing::warn!(input = %input, path = %self.cursor_path.display(), cursor = %shown,
            moved_to = %std::path::Path::new(&aside).display(), moved = moved.is_ok(),
            "the saved journal cursor is not a cursor journalctl can seek to: set aside, reading the journal from its start (entries delivered before are sent again)");
    }

    /// journalctl from `start`; without `--follow` when `follow` is false (the look
    /// `resume::resume_point` takes at the cursor's place).
    fn command(&self, start: &Start, follow: bool) -> Command {
        let mut cmd = Command::new(&self.config.journalctl);
        cmd.args(["--output=json", "--all", "--no-pager", "--quiet"]);
        if follow {
            cmd.arg("--follow");
        }
        if let Some(dir) = &self.config.directory {
            cmd.arg(format!("--directory={}", dir.display()));
        }
        for f in &self.config.files {
            cmd.arg(format!("--file={}", f.display()));
        }
        match start {
            Start::AfterCursor(c) => {
                cmd.arg(format!("--after-cursor={c}"));
                cmd.arg("--no-tail");
            }
            Start::AtCursor(c) => {
                cmd.arg(format!("--cursor={c}"));
                cmd.arg("--no-tail");
            }
            Start::End => {
                cmd.arg("--lines=0");
            }
            Start::Beginning => {
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
        let start = match committed.as_deref() {
            Some(c) => {
                let mut probe = self.command(&Start::AtCursor(c.to_owned()), false);
                probe.stderr(Stdio::null());
                tokio::select! {
                    start = resume::resume_point(probe, c, &ctx.name) => start,
                    _ = ctx.shutdown.wait() => return End::Stop,
                }
            }
            None if from_end => Start::End,
            None => Start::Beginning,
        };
        let mut child = match self.command(&start, true).spawn() {
            Ok(c) => c,
            Err(e) => {
                // Not there, not executable: nothing is read until someone installs it, so
                // `/health` says so rather than "ok" over a log line said once.
                let why = format!("cannot run {}: {e}", self.config.journalctl.display());
                ctx.metrics
                    .set_failed(format!("{why}; retrying, nothing is read meanwhile"));
                return End::Retry(why);
            }
        };
        // Runs again (whatever the cursor's state, which reports itself at its next save).
        if !self.cursor_failing.load(Ordering::Relaxed) {
            ctx.metrics.clear_failed();
        }
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
        let mut pending = Pending {
            batch: Vec::with_capacity(ctx.batch_size),
            entries: Vec::new(),
            in_flight: VecDeque::new(),
            ledger: Ledger::default(),
        };
        let mut joiners = self
            .multiline
            .clone()
            .map(|m| Joiners::new(ctx.name.clone(), m, self.config.max_joined_sources));
        // Entries read and not committed (held by multiline or in flight) are bounded too;
        // a held event's timeout still fires while reading waits.
        let max_uncommitted = (self.config.max_in_flight_batches as usize)
            .saturating_mul(ctx.batch_size)
            .saturating_add(self.config.max_held_entries);
        let mut joined: Vec<Joined> = Vec::new();
        let mut oversize_logged = false;
        let mut bad_logged = false;
        let mut reading = true;
        let mut failure: Option<String> = None;
        let flush_every = Duration::from_millis(100);
        let mut flush_at: Option<tokio::time::Instant> = None;

        loop {
            let room = tracker.pending() < self.config.max_in_flight_batches
                && pending.ledger.len() < max_uncommitted;
            let held_due = joiners
                .as_ref()
                .and_then(Joiners::deadline)
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                biased;
                _ = ctx.shutdown.wait(), if reading => {
                    reading = false;
                    let _ = child.start_kill();
                    // What multiline holds is read again after the restart (the cursor
                    // stops before it), as the file input does.
                    if !pending.send(ctx, tracker).await {
                        return End::Stop;
                    }
                    flush_at = None;
                }
                acked = tracker.next() => {
                    self.settle(&acked, &mut pending, committed, &mut failure, ctx);
                    if failure.is_some() && reading {
                        reading = false;
                        let _ = child.start_kill();
                        pending.batch.clear();
                        pending.entries.clear();
                    }
                }
                _ = sleep_until(held_due), if held_due.is_some() && reading => {
                    if let Some(j) = joiners.as_mut() {
                        j.flush_due(std::time::Instant::now(), &mut joined);
                    }
                    pending.add(&mut joined);
                    if pending.batch.len() >= ctx.batch_size {
                        flush_at = None;
                        if !pending.send(ctx, tracker).await {
                            return End::Stop;
                        }
                    } else if !pending.batch.is_empty() && flush_at.is_none() {
                        flush_at = Some(tokio::time::Instant::now() + flush_every);
                    }
                }
                _ = sleep_until(flush_at), if flush_at.is_some() && reading => {
                    flush_at = None;
                    if !pending.send(ctx, tracker).await {
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
                        if !pending.send(ctx, tracker).await {
                            return End::Stop;
                        }
                        if !ctx.shutdown.is_triggered() {
                            let status = wait_exit(&mut child).await;
                            let last = err_rx.borrow_and_update().clone();
                            failure.get_or_insert(format!("journalctl ended ({status}): {last}"));
                        }
                    }
                    let now = std::time::Instant::now();
                    splitter.push(&buf[..n], &mut |line: &[u8], info: LineInfo| {
                        ComponentMetrics::add(&ctx.metrics.bytes_in, info.end - info.start);
                        if info.truncated {
                            ctx.metrics.errors.fetch_add(1, Ordering::Relaxed);
                            if !oversize_logged {
                                oversize_logged = true;
                                tracing::warn!(input = %ctx.name, max_entry_bytes = self.config.max_entry_bytes.as_usize(),
                                    cursor = entry::cursor_in(line).unwrap_or("unknown"),
                                    "journal entry longer than max_entry_bytes skipped (logged once; counted in trawl_errors_total; `journalctl --cursor=CURSOR` starts at it)");
                            }
                            return;
                        }
                        let Some(entry) = entry::parse(line, &ctx.name) else {
                            ctx.metrics.errors.fetch_add(1, Ordering::Relaxed);
                            if !bad_logged {
                                bad_logged = true;
                                tracing::warn!(input = %ctx.name, entry = %String::from_utf8_lossy(&line[..line.len().min(200)]),
                                    "journalctl wrote an entry that is not a JSON object with __CURSOR; skipped (logged once; counted in trawl_errors_total)");
                            }
                            return;
                        };
                        let seq = pending.ledger.push(entry.cursor.clone());
                        match joiners.as_mut() {
                            Some(j) => j.push(entry, seq, now, &mut joined),
                            None => joined.push(Joined { event: entry.event, entries: vec![seq] }),
                        }
                    });
                    pending.add(&mut joined);
                    if pending.batch.len() >= ctx.batch_size {
                        flush_at = None;
                        if !pending.send(ctx, tracker).await {
                            return End::Stop;
                        }
                    } else if !pending.batch.is_empty() && flush_at.is_none() {
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

    /// Marks the entries of every acknowledged batch and saves the cursor of the acknowledged
    /// prefix; a batch an output gave up on stops the session (read again from the cursor).
    fn settle(
        &self,
        acked: &[crate::event::Acked],
        pending: &mut Pending,
        committed: &mut Option<String>,
        failure: &mut Option<String>,
        ctx: &InputContext,
    ) {
        for a in acked {
            let Some(pos) = pending.in_flight.iter().position(|(s, _)| *s == a.seq) else {
                continue;
            };
            let Some((_, entries)) = pending.in_flight.remove(pos) else {
                continue;
            };
            if failure.is_some() {
                continue;
            }
            match a.status {
                BatchStatus::Delivered | BatchStatus::Rejected => {
                    for seq in entries {
                        pending.ledger.done(seq);
                    }
                }
                BatchStatus::Failed => {
                    *failure = Some("an output gave up on a batch".into());
                }
            }
        }
        if failure.is_some() {
            return;
        }
        if let Some(c) = pending.ledger.advance() {
            match write_atomic(&self.cursor_path, c.as_bytes()) {
                Err(e) => {
                    ctx.metrics.errors.fetch_add(1, Ordering::Relaxed);
                    if !self.cursor_failing.swap(true, Ordering::Relaxed) {
                        tracing::error!(input = %ctx.name, path = %self.cursor_path.display(), error = %e,
                            "cannot save the journal cursor; entries keep flowing, a restart reads again those delivered since the last save (logged once)");
                    }
                    ctx.metrics.set_failed(format!(
                        "cannot write the journal cursor {}: {e}; entries still flow, the position is not saved",
                        self.cursor_path.display()
                    ));
                }
                Ok(()) => {
                    if self.cursor_failing.swap(false, Ordering::Relaxed) {
                        ctx.metrics.clear_failed();
                        tracing::info!(input = %ctx.name, path = %self.cursor_path.display(), "journal cursor saved again");
                    }
                }
            }
            *committed = Some(c);
        }
    }
}

/// Entries of one session on their way: the batch being built, the batches in flight, and the
/// ledger of every entry not yet committed.
struct Pending {
    batch: Vec<Event>,
    /// Sequence numbers of the entries behind `batch`.
    entries: Vec<u64>,
    /// (acknowledgement sequence, entries) of each batch sent and not yet settled.
    in_flight: VecDeque<(u64, Vec<u64>)>,
    ledger: Ledger,
}

impl Pending {
    fn add(&mut self, joined: &mut Vec<Joined>) {
        for j in joined.drain(..) {
            self.batch.push(j.event);
            self.entries.extend(j.entries);
        }
    }

    /// Sends the batch being built with an acknowledgement handle; false when the pipeline is
    /// gone.
    async fn send(&mut self, ctx: &InputContext, tracker: &AckTracker) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let events = std::mem::replace(&mut self.batch, Vec::with_capacity(ctx.batch_size));
        let (seq, ack) = tracker.track();
        self.in_flight
            .push_back((seq, std::mem::take(&mut self.entries)));
        ctx.emit(Batch::new(events, ack)).await.is_ok()
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
