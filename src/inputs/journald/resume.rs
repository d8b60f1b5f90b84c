//! Where a journalctl session starts from a saved cursor. journalctl's `--after-cursor` steps
//! over one entry after the seek without checking that it is the cursor's own (systemd 252,
//! Debian 12; later versions check): when that entry is gone (vacuumed or rotated away while
//! trawl was stopped) or no longer matches (the input's matches changed), the first entry after
//! its place was skipped without a word.
//!
//! So a one-shot `journalctl --cursor` without `--follow` first looks at the cursor's place.
//! When the cursor's own entry is there, `--after-cursor` is right. Otherwise (another entry,
//! or nothing yet) `--cursor` starts at the first entry that comes after its place, which the
//! cursor's entry, not being read, cannot be.

use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// How the following journalctl is told where to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// After the saved cursor's entry, which is in the journal (or nothing is after it yet).
    AfterCursor(String),
    /// At the first entry after the saved cursor's place: the cursor's own entry is not read.
    AtCursor(String),
    /// From the end of the journal (`start_at: end`, first start).
    End,
    /// From the start of the journal.
    Beginning,
}

/// More than enough for `__CURSOR`, which journalctl writes first on every JSON line.
const FIRST_BYTES: usize = 16 * 1024;
/// A journal that cannot be opened in this time is left to the following session's own errors.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `probe` (a `journalctl --cursor=CURSOR` without `--follow`, stdout piped) and says
/// where reading resumes. Any failure of the look itself falls back to `--after-cursor`, what
/// trawl did before: the session that follows reports journalctl's own errors.
pub async fn resume_point(mut probe: Command, cursor: &str, input: &str) -> Start {
    let fallback = Start::AfterCursor(cursor.to_owned());
    let Ok(mut child) = probe.spawn() else {
        return fallback;
    };
    let first = match child.stdout.take() {
        Some(out) => tokio::time::timeout(PROBE_TIMEOUT, first_cursor(out))
            .await
            .ok()
            .flatten(),
        None => None,
    };
    // A look that printed nothing counts only when journalctl ended well (not when it refused
    // the cursor or the journal: the session that follows reports that). One that printed an
    // entry would go on printing the rest of the journal: stopped and reaped here.
    let mut looked = false;
    if first.is_none() {
        if let Ok(Ok(status)) = tokio::time::timeout(PROBE_TIMEOUT, child.wait()).await {
            looked = status.success();
        }
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    match first {
        Some(first) if first == cursor => fallback,
        Some(first) => {
            lost_cursor(input, cursor, &first);
            Start::AtCursor(cursor.to_owned())
        }
        // Nothing at or after its place yet, so the cursor's entry is not read either; the
        // first entry to come is at its place, and `--after-cursor` would step over it.
        None if looked => {
            lost_cursor(input, cursor, "none yet");
            Start::AtCursor(cursor.to_owned())
        }
        None => fallback,
    }
}

/// The saved cursor's entry is not read: said with the first entry that is (or `none yet`).
fn lost_cursor(input: &str, cursor: &str, first: &str) {
    tracing::warn!(input = %input, saved_cursor = %cursor, first_entry = %first,
        "the saved journal cursor's entry is not among the entries this input reads (vacuumed or rotated away, or the input's matches changed): reading on from the first entry after its place; entries removed before trawl read them cannot be read");
}

/// The `__CURSOR` of the first JSON line journalctl prints, if it prints one.
async fn first_cursor(mut out: impl tokio::io::AsyncRead + Unpin) -> Option<String> {
    let mut line = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    while line.len() < FIRST_BYTES && !line.contains(&b'\n') {
        let n = out.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        line.extend_from_slice(&chunk[..n]);
    }
    cursor_of(&line)
}

/// `__CURSOR` from the start of a journalctl JSON line (cursors hold no quote or backslash).
fn cursor_of(line: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(line);
    let first = text.split('\n').next()?;
    let key = "\"__CURSOR\":\"";
    let at = first.find(key)? + key.len();
    let len = first[at..].find('"')?;
    Some(first[at..at + len].to_owned()).filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_is_read_from_the_first_line_only() {
        let line = b"{\"__CURSOR\":\"s=ab;i=2;b=cd;m=1;t=2;x=3\",\"MESSAGE\":\"x\"}\n{\"__CURSOR\":\"s=zz\"}\n";
        assert_eq!(
            cursor_of(line).as_deref(),
            Some("s=ab;i=2;b=cd;m=1;t=2;x=3")
        );
        assert_eq!(cursor_of(b""), None);
        assert_eq!(
            cursor_of(b"{\"MESSAGE\":\"x\"}\n{\"__CURSOR\":\"s=zz\"}"),
            None
        );
        assert_eq!(cursor_of(b"{\"__CURSOR\":\"s=cut"), None);
    }
}
