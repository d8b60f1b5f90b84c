//! `trawl pcap FILE [-c PIPELINE]`: decodes a capture file and prints its flows and HTTP
//! transactions as JSON lines on stdout (without `-c`), or feeds it to a pipeline's processors
//! and outputs in place of the pipeline's packet input, with its protocols (with `-c`). Time
//! comes from the packets.
//! FILE may be `-` (standard input) or a FIFO; a signal ends the reading and what was decoded
//! is still reported.

use crate::inputs::packet::{PacketInput, PcapFileConfig};
use crate::wire::decode::Decoder;
use crate::wire::out::Out;
use crate::wire::section::{ProtocolConfig, Protocols, Section};
use crate::wire::{capture, Analyzers, Engine, Stats};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What `trawl pcap` reports without `-c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Report {
    Flows,
    Http,
    Dns,
    Tls,
    Redis,
    Pgsql,
    Mysql,
    /// HTTP/2 and gRPC streams.
    Http2,
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
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Report>,
    /// TCP ports that carry HTTP (comma-separated); by default every TCP connection is
    /// followed and HTTP recognised by its content.
    #[arg(long, value_delimiter = ',', value_parser = port())]
    pub http_ports: Vec<u16>,
    /// Ports that carry DNS, over UDP and TCP (default 53); needs `--only dns`.
    #[arg(long, value_delimiter = ',', value_parser = port())]
    pub dns_ports: Vec<u16>,
    /// TCP ports that carry TLS (default 443,8443,6443,465,993,995,636); needs `--only tls`.
    #[arg(long, value_delimiter = ',', value_parser = port())]
    pub tls_ports: Vec<u16>,
    /// TCP ports that carry Redis (default 6379); needs `--only redis`.
    #[arg(long, value_delimiter = ',', value_parser = port())]
    pub redis_ports: Vec<u16>,
    /// TCP ports that carry PostgreSQL (default 5432); needs `--only pgsql`.
    #[arg(long, value_delimiter = ',', value_parser = port())]
    pub pgsql_ports: Vec<u16>,
    /// TCP ports that carry MySQL/MariaDB (default 3306); needs `--only mysql`.
    #[arg(long, value_delimiter = ',', value_parser = port())]
    pub mysql_ports: Vec<u16>,
    /// TCP ports that carry cleartext HTTP/2 (default: none, recognised by the preface or an
    /// h2c upgrade); needs `--only http2`.
    #[arg(long, value_delimiter = ',', value_parser = port())]
    pub http2_ports: Vec<u16>,
    /// UDP destination ports carrying VXLAN (comma-separated; default 4789,8472).
    #[arg(long, value_delimiter = ',', value_parser = port())]
    pub vxlan_ports: Vec<u16>,
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
        Some(c) => with_pipeline(args.file.clone(), c, &args.vxlan_ports),
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
    let only = |r: Report| {
        args.only.is_empty() && matches!(r, Report::Flows | Report::Http) || args.only.contains(&r)
    };
    fn section<C: ProtocolConfig>(
        on: bool,
        ports: &[u16],
        option: &str,
        name: &str,
    ) -> Result<Option<Section<C>>, String> {
        match (on, ports.is_empty()) {
            (false, false) => Err(format!(
                "{option} is given but {name} is not reported: add `--only {name}`"
            )),
            (false, true) => Ok(None),
            (true, true) => Ok(Some(Section::default())),
            (true, false) => Ok(Some(Section::on_ports(ports.to_vec()))),
        }
    }
    let mut protocols = Protocols {
        tls: section(only(Report::Tls), &args.tls_ports, "--tls-ports", "tls")?,
        redis: section(
            only(Report::Redis),
            &args.redis_ports,
            "--redis-ports",
            "redis",
        )?,
        pgsql: section(
            only(Report::Pgsql),
            &args.pgsql_ports,
            "--pgsql-ports",
            "pgsql",
        )?,
        mysql: section(
            only(Report::Mysql),
            &args.mysql_ports,
            "--mysql-ports",
            "mysql",
        )?,
        http2: section(
            only(Report::Http2),
            &args.http2_ports,
            "--http2-ports",
            "http2",
        )?,
        dns: section(only(Report::Dns), &args.dns_ports, "--dns-ports", "dns")?,
        ..Default::default()
    };
    // HTTP on every TCP connection unless told its ports, as before the option existed.
    if only(Report::Http) {
        protocols.http = Some(Section::on_ports(args.http_ports.clone()));
    } else if !args.http_ports.is_empty() {
        return Err("--http-ports is given but http is not reported: add `--only http`".into());
    }
    Ok(Analyzers {
        flows: only(Report::Flows).then(Default::default),
        protocols,
        dedup_window: None,
        decoder,
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

/// The file read through a pipeline: in place of the pipeline's live packet input when it
/// has one (its name, so that outputs routed to it receive the events, its flows and protocol
/// sections, its `dedup_window` and `vxlan_ports`), otherwise as an extra input `pcap` with
/// flows and HTTP. `vxlan_ports` is the `--vxlan-ports` option (empty: not given).
fn with_pipeline(file: PathBuf, config: &PathBuf, vxlan_ports: &[u16]) -> i32 {
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
    let pcap_cfg = match vxlan_ports {
        [] => pcap_cfg,
        given => PcapFileConfig {
            vxlan_ports: given.to_vec(),
            ..pcap_cfg
        },
    };
    let input = match PacketInput::pcap_file(&name, pcap_cfg, None) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let stats = input.stats();
    let code = super::run_pipeline(cfg, vec![(name, Box::new(input))]);
    // The input logs the damage and the pipeline drains what came before; the command still
    // says the file was damaged, as it does without a pipeline.
    if code == 0 && stats.file_errors.load(Ordering::Relaxed) > 0 {
        eprintln!("error: capture file is damaged, delivered what came before");
        return 1;
    }
    code
}
