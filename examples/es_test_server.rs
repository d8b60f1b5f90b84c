//! The Elasticsearch stand-in of the tests as a program, for benchmarks: prints its URL, serves
//! `_bulk` until stdin closes, then prints how many documents it stored. `--count-only` keeps
//! no documents; `--item-429-percent N` refuses that share of items with 429.

#[path = "../tests/support/es_server.rs"]
mod es_server;

use std::io::Read;

fn main() {
    let server = es_server::EsServer::start();
    // Keeping a million documents would measure this server's memory, not trawl's.
    let args: Vec<String> = std::env::args().collect();
    server.with(|s| s.count_only = args.iter().any(|a| a == "--count-only"));
    // `--item-429-percent N`: that share of items is answered 429, as an overloaded cluster does.
    if let Some(n) = args
        .iter()
        .position(|a| a == "--item-429-percent")
        .and_then(|i| args.get(i + 1))
    {
        match n.parse::<u64>() {
            Ok(p) if p <= 100 => server.with(|s| s.item_429_percent = p),
            _ => {
                eprintln!("--item-429-percent takes a number from 0 to 100, not {n:?}");
                std::process::exit(2);
            }
        }
    }
    println!("{}", server.url);
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    let (docs, writes, requests, items_429) =
        server.with(|s| (s.docs.len(), s.writes, s.requests, s.items_429));
    println!("docs={docs} writes={writes} requests={requests} items_429={items_429}");
}
