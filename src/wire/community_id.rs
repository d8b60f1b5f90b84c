//! Community ID flow hashing, version 1 (corelight/community-id-spec): base64 of the SHA1 of
//! the seed and the flow's endpoints in canonical order, so that every tool names a flow alike.

use super::decode::Addr;
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

/// A Community ID's SHA-1 digest: what a flow keeps (20 bytes) for its reports and its
/// connection's events, written as text (`1:` and 28 base64 characters) where it is used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommunityId([u8; 20]);

impl CommunityId {
    /// The digest of a flow; for ICMP, `sport`/`dport` are the type and code.
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
        CommunityId(h.finalize().into())
    }

    /// `1:<base64>`, padded base64 of the 20 bytes (RFC 4648 section 4): six 3-byte groups
    /// and a last group of two, a tenth of the cost of the general encoder's call.
    #[inline]
    pub fn text(&self) -> [u8; 30] {
        const DIGITS: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let d = &self.0;
        let mut t = [b'='; 30];
        t[..2].copy_from_slice(b"1:");
        for (group, out) in d.chunks(3).zip(t[2..].chunks_mut(4)) {
            let n = group
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for (i, c) in out.iter_mut().enumerate().take(group.len() + 1) {
                *c = DIGITS[(n >> (18 - 6 * i)) as usize & 63];
            }
        }
        t
    }

    /// `text` as a `String`.
    pub fn string(&self) -> String {
        self.id_text().as_str().to_owned()
    }

    /// `text`, kept inline where a connection holds it for every event it reports.
    pub fn id_text(&self) -> IdText {
        IdText(self.text())
    }
}

/// A Community ID as text (`1:` and 28 base64 characters), 30 bytes held inline: a connection
/// keeps one for all its events, where a `String` cost an allocation and a UTF-8 check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdText([u8; 30]);

impl IdText {
    pub fn as_str(&self) -> &str {
        // SAFETY: only `CommunityId::text` makes the bytes: `1:`, base64 digits and `=`,
        // all ASCII (`text_is_standard_base64` reads them back).
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn community_id(seed: u16, src: Addr, sport: u16, dst: Addr, dport: u16, proto: u8) -> String {
        CommunityId::of(seed, src, sport, dst, dport, proto).string()
    }

    fn a(s: &str) -> Addr {
        match s.parse::<std::net::IpAddr>().unwrap() {
            std::net::IpAddr::V4(v) => Addr::v4(v.octets()),
            std::net::IpAddr::V6(v) => Addr(v.octets()),
        }
    }

    /// The text is the padded standard base64 of the digest, whatever its bytes.
    #[test]
    fn text_is_standard_base64() {
        use base64::Engine as _;
        for seed in 0..500u16 {
            let id = CommunityId::of(seed, a("10.0.0.1"), seed, a("::1"), 80, 6);
            let want = base64::engine::general_purpose::STANDARD.encode(id.0);
            assert_eq!(id.string(), format!("1:{want}"));
            assert!(id.id_text().as_bytes().is_ascii());
        }
        let edge = CommunityId([0xff; 20]);
        assert_eq!(edge.string(), "1://////////////////////////8=");
        assert_eq!(
            CommunityId([0; 20]).string(),
            "1:AAAAAAAAAAAAAAAAAAAAAAAAAAA="
        );
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
