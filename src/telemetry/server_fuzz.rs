//! Property-based fuzzing of the monitoring server's request handling: requests with random
//! methods, targets, headers and sizes, delivered in random pieces, and plain garbage. Every
//! connection must get one well-formed HTTP/1.1 answer, and none may hang or panic.

use super::*;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn cases() -> u32 {
    std::env::var("TRAWL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Sends `request` in pieces cut at `cuts`, closes the sending half, and returns the answer.
fn exchange(request: &[u8], cuts: &[usize], token: Option<&str>) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a test runtime");
    rt.block_on(async {
        let endpoints = Endpoints::default();
        endpoints.add(
            "/api/echo",
            Arc::new(|q: &str| Response {
                status: 200,
                content_type: "text/plain",
                body: q.to_owned(),
            }),
        );
        let access = Access {
            bearer_token: token.map(str::to_owned),
        };
        let state = Arc::new((Registry::new(), endpoints, access));
        let (mut client, server) = tokio::io::duplex(4096);
        let served = tokio::spawn(answer(server, state));
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (request.len() + 1)).collect();
        points.extend([0, request.len()]);
        points.sort_unstable();
        points.dedup();
        let mut answer_bytes = Vec::new();
        let talk = async {
            for w in points.windows(2) {
                // The server may answer (and close) before the whole request is sent.
                if client.write_all(&request[w[0]..w[1]]).await.is_err() {
                    break;
                }
            }
            let _ = client.shutdown().await;
            let _ = client.read_to_end(&mut answer_bytes).await;
        };
        // Generous: the server's own read deadline is 5 s; this only keeps a broken run finite.
        tokio::time::timeout(std::time::Duration::from_secs(30), talk)
            .await
            .expect("the server neither answered nor closed");
        served.await.expect("the connection task panicked");
        answer_bytes
    })
}

/// Parses the answer per RFC 9112: status line, headers, a body of exactly Content-Length.
fn parse_answer(bytes: &[u8], head_only: bool) -> Result<(u16, Vec<u8>), String> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        other => return Err(format!("not an HTTP answer: {other:?}: {bytes:?}")),
    };
    let status = resp.code.ok_or("no status")?;
    let len: usize = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
        .ok_or("no Content-Length")?;
    let body = &bytes[n..];
    // A request that does not parse is not known to be HEAD: its 400 carries its body.
    let want = if head_only && status != 400 { 0 } else { len };
    if body.len() != want {
        return Err(format!(
            "body of {} bytes, Content-Length {len}",
            body.len()
        ));
    }
    Ok((status, body.to_vec()))
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("GET".to_owned()),
        2 => Just("HEAD".to_owned()),
        1 => Just("POST".to_owned()),
        1 => Just("get".to_owned()),
        1 => "[A-Z]{1,12}",
        1 => "[ -~]{0,8}",
    ]
}

fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/metrics".to_owned()),
        Just("/health".to_owned()),
        "/api/echo\\?[a-z=&%]{0,20}",
        "/[ -~&&[^ ]]{0,40}",
        "[ -~]{0,20}",
        (1usize..20_000).prop_map(|n| format!("/{}", "a".repeat(n))),
    ]
}

fn header() -> impl Strategy<Value = (String, String)> {
    (
        prop_oneof![
            Just("Host".to_owned()),
            Just("Authorization".to_owned()),
            Just("Content-Length".to_owned()),
            Just("Transfer-Encoding".to_owned()),
            "[A-Za-z-]{1,16}",
            "[ -~]{0,8}",
        ],
        prop_oneof![
            Just("Bearer s3cret".to_owned()),
            Just("bearer s3cret ".to_owned()),
            Just("Bearer".to_owned()),
            Just("Bearer é".to_owned()),
            Just("chunked".to_owned()),
            "[ -~]{0,40}",
            "\\PC{0,8}",
        ],
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_request_gets_one_well_formed_answer(
        m in method(),
        t in target(),
        headers in prop::collection::vec(header(), 0..40),
        body in prop::collection::vec(any::<u8>(), 0..64),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        token in prop::option::of(Just("s3cret")),
    ) {
        let mut req = format!("{m} {t} HTTP/1.1\r\n");
        for (k, v) in &headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(&body);
        let got = exchange(&bytes, &cuts, token);
        let (status, _) = parse_answer(&got, m == "HEAD").map_err(TestCaseError::fail)?;
        prop_assert!([200, 400, 401, 404, 405, 503].contains(&status), "status {}", status);
        // Oracle for what a monitoring client sends: a plain GET of a known path answers 200,
        // unless a token is required and was not given.
        let simple = (t == "/metrics" || t == "/health") && m == "GET" && headers.is_empty();
        if simple {
            prop_assert_eq!(status, if token.is_some() { 401 } else { 200 });
        }
    }

    #[test]
    fn garbage_gets_an_answer_not_a_hang(
        bytes in prop::collection::vec(any::<u8>(), 0..20_000),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let got = exchange(&bytes, &cuts, None);
        parse_answer(&got, false).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn a_request_larger_than_the_limit_is_refused() {
    let req = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(40_000));
    let got = exchange(req.as_bytes(), &[1000, 5000, 17_000], None);
    let (status, _) = parse_answer(&got, false).unwrap();
    assert_eq!(status, 400);
}

/// A readiness probe keeps the pod out while an input's sources are not open yet: 503
/// "starting" naming it, then 200 once it says it started; a failure is still "failed".
#[test]
fn health_is_starting_until_every_input_reported_started() {
    use crate::telemetry::metrics::ComponentKind;
    let registry = Registry::new();
    let endpoints = Endpoints::default();
    let cap = registry.component(ComponentKind::Input, "cap", "http");
    registry.component(ComponentKind::Input, "logs", "file");
    cap.set_starting();
    let r = route("GET", "/health", &registry, &endpoints);
    assert_eq!(r.status, 503);
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"status": "starting", "starting": ["input cap"]})
    );
    cap.set_failed("no interface");
    let r = route("GET", "/health", &registry, &endpoints);
    assert_eq!(r.status, 503);
    assert!(r.body.contains("\"failed\""), "{}", r.body);
    cap.clear_failed();
    cap.started();
    let r = route("GET", "/health", &registry, &endpoints);
    assert_eq!((r.status, r.body.as_str()), (200, "{\"status\":\"ok\"}\n"));
}
