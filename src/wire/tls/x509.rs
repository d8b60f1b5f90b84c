//! The few fields of an X.509 certificate (RFC 5280 4.1) a handshake event carries: serial,
//! issuer, subject, validity, subject alternative names, the DER's SHA-1 and SHA-256. A small
//! DER walk over the TBSCertificate: no signature check, every length checked against the bytes
//! there, anything unexpected is `None` (a damaged extension only loses the names).

use sha1::Digest as _;

/// What the event reports of the server's certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Certificate {
    /// Upper-case hex, as `openssl x509 -serial` prints it (without leading zero bytes).
    pub serial: String,
    /// RFC 4514 strings (`CN=example.com,O=Example,C=US`: last RDN first).
    pub issuer: String,
    pub subject: String,
    pub issuer_cn: Vec<String>,
    pub subject_cn: Vec<String>,
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub not_before: String,
    pub not_after: String,
    /// The subjectAltName extension's DNS names, IP addresses and e-mail addresses, in order.
    pub alternative_names: Vec<String>,
    /// Upper-case hex digests of the whole DER certificate (ECS `tls.server.hash.*`).
    pub sha1: String,
    pub sha256: String,
    /// Read from the certificate's first bytes only (`parse_prefix`): no digests, no
    /// alternative names.
    pub truncated: bool,
}

/// One DER element: tag, content.
struct Der<'a> {
    b: &'a [u8],
}

impl<'a> Der<'a> {
    fn is_empty(&self) -> bool {
        self.b.is_empty()
    }

    /// The next element's tag and content.
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.b.split_first()?;
        if tag & 0x1f == 0x1f {
            return None; // multi-byte tags do not occur in the fields read here
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (first as usize, rest)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 3 || rest.len() < n {
                return None; // indefinite or absurd (a certificate is far below 16 MiB)
            }
            let len = rest[..n].iter().fold(0usize, |a, &b| a << 8 | b as usize);
            (len, &rest[n..])
        };
        if len > rest.len() {
            return None;
        }
        let (content, rest) = rest.split_at(len);
        self.b = rest;
        Some((tag, content))
    }

    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        self.next().filter(|(t, _)| *t == tag).map(|(_, c)| c)
    }

    /// The content of a SEQUENCE that may run past the bytes there: what there is of it.
    fn open_sequence(b: &'a [u8]) -> Option<&'a [u8]> {
        let (&tag, rest) = b.split_first()?;
        let (&first, rest) = rest.split_first()?;
        if tag != SEQUENCE {
            return None;
        }
        let n = if first < 0x80 {
            0
        } else {
            (first & 0x7f) as usize
        };
        if n > 3 {
            return None;
        }
        rest.get(n..)
    }
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;

pub fn parse(der: &[u8]) -> Option<Certificate> {
    let cert = Der { b: der }.expect(SEQUENCE)?;
    let tbs = Der { b: cert }.expect(SEQUENCE)?;
    let mut c = fields(tbs)?;
    c.sha1 = hex_upper(&sha1::Sha1::digest(der));
    c.sha256 = hex_upper(&sha2::Sha256::digest(der));
    Some(c)
}

/// What the first bytes of a certificate too long to keep hold: serial, issuer, validity and
/// subject come before the key and extensions (RFC 5280 4.1), so they are read when those
/// bytes are there; the digests need the whole DER and are left out (`truncated`).
pub fn parse_prefix(prefix: &[u8]) -> Option<Certificate> {
    let tbs = Der::open_sequence(Der::open_sequence(prefix)?)?;
    let mut c = fields(tbs)?;
    c.truncated = true;
    Some(c)
}

/// The TBSCertificate's fields (no digests).
fn fields(tbs: &[u8]) -> Option<Certificate> {
    let mut tbs = Der { b: tbs };
    let (mut tag, mut serial) = tbs.next()?;
    if tag == 0xa0 {
        // [0] EXPLICIT version
        (tag, serial) = tbs.next()?;
    }
    if tag != INTEGER {
        return None;
    }
    tbs.expect(SEQUENCE)?; // signature algorithm
    let issuer = name(tbs.expect(SEQUENCE)?)?;
    let mut validity = Der {
        b: tbs.expect(SEQUENCE)?,
    };
    let not_before = time(validity.next()?)?;
    let not_after = time(validity.next()?)?;
    let subject = name(tbs.expect(SEQUENCE)?)?;
    let alternative_names = alt_names(&mut tbs).unwrap_or_default();
    let serial = serial
        .iter()
        .skip_while(|&&b| b == 0)
        .map(|b| format!("{b:02X}"))
        .collect::<String>();
    Some(Certificate {
        serial: if serial.is_empty() {
            "00".into()
        } else {
            serial
        },
        issuer: dn(&issuer),
        subject: dn(&subject),
        issuer_cn: cns(&issuer),
        subject_cn: cns(&subject),
        not_before,
        not_after,
        alternative_names,
        ..Certificate::default()
    })
}

fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02X}")).collect()
}

/// The subjectAltName extension (OID 2.5.29.17, RFC 5280 4.2.1.6) after the subject: the
/// key info and unique ids are skipped, then `[3] Extensions`.
fn alt_names(tbs: &mut Der<'_>) -> Option<Vec<String>> {
    const SAN: [u8; 3] = [0x55, 0x1d, 0x11];
    tbs.expect(SEQUENCE)?; // subjectPublicKeyInfo
    let exts = loop {
        match tbs.next()? {
            (0xa3, c) => break Der { b: c }.expect(SEQUENCE)?,
            (0x81 | 0x82, _) => continue, // issuer/subject unique ids
            _ => return None,
        }
    };
    let mut exts = Der { b: exts };
    while !exts.is_empty() {
        let mut ext = Der {
            b: exts.expect(SEQUENCE)?,
        };
        if ext.expect(OID)? != SAN {
            continue;
        }
        let (mut tag, mut value) = ext.next()?;
        if tag == 0x01 {
            (tag, value) = ext.next()?; // critical
        }
        if tag != 0x04 {
            return None;
        }
        let mut names = Der {
            b: Der { b: value }.expect(SEQUENCE)?,
        };
        let mut out = Vec::new();
        while !names.is_empty() {
            match names.next()? {
                // rfc822Name, dNSName: IA5String.
                (0x81 | 0x82, v) => out.push(String::from_utf8_lossy(v).into_owned()),
                (0x87, v) if v.len() == 4 => {
                    out.push(std::net::Ipv4Addr::new(v[0], v[1], v[2], v[3]).to_string())
                }
                (0x87, v) if v.len() == 16 => {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(v);
                    out.push(std::net::Ipv6Addr::from(a).to_string())
                }
                _ => {} // other names (URIs, directory names...) are not reported
            }
        }
        return Some(out);
    }
    Some(Vec::new())
}

/// A Name's attributes in DER order: (short name, value).
type Attrs = Vec<(String, String)>;

fn name(seq: &[u8]) -> Option<Attrs> {
    let mut rdns = Der { b: seq };
    let mut out = Vec::new();
    while !rdns.is_empty() {
        let mut set = Der {
            b: rdns.expect(SET)?,
        };
        while !set.is_empty() {
            let mut atv = Der {
                b: set.expect(SEQUENCE)?,
            };
            let oid = atv.expect(OID)?;
            let (tag, value) = atv.next()?;
            out.push((attr_name(oid), string(tag, value)));
        }
    }
    Some(out)
}

fn cns(attrs: &Attrs) -> Vec<String> {
    attrs
        .iter()
        .filter(|(k, _)| k == "CN")
        .map(|(_, v)| v.clone())
        .collect()
}

/// RFC 4514: the RDNs last first, special characters escaped.
fn dn(attrs: &Attrs) -> String {
    let mut s = String::new();
    for (k, v) in attrs.iter().rev() {
        if !s.is_empty() {
            s.push(',');
        }
        s.push_str(k);
        s.push('=');
        let last = v.chars().count().saturating_sub(1);
        for (i, c) in v.chars().enumerate() {
            let edge = (i == 0 && (c == ' ' || c == '#')) || (i == last && c == ' ');
            if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
                s.push('\\');
            }
            s.push(c);
        }
    }
    s
}

/// RFC 4514 2.3: an attribute type with a descriptor registered for it (the IANA LDAP
/// descriptors registry, RFC 4519 and RFC 2985's emailAddress) is written by that name, any
/// other by its dotted OID. The upper-case names are RFC 4514's own table.
fn attr_name(oid: &[u8]) -> String {
    match oid {
        [0x55, 0x04, 0x04] => "SN".into(),
        [0x55, 0x04, 0x05] => "serialNumber".into(),
        [0x55, 0x04, 0x0c] => "title".into(),
        [0x55, 0x04, 0x0d] => "description".into(),
        [0x55, 0x04, 0x0f] => "businessCategory".into(),
        [0x55, 0x04, 0x10] => "postalAddress".into(),
        [0x55, 0x04, 0x11] => "postalCode".into(),
        [0x55, 0x04, 0x12] => "postOfficeBox".into(),
        [0x55, 0x04, 0x2a] => "givenName".into(),
        [0x55, 0x04, 0x2b] => "initials".into(),
        [0x55, 0x04, 0x2c] => "generationQualifier".into(),
        [0x55, 0x04, 0x2e] => "dnQualifier".into(),
        [0x55, 0x04, 0x41] => "pseudonym".into(),
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress".into(),
        [0x55, 0x04, 0x03] => "CN".into(),
        [0x55, 0x04, 0x06] => "C".into(),
        [0x55, 0x04, 0x07] => "L".into(),
        [0x55, 0x04, 0x08] => "ST".into(),
        [0x55, 0x04, 0x09] => "STREET".into(),
        [0x55, 0x04, 0x0a] => "O".into(),
        [0x55, 0x04, 0x0b] => "OU".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID".into(),
        _ => dotted(oid),
    }
}

/// An OID in dotted form (RFC 4514 uses it for attribute types without a short name).
fn dotted(oid: &[u8]) -> String {
    let mut parts: Vec<u64> = Vec::new();
    let mut v: u64 = 0;
    for &b in oid {
        v = (v << 7) | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            if parts.is_empty() {
                let first = (v / 40).min(2);
                parts.push(first);
                parts.push(v - first * 40);
            } else {
                parts.push(v);
            }
            v = 0;
        }
        if v > u64::MAX >> 8 {
            break; // no real OID arc is this long
        }
    }
    parts
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

/// A DirectoryString (or IA5String) as text; a BMPString is UTF-16BE.
fn string(tag: u8, v: &[u8]) -> String {
    match tag {
        0x1e => {
            let units: Vec<u16> = v
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        // T61String: in practice Latin-1.
        0x14 => v.iter().map(|&b| b as char).collect(),
        _ => String::from_utf8_lossy(v).into_owned(),
    }
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn time((tag, v): (u8, &[u8])) -> Option<String> {
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let (year, rest) = match tag {
        0x17 if v.len() >= 13 && digits(&v[..12]) => {
            let yy = (v[0] - b'0') as u32 * 10 + (v[1] - b'0') as u32;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &v[2..])
        }
        0x18 if v.len() >= 15 && digits(&v[..14]) => {
            let y = v[..4].iter().fold(0u32, |a, &b| a * 10 + (b - b'0') as u32);
            (y, &v[4..])
        }
        _ => return None,
    };
    let two = |i: usize| (rest[i] - b'0') as u32 * 10 + (rest[i + 1] - b'0') as u32;
    Some(format!(
        "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        two(0),
        two(2),
        two(4),
        two(6),
        two(8)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_oids() {
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01]),
            "1.2.840.113549.1.9.1"
        );
        assert_eq!(dotted(&[0x55, 0x04, 0x03]), "2.5.4.3");
    }

    #[test]
    fn times() {
        assert_eq!(
            time((0x17, b"491231235959Z")).as_deref(),
            Some("2049-12-31T23:59:59Z")
        );
        assert_eq!(
            time((0x17, b"500101000000Z")).as_deref(),
            Some("1950-01-01T00:00:00Z")
        );
        assert_eq!(
            time((0x18, b"20991231235959Z")).as_deref(),
            Some("2099-12-31T23:59:59Z")
        );
        assert_eq!(time((0x17, b"49123123595")), None);
    }

    #[test]
    fn dn_escapes_rfc4514_specials() {
        let attrs = vec![
            ("C".to_string(), "US".to_string()),
            ("O".to_string(), "Acme, Inc".to_string()),
            ("CN".to_string(), " lead".to_string()),
        ];
        assert_eq!(dn(&attrs), "CN=\\ lead,O=Acme\\, Inc,C=US");
    }

    /// Lengths that point past the end, and truncations at every byte, are `None`, not a
    /// panic.
    #[test]
    fn truncated_der_is_none() {
        let cert = include_bytes!("../../../tests/data/tls/server-cert.der");
        assert!(parse(cert).is_some());
        for n in 0..cert.len() {
            assert_eq!(parse(&cert[..n]), None, "cut at {n}");
        }
    }

    /// A certificate's first bytes give the names and validity once the subject is in them,
    /// never the digests; fewer bytes are `None`, never a panic.
    #[test]
    fn a_prefix_gives_the_names_without_digests() {
        let cert = include_bytes!("../../../tests/data/tls/server-cert.der");
        let whole = parse(cert).unwrap();
        let mut first = None;
        for n in 0..=cert.len() {
            let Some(c) = parse_prefix(&cert[..n]) else {
                assert!(first.is_none(), "read at {first:?}, not at {n}");
                continue;
            };
            first.get_or_insert(n);
            assert!(c.truncated && c.sha1.is_empty() && c.sha256.is_empty());
            assert_eq!(
                (&c.subject, &c.issuer, &c.serial, &c.not_after),
                (
                    &whole.subject,
                    &whole.issuer,
                    &whole.serial,
                    &whole.not_after
                )
            );
        }
        assert!(first.is_some_and(|n| n < cert.len() / 2), "{first:?}");
    }
}
