//! The handshake messages trawl reads (RFC 8446 section 4, RFC 5246 section 7.4): ClientHello,
//! ServerHello and Certificate, parsed from one complete handshake message body. Every length
//! read is checked against what is there; a message that does not add up is `None`.

use super::names::{self, is_grease};

/// A bounds-checked cursor over a message.
pub struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8]) -> Reader<'a> {
        Reader { b }
    }
    pub fn is_empty(&self) -> bool {
        self.b.is_empty()
    }
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.b.len() {
            return None;
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Some(head)
    }
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    pub fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (b[0] as usize) << 16 | (b[1] as usize) << 8 | b[2] as usize)
    }
    /// A vector with a one-byte length.
    pub fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()? as usize;
        self.take(n)
    }
    pub fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    pub fn vec24(&mut self) -> Option<&'a [u8]> {
        let n = self.u24()?;
        self.take(n)
    }
    /// A vector of u16 code points; an odd length is malformed.
    fn u16s(body: &[u8]) -> Option<Vec<u16>> {
        if !body.len().is_multiple_of(2) {
            return None;
        }
        Some(
            body.chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect(),
        )
    }
}

/// Extension code points trawl reads.
mod ext {
    pub const SERVER_NAME: u16 = 0;
    pub const SUPPORTED_GROUPS: u16 = 10;
    pub const EC_POINT_FORMATS: u16 = 11;
    pub const SIGNATURE_ALGORITHMS: u16 = 13;
    pub const ALPN: u16 = 16;
    pub const SESSION_TICKET: u16 = 35;
    pub const PRE_SHARED_KEY: u16 = 41;
    pub const SUPPORTED_VERSIONS: u16 = 43;
}

/// Longest server name or ALPN protocol kept (RFC 6066 caps host names at 2^16 - 1 bytes;
/// DNS names are at most 253).
const MAX_NAME: usize = 255;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// `legacy_version` (the highest version for TLS <= 1.2 clients; 0x0303 for 1.3 ones).
    pub version: u16,
    pub session_id: Vec<u8>,
    /// In the client's order, GREASE included (the fingerprints drop it).
    pub ciphers: Vec<u16>,
    /// Extension types in the client's order, GREASE included.
    pub extensions: Vec<u16>,
    /// The `host_name` of the server_name extension.
    pub server_name: Option<String>,
    pub groups: Vec<u16>,
    pub point_formats: Vec<u8>,
    pub signature_algorithms: Vec<u16>,
    /// ALPN protocol names, raw (JA4 looks at their bytes).
    pub alpn: Vec<Vec<u8>>,
    /// The supported_versions extension.
    pub versions: Vec<u16>,
    /// A non-empty session ticket was offered (resumption, RFC 5077).
    pub ticket: bool,
}

impl ClientHello {
    /// The versions the client offers, in its order: supported_versions without GREASE when
    /// present (RFC 8446 4.2.1), else the one version of the hello, the highest it accepts
    /// (RFC 5246 7.4.1.2).
    pub fn offered_versions(&self) -> impl Iterator<Item = u16> + '_ {
        let listed = self.versions.iter().copied().filter(|v| !is_grease(*v));
        let legacy = (!self.versions.iter().any(|v| !is_grease(*v))).then_some(self.version);
        listed.chain(legacy)
    }

    /// The highest version offered: supported_versions when present (RFC 8446 4.2.1).
    pub fn max_version(&self) -> u16 {
        self.versions
            .iter()
            .copied()
            .filter(|v| !is_grease(*v))
            .max()
            .unwrap_or(self.version)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerHello {
    pub version: u16,
    pub session_id: Vec<u8>,
    pub cipher: u16,
    pub extensions: Vec<u16>,
    /// supported_versions: the version a TLS 1.3 server chose.
    pub selected_version: Option<u16>,
    pub alpn: Option<String>,
    /// The server accepted a pre-shared key (TLS 1.3 resumption).
    pub psk: bool,
    /// This is a HelloRetryRequest (RFC 8446 4.1.3): the client will send a second hello.
    pub retry: bool,
}

impl ServerHello {
    /// The version the connection uses.
    pub fn negotiated(&self) -> u16 {
        self.selected_version.unwrap_or(self.version)
    }
}

/// The last draft of TLS 1.3 whose ServerHello lacks the TLS 1.2 fields (draft 22 put them
/// back, with the version in supported_versions, for middleboxes).
const PRE_22_DRAFT: u8 = 21;

/// SHA-256 of "HelloRetryRequest", the `random` that marks one (RFC 8446 4.1.3).
const RETRY_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

fn name(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(MAX_NAME)]).into_owned()
}

/// A ClientHello body (after the 4-byte handshake header).
pub fn client_hello(body: &[u8]) -> Option<ClientHello> {
    let mut r = Reader::new(body);
    let mut h = ClientHello {
        version: r.u16()?,
        ..ClientHello::default()
    };
    r.take(32)?;
    h.session_id = r.vec8()?.to_vec();
    h.ciphers = Reader::u16s(r.vec16()?)?;
    r.vec8()?; // compression methods
    if r.is_empty() {
        // Extensions are optional before TLS 1.3 (RFC 5246 7.4.1.2).
        return Some(h);
    }
    let mut exts = Reader::new(r.vec16()?);
    while !exts.is_empty() {
        let ty = exts.u16()?;
        let data = exts.vec16()?;
        h.extensions.push(ty);
        let mut d = Reader::new(data);
        match ty {
            ext::SERVER_NAME if !data.is_empty() => {
                let mut list = Reader::new(d.vec16()?);
                while !list.is_empty() {
                    let kind = list.u8()?;
                    let n = list.vec16()?;
                    if kind == 0 && h.server_name.is_none() {
                        h.server_name = Some(name(n));
                    }
                }
            }
            ext::SUPPORTED_GROUPS => h.groups = Reader::u16s(d.vec16()?)?,
            ext::EC_POINT_FORMATS => h.point_formats = d.vec8()?.to_vec(),
            ext::SIGNATURE_ALGORITHMS => h.signature_algorithms = Reader::u16s(d.vec16()?)?,
            ext::ALPN => {
                let mut list = Reader::new(d.vec16()?);
                while !list.is_empty() {
                    let p = list.vec8()?;
                    h.alpn.push(p[..p.len().min(MAX_NAME)].to_vec());
                }
            }
            ext::SUPPORTED_VERSIONS => h.versions = Reader::u16s(d.vec8()?)?,
            ext::SESSION_TICKET => h.ticket = !data.is_empty(),
            _ => {}
        }
    }
    Some(h)
}

/// A ServerHello body.
pub fn server_hello(body: &[u8]) -> Option<ServerHello> {
    let mut r = Reader::new(body);
    let mut h = ServerHello {
        version: r.u16()?,
        ..ServerHello::default()
    };
    h.retry = r.take(32)? == RETRY_RANDOM;
    if h.version == 0x0304 || names::tls13_draft(h.version).is_some_and(|d| d <= PRE_22_DRAFT) {
        // Drafts of TLS 1.3 up to 21 name their version here (the first ones 0x0304, which
        // RFC 8446 never puts in this field) and have neither a session id nor a compression
        // method (draft-ietf-tls-tls13-21 4.1.3).
        h.cipher = r.u16()?;
    } else {
        h.session_id = r.vec8()?.to_vec();
        h.cipher = r.u16()?;
        r.u8()?; // compression method
    }
    if r.is_empty() {
        return Some(h);
    }
    let mut exts = Reader::new(r.vec16()?);
    while !exts.is_empty() {
        let ty = exts.u16()?;
        let data = exts.vec16()?;
        h.extensions.push(ty);
        let mut d = Reader::new(data);
        match ty {
            ext::SUPPORTED_VERSIONS => h.selected_version = Some(d.u16()?),
            ext::ALPN => {
                let mut list = Reader::new(d.vec16()?);
                h.alpn = Some(name(list.vec8()?));
            }
            ext::PRE_SHARED_KEY => h.psk = true,
            _ => {}
        }
    }
    Some(h)
}

/// The server's own certificate from the first bytes of a Certificate message too long to
/// keep whole (TLS <= 1.2 form), once those bytes hold it; `None` until then.
pub fn leaf_prefix(prefix: &[u8]) -> Option<Vec<u8>> {
    let len = |b: &[u8]| (b[0] as usize) << 16 | (b[1] as usize) << 8 | b[2] as usize;
    let head = prefix.get(..6)?;
    let leaf = prefix.get(6..6 + len(&head[3..]))?;
    (!leaf.is_empty()).then(|| leaf.to_vec())
}

/// The first (the server's own) certificate of a Certificate message (TLS <= 1.2 form:
/// RFC 5246 7.4.2), as DER. `None` when the list is empty or malformed.
pub fn leaf_certificate(body: &[u8]) -> Option<&[u8]> {
    let mut r = Reader::new(body);
    let mut list = Reader::new(r.vec24()?);
    list.vec24().filter(|c| !c.is_empty())
}

/// A Certificate message whose list is empty (TLS <= 1.2): a client asked for a certificate
/// that has none (RFC 5246 7.4.6).
pub fn empty_certificate_list(body: &[u8]) -> bool {
    body == [0, 0, 0]
}
