//! Helpers shared by the integration tests: each test group (`tests/<group>/main.rs`) includes
//! this module whole, so what one group does not call is dead code there, not a mistake.
#![allow(dead_code)]

pub mod dumpcap;
pub mod es_server;
pub mod image;
pub mod kafka;
pub mod kube_api;
pub mod kube_cluster;
pub mod live_http;
pub mod loghub;
pub mod netns;
pub mod nginx;
pub mod opensearch;
pub mod pcap_read;
pub mod pcap_run;
pub mod process;
pub mod stdout_run;
pub mod tcp_pcap;
