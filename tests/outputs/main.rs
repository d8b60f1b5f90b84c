//! Delivery to real systems: Kafka brokers and OpenSearch nodes started by the tests,
//! Elasticsearch stand-ins for the faults a real node cannot make, crashes mid-delivery, hung
//! outputs, `trawl test output` and output health.
//! One test binary (`cargo test --release --test outputs`), one module per former test file;
//! `cargo test --release --test outputs <module>::` runs one of them.

#[path = "../support/mod.rs"]
mod support;

mod crash_delivery;
mod elasticsearch_give_up;
mod elasticsearch_output;
mod health_outputs;
mod kafka_auth;
mod kafka_cluster;
mod kafka_hung_broker;
mod kafka_node_drain;
mod kafka_output;
mod kafka_quorum;
mod kafka_reload_fix;
mod kafka_retries;
mod opensearch_hosts;
mod opensearch_hung;
mod opensearch_output;
mod opensearch_reload;
mod opensearch_restart;
mod reload_kafka;
mod test_output;
