//! DNS and TLS that are legal but uncommon, against tshark's decoding of the same captures:
//! tests/data/dns_tls_odd.pcap (tests/data/dns_tls_odd.py: a forward compression pointer, a
//! response whose additional record is cut short, NULL/SSHFP/SPF records, responses without a
//! question, TLS 1.3 draft handshakes, a Certificate message past the message limit, a client
//! certificate, ClientHellos never answered, DNS over TCP with bytes missing mid-message, an
//! HTTP request line without the space before its version, a DNS name past 255 octets, a
//! response from port 53 to port 53, an RFC 2136 UPDATE, a TLS 1.3 experiment code, TLS
//! after IMAP and SMTP STARTTLS and PostgreSQL's SSLRequest, a server certificate past the
//! message limit) and
//! the openssl capture tests/data/tls/tls12_http11.pcap (its certificate's subject alternative
//! names and digests, with `openssl x509` as the second oracle).

use serde_json::Value as J;
use std::path::Path;
use std::process::Command;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");

fn trawl_pcap(args: &[&str], pcap: &str) -> Vec<J> {
    let out = Command::new(env!("CARGO_BIN_EXE_trawl"))
        .arg("pcap")
        .args(args)
        .arg(Path::new(DATA).join(pcap))
        .output()
        .expect("trawl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// tshark's fields for the packets `filter` selects, one row per packet, `;` between the
/// occurrences of a field.
fn tshark(pcap: &str, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(Path::new(DATA).join(pcap)).args([
        "-Y",
        filter,
        "-T",
        "fields",
        "-E",
        "aggregator=;",
    ]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd
        .output()
        .expect("tshark is installed (scripts/setup.sh)");
    assert!(out.status.success(), "tshark on {pcap}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

fn by_id(events: &[J], id: i64) -> &J {
    let found: Vec<&J> = events.iter().filter(|e| e["dns"]["id"] == id).collect();
    assert_eq!(
        found.len(),
        1,
        "one transaction with id {id:#x}: {events:#?}"
    );
    found[0]
}

fn answers(e: &J, key: &str) -> Vec<String> {
    e["dns"]["answers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x[key].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn odd_dns_messages_decode_as_tshark_reads_them() {
    let events = trawl_pcap(&["--only", "dns"], "dns_tls_odd.pcap");
    let rows = tshark(
        "dns_tls_odd.pcap",
        "udp && dns.flags.response == 1 && dns.count.queries > 0 && dns.id <= 0x1006",
        &[
            "dns.id",
            "dns.qry.name",
            "dns.count.answers",
            "dns.resp.type",
        ],
    );
    assert_eq!(rows.len(), 5);
    for r in &rows {
        let id = i64::from_str_radix(r[0].trim_start_matches("0x"), 16).expect("id");
        let e = by_id(&events, id);
        // Every query was seen and answered: none lost to a name or record trawl refused.
        assert_eq!(e["dns"]["type"], "answer", "{id:#x}: {e}");
        assert!(e["event"]["reason"].is_null(), "{id:#x}: {e}");
        assert_eq!(e["dns"]["question"]["name"], r[1].as_str(), "{id:#x}");
        let n: usize = r[2].parse().expect("count");
        assert_eq!(answers(e, "name").len(), n, "{id:#x}: {e}");
    }

    // The forward pointer names the second question's name.
    assert_eq!(answers(by_id(&events, 0x1001), "data"), ["192.0.2.1"]);

    // The SRV answers before the damaged additional record, as tshark reads them.
    let srv = &tshark(
        "dns_tls_odd.pcap",
        "dns.id == 0x1002 && dns.flags.response == 1",
        &["dns.srv.priority", "dns.srv.port", "dns.srv.target"],
    )[0];
    let (prio, port, target) = (
        srv[0].split(';').collect::<Vec<_>>(),
        srv[1].split(';').collect::<Vec<_>>(),
        srv[2].split(';').collect::<Vec<_>>(),
    );
    let want: Vec<String> = (0..2)
        .map(|i| format!("{} 1 {} {}", prio[i], port[i], target[i]))
        .collect();
    assert_eq!(answers(by_id(&events, 0x1002), "data"), want);

    // Type names are the IANA registry's (tshark's numbers: 10, 44, 99), SPF data is TXT's.
    for (id, ty) in [(0x1003, "NULL"), (0x1004, "SSHFP"), (0x1005, "SPF")] {
        let e = by_id(&events, id);
        assert_eq!(e["dns"]["question"]["type"], ty);
        assert_eq!(answers(e, "type"), [ty]);
    }
    let spf = &tshark("dns_tls_odd.pcap", "dns.spf", &["dns.spf"])[0][0];
    assert_eq!(
        answers(by_id(&events, 0x1005), "data"),
        [format!("\"{spf}\"")]
    );
}

#[test]
fn a_response_without_a_question_pairs_by_the_name_it_answers() {
    let events = trawl_pcap(&["--only", "dns"], "dns_tls_odd.pcap");
    let mut same_id: Vec<&J> = events.iter().filter(|e| e["dns"]["id"] == 0x1006).collect();
    assert_eq!(same_id.len(), 2, "{events:#?}");
    same_id.sort_by_key(|e| e["event"]["reason"].is_null());
    // tshark pairs by id alone, so only its decoding of each message is the oracle here.
    let rows = tshark(
        "dns_tls_odd.pcap",
        "dns.id == 0x1006",
        &[
            "dns.flags.response",
            "dns.qry.name",
            "dns.resp.name",
            "dns.a",
        ],
    );
    let (query, other, mine) = (&rows[0], &rows[1], &rows[2]);
    assert_eq!(
        (query[0].as_str(), other[0].as_str(), mine[0].as_str()),
        ("0", "1", "1")
    );
    // The announcement of another name shares the id but answers nothing asked.
    let unasked = same_id[0];
    assert_eq!(unasked["event"]["reason"], "request_missing", "{unasked}");
    assert_eq!(answers(unasked, "name"), [other[2].as_str()]);
    assert_eq!(answers(unasked, "data"), [other[3].as_str()]);
    // The response naming the question's name is its answer.
    let answered = same_id[1];
    assert_eq!(answered["dns"]["question"]["name"], query[1].as_str());
    assert_eq!(answers(answered, "name"), [mine[2].as_str()]);
    assert_eq!(answers(answered, "data"), [mine[3].as_str()]);
}

#[test]
fn tls13_draft_handshakes_name_their_draft() {
    let mut events = trawl_pcap(&["--only", "tls"], "dns_tls_odd.pcap");
    events.retain(|e| e["destination"]["port"] == 443);
    assert_eq!(events.len(), 2, "{events:#?}");
    events.sort_by_key(|e| e["source"]["port"].as_u64());
    let hellos = tshark(
        "dns_tls_odd.pcap",
        "tcp.srcport == 443 && tls.handshake.type == 2",
        &[
            "tcp.srcport",
            "tls.handshake.version",
            "tls.handshake.ciphersuite",
        ],
    );
    assert_eq!(
        hellos[0][1], "0x7f12",
        "the fixture's first ServerHello is draft 18's"
    );
    let t = &events[0]["tls"];
    assert_eq!(t["version"], "1.3");
    assert_eq!(t["version_protocol"], "tls");
    assert_eq!(t["version_draft"], 18);
    // 0x1301, TLS_AES_128_GCM_SHA256: read after the draft's version and random.
    assert_eq!(hellos[0][2], "0x1301");
    assert_eq!(t["cipher"], "TLS_AES_128_GCM_SHA256");
    let sni = &tshark(
        "dns_tls_odd.pcap",
        "tcp.dstport == 443 && tls.handshake.type == 1",
        &["tls.handshake.extensions_server_name"],
    )[0][0];
    assert_eq!(t["client"]["server_name"], sni.as_str());

    assert_eq!(t["version_variant"], "draft");

    // The early drafts' 0x0304 in the same layout: TLS 1.3, draft unknown. tshark reads this
    // ServerHello as RFC 8446's (a session id after the random), so its cipher is no oracle
    // here; the fixture's server sent 0x1301.
    assert_eq!(hellos[1][1], "0x0304");
    let t = &events[1]["tls"];
    assert_eq!(t["version"], "1.3");
    assert!(t["version_draft"].is_null(), "{t}");
    assert_eq!(t["version_variant"], "early_draft");
    assert_eq!(t["cipher"], "TLS_AES_128_GCM_SHA256");
}

#[test]
fn a_tls13_experiment_code_is_tls13_and_says_so() {
    let events = trawl_pcap(
        &["--only", "tls", "--tls-ports", "4443"],
        "dns_tls_odd.pcap",
    );
    let exp: Vec<&J> = events
        .iter()
        .filter(|e| e["destination"]["port"] == 4443)
        .collect();
    assert_eq!(exp.len(), 1, "{events:#?}");
    let hello = &tshark(
        "dns_tls_odd.pcap",
        "tcp.srcport == 4443 && tls.handshake.type == 2",
        &[
            "tls.handshake.extensions.supported_version",
            "tls.handshake.ciphersuite",
        ],
    )[0];
    assert_eq!(hello[0], "0x7e01");
    assert_eq!(hello[1], "0x1301");
    let t = &exp[0]["tls"];
    assert_eq!(t["version"], "1.3", "{t}");
    assert_eq!(t["version_protocol"], "tls");
    assert_eq!(t["version_variant"], "experiment");
    assert!(t["version_draft"].is_null(), "{t}");
    assert_eq!(t["cipher"], "TLS_AES_128_GCM_SHA256");
    assert_eq!(t["established"], true);
}

#[test]
fn a_handshake_after_starttls_is_reported_on_its_connection() {
    let events = trawl_pcap(
        &["--only", "tls", "--tls-ports", "143,25,5432"],
        "dns_tls_odd.pcap",
    );
    for port in [143, 25, 5432] {
        let on: Vec<&J> = events
            .iter()
            .filter(|e| e["destination"]["port"] == port)
            .collect();
        assert_eq!(on.len(), 1, "port {port}: {events:#?}");
        let t = &on[0]["tls"];
        // tshark decodes the upgrade (IMAP, SMTP, PostgreSQL) and the handshake after it.
        let hs = &tshark(
            "dns_tls_odd.pcap",
            &format!("tcp.srcport == {port} && tls.handshake.type == 2"),
            &["tls.handshake.version", "tls.handshake.ciphersuite"],
        )[0];
        assert_eq!(hs[0], "0x0303", "port {port}");
        assert_eq!(t["version"], "1.2", "port {port}: {t}");
        assert_eq!(hs[1], "0xc030");
        assert_eq!(t["cipher"], "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384");
        assert_eq!(t["established"], true, "port {port}: {t}");
        let der = &tshark(
            "dns_tls_odd.pcap",
            &format!("tcp.srcport == {port} && tls.handshake.type == 11"),
            &["tls.handshake.certificate"],
        )[0][0];
        let want = openssl_x509(&unhex(der.split(';').next().unwrap_or("")));
        let field = |k: &str| {
            want.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        // RFC 4514 names registered attribute types by their descriptor: openssl's
        // emailAddress= and postalCode=, not dotted OIDs.
        let subject = field("subject");
        assert!(subject.contains("emailAddress=") && subject.contains("postalCode="));
        assert_eq!(t["server"]["subject"], subject.as_str(), "port {port}");
        assert_eq!(
            t["server"]["hash"]["sha1"],
            field("sha1 Fingerprint").as_str()
        );
    }
}

/// A name's labels from its wire form at `at`, as zone-file text (no pointers: the fixture's
/// query writes the name whole).
fn labels(msg: &[u8], mut at: usize) -> String {
    let mut out = Vec::new();
    while let Some(&n) = msg.get(at).filter(|&&n| n != 0) {
        out.push(String::from_utf8_lossy(&msg[at + 1..at + 1 + n as usize]).into_owned());
        at += 1 + n as usize;
    }
    out.join(".")
}

#[test]
fn a_name_past_255_octets_is_reported_cut_and_flagged() {
    let events = trawl_pcap(&["--only", "dns"], "dns_tls_odd.pcap");
    // tshark refuses the name (`<Name too long>`) but reads the header: the raw query is the
    // oracle for the name, tshark for the response code.
    let rows = tshark(
        "dns_tls_odd.pcap",
        "dns.id == 0x1007",
        &["dns.flags.response", "dns.flags.rcode", "udp.payload"],
    );
    assert_eq!(rows.len(), 2);
    let full = labels(&unhex(&rows[0][2]), 12);
    assert!(full.len() > 1025, "{}", full.len());
    let e = by_id(&events, 0x1007);
    assert_eq!(e["dns"]["type"], "answer", "{e}");
    assert!(e["event"]["reason"].is_null());
    assert_eq!(rows[1][1], "1");
    assert_eq!(e["dns"]["response_code"], "FORMERR");
    let q = &e["dns"]["question"];
    assert_eq!(q["name"], &full[..1025]);
    assert_eq!(q["name_truncated"], true);
    // Names within the limit carry no flag.
    assert!(by_id(&events, 0x1001)["dns"]["question"]["name_truncated"].is_null());
}

#[test]
fn an_update_reports_its_zone_and_no_prerequisite_as_an_answer() {
    let events = trawl_pcap(&["--only", "dns"], "dns_tls_odd.pcap");
    let rows = tshark(
        "dns_tls_odd.pcap",
        "dns.id == 0x1009 && dns.flags.response == 1",
        &[
            "dns.flags.opcode",
            "dns.flags.rcode",
            "dns.qry.name",
            "dns.qry.type",
            "dns.count.prerequisites",
            "dns.count.updates",
        ],
    );
    let r = &rows[0];
    assert_eq!((r[0].as_str(), r[1].as_str()), ("5", "5"));
    let e = by_id(&events, 0x1009);
    assert!(e["event"]["reason"].is_null(), "{e}");
    let d = &e["dns"];
    assert_eq!(d["op_code"], "UPDATE");
    assert_eq!(d["response_code"], "REFUSED");
    // RFC 2136 2.3: the zone section stands where the question is.
    assert_eq!(d["question"]["name"], r[2].as_str());
    assert_eq!(r[3], "6");
    assert_eq!(d["question"]["type"], "SOA");
    // The prerequisite (class NONE, empty data) is not an answer; the counts are the
    // prerequisite and update sections'.
    assert!(d["answers"].is_null(), "{d}");
    assert_eq!(d["answers_count"].to_string(), r[4]);
    assert_eq!(d["authorities_count"].to_string(), r[5]);
}

#[test]
fn a_response_from_port_53_to_port_53_is_oriented_by_its_qr_bit() {
    let events = trawl_pcap(&["--only", "dns"], "dns_tls_odd.pcap");
    let row = &tshark(
        "dns_tls_odd.pcap",
        "dns.id == 0x1008",
        &[
            "ip.src",
            "udp.srcport",
            "ip.dst",
            "udp.dstport",
            "dns.flags.response",
        ],
    );
    assert_eq!(row.len(), 1);
    let r = &row[0];
    assert_eq!(
        (r[1].as_str(), r[3].as_str(), r[4].as_str()),
        ("53", "53", "1")
    );
    let e = by_id(&events, 0x1008);
    assert_eq!(e["event"]["reason"], "request_missing");
    // The sender of a response is the server: the destination. The client is who got it.
    assert_eq!(e["destination"]["ip"], r[0].as_str(), "{e}");
    assert_eq!(e["source"]["ip"], r[2].as_str(), "{e}");
}

#[test]
fn the_server_certificate_has_its_alternative_names_and_digests() {
    let pcap = "tls/tls12_http11.pcap";
    let port = &tshark(pcap, "tls.handshake.type == 11", &["tcp.srcport"])[0][0];
    let events = trawl_pcap(&["--only", "tls", "--tls-ports", port], pcap);
    assert_eq!(events.len(), 1, "{events:#?}");
    let server = &events[0]["tls"]["server"];
    let sans = &tshark(pcap, "tls.handshake.type == 11", &["x509ce.dNSName"])[0][0];
    let want: Vec<&str> = sans.split(';').collect();
    assert_eq!(server["x509"]["alternative_names"], serde_json::json!(want));
    let der = Path::new(DATA).join("tls/server-cert.der");
    for (algo, key) in [("-sha1", "sha1"), ("-sha256", "sha256")] {
        let out = Command::new("openssl")
            .args([
                "x509",
                "-inform",
                "der",
                "-noout",
                "-fingerprint",
                algo,
                "-in",
            ])
            .arg(&der)
            .output()
            .expect("openssl is installed");
        // `SHA1 Fingerprint=AB:CD:...`
        let text = String::from_utf8_lossy(&out.stdout);
        let hex = text
            .trim()
            .rsplit('=')
            .next()
            .unwrap_or("")
            .replace(':', "");
        assert_eq!(server["hash"][key], hex.as_str(), "{key}");
    }
}

#[test]
fn an_oversized_certificate_chain_still_gives_the_server_certificate() {
    let events = trawl_pcap(&["--only", "tls"], "dns_tls_odd.pcap");
    let big: Vec<&J> = events
        .iter()
        .filter(|e| e["destination"]["port"] == 8443)
        .collect();
    assert_eq!(big.len(), 1, "{events:#?}");
    let hs = &tshark(
        "dns_tls_odd.pcap",
        "tcp.port == 8443 && tls.handshake.type == 2",
        &["tls.handshake.ciphersuite"],
    )[0][0];
    let t = &big[0]["tls"];
    assert_eq!(t["version"], "1.2");
    assert!(t["established"].as_bool().unwrap_or(false), "{t}");
    assert!(hs.starts_with("0x"), "tshark read the ServerHello: {hs}");
    // The chain (about 90 KiB) is past the 64 KiB message limit and past what tshark puts
    // together: openssl's fingerprint of the certificate s_server was given is the oracle.
    let fp = std::fs::read_to_string(Path::new(DATA).join("dns_tls_odd.sha1")).expect("fixture");
    let want = fp.trim().rsplit('=').next().unwrap_or("").replace(':', "");
    let server = &t["server"];
    assert_eq!(server["hash"]["sha1"], want.as_str(), "{server}");
    assert_eq!(
        server["x509"]["subject"]["common_name"],
        serde_json::json!(["big.trawl.test"])
    );
    assert_eq!(
        server["x509"]["alternative_names"],
        serde_json::json!(["big.trawl.test", "192.0.2.9"])
    );
}

#[test]
fn a_server_certificate_past_the_message_limit_still_names_its_subject() {
    let events = trawl_pcap(
        &["--only", "tls", "--tls-ports", "8445"],
        "dns_tls_odd.pcap",
    );
    let big: Vec<&J> = events
        .iter()
        .filter(|e| e["destination"]["port"] == 8445)
        .collect();
    assert_eq!(big.len(), 1, "{events:#?}");
    let t = &big[0]["tls"];
    let hs = &tshark(
        "dns_tls_odd.pcap",
        "tcp.srcport == 8445 && tls.handshake.type == 2",
        &["tls.handshake.version"],
    )[0][0];
    assert_eq!(hs, "0x0303");
    assert_eq!(t["version"], "1.2");
    assert!(t["established"].as_bool().unwrap_or(false), "{t}");
    // The certificate alone is about 70 KiB, past the 64 KiB limit: openssl's reading of the
    // one s_server was given is the oracle (tshark does not put it together either).
    let info =
        std::fs::read_to_string(Path::new(DATA).join("dns_tls_odd.bigleaf")).expect("fixture");
    let field = |k: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .unwrap_or("")
            .to_owned()
    };
    let server = &t["server"];
    assert_eq!(server["subject"], field("subject").as_str(), "{server}");
    assert_eq!(server["issuer"], field("issuer").as_str());
    assert_eq!(server["x509"]["serial_number"], field("serial").as_str());
    // Its digests need the whole DER: left out, and the certificate marked as read in part.
    assert!(server["hash"].is_null(), "{server}");
    assert_eq!(server["x509"]["truncated"], true);
}

/// `openssl x509` on a DER certificate: the lines of `-serial -subject -issuer -fingerprint`
/// (RFC 2253 names) and of a second `-fingerprint -sha256`, as `key=value` pairs.
fn openssl_x509(der: &[u8]) -> Vec<(String, String)> {
    use std::io::Write;
    let mut out = Vec::new();
    for args in [
        &[
            "-serial",
            "-nameopt",
            "RFC2253",
            "-subject",
            "-issuer",
            "-fingerprint",
            "-sha1",
        ][..],
        &["-fingerprint", "-sha256"][..],
    ] {
        let mut child = Command::new("openssl")
            .args(["x509", "-inform", "der", "-noout"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("openssl is installed");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(der)
            .expect("openssl reads");
        let done = child.wait_with_output().expect("openssl runs");
        for line in String::from_utf8_lossy(&done.stdout).lines() {
            if let Some((k, v)) = line.split_once('=') {
                out.push((k.to_owned(), v.replace(':', "")));
            }
        }
    }
    out
}

fn unhex(h: &str) -> Vec<u8> {
    (0..h.len() / 2)
        .filter_map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok())
        .collect()
}

#[test]
fn a_client_certificate_is_reported_beside_the_servers() {
    let events = trawl_pcap(
        &["--only", "tls", "--tls-ports", "8444"],
        "dns_tls_odd.pcap",
    );
    let mtls: Vec<&J> = events
        .iter()
        .filter(|e| e["destination"]["port"] == 8444)
        .collect();
    assert_eq!(mtls.len(), 1, "{events:#?}");
    let t = &mtls[0]["tls"];
    assert!(t["established"].as_bool().unwrap_or(false), "{t}");
    // tshark finds the client's Certificate message; openssl reads the certificate in it.
    let der = &tshark(
        "dns_tls_odd.pcap",
        "tcp.dstport == 8444 && tls.handshake.type == 11",
        &["tls.handshake.certificate"],
    )[0][0];
    let want = openssl_x509(&unhex(der.split(';').next().unwrap_or("")));
    let field = |k: &str| {
        want.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let client = &t["client"];
    assert_eq!(client["x509"]["serial_number"], field("serial").as_str());
    // openssl's RFC 2253 form is trawl's: most specific name first, no spaces.
    assert_eq!(client["subject"], field("subject").as_str(), "{client}");
    assert_eq!(client["issuer"], field("issuer").as_str());
    assert_eq!(client["hash"]["sha1"], field("sha1 Fingerprint").as_str());
    assert_eq!(
        client["hash"]["sha256"],
        field("sha256 Fingerprint").as_str()
    );
    assert_eq!(
        client["x509"]["subject"]["common_name"],
        serde_json::json!(["client.trawl.test"])
    );
    // The server's own certificate stays the server's.
    assert_eq!(
        t["server"]["x509"]["subject"]["common_name"],
        serde_json::json!(["mesh-server.trawl.test"])
    );
}

#[test]
fn an_unanswered_client_hello_reports_what_the_client_offered() {
    let events = trawl_pcap(&["--only", "tls", "--tls-ports", "444"], "dns_tls_odd.pcap");
    let quiet: Vec<&J> = events
        .iter()
        .filter(|e| e["destination"]["port"] == 444)
        .collect();
    // tshark: the hello's own version, then the supported_versions list (GREASE included).
    let hellos = tshark(
        "dns_tls_odd.pcap",
        "tcp.dstport == 444 && tls.handshake.type == 1",
        &[
            "tls.handshake.version",
            "tls.handshake.extensions.supported_version",
        ],
    );
    assert_eq!(hellos.len(), 2);
    assert_eq!(quiet.len(), 2, "{events:#?}");
    assert_eq!(hellos[0], ["0x0301", ""]);
    assert_eq!(hellos[1][1], "0x0a0a;0x0304;0x0303");
    for (e, want) in quiet.iter().zip([&["1.0"][..], &["1.3", "1.2"][..]]) {
        let t = &e["tls"];
        assert_eq!(t["established"], false, "{t}");
        assert_eq!(e["event"]["reason"], "closed_during_handshake");
        assert_eq!(t["client"]["supported_versions"], serde_json::json!(want));
        assert_eq!(t["client"]["server_name"], "quiet.trawl.test");
        // Nothing was negotiated: no version, no cipher.
        assert!(t["version"].is_null() && t["cipher"].is_null(), "{t}");
    }
}

#[test]
fn dns_over_tcp_reads_on_after_bytes_missing_mid_message() {
    let events = trawl_pcap(&["--only", "dns"], "dns_tls_odd.pcap");
    let tcp: Vec<&J> = events
        .iter()
        .filter(|e| e["network"]["transport"] == "tcp")
        .collect();
    // tshark decodes the queries and responses whose bytes are all there: the second query
    // lost its question with the segment cut out, its response is whole.
    let rows = tshark(
        "dns_tls_odd.pcap",
        "tcp.port == 53 && dns",
        &["dns.id", "dns.flags.response"],
    );
    let ids = |response: &str| -> Vec<i64> {
        rows.iter()
            .filter(|r| r[1] == response || (response == "1" && r[1] == "True"))
            .filter_map(|r| i64::from_str_radix(r[0].trim_start_matches("0x"), 16).ok())
            .collect()
    };
    let (queries, responses) = (ids("0"), ids("1"));
    assert_eq!(queries, [0x2001, 0x2003, 0x2004], "{rows:?}");
    assert_eq!(responses, [0x2001, 0x2002, 0x2003, 0x2004]);
    assert_eq!(tcp.len(), 4, "{tcp:#?}");
    for id in responses {
        let e = by_id(&events, id);
        let asked = queries.contains(&id);
        assert_eq!(e["dns"]["type"], "answer");
        assert_eq!(
            e["event"]["reason"].is_null(),
            asked,
            "{id:#x} paired with its query exactly when the query was whole: {e}"
        );
        assert_eq!(answers(e, "data"), [format!("192.0.2.{}", 10 + (id & 0xf))]);
    }
}

#[test]
fn a_request_line_that_lost_its_version_is_a_flagged_transaction() {
    let events = trawl_pcap(&["--only", "http"], "dns_tls_odd.pcap");
    // tshark reads `GET /HTTP/1.1` as a request for `/HTTP/1.1` with no version.
    let req = &tshark(
        "dns_tls_odd.pcap",
        "tcp.dstport == 8080 && http.request",
        &["http.request.uri", "http.host", "http.request.version"],
    )[0];
    assert_eq!(req, &["/HTTP/1.1", "glued.trawl.test", ""]);
    let code = &tshark(
        "dns_tls_odd.pcap",
        "tcp.srcport == 8080 && http.response",
        &["http.response.code"],
    )[0][0];
    let glued: Vec<&J> = events
        .iter()
        .filter(|e| e["destination"]["port"] == 8080)
        .collect();
    assert_eq!(glued.len(), 1, "{events:#?}");
    let e = glued[0];
    assert_eq!(e["http"]["request"]["method"], "GET");
    assert_eq!(e["url"]["original"], req[0].as_str());
    assert_eq!(e["url"]["domain"], req[1].as_str());
    // Field lines follow, so it is no HTTP/0.9 simple request: the server answered with a
    // status line, and the request is flagged.
    assert_eq!(e["http"]["response"]["status_code"].to_string(), *code);
    assert_eq!(
        e["http"]["request"]["anomalies"],
        serde_json::json!(["missing_version"]),
        "{e}"
    );
}
