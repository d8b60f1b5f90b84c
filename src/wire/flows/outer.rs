//! The outer UDP flow of a tunnel (VXLAN, Geneve, Teredo, GTP-U...): the packets that crossed
//! the underlay, reported besides the inner flows they carry when `outer_tunnel_flows` is on,
//! and marked so that dashboards do not count the same bytes twice.

use super::{FlowKey, FlowTable};
use crate::wire::decode::Packet;
use crate::wire::defrag::Wire;
use crate::wire::out::Out;
use crate::wire::tunnel::Tunnel;

impl FlowTable {
    /// Accounts the captured packet (at `ts_ns`) that carried tunnel `t` to the tunnel's own UDP flow, when
    /// the tunnel runs over UDP and `outer_tunnel_flows` is on. The outer packet is what
    /// crossed the wire: the outer flow counts its IP bytes, as any flow's. Inlined: one test
    /// on untunnelled packets.
    #[inline]
    pub fn outer(&mut self, t: Option<&Tunnel>, ts_ns: i64, out: &mut Out) {
        if let Some(t) = t.filter(|t| t.udp.is_some() && self.config.outer_tunnel_flows) {
            let wire = Wire {
                first_ns: ts_ns,
                last_ns: ts_ns,
                packets: 1,
                bytes: t.ip_len as u64,
            };
            self.outer_packets(t, &wire, out);
        }
    }

    /// The fragments (`wire`) of an outer datagram that turned out to carry tunnel `t` once
    /// reassembled: packets of the tunnel's outer flow.
    pub fn outer_fragments(&mut self, t: &Tunnel, wire: &Wire, out: &mut Out) {
        if t.udp.is_some() && self.config.outer_tunnel_flows {
            self.outer_packets(t, wire, out);
        }
    }

    #[inline(never)]
    pub(super) fn outer_packets(&mut self, t: &Tunnel, wire: &Wire, out: &mut Out) {
        let (sport, dport) = t.udp.unwrap_or_default();
        let p = Packet {
            vlan: t.vlan,
            inner_vlan: 0,
            src: t.src,
            dst: t.dst,
            proto: 17,
            sport,
            dport,
            label: 0,
            quoted: None,
            tcp: None,
            payload: &[],
            ip_len: t.ip_len,
            ip_id: 0,
            missing: 0,
            tunnel: None,
            fragment: None,
        };
        let (key, dir) = FlowKey::of(&p, self.key_by);
        self.account(
            &p,
            (key, dir),
            &mut super::KeyHash::default(),
            wire.first_ns,
            wire.last_ns,
            wire.packets,
            wire.bytes,
            out,
        );
        if let Some(f) = self.table.get_mut(&key) {
            if !f.outer {
                f.outer = true;
                f.tunnel = Some(Box::new((*t, dir)));
            }
        }
    }
}
