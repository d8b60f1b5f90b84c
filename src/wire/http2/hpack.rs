//! HPACK header-block decoding (RFC 7541), one decoder per direction of a connection: the
//! static and dynamic tables, integers, string literals (Huffman-coded or not) and table size
//! updates. A block that does not decode leaves the dynamic table in an unknown state: the
//! caller stops trusting the direction's later blocks.

use super::tables::{HUFFMAN, STATIC};
use std::collections::VecDeque;
use std::sync::OnceLock;

/// Why a header block could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("header block ends inside a field")]
    Truncated,
    #[error("integer does not fit")]
    Integer,
    #[error("index not in the static or dynamic table")]
    Index,
    #[error("invalid Huffman code or padding")]
    Huffman,
    #[error("string or table size above the configured limit")]
    TooLarge,
}

/// An entry's size as the table accounts it (RFC 7541 §4.1).
fn entry_size(name: &str, value: &str) -> usize {
    name.len() + value.len() + 32
}

/// One direction's decoding state.
pub struct Decoder {
    /// Newest first: dynamic index 62 is `dynamic[0]`.
    dynamic: VecDeque<(String, String)>,
    size: usize,
    /// The size the encoder last set (4096 until it says otherwise).
    max_size: usize,
    /// Our own bound on a table's memory: an update above it cannot be followed. (A passive
    /// reader need not check the peer's SETTINGS_HEADER_TABLE_SIZE: the encoder did.)
    cap: usize,
}

impl Decoder {
    pub fn new(cap: usize) -> Decoder {
        let initial = 4096.min(cap);
        Decoder {
            dynamic: VecDeque::new(),
            size: 0,
            max_size: initial,
            cap,
        }
    }

    /// Bytes the dynamic table holds (RFC accounting), for the memory bound.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Decodes one complete header block, calling `field` for each name and value in order.
    /// The dynamic table is updated as the block says, whatever `field` does with them.
    pub fn decode(
        &mut self,
        mut block: &[u8],
        field: &mut dyn FnMut(&str, &str),
    ) -> Result<(), HpackError> {
        while let Some(&b) = block.first() {
            if b & 0x80 != 0 {
                let i = integer(&mut block, 7)?;
                let (n, v) = self.get(i)?;
                field(n, v);
            } else if b & 0xc0 == 0x40 {
                let (n, v) = self.literal(&mut block, 6)?;
                field(&n, &v);
                self.insert(n, v);
            } else if b & 0xe0 == 0x20 {
                let n = integer(&mut block, 5)?;
                if n > self.cap {
                    return Err(HpackError::TooLarge);
                }
                self.max_size = n;
                self.evict(0);
            } else {
                // Without indexing (0000) or never indexed (0001): the same for a reader.
                let (n, v) = self.literal(&mut block, 4)?;
                field(&n, &v);
            }
        }
        Ok(())
    }

    fn get(&self, i: usize) -> Result<(&str, &str), HpackError> {
        match i {
            0 => Err(HpackError::Index),
            1..=61 => Ok(STATIC[i - 1]),
            _ => self
                .dynamic
                .get(i - 62)
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .ok_or(HpackError::Index),
        }
    }

    fn literal(&self, block: &mut &[u8], prefix: u8) -> Result<(String, String), HpackError> {
        let i = integer(block, prefix)?;
        let name = if i == 0 {
            string(block, self.cap)?
        } else {
            self.get(i)?.0.to_owned()
        };
        let value = string(block, self.cap)?;
        Ok((name, value))
    }

    fn insert(&mut self, name: String, value: String) {
        let n = entry_size(&name, &value);
        if n > self.max_size {
            // An entry larger than the table empties it (§4.4).
            self.dynamic.clear();
            self.size = 0;
            return;
        }
        self.evict(n);
        self.size += n;
        self.dynamic.push_front((name, value));
    }

    /// Evicts the oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            match self.dynamic.pop_back() {
                Some((n, v)) => self.size -= entry_size(&n, &v),
                None => break,
            }
        }
    }
}

/// An integer with an N-bit prefix (§5.1); values past 2^28 are refused (no real block needs
/// them, and they would only serve to allocate).
fn integer(block: &mut &[u8], prefix: u8) -> Result<usize, HpackError> {
    let (&first, mut rest) = block.split_first().ok_or(HpackError::Truncated)?;
    let mask = (1u16 << prefix) as u8 - 1;
    let mut v = (first & mask) as usize;
    if v == mask as usize {
        let mut shift = 0;
        loop {
            let (&b, r) = rest.split_first().ok_or(HpackError::Truncated)?;
            rest = r;
            v += ((b & 0x7f) as usize) << shift;
            shift += 7;
            if v > 1 << 28 || shift > 28 {
                return Err(HpackError::Integer);
            }
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    *block = rest;
    Ok(v)
}

/// A string literal (§5.2), at most `cap` bytes once decoded.
fn string(block: &mut &[u8], cap: usize) -> Result<String, HpackError> {
    let huffman = block.first().ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = integer(block, 7)?;
    if len > block.len() {
        return Err(HpackError::Truncated);
    }
    if len > cap {
        return Err(HpackError::TooLarge);
    }
    let (raw, rest) = block.split_at(len);
    *block = rest;
    if huffman {
        let bytes = huffman_decode(raw)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    } else {
        Ok(String::from_utf8_lossy(raw).into_owned())
    }
}

/// The Huffman code as a binary tree: node `i` has children `tree[i][bit]`; a child
/// `LEAF | symbol` is a leaf, 0 an absent branch.
const LEAF: u16 = 0x8000;

fn tree() -> &'static Vec<[u16; 2]> {
    static TREE: OnceLock<Vec<[u16; 2]>> = OnceLock::new();
    TREE.get_or_init(|| {
        let mut t = vec![[0u16; 2]];
        for (sym, &(code, len)) in HUFFMAN.iter().enumerate() {
            let mut node = 0usize;
            for i in (0..len).rev() {
                let bit = ((code >> i) & 1) as usize;
                if i == 0 {
                    t[node][bit] = LEAF | sym as u16;
                } else {
                    if t[node][bit] == 0 {
                        t.push([0, 0]);
                        t[node][bit] = (t.len() - 1) as u16;
                    }
                    node = t[node][bit] as usize;
                }
            }
        }
        t
    })
}

/// Decodes a Huffman-coded string (§5.2): EOS inside is an error, and the padding must be
/// fewer than 8 bits, all ones.
pub fn huffman_decode(raw: &[u8]) -> Result<Vec<u8>, HpackError> {
    let t = tree();
    let mut out = Vec::with_capacity(raw.len() * 8 / 5);
    let (mut node, mut depth, mut ones) = (0usize, 0u32, true);
    for &byte in raw {
        for i in (0..8).rev() {
            let bit = ((byte >> i) & 1) as usize;
            ones &= bit == 1;
            depth += 1;
            match t[node][bit] {
                0 => return Err(HpackError::Huffman),
                c if c & LEAF != 0 => {
                    let sym = c & !LEAF;
                    if sym == 256 {
                        return Err(HpackError::Huffman);
                    }
                    out.push(sym as u8);
                    (node, depth, ones) = (0, 0, true);
                }
                c => node = c as usize,
            }
        }
    }
    if depth >= 8 || !ones {
        return Err(HpackError::Huffman);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn fields(d: &mut Decoder, block: &[u8]) -> Vec<(String, String)> {
        let mut v = Vec::new();
        d.decode(block, &mut |n, val| v.push((n.to_owned(), val.to_owned())))
            .unwrap();
        v
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// RFC 7541 Appendix C.4: three requests with Huffman coding, sharing the dynamic table.
    #[test]
    fn rfc7541_c4_requests_with_huffman() {
        let mut d = Decoder::new(65536);
        assert_eq!(
            fields(&mut d, &hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff")),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com")
            ])
        );
        assert_eq!(d.size(), 57);
        assert_eq!(
            fields(&mut d, &hex("8286 84be 5886 a8eb 1064 9cbf")),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache")
            ])
        );
        assert_eq!(
            fields(
                &mut d,
                &hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf")
            ),
            pairs(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value")
            ])
        );
        assert_eq!(d.size(), 164);
    }

    /// RFC 7541 Appendix C.6: responses with a 256-byte table, so entries are evicted.
    #[test]
    fn rfc7541_c6_responses_evict() {
        let mut d = Decoder::new(65536);
        d.decode(&hex("3fe1 01"), &mut |_, _| {}).unwrap(); // size update to 256
        let first = fields(
            &mut d,
            &hex("4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3"),
        );
        assert_eq!(first[0], ("".to_owned() + ":status", "302".to_owned()));
        assert_eq!(first[3].1, "https://www.example.com");
        assert_eq!(d.size(), 222);
        let second = fields(&mut d, &hex("4883 640e ffc1 c0bf"));
        assert_eq!(second[0].1, "307");
        assert_eq!(second[3].1, "https://www.example.com");
        assert_eq!(d.size(), 222);
    }

    #[test]
    fn bad_blocks_are_errors_not_panics() {
        let mut d = Decoder::new(4096);
        assert_eq!(d.decode(&[0x80], &mut |_, _| {}), Err(HpackError::Index));
        assert_eq!(d.decode(&[0xbe], &mut |_, _| {}), Err(HpackError::Index));
        assert_eq!(
            d.decode(&[0x40, 0x85, 0xff], &mut |_, _| {}),
            Err(HpackError::Truncated)
        );
        assert_eq!(
            d.decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff], &mut |_, _| {}),
            Err(HpackError::Integer)
        );
        // A size update above what the decoder allowed.
        assert_eq!(
            d.decode(&[0x3f, 0xe1, 0xff, 0x03], &mut |_, _| {}),
            Err(HpackError::TooLarge)
        );
        // EOS (30 ones) inside a string.
        assert_eq!(
            huffman_decode(&[0xff, 0xff, 0xff, 0xff]),
            Err(HpackError::Huffman)
        );
        // Padding of 8 bits or more.
        assert!(huffman_decode(&[0xf1, 0xe3, 0xc2, 0xe5, 0xff]).is_err());
    }
}
