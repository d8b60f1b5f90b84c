//! `/health` and the output retry counter during a real outage, through the real binary: an
//! Elasticsearch output pointed at a port nothing listens on turns `/health` 503 (naming the
//! output and since when) once it has failed past `http.health.output_failure_threshold`, and
//! 200 again once a cluster appears on that port and the events are delivered.

use crate::support;

use std::time::Duration;
use support::es_server::EsServer;
use support::process::{free_port, http_get as get, metric, wait_until, write_file, Trawl};

fn pipeline(
    dir: &std::path::Path,
    name: &str,
    http: &str,
    es: &str,
    health: &str,
) -> std::path::PathBuf {
    write_file(
        dir,
        name,
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{http}\"{health} }}\ninputs:\n  app: {{ type: stdin }}\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"http://{es}\"]\n    batch: {{ max_events: 10, timeout: 50ms }}\n    retry: {{ initial_backoff: 50ms, max_backoff: 300ms }}\n",
            data = dir.join(format!("data-{name}")).display()
        ),
    )
}

#[test]
fn an_output_failing_past_the_threshold_turns_health_503_and_200_once_it_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let es_addr = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let cfg = pipeline(
        dir.path(),
        "short.yaml",
        &http,
        &es_addr,
        ", health: { output_failure_threshold: 2s }",
    );
    // The same outage under the default threshold (5 minutes) must not fail /health.
    let http_default = format!("127.0.0.1:{}", free_port());
    let cfg_default = pipeline(dir.path(), "default.yaml", &http_default, &es_addr, "");
    let mut t = Trawl::start(&cfg, Some(&dir.path().join("short.log")));
    let mut t_default = Trawl::start(&cfg_default, Some(&dir.path().join("default.log")));
    t.feed(b"first line\nsecond line\n");
    t_default.feed(b"first line\n");

    let mut last = None;
    wait_until(Duration::from_secs(60), "/health to answer 503", || {
        last = get(&http, "/health");
        last.as_ref().is_some_and(|(status, _)| *status == 503)
    });
    let (_, body) = last.unwrap();
    let v: serde_json::Value =
        serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {body}"));
    let failing = v["failing_outputs"]
        .as_array()
        .unwrap_or_else(|| panic!("no failing_outputs: {body}"));
    assert_eq!(failing.len(), 1, "{body}");
    assert_eq!(failing[0]["output"], "es", "{body}");
    let since = failing[0]["failing_since"].as_str().unwrap_or_default();
    let since =
        chrono::DateTime::parse_from_rfc3339(since).unwrap_or_else(|e| panic!("{e}: {body}"));
    // Answered 503 only once the outage is older than the threshold.
    assert!(
        chrono::Utc::now().signed_duration_since(since) >= chrono::Duration::seconds(1),
        "503 before the 2s threshold: {body}"
    );
    assert!(
        failing[0]["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{body}"
    );

    let retries = metric(&http, "trawl_output_retries_total", "es").unwrap_or(0.0);
    assert!(
        retries >= 2.0,
        "trawl_output_retries_total{{component=\"es\"}} = {retries}"
    );

    // Under the default threshold the failing output has retried too, and /health stays 200.
    wait_until(
        Duration::from_secs(30),
        "the default-threshold trawl to retry",
        || metric(&http_default, "trawl_output_retries_total", "es").unwrap_or(0.0) >= 2.0,
    );
    let (status, body) = get(&http_default, "/health").expect("/health answers");
    assert_eq!(status, 200, "{body}");

    // A cluster appears on the port: delivered, and healthy again.
    let es = EsServer::start_on(&es_addr);
    wait_until(
        Duration::from_secs(60),
        "/health to answer 200 again",
        || get(&http, "/health").is_some_and(|(status, _)| status == 200),
    );
    wait_until(Duration::from_secs(30), "both lines in the cluster", || {
        es.with(|s| {
            s.docs
                .values()
                .filter(|d| d.to_string().contains("second line"))
                .count()
                >= 1
        })
    });
    t.finish(Duration::from_secs(60));
    t_default.finish(Duration::from_secs(60));
}
