//! The kernel's side of a live capture: pcap_stats of one open handle turned into the input's
//! running totals (`trawl_capture_kernel_*`) and one warning per episode of drops, so that
//! packets lost before trawl read them are never silent.

use crate::wire::Stats;

/// Drops (the kernel's, or the analyzer's behind) this far apart are two episodes, each
/// logged once.
pub(super) const KERNEL_DROP_QUIET: std::time::Duration = std::time::Duration::from_secs(10);

/// One open interface's pcap_stats, turned into the input's running totals and a warning per
/// episode of drops. pcap's counters are 32 bits and restart when the interface is reopened:
/// the totals go on from what earlier handles counted, by the increments of this one.
pub(super) struct KernelCounts<'a> {
    input: &'a str,
    interface: &'a str,
    /// Totals (received, kernel dropped, interface dropped) when this handle opened, plus
    /// what it counted since.
    totals: [u64; 3],
    /// This handle's raw counters at the last read.
    last: [u32; 3],
    last_drop: Option<std::time::Instant>,
}

impl<'a> KernelCounts<'a> {
    pub(super) fn new(input: &'a str, interface: &'a str, stats: &Stats) -> KernelCounts<'a> {
        let totals = stats
            .interfaces
            .lock()
            .ok()
            .and_then(|v| v.iter().find(|e| e.0 == interface).map(|e| [e.1, e.2, e.3]))
            .unwrap_or_default();
        KernelCounts {
            input,
            interface,
            totals,
            last: [0; 3],
            last_drop: None,
        }
    }

    pub(super) fn read(&mut self, s: pcap::Stat, stats: &Stats) {
        let now = [s.received, s.dropped, s.if_dropped];
        let mut grew = [0u64; 3];
        for i in 0..3 {
            grew[i] = u64::from(now[i].wrapping_sub(self.last[i]));
            self.totals[i] += grew[i];
        }
        self.last = now;
        stats.set_interface(
            self.interface,
            self.totals[0],
            self.totals[1],
            self.totals[2],
        );
        if grew[1] == 0 && grew[2] == 0 {
            return;
        }
        // Counted alone, a kernel drop is silent to whoever reads the log after the burst.
        let at = std::time::Instant::now();
        let begins = self
            .last_drop
            .is_none_or(|t| at.duration_since(t) >= KERNEL_DROP_QUIET);
        self.last_drop = Some(at);
        if begins {
            tracing::warn!(input = %self.input, interface = %self.interface,
                kernel_dropped = grew[1], interface_dropped = grew[2],
                "packets lost before trawl read them: the kernel's capture buffer was full (kernel_dropped; raise capture.buffer_size, or trawl is short of CPU) or the interface dropped them (interface_dropped); counted in trawl_capture_kernel_dropped_total and trawl_capture_interface_dropped_total (logged once until 10 s pass without a drop)");
        }
    }
}
