//! What one campaign run found, checked against the delivery invariants, and the long form's
//! table (faults by kind; lines written, delivered, lost, duplicated per pipeline).

use std::collections::{BTreeMap, HashMap};

/// Resident memory trawl may reach under the campaign's load before it counts as unbounded.
pub const RSS_CAP_KIB: u64 = 512 * 1024;

/// The duplicate bound per crash of a file-input pipeline, from what the README documents (its
/// "What is guaranteed, precisely"): after a crash the file input reads again what was
/// acknowledged since the last `registry_flush` (at the writers' rate) and what was in flight
/// (at most `max_in_flight` bytes, each event counted as `EVENT_BYTES` plus its line and path),
/// and a disk buffer sends again what was delivered since its position was last saved (500 ms).
pub struct DuplicateBound {
    pub registry_flush_s: f64,
    pub lines_per_s: f64,
    pub max_in_flight: u64,
    /// The shortest line plus the shortest path an event can carry (the most events in flight).
    pub min_event_text: u64,
    pub disk_buffer: bool,
}

/// What the file input counts per event towards `max_in_flight` besides its line and path.
pub const EVENT_BYTES: u64 = 600;

/// How often a disk buffer saves the position delivered to its output.
pub const DISK_BUFFER_POSITION_S: f64 = 0.5;

impl DuplicateBound {
    pub fn lines(&self) -> u64 {
        let flush = (self.registry_flush_s * self.lines_per_s).ceil() as u64;
        let in_flight = self.max_in_flight / (EVENT_BYTES + self.min_event_text);
        let replay = if self.disk_buffer {
            (DISK_BUFFER_POSITION_S * self.lines_per_s).ceil() as u64
        } else {
            0
        };
        flush + in_flight + replay
    }

    pub fn explain(&self) -> String {
        format!(
            "duplicate bound per crash {}: registry_flush {}s x {} lines/s + max_in_flight {} B / ({EVENT_BYTES} + {} B) per event{}",
            self.lines(),
            self.registry_flush_s,
            self.lines_per_s,
            self.max_in_flight,
            self.min_event_text,
            if self.disk_buffer {
                format!(" + the disk buffer's {DISK_BUFFER_POSITION_S}s of replay")
            } else {
                String::new()
            }
        )
    }
}

#[derive(Default)]
pub struct Outcome {
    pub pipeline: &'static str,
    pub seed: u64,
    pub faults_planned: u32,
    /// Flags that forced knobs of the run (`files::Knobs::args`), repeated in the replay.
    pub replay_args: String,
    pub faults: BTreeMap<&'static str, u64>,
    pub schedule: Vec<String>,
    pub written: u64,
    pub required: u64,
    pub delivered: u64,
    pub lost: u64,
    pub excused_lost: u64,
    pub duplicates: u64,
    /// Faults after which lines may be read or sent twice: kill -9, a SIGTERM that passed its
    /// deadline (exit status not 0), an output given up on and its batch read again.
    pub crashes: u64,
    /// Duplicates allowed per crash (see `DuplicateBound`); 0 with exactly-once outputs.
    pub duplicates_per_crash: u64,
    /// Of the duplicates, those one trawl process sent twice (Kafka), and whether the run's
    /// output gave batches up (delivery_timeout), the one way a process may.
    pub same_process_duplicates: Option<(u64, bool)>,
    /// Lines an output wrote more than once over the same id (Elasticsearch overwrites).
    pub overwritten: u64,
    /// Events sent to the dead letters (a real OpenSearch node's run; `None`: none configured).
    pub dead_letters: Option<u64>,
    pub garbled: u64,
    pub max_rss_kib: u64,
    pub seconds: f64,
    pub violations: Vec<String>,
    pub notes: Vec<String>,
}

/// The lines of one writer: how many it wrote, and which it excuses and why a line went where.
pub struct Written<'a> {
    pub id: u32,
    pub count: u64,
    pub excused: &'a dyn Fn(u64) -> bool,
    pub where_is: &'a dyn Fn(u64) -> String,
}

/// Copies delivered per line, from delivered messages (garbled ones counted apart).
#[derive(Default)]
pub struct Delivered {
    pub copies: HashMap<(u32, u64), u64>,
    /// Copies per line and per trawl process that sent them, where the output says (Kafka).
    pub copies_by_process: HashMap<((u32, u64), String), u64>,
    pub garbled: u64,
    pub first_garbled: Vec<String>,
}

impl Delivered {
    pub fn add(&mut self, message: Option<&str>) {
        self.add_sent_by(message, None)
    }

    /// `add`, knowing which trawl process (its start number) sent the message.
    pub fn add_sent_by(&mut self, message: Option<&str>, process: Option<&str>) {
        match message.and_then(super::writers::parse) {
            Some(k) => {
                *self.copies.entry(k).or_insert(0) += 1;
                if let Some(p) = process {
                    *self.copies_by_process.entry((k, p.to_owned())).or_insert(0) += 1;
                }
            }
            None => {
                self.garbled += 1;
                if self.first_garbled.len() < 3 {
                    self.first_garbled.push(
                        message
                            .unwrap_or("(no message)")
                            .chars()
                            .take(120)
                            .collect(),
                    );
                }
            }
        }
    }

    /// Copies beyond the first that one trawl process sent of the same line, and the first few
    /// such lines: not a re-read after a crash, but a retry inside the process.
    pub fn same_process_duplicates(&self) -> (u64, Vec<String>) {
        let mut n = 0;
        let mut first = Vec::new();
        for (((id, seq), process), copies) in &self.copies_by_process {
            if *copies > 1 {
                n += copies - 1;
                if first.len() < 3 {
                    first.push(format!("w{id:02} {seq:09} x{copies} by start {process}"));
                }
            }
        }
        (n, first)
    }
}

impl Outcome {
    /// Counts lost and duplicated lines and records the invariants they break. `exactly_once`:
    /// the output stores by deterministic id, so any second copy is a violation.
    pub fn check(&mut self, written: &[Written], delivered: &Delivered, exactly_once: bool) {
        // Lost lines grouped by writer and the file that held them, for triage.
        let mut lost_by_file: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut first_dup = Vec::new();
        // Duplicates grouped the same way: which file (and fault) they came from.
        let mut dup_by_file: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for w in written {
            self.written += w.count;
            for seq in 0..w.count {
                let excused = (w.excused)(seq);
                if !excused {
                    self.required += 1;
                }
                match delivered.copies.get(&(w.id, seq)).copied().unwrap_or(0) {
                    0 if excused => self.excused_lost += 1,
                    0 => {
                        self.lost += 1;
                        lost_by_file
                            .entry(format!("w{:02} in {}", w.id, (w.where_is)(seq)))
                            .or_insert((0, seq))
                            .0 += 1;
                    }
                    n => {
                        self.delivered += 1;
                        self.duplicates += n - 1;
                        if n > 1 {
                            dup_by_file
                                .entry(format!("w{:02} in {}", w.id, (w.where_is)(seq)))
                                .or_insert((0, seq))
                                .0 += n - 1;
                        }
                        if n > 1 && first_dup.len() < 3 {
                            first_dup.push(format!(
                                "w{:02} {seq:09} x{n} ({})",
                                w.id,
                                (w.where_is)(seq)
                            ));
                        }
                    }
                }
            }
        }
        let stray = delivered
            .copies
            .keys()
            .filter(|(id, seq)| !written.iter().any(|w| w.id == *id && *seq < w.count))
            .count() as u64;
        self.garbled = delivered.garbled + stray;
        if self.lost > 0 {
            let groups: Vec<String> = lost_by_file
                .iter()
                .map(|(file, (n, first))| format!("{n} from {first} ({file})"))
                .collect();
            self.violations.push(format!(
                "{} of {} required lines lost: {}",
                self.lost,
                self.required,
                groups.join("; ")
            ));
        }
        if exactly_once && self.duplicates > 0 {
            self.violations.push(format!(
                "{} lines stored more than once under different ids; first: {}",
                self.duplicates,
                first_dup.join(", ")
            ));
        }
        let bound = self.crashes * self.duplicates_per_crash;
        if !exactly_once && self.duplicates > bound {
            let groups: Vec<String> = dup_by_file
                .iter()
                .map(|(file, (n, first))| format!("{n} from {first} ({file})"))
                .collect();
            self.violations.push(format!(
                "{} duplicates exceed the bound of {bound} ({} crashes x {}): {}",
                self.duplicates,
                self.crashes,
                self.duplicates_per_crash,
                groups.join("; ")
            ));
        }
        if self.garbled > 0 {
            self.violations.push(format!(
                "{} delivered messages are not lines written (cut, joined or invented); first: {:?}",
                self.garbled, delivered.first_garbled
            ));
        }
        if self.max_rss_kib > RSS_CAP_KIB {
            self.violations.push(format!(
                "trawl's resident memory reached {} MiB (cap {} MiB)",
                self.max_rss_kib / 1024,
                RSS_CAP_KIB / 1024
            ));
        }
    }

    pub fn count(&mut self, fault: &'static str, at: f64, detail: String) {
        *self.faults.entry(fault).or_insert(0) += 1;
        self.schedule.push(format!("{at:.1}s {fault}{detail}"));
    }

    pub fn summary(&self) -> String {
        let faults: u64 = self.faults.values().sum();
        let same = match self.same_process_duplicates {
            Some((n, give_up)) => format!(
                " ({n} by one process, {})",
                if give_up {
                    "delivery_timeout 5s"
                } else {
                    "no delivery_timeout"
                }
            ),
            None => String::new(),
        };
        let dead = self
            .dead_letters
            .map(|n| format!(", {n} dead-lettered"))
            .unwrap_or_default();
        format!(
            "seed {} {}: {} faults ({} crashes), {:.0}s; {} lines written, {} required, {} delivered, {} lost, {} excused not delivered, {} duplicated{same}, {} overwritten{dead}, max RSS {} MiB: {}",
            self.seed,
            self.pipeline,
            faults,
            self.crashes,
            self.seconds,
            self.written,
            self.required,
            self.delivered,
            self.lost,
            self.excused_lost,
            self.duplicates,
            self.overwritten,
            self.max_rss_kib / 1024,
            if self.violations.is_empty() { "ok" } else { "FAILED" }
        )
    }

    pub fn replay(&self) -> String {
        format!(
            "cargo test --release --test fault_campaign -- --seed {} --pipeline {} --faults {} --runs 1{}",
            self.seed, self.pipeline, self.faults_planned, self.replay_args
        )
    }
}

/// The long form's tables.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    for o in outcomes {
        for (k, n) in &o.faults {
            *by_kind.entry(k).or_insert(0) += n;
        }
    }
    out.push_str("faults injected, by kind:\n");
    for (k, n) in &by_kind {
        out.push_str(&format!("  {k:<24} {n:>6}\n"));
    }
    out.push_str(&format!(
        "\n{:<10} {:>5} {:>7} {:>8} {:>10} {:>10} {:>10} {:>7} {:>8} {:>10} {:>9} {:>9} {:>6} {:>8} {:>7}\n",
        "pipeline", "runs", "faults", "crashes", "written", "required", "delivered", "lost", "excused", "duplicated", "dup/crash", "overwrit.", "dead", "maxRSS", "failed"
    ));
    let mut names: Vec<&str> = outcomes.iter().map(|o| o.pipeline).collect();
    names.sort();
    names.dedup();
    names.push("all");
    for name in names {
        let rows: Vec<&Outcome> = outcomes
            .iter()
            .filter(|o| name == "all" || o.pipeline == name)
            .collect();
        let sum = |f: &dyn Fn(&Outcome) -> u64| rows.iter().map(|o| f(o)).sum::<u64>();
        let crashes = sum(&|o| o.crashes);
        let dups = sum(&|o| o.duplicates);
        out.push_str(&format!(
            "{:<10} {:>5} {:>7} {:>8} {:>10} {:>10} {:>10} {:>7} {:>8} {:>10} {:>9.0} {:>9} {:>6} {:>6}Mi {:>7}\n",
            name,
            rows.len(),
            sum(&|o| o.faults.values().sum()),
            crashes,
            sum(&|o| o.written),
            sum(&|o| o.required),
            sum(&|o| o.delivered),
            sum(&|o| o.lost),
            sum(&|o| o.excused_lost),
            dups,
            dups as f64 / crashes.max(1) as f64,
            sum(&|o| o.overwritten),
            sum(&|o| o.dead_letters.unwrap_or(0)),
            rows.iter().map(|o| o.max_rss_kib).max().unwrap_or(0) / 1024,
            rows.iter().filter(|o| !o.violations.is_empty()).count(),
        ));
    }
    out
}
