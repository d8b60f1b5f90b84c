//! Hand-built IPv4/TCP captures for tests written from a protocol's text: one Ethernet frame per
//! segment (checksums left zero, as offloading NICs capture them) and a classic pcap around
//! them, 100 µs apart.

/// TCP flag bits.
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// The two ends of one connection: 10.0.0.1 (client) and 10.0.0.2 (server).
#[derive(Clone, Copy)]
pub struct Conn {
    pub client_port: u16,
    pub server_port: u16,
}

impl Conn {
    /// One segment, from the client when `client`, else from the server.
    pub fn frame(&self, client: bool, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let (src, dst, from, to) = if client {
            (
                [10, 0, 0, 1],
                [10, 0, 0, 2],
                self.client_port,
                self.server_port,
            )
        } else {
            (
                [10, 0, 0, 2],
                [10, 0, 0, 1],
                self.server_port,
                self.client_port,
            )
        };
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0, 0x45, 0];
        f.extend((40 + payload.len() as u16).to_be_bytes());
        f.extend([0, 1, 0x40, 0, 64, 6, 0, 0]);
        f.extend(src);
        f.extend(dst);
        f.extend(from.to_be_bytes());
        f.extend(to.to_be_bytes());
        f.extend(seq.to_be_bytes());
        f.extend(ack.to_be_bytes());
        f.extend([0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend(payload);
        f
    }
}

/// A classic little-endian pcap (Ethernet) of `frames`, the first at 1,700,000,000 s.
pub fn pcap_of(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut pcap: Vec<u8> = [0xa1b2_c3d4u32.to_le_bytes(), [2, 0, 4, 0]].concat();
    pcap.extend([0; 8]);
    pcap.extend(65535u32.to_le_bytes());
    pcap.extend(1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        pcap.extend(1_700_000_000u32.to_le_bytes());
        pcap.extend((i as u32 * 100).to_le_bytes());
        pcap.extend((f.len() as u32).to_le_bytes());
        pcap.extend((f.len() as u32).to_le_bytes());
        pcap.extend(f);
    }
    pcap
}
