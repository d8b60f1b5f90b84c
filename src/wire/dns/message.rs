//! DNS messages (RFC 1035) decoded from bytes: header, first question, answer records with
//! their data as text. Names follow compression pointers with a hop limit, so a pointer loop
//! is an error rather than a hang; anything short or inconsistent is an error, never a panic.

use std::fmt::Write as _;

/// Why a message could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// The message ends inside a field.
    Short,
    /// A compression pointer loops or points forward, or a name is longer than 255 bytes.
    BadName,
}

/// Most answer records kept per message (the rest are counted, not kept).
pub const MAX_ANSWERS: usize = 64;

/// One resource record of the answer section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub name: String,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    /// The data as text: an address, a name, `preference exchange`, quoted strings...
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: u16,
    /// The flags word: QR, opcode, AA, TC, RD, RA, Z, AD, CD, rcode.
    pub flags: u16,
    /// The first question (a query has one in practice), when there is one.
    pub question: Option<(String, u16, u16)>,
    pub answers: Vec<Answer>,
    /// Record counts of the answer, authority and additional sections, as the header says.
    pub counts: [u16; 3],
    /// The EDNS `DO` bit (in the OPT record of the additional section).
    pub dnssec_ok: bool,
}

impl Message {
    pub fn is_response(&self) -> bool {
        self.flags & 0x8000 != 0
    }
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0xf) as u8
    }
    pub fn rcode(&self) -> u8 {
        (self.flags & 0xf) as u8
    }

    /// `dns.header_flags`: the flag bits set, ECS's names.
    pub fn header_flags(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (bit, name) in [
            (0x0400, "AA"),
            (0x0200, "TC"),
            (0x0100, "RD"),
            (0x0080, "RA"),
            (0x0020, "AD"),
            (0x0010, "CD"),
        ] {
            if self.flags & bit != 0 {
                v.push(name);
            }
        }
        if self.dnssec_ok {
            v.push("DO");
        }
        v
    }
}

/// The 12-byte header alone: (id, flags, question count). Cheap recognition.
pub fn header(b: &[u8]) -> Option<(u16, u16, u16)> {
    if b.len() < 12 {
        return None;
    }
    Some((be16(b, 0), be16(b, 2), be16(b, 4)))
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Reads fields in order, every read bounds-checked.
struct Reader<'a> {
    msg: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.at.checked_add(n).ok_or(Malformed::Short)?;
        let s = self.msg.get(self.at..end).ok_or(Malformed::Short)?;
        self.at = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, Malformed> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, Malformed> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    /// A name at the cursor (the cursor moves past it, not past where pointers lead).
    fn name(&mut self) -> Result<String, Malformed> {
        let (name, end) = read_name(self.msg, self.at)?;
        self.at = end;
        Ok(name)
    }
}

/// The name starting at `at` as text (no trailing dot; the root is `.`), and where the
/// bytes after it start. Labels are escaped as in zone files (`\.`, `\DDD`).
pub fn read_name(msg: &[u8], at: usize) -> Result<(String, usize), Malformed> {
    let mut name = String::new();
    let (mut pos, mut end, mut wire_len) = (at, None, 0usize);
    // Each pointer must lead backwards, before the pointer and before where the previous one
    // led: a loop is impossible, and the hop count bounds the work on hostile input anyway.
    let (mut hops, mut floor) = (0, usize::MAX);
    loop {
        let len = *msg.get(pos).ok_or(Malformed::Short)? as usize;
        match len & 0xc0 {
            0xc0 => {
                let low = *msg.get(pos + 1).ok_or(Malformed::Short)? as usize;
                let target = ((len & 0x3f) << 8) | low;
                end.get_or_insert(pos + 2);
                hops += 1;
                if target >= floor || target >= pos || hops > 127 {
                    return Err(Malformed::BadName);
                }
                floor = target;
                pos = target;
            }
            0x00 if len == 0 => {
                if name.is_empty() {
                    name.push('.');
                }
                return Ok((name, end.unwrap_or(pos + 1)));
            }
            0x00 => {
                let label = msg.get(pos + 1..pos + 1 + len).ok_or(Malformed::Short)?;
                wire_len += len + 1;
                if wire_len > 255 {
                    return Err(Malformed::BadName);
                }
                if !name.is_empty() {
                    name.push('.');
                }
                for &c in label {
                    match c {
                        b'.' | b'\\' => {
                            name.push('\\');
                            name.push(c as char);
                        }
                        0x21..=0x7e => name.push(c as char),
                        _ => {
                            let _ = write!(name, "\\{c:03}");
                        }
                    }
                }
                pos += 1 + len;
            }
            // 0x40 and 0x80: extended label types (RFC 6891 deprecated them).
            _ => return Err(Malformed::BadName),
        }
    }
}

/// Decodes a whole message.
pub fn parse(msg: &[u8]) -> Result<Message, Malformed> {
    let (id, flags, qd) = header(msg).ok_or(Malformed::Short)?;
    let counts = [be16(msg, 6), be16(msg, 8), be16(msg, 10)];
    let mut r = Reader { msg, at: 12 };
    let mut question = None;
    for i in 0..qd {
        let name = r.name()?;
        let (qtype, qclass) = (r.u16()?, r.u16()?);
        if i == 0 {
            question = Some((name, qtype, qclass));
        }
    }
    let mut answers = Vec::new();
    let mut dnssec_ok = false;
    for (section, &count) in counts.iter().enumerate() {
        for _ in 0..count {
            let name = r.name()?;
            let (rtype, class, ttl) = (r.u16()?, r.u16()?, r.u32()?);
            let len = r.u16()? as usize;
            let start = r.at;
            let rdata = r.take(len)?;
            if section == 2 && rtype == 41 {
                // OPT: the TTL field holds the extended rcode, version and the DO bit.
                dnssec_ok = ttl & 0x8000 != 0;
            }
            if section == 0 && answers.len() < MAX_ANSWERS {
                answers.push(Answer {
                    name,
                    rtype,
                    class,
                    ttl,
                    data: rdata_text(msg, start, rdata, rtype)?,
                });
            }
        }
    }
    Ok(Message {
        id,
        flags,
        question,
        answers,
        counts,
        dnssec_ok,
    })
}

/// Record data as text, for the common types; others as `\# len hex` (RFC 3597).
fn rdata_text(msg: &[u8], start: usize, rdata: &[u8], rtype: u16) -> Result<String, Malformed> {
    let name_at = |off: usize| -> Result<String, Malformed> {
        if off >= rdata.len() {
            return Err(Malformed::Short);
        }
        Ok(read_name(msg, start + off)?.0)
    };
    let mut r = Reader { msg: rdata, at: 0 };
    Ok(match rtype {
        1 if rdata.len() == 4 => {
            std::net::Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]).to_string()
        }
        28 if rdata.len() == 16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(rdata);
            std::net::Ipv6Addr::from(a).to_string()
        }
        // NS, CNAME, PTR, DNAME.
        2 | 5 | 12 | 39 => name_at(0)?,
        15 => {
            let pref = r.u16()?;
            format!("{pref} {}", name_at(2)?)
        }
        33 => {
            let (prio, weight, port) = (r.u16()?, r.u16()?, r.u16()?);
            format!("{prio} {weight} {port} {}", name_at(6)?)
        }
        6 => {
            let (mname, end) = read_name(msg, start)?;
            let (rname, end) = read_name(msg, end)?;
            let mut r = Reader { msg, at: end };
            let nums = [r.u32()?, r.u32()?, r.u32()?, r.u32()?, r.u32()?];
            if r.at > start + rdata.len() {
                return Err(Malformed::Short);
            }
            format!(
                "{mname} {rname} {} {} {} {} {}",
                nums[0], nums[1], nums[2], nums[3], nums[4]
            )
        }
        16 => {
            let mut out = String::new();
            while r.at < rdata.len() {
                let n = r.take(1)?[0] as usize;
                let s = r.take(n)?;
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push('"');
                for &c in s {
                    match c {
                        b'"' | b'\\' => {
                            out.push('\\');
                            out.push(c as char);
                        }
                        0x20..=0x7e => out.push(c as char),
                        _ => {
                            let _ = write!(out, "\\{c:03}");
                        }
                    }
                }
                out.push('"');
            }
            out
        }
        _ => {
            let mut out = format!("\\# {}", rdata.len());
            if !rdata.is_empty() {
                out.push(' ');
                for b in rdata {
                    let _ = write!(out, "{b:02x}");
                }
            }
            out
        }
    })
}

/// Query type name (`A`, `AAAA`...), `TYPE<n>` for others (RFC 3597).
pub fn type_name(t: u16) -> std::borrow::Cow<'static, str> {
    let name = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        39 => "DNAME",
        41 => "OPT",
        43 => "DS",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        50 => "NSEC3",
        52 => "TLSA",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        252 => "AXFR",
        255 => "ANY",
        257 => "CAA",
        _ => return format!("TYPE{t}").into(),
    };
    name.into()
}

/// Class name (`IN`...), `CLASS<n>` for others.
pub fn class_name(c: u16) -> std::borrow::Cow<'static, str> {
    match c {
        1 => "IN".into(),
        3 => "CH".into(),
        4 => "HS".into(),
        254 => "NONE".into(),
        255 => "ANY".into(),
        _ => format!("CLASS{c}").into(),
    }
}

/// Response code name (`NOERROR`, `NXDOMAIN`...).
pub fn rcode_name(r: u8) -> &'static str {
    match r {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        _ => "RCODE_OTHER",
    }
}

/// Opcode name (`QUERY`...).
pub fn opcode_name(o: u8) -> &'static str {
    match o {
        0 => "QUERY",
        1 => "IQUERY",
        2 => "STATUS",
        4 => "NOTIFY",
        5 => "UPDATE",
        6 => "DSO",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response for `www.example.com A` with a compressed CNAME and A record.
    fn response() -> Vec<u8> {
        let mut m = vec![
            0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0, // header: QR RD RA, 1 q, 2 an
        ];
        m.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
        // CNAME www.example.com -> web.example.com (web + pointer to example.com at 16)
        m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6]);
        m.extend_from_slice(b"\x03web\xc0\x10");
        // A web.example.com 192.0.2.7 (pointer to the CNAME's data at 45)
        m.extend_from_slice(&[0xc0, 45, 0, 1, 0, 1, 0, 0, 1, 0, 0, 4, 192, 0, 2, 7]);
        m
    }

    #[test]
    fn compressed_names_and_records_decode() {
        let m = parse(&response()).unwrap();
        assert_eq!(m.id, 0x1234);
        assert!(m.is_response());
        assert_eq!(m.rcode(), 0);
        assert_eq!(m.header_flags(), ["RD", "RA"]);
        assert_eq!(m.question, Some(("www.example.com".into(), 1, 1)));
        assert_eq!(m.answers.len(), 2);
        assert_eq!(m.answers[0].data, "web.example.com");
        assert_eq!(m.answers[0].ttl, 60);
        assert_eq!(m.answers[1].name, "web.example.com");
        assert_eq!(m.answers[1].data, "192.0.2.7");
        assert_eq!(m.answers[1].ttl, 256);
    }

    #[test]
    fn pointer_loops_and_forward_pointers_are_errors() {
        let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]); // points at itself
        assert_eq!(parse(&m), Err(Malformed::BadName));
        let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[0xc0, 14, 0xc0, 12, 0, 1, 0, 1]); // forward, then back
        assert_eq!(parse(&m), Err(Malformed::BadName));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let full = response();
        for n in 0..full.len() {
            assert!(parse(&full[..n]).is_err(), "{n} bytes");
        }
    }

    #[test]
    fn odd_labels_are_escaped() {
        let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(b"\x03a.b\x02\x00z\x00\x00\x01\x00\x01");
        let q = parse(&m).unwrap().question.unwrap();
        assert_eq!(q.0, "a\\.b.\\000z");
        let mut root = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        root.extend_from_slice(b"\x00\x00\x02\x00\x01");
        assert_eq!(parse(&root).unwrap().question.unwrap().0, ".");
    }
}
