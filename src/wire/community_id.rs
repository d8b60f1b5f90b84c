//! Community ID flow hashing, version 1 (corelight/community-id-spec): base64 of the SHA1 of
//! the seed and the flow's endpoints in canonical order, so that every tool names a flow alike.

use super::decode::Addr;
use base64::Engine as _;
use sha1::{Digest, Sha1};

/// ICMP types that have a counterpart (request/reply): mapped so both directions hash alike.
pub(crate) fn icmp_counterpart(v6: bool, t: u16) -> Option<u16> {
    let pairs: &[(u16, u16)] = if v6 {
        &[
            (128, 129),
            (129, 128),
            (130, 131),
            (131, 130),
            (133, 134),
            (134, 133),
            (135, 136),
            (136, 135),
            (139, 140),
            (140, 139),
            (144, 145),
            (145, 144),
        ]
    } else {
        &[
            (8, 0),
            (0, 8),
            (13, 14),
            (14, 13),
            (15, 16),
            (16, 15),
            (10, 9),
            (9, 10),
            (17, 18),
            (18, 17),
        ]
    };
    pairs.iter().find(|(a, _)| *a == t).map(|(_, b)| *b)
}

/// A Community ID as text (`1:` and the base64 of a SHA-1 digest: always 30 ASCII bytes),
/// kept inline so that a flow can hold the one its connection's events share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommunityId([u8; 30]);

impl CommunityId {
    /// `1:<base64>` for a flow; for ICMP, `sport`/`dport` are the type and code.
    pub fn of(seed: u16, src: Addr, sport: u16, dst: Addr, dport: u16, proto: u8) -> CommunityId {
        let (mut s, mut sp, mut d, mut dp) = (src, sport, dst, dport);
        let mut one_way = false;
        if proto == 1 || proto == 58 {
            match icmp_counterpart(proto == 58, sport) {
                Some(c) => dp = c,
                None => one_way = true,
            }
        }
        let ordered = (s.wire(), sp) <= (d.wire(), dp);
        if !one_way && !ordered {
            std::mem::swap(&mut s, &mut d);
            std::mem::swap(&mut sp, &mut dp);
        }
        let mut h = Sha1::new();
        h.update(seed.to_be_bytes());
        h.update(s.wire());
        h.update(d.wire());
        h.update([proto, 0]);
        if matches!(proto, 1 | 6 | 17 | 58 | 132) {
            h.update(sp.to_be_bytes());
            h.update(dp.to_be_bytes());
        }
        let digest = h.finalize();
        let mut text = [0; 30];
        text[..2].copy_from_slice(b"1:");
        // 20 bytes are 28 in padded base64: the slice always fits.
        let _ = base64::engine::general_purpose::STANDARD.encode_slice(digest, &mut text[2..]);
        CommunityId(text)
    }

    pub fn as_str(&self) -> &str {
        // base64 is ASCII: never empty.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// `1:<base64>` for a flow; for ICMP, `sport`/`dport` are the type and code.
pub fn community_id(seed: u16, src: Addr, sport: u16, dst: Addr, dport: u16, proto: u8) -> String {
    CommunityId::of(seed, src, sport, dst, dport, proto)
        .as_str()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Addr {
        match s.parse::<std::net::IpAddr>().unwrap() {
            std::net::IpAddr::V4(v) => Addr::v4(v.octets()),
            std::net::IpAddr::V6(v) => Addr(v.octets()),
        }
    }

    /// Vectors from the Community ID specification's README.
    #[test]
    fn spec_vectors() {
        assert_eq!(
            community_id(0, a("128.232.110.120"), 34855, a("66.35.250.204"), 80, 6),
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
        );
        assert_eq!(
            community_id(0, a("66.35.250.204"), 80, a("128.232.110.120"), 34855, 6),
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
        );
        assert_eq!(
            community_id(0, a("192.168.1.52"), 54585, a("8.8.8.8"), 53, 17),
            "1:d/FP5EW3wiY1vCndhwleRRKHowQ="
        );
        assert_eq!(
            community_id(0, a("192.168.0.89"), 8, a("192.168.0.1"), 0, 1),
            "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="
        );
        assert_eq!(
            community_id(0, a("192.168.0.1"), 0, a("192.168.0.89"), 0, 1),
            "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="
        );
    }
}
