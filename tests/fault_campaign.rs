//! A seeded, randomized fault campaign for delivery: the real trawl binary runs file → Elasticsearch,
//! file → Kafka, file → file (disk buffer) and tee → socket → file while writers keep writing and
//! a schedule drawn from a seed kills it, stops it, rotates, truncates and churns its files and
//! breaks its outputs; then every line written is looked for (0 lost, exactly once by `_id`,
//! duplicates within a bound per crash, no hang, bounded memory).
//!
//! `cargo test --release --test fault_campaign` runs the short form (the seeds below);
//! `cargo test --release --test fault_campaign -- --minutes 20 --seed 42` runs seeds 42, 43...
//! for 20 minutes and prints the table; `--pipeline NAME`, `--faults N` and `--runs N` narrow it
//! (each failure prints the command that replays it).

mod support {
    pub mod es_server;
    pub mod kafka;
    pub mod process;
}
mod campaign;

use campaign::files::Output;
use campaign::outcome::{table, Outcome};
use std::time::{Duration, Instant};

const PIPELINES: &[&str] = &["es", "kafka", "file-disk", "tee"];

/// The short form: one seed per pipeline, few faults, under 3 minutes on two busy cores.
const SHORT: &[(u64, &str, u32)] = &[
    (1, "es", 8),
    (2, "file-disk", 8),
    (3, "tee", 6),
    (4, "kafka", 6),
];

/// Seeds on which the campaign found a failure, replayed by the short form: (seed, pipeline,
/// faults, what it found).
const REGRESSIONS: &[(u64, &str, u32, &str)] = &[];

fn run_one(seed: u64, pipeline: &str, faults: u32) -> Outcome {
    let result = std::panic::catch_unwind(|| match pipeline {
        "es" => campaign::files::run(Output::Elasticsearch, "es", seed, faults),
        "kafka" => campaign::files::run(Output::Kafka, "kafka", seed, faults),
        "file-disk" => campaign::files::run(Output::FileDiskBuffer, "file-disk", seed, faults),
        "tee" => campaign::tee::run(seed, faults),
        other => panic!("unknown pipeline {other}: one of {PIPELINES:?}"),
    });
    match result {
        Ok(o) => o,
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Outcome {
                pipeline: PIPELINES
                    .iter()
                    .find(|p| **p == pipeline)
                    .copied()
                    .unwrap_or("?"),
                seed,
                faults_planned: faults,
                violations: vec![format!("the run itself failed: {why}")],
                ..Default::default()
            }
        }
    }
}

fn report(o: &Outcome, verbose: bool) {
    println!("{}", o.summary());
    if !o.violations.is_empty() || verbose {
        for n in &o.notes {
            println!("  note: {n}");
        }
        println!("  schedule: {}", o.schedule.join(", "));
        for v in &o.violations {
            println!("  VIOLATION: {v}");
        }
        println!("  replay: {}", o.replay());
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| -> Option<String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    if let Some(ticks) = value("--emit") {
        campaign::tee::emit(ticks.parse().expect("--emit TICKS"));
        return;
    }
    let number = |name: &str| -> Option<u64> {
        value(name).map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number, not {v:?}"))
        })
    };
    // `cargo test` passes its own flags (and --list for discovery): only ours matter.
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let long = number("--minutes").is_some() || number("--seed").is_some();
    let mut outcomes = Vec::new();
    let started = Instant::now();
    if long {
        let minutes = number("--minutes").unwrap_or(0);
        let runs = number("--runs").unwrap_or(u64::MAX);
        let seed = number("--seed").unwrap_or(42);
        let only = value("--pipeline");
        let faults = number("--faults").unwrap_or(40) as u32;
        let budget = Duration::from_secs(minutes * 60);
        let mut n = 0;
        while n < runs && (n == 0 || started.elapsed() < budget) {
            let s = seed + n;
            let pipeline = only
                .clone()
                .unwrap_or_else(|| PIPELINES[(s % PIPELINES.len() as u64) as usize].to_owned());
            let o = run_one(s, &pipeline, faults);
            report(&o, false);
            outcomes.push(o);
            n += 1;
        }
        println!("\n{}", table(&outcomes));
    } else {
        for &(seed, pipeline, faults, what) in REGRESSIONS {
            println!("regression (found: {what}):");
            let o = run_one(seed, pipeline, faults);
            report(&o, false);
            outcomes.push(o);
        }
        for &(seed, pipeline, faults) in SHORT {
            let o = run_one(seed, pipeline, faults);
            report(&o, false);
            outcomes.push(o);
        }
    }
    let failed = outcomes.iter().filter(|o| !o.violations.is_empty()).count();
    println!(
        "fault campaign: {} runs in {:.0}s; {} passed, {failed} failed",
        outcomes.len(),
        started.elapsed().as_secs_f64(),
        outcomes.len() - failed
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
