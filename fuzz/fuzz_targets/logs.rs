#![no_main]
//! Coverage-guided fuzzing of what a log line meets: line framing (a small max line), the CRI
//! and Docker decoders, and the processor chains of the shipped example pipelines plus json,
//! timestamp, dissect, key_value, syslog, redact and throttle on the decoded line.

use libfuzzer_sys::fuzz_target;
use std::sync::Mutex;
use std::sync::{Arc, OnceLock};
use trawl::config::parse_str;
use trawl::event::Event;
use trawl::inputs::file::container;
use trawl::inputs::lines::{Line, LineSplitter};
use trawl::inputs::BuildContext;
use trawl::processors::{self, Processor};
use trawl::telemetry::metrics::Registry;

const EXTRA: &str = r#"
  - { type: json, target: doc }
  - { type: json, overwrite_keys: true }
  - { type: timestamp, field: doc.time, formats: [rfc3339, epoch_ms, '%d/%b/%Y:%H:%M:%S %z', '%b %d %H:%M:%S', '%Y-%m-%d %H:%M:%S,%3f'], timezone: Europe/Paris, ignore_missing: true }
  - { type: timestamp, field: message, formats: [epoch_s, epoch_ns, '%Y-%m-%dT%H:%M:%S%.f'], timezone: '+02:00' }
  - { type: dissect, tokenizer: '%{a} %{+a} %{?skip} %{n|int}->%{rest}', target: d, trim_values: all }
  - { type: rename, fields: [{from: d.a, to: doc.a}], ignore_missing: true }
  - { type: key_value, target: kv, standalone_keys: true, types: {n: int, at: timestamp} }
  - { type: key_value, field: d.rest, field_split: "&;", value_split: "=:", target: q, ignore_missing: true }
  - { type: syslog, field: doc.line, ignore_missing: true }
  - { type: syslog, timezone: America/New_York }
  - { type: regex, patterns: ['^(?<x.y>\d+)\s+(?<level>[A-Z]+)?(?<tail>.*)$'] }
  - { type: redact, fields: [message, kv.password, doc.a], builtins: [credit_card, email, bearer_token, authorization, jwt, aws_access_key_id, url_password, password], patterns: ['id=(?<secret>\w+)'], tag: redacted }
  - { type: throttle, limit: 1000, key_fields: [message, doc.a, kv.n], clock: event }
"#;

fn chains() -> &'static Vec<Mutex<Vec<Box<dyn Processor>>>> {
    static C: OnceLock<Vec<Mutex<Vec<Box<dyn Processor>>>>> = OnceLock::new();
    C.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../pipelines/examples");
        let mut texts: Vec<String> = std::fs::read_dir(dir)
            .expect("examples")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("loghub-"))
            .map(|e| std::fs::read_to_string(e.path()).expect("read"))
            .collect();
        texts.sort();
        texts.push(format!("inputs:\n  app: {{ type: stdin }}\nprocessors:{EXTRA}outputs:\n  o: {{ type: \"null\" }}\n"));
        let ctx = BuildContext {
            data_dir: std::env::temp_dir(),
            registry: Registry::new(),
            endpoints: Default::default(),
        };
        texts
            .iter()
            .map(|t| {
                let cfg = parse_str("fuzz.yaml", t, &|_| None).expect("pipeline");
                Mutex::new(
                    cfg.processors
                        .iter()
                        .map(|p| processors::build(&p.spec, &ctx).expect("processor"))
                        .collect(),
                )
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let chains = chains();
    let mut chain = chains[sel as usize % chains.len()].lock().unwrap();
    let max = 16 + (sel as usize >> 4) * 64;
    let mut splitter = LineSplitter::new(max, 0);
    let mut lines = Vec::new();
    // Fed in two pieces, as reads cut lines anywhere.
    let cut = rest.len() / 3;
    splitter.push(&rest[..cut], &mut |l, info| lines.push((l.to_vec(), info)));
    splitter.push(&rest[cut..], &mut |l, info| lines.push((l.to_vec(), info)));
    splitter.finish(&mut |l, info| lines.push((l.to_vec(), info)));
    let input: Arc<str> = "app".into();
    let ts = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    for (bytes, info) in lines {
        let _ = container::detect(&bytes);
        let text = match container::decode_cri(&bytes).or_else(|| container::decode_docker(&bytes))
        {
            Some(d) => String::from_utf8_lossy(&d.message).into_owned(),
            None => {
                let (line, _) = Line::decoded(&bytes, info);
                line.text
            }
        };
        let mut e = Event::from_message(input.clone(), ts, text);
        for p in chain.iter_mut() {
            let _ = p.process(&mut e);
        }
        let _ = std::hint::black_box(&e);
    }
});
