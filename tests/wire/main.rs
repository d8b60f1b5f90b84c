//! Capture and protocol decoding: live capture on veths, namespaces and lo against real
//! servers (nginx, MariaDB, PostgreSQL, Redis, dnsmasq), pcap files against tshark and
//! suricata-verify, IP fragments and tunnels, HTTP/1, HTTP/2, TLS and DNS fidelity, fuzzing.
//! One test binary (`cargo test --release --test wire`), one module per former test file;
//! `cargo test --release --test wire <module>::` runs one of them.

#[path = "../support/mod.rs"]
mod support;

mod capture_interfaces;
mod capture_restart;
mod dns_live;
mod dns_over_https;
mod dns_tls_odd;
mod encapsulations;
mod flow_memory;
mod fuzz;
mod fuzz_captures;
mod fuzz_http2;
mod fuzz_tls;
mod http2_grpc;
mod http2_h2c_upgrade;
mod http2_prior_knowledge;
mod http_body_rules;
mod http_fidelity;
mod http_redaction;
mod ip_fragments;
mod ip_fragments_live;
mod ip_fragments_tunnel;
mod live_capture;
mod live_node;
mod live_node_nat;
mod live_node_pcapng;
mod lossy_network;
mod mysql_real_server;
mod pcap_cli;
mod pcap_damaged;
mod pcap_file_input;
mod pcap_suricata;
mod pcap_tshark;
mod pcapng_files;
mod pgsql_real_server;
mod redis_live;
mod rfc_cases;
mod shared_port_live;
mod shared_ports;
mod slow_queries;
mod tap;
mod tls_nginx;
mod tls_resumed;
mod tunnel_key;
