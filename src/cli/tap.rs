//! `trawl tap`: prints the events a running trawl sees at chosen inputs, processors or outputs,
//! live, as JSON lines (or indented), through its monitoring API's `/api/tap` stream.

use super::monitor::{Api, ApiArgs};
use crate::telemetry::tap::percent_encode;
use std::io::{BufRead, Write};

#[derive(clap::Args, Debug)]
pub struct TapArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Events as this input produces them (a name or a type, `*` matches anything);
    /// repeatable. Without --input, --processor or --output: every output.
    #[arg(long = "input", value_name = "NAME")]
    pub inputs: Vec<String>,
    /// Events as this processor lets them through (`#0`, `#1`... in file order, or a type);
    /// `pipeline` is after every processor, before routing. Repeatable.
    #[arg(long = "processor", value_name = "NAME")]
    pub processors: Vec<String>,
    /// Events as this output is handed them (after its `when:`). Repeatable.
    #[arg(long = "output", value_name = "NAME")]
    pub outputs: Vec<String>,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Show one event in N.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub sample: u64,
    /// Indented JSON instead of one line per event.
    #[arg(long)]
    pub pretty: bool,
    /// Print each event inside `{"component_kind", "component", "event"}`: where it was seen.
    #[arg(long)]
    pub meta: bool,
}

/// Runs the command; returns the exit code.
pub fn run(args: TapArgs) -> i32 {
    let api = match Api::from_args(&args.api) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let mut query = Vec::new();
    for (key, names) in [
        ("input", &args.inputs),
        ("processor", &args.processors),
        ("output", &args.outputs),
    ] {
        for n in names {
            query.push(format!("{key}={}", percent_encode(n)));
        }
    }
    if let Some(n) = args.limit {
        query.push(format!("limit={n}"));
    }
    if args.sample > 1 {
        query.push(format!("sample={}", args.sample));
    }
    let mut answer = match api.get(&format!("/api/tap?{}", query.join("&")), None) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    if answer.status != 200 {
        let mut body = String::new();
        let _ = std::io::Read::read_to_string(&mut answer.body, &mut body);
        eprintln!("error: {}", api.refusal(answer.status, &body));
        return 1;
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut shown = 0u64;
    let mut line = String::new();
    loop {
        line.clear();
        match answer.body.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("error: reading the tap: {e}");
                return 1;
            }
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            eprintln!("error: not a tap line: {:?}", line.trim_end());
            return 1;
        };
        if let Some(notice) = v.get("notice").and_then(|n| n.as_str()) {
            tell(notice, &v);
            continue;
        }
        let shown_value = if args.meta { &v } else { &v["event"] };
        let text = if args.pretty {
            serde_json::to_string_pretty(shown_value)
        } else {
            serde_json::to_string(shown_value)
        }
        .unwrap_or_default();
        // A reader gone (`trawl tap | head`) ends the tap quietly.
        if writeln!(out, "{text}").is_err() {
            return 0;
        }
        shown += 1;
        // Flush when nothing more is waiting, so that a quiet pipeline's events show at once.
        if answer.body.buffer().is_empty() && out.flush().is_err() {
            return 0;
        }
        if args.limit.is_some_and(|l| shown >= l) {
            break;
        }
    }
    let _ = out.flush();
    if args.limit.is_some_and(|l| shown < l) {
        eprintln!("tap: the stream ended after {shown} events (trawl stopped)");
    }
    0
}

/// Prints a notice from trawl on stderr, away from the events.
fn tell(notice: &str, v: &serde_json::Value) {
    match notice {
        "attached" => {
            let points: Vec<&str> = v["points"]
                .as_array()
                .map(|a| a.iter().filter_map(|p| p.as_str()).collect())
                .unwrap_or_default();
            eprintln!("tap: watching {}", points.join(", "));
        }
        "dropped" => eprintln!(
            "tap: {} events dropped: this client reads slower than trawl ships",
            v["dropped"]
        ),
        other => eprintln!("tap: {other}"),
    }
}
