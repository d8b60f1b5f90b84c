//! The `syslog` processor through the real binary, on lines others wrote: loghub's Linux and
//! OpenSSH samples (files written by a syslog daemon) against their ground truth, and the
//! datagrams util-linux `logger` sends (RFC 3164 and RFC 5424) against what it was told.

use crate::loghub::parse_csv;
use crate::support;

use chrono::{DateTime, Utc};
use serde_json::Value;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::process::{run_on_stdin, shared_dir};

fn pipeline(dir: &Path, timezone: &str) -> PathBuf {
    let p = dir.join("syslog.yaml");
    std::fs::write(
        &p,
        format!(
            "inputs:\n  app: {{ type: stdin }}\nprocessors:\n  - {{ type: syslog, timezone: {timezone} }}\n\
             outputs:\n  o: {{ type: stdout }}\nhttp: {{ enabled: false }}\n"
        ),
    )
    .unwrap();
    p
}

fn text<'a>(e: &'a Value, path: &str) -> Option<&'a str> {
    path.split('.').try_fold(e, |v, k| v.get(k))?.as_str()
}

#[test]
fn loghub_linux_and_openssh_files_split_as_their_ground_truth() {
    // (dataset, host column, tag column (OpenSSH's are all `sshd`), pid column, month, day)
    for (name, host_col, tag_col, pid_col, month_col, day_col) in [
        ("Linux", "Level", Some("Component"), "PID", "Month", "Date"),
        ("OpenSSH", "Component", None, "Pid", "Date", "Day"),
    ] {
        let dir = shared_dir().join("data/logs/loghub").join(name);
        let log = std::fs::read_to_string(dir.join(format!("{name}_2k.log")))
            .unwrap_or_else(|e| panic!("{name}: {e}; set TRAWL_SHARED_DIR"));
        let rows = parse_csv(
            &std::fs::read_to_string(dir.join(format!("{name}_2k.log_structured.csv"))).unwrap(),
        );
        let col = |c: &str| rows[0].iter().position(|h| h == c).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let events = run_on_stdin(&pipeline(tmp.path(), "UTC"), tmp.path(), &log);
        assert_eq!(events.len(), rows.len() - 1, "{name}: one event per line");
        let mut tagless = 0;
        for (i, (row, e)) in rows[1..].iter().zip(&events).enumerate() {
            let at = format!("{name} line {}: {e}", i + 1);
            assert!(e.get("tags").is_none(), "{at}");
            assert_eq!(
                text(e, "host.hostname"),
                Some(row[col(host_col)].as_str()),
                "{at}"
            );
            let pid = &row[col(pid_col)];
            let content = &row[col("Content")];
            let tag = tag_col.map_or("sshd", |c| row[col(c)].as_str());
            if tag.contains(' ') {
                // `syslogd 1.4.1: restart.`, `-- root[2421]: ...`: loghub takes what comes
                // before the colon as the component; a syslog tag has no space (RFC 3164, and
                // rsyslog reads it so), so the line has no tag and all of it is the message.
                tagless += 1;
                assert!(e.get("process").is_none(), "{at}");
                let pid = if pid.is_empty() {
                    String::new()
                } else {
                    format!("[{pid}]")
                };
                assert_eq!(
                    text(e, "message"),
                    Some(format!("{tag}{pid}: {content}").as_str()),
                    "{at}"
                );
                continue;
            }
            assert_eq!(text(e, "process.name"), Some(tag), "{at}");
            assert_eq!(text(e, "log.syslog.appname"), Some(tag), "{at}");
            match pid.as_str() {
                "" => assert!(e["process"].get("pid").is_none(), "{at}"),
                p => assert_eq!(e["process"]["pid"], p.parse::<i64>().unwrap(), "{at}"),
            }
            // The message as written after the one space that ends the tag (the kernel indents
            // some of its lines); loghub trims both ends.
            assert_eq!(
                text(e, "message").map(str::trim),
                Some(content.as_str()),
                "{at}"
            );
            let t: DateTime<Utc> = text(e, "@timestamp").unwrap().parse().unwrap();
            assert_eq!(t.format("%b").to_string(), row[col(month_col)], "{at}");
            assert_eq!(t.format("%-d").to_string(), row[col(day_col)], "{at}");
            assert_eq!(t.format("%H:%M:%S").to_string(), row[col("Time")], "{at}");
        }
        let expected_tagless = if name == "Linux" { 8 } else { 0 };
        assert_eq!(tagless, expected_tagless, "{name}");
    }
}

#[test]
fn what_util_linux_logger_sends_reads_back_as_it_was_told() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = socket.local_addr().unwrap().port().to_string();
    let send = |args: &[&str]| {
        let status = Command::new("logger")
            .args(["-n", "127.0.0.1", "-P", &port, "-d"])
            .args(args)
            .status()
            .expect("util-linux logger");
        assert!(status.success(), "logger {args:?}");
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("logger's datagram");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    };
    let lines = [
        send(&[
            "--rfc5424",
            "-t",
            "billing",
            "--id=4242",
            "-p",
            "local3.warning",
            "--msgid",
            "ID7",
            "--sd-id",
            "order@32473",
            "--sd-param",
            r#"id="A-17""#,
            "--sd-param",
            r#"note="say \"hi\" \]""#,
            "invoice sent: 3 items",
        ]),
        send(&[
            "--rfc3164",
            "-t",
            "cron",
            "--id=77",
            "-p",
            "auth.err",
            "session opened for root",
        ]),
    ];
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = host.trim();

    let tmp = tempfile::tempdir().unwrap();
    let events = run_on_stdin(
        &pipeline(tmp.path(), "Local"),
        tmp.path(),
        &(lines.join("\n") + "\n"),
    );
    assert_eq!(events.len(), 2, "{lines:?}");
    let now = Utc::now();
    for e in &events {
        assert!(e.get("tags").is_none(), "{e}");
        let t: DateTime<Utc> = text(e, "@timestamp").unwrap().parse().unwrap();
        assert!((now - t).num_seconds().abs() < 120, "{e}");
        assert_eq!(text(e, "host.hostname"), Some(host), "{e}");
    }
    let e = &events[0];
    assert_eq!(text(e, "message"), Some("invoice sent: 3 items"), "{e}");
    assert_eq!(text(e, "process.name"), Some("billing"), "{e}");
    assert_eq!(e["process"]["pid"], 4242, "{e}");
    assert_eq!(e["log"]["syslog"]["priority"], 19 * 8 + 4, "{e}");
    assert_eq!(e["log"]["syslog"]["facility"]["name"], "local3", "{e}");
    assert_eq!(e["log"]["syslog"]["severity"]["name"], "warning", "{e}");
    assert_eq!(e["log"]["syslog"]["version"], 1, "{e}");
    assert_eq!(e["log"]["syslog"]["msgid"], "ID7", "{e}");
    assert_eq!(
        e["log"]["syslog"]["structured_data"]["order@32473"],
        serde_json::json!({"id": "A-17", "note": "say \"hi\" ]"}),
        "{e}"
    );
    let e = &events[1];
    assert_eq!(text(e, "message"), Some("session opened for root"), "{e}");
    assert_eq!(text(e, "process.name"), Some("cron"), "{e}");
    assert_eq!(e["process"]["pid"], 77, "{e}");
    assert_eq!(e["log"]["syslog"]["facility"]["name"], "auth", "{e}");
    assert_eq!(e["log"]["syslog"]["severity"]["name"], "error", "{e}");
    assert_eq!(e["log"]["level"], "error", "{e}");
}
