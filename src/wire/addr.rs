//! IP addresses as the analyzers keep them: 16 bytes (IPv4 as IPv4-mapped IPv6), cheap to
//! copy, hash and compare, printed without the standard formatter on the hot path.

/// An IP address in 16 bytes (IPv4 as IPv4-mapped IPv6), cheap to copy, hash and compare.
#[derive(Clone, Copy, Debug, Default)]
pub struct Addr(pub [u8; 16]);

// Hashed and ordered as one 128-bit number rather than byte by byte: the flow table and the
// HTTP analyzer do both for every packet. The order is the bytes' (big-endian), as before.
// Equality needs no byte order: the 16 bytes as they are (no byte swaps), two words.
impl PartialEq for Addr {
    #[inline(always)]
    fn eq(&self, other: &Addr) -> bool {
        u128::from_ne_bytes(self.0) == u128::from_ne_bytes(other.0)
    }
}
impl Eq for Addr {}
impl std::hash::Hash for Addr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(self.number());
    }
}
impl Ord for Addr {
    fn cmp(&self, other: &Addr) -> std::cmp::Ordering {
        self.number().cmp(&other.number())
    }
}
impl PartialOrd for Addr {
    fn partial_cmp(&self, other: &Addr) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Addr {
    #[inline(always)]
    fn number(&self) -> u128 {
        u128::from_be_bytes(self.0)
    }

    pub fn v4(b: [u8; 4]) -> Addr {
        let mut a = [0u8; 16];
        a[10] = 0xff;
        a[11] = 0xff;
        a[12..].copy_from_slice(&b);
        Addr(a)
    }

    pub fn is_v4(&self) -> bool {
        self.0[..10] == [0u8; 10] && self.0[10] == 0xff && self.0[11] == 0xff
    }

    /// The address bytes as on the wire (4 for IPv4, 16 for IPv6).
    pub fn wire(&self) -> &[u8] {
        if self.is_v4() {
            &self.0[12..]
        } else {
            &self.0
        }
    }

    pub fn to_ip(&self) -> std::net::IpAddr {
        if self.is_v4() {
            std::net::IpAddr::from([self.0[12], self.0[13], self.0[14], self.0[15]])
        } else {
            std::net::IpAddr::from(self.0)
        }
    }

    /// The address as text; IPv4 without the formatter and in a string of the right size.
    pub fn text(&self) -> String {
        match self.v4_text(&mut [0; 15]) {
            Some(t) => t.to_owned(),
            None => self.to_ip().to_string(),
        }
    }

    /// Dotted-quad IPv4 written into `text`; `None` for IPv6. Each octet's digits and dot
    /// come from a table and are gathered in one 128-bit word: a byte at a time, with a
    /// bounds check per byte, cost about 260 instructions an address (two a flow report, two
    /// a new connection).
    pub fn v4_text<'t>(&self, text: &'t mut [u8; 15]) -> Option<&'t str> {
        if !self.is_v4() {
            return None;
        }
        let (mut acc, mut n) = (0u128, 0u32);
        for &octet in &self.0[12..] {
            let (word, len) = OCTETS[octet as usize];
            acc |= u128::from(word) << (8 * n);
            n += u32::from(len);
        }
        // Four octets of at most "255." each: 7 to 16 bytes, the last one a dot left out.
        let len = n as usize - 1;
        text[..len].copy_from_slice(&acc.to_le_bytes()[..len]);
        // SAFETY: `OCTETS` holds only ASCII digits and dots (a unit test reads every entry),
        // and `len` stops inside the four octets' bytes: the text is ASCII, so UTF-8.
        // `from_utf8` was a call of about 90 instructions, four a connection.
        Some(unsafe { std::str::from_utf8_unchecked(&text[..len]) })
    }
}

/// Each octet's text followed by a dot, little-endian in a word, and its length with the dot.
static OCTETS: [(u32, u8); 256] = octets();

const fn octets() -> [(u32, u8); 256] {
    let mut table = [(0u32, 0u8); 256];
    let mut v = 0;
    while v < 256 {
        let dot = b'.' as u32;
        table[v] = if v >= 100 {
            (
                digit(v / 100) | digit(v / 10) << 8 | digit(v) << 16 | dot << 24,
                4,
            )
        } else if v >= 10 {
            (digit(v / 10) | digit(v) << 8 | dot << 16, 3)
        } else {
            (digit(v) | dot << 8, 2)
        };
        v += 1;
    }
    table
}

/// The last decimal digit of `v` as ASCII.
const fn digit(v: usize) -> u32 {
    b'0' as u32 + (v % 10) as u32
}

impl std::fmt::Display for Addr {
    /// IPv4 by hand: every flow and connection report writes its addresses, and the standard
    /// formatter (padding support, one `write` per octet) cost ten times as much.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.v4_text(&mut [0; 15]) {
            Some(t) if f.width().is_none() => f.write_str(t),
            _ => self.to_ip().fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_order_as_their_bytes() {
        let all = [
            Addr::v4([10, 0, 0, 1]),
            Addr::v4([10, 0, 0, 2]),
            Addr::v4([9, 255, 255, 255]),
            Addr::v4([192, 168, 0, 1]),
            Addr("::1".parse::<std::net::Ipv6Addr>().unwrap().octets()),
            Addr("fe80::1".parse::<std::net::Ipv6Addr>().unwrap().octets()),
        ];
        for a in all {
            for b in all {
                assert_eq!(a.cmp(&b), a.0.cmp(&b.0));
                assert_eq!(a == b, a.0 == b.0);
            }
        }
    }

    /// What `v4_text` takes as UTF-8 without checking: every entry's bytes, up to its
    /// length, are ASCII digits and a dot, and the rest of its word is zero.
    #[test]
    fn octet_table_holds_digits_and_dots_only() {
        for (v, &(word, len)) in OCTETS.iter().enumerate() {
            let bytes = word.to_le_bytes();
            let text = &bytes[..len as usize];
            assert_eq!(text, format!("{v}.").as_bytes());
            assert!(text.iter().all(|&b| b.is_ascii_digit() || b == b'.'));
            assert!(bytes[len as usize..].iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn addresses_print_as_the_standard_library_prints_them() {
        for v in 0..=255u8 {
            for at in 0..4 {
                let mut b = [10, 0, 99, 255];
                b[at] = v;
                let want = std::net::Ipv4Addr::from(b).to_string();
                assert_eq!(Addr::v4(b).to_string(), want);
                assert_eq!(Addr::v4(b).text(), want);
                assert_eq!(format!("{:>16}", Addr::v4(b)), format!("{want:>16}"));
            }
        }
        let v6: std::net::Ipv6Addr = "2001:db8::ff00:42:8329".parse().unwrap();
        assert_eq!(Addr(v6.octets()).to_string(), v6.to_string());
        assert_eq!(Addr(v6.octets()).text(), v6.to_string());
    }
}
