//! `trawl top`: a live table of every component of a running trawl (events in and out per
//! second, totals, errors, drops, queue and buffer fill, file lag, capture drops), read from its
//! `/metrics` every interval and redrawn in place; `q` quits.

use super::monitor::{Api, ApiArgs};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct TopArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Time between two refreshes (`1s`, `500ms`).
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    crate::config::Duration::parse(s)?
        .positive()
        .filter(|d| *d >= Duration::from_millis(100))
        .ok_or_else(|| "expected an interval of at least 100ms".to_owned())
}

/// Families summed into a column, per component. A sample belongs to a component when its
/// `component` label (or, for families labelled by input or output, that label) names it.
/// Families a trawl does not export leave the column at `-`.
const BUFFER_FAMILIES: &[&str] = &["trawl_queue_depth", "trawl_buffer_events"];
/// The total over every followed file: the per-file series cover only the largest lags.
const LAG_FAMILIES: &[&str] = &["trawl_file_lag_total_bytes"];
const CAPTURE_DROP_FAMILIES: &[&str] = &[
    "trawl_capture_kernel_dropped_total",
    "trawl_capture_interface_dropped_total",
    "trawl_capture_dropped_total",
];

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the Prometheus text format (comments skipped; a line that does not parse is
/// skipped too, so that one odd family does not hide the others).
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let mut key = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '}' => {
                    end = Some(i + 1);
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    if chars.next().map(|(_, c)| c) != Some('"') {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()? {
                            (_, '\\') => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                c => value.push(c),
                            },
                            (_, '"') => break,
                            (_, c) => value.push(c),
                        }
                    }
                    labels.push((std::mem::take(&mut key), value));
                }
                c => key.push(c),
            }
        }
        rest = &body[end?..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// One row of the table: a component and its counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    pub kind: String,
    pub name: String,
    pub type_name: String,
    pub events_in: f64,
    pub events_out: f64,
    pub errors: f64,
    pub dropped: f64,
    pub failed: f64,
    pub buffer: Option<f64>,
    pub lag: Option<f64>,
    pub capture_drops: Option<f64>,
    pub up: bool,
}

/// The table's rows, in the order components appear on `/metrics` (pipeline order).
pub fn rows(samples: &[Sample]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for s in samples.iter().filter(|s| s.name == "trawl_events_in_total") {
        let (Some(kind), Some(name)) = (s.label("component_kind"), s.label("component")) else {
            continue;
        };
        index.insert((kind.to_owned(), name.to_owned()), rows.len());
        rows.push(Row {
            kind: kind.to_owned(),
            name: name.to_owned(),
            type_name: s.label("component_type").unwrap_or("").to_owned(),
            up: true,
            ..Row::default()
        });
    }
    for s in samples {
        // The component a sample is about: labelled `component` (with its kind), or by the
        // input or output it belongs to.
        let key = match (s.label("component_kind"), s.label("component")) {
            (Some(k), Some(n)) => (k, n),
            // The file input's own families carry only `component`.
            (None, Some(n)) if LAG_FAMILIES.contains(&s.name.as_str()) => ("input", n),
            _ => match (s.label("input"), s.label("output")) {
                (Some(n), _) => ("input", n),
                (None, Some(n)) => ("output", n),
                _ => continue,
            },
        };
        let Some(&i) = index.get(&(key.0.to_owned(), key.1.to_owned())) else {
            continue;
        };
        let row = &mut rows[i];
        let add = |slot: &mut Option<f64>| *slot = Some(slot.unwrap_or(0.0) + s.value);
        match s.name.as_str() {
            "trawl_events_in_total" => row.events_in = s.value,
            "trawl_events_out_total" => row.events_out = s.value,
            "trawl_errors_total" => row.errors += s.value,
            "trawl_events_dropped_total" => row.dropped = s.value,
            "trawl_events_failed_total" => row.failed = s.value,
            "trawl_component_up" => row.up = s.value > 0.0,
            n if BUFFER_FAMILIES.contains(&n) => add(&mut row.buffer),
            n if LAG_FAMILIES.contains(&n) => add(&mut row.lag),
            n if CAPTURE_DROP_FAMILIES.contains(&n) => add(&mut row.capture_drops),
            _ => {}
        }
    }
    rows
}

/// A number in at most 7 characters: exact below ten million, then with a k/M/G suffix.
fn count(v: f64) -> String {
    if v < 10_000_000.0 {
        format!("{}", v.round() as i64)
    } else if v < 1e9 {
        format!("{:.1}M", v / 1e6)
    } else {
        format!("{:.1}G", v / 1e9)
    }
}

fn rate(v: Option<f64>) -> String {
    match v {
        None => "-".to_owned(),
        Some(r) if r < 1000.0 => format!("{r:.1}"),
        Some(r) => count(r),
    }
}

/// Renders the table; `previous` (the last rows and how long ago they were read) gives rates.
pub fn render(rows: &[Row], previous: Option<(&[Row], Duration)>) -> Vec<String> {
    let header = [
        "KIND",
        "NAME",
        "TYPE",
        "IN/s",
        "OUT/s",
        "IN",
        "OUT",
        "ERRORS",
        "DROPPED",
        "FAILED",
        "QUEUED",
        "FILE LAG",
        "CAP DROPS",
        "STATE",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for r in rows {
        let before = previous.and_then(|(rows, dt)| {
            rows.iter()
                .find(|p| p.kind == r.kind && p.name == r.name)
                .map(|p| (p, dt.as_secs_f64().max(1e-3)))
        });
        let per_sec =
            |now: f64, then: fn(&Row) -> f64| before.map(|(p, dt)| ((now - then(p)) / dt).max(0.0));
        let opt = |v: Option<f64>| v.map(count).unwrap_or_else(|| "-".to_owned());
        table.push(vec![
            r.kind.clone(),
            r.name.clone(),
            r.type_name.clone(),
            rate(per_sec(r.events_in, |p| p.events_in)),
            rate(per_sec(r.events_out, |p| p.events_out)),
            count(r.events_in),
            count(r.events_out),
            count(r.errors),
            count(r.dropped),
            count(r.failed),
            opt(r.buffer),
            opt(r.lag),
            opt(r.capture_drops),
            if r.up { "up" } else { "FAILED" }.to_owned(),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            table
                .iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    table
        .iter()
        .map(|row| {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                // Names left-aligned, numbers right-aligned.
                if c < 3 || c == header.len() - 1 {
                    let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
                } else {
                    let _ = write!(line, "{cell:>w$}  ", w = widths[c]);
                }
            }
            line.trim_end().to_owned()
        })
        .collect()
}

/// Runs the command; returns the exit code.
pub fn run(args: TopArgs) -> i32 {
    let api = match Api::from_args(&args.api) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let interactive = unsafe { libc::isatty(1) } == 1;
    let keys = keys();
    let _raw = interactive.then(RawMode::enable).flatten();
    let mut screen = Screen::new(interactive);
    let mut previous: Option<(Vec<Row>, Instant)> = None;
    let code = loop {
        let title = format!(
            "trawl top: {}  (every {:?}, q quits)",
            api.address, args.interval
        );
        let frame = match api.get_text("/metrics") {
            Ok(text) => {
                let now = Instant::now();
                let current = rows(&parse_metrics(&text));
                let lines = render(
                    &current,
                    previous
                        .as_ref()
                        .map(|(rows, at)| (rows.as_slice(), now.duration_since(*at))),
                );
                previous = Some((current, now));
                lines
            }
            Err(e) if e.contains("bearer token") => {
                drop(screen);
                eprintln!("error: {e}");
                break 1;
            }
            Err(e) => {
                previous = None;
                vec![format!("{e}: retrying every {:?}", args.interval)]
            }
        };
        screen.draw(&title, &frame);
        if let Ok(b'q' | b'Q' | 3) = keys.recv_timeout(args.interval) {
            break 0;
        }
    };
    code
}

/// Key presses from stdin, read on their own thread (nothing arrives when stdin is not a
/// terminal or is closed: `top` then runs until it is killed).
fn keys() -> std::sync::mpsc::Receiver<u8> {
    let (tx, rx) = std::sync::mpsc::sync_channel(16);
    std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        let mut stdin = std::io::stdin();
        while let Ok(1) = stdin.read(&mut byte) {
            if tx.send(byte[0]).is_err() {
                return;
            }
        }
    });
    rx
}

/// Where frames go: redrawn in place on a terminal (alternate screen), one after the other
/// otherwise (a pipe, a log).
struct Screen {
    interactive: bool,
}

impl Screen {
    fn new(interactive: bool) -> Screen {
        if interactive {
            // Alternate screen, cursor hidden: the user's scrollback is left as it was.
            print!("\x1b[?1049h\x1b[?25l");
            let _ = std::io::stdout().flush();
        }
        Screen { interactive }
    }

    fn draw(&mut self, title: &str, lines: &[String]) {
        let mut out = String::new();
        if self.interactive {
            let cols = terminal_columns().unwrap_or(usize::MAX);
            out.push_str("\x1b[H");
            for l in std::iter::once(title)
                .chain([""])
                .chain(lines.iter().map(String::as_str))
            {
                let shown: String = l.chars().take(cols).collect();
                let _ = write!(out, "{shown}\x1b[K\r\n");
            }
            out.push_str("\x1b[J");
        } else {
            let _ = writeln!(out, "{title}");
            for l in lines {
                let _ = writeln!(out, "{l}");
            }
            out.push('\n');
        }
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        if self.interactive {
            print!("\x1b[?25h\x1b[?1049l");
            let _ = std::io::stdout().flush();
        }
    }
}

fn terminal_columns() -> Option<usize> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills the winsize it is given; stdout is a terminal here.
    let r = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some(ws.ws_col as usize)
}

/// The terminal in non-canonical mode without echo while `top` runs (a key press arrives at
/// once, `q` is not printed), restored when dropped.
struct RawMode {
    saved: libc::termios,
}

impl RawMode {
    fn enable() -> Option<RawMode> {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios they fill or read.
        unsafe {
            if libc::isatty(0) != 1 {
                return None;
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut saved) != 0 {
                return None;
            }
            let mut raw = saved;
            // ISIG off too: Ctrl-C arrives as byte 3 and quits through the same path as `q`,
            // which restores the terminal.
            raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG);
            raw.c_cc[libc::VMIN] = 1;
            raw.c_cc[libc::VTIME] = 0;
            if libc::tcsetattr(0, libc::TCSANOW, &raw) != 0 {
                return None;
            }
            Some(RawMode { saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the attributes read in `enable`.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &self.saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_with_escapes_and_skips_comments() {
        let s = parse_metrics(
            "# HELP x y\n# TYPE x counter\nx{a=\"1\",b=\"q\\\"z\"} 5\nplain 2.5\nh_bucket{le=\"+Inf\"} 3\n",
        );
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].label("b"), Some("q\"z"));
        assert_eq!(s[0].value, 5.0);
        assert_eq!(s[1].name, "plain");
        assert_eq!(s[2].label("le"), Some("+Inf"));
    }

    #[test]
    fn capture_drops_and_queues_land_on_their_component() {
        let text = "trawl_events_in_total{component_kind=\"input\",component=\"cap\",component_type=\"http\"} 0\n\
trawl_events_out_total{component_kind=\"input\",component=\"cap\",component_type=\"http\"} 10\n\
trawl_events_in_total{component_kind=\"output\",component=\"es\",component_type=\"elasticsearch\"} 7\n\
trawl_queue_depth{component_kind=\"output\",component=\"es\",component_type=\"elasticsearch\"} 3\n\
trawl_capture_kernel_dropped_total{input=\"cap\",interface=\"eth0\"} 4\n\
trawl_capture_kernel_dropped_total{input=\"cap\",interface=\"eth1\"} 1\n\
trawl_component_up{component_kind=\"output\",component=\"es\"} 0\n";
        let r = rows(&parse_metrics(text));
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].capture_drops, Some(5.0));
        assert_eq!(r[0].buffer, None);
        assert_eq!(r[1].buffer, Some(3.0));
        assert!(!r[1].up);
        let mut later = r.clone();
        later[0].events_out = 30.0;
        let lines = render(&later, Some((&r, Duration::from_secs(2))));
        assert!(lines[1].contains("10.0"), "{}", lines[1]);
        assert!(lines[2].ends_with("FAILED"), "{}", lines[2]);
    }

    #[test]
    fn file_lag_lands_on_its_input_from_the_total_over_every_file() {
        let text = "trawl_events_in_total{component_kind=\"input\",component=\"logs\",component_type=\"file\"} 0\n\
trawl_events_in_total{component_kind=\"output\",component=\"logs\",component_type=\"file\"} 0\n\
trawl_file_lag_bytes{component=\"logs\",path=\"/a\"} 300\n\
trawl_file_lag_total_bytes{component=\"logs\"} 330\n";
        let r = rows(&parse_metrics(text));
        assert_eq!(r[0].lag, Some(330.0));
        assert_eq!(r[1].lag, None);
    }
}
