//! Fuzzing the HTTP/2 decoder: random bytes into HPACK and into connections, and a real grpcio
//! connection through nginx (tests/data/http2, six calls) with bytes flipped, cut at random
//! places and gaps in between. It must never panic, report at most one stream per frame,
//! and keep what it holds within its limits. `TRAWL_FUZZ_CASES` cases per
//! property (default 256).

use proptest::prelude::*;
use trawl::wire::analyzer::Side;
use trawl::wire::http2::conn::{Conn, ConnStats, Limits};
use trawl::wire::http2::hpack::Decoder;

fn cases() -> u32 {
    std::env::var("TRAWL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// The chunks of a `follow,tcp,raw` fixture (`true`: the server's).
fn stream(name: &str) -> Vec<(bool, Vec<u8>)> {
    let path = format!(
        "{}/tests/data/http2/{name}.follow",
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

const LIMITS: Limits = Limits {
    max_streams: 16,
    max_header_block: 4096,
    max_table_size: 4096,
    dns_over_https: true,
};

/// Feeds `chunks` cut every `cut` bytes, a gap of `gap` bytes after chunk `gap_at`; returns
/// the streams reported.
fn feed(chunks: &[(bool, Vec<u8>)], cut: usize, gap_at: usize, gap: u32) -> usize {
    let mut conn = Conn::new(LIMITS);
    let (mut st, mut out) = (ConnStats::default(), Vec::new());
    let mut ts = 1_000;
    for (i, (server, bytes)) in chunks.iter().enumerate() {
        let side = if *server { Side::Server } else { Side::Client };
        for c in bytes.chunks(cut.max(1)) {
            ts += 1_000;
            conn.data(side, c, ts, &mut st, &mut out);
            // An HTTP/1.1 head (16 KiB), a frame payload, a header block and a table per
            // direction, and the streams.
            let bound = 2 * (32 * 1024 + 3 * LIMITS.max_header_block + LIMITS.max_table_size)
                + LIMITS.max_streams * 512;
            assert!(conn.buffered() <= bound);
        }
        if i == gap_at {
            conn.gap(side, gap, &mut st, &mut out);
        }
    }
    conn.close(&mut out);
    out.len()
}

#[test]
fn the_real_connection_is_six_calls_whatever_the_cuts() {
    let chunks = stream("grpc_via_nginx");
    for cut in [1, 3, 9, 64, 100_000] {
        assert_eq!(feed(&chunks, cut, usize::MAX, 0), 6, "cut {cut}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn hpack_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut d = Decoder::new(4096);
        let mut n = 0usize;
        let _ = d.decode(&bytes, &mut |k, v| n += k.len() + v.len());
        prop_assert!(d.size() <= 4096);
    }

    #[test]
    fn connections_take_any_bytes(
        client in proptest::collection::vec(any::<u8>(), 0..400),
        server in proptest::collection::vec(any::<u8>(), 0..400),
        preface in any::<bool>(),
    ) {
        let mut c = if preface { trawl::wire::http2::conn::PREFACE.to_vec() } else { Vec::new() };
        c.extend(client);
        let n = feed(&[(false, c), (true, server)], 37, 5, 0);
        // Each stream needs a frame header of 9 bytes from one side or the other.
        prop_assert!(n <= 2 * (400 / 9 + 1));
    }

    #[test]
    fn damaged_real_connections_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in 1usize..200,
        gap_at in 0usize..40,
        gap in 0u32..300,
    ) {
        let mut chunks = stream("grpc_via_nginx");
        let total: usize = chunks.iter().map(|c| c.1.len()).sum();
        for (at, byte) in flips {
            let mut i = at.index(total);
            for c in chunks.iter_mut() {
                if i < c.1.len() {
                    c.1[i] ^= byte;
                    break;
                }
                i -= c.1.len();
            }
        }
        let n = feed(&chunks, cut, gap_at, gap);
        // At most one stream per frame header in the connection's bytes.
        prop_assert!(n <= total / 9 + 1);
    }
}
