//! Client and server fingerprints of a handshake: JA3 and JA3S (Salesforce: MD5 of the
//! hello's version, ciphers and extensions in wire order) and JA4 (FoxIO's technical_details/
//! JA4.md: sorted lists, SHA-256). GREASE values are left out of all three, as both specs say.

use super::hello::{ClientHello, ServerHello};
use super::names::is_grease;
use md5::Md5;
use sha2::{Digest, Sha256};
use std::fmt::Write;

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `a-b-c` of the values that are not GREASE.
fn dashed(values: impl Iterator<Item = u16>) -> String {
    let mut s = String::new();
    for v in values.filter(|v| !is_grease(*v)) {
        if !s.is_empty() {
            s.push('-');
        }
        let _ = write!(s, "{v}");
    }
    s
}

/// The JA3 string: `SSLVersion,Ciphers,Extensions,EllipticCurves,EllipticCurvePointFormats`.
pub fn ja3_full(h: &ClientHello) -> String {
    format!(
        "{},{},{},{},{}",
        h.version,
        dashed(h.ciphers.iter().copied()),
        dashed(h.extensions.iter().copied()),
        dashed(h.groups.iter().copied()),
        dashed(h.point_formats.iter().map(|&p| p as u16)),
    )
}

pub fn ja3(h: &ClientHello) -> String {
    hex(&Md5::digest(ja3_full(h).as_bytes()))
}

/// The JA3S string: `SSLVersion,Cipher,SSLExtension`.
pub fn ja3s_full(h: &ServerHello) -> String {
    format!(
        "{},{},{}",
        h.version,
        h.cipher,
        dashed(h.extensions.iter().copied())
    )
}

pub fn ja3s(h: &ServerHello) -> String {
    hex(&Md5::digest(ja3s_full(h).as_bytes()))
}

/// The first 12 hex digits of the SHA-256 of `s`, or twelve zeros when there is nothing to hash.
fn sha12(s: &str) -> String {
    if s.is_empty() {
        return "000000000000".into();
    }
    let mut h = hex(&Sha256::digest(s.as_bytes()));
    h.truncate(12);
    h
}

/// `aaaa,bbbb` in lower-case hex.
fn hex_list(values: &[u16]) -> String {
    let mut s = String::with_capacity(values.len() * 5);
    for v in values {
        if !s.is_empty() {
            s.push(',');
        }
        let _ = write!(s, "{v:04x}");
    }
    s
}

fn ja4_version(v: u16) -> &'static str {
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// JA4's two ALPN characters: the first and last of the first protocol when both are
/// alphanumeric, else the first and last hex digits of its bytes.
fn ja4_alpn(first: Option<&Vec<u8>>) -> String {
    let Some(p) = first.filter(|p| !p.is_empty()) else {
        return "00".into();
    };
    let (a, z) = (p[0], p[p.len() - 1]);
    if a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric() {
        [a as char, z as char].iter().collect()
    } else {
        let h = hex(p);
        let b = h.as_bytes();
        [b[0] as char, b[b.len() - 1] as char].iter().collect()
    }
}

/// JA4 of a ClientHello seen over TCP.
pub fn ja4(h: &ClientHello) -> String {
    let mut ciphers: Vec<u16> = h
        .ciphers
        .iter()
        .copied()
        .filter(|c| !is_grease(*c))
        .collect();
    let exts: Vec<u16> = h
        .extensions
        .iter()
        .copied()
        .filter(|e| !is_grease(*e))
        .collect();
    let a = format!(
        "t{}{}{:02}{:02}{}",
        ja4_version(h.max_version()),
        if h.extensions.contains(&0) { 'd' } else { 'i' },
        ciphers.len().min(99),
        exts.len().min(99),
        ja4_alpn(h.alpn.first()),
    );
    ciphers.sort_unstable();
    let mut sorted: Vec<u16> = exts.into_iter().filter(|&e| e != 0 && e != 16).collect();
    sorted.sort_unstable();
    let sigs: Vec<u16> = h
        .signature_algorithms
        .iter()
        .copied()
        .filter(|s| !is_grease(*s))
        .collect();
    let c = if sorted.is_empty() {
        "000000000000".into()
    } else if sigs.is_empty() {
        sha12(&hex_list(&sorted))
    } else {
        sha12(&format!("{}_{}", hex_list(&sorted), hex_list(&sigs)))
    };
    format!("{a}_{}_{c}", sha12(&hex_list(&ciphers)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of JA4.md: a TLS 1.3 hello with SNI, ALPN h2, 15 ciphers and 16
    /// extensions (plus GREASE, which must not count).
    fn spec_hello() -> ClientHello {
        ClientHello {
            version: 0x0303,
            ciphers: vec![
                0x2a2a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8,
                0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
            ],
            extensions: vec![
                0x0a0a, 0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005,
                0x0023, 0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015, 0xfafa,
            ],
            signature_algorithms: vec![
                0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
            ],
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            versions: vec![0x7a7a, 0x0304, 0x0303],
            ..ClientHello::default()
        }
    }

    #[test]
    fn ja4_of_the_specs_example() {
        assert_eq!(ja4(&spec_hello()), "t13d1516h2_8daaf6152771_e5627efa2ab1");
    }

    /// "If there are no signature algorithms in the hello packet, then the string ends
    /// without an underscore": the spec gives that hash too.
    #[test]
    fn ja4_without_signature_algorithms() {
        let mut h = spec_hello();
        h.signature_algorithms.clear();
        assert!(ja4(&h).ends_with("_6d807ffa2a79"), "{}", ja4(&h));
    }

    #[test]
    fn ja4_empty_lists_are_zeros_and_no_sni_is_i() {
        let h = ClientHello {
            version: 0x0301,
            ..ClientHello::default()
        };
        assert_eq!(ja4(&h), "t10i000000_000000000000_000000000000");
    }

    #[test]
    fn ja4_alpn_characters() {
        let alpn = |p: &[u8]| ja4_alpn(Some(&p.to_vec()));
        assert_eq!(alpn(b"http/1.1"), "h1");
        assert_eq!(alpn(b"h"), "hh");
        // The spec's examples of non-alphanumeric first or last bytes.
        assert_eq!(alpn(&[0xab]), "ab");
        assert_eq!(alpn(&[0xab, 0xcd]), "ad");
        assert_eq!(alpn(&[0x30, 0xab]), "3b");
        assert_eq!(alpn(&[0x30, 0x31, 0xab, 0xcd]), "3d");
        assert_eq!(alpn(&[0x30, 0xab, 0xcd, 0x31]), "01");
        assert_eq!(ja4_alpn(None), "00");
    }

    /// JA3's own README example string form: GREASE gone, point formats as numbers.
    #[test]
    fn ja3_string_leaves_grease_out() {
        let h = ClientHello {
            version: 771,
            ciphers: vec![0x0a0a, 4865, 4866],
            extensions: vec![0x1a1a, 0, 23, 0x2a2a],
            groups: vec![0x3a3a, 29, 23],
            point_formats: vec![0],
            ..ClientHello::default()
        };
        assert_eq!(ja3_full(&h), "771,4865-4866,0-23,29-23,0");
        assert_eq!(ja3(&h), hex(&Md5::digest(b"771,4865-4866,0-23,29-23,0")));
        assert_eq!(hex(&Md5::digest(b"")), "d41d8cd98f00b204e9800998ecf8427e");
    }
}
