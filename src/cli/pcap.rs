//! `trawl pcap FILE [-c PIPELINE]`: decodes a capture file and prints its flows and HTTP
//! transactions as JSON lines on stdout (without `-c`), or feeds it to a pipeline's processors
//! and outputs in place of the pipeline's packet input, with its protocols (with `-c`). Time
//! comes from the packets.
//! FILE may be `-` (standard input) or a FIFO; a signal ends the reading and what was decoded
//! is still reported.

use crate::inputs::packet::{PacketInput, PcapFileConfig};
use crate::wire::decode::Decoder;
use crate::wire::out::Out;
use crate::wire::registry::{self, Protocols};
use crate::wire::{capture, Analyzers, Engine, Stats};
use clap::builder::PossibleValue;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// What `--only` can name: `flows`, and each registered protocol.
fn reports() -> clap::builder::PossibleValuesParser {
    let protocols = registry::registered()
        .iter()
        .map(|r| PossibleValue::new(r.name).help(r.summary));
    clap::builder::PossibleValuesParser::new(
        std::iter::once(PossibleValue::new("flows")).chain(protocols),
    )
}

/// A UDP or TCP port a protocol can be on: 0 is refused as the pipeline file refuses it.
fn port() -> clap::builder::RangedI64ValueParser<u16> {
    clap::value_parser!(u16).range(1..)
}

/// `trawl pcap`'s arguments.
#[derive(Debug, clap::Args)]
pub struct PcapArgs {
    /// The capture file (pcap or pcapng).
    pub file: PathBuf,
    /// A pipeline whose processors and outputs receive the events.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Report only these, comma-separated (default: flows and http).
    #[arg(long, value_delimiter = ',', value_parser = reports())]
    pub only: Vec<String>,
    /// `--<protocol>-ports` of each registered protocol.
    #[command(flatten)]
    pub ports: ProtocolPorts,
    /// UDP destination ports carrying VXLAN (comma-separated; default 4789,8472).
    #[arg(long, value_delimiter = ',', value_parser = port())]
    pub vxlan_ports: Vec<u16>,
    /// Whether flows and connections are keyed by VLAN id (default true; with -c, the
    /// pipeline's `key_by_vlan`). `false` when one direction is tagged and the other not.
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    pub key_by_vlan: Option<bool>,
    /// Whether flows and connections are keyed by tunnel (VXLAN/Geneve VNI, GRE key, ERSPAN
    /// session...) besides the 5-tuple (default false; with -c, the pipeline's `key_by_tunnel`).
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    pub key_by_tunnel: Option<bool>,
    /// Copies of a packet within this window of capture time count once (`100ms`): for a
    /// capture of `any` or of several interfaces, such as a pcapng from `dumpcap -i a -i b`
    /// (default: every packet as the file has it; with -c, the pipeline's `dedup_window`).
    #[arg(long, value_name = "DURATION", value_parser = crate::config::Duration::parse)]
    pub dedup_window: Option<crate::config::Duration>,
}

/// The ports given with `--<protocol>-ports`, by protocol name (empty: not given).
#[derive(Clone, Debug, Default)]
pub struct ProtocolPorts(pub Vec<(&'static str, Vec<u16>)>);

impl ProtocolPorts {
    fn of(&self, name: &str) -> &[u16] {
        self.0
            .iter()
            .find(|p| p.0 == name)
            .map_or(&[], |p| p.1.as_slice())
    }

    /// Each registered protocol's option name (`http2-ports`) and value name (`HTTP2_PORTS`):
    /// clap wants them `'static`, and they are made once per process from the registry.
    fn options() -> &'static [(&'static str, &'static str)] {
        static OPTIONS: OnceLock<Vec<(&'static str, &'static str)>> = OnceLock::new();
        OPTIONS.get_or_init(|| {
            registry::names()
                .iter()
                .map(|name| {
                    let long = format!("{name}-ports");
                    let value = long.replace('-', "_").to_uppercase();
                    (
                        &*Box::leak(long.into_boxed_str()),
                        &*Box::leak(value.into_boxed_str()),
                    )
                })
                .collect()
        })
    }
}

impl clap::FromArgMatches for ProtocolPorts {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let ports = registry::names()
            .iter()
            .map(|name| {
                let given = m.get_many::<u16>(name).map(|p| p.copied().collect());
                (*name, given.unwrap_or_default())
            })
            .collect();
        Ok(ProtocolPorts(ports))
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = ProtocolPorts::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for ProtocolPorts {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        registry::registered()
            .iter()
            .zip(ProtocolPorts::options())
            .fold(cmd, |cmd, (r, (long, value))| {
                cmd.arg(
                    clap::Arg::new(r.name)
                        .long(*long)
                        .value_name(*value)
                        .help(r.ports_help)
                        .value_delimiter(',')
                        .value_parser(port())
                        .action(clap::ArgAction::Append),
                )
            })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        ProtocolPorts::augment_args(cmd)
    }
}

/// Runs the command; returns the exit code: 1 when the file is unreadable or damaged, 0 when
/// it was read to its end or a signal stopped the reading (everything decoded was reported),
/// 2 for options that contradict each other.
pub fn run(args: PcapArgs) -> i32 {
    // Without the option, the default ports; with it, exactly the ports given.
    let decoder = match args.vxlan_ports.is_empty() {
        true => Decoder::default(),
        false => Decoder {
            vxlan_ports: args.vxlan_ports.clone(),
        },
    };
    match &args.config {
        Some(c) => with_pipeline(&args, c),
        None => match analyzers(&args, decoder) {
            Ok(a) => print_events(args.file, a),
            Err(e) => {
                eprintln!("error: {e}");
                2
            }
        },
    }
}

/// What the options ask to report: `--only`'s analyzers (flows and HTTP without it), each
/// protocol on its `--<protocol>-ports` when given.
fn analyzers(args: &PcapArgs, decoder: Decoder) -> Result<Analyzers, String> {
    let only = |name: &str| match args.only.is_empty() {
        true => name == "flows" || name == "http",
        false => args.only.iter().any(|o| o == name),
    };
    let mut protocols = Protocols::default();
    for r in registry::registered() {
        let ports = args.ports.of(r.name);
        if !only(r.name) {
            if !ports.is_empty() {
                return Err(format!(
                    "--{name}-ports is given but {name} is not reported: add `--only {name}`",
                    name = r.name
                ));
            }
            continue;
        }
        let mut section = (r.default)();
        // HTTP on every TCP connection unless told its ports, as before the option existed.
        if !ports.is_empty() || r.name == "http" {
            section.connection_mut().ports = ports.to_vec();
        }
        protocols.insert(section);
    }
    Ok(Analyzers {
        flows: only("flows").then(Default::default),
        protocols,
        dedup_window: args.dedup_window.and_then(|w| w.positive()),
        decoder,
        key_by_vlan: args.key_by_vlan.unwrap_or(true),
        key_by_tunnel: args.key_by_tunnel.unwrap_or(false),
    })
}

fn print_events(file: PathBuf, analyzers: Analyzers) -> i32 {
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
    let stop = Arc::new(AtomicBool::new(false));
    if let Err(e) = stop_on_signals(stop.clone()) {
        eprintln!("error: cannot handle signals: {e}");
        return 1;
    }
    let summary = capture::read_file(&file, &mut engine, &stop, 1024, &mut flush);
    let _ = out.flush();
    if broken {
        return 0; // stdout closed (a pager or `head` quit): not trawl's error.
    }
    if let Ok(s) = &summary {
        if s.clamped_times > 0 {
            tracing::warn!(
                packets = s.clamped_times,
                path = %file.display(),
                "packets whose time was past what 64-bit nanoseconds hold, clamped"
            );
        }
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

/// SIGTERM, SIGINT and SIGHUP (there is nothing to reload) set `stop`: reading ends and what
/// was decoded is reported, as `trawl run` drains. A second signal exits at once with 130.
/// A signal the parent set to be ignored (`nohup`, background jobs) stays ignored.
fn stop_on_signals(stop: Arc<AtomicBool>) -> std::io::Result<()> {
    // SAFETY: plain libc calls on a sigset_t and sigaction owned by this frame; signals are
    // blocked before any other thread starts, so only the waiting thread receives them.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
            {
                continue;
            }
            libc::sigaddset(&mut set, sig);
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        set
    };
    std::thread::Builder::new()
        .name("trawl-signals".into())
        .spawn(move || {
            let mut signals = 0;
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: `set` is an initialised sigset_t and `sig` a valid out-pointer.
                if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                    return;
                }
                signals += 1;
                if signals > 1 {
                    eprintln!("second signal: exiting without reporting the rest");
                    std::process::exit(130);
                }
                tracing::info!(
                    signal = sig,
                    "signal received: reporting what was decoded, then exiting"
                );
                stop.store(true, Ordering::Relaxed);
            }
        })?;
    Ok(())
}

/// The file read through pipeline `config`: in place of the pipeline's live packet input when
/// it has one (its name, so that outputs routed to it receive the events, its flows and
/// protocol sections, its `dedup_window`, `vxlan_ports`, `key_by_vlan` and `key_by_tunnel`),
/// otherwise as an extra input `pcap` with flows and HTTP. `--vxlan-ports`, `--key-by-vlan`,
/// `--key-by-tunnel` and `--dedup-window`, when given, override the pipeline's.
fn with_pipeline(args: &PcapArgs, config: &PathBuf) -> i32 {
    let (file, vxlan_ports) = (args.file.clone(), &args.vxlan_ports[..]);
    let mut cfg = match super::load(Some(config)) {
        Ok(c) => c,
        Err(errs) => {
            for e in &errs.0 {
                eprintln!("error: {e}");
            }
            return 1;
        }
    };
    let live: Vec<usize> = (0..cfg.inputs.len())
        .filter(|i| crate::inputs::is_live_packet(&cfg.inputs[*i].type_name))
        .collect();
    let (name, pcap_cfg) = match live[..] {
        [] => (
            "pcap".to_owned(),
            PcapFileConfig {
                path: file,
                flows: None,
                protocols: Protocols::default(),
                http: None,
                tls: None,
                redis: None,
                pgsql: None,
                dns: None,
                dedup_window: Default::default(),
                vxlan_ports: Decoder::default().vxlan_ports,
                key_by_vlan: true,
                key_by_tunnel: false,
            },
        ),
        [i] => {
            let spec = cfg.inputs.remove(i);
            let packet = match crate::inputs::live_packet_config(&spec) {
                Ok(p) => p,
                Err(e) => {
                    let mut errs = crate::config::ConfigErrors(Vec::new());
                    errs.push_de(&spec.file, spec.mark, &spec.path, e);
                    eprintln!("error: {errs}");
                    return 1;
                }
            };
            let capture = packet.capture.unwrap_or_default();
            (
                spec.name,
                PcapFileConfig {
                    path: file,
                    flows: packet.flows,
                    protocols: packet.protocols,
                    http: None,
                    tls: None,
                    redis: None,
                    pgsql: None,
                    dns: None,
                    dedup_window: capture.dedup_window,
                    vxlan_ports: capture.vxlan_ports,
                    key_by_vlan: capture.key_by_vlan,
                    key_by_tunnel: capture.key_by_tunnel,
                },
            )
        }
        _ => {
            let names: Vec<&str> = live.iter().map(|i| cfg.inputs[*i].name.as_str()).collect();
            eprintln!(
                "error: {} has {} packet inputs ({}): the capture file can stand in for one only",
                config.display(),
                names.len(),
                names.join(", ")
            );
            return 1;
        }
    };
    let mut pcap_cfg = match vxlan_ports {
        [] => pcap_cfg,
        given => PcapFileConfig {
            vxlan_ports: given.to_vec(),
            ..pcap_cfg
        },
    };
    if let Some(by_vlan) = args.key_by_vlan {
        pcap_cfg.key_by_vlan = by_vlan;
    }
    if let Some(by_tunnel) = args.key_by_tunnel {
        pcap_cfg.key_by_tunnel = by_tunnel;
    }
    if let Some(window) = args.dedup_window {
        pcap_cfg.dedup_window = window;
    }
    let input = match PacketInput::pcap_file(&name, pcap_cfg, None) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let stats = input.stats();
    let code = super::run_pipeline_once(cfg, vec![(name, Box::new(input))]);
    // The input logs the damage and the pipeline drains what came before; the command still
    // says the file was damaged, as it does without a pipeline.
    if code == 0 && stats.file_errors.load(Ordering::Relaxed) > 0 {
        eprintln!("error: capture file is damaged, delivered what came before");
        return 1;
    }
    code
}
