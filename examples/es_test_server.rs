//! The Elasticsearch stand-in of the tests as a program, for benchmarks: prints its URL, serves
//! `_bulk` until stdin closes, then prints how many documents it stored.

#[path = "../tests/support/es_server.rs"]
mod es_server;

use std::io::Read;

fn main() {
    let server = es_server::EsServer::start();
    // Keeping a million documents would measure this server's memory, not trawl's.
    server.with(|s| s.count_only = std::env::args().any(|a| a == "--count-only"));
    println!("{}", server.url);
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    let (docs, writes) = server.with(|s| (s.docs.len(), s.writes));
    println!("docs={docs} writes={writes}");
}
