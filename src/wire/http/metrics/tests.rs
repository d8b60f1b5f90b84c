//! The service map and RED series, checked through the public recording calls.

use super::*;

#[test]
fn nodes_are_named_by_workload_when_known() {
    let m = ServiceMap::new(10);
    m.set_resolver(Arc::new(|ip| {
        (ip.to_string() == "10.244.1.7").then(|| "shop/checkout".to_owned())
    }));
    m.record_http(
        "10.244.0.5",
        "10.244.1.7:8080",
        "GET",
        "/",
        Some(200),
        Some(0.01),
        10,
    );
    m.record_flow("10.244.0.5", "[fd00::1]:5432", 100);
    let edges = m.edges(None);
    assert_eq!(
        edges[1].0,
        ("10.244.0.5".to_owned(), "shop/checkout".to_owned())
    );
    assert_eq!(edges[0].0, ("10.244.0.5".to_owned(), "fd00::1".to_owned()));
    assert_eq!(endpoint_ip("[fd00::1]:5432"), "fd00::1".parse().ok());
}

#[test]
fn paths_are_templated() {
    assert_eq!(template_path("/users/123"), "/users/:id");
    assert_eq!(template_path("/users/123/orders?x=1"), "/users/:id/orders");
    assert_eq!(
        template_path("/o/550e8400-e29b-41d4-a716-446655440000"),
        "/o/:id"
    );
    assert_eq!(template_path("/static/app.js"), "/static/app.js");
    assert_eq!(template_path(""), "/");
}

#[test]
fn red_metrics_and_graph_with_a_cardinality_cap() {
    let m = ServiceMap::new(2);
    m.record_http(
        "10.0.0.1",
        "10.0.0.2:80",
        "GET",
        "/users/1",
        Some(200),
        Some(0.004),
        100,
    );
    m.record_http(
        "10.0.0.1",
        "10.0.0.2:80",
        "GET",
        "/users/2",
        Some(503),
        Some(0.2),
        100,
    );
    m.record_http(
        "10.0.0.3",
        "10.0.0.4:80",
        "POST",
        "/x",
        Some(201),
        Some(0.01),
        10,
    );
    m.record_http(
        "10.0.0.5",
        "10.0.0.6:80",
        "PUT",
        "/y",
        Some(404),
        Some(0.01),
        10,
    );
    m.record_flow("10.0.0.1", "10.0.0.2:80", 5000);
    let mut text = String::new();
    m.render(&mut text);
    assert!(text.contains("trawl_http_requests_total{server=\"10.0.0.2:80\",method=\"GET\",status_class=\"2xx\",status_code=\"200\"} 1"), "{text}");
    assert!(text.contains("trawl_http_requests_total{server=\"10.0.0.2:80\",method=\"GET\",status_class=\"5xx\",status_code=\"503\"} 1"));
    assert!(text.contains("trawl_http_requests_total{server=\"other\",method=\"other\",status_class=\"4xx\",status_code=\"other\"} 1"), "{text}");
    assert!(text.contains("trawl_http_path_requests_total{server=\"10.0.0.2:80\",method=\"GET\",path=\"/users/:id\"} 2"));
    assert!(text.contains(
        "trawl_http_request_duration_seconds_bucket{server=\"10.0.0.2:80\",le=\"0.005\"} 1"
    ));
    let data = m.graph_data(None);
    let edges = data["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 3, "two real edges and the overflow edge");
    let e = edges.iter().find(|e| e["source"] == "10.0.0.1").unwrap();
    assert_eq!(e["mainStat"], 2);
    assert_eq!(e["detail__errors"], 1);
    assert_eq!(e["detail__connections"], 1);
    assert_eq!(e["detail__bytes"], 5000);
    assert!(m.k8spacket_graph(None)["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["id"] == "10.0.0.2"));
}

fn node<'a>(data: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    data["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["id"] == id))
        .unwrap_or_else(|| panic!("no node {id}: {data}"))
}

/// A workload that calls others and serves on two ports is one node; it counts the
/// requests it served, and its arcs split exactly those.
#[test]
fn one_node_per_workload_with_exact_arcs() {
    let m = ServiceMap::new(100);
    for i in 0..8 {
        let status = if i < 2 { 500 } else { 200 };
        m.record_http(
            "10.0.0.1",
            "10.0.0.2:8080",
            "GET",
            "/",
            Some(status),
            Some(0.01),
            10,
        );
    }
    m.record_http(
        "10.0.0.2",
        "10.0.0.3:9000",
        "GET",
        "/",
        Some(200),
        Some(0.01),
        10,
    );
    m.record_http("10.0.0.1", "10.0.0.2:9090", "GET", "/", None, None, 10);
    // Connections add no requests (served counts requests, not connections).
    m.record_flow("10.0.0.1", "10.0.0.2:8080", 500);
    m.record_flow("10.0.0.4", "10.0.0.3:5432", 700);
    let data = m.graph_data(None);
    assert_eq!(data["nodes"].as_array().map(Vec::len), Some(4), "{data}");
    let b = node(&data, "10.0.0.2");
    assert_eq!(b["mainStat"], 9);
    assert_eq!(b["secondaryStat"], 1);
    assert_eq!(
        b["arc__failed"],
        3.0 / 9.0,
        "two 500s and one without response"
    );
    assert_eq!(b["arc__passed"], 6.0 / 9.0);
    assert_eq!(b["subTitle"], ":8080, :9090");
    assert_eq!(b["detail__role"], "client and server");
    let a = node(&data, "10.0.0.1");
    assert_eq!(
        (
            a["mainStat"].as_u64(),
            a["arc__failed"].as_f64(),
            a["arc__passed"].as_f64()
        ),
        (Some(0), Some(0.0), Some(0.0))
    );
    assert_eq!(a["subTitle"], "client");
    let tcp = data["edges"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["source"] == "10.0.0.4"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(tcp["detail__protocol"], "tcp");
    let http = data["edges"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["source"] == "10.0.0.2"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(http["detail__protocol"], "http");
    assert_eq!(tcp["detail__bytes"], 700);
    assert_eq!(tcp["target"], "10.0.0.3");
    // Everything happened just now: a window holds it all.
    let w = m.graph_data(Some(std::time::Duration::from_secs(60)));
    assert_eq!(node(&w, "10.0.0.2")["mainStat"], 9);
}

/// An edge says which protocol its transactions spoke; one client speaking two protocols
/// to the same workload is `mixed`, and bare connections stay `tcp`.
#[test]
fn edges_name_the_protocol_of_their_transactions() {
    use crate::wire::analyzer::{Outcome, Record};
    let m = ServiceMap::new(100);
    let dns = Record {
        start_ns: 0,
        end_ns: 2_000_000,
        outcome: Outcome::Success,
        reason: None,
        request_bytes: 40,
        response_bytes: 80,
        operation: "A",
        status: "NOERROR",
        gap: false,
    };
    m.record_transaction("dns", "10.0.0.1", "10.0.0.53:53", &dns);
    m.record_transaction("redis", "10.0.0.2", "10.0.0.9:6379", &dns);
    m.record_http(
        "10.0.0.2",
        "10.0.0.9:8080",
        "GET",
        "/",
        Some(200),
        Some(0.01),
        10,
    );
    m.record_flow("10.0.0.3", "10.0.0.9:22", 100);
    let data = m.graph_data(None);
    let edge = |src: &str| {
        data["edges"]
            .as_array()
            .and_then(|e| e.iter().find(|e| e["source"] == src))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(edge("10.0.0.1")["detail__protocol"], "dns", "{data}");
    assert_eq!(edge("10.0.0.1")["detail__bytes"], 120);
    assert_eq!(edge("10.0.0.2")["detail__protocol"], "mixed", "{data}");
    assert_eq!(edge("10.0.0.3")["detail__protocol"], "tcp", "{data}");
}
