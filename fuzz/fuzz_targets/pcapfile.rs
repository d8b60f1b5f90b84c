#![no_main]
//! Coverage-guided fuzzing of `trawl pcap`'s file reading: pcap (both byte orders, micro and
//! nanoseconds), pcapng (sections, interfaces, options), gzip, cut short or damaged, into an
//! engine with every protocol and flows on.

use libfuzzer_sys::fuzz_target;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use trawl::wire::out::Out;
use trawl::wire::registry::{self, Protocols};
use trawl::wire::{capture, Analyzers, Engine, Stats};

fuzz_target!(|data: &[u8]| {
    let path = format!("/dev/shm/trawl-fuzz-{}.pcap", std::process::id());
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let mut protocols = Protocols::default();
    for r in registry::registered() {
        protocols.insert((r.default)());
    }
    let analyzers = Analyzers {
        flows: Some(Default::default()),
        protocols,
        ..Default::default()
    };
    let mut e = Engine::new(
        Arc::from("fuzz"),
        analyzers,
        Arc::new(Stats::default()),
        None,
    );
    e.out = Out::json();
    let stop = AtomicBool::new(false);
    let _ = capture::read_file(std::path::Path::new(&path), &mut e, &stop, 64, &mut |e| {
        if let Out::Json { buf, lines, .. } = &mut e.out {
            for l in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                if let Err(err) = serde_json::from_slice::<serde_json::Value>(l) {
                    panic!("not JSON ({err}): {}", String::from_utf8_lossy(l));
                }
            }
            buf.clear();
            *lines = 0;
        }
        true
    });
});
