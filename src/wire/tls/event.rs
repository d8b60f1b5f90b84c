//! A handshake as a transaction of the analyzer trait: its common record (how it ended, for
//! the event and the RED metrics) and its ECS `tls.*` fields: negotiated version and cipher,
//! the client's offer and fingerprints, the server's certificate, the alert that ended it.

use super::conn::{Handshake, Unfinished};
use super::fingerprint;
use super::names;
use super::x509;
use crate::wire::analyzer::{Outcome, Record, Transaction};
use crate::wire::out::Fields;

/// A code point without a registry name, as `0x1a2b`.
fn code(v: u16) -> String {
    format!("0x{v:04x}")
}

impl Handshake {
    /// `success` when established, `failure` when an alert ended it or it was cut off, and
    /// `unknown` when too little was seen to say (one side only, a gap).
    pub fn outcome(&self) -> Outcome {
        if self.established {
            Outcome::Success
        } else if self.unfinished == Some(Unfinished::Alert)
            || self.alert.is_some_and(|a| a.level == 2)
        {
            Outcome::Failure
        } else if self.gap || self.client.is_none() || self.server.is_none() {
            Outcome::Unknown
        } else {
            Outcome::Failure
        }
    }

    /// The metrics' status label: `established`, the alert's description, or "".
    fn status(&self) -> &'static str {
        if self.established {
            "established"
        } else if let Some(a) = self.alert.filter(|a| a.level == 2) {
            names::alert(a.description).unwrap_or("alert")
        } else if self.encrypted_alert {
            "encrypted_alert"
        } else {
            ""
        }
    }

    /// `tls.version_protocol` and `tls.version` negotiated, when the server said it.
    pub fn version(&self) -> Option<(&'static str, &'static str)> {
        self.server
            .as_ref()
            .filter(|s| !s.retry)
            .and_then(|s| names::version(s.negotiated()))
    }

    /// `tls.*`.
    fn write_tls<F: Fields>(&self, f: &mut F) {
        f.open("tls");
        if let Some((protocol, version)) = self.version() {
            f.word("version", version);
            f.word("version_protocol", protocol);
        }
        if let Some(s) = self.server.as_ref().filter(|s| !s.retry) {
            if let Some(variant) = names::tls13_variant(s.negotiated(), s.selected_version) {
                f.word("version_variant", variant);
            }
            if let Some(draft) = names::tls13_draft(s.negotiated()) {
                f.int("version_draft", draft.into());
            }
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
            let versions: Vec<String> = c
                .offered_versions()
                .map(|v| names::version(v).map_or_else(|| code(v), |(_, n)| n.to_owned()))
                .collect();
            let versions: Vec<&str> = versions.iter().map(String::as_str).collect();
            f.strs("supported_versions", &versions);
            f.string("ja3", fingerprint::ja3(c));
            f.string("ja4", fingerprint::ja4(c));
            if let Some(cert) = &self.client_certificate {
                write_certificate(f, cert);
            }
            f.close();
        } else if let Some(cert) = &self.client_certificate {
            f.open("client");
            write_certificate(f, cert);
            f.close();
        }
        if self.server.is_some() || self.certificate.is_some() {
            f.open("server");
            if let Some(s) = &self.server {
                f.string("ja3s", fingerprint::ja3s(s));
            }
            if let Some(c) = &self.certificate {
                write_certificate(f, c);
            }
            f.close();
        }
        f.close();
    }
}

/// One side's certificate as ECS spells it under `tls.server` and `tls.client`: subject,
/// issuer, validity and digests, and the same under `x509` with the names apart.
fn write_certificate<F: Fields>(f: &mut F, c: &x509::Certificate) {
    f.str("subject", &c.subject);
    f.str("issuer", &c.issuer);
    f.word("not_before", &c.not_before);
    f.word("not_after", &c.not_after);
    if !c.truncated {
        f.open("hash");
        f.word("sha1", &c.sha1);
        f.word("sha256", &c.sha256);
        f.close();
    }
    f.open("x509");
    if c.truncated {
        f.bool("truncated", true);
    }
    f.word("serial_number", &c.serial);
    f.word("not_before", &c.not_before);
    f.word("not_after", &c.not_after);
    if !c.alternative_names.is_empty() {
        let names: Vec<&str> = c.alternative_names.iter().map(String::as_str).collect();
        f.strs("alternative_names", &names);
    }
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

impl Transaction for Handshake {
    fn record(&self) -> Record<'_> {
        Record {
            start_ns: self.start_ns,
            end_ns: self.end_ns,
            outcome: self.outcome(),
            reason: self.unfinished.map(Unfinished::as_str),
            request_bytes: self.client_bytes,
            response_bytes: self.server_bytes,
            operation: "handshake",
            status: self.status(),
            gap: self.gap,
        }
    }

    fn write_fields<F: Fields>(&self, f: &mut F) {
        self.write_tls(f);
    }
}
