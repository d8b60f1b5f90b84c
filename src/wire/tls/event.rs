//! Turns a handshake into its ECS event fields (`event.*`, `tls.*`): negotiated version and
//! cipher, the client's offer and fingerprints, the server's certificate, and how it ended.

use super::conn::{Handshake, Unfinished};
use super::fingerprint;
use super::names;
use crate::wire::out::{Fields, Fixed, Report};

static EVENT: Fixed = Fixed::new(|f| {
    f.str("kind", "event");
    f.strs("category", &["network"]);
    f.strs("type", &["connection", "protocol"]);
    f.str("dataset", "tls");
});

/// A code point without a registry name, as `0x1a2b`.
fn code(v: u16) -> String {
    format!("0x{v:04x}")
}

impl Handshake {
    /// `success` when established, `failure` when an alert ended it or it was cut off, and
    /// `unknown` when too little was seen to say (one side only, a gap).
    pub fn outcome(&self) -> &'static str {
        if self.established {
            "success"
        } else if self.unfinished == Some(Unfinished::Alert)
            || self.alert.is_some_and(|a| a.level == 2)
        {
            "failure"
        } else if self.gap || self.client.is_none() || self.server.is_none() {
            "unknown"
        } else {
            "failure"
        }
    }

    /// `tls.version_protocol` and `tls.version` negotiated, when the server said it.
    pub fn version(&self) -> Option<(&'static str, &'static str)> {
        self.server
            .as_ref()
            .filter(|s| !s.retry)
            .and_then(|s| names::version(s.negotiated()))
    }

    /// The events' own fields; the connection's (addresses, network) are the caller's.
    pub fn write_fields<F: Fields>(&self, f: &mut F) {
        f.time("@timestamp", self.start_ns);
        f.open("event");
        f.fixed(&EVENT);
        f.time("start", self.start_ns);
        f.time("end", self.end_ns);
        f.int("duration", self.end_ns - self.start_ns);
        f.word("outcome", self.outcome());
        if let Some(u) = self.unfinished {
            f.word("reason", u.as_str());
        }
        f.close();

        f.open("tls");
        if let Some((protocol, version)) = self.version() {
            f.word("version", version);
            f.word("version_protocol", protocol);
        }
        if let Some(s) = self.server.as_ref().filter(|s| !s.retry) {
            match names::cipher(s.cipher) {
                Some(n) => f.word("cipher", n),
                None => f.string("cipher", code(s.cipher)),
            }
            if let Some(p) = &s.alpn {
                f.str("next_protocol", p);
            }
        }
        f.bool("established", self.established);
        f.bool("resumed", self.resumed);
        if self.hello_retry {
            f.bool("hello_retry", true);
        }
        if let Some(a) = self.alert {
            f.open("alert");
            f.word("level", if a.level == 2 { "fatal" } else { "warning" });
            match names::alert(a.description) {
                Some(d) => f.word("description", d),
                None => f.string("description", a.description.to_string()),
            }
            f.word("source", if a.from_server { "server" } else { "client" });
            f.close();
        } else if self.encrypted_alert {
            f.open("alert");
            f.word("description", "encrypted");
            f.close();
        }
        if self.sslv2_hello {
            f.bool("sslv2_hello", true);
        }
        if let Some(c) = &self.client {
            f.open("client");
            if let Some(n) = &c.server_name {
                f.str("server_name", n);
            }
            let ciphers: Vec<String> = c
                .ciphers
                .iter()
                .filter(|v| !names::is_grease(**v))
                .map(|&v| names::cipher(v).map_or_else(|| code(v), str::to_owned))
                .collect();
            let ciphers: Vec<&str> = ciphers.iter().map(String::as_str).collect();
            f.strs("supported_ciphers", &ciphers);
            if !c.alpn.is_empty() {
                let alpn: Vec<String> = c
                    .alpn
                    .iter()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect();
                let alpn: Vec<&str> = alpn.iter().map(String::as_str).collect();
                f.strs("alpn", &alpn);
            }
            f.string("ja3", fingerprint::ja3(c));
            f.string("ja4", fingerprint::ja4(c));
            f.close();
        }
        if self.server.is_some() || self.certificate.is_some() {
            f.open("server");
            if let Some(s) = &self.server {
                f.string("ja3s", fingerprint::ja3s(s));
            }
            if let Some(c) = &self.certificate {
                f.str("subject", &c.subject);
                f.str("issuer", &c.issuer);
                f.word("not_before", &c.not_before);
                f.word("not_after", &c.not_after);
                f.open("x509");
                f.word("serial_number", &c.serial);
                f.word("not_before", &c.not_before);
                f.word("not_after", &c.not_after);
                let name = |f: &mut F, key: &'static str, dn: &str, cn: &[String]| {
                    f.open(key);
                    f.str("distinguished_name", dn);
                    if !cn.is_empty() {
                        let cn: Vec<&str> = cn.iter().map(String::as_str).collect();
                        f.strs("common_name", &cn);
                    }
                    f.close();
                };
                name(f, "subject", &c.subject, &c.subject_cn);
                name(f, "issuer", &c.issuer, &c.issuer_cn);
                f.close();
            }
            f.close();
        }
        f.close();
        if self.gap {
            f.strs("tags", &["tcp_gap"]);
        }
    }
}

impl Report for Handshake {
    fn write<F: Fields>(&self, f: &mut F) {
        self.write_fields(f);
    }
}
