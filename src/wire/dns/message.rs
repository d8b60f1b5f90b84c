//! DNS messages (RFC 1035) decoded from bytes: header, first question, answer records with
//! their data as text. Names follow compression pointers with a hop limit, so a pointer loop
//! is an error rather than a hang; a damaged record keeps the records before it, never a panic.

use std::fmt::Write as _;

/// Why a message could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// The message ends inside a field.
    Short,
    /// Compression pointers lead back where they were (more than `MAX_HOPS` of them).
    PointerLoop,
    /// A compression pointer leads past the end of the message.
    PointerOutside,
    /// A length byte of 64 to 191: a label longer than RFC 1035's 63 octets, or one of the
    /// extended label types RFC 6891 deprecated.
    LabelType,
}

impl Malformed {
    /// Its name in `dns.anomalies`.
    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::Short => "short_message",
            Malformed::PointerLoop => "pointer_loop",
            Malformed::PointerOutside => "pointer_out_of_bounds",
            Malformed::LabelType => "invalid_label_type",
        }
    }
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
    /// The owner name was cut at `MAX_NAME_TEXT` characters.
    pub name_truncated: bool,
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
    /// The first question's name was cut at `MAX_NAME_TEXT` characters.
    pub question_truncated: bool,
    /// A name in the question or the answers is past RFC 1035's 255 octets: the message is
    /// malformed (counted as such) but reported.
    pub name_too_long: bool,
    pub answers: Vec<Answer>,
    /// Record counts of the answer, authority and additional sections, as the header says.
    pub counts: [u16; 3],
    /// The EDNS `DO` bit (in the OPT record of the additional section).
    pub dnssec_ok: bool,
    /// The upper 8 bits of the response code, from the OPT record (RFC 6891 section 6.1.3).
    pub extended_rcode: u8,
    /// A record past the question did not decode: the records before it are kept (a corrupt
    /// additional section does not hide the answers), the rest of the message is not read.
    /// With `question_damaged`, the question did not decode either (`undecodable`).
    pub damaged: Option<Malformed>,
    /// Only the header decoded: the question is unknown.
    pub question_damaged: bool,
    /// A compression pointer leads forward, where RFC 1035 4.1.4 has a prior occurrence:
    /// followed (resolvers do), and listed.
    pub forward_pointer: bool,
}

impl Message {
    /// `dns.anomalies`: what of RFC 1035 this message breaks. A truncated (TC) message may
    /// end inside a record (RFC 2181 9), so that is no anomaly there.
    pub fn anomalies(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if let Some(why) = self.damaged.filter(|_| !self.truncation_expected()) {
            v.push(why.as_str());
        }
        if self.name_too_long {
            v.push("name_too_long");
        }
        if self.forward_pointer {
            v.push("forward_pointer");
        }
        v
    }

    /// Whether the message breaks a rule that makes it malformed (counted as such): damage
    /// other than a TC message's records ending early, or a name past 255 octets. A forward
    /// pointer is only listed.
    pub fn is_malformed(&self) -> bool {
        self.damaged.is_some() && !self.truncation_expected() || self.name_too_long
    }

    /// The TC bit is set and the message ends inside its records, as truncation allows.
    fn truncation_expected(&self) -> bool {
        self.flags & 0x0200 != 0 && self.damaged == Some(Malformed::Short) && !self.question_damaged
    }

    pub fn is_response(&self) -> bool {
        self.flags & 0x8000 != 0
    }
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0xf) as u8
    }
    /// The response code: the header's 4 bits under the OPT record's 8 (`BADVERS` is 16,
    /// a header code of 0 with an extended code of 1).
    pub fn rcode(&self) -> u16 {
        (u16::from(self.extended_rcode) << 4) | (self.flags & 0xf)
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
    /// A name at the cursor (the cursor moves past it, not past where pointers lead); its
    /// text only when `text`.
    fn name(&mut self, text: bool) -> Result<Name, Malformed> {
        let (name, end) = walk_name(self.msg, self.at, text)?;
        self.at = end;
        Ok(name)
    }
}

/// A name as text, and whether it was cut (see `read_name`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Name {
    pub text: String,
    /// Longer than `MAX_NAME_TEXT` characters: `text` is its beginning.
    pub truncated: bool,
    /// Past RFC 1035's 255 octets (3.1): malformed, still reported.
    pub too_long: bool,
    /// A pointer on the way leads forward (`Message::forward_pointer`).
    pub forward: bool,
}

/// Most characters of a name kept as text. RFC 1035 3.1 caps a name at 255 octets, at most
/// about 1,010 characters with every byte escaped; a longer name (malformed, but what a user
/// wants to see is whom it was for) keeps its first 1,025, as Suricata does, and is flagged.
pub const MAX_NAME_TEXT: usize = 1025;

/// The name starting at `at` as text (no trailing dot; the root is `.`), and where the
/// bytes after it start. Labels are escaped as in zone files (`\.`, `\DDD`).
pub fn read_name(msg: &[u8], at: usize) -> Result<(String, usize), Malformed> {
    read_name_full(msg, at).map(|(n, end)| (n.text, end))
}

/// `read_name` with the name's flags. A name past 255 octets is read on (its text capped at
/// `MAX_NAME_TEXT`) rather than refused: the transaction it belongs to is still reported.
pub fn read_name_full(msg: &[u8], at: usize) -> Result<(Name, usize), Malformed> {
    walk_name(msg, at, true)
}

fn walk_name(msg: &[u8], at: usize, text: bool) -> Result<(Name, usize), Malformed> {
    let mut name = Name::default();
    let (mut pos, mut end, mut wire_len) = (at, None, 0usize);
    // RFC 1035 4.1.4 has pointers lead to a prior occurrence, but encoders that point forward
    // exist and resolvers follow them: any target inside the message is followed, and the hop
    // count ends a loop. Once a pointer was followed (so where the name's bytes end is known)
    // and the text is cut (or, without text, the name is past 255 octets), the walk stops: a
    // name costs its own bytes, a bounded run of labels elsewhere and MAX_HOPS pointers, not
    // a whole run of labels each (tcpdump's dns_fwdptr.pcap: thousands of names pointing into
    // one run of 30,000 labels took half a second of CPU).
    let mut hops = 0;
    loop {
        let len = *msg.get(pos).ok_or(Malformed::Short)? as usize;
        match len & 0xc0 {
            0xc0 => {
                let low = *msg.get(pos + 1).ok_or(Malformed::Short)? as usize;
                let target = ((len & 0x3f) << 8) | low;
                end.get_or_insert(pos + 2);
                hops += 1;
                if target >= msg.len() {
                    return Err(Malformed::PointerOutside);
                }
                if hops > MAX_HOPS {
                    return Err(Malformed::PointerLoop);
                }
                name.forward |= target > pos;
                if name.truncated || (!text && name.too_long) {
                    return Ok((name, end.unwrap_or(pos + 2)));
                }
                pos = target;
            }
            0x00 if len == 0 => {
                if text && name.text.is_empty() {
                    name.text.push('.');
                }
                return Ok((name, end.unwrap_or(pos + 1)));
            }
            0x00 => {
                let label = msg.get(pos + 1..pos + 1 + len).ok_or(Malformed::Short)?;
                wire_len += len + 1;
                name.too_long |= wire_len > 255;
                if text && !name.truncated {
                    append_label(&mut name, label);
                }
                pos += 1 + len;
                let done = if text { name.truncated } else { name.too_long };
                if let (true, Some(end)) = (done, end) {
                    return Ok((name, end));
                }
            }
            // 0x40 and 0x80: extended label types (RFC 6891 deprecated them), or a label
            // past 63 octets.
            _ => return Err(Malformed::LabelType),
        }
    }
}

/// One label onto the name's text, escaped, up to `MAX_NAME_TEXT` characters (an escape is
/// never split).
fn append_label(name: &mut Name, label: &[u8]) {
    let dot = !name.text.is_empty();
    for (i, &c) in std::iter::once(&b'.')
        .filter(|_| dot)
        .chain(label)
        .enumerate()
    {
        // ASCII only, so each byte is a char.
        let mut piece = [c, 0, 0, 0];
        let n = match c {
            b'.' if dot && i == 0 => 1,
            b'.' | b'\\' => {
                piece = [b'\\', c, 0, 0];
                2
            }
            0x21..=0x7e => 1,
            _ => {
                piece = [b'\\', b'0' + c / 100, b'0' + c / 10 % 10, b'0' + c % 10];
                4
            }
        };
        if name.text.len() + n > MAX_NAME_TEXT {
            name.truncated = true;
            return;
        }
        name.text.extend(piece[..n].iter().map(|&b| b as char));
    }
}

/// Most compression pointers followed in one name: more than a legitimate name needs (a
/// 255-byte name has at most 127 labels), few enough that a loop ends at once.
const MAX_HOPS: usize = 127;

/// Decodes a whole message: an error when the header or a question does not decode (nothing
/// to pair or report), else the message with what decoded (see `Message::damaged`).
pub fn parse(msg: &[u8]) -> Result<Message, Malformed> {
    let (id, flags, qd) = header(msg).ok_or(Malformed::Short)?;
    let counts = [be16(msg, 6), be16(msg, 8), be16(msg, 10)];
    let mut r = Reader { msg, at: 12 };
    let (mut question, mut question_truncated, mut name_too_long) = (None, false, false);
    let mut forward_pointer = false;
    for i in 0..qd {
        let name = r.name(i == 0)?;
        let (qtype, qclass) = (r.u16()?, r.u16()?);
        name_too_long |= name.too_long;
        forward_pointer |= name.forward;
        if i == 0 {
            question_truncated = name.truncated;
            question = Some((name.text, qtype, qclass));
        }
    }
    let mut m = Message {
        id,
        flags,
        question,
        question_truncated,
        name_too_long,
        answers: Vec::new(),
        counts,
        dnssec_ok: false,
        extended_rcode: 0,
        damaged: None,
        question_damaged: false,
        forward_pointer,
    };
    m.damaged = records(&mut r, &mut m).err();
    Ok(m)
}

/// A message whose question did not decode (`why`), from its header alone, so that it is
/// still reported with what is wrong: `None` when there is no whole header either.
pub fn undecodable(msg: &[u8], why: Malformed) -> Option<Message> {
    let (id, flags, _) = header(msg)?;
    Some(Message {
        id,
        flags,
        question: None,
        question_truncated: false,
        name_too_long: false,
        answers: Vec::new(),
        counts: [be16(msg, 6), be16(msg, 8), be16(msg, 10)],
        dnssec_ok: false,
        extended_rcode: 0,
        damaged: Some(why),
        question_damaged: true,
        forward_pointer: false,
    })
}

/// The answer, authority and additional sections into `m`, until one does not decode.
fn records(r: &mut Reader<'_>, m: &mut Message) -> Result<(), Malformed> {
    let counts = m.counts;
    for (section, &count) in counts.iter().enumerate() {
        for _ in 0..count {
            let kept = section == 0 && m.opcode() != 5 && m.answers.len() < MAX_ANSWERS;
            let name = r.name(kept)?;
            m.forward_pointer |= name.forward;
            let (rtype, class, ttl) = (r.u16()?, r.u16()?, r.u32()?);
            let len = r.u16()? as usize;
            let start = r.at;
            let rdata = r.take(len)?;
            if section == 2 && rtype == 41 {
                // OPT: the TTL field holds the extended rcode, version and the DO bit.
                m.dnssec_ok = ttl & 0x8000 != 0;
                m.extended_rcode = (ttl >> 24) as u8;
            }
            // An UPDATE's first section is its prerequisites (RFC 2136 2.4: records of class
            // ANY or NONE with empty data, legal there), no answers.
            if kept {
                m.name_too_long |= name.too_long;
                m.answers.push(Answer {
                    name: name.text,
                    name_truncated: name.truncated,
                    rtype,
                    class,
                    ttl,
                    data: rdata_text(r.msg, start, rdata, rtype)?,
                });
            }
        }
    }
    Ok(())
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
        // TXT, and SPF (RFC 4408 3.1.1: the same format).
        16 | 99 => {
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
    // The IANA registry of resource record types (ANY is its `*`).
    let name = match t {
        1 => "A",
        2 => "NS",
        3 => "MD",
        4 => "MF",
        5 => "CNAME",
        6 => "SOA",
        7 => "MB",
        8 => "MG",
        9 => "MR",
        10 => "NULL",
        11 => "WKS",
        12 => "PTR",
        13 => "HINFO",
        14 => "MINFO",
        15 => "MX",
        16 => "TXT",
        17 => "RP",
        18 => "AFSDB",
        19 => "X25",
        20 => "ISDN",
        21 => "RT",
        22 => "NSAP",
        23 => "NSAP-PTR",
        24 => "SIG",
        25 => "KEY",
        26 => "PX",
        27 => "GPOS",
        28 => "AAAA",
        29 => "LOC",
        30 => "NXT",
        31 => "EID",
        32 => "NIMLOC",
        33 => "SRV",
        34 => "ATMA",
        35 => "NAPTR",
        36 => "KX",
        37 => "CERT",
        38 => "A6",
        39 => "DNAME",
        40 => "SINK",
        41 => "OPT",
        42 => "APL",
        43 => "DS",
        44 => "SSHFP",
        45 => "IPSECKEY",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        49 => "DHCID",
        50 => "NSEC3",
        51 => "NSEC3PARAM",
        52 => "TLSA",
        53 => "SMIMEA",
        55 => "HIP",
        56 => "NINFO",
        57 => "RKEY",
        58 => "TALINK",
        59 => "CDS",
        60 => "CDNSKEY",
        61 => "OPENPGPKEY",
        62 => "CSYNC",
        63 => "ZONEMD",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        100 => "UINFO",
        101 => "UID",
        102 => "GID",
        103 => "UNSPEC",
        104 => "NID",
        105 => "L32",
        106 => "L64",
        107 => "LP",
        108 => "EUI48",
        109 => "EUI64",
        249 => "TKEY",
        250 => "TSIG",
        251 => "IXFR",
        252 => "AXFR",
        253 => "MAILB",
        254 => "MAILA",
        255 => "ANY",
        256 => "URI",
        257 => "CAA",
        258 => "AVC",
        259 => "DOA",
        260 => "AMTRELAY",
        32768 => "TA",
        32769 => "DLV",
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
pub fn rcode_name(r: u16) -> &'static str {
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
        11 => "DSOTYPENI",
        // 16 is BADSIG in a TSIG record, but only OPT's extended code reaches here.
        16 => "BADVERS",
        17 => "BADKEY",
        18 => "BADTIME",
        19 => "BADMODE",
        20 => "BADNAME",
        21 => "BADALG",
        22 => "BADTRUNC",
        23 => "BADCOOKIE",
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
mod tests;
