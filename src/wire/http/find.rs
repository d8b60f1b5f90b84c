//! A byte looked for in the short strings of an HTTP event (a target's `?`, a content type's
//! `;`, a Host's `:`), eight bytes a step in registers: `memchr` is a call that sets up vector
//! registers first, about 60 instructions under callgrind on a 20-byte string.

const ONES: u64 = 0x0101_0101_0101_0101;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The top bit of each byte of `w` that equals `b`, and no other. Exact per byte (no borrow
/// runs from one byte into the next), so that the highest flagged byte is a match as well as
/// the lowest.
#[inline(always)]
fn matches(w: u64, b: u8) -> u64 {
    let x = w ^ (ONES * b as u64);
    // A byte's low seven bits plus 0x7f reach the top bit unless they are all zero; `| x`
    // adds the byte's own top bit: what is left clear is a zero byte.
    !(((x & LOW7) + LOW7) | x) & HIGH
}

#[inline(always)]
fn word(s: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Where the first `b` in `s` is. Strings of eight bytes or more are read a word at a time,
/// the last word overlapping the one before (its bytes already seen hold no `b`).
#[inline]
pub fn find(s: &[u8], b: u8) -> Option<usize> {
    if s.len() < 8 {
        return s.iter().position(|&c| c == b);
    }
    let last = s.len() - 8;
    let mut at = 0;
    loop {
        let at_now = at.min(last);
        let m = matches(word(s, at_now), b);
        if m != 0 {
            return Some(at_now + (m.trailing_zeros() / 8) as usize);
        }
        if at_now == last {
            return None;
        }
        at += 8;
    }
}

/// Where the last `b` in `s` is; words from the end, the first word overlapping the one
/// after it.
#[inline]
pub fn rfind(s: &[u8], b: u8) -> Option<usize> {
    if s.len() < 8 {
        return s.iter().rposition(|&c| c == b);
    }
    let mut end = s.len();
    loop {
        let at = end.saturating_sub(8);
        let m = matches(word(s, at), b);
        if m != 0 {
            return Some(at + 7 - (m.leading_zeros() / 8) as usize);
        }
        if at == 0 {
            return None;
        }
        end = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every position of the byte in strings of every length up to 40, with the other bytes
    /// one above and one below it (where a borrow or carry would leak) and with a second
    /// copy of it: the same answer as a plain scan.
    #[test]
    fn finds_what_a_scan_finds() {
        for b in [b'?', b';', b':', 0u8, 0x7f, 0x80, 0xff] {
            for len in 0..40 {
                for fill in [b.wrapping_add(1), b.wrapping_sub(1), b ^ 0x80, b'a'] {
                    let base = vec![fill; len];
                    assert_eq!(find(&base, b), None);
                    assert_eq!(rfind(&base, b), None);
                    for i in 0..len {
                        for j in i..len {
                            let mut s = base.clone();
                            s[i] = b;
                            s[j] = b;
                            assert_eq!(find(&s, b), Some(i), "{b} {len} {i} {j}");
                            assert_eq!(rfind(&s, b), Some(j), "{b} {len} {i} {j}");
                        }
                    }
                }
            }
        }
    }
}
