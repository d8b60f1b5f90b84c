//! Unit tests of `wire::http::event` (and, as `event_tests` and `template_tests`, of whole
//! events), kept beside it so that the module itself stays readable.

use super::*;
use crate::wire::decode::Addr;

/// An HTTP connection over TCP from `client` to `server`.
fn http_conn(client: (Addr, u16), server: (Addr, u16)) -> Conn {
    Conn::new(
        "http",
        crate::wire::analyzer::Transport::Tcp,
        client,
        server,
    )
}

/// The event a pipeline gets for `t` on `conn` (built through `MapFields`, as `trawl run` does).
fn event_of(t: Transaction, ctx: Arc<EventCtx>, conn: &Conn) -> crate::event::Event {
    let mut m = crate::wire::out::MapFields::new();
    analyzer::Transaction::write(
        &HttpTx {
            seen: Seen::default(),
            t: Box::new(t),
            ctx,
        },
        conn,
        &mut m,
    );
    m.finish(&Arc::from("t"))
}

#[test]
fn servers_are_named_ip_colon_port() {
    let v6 = Addr(
        "2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    let conn = http_conn((Addr::v4([10, 0, 0, 1]), 5555), (v6, 8080));
    assert_eq!(conn.server_name, "[2001:db8::1]:8080");
    let conn = http_conn((v6, 5555), (Addr::v4([10, 96, 0, 12]), 80));
    assert_eq!(conn.server_name, "10.96.0.12:80");
    assert_eq!(conn.client_ip, "2001:db8::1");
}

#[test]
fn host_ports_and_mime_parameters_are_stripped() {
    assert_eq!(split_host("Example.com:8080"), ("Example.com", Some(8080)));
    assert_eq!(split_host("example.com"), ("example.com", None));
    assert_eq!(split_host("example.com:"), ("example.com", None));
    assert_eq!(split_host("[::1]:8080"), ("[::1]", Some(8080)));
    assert_eq!(split_host("[2001:db8::1]"), ("[2001:db8::1]", None));
    assert_eq!(split_host("::1"), ("::1", None));
    assert_eq!(split_host("10.0.0.1:99999"), ("10.0.0.1", None));
    assert_eq!(mime("Text/HTML; charset=utf-8"), "text/html");
    assert_eq!(mime(" application/JSON "), "application/json");
    assert_eq!(mime("application/json;charset=UTF-8"), "application/json");
    assert_eq!(mime("text/plain"), "text/plain");
}

/// Word-at-a-time capital finding agrees with looking at each byte: every byte value
/// (capitals' neighbours `@` and `[`, bytes past ASCII) at every place of every length.
#[test]
fn capitals_are_found_wherever_they_are() {
    for len in 0..20 {
        for at in 0..len {
            for b in 0..=255u8 {
                let mut s = vec![b'a'; len];
                s[at] = b;
                if at + 1 < len {
                    // A byte past ASCII next to it must not hide or fake a capital.
                    s[at + 1] = 0xc3;
                }
                assert_eq!(has_upper(&s), s.iter().any(u8::is_ascii_uppercase), "{s:?}");
            }
        }
    }
    assert!(!has_upper(b"svc-1.default.svc"));
    assert!(has_upper(b"svc-1.default.svC"));
}

mod event_tests {
    use super::super::*;
    use super::{event_of, http_conn};
    use crate::wire::decode::Addr;
    use crate::wire::http::parser::{RequestHead, ResponseHead};

    #[test]
    fn headers_are_redacted_bodies_kept_and_real_ip_used() {
        let cfg = HttpConfig {
            send_headers: vec!["*".into()],
            ..Default::default()
        };
        let ctx = Arc::new(EventCtx {
            cfg,
            real_ip: Some("x-forwarded-for".into()),
            include_body_for: vec!["application/json".into()],
            send_all: true,
            redact_lengths: 0,
        });
        let req = RequestHead {
            method: "POST".into(),
            target: "/login?next=%2F".into(),
            version: crate::wire::http::parser::Version::V11,
            host: Some("API.example.com:8443".into()),
            real_ip: Some("203.0.113.9".into()),
            headers: vec![
                ("authorization".into(), "Bearer s3cr3t".into()),
                ("cookie".into(), "sid=1".into()),
                ("accept".into(), "*/*".into()),
            ],
            ..Default::default()
        };
        let resp = ResponseHead {
            status: 503,
            content_type: Some("Application/JSON; charset=utf-8".into()),
            headers: vec![
                ("set-cookie".into(), "a=1".into()),
                ("set-cookie".into(), "b=2".into()),
            ],
            ..Default::default()
        };
        let t = Transaction {
            request: Some(req),
            response: Some(resp),
            req_start_ns: 1_000,
            resp_end_ns: 5_000,
            resp_body: Some(b"{\"ok\":false}".to_vec()),
            resp_body_bytes: 12,
            ..Default::default()
        };
        let conn = http_conn(
            (Addr::v4([10, 0, 0, 1]), 40000),
            (Addr::v4([10, 0, 0, 2]), 8443),
        );
        let e = event_of(t, ctx, &conn);
        let j = serde_json::to_value(&e.fields).unwrap();
        assert_eq!(j["http"]["request"]["headers"]["authorization"], "REDACTED");
        assert_eq!(j["http"]["request"]["headers"]["cookie"], "REDACTED");
        assert_eq!(j["http"]["request"]["headers"]["accept"], "*/*");
        assert_eq!(j["http"]["response"]["headers"]["set-cookie"], "REDACTED");
        assert_eq!(j["http"]["response"]["mime_type"], "application/json");
        assert_eq!(j["http"]["response"]["body"]["content"], "{\"ok\":false}");
        assert_eq!(j["client"]["ip"], "203.0.113.9");
        assert_eq!(j["source"]["ip"], "10.0.0.1");
        assert_eq!(j["url"]["domain"], "api.example.com");
        assert_eq!(j["url"]["path"], "/login");
        assert_eq!(j["url"]["query"], "next=%2F");
        assert_eq!(j["event"]["duration"], 4_000);
        assert_eq!(j["event"]["outcome"], "failure");
    }
}

mod template_tests {
    use super::super::*;
    use super::{event_of, http_conn};
    use crate::wire::decode::Addr;
    use crate::wire::http::parser::{RequestHead, ResponseHead, Version};
    use crate::wire::out::JsonFields;

    /// What an HTTP analyzer with the default settings gives its events.
    fn default_ctx() -> Arc<EventCtx> {
        Arc::new(EventCtx {
            cfg: HttpConfig::default(),
            real_ip: None,
            include_body_for: Vec::new(),
            send_all: false,
            redact_lengths: 0,
        })
    }

    /// The event through `JsonFields` (what `trawl pcap` wrote before the template).
    fn through_fields(tx: &HttpTx, conn: &Conn, clock: &mut Clock) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut j = JsonFields::new(&mut buf, clock);
        write_event(tx, conn, &mut j);
        j.finish();
        buf
    }

    /// The template writes what `JsonFields` writes for every combination of the optional
    /// fields it covers, and declines (writing nothing) what it does not cover.
    #[test]
    fn template_writes_the_same_bytes_as_fields_or_declines() {
        let ctx = Arc::new(EventCtx {
            cfg: HttpConfig {
                redact_query_params: vec!["token".into()],
                ..Default::default()
            },
            real_ip: None,
            include_body_for: Vec::new(),
            send_all: false,
            redact_lengths: name_lengths(&["token".into()]),
        });
        let v6 = Addr(
            "2001:db8::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        let conns = [
            http_conn(
                (Addr::v4([10, 0, 0, 1]), 40000),
                (Addr::v4([10, 0, 0, 2]), 80),
            ),
            http_conn((v6, 1), (v6, 65535)),
        ];
        let targets = [
            "/",
            "/a/b?v=1",
            "/a?token=s3cret&v=2",
            "http://h:1/x?y",
            "/é?q=ü",
        ];
        let hosts = [
            None,
            Some("Svc.Example:8080"),
            Some("example.com"),
            Some(":80"),
        ];
        let (mut same, mut declined) = (0, 0);
        let mut clock = Clock::default();
        // One memo across all the shapes: its Host and Content-Type change from one to the next.
        let mut shared = Memo::default();
        for (i, target) in targets.iter().enumerate() {
            for (h, host) in hosts.iter().enumerate() {
                for shape in 0..32u32 {
                    let bit = |b: u32| shape >> b & 1 == 1;
                    let request = (!bit(0) || bit(1)).then(|| RequestHead {
                        method: if bit(2) { "POST" } else { "GET" }.into(),
                        target: (*target).into(),
                        version: if bit(3) { Version::V10 } else { Version::V11 },
                        host: host.map(Into::into),
                        user_agent: bit(4).then(|| "curl/8.0".into()),
                        content_type: bit(2).then(|| "Application/JSON; charset=x".into()),
                        ..Default::default()
                    });
                    let response = bit(0).then(|| ResponseHead {
                        version: Version::V11,
                        status: [0, 200, 404, 503][(i + h) % 4],
                        content_type: bit(3).then(|| "text/html".into()),
                        ..Default::default()
                    });
                    let t = Transaction {
                        request,
                        response,
                        req_start_ns: 1_700_000_000_123_456_789 + i as i64,
                        req_end_ns: 1_700_000_000_200_000_000,
                        resp_start_ns: 1_700_000_000_300_000_000,
                        resp_end_ns: 1_700_000_001_000_000_000 * i64::from(bit(1)),
                        req_header_bytes: 120,
                        req_body_bytes: 7 * u64::from(bit(2)),
                        req_framing_bytes: 5,
                        resp_header_bytes: 90,
                        resp_body_bytes: 123_456,
                        gap: bit(4) && bit(1),
                        missing: [None, Some(Missing::Response), Some(Missing::Request)]
                            [(shape as usize + i) % 3],
                        ..Default::default()
                    };
                    let tx = HttpTx {
                        seen: Seen::default(),
                        t: Box::new(t),
                        ctx: ctx.clone(),
                    };
                    // Without a memo, then with what a connection's memo gives on its first
                    // transaction with this Host and Content-Type and on the next.
                    let mut memo = Memo::default();
                    let first = memo.seen(&tx.t);
                    let again = memo.seen(&tx.t);
                    assert_eq!(first, again);
                    let mut tx = tx;
                    for seen in [Seen::default(), again, shared.seen(&tx.t)] {
                        tx.seen = seen;
                        for conn in &conns {
                            let want = through_fields(&tx, conn, &mut clock);
                            let mut got = b"before".to_vec();
                            if write_json(&tx, conn, &mut got, &mut clock) {
                                assert_eq!(
                                    String::from_utf8_lossy(&got[6..]),
                                    String::from_utf8_lossy(&want)
                                );
                                same += 1;
                            } else {
                                assert_eq!(got, b"before");
                                declined += 1;
                            }
                        }
                    }
                }
            }
        }
        // Declined: only what needs escaping or is not covered; everything here is plain.
        assert_eq!((same, declined), (3840, 0));

        // What the template does not cover goes to `JsonFields`, having written nothing.
        let plain = || Transaction {
            request: Some(RequestHead {
                method: "GET".into(),
                target: "/".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut quoted_ua = plain();
        quoted_ua.request.as_mut().unwrap().user_agent = Some("a\"b".into());
        let mut escaped_target = plain();
        escaped_target.request.as_mut().unwrap().target = "/a\\b".into();
        let mut anomalous = plain();
        anomalous.request.as_mut().unwrap().anomalies = vec!["bad_header"];
        let mut with_headers = plain();
        with_headers.request.as_mut().unwrap().headers = vec![("a".into(), "b".into())];
        let mut with_body = plain();
        with_body.resp_body = Some(b"x".to_vec());
        for t in [
            quoted_ua,
            escaped_target,
            anomalous,
            with_headers,
            with_body,
        ] {
            let tx = HttpTx {
                seen: Seen::default(),
                t: Box::new(t),
                ctx: ctx.clone(),
            };
            let mut got = Vec::new();
            assert!(!write_json(&tx, &conns[0], &mut got, &mut clock));
            assert!(got.is_empty());
        }
        // A kept `real_ip_header` client.
        let real = Arc::new(EventCtx {
            cfg: HttpConfig::default(),
            real_ip: Some("x-real-ip".into()),
            include_body_for: Vec::new(),
            send_all: false,
            redact_lengths: 0,
        });
        let mut t = plain();
        t.request.as_mut().unwrap().real_ip = Some("192.0.2.1".into());
        let tx = HttpTx {
            seen: Seen::default(),
            t: Box::new(t),
            ctx: real,
        };
        assert!(!write_json(&tx, &conns[0], &mut Vec::new(), &mut clock));
    }
    /// `EVENT_FIXED` covers the template's widest event: every optional piece, the longest
    /// words (reason, version) and integers of 19 and 20 digits. `Exact` checks each piece
    /// against the bound in test builds, so a short bound panics here; the line is also the
    /// one `JsonFields` writes.
    #[test]
    fn the_widest_event_fits_its_bound() {
        let ctx = default_ctx();
        let conn = http_conn(
            (Addr::v4([255, 255, 255, 255]), 65535),
            (Addr::v4([255, 255, 255, 254]), 65534),
        );
        let t = Transaction {
            request: Some(RequestHead {
                method: "OPTIONS".into(),
                target: "/a?b=c".into(),
                version: Version::V09,
                host: Some("h:65535".into()),
                user_agent: Some("u".into()),
                content_type: Some("a/b".into()),
                ..Default::default()
            }),
            response: Some(ResponseHead {
                version: Version::V10,
                status: 65535,
                content_type: Some("c/d".into()),
                ..Default::default()
            }),
            req_start_ns: -9_000_000_000_000_000_000,
            resp_end_ns: 0,
            req_header_bytes: 1 << 63,
            resp_body_bytes: (1 << 63) - 1,
            gap: true,
            missing: Some(Missing::ResponseIncomplete),
            ..Default::default()
        };
        let tx = HttpTx {
            seen: Seen::default(),
            t: Box::new(t),
            ctx,
        };
        let mut clock = Clock::default();
        let want = through_fields(&tx, &conn, &mut clock);
        let mut got = Vec::new();
        assert!(write_json(&tx, &conn, &mut got, &mut clock));
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want)
        );
        let text = String::from_utf8_lossy(&got);
        for long in [
            "\"duration\":9000000000000000000",
            "\"bytes\":-9223372036854775808",
            "\"bytes\":9223372036854775807",
            "response_incomplete",
            "\"port\":65535",
            "tcp_gap",
        ] {
            assert!(text.contains(long), "{long} in {text}");
        }
    }

    /// An HTTP event waiting in the queues to the outputs holds its fields and no room for
    /// more: every object inside it (`source`, `http.request.body`, ...) is of its exact size.
    /// Made with room for eight fields each, the 13 objects of a plain GET took 5.8 KB where
    /// their fields take 2.3 KB, and the queues (up to `pipeline.queue_batches` batches of
    /// `pipeline.batch_size` events) held twice the memory when the outputs fell behind.
    #[test]
    fn a_queued_event_holds_no_room_for_fields_it_does_not_have() {
        let ctx = default_ctx();
        let req = RequestHead {
            method: "GET".into(),
            target: "/api/orders/29257/items?v=7".into(),
            version: crate::wire::http::parser::Version::V11,
            host: Some("svc-1.default.svc".into()),
            user_agent: Some("bench/1.0".into()),
            ..Default::default()
        };
        let resp = ResponseHead {
            status: 200,
            content_type: Some("application/json".into()),
            ..Default::default()
        };
        let t = Transaction {
            request: Some(req),
            response: Some(resp),
            req_start_ns: 1_000,
            resp_end_ns: 5_000,
            resp_body_bytes: 578,
            ..Default::default()
        };
        let conn = http_conn(
            (Addr::v4([10, 244, 0, 1]), 30001),
            (Addr::v4([10, 96, 0, 2]), 8080),
        );
        let mut events = Vec::new();
        // The second event is built with what the first left behind (the builder's scratch).
        for _ in 0..2 {
            events.push(event_of(t.clone(), ctx.clone(), &conn));
        }
        for e in &events {
            let j = serde_json::to_value(&e.fields).unwrap();
            assert_eq!(
                j["source"],
                serde_json::json!({"ip": "10.244.0.1", "port": 30001})
            );
            assert_eq!(j["url"]["path"], "/api/orders/29257/items");
            assert_eq!(j["http"]["response"]["body"]["bytes"], 578);
            assert_eq!(j["user_agent"]["original"], "bench/1.0");
            let inner: usize = e
                .fields
                .iter()
                .filter_map(|(_, v)| v.as_object())
                .map(|m| m.spare_entries())
                .sum();
            assert_eq!(inner, 0, "{j}");
        }
    }
}
