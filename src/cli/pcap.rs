//! `trawl pcap FILE [-c PIPELINE]`: decodes a capture file and prints its flows and HTTP
//! transactions as JSON lines on stdout (without `-c`), or feeds it to a pipeline's processors
//! and outputs as an extra input named `pcap` (with `-c`). Time comes from the packets.

use crate::inputs::packet::http::HttpConfig;
use crate::inputs::packet::input::{PacketInput, PcapFileConfig};
use crate::inputs::packet::out::Out;
use crate::inputs::packet::{capture, Analyzers, Engine, Stats};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// What `trawl pcap` reports without `-c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Report {
    Flows,
    Http,
}

/// Runs the command; returns the exit code (1 when the file is unreadable or damaged).
pub fn run(file: PathBuf, config: Option<PathBuf>, only: Vec<Report>, http_ports: Vec<u16>) -> i32 {
    match config {
        Some(c) => with_pipeline(file, &c),
        None => print_events(file, &only, http_ports),
    }
}

fn print_events(file: PathBuf, only: &[Report], http_ports: Vec<u16>) -> i32 {
    let both = only.is_empty();
    let analyzers = Analyzers {
        flows: (both || only.contains(&Report::Flows)).then(Default::default),
        http: (both || only.contains(&Report::Http)).then(|| HttpConfig {
            ports: http_ports,
            ..Default::default()
        }),
        dedup_window: None,
    };
    let stats = Arc::new(Stats::default());
    let mut engine = Engine::new(Arc::from("pcap"), analyzers, stats, None);
    // The analyzers write JSON lines straight into one buffer (no event maps); it goes out in
    // one write per batch and keeps its capacity.
    engine.out = Out::json();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut broken = false;
    let mut flush = |e: &mut Engine| {
        let Out::Json { buf, lines, .. } = &mut e.out else {
            return true;
        };
        if out.write_all(buf).is_err() {
            broken = true;
            return false;
        }
        buf.clear();
        *lines = 0;
        true
    };
    let stop = AtomicBool::new(false);
    let summary = capture::read_file(&file, &mut engine, &stop, 1024, &mut flush);
    let _ = out.flush();
    if broken {
        return 0; // stdout closed (a pager or `head` quit): not trawl's error.
    }
    match summary {
        Ok(s) => match s.error {
            Some(e) => {
                eprintln!("error: capture file is damaged, decoded what came before: {e}");
                1
            }
            None => 0,
        },
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn with_pipeline(file: PathBuf, config: &PathBuf) -> i32 {
    let cfg = match super::load(Some(config)) {
        Ok(c) => c,
        Err(errs) => {
            for e in &errs.0 {
                eprintln!("error: {e}");
            }
            return 1;
        }
    };
    let pcap_cfg = PcapFileConfig {
        path: file,
        flows: None,
        http: None,
        dedup_window: Default::default(),
    };
    let input = match PacketInput::pcap_file("pcap", pcap_cfg, None) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {}", e.message);
            return 1;
        }
    };
    super::run_pipeline(cfg, vec![("pcap".to_owned(), Box::new(input))])
}
