//! gRPC over HTTP/2 as a reader sees it: the service and method in `:path`, the status and
//! message in the trailers (or a trailers-only response), and the 5-byte length-prefixed
//! messages inside DATA, counted without being buffered.

/// `/package.Service/Method` as (service, method); `None` for a path of another shape.
pub fn split_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (service, method) = rest.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/'))
        .then_some((service, method))
}

/// Whether a content type is gRPC's (`application/grpc`, `application/grpc+proto`...).
pub fn is_grpc(content_type: &str) -> bool {
    let ct = content_type.as_bytes();
    ct.len() >= 16
        && ct[..16].eq_ignore_ascii_case(b"application/grpc")
        && matches!(ct.get(16), None | Some(b'+') | Some(b';'))
}

/// The canonical name of a status code (the RED metrics' `status` label).
pub fn status_name(code: i64) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "OTHER",
    }
}

/// `grpc-message` is percent-encoded (the gRPC HTTP/2 spec): decoded, invalid escapes kept.
pub fn decode_message(raw: &str) -> String {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).and_then(|&c| hex(c)),
            b.get(i + 2).and_then(|&c| hex(c)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The length-prefixed messages of one direction of a call, counted as DATA goes by.
#[derive(Debug, Default, Clone)]
pub struct Messages {
    /// Messages whose 5-byte prefix was read.
    pub count: u64,
    /// Their declared payload lengths, summed.
    pub bytes: u64,
    /// Messages flagged compressed.
    pub compressed: u64,
    prefix: [u8; 5],
    have: usize,
    /// Payload bytes of the current message still to come.
    remaining: u64,
    /// A gap made the boundaries unknown: counting stopped.
    pub lost: bool,
}

impl Messages {
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.lost {
            if self.remaining > 0 {
                let n = (data.len() as u64).min(self.remaining);
                self.remaining -= n;
                data = &data[n as usize..];
                continue;
            }
            let n = (5 - self.have).min(data.len());
            self.prefix[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == 5 {
                self.have = 0;
                self.count += 1;
                let len = u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]) as u64;
                self.bytes += len;
                if self.prefix[0] & 1 != 0 {
                    self.compressed += 1;
                }
                self.remaining = len;
            }
        }
    }

    /// `len` bytes of the direction's DATA were not captured.
    pub fn gap(&mut self, len: u64) {
        if self.have == 0 && self.remaining >= len {
            self.remaining -= len;
        } else {
            self.lost = true;
        }
    }

    /// A message started and did not end (the call was cut off).
    pub fn partial(&self) -> bool {
        self.have > 0 || self.remaining > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_content_types_and_messages() {
        assert_eq!(
            split_path("/helloworld.Greeter/SayHello"),
            Some(("helloworld.Greeter", "SayHello"))
        );
        assert_eq!(split_path("/index.html"), None);
        assert_eq!(split_path("/a/b/c"), None);
        assert!(is_grpc("application/grpc"));
        assert!(is_grpc("application/grpc+proto"));
        assert!(!is_grpc("application/grpc-web"));
        assert!(!is_grpc("text/html"));
        assert_eq!(
            decode_message("no%20such%20user%3a%E2%9C%93"),
            "no such user:✓"
        );
        assert_eq!(decode_message("50%"), "50%");
    }

    #[test]
    fn messages_are_counted_across_chunks() {
        let mut m = Messages::default();
        let mut wire = vec![0, 0, 0, 0, 3, b'a', b'b', b'c', 1, 0, 0, 0, 0];
        wire.extend_from_slice(&[0, 0, 0, 1, 0]);
        wire.extend(std::iter::repeat_n(7, 256));
        for chunk in wire.chunks(2) {
            m.feed(chunk);
        }
        assert_eq!((m.count, m.bytes, m.compressed), (3, 259, 1));
        assert!(!m.partial());
        m.feed(&[0, 0, 0, 0, 9, 1]);
        assert!(m.partial());
        m.gap(4);
        m.feed(&[1, 2, 3, 4]);
        assert_eq!(m.count, 4);
        m.gap(10);
        assert!(m.lost);
    }
}
