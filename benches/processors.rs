//! Parser throughput on loghub lines, one core: regex, dissect, json, syslog, key_value, redact
//! and throttle,
//! each against the cost of making the events alone (the baseline, measured in the same run).
//! Prints a Markdown table.
//! Run with `benches/processors.sh` (or `cargo bench --bench processors`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use trawl::config::parse_str;
use trawl::event::Event;
use trawl::inputs::BuildContext;
use trawl::processors::{self, Processor};
use trawl::telemetry::metrics::Registry;

fn shared_dir() -> PathBuf {
    match std::env::var_os("TRAWL_SHARED_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("shared"),
    }
}

fn lines(name: &str) -> Vec<String> {
    let path = shared_dir().join(format!("data/logs/loghub/{name}/{name}_2k.log"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| l.trim_end_matches('\r').to_owned())
        .collect()
}

fn processor(yaml: &str) -> Box<dyn Processor> {
    let text = format!("inputs:\n  app: {{ type: stdin }}\nprocessors:\n  - {yaml}\noutputs:\n  o: {{ type: \"null\" }}\n");
    let cfg = parse_str("bench.yaml", &text, &|_| None).expect("bench pipeline");
    let ctx = BuildContext {
        data_dir: std::env::temp_dir(),
        registry: Registry::new(),
        endpoints: Default::default(),
    };
    processors::build(&cfg.processors[0].spec, &ctx).expect("bench processor")
}

/// Events per second over at least `min` of repeated passes; `p` is `None` for the baseline.
fn measure(lines: &[String], mut p: Option<&mut Box<dyn Processor>>, min: Duration) -> (f64, u64) {
    let ts = chrono::Utc::now();
    let input: std::sync::Arc<str> = "app".into();
    let (mut n, mut bytes) = (0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < min {
        for l in lines {
            let mut e = Event::from_message(input.clone(), ts, l.clone());
            if let Some(p) = p.as_deref_mut() {
                std::hint::black_box(p.process(&mut e));
            }
            std::hint::black_box(&e);
            n += 1;
            bytes += l.len() as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    (n as f64 / secs, (bytes as f64 / secs) as u64)
}

const REDACT_ALL: &str =
    "credit_card, email, bearer_token, authorization, jwt, aws_access_key_id, url_password, password";

fn main() {
    let min = Duration::from_millis(
        std::env::var("BENCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1500),
    );
    let apache = lines("Apache");
    let zookeeper = lines("Zookeeper");
    let linux = lines("Linux");
    let hdfs = lines("HDFS");
    let spark = lines("Spark");
    let openssh = lines("OpenSSH");
    // logfmt as Go's log/slog writes it (quotes, escapes, groups): the key_value test's records.
    let slog: Vec<String> = include_str!("../tests/data/logfmt/slog.txt")
        .lines()
        .map(str::to_owned)
        .collect();
    // JSON lines made of the HDFS lines' parts, as an application logging JSON would write them.
    let json: Vec<String> = hdfs
        .iter()
        .map(|l| {
            let parts: Vec<&str> = l.splitn(6, ' ').collect();
            serde_json::json!({"date": parts[0], "time": parts[1], "pid": parts[2].parse::<i64>().unwrap_or(0), "log": {"level": parts[3]},
                "component": parts[4].trim_end_matches(':'), "message": parts.get(5).copied().unwrap_or("")})
            .to_string()
        })
        .collect();

    let cases: Vec<(&str, &str, &[String], String)> = vec![
        ("regex", "Apache", &apache, r#"{type: regex, patterns: '^\[(?<time>[^\]]*)\] \[(?<log.level>[^\]]*)\] (?<message>.*)$'}"#.to_owned()),
        ("regex", "Zookeeper", &zookeeper, r#"{type: regex, trim_values: right, patterns: '^(?<date>\S+) (?<time>\S+) - (?<log.level>\S+) +\[(?<process.thread.name>[^:]*):(?<log.logger>[^@]*)@(?<log.origin.file.line>[^\]]*)\] - (?<message>.*)$'}"#.to_owned()),
        ("regex", "Linux", &linux, r#"{type: regex, trim_values: all, patterns: '^(?<month>\S+) +(?<day>\S+) (?<time>\S+) (?<host.hostname>\S+) (?<process.name>[^\[:]*)(?:\[(?<process.pid>[^\]]*)\])?: (?<message>.*)$'}"#.to_owned()),
        ("regex (lazy `.*?`, not one-pass)", "Zookeeper", &zookeeper, r#"{type: regex, patterns: '^(?<date>\S+)\s+(?<time>\S+)\s+-\s+(?<log.level>\S+)\s+\[(?<process.thread.name>.*?):(?<log.logger>.*?)@(?<log.origin.file.line>.*?)\]\s+-\s+(?<message>.*?)\s*$'}"#.to_owned()),
        ("dissect", "HDFS", &hdfs, "{type: dissect, tokenizer: '%{date} %{time} %{process.pid} %{log.level} %{log.logger}: %{message}'}".to_owned()),
        ("dissect", "Spark", &spark, "{type: dissect, tokenizer: '%{date} %{time} %{log.level} %{log.logger}: %{message}'}".to_owned()),
        ("json", "HDFS as JSON", &json, "{type: json, overwrite_keys: true}".to_owned()),
        ("syslog", "Linux", &linux, "{type: syslog, timezone: UTC}".to_owned()),
        ("syslog", "OpenSSH", &openssh, "{type: syslog, timezone: Europe/Paris}".to_owned()),
        ("key_value", "Go slog logfmt", &slog, "{type: key_value}".to_owned()),
        ("redact (all 8 built-ins)", "Linux", &linux, format!("{{type: redact, builtins: [{REDACT_ALL}]}}")),
        ("redact (all 8 built-ins)", "Go slog logfmt", &slog, format!("{{type: redact, builtins: [{REDACT_ALL}]}}")),
        ("redact (card numbers only)", "Apache", &apache, "{type: redact, builtins: [credit_card]}".to_owned()),
        // One budget, never used up: the cost every event pays (a clock read, a lock, a look-up).
        ("throttle (no key, under the limit)", "Linux", &linux, "{type: throttle, limit: 1000000000}".to_owned()),
        // A key per line read from a text field (2,000 keys, each over its limit after its first
        // event): hashing the key, and the drop path.
        ("throttle (key = message, limit 1/h)", "Linux", &linux, "{type: throttle, limit: 1, window: 1h, key_fields: [message]}".to_owned()),
    ];

    println!("| processor | lines | lines/s | MB/s | baseline lines/s (events only) | processor alone lines/s | goal |");
    println!("|---|---|---:|---:|---:|---:|---|");
    for (kind, name, lines, yaml) in cases {
        let mut p = processor(&yaml);
        // Warm up (allocator, caches) before either measurement.
        measure(lines, Some(&mut p), Duration::from_millis(200));
        let (base, _) = measure(lines, None, min);
        let (rate, bps) = measure(lines, Some(&mut p), min);
        // The processor's own rate: the time per line minus the time to make the event.
        let alone = 1.0 / (1.0 / rate - 1.0 / base).max(1e-12);
        let goal = match kind {
            "dissect" => "≥ 1,000,000",
            k if k.starts_with("regex") => "≥ 500,000",
            _ => "",
        };
        println!(
            "| {kind} | {name} | {:.0} | {:.1} | {:.0} | {:.0} (ratio to baseline {:.2}) | {goal} |",
            rate,
            bps as f64 / 1e6,
            base,
            alone,
            rate / base
        );
    }
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|st| {
            st.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("\nOne thread. Baseline: making each event (line copied into `message`, `@timestamp`) without a processor. \
              \"processor alone\" subtracts the baseline's time per line. Peak RSS of the benchmark: {peak}.");
}
