//! The file-input pipelines of the campaign: writers append to plain and kubelet-style files
//! while a seeded schedule kills, stops, rotates, truncates and churns files, and breaks the
//! output (Elasticsearch errors and timeouts, a stopped Kafka broker, a full disk under the file
//! output and its disk buffer); afterwards every line is looked for in what the output kept.

use super::node::Node;
use super::outcome::{Delivered, DuplicateBound, Outcome, Written};
use super::rng::Rng;
use super::sinks::{wait_for_http, Outage, Sink};
use super::writers::{start_writing, Layout, Stream, LINES_PER_TICK};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Output {
    Elasticsearch,
    Kafka,
    FileDiskBuffer,
}

/// Faults every file pipeline takes; output faults are added per output.
const FILE_FAULTS: &[&str] = &[
    "kill9",
    "kill9",
    "sigterm",
    "rotate",
    "rotate+kill9",
    "copytruncate",
    "truncate",
    "kubelet-rotate",
    "kubelet-rotate+kill9",
    "kubelet-rotate-x3-while-down",
    "new-file+kill9",
    "churn-while-down",
    "delete-active",
];

/// What the command line may force in a run, instead of the seed's draw.
#[derive(Clone, Copy)]
pub struct Knobs {
    /// `Some(false)`: the output never gives a batch up (Kafka without `delivery_timeout`, the
    /// idempotent producer retrying through every outage); `Some(true)`: it always does.
    pub give_up: Option<bool>,
    /// How many times each of the output's faults is in the draw (1: as often as each file
    /// fault; more: several broker restarts per run).
    pub output_fault_weight: usize,
    /// The `es` pipeline delivers to a real OpenSearch node of its own (killed, stopped, hung,
    /// flooded, its index closed) instead of the stand-in.
    pub real_opensearch: bool,
    /// `watch_events: false`: trawl finds new, grown, renamed and deleted files by polling and
    /// scanning alone, as where inotify is missing (NFS) or its limits are spent on a busy node.
    pub polling: bool,
    /// Reloads (SIGHUP) in the draw: the file input's settings changed (it is replaced, and
    /// must resume from its predecessor's committed offsets) or the processor chain changed.
    pub reloads: bool,
}

impl Default for Knobs {
    fn default() -> Knobs {
        Knobs {
            give_up: None,
            output_fault_weight: 1,
            real_opensearch: false,
            polling: false,
            reloads: false,
        }
    }
}

impl Knobs {
    /// The command-line flags that set these knobs, for the replay command.
    pub fn args(&self) -> String {
        let mut a = String::new();
        if let Some(g) = self.give_up {
            a.push_str(if g {
                " --give-up always"
            } else {
                " --give-up never"
            });
        }
        if self.output_fault_weight != 1 {
            a.push_str(&format!(" --output-faults {}", self.output_fault_weight));
        }
        if self.real_opensearch {
            a.push_str(" --real-opensearch");
        }
        if self.polling {
            a.push_str(" --watch-events false");
        }
        if self.reloads {
            a.push_str(" --reloads true");
        }
        a
    }
}

/// One seeded run of a file-input pipeline with `n_faults` faults.
pub fn run(output: Output, name: &'static str, seed: u64, n_faults: u32, knobs: Knobs) -> Outcome {
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let mut o = Outcome {
        pipeline: name,
        seed,
        faults_planned: n_faults,
        replay_args: knobs.args(),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // For triage: the files, the registry and trawl's log of a failed run kept for reading.
    let keep = std::env::var_os("CAMPAIGN_KEEP").is_some();
    let data = root.join("data");
    let start_at = if rng.chance(30) { "end" } else { "beginning" };
    // Drawn even when forced, so that the rest of the seed's schedule stays the same.
    let drawn = rng.chance(50);
    let give_up = knobs.give_up.unwrap_or(drawn);
    // Few open files: rotated files pile up beyond them and must wait for a slot, not starve.
    let max_open = if rng.chance(50) { 4 } else { 1024 };
    o.notes.push(format!(
        "start_at: {start_at}, max_open_files: {max_open}, output gives up after a few attempts: {give_up}, watch_events: {}",
        !knobs.polling
    ));
    let (mut sink, notes) = Sink::start(output, root, &data, knobs.real_opensearch);
    o.notes.extend(notes);
    let bound = DuplicateBound {
        registry_flush_s: 0.25,
        lines_per_s: 3.0 * LINES_PER_TICK as f64 / 0.05,
        max_in_flight: 1 << 20,
        // The shortest message, in the shortest path (`logs/app-0.log`).
        min_event_text: (super::writers::message(0, 0).len()
            + root.join("logs/app-0.log").as_os_str().len()) as u64,
        disk_buffer: output == Output::FileDiskBuffer,
    };
    o.duplicates_per_crash = bound.lines();
    o.notes.push(bound.explain());
    let streams: Vec<Arc<Mutex<Stream>>> = [Layout::Plain, Layout::Plain, Layout::Kubelet]
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let mut s = Stream::create(i as u32, l, root);
            // Lines already there before trawl first starts: with start_at: end, not wanted.
            s.write_lines(10);
            if start_at == "end" {
                s.excused.push((0, s.next_seq));
            }
            Arc::new(Mutex::new(s))
        })
        .collect();
    let plain = [streams[0].clone(), streams[1].clone()];
    let kubelet = streams[2].clone();
    let addr = format!("127.0.0.1:{}", crate::support::process::free_port());
    let cfg = root.join("pipeline.yaml");
    let out_config = sink.config(give_up);
    // `input` and `chain` change with reloads: a setting of the file input that does not touch
    // what it reads (so the input is replaced), and a processor chain of none or one tagger.
    let write_config = |input: u64, chain: u64| {
        let processors = match chain % 2 {
            0 => String::new(),
            _ => format!("processors:\n  - type: add_tags\n    tags: [reload-{chain}]\n"),
        };
        std::fs::write(
            &cfg,
            format!(
                "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\nshutdown_timeout: 3s\npipeline: {{ batch_size: 256, queue_batches: 2 }}\ninputs:\n  logs:\n    type: file\n    paths: [\"{r}/logs/*.log\", \"{r}/logs/*.log.*\", \"{r}/containers/*.log\"]\n    start_at: {start_at}\n    registry_flush: {flush_ms}ms\n    poll_interval: 100ms\n    scan_interval: 1s\n    close_removed: 2s\n    close_inactive: 2s\n    watch_events: {watch}\n    max_open_files: {max_open}\n    max_in_flight: {in_flight}\n    lag_metric_files: {lag}\n{processors}outputs:\n  out:\n{out_config}",
                data = data.display(),
                r = root.display(),
                flush_ms = (bound.registry_flush_s * 1000.0) as u64,
                in_flight = bound.max_in_flight,
                watch = !knobs.polling,
                lag = 100 + input,
            ),
        )
        .unwrap();
    };
    let (mut input_version, mut chain_version) = (0, 0);
    write_config(input_version, chain_version);
    let mut node = Node::new(
        "trawl",
        cfg.clone(),
        root.join("trawl.log"),
        Duration::from_secs(3),
    );
    node.start();
    wait_for_http(&addr);
    // With start_at: end, what is in the files when trawl first looks is skipped: writing
    // starts once that first look has surely happened.
    std::thread::sleep(Duration::from_secs(2));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_writing(streams.clone(), stop.clone());

    let mut kinds: Vec<&'static str> = FILE_FAULTS.to_vec();
    for _ in 0..knobs.output_fault_weight {
        kinds.extend(sink.faults());
    }
    if knobs.reloads {
        kinds.extend(["reload-input", "reload-input", "reload-chain"]);
    }
    let mut outages: Vec<Outage> = Vec::new();
    let at = |t: Instant| t.elapsed().as_secs_f64();
    let pause = |rng: &mut Rng, lo: u64, hi: u64| {
        std::thread::sleep(Duration::from_millis(rng.range(lo, hi)))
    };
    for _ in 0..n_faults {
        pause(&mut rng, 300, 2000);
        let mut still = Vec::new();
        for mut outage in outages.drain(..) {
            if outage.left == 0 {
                o.schedule
                    .push(format!("{:.1}s end {}", at(started), outage.kind));
                sink.end(outage);
            } else {
                outage.left -= 1;
                still.push(outage);
            }
        }
        outages = still;
        node.check_alive();
        node.start();
        let mut kind = rng.pick(&kinds);
        if kind == "delete-active" && !outages.is_empty() {
            // Its lines are required only if trawl can read them before the next crash.
            kind = "rotate";
        }
        let which = rng.range(0, 1) as usize;
        let mut detail = String::new();
        match kind {
            "kill9" | "sigterm" => {}
            "rotate" | "rotate+kill9" => plain[which].lock().unwrap().rotate_rename(),
            "copytruncate" => plain[which].lock().unwrap().copytruncate(),
            "truncate" => plain[which].lock().unwrap().truncate(),
            "kubelet-rotate" | "kubelet-rotate+kill9" => kubelet.lock().unwrap().kubelet_rotate(),
            "kubelet-rotate-x3-while-down" => {
                // A rollout waiting on an image pull: the busy container is rotated three times
                // (each rotated file gzipped at the next) before trawl is back.
                note_deleted_held(&node, &streams);
                node.kill9();
                for _ in 0..3 {
                    pause(&mut rng, 200, 1000);
                    kubelet.lock().unwrap().kubelet_rotate();
                }
            }
            "new-file+kill9" => plain[which].lock().unwrap().new_file(),
            "reload-input" | "reload-chain" => {
                if kind == "reload-input" {
                    input_version += 1;
                } else {
                    chain_version += 1;
                }
                write_config(input_version, chain_version);
                // A trawl started just now (after a crash) may not listen for SIGHUP yet, and
                // would die of it: its handlers are installed just after /metrics is up.
                wait_for_http(&addr);
                std::thread::sleep(Duration::from_millis(100));
                node.hup();
                // Sometimes a crash while the reload drains the replaced input.
                if rng.chance(25) {
                    pause(&mut rng, 0, 1500);
                    note_deleted_held(&node, &streams);
                    node.kill9();
                    detail = String::from(" (then kill -9)");
                }
            }
            "churn-while-down" => {
                note_deleted_held(&node, &streams);
                node.kill9();
                plain[which].lock().unwrap().new_file();
                plain[1 - which].lock().unwrap().short_lived_file(50);
                if rng.chance(50) {
                    if let Some(p) = streams[rng.range(0, 2) as usize]
                        .lock()
                        .unwrap()
                        .delete_oldest_rotated()
                    {
                        detail = format!(" (deleted {})", p.display());
                    }
                }
                pause(&mut rng, 200, 2000);
            }
            "delete-active" => {
                if knobs.polling {
                    // Without inotify a new file is found only by a scan (every second here):
                    // one created (by a rotation just before) and deleted within the second is
                    // never seen, so its lines can be neither read nor counted (seed 1946 with
                    // `--watch-events false`: 460 lines of a file that lived 0.4 s under its
                    // name). A scan is given the time to see it first.
                    std::thread::sleep(Duration::from_secs(2));
                }
                plain[which].lock().unwrap().unlink_active();
                pause(&mut rng, 500, 1500);
                plain[which].lock().unwrap().reopen();
                // Time for trawl to read the deleted file to its end before anything else.
                std::thread::sleep(Duration::from_secs(3));
            }
            output_fault if matches!(sink, Sink::Os { busy: true, .. }) => {
                // A real node's faults do not overlap: each is undone on a running node.
                detail = format!(" (not injected: another node fault in progress, {output_fault})");
            }
            output_fault => {
                if let Some(outage) = sink.inject(output_fault, &mut rng) {
                    detail = format!(" (for {} faults)", outage.left + 1);
                    outages.push(outage);
                }
            }
        }
        if kind.ends_with("kill9") && kind != "churn-while-down" {
            if kind != "kill9" {
                // Right after the rotation or the new file: before trawl sees it, while it reads
                // it, or just after its first lines were delivered (before the registry knew it).
                pause(&mut rng, 0, 1000);
            }
            note_deleted_held(&node, &streams);
            node.kill9();
        }
        if kind == "sigterm" {
            node.term();
            detail = format!(
                " (exit: {})",
                node.term_statuses.last().map_or("none", |s| s.as_str())
            );
        }
        if !node.running() {
            // A SIGTERM that delivered everything in time flushed the registry: nothing is
            // read twice after it.
            let clean = kind == "sigterm"
                && node.term_statuses.last().map(String::as_str) == Some("exit status: 0");
            if !clean {
                o.crashes += 1;
            }
            pause(&mut rng, 0, 1500);
            node.start();
        }

        o.count(kind, at(started), detail);
    }
    for outage in outages.drain(..) {
        sink.end(outage);
    }
    if let Sink::Es(es) = &sink {
        es.with(|s| {
            s.fail_requests.clear();
            s.empty_ok_requests = 0;
        });
    }
    node.start();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    for s in &streams {
        s.lock().unwrap().reopen();
    }
    o.schedule.push(format!("{:.1}s drain", at(started)));
    drain(&mut node, &sink, &addr);
    node.term();
    let status = |node: &Node| node.term_statuses.last().cloned().unwrap_or_default();
    o.notes.push(format!(
        "exit status after the final SIGTERM: {}",
        status(&node)
    ));
    let (mut delivered, mut overwritten) = sink.delivered();
    // The promise is "nothing is lost when trawl restarts": a line trawl had not delivered when
    // the drain ended (an output still in its back-off, a file not read to its end) is still in
    // its registry or its disk buffer, and a stop that left events undelivered says so in its
    // exit status. Such lines are lost only if a restart does not deliver them either.
    let missing = missing_lines(&streams, &delivered);
    if missing > 0 {
        let clean_exit = status(&node) == "exit status: 0";
        if !clean_exit {
            // It stopped with events in flight: what was sent and not acknowledged is sent again.
            o.crashes += 1;
        }
        o.schedule.push(format!(
            "{:.1}s restart ({missing} lines missing)",
            at(started)
        ));
        node.start();
        drain(&mut node, &sink, &addr);
        node.term();
        (delivered, overwritten) = sink.delivered();
        let late = missing - missing_lines(&streams, &delivered);
        o.notes.push(format!(
            "{missing} required lines were not delivered at the final SIGTERM; trawl started once more, {late} of them were delivered then (exit status: {})",
            status(&node)
        ));
        if clean_exit && late > 0 {
            // Exit 0 says nothing read was left undelivered: these lines sat unread in their
            // files while the output stored nothing for the whole drain, a stalled reader.
            o.violations.push(format!(
                "{late} lines were not read during the drain (the output idle for 10 s) though trawl then exited 0; a restart delivered them"
            ));
        }
    }
    if knobs.reloads {
        // For the notes: how many reloads were done (one cut short by a kill -9 is not).
        let text = std::fs::read_to_string(root.join("trawl.log")).unwrap_or_default();
        let done: Vec<&str> = text.lines().filter(|l| l.contains("reloaded: ")).collect();
        o.notes.push(format!(
            "reloads done: {} (input replaced in {}, chain changed in {})",
            done.len(),
            done.iter().filter(|l| l.contains("logs")).count(),
            done.iter().filter(|l| l.contains("processor")).count()
        ));
    }
    // A batch an output gave up on is read again from its file, and what followed it, already
    // sent, is sent again: like a crash, each failed round may repeat what was in flight.
    let failed_rounds = failed_rounds(&root.join("trawl.log"));
    if failed_rounds > 0 {
        o.crashes += failed_rounds;
        o.notes.push(format!(
            "{failed_rounds} rounds of batches given up and read again (counted as crashes)"
        ));
    }
    for s in &streams {
        let mut s = s.lock().unwrap();
        let id = s.id;
        let excused = s.excuse_held_at_kill(&|q| !delivered.copies.contains_key(&(id, q)));
        if excused > 0 {
            o.notes.push(format!(
                "w{id:02}: {excused} lines of files deleted while written excused: trawl held them open when it was killed"
            ));
        }
    }
    // A file deleted before it got a `max_open_files` slot: its unread lines are the risk that
    // limit takes, excused only where trawl counted and named the file; the same for a deleted
    // file trawl held but could not deliver before a stop.
    for (path, from) in skipped_files(&root.join("trawl.log")) {
        let mut excused = 0;
        for s in &streams {
            let mut s = s.lock().unwrap();
            let id = s.id;
            excused += s.excuse_skipped(&path, from, &|q| !delivered.copies.contains_key(&(id, q)));
        }
        o.notes.push(format!(
            "trawl counted {} as deleted while waiting for a slot, lost from byte {from}: {excused} of its lines excused",
            path.display()
        ));
    }
    if let Sink::Os { node: os, dead, .. } = &sink {
        // Outages far shorter than `retry.max_item_age` (5 minutes): nothing may go there.
        let text = std::fs::read_to_string(dead).unwrap_or_default();
        let dead_lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        o.dead_letters = Some(dead_lines.len() as u64);
        if let Some(first) = dead_lines.first() {
            o.violations.push(format!(
                "{} events dead-lettered; first: {}",
                dead_lines.len(),
                first.chars().take(400).collect::<String>()
            ));
        }
        // One document per `_id`: `_count` must agree with the documents scrolled.
        let count = os
            .request(reqwest::Method::GET, "/campaign/_count")
            .send()
            .ok()
            .and_then(|r| r.json::<serde_json::Value>().ok())
            .and_then(|v| v["count"].as_u64());
        let scrolled: u64 = delivered.copies.values().sum::<u64>() + delivered.garbled;
        o.notes.push(format!(
            "the real node: _count {count:?}, documents scrolled {scrolled}, written over their _id {overwritten}"
        ));
        if count.is_some_and(|c| c != scrolled) {
            o.violations.push(format!(
                "the index's _count {count:?} is not the {scrolled} documents scrolled"
            ));
        }
    }
    o.max_rss_kib = node.max_rss_kib.load(Ordering::Relaxed);
    o.violations.append(&mut node.violations);
    o.overwritten = overwritten;
    let locked: Vec<_> = streams.iter().map(|s| s.lock().unwrap()).collect();
    let excused: Vec<Box<dyn Fn(u64) -> bool>> = locked
        .iter()
        .map(|s| Box::new(move |q| s.is_excused(q)) as Box<dyn Fn(u64) -> bool>)
        .collect();
    let where_is: Vec<Box<dyn Fn(u64) -> String>> = locked
        .iter()
        .map(|s| Box::new(move |q| s.where_is(q)) as Box<dyn Fn(u64) -> String>)
        .collect();
    let written: Vec<Written> = locked
        .iter()
        .enumerate()
        .map(|(i, s)| Written {
            id: s.id,
            count: s.next_seq,
            excused: &*excused[i],
            where_is: &*where_is[i],
        })
        .collect();
    o.check(&written, &delivered, output == Output::Elasticsearch);
    if output == Output::Kafka {
        // The idempotent producer's promise: librdkafka's retries across a broker restart add
        // no copy. Only a process that gave a batch up (delivery_timeout) re-reads it itself.
        let (same, first) = delivered.same_process_duplicates();
        o.same_process_duplicates = Some((same, give_up));
        o.notes.push(format!(
            "duplicates sent by one trawl process: {same} (across processes, after crashes: {})",
            o.duplicates - same
        ));
        // Nor do they reorder: within one partition, the lines one process read from one plain
        // file keep their order. Only a process that gave a batch up goes back. One file: a
        // file renamed while trawl was stopped is resumed under its old name (as the kubelet's
        // rotated files are, below), beside the new file of that name, and the two are read
        // side by side (seed 2400 of the kafka pipeline: "app-0.log seq 7650 after 9249" after
        // a rotate+kill9), so the path alone does not tell one file.
        let file_of = |id: u32, seq: u64| {
            locked
                .iter()
                .find(|s| s.id == id)
                .and_then(|s| s.file_of(seq))
        };
        let (reordered, first_reordered) = reordered_in_partitions(&sink, &file_of);
        o.notes.push(format!(
            "lines sent by one process out of their order within a partition: {reordered}"
        ));
        if reordered > 0 && !give_up {
            o.violations.push(format!(
                "{reordered} lines came before an earlier line of the same file, process and partition with the idempotent producer and no delivery_timeout; first: {}",
                first_reordered.join(", ")
            ));
        }
        if same > 0 && !give_up {
            o.violations.push(format!(
                "{same} lines sent twice by the same trawl process with the idempotent producer and no delivery_timeout (broker restarts: {}); first: {}",
                o.faults.get("broker-restart").copied().unwrap_or(0),
                first.join(", ")
            ));
        }
    }
    o.seconds = at(started);
    if !o.violations.is_empty() {
        o.notes.push(format!(
            "trawl's log ends with:\n{}",
            super::node::log_tail(&root.join("trawl.log"))
        ));
        // The whole log, for what happened at earlier starts (a replay may not fail again).
        let whole = std::env::temp_dir().join(format!("trawl-campaign-{name}-{seed}.log"));
        if std::fs::copy(root.join("trawl.log"), &whole).is_ok() {
            o.notes
                .push(format!("trawl's whole log: {}", whole.display()));
        }
        if keep {
            o.notes
                .push(format!("kept (CAMPAIGN_KEEP): {}", dir.keep().display()));
        }
    }
    o
}

/// How many times an output failed batches that the file input then read again, from trawl's
/// log: the `failures=N` of each "file delivered again after failed batches" line.
fn failed_rounds(log: &Path) -> u64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("file delivered again after failed batches"))
        .filter_map(|l| l.split("failures=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Kafka only: lines stored after a later line of the same writer sent by the same trawl
/// process, read from the same plain file, in the same partition; with the first few.
fn reordered_in_partitions(
    sink: &Sink,
    file_of: &dyn Fn(u32, u64) -> Option<u64>,
) -> (u64, Vec<String>) {
    let Sink::Kafka(b) = sink else {
        return (0, Vec::new());
    };
    let mut last: std::collections::HashMap<(String, i32, String, String, Option<u64>), u64> =
        std::collections::HashMap::new();
    let (mut n, mut first) = (0, Vec::new());
    // In partition and offset order.
    for r in b.read_all("campaign") {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap_or_default();
        let Some((id, seq)) = v["message"].as_str().and_then(super::writers::parse) else {
            continue;
        };
        let process = r
            .headers
            .iter()
            .find(|(k, _)| k == "trawl_start")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let path = v["log"]["file"]["path"].as_str().unwrap_or("").to_owned();
        if path.contains("/containers/") {
            // A kubelet stream's files are all named by its `/var/log/containers` link: the
            // rotated `0.log.<time>` and the new `0.log` are read side by side under one name,
            // so their lines interleave by design. Plain files name one file each.
            continue;
        }
        let stream = v["stream"].as_str().unwrap_or("").to_owned();
        let key = (process, r.partition, path, stream, file_of(id, seq));
        if let Some(&before) = last.get(&key) {
            if seq < before {
                n += 1;
                if first.len() < 3 {
                    first.push(format!(
                        "{} seq {seq} after {before} (partition {}, offset {})",
                        key.2, r.partition, r.offset
                    ));
                }
            }
        }
        last.insert(key, seq);
    }
    (n, first)
}

/// Tells the streams which deleted files trawl holds open just before it is killed (from
/// `/proc/<pid>/fd`): their lines not delivered by then are gone with it, whatever it does.
fn note_deleted_held(node: &Node, streams: &[Arc<Mutex<Stream>>]) {
    use std::os::unix::fs::MetadataExt;
    let pid = node.pid();
    if pid == 0 {
        return;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return;
    };
    let inodes: Vec<u64> = fds
        .flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy().ends_with(" (deleted)"))
        })
        .filter_map(|fd| std::fs::metadata(fd.path()).ok().map(|m| m.ino()))
        .collect();
    for s in streams {
        s.lock().unwrap().held_at_kill(&inodes);
    }
}

/// The files trawl's log says were deleted while they waited for a `max_open_files` slot, with
/// the byte offset from which it says their content was lost, once per time it said so.
fn skipped_files(log: &Path) -> Vec<(PathBuf, u64)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let field = |l: &str, name: &str| -> Option<String> {
        l.split(&format!(" {name}="))
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
    };
    let mut files = Vec::new();
    for l in text.lines() {
        if l.contains("was deleted before it got one") {
            if let (Some(path), Some(Ok(from))) =
                (field(l, "path"), field(l, "offset").map(|o| o.parse()))
            {
                files.push((PathBuf::from(path), from));
            }
        } else if l.contains("stopped with deleted files not delivered to their end") {
            // The exit's list: `path=… offset=… unread_bytes=…` per file, `; ` between them.
            for part in l.split("path=").skip(1) {
                let path = part.split_whitespace().next();
                let from = field(part, "offset").and_then(|o| o.parse().ok());
                if let (Some(path), Some(from)) = (path, from) {
                    files.push((PathBuf::from(path), from));
                }
            }
        }
    }
    files
}

/// Required lines (written and not excused) of which the output holds no copy.
fn missing_lines(streams: &[Arc<Mutex<Stream>>], delivered: &Delivered) -> u64 {
    let mut n = 0;
    for s in streams {
        let s = s.lock().unwrap();
        n += (0..s.next_seq)
            .filter(|&q| !s.is_excused(q) && !delivered.copies.contains_key(&(s.id, q)))
            .count() as u64;
    }
    n
}

/// Lets trawl deliver what is left: until the output has stored nothing new for 10 s, at most
/// three minutes.
fn drain(node: &mut Node, sink: &Sink, metrics: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut last = -2.0;
    let mut idle_since = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        node.check_alive();
        node.start();
        let now = sink.progress(metrics);
        if now != last {
            last = now;
            idle_since = Instant::now();
        } else if idle_since.elapsed() > Duration::from_secs(10) {
            return;
        }
    }
}
