//! Rules of the HTTP and DNS RFCs that trawl once got wrong, through `trawl pcap` on the
//! captures of `tests/data/rfc_cases/` (scripted, and from a real nginx and curl): each test
//! states what the RFC says must come out, and checks it against tshark where tshark decodes it.

use crate::support::pcap_run::{data, pcap_events};
use serde_json::Value;
use std::process::Command;

fn capture(name: &str) -> std::path::PathBuf {
    data(&format!("rfc_cases/{name}"))
}

/// tshark's fields (`-T fields`, tab-separated) for the packets `filter` selects.
fn tshark_fields(name: &str, extra: &[&str], filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(capture(name)).args(extra);
    cmd.args(["-Y", filter, "-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd
        .output()
        .expect("tshark is installed (scripts/setup.sh)");
    assert!(
        out.status.success(),
        "tshark on {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

fn by_path<'a>(events: &'a [Value], path: &str) -> &'a Value {
    let found: Vec<&Value> = events.iter().filter(|e| e["url"]["path"] == path).collect();
    assert_eq!(found.len(), 1, "one transaction for {path}: {events:#?}");
    found[0]
}

/// RFC 9112 §3.2.2: a proxy request in absolute form names its host in the target, and the
/// Host header is ignored (here it names another host); userinfo is never a host.
#[test]
fn an_absolute_form_target_gives_the_host_and_port() {
    let events = pcap_events("http", &capture("absform.pcap"));
    let t = by_path(&events, "/abs");
    let uri = &tshark_fields(
        "absform.pcap",
        &[],
        "http.request",
        &["http.request.full_uri"],
    )[0][0];
    assert_eq!(uri, "http://Other.Example:8081/abs?q=1", "tshark's reading");
    assert_eq!(t["url"]["domain"], "other.example", "{t}");
    assert_eq!(t["url"]["port"], 8081, "{t}");
    assert_eq!(t["url"]["query"], "q=1", "{t}");
    assert_eq!(t["http"]["response"]["status_code"], 200);

    // HTTP/1.0 to a proxy, no Host at all.
    let events = pcap_events("http", &capture("absform_nohost.pcap"));
    let t = by_path(&events, "/p");
    assert_eq!(t["url"]["domain"], "proxied.example", "{t}");
    assert_eq!(t["url"]["port"], 8080, "{t}");
}

/// RFC 6891 §6.1.3: the response code is 12 bits, the upper 8 in the OPT record's TTL. The
/// codes are named as IANA's registry names them, and they are failures.
#[test]
fn an_extended_response_code_is_read_from_the_opt_record() {
    let names = |code: u32| match code {
        16 => "BADVERS",
        23 => "BADCOOKIE",
        other => panic!("unexpected extended code {other}"),
    };
    let want: Vec<(u64, &str)> = tshark_fields(
        "ext_rcode.pcap",
        &[],
        "dns.flags.response == 1",
        &["dns.id", "dns.flags.rcode", "dns.resp.ext_rcode"],
    )
    .iter()
    .map(|f| {
        let hex = |s: &str| u32::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
        let code = (hex(&f[2]) << 4) | f[1].parse::<u32>().unwrap();
        (u64::from(hex(&f[0])), names(code))
    })
    .collect();
    assert_eq!(want.len(), 2, "tshark sees both answers");
    let events = pcap_events("dns", &capture("ext_rcode.pcap"));
    for (id, name) in want {
        let e = events
            .iter()
            .find(|e| e["dns"]["id"] == id)
            .unwrap_or_else(|| panic!("no event for id {id}: {events:#?}"));
        assert_eq!(e["dns"]["response_code"], name, "{e}");
        assert_eq!(e["event"]["outcome"], "failure", "{e}");
    }
}

/// RFC 9113 §6.8, §3.2: nginx's cleartext `http2` port speaks HTTP/2 with prior knowledge only.
/// curl's `Upgrade: h2c` request gets no 101: SETTINGS, then GOAWAY with last stream 0, which
/// refuses stream 1 (the upgraded request). Reported as that request, refused, a failure.
#[test]
fn an_h2c_upgrade_answered_by_goaway_is_a_refused_request() {
    for name in ["nginx_h2c_goaway.pcap", "h2c_goaway.pcap"] {
        let events = pcap_events("http2", &capture(name));
        assert_eq!(events.len(), 1, "{name}: {events:#?}");
        let t = &events[0];
        assert_eq!(t["url"]["path"], "/redir", "{name}: {t}");
        assert_eq!(t["http"]["request"]["method"], "GET");
        assert_eq!(t["http2"]["ended_by"], "goaway", "{name}: {t}");
        assert_eq!(t["http2"]["error_code"], "PROTOCOL_ERROR", "{name}: {t}");
        assert_eq!(t["event"]["outcome"], "failure");
        assert!(t["http"]["response"].is_null(), "no response: {t}");
    }
    let goaway = tshark_fields(
        "nginx_h2c_goaway.pcap",
        &["-d", "tcp.port==8080,http2"],
        "http2.type == 7",
        &["http2.goaway.last_stream_id", "http2.goaway.error"],
    );
    assert_eq!(goaway, vec![vec!["0".to_owned(), "1".to_owned()]], "tshark");
}

/// RFC 9112 §9.3, RFC 9110 §15: a server may answer before it has read the request body; the
/// request is still the whole body the client sends, and the next request on the connection
/// is read after it.
#[test]
fn a_response_before_the_upload_ends_keeps_the_whole_request_body() {
    let events = pcap_events("http", &capture("early_response.pcap"));
    assert_eq!(events.len(), 4, "{events:#?}");
    let lengths = tshark_fields(
        "early_response.pcap",
        &[],
        "http.request.method == \"POST\" && http.content_length",
        &["http.content_length"],
    );
    assert_eq!(lengths, vec![vec!["30000".to_owned()]], "tshark");
    let upload = by_path(&events, "/upload");
    assert_eq!(
        upload["http"]["request"]["body"]["bytes"], 30000,
        "{upload}"
    );
    assert_eq!(upload["http"]["response"]["status_code"], 201);
    // Three chunks of 5,000 bytes (early_response.py), the framing not counted.
    let chunked = by_path(&events, "/chunked");
    assert_eq!(
        chunked["http"]["request"]["body"]["bytes"], 15000,
        "{chunked}"
    );
    for next in ["/next", "/next2"] {
        let t = by_path(&events, next);
        assert_eq!(t["http"]["response"]["status_code"], 200, "{t}");
        assert!(t["event"]["reason"].is_null(), "{t}");
    }

    // nginx answering `return 201` to curl's 70,000-byte chunked upload.
    let events = pcap_events("http", &capture("nginx_h1_h2.pcap"));
    let echo = by_path(&events, "/echo");
    assert_eq!(echo["http"]["request"]["method"], "POST");
    assert_eq!(echo["http"]["request"]["body"]["bytes"], 70000, "{echo}");
    assert_eq!(echo["http"]["response"]["status_code"], 201);
}

/// RFC 9112 §9.3.2: one final response per request, in order. A final response that comes
/// while the request body is still incomplete (`Content-Length: 100`, 3 bytes sent; then 413,
/// 200, 500) answers it and ends it: the request is one transaction, flagged, and the later
/// responses are alone (`request_missing`), never paired with it again. Captures from a
/// fuzzing run (`early_response_dup.pcap`; `early_response_10k.pcap.gz`: 10,000 responses
/// behind one `Content-Length: 100000000` upload).
#[test]
fn http_responses_after_an_early_answer_are_not_paired_with_the_unfinished_request() {
    let events = pcap_events("http", &capture("early_response_dup.pcap"));
    let rows: Vec<(Value, Value, Value)> = events
        .iter()
        .map(|e| {
            (
                e["url"]["path"].clone(),
                e["http"]["response"]["status_code"].clone(),
                e["event"]["reason"].clone(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("/a".into(), 413.into(), Value::Null),
            (Value::Null, 200.into(), "request_missing".into()),
            (Value::Null, 500.into(), "request_missing".into()),
        ],
        "{events:#?}"
    );
    let post = &events[0];
    assert_eq!(post["http"]["request"]["body"]["bytes"], 3, "{post}");
    assert_eq!(post["http"]["request"]["anomalies"][0], "body_incomplete");
    // A body cut short is listed, but breaks no rule: no `http_malformed`.
    assert_eq!(post["tags"], Value::Null, "{post}");

    let events = pcap_events("http", &capture("early_response_10k.pcap.gz"));
    assert_eq!(events.len(), 10_000);
    let paired: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"]["reason"].is_null())
        .collect();
    assert_eq!(paired.len(), 1, "{:#?}", &paired[..paired.len().min(3)]);
    assert_eq!(paired[0]["url"]["path"], "/a");
    assert!(events
        .iter()
        .filter(|e| !e["event"]["reason"].is_null())
        .all(|e| e["event"]["reason"] == "request_missing" && e["url"]["path"].is_null()));
}

/// RFC 9112 §6.3 (3) and (5): Transfer-Encoding beside Content-Length wins and is flagged
/// (here its body is not valid chunked either); Content-Lengths that disagree, or one that is
/// not a decimal number within 64 bits (`-3`, `+3`, 2^64, 184467440737095516150), are an
/// unrecoverable framing error: the request is reported once, flagged `http_malformed`, and
/// the client's side is not read on (its end is unknown), so the next response is alone.
/// Captures from a fuzzing run.
#[test]
fn http_conflicting_or_invalid_content_length_is_flagged_and_never_paired_twice() {
    let events = pcap_events("http", &capture("te_and_cl.pcap"));
    let a: Vec<&Value> = events.iter().filter(|e| e["url"]["path"] == "/a").collect();
    assert_eq!(a.len(), 1, "{events:#?}");
    assert_eq!(a[0]["http"]["response"]["status_code"], 200);
    assert_eq!(
        a[0]["http"]["request"]["anomalies"],
        serde_json::json!(["content_length_with_transfer_encoding", "invalid_chunk"])
    );
    assert_eq!(a[0]["tags"], serde_json::json!(["http_malformed"]));

    for name in ["two_cl.pcap", "cl_neg.pcap", "cl_plus.pcap", "cl_ovf.pcap"] {
        let events = pcap_events("http", &capture(name));
        let rows: Vec<(Value, Value, Value)> = events
            .iter()
            .map(|e| {
                (
                    e["url"]["path"].clone(),
                    e["http"]["response"]["status_code"].clone(),
                    e["event"]["reason"].clone(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("/a".into(), 200.into(), Value::Null),
                (Value::Null, 404.into(), "request_missing".into()),
            ],
            "{name}: {events:#?}"
        );
        assert_eq!(
            events[0]["http"]["request"]["anomalies"],
            serde_json::json!(["invalid_content_length"]),
            "{name}"
        );
        assert_eq!(
            events[0]["tags"],
            serde_json::json!(["http_malformed"]),
            "{name}"
        );
        assert_eq!(events[0]["http"]["request"]["body"]["bytes"], 0, "{name}");
    }
    let events = pcap_events("http", &capture("cl_overflow.pcap"));
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(
        events[0]["http"]["request"]["anomalies"],
        serde_json::json!(["invalid_content_length"])
    );
}

/// RFC 9112 §6.3 (4): when chunked is not the final transfer coding of a response, its body
/// runs until the server closes: the chunk framing and what follows it are all body.
#[test]
fn a_response_whose_final_coding_is_not_chunked_is_read_until_close() {
    let events = pcap_events("http", &capture("te_not_final.pcap"));
    let t = by_path(&events, "/tenf");
    // "5\r\nhello\r\n0\r\n\r\n" and "EXTRA", as sent (te_not_final.py).
    assert_eq!(t["http"]["response"]["body"]["bytes"], 20, "{t}");
    assert!(t["event"]["reason"].is_null(), "{t}");
    let t = by_path(&events, "/gzonly");
    assert_eq!(t["http"]["response"]["body"]["bytes"], 30, "{t}");
}

/// The HTTP/2 streams of the real nginx capture are those tshark decodes, with their statuses.
#[test]
fn nginx_http2_streams_match_tshark() {
    let mut want: Vec<(String, String)> = Vec::new();
    let mut paths = std::collections::VecDeque::new();
    for f in tshark_fields(
        "nginx_h1_h2.pcap",
        &["-d", "tcp.port==8080,http2"],
        "http2.headers.path || http2.headers.status",
        &["http2.headers.path", "http2.headers.status"],
    ) {
        if !f[0].is_empty() {
            paths.push_back(f[0].clone());
        }
        if !f[1].is_empty() {
            want.push((paths.pop_front().expect("a request first"), f[1].clone()));
        }
    }
    let mut got: Vec<(String, String)> = pcap_events("http2", &capture("nginx_h1_h2.pcap"))
        .iter()
        .filter(|e| !e["http"]["response"]["status_code"].is_null())
        .map(|e| {
            (
                e["url"]["path"].as_str().unwrap_or_default().to_owned(),
                e["http"]["response"]["status_code"].to_string(),
            )
        })
        .collect();
    want.sort();
    got.sort();
    assert_eq!(want.len(), 3, "tshark: {want:?}");
    assert_eq!(got, want);
}

/// RFC 9112 §9.3.2: a server answers pipelined requests in order. A segment lost from the
/// capture (acknowledged by the peer, never seen) is a gap of the message it cut: inside a body
/// (by length, or chunked) that message is flagged and the next request is read as usual; a
/// whole pipelined request lost still owns the next response, which is reported with the gap
/// and no request, and the request after it gets its own response.
#[test]
fn a_segment_lost_from_the_capture_touches_only_its_own_message() {
    let events = pcap_events("http", &capture("pipelined_gap.pcap"));
    let summary: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {} {}",
                e["source"]["port"],
                e["url"]["path"].as_str().unwrap_or("-"),
                e["http"]["response"]["status_code"],
                e["event"]["reason"].as_str().unwrap_or("-"),
                e["tags"]
                    .as_array()
                    .map(|t| t
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(","))
                    .unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            "48001 /gap 200 - tcp_gap",
            "48001 /after 200 - ",
            "48002 /cgap 200 - tcp_gap",
            "48002 /after2 200 - ",
            "48003 /r1 200 - ",
            "48003 - 201 request_missing tcp_gap",
            "48003 /r3 202 - ",
        ]
    );
    // The lost segment is inside the 3,000 bytes of the body; its length still counts.
    assert_eq!(events[0]["http"]["response"]["body"]["bytes"], 3000);
}

/// RFC 9112 §6.3 on the responses of a crafted server, over real TCP between two network
/// namespaces (`resp_framing.py`; one connection per case, told apart by the client's port):
/// a response to HEAD and a 1xx, 204 or 304 have no body whatever their headers say (a
/// Content-Length on a 1xx or a 204 is flagged: RFC 9110 section 8.6 forbids it), and the
/// next response on the connection is the next request's; Transfer-Encoding beside
/// Content-Length decides and is flagged; one length repeated is that length; lengths that
/// disagree or are not a number are an unrecoverable error, so what follows is not framed
/// (counted as that body until the close); a malformed chunk ends the response; without
/// length or chunked the body runs to the close; a body cut short by the server's FIN or the
/// capture's end is incomplete. What breaks a rule is listed and tagged `http_malformed`; a
/// body cut short is only listed.
#[test]
fn http_response_framing_follows_rfc_9112_section_6() {
    let events = pcap_events("http", &capture("resp_framing.pcap"));
    let words = |v: &Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_else(|| "-".to_owned())
    };
    let mut rows: Vec<(u64, String)> = events
        .iter()
        .map(|e| {
            (
                e["source"]["port"].as_u64().unwrap_or(0),
                format!(
                    "{} {} {} {} {} {}",
                    e["url"]["path"].as_str().unwrap_or("-"),
                    e["http"]["response"]["status_code"],
                    e["http"]["response"]["body"]["bytes"],
                    e["event"]["reason"].as_str().unwrap_or("-"),
                    words(&e["http"]["response"]["anomalies"]),
                    words(&e["tags"]),
                ),
            )
        })
        .collect();
    // Stable: a connection's transactions stay in their order.
    rows.sort_by_key(|r| r.0);
    let got: Vec<String> = rows.into_iter().map(|(p, r)| format!("{p} {r}")).collect();
    assert_eq!(
        got,
        vec![
            "41001 /head 200 0 - - -",
            // RFC 9110 section 8.6: no Content-Length on a 1xx or a 204 (here 10, and the
            // 103's 4, listed on its final response).
            "41001 /nc 204 0 - content_length_not_allowed http_malformed",
            "41001 /nm 304 0 - - -",
            "41001 /cont 200 5 - content_length_not_allowed http_malformed",
            "41001 /after1 200 2 - - -",
            "41002 /tecl 200 5 - content_length_with_transfer_encoding http_malformed",
            "41002 /after2 200 2 - - -",
            "41003 /samecl 200 3 - - -",
            "41003 /samelist 200 3 - - -",
            "41003 /after3 200 2 - - -",
            "41004 /twocl 200 3 - invalid_content_length http_malformed",
            // "abc", then /after5's 40-byte answer: no longer a response of its own.
            "41005 /negcl 200 43 - invalid_content_length http_malformed",
            "41005 /after5 null null response_missing - -",
            "41006 /badchunk 200 0 - invalid_chunk http_malformed",
            // 3,000 bytes, then a 40-byte response inside the body.
            "41007 /toclose 200 3040 - - -",
            "41007 /after7 null null response_missing - -",
            "41008 /short 200 10 response_incomplete body_incomplete -",
            "41009 /shortchunk 200 5 response_incomplete body_incomplete -",
            "41010 /cut 200 10 response_incomplete body_incomplete -",
        ],
        "{events:#?}"
    );
    // tshark agrees on the bodiless responses and the flagged Transfer-Encoding (it reads
    // the 103's Content-Length as a body and `3, 3` as no length, which RFC 9112 does not).
    let tshark: Vec<String> = tshark_fields(
        "resp_framing.pcap",
        &[],
        "http.response && (tcp.dstport == 41001 || tcp.dstport == 41002)",
        &["tcp.dstport", "http.response_for.uri", "http.response.code"],
    )
    .iter()
    .map(|f| f.join(" "))
    .collect();
    assert_eq!(
        tshark,
        vec![
            "41001 http://s/head 200",
            "41001 http://s/nc 204",
            "41001 http://s/nm 304",
            "41001 http://s/cont 103",
            "41001 http://s/after1 200",
            "41002 http://s/tecl 200",
            "41002 http://s/after2 200",
        ]
    );
}

/// RFC 1035 4.1.4 and 2.3.4 on crafted messages (`dns_malformed.py`; one flow per case, told
/// apart by the client's port): a message whose names break the rules is reported, never
/// dropped, with what is wrong in `dns.anomalies`: a compression pointer loop (in a response's
/// question, which still answers its query by id, and in an unanswered query's), a pointer
/// past the end, a label length over 63, a name past 255 octets, a record cut short. A pointer
/// forward is followed and listed. A truncated (TC) answer may end inside a record (RFC 2181
/// 9): no anomaly. DNS over TCP (RFC 7766 8): a length prefix split from its message and two
/// messages in one segment are read as such.
#[test]
fn malformed_dns_names_are_reported_with_their_anomalies() {
    let events = pcap_events("dns", &capture("dns_malformed.pcap"));
    let mut rows: Vec<(u64, u64, String)> = events
        .iter()
        .map(|e| {
            let list = |v: &Value| {
                v.as_array()
                    .map(|a| {
                        a.iter()
                            .map(|x| x["data"].as_str().or(x.as_str()).unwrap_or("?"))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_else(|| "-".to_owned())
            };
            let name = e["dns"]["question"]["name"].as_str().unwrap_or("-");
            (
                e["source"]["port"].as_u64().unwrap_or(0),
                e["dns"]["id"].as_u64().unwrap_or(0),
                format!(
                    "{} {} {} {} {}",
                    if name.len() > 20 { "(long)" } else { name },
                    e["event"]["reason"].as_str().unwrap_or("-"),
                    list(&e["dns"]["header_flags"]),
                    list(&e["dns"]["answers"]),
                    list(&e["dns"]["anomalies"]),
                ),
            )
        })
        .collect();
    rows.sort();
    let got: Vec<String> = rows
        .into_iter()
        .map(|(p, id, r)| format!("{p} {id} {r}"))
        .collect();
    assert_eq!(
        got,
        vec![
            "50001 1 a.example - RD,RA - pointer_loop",
            "50002 2 - response_missing RD - pointer_loop",
            "50003 3 c.example - RD,RA 192.0.2.3 pointer_out_of_bounds",
            "50004 4 d.example - RD,RA 192.0.2.5,w.d.example forward_pointer",
            "50005 5 - response_missing RD - invalid_label_type",
            "50006 6 (long) response_missing RD - name_too_long",
            "50007 7 g.example - TC,RD,RA 192.0.2.7 -",
            "50008 8 h.example - RD,RA 192.0.2.8 short_message",
            "50009 11 t1.example - RD,RA 192.0.2.11 -",
            "50009 12 t2.example - RD,RA 192.0.2.12 -",
            "50009 13 t3.example - RD,RA 192.0.2.13 -",
        ],
        "{events:#?}"
    );
    // tshark names the loops and the long name too.
    let tshark = tshark_fields(
        "dns_malformed.pcap",
        &[],
        "udp.port == 50001 || udp.port == 50002 || udp.port == 50006",
        &["dns.id", "dns.qry.name"],
    );
    let odd: Vec<&str> = tshark
        .iter()
        .filter(|f| f[1].starts_with('<'))
        .map(|f| f[1].as_str())
        .collect();
    assert_eq!(
        odd,
        vec![
            "<Name contains a pointer that loops>",
            "<Name contains a pointer that loops>",
            "<Name too long>"
        ]
    );
}
