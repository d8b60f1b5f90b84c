//! Fuzzing the TLS handshake decoder: random bytes, and real handshakes (tests/data/tls) with
//! bytes flipped, cut at random places and fed to either side with gaps in between. It must
//! never panic, report at most one handshake per connection, and keep its buffers within the
//! record and message caps. `TRAWL_FUZZ_CASES` cases per property (default 256).

use proptest::prelude::*;
use trawl::wire::tls::{Conn, ConnStats, Limits};

fn cases() -> u32 {
    std::env::var("TRAWL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// The chunks of a `follow,tcp,raw` fixture (`true`: the server's).
fn stream(name: &str) -> Vec<(bool, Vec<u8>)> {
    let path = format!(
        "{}/tests/data/tls/{name}.follow",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).expect("fixture");
    text.lines()
        .filter_map(|line| {
            let hex = line.trim();
            (!hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| {
                let bytes = (0..hex.len())
                    .step_by(2)
                    .filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
                    .collect();
                (line.starts_with('\t'), bytes)
            })
        })
        .collect()
}

/// Feeds `chunks` cut every `cut` bytes; a gap of `gap` bytes after chunk `gap_at`.
fn feed(chunks: &[(bool, Vec<u8>)], cut: usize, gap_at: usize, gap: u32) -> usize {
    let mut conn = Conn::new(Limits {
        max_message_bytes: 4096,
    });
    let (mut st, mut out) = (ConnStats::default(), Vec::new());
    for (i, (server, data)) in chunks.iter().enumerate() {
        for p in data.chunks(cut.max(1)) {
            if *server {
                conn.server_data(i as i64, p, &mut st, &mut out);
            } else {
                conn.client_data(i as i64, p, &mut st, &mut out);
            }
            assert!(conn.buffered() <= 2 * (4 + 4096 + 5 + 18432) + 64 * 1024);
        }
        if i == gap_at {
            conn.gap(*server, gap, &mut st);
        }
    }
    conn.expire(i64::MAX, &mut out);
    conn.close(i64::MAX, &mut st, &mut out);
    assert!(out.len() <= 1, "one handshake per connection");
    out.len()
}

const FIXTURES: &[&str] = &[
    "tls12_http11.0",
    "tls12_resumed.1",
    "tls13_h2.0",
    "tls13_retry.0",
    "cipher_alert.0",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(
        chunks in prop::collection::vec((any::<bool>(), prop::collection::vec(any::<u8>(), 0..600)), 0..8),
        cut in 1usize..700,
        gap_at in 0usize..8,
        gap in 0u32..5000,
    ) {
        // Most random streams are not TLS; some start like a record.
        let mut chunks = chunks;
        if let Some((_, first)) = chunks.first_mut() {
            if first.len() > 5 {
                first[..3].copy_from_slice(&[22, 3, 1]);
            }
        }
        feed(&chunks, cut, gap_at, gap);
    }

    #[test]
    fn mutated_real_handshakes_never_panic(
        which in 0usize..FIXTURES.len(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..12),
        cut in 1usize..400,
        gap_at in 0usize..12,
        gap in 0u32..3000,
    ) {
        let mut chunks = stream(FIXTURES[which]);
        for (at, byte) in flips {
            let i = at.index(chunks.len());
            let data = &mut chunks[i].1;
            if !data.is_empty() {
                let j = at.index(data.len());
                data[j] = byte;
            }
        }
        feed(&chunks, cut, gap_at, gap);
    }
}

/// Unmutated, every fixture is one handshake however it is cut.
#[test]
fn real_handshakes_report_once_whatever_the_cuts() {
    for name in FIXTURES {
        for cut in [1, 7, 100, 100_000] {
            assert_eq!(
                feed(&stream(name), cut, usize::MAX, 0),
                1,
                "{name} cut {cut}"
            );
        }
    }
}
