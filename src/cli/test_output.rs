//! `trawl test output`: loads the pipeline as `run` would, then connects to every output and
//! prints each check (Filebeat's `test output`); exit 1 when one failed.

use crate::config::Sources;
use crate::outputs::probe::{self, Outcome};
use crate::pipeline::Pipeline;

pub fn run(sources: &Sources) -> i32 {
    let cfg = match sources.load() {
        Ok(c) => c,
        Err(errs) => {
            super::print_errors(&errs);
            return 1;
        }
    };
    // The same checks as `validate`, so that a probe never runs on a half-valid output.
    if let Err(errs) = Pipeline::build(cfg.clone(), Vec::new()) {
        super::print_errors(&errs);
        return 1;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return 1;
        }
    };
    let mut failed = Vec::new();
    for o in &cfg.outputs {
        let spec = &o.spec;
        println!(
            "{} ({}, {}:{}:{})",
            spec.path, spec.type_name, spec.file, spec.mark.line, spec.mark.col
        );
        let checks = runtime.block_on(probe::probe(spec));
        for c in &checks {
            let word = match c.outcome {
                Outcome::Ok => "ok",
                Outcome::Note => "note",
                Outcome::Failed => "FAILED",
            };
            println!("  {word:<6} {}: {}", c.what, c.detail);
        }
        if checks.iter().any(|c| c.outcome == Outcome::Failed) {
            failed.push(spec.name.clone());
        }
    }
    if failed.is_empty() {
        println!("{} output(s): every check passed", cfg.outputs.len());
        0
    } else {
        println!(
            "{} of {} output(s) failed: {}",
            failed.len(),
            cfg.outputs.len(),
            failed.join(", ")
        );
        1
    }
}
