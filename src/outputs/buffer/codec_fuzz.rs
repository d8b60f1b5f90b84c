//! Property-based fuzzing of the disk buffer's record format: any batch round-trips with its
//! types and metadata; a segment with flipped bytes, a torn tail or a lying length is read up to
//! the damaged record and no further, without panicking and without allocating what a length
//! field claims.

use super::codec::{checksum_ok, decode_payload, encode_event, frame, header, HEADER};

/// One record of `events`, as the disk buffer's writer frames it.
fn encode_record(events: &[Event], out: &mut Vec<u8>) {
    let mut bytes = Vec::new();
    for e in events {
        encode_event(e, &mut bytes).expect("generated events are writable");
    }
    frame(events.len() as u32, &bytes, out);
}
use crate::event::{Event, EventMeta, Map, Origin, Value};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use std::sync::Arc;

fn cases() -> u32 {
    std::env::var("TRAWL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        // NaN is not equal to itself; every other float must come back bit for bit.
        any::<f64>()
            .prop_filter("comparable", |f| !f.is_nan())
            .prop_map(Value::Float),
        "\\PC{0,12}".prop_map(Value::String),
        (-8_000_000_000i64..8_000_000_000, 0u32..1_000_000_000).prop_map(|(s, n)| {
            Value::Timestamp(DateTime::<Utc>::from_timestamp(s, n).unwrap_or_default())
        }),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z.@]{1,6}", inner), 0..4).prop_map(|kv| {
                let mut m = Map::with_capacity(kv.len());
                for (k, v) in kv {
                    m.insert(k.as_str(), v);
                }
                Value::Object(m)
            }),
        ]
    })
}

fn event() -> impl Strategy<Value = Event> {
    (
        prop::sample::select(vec!["app", "logs", "http", ""]),
        prop::option::of(any::<(u64, u64)>()),
        prop::collection::vec(("[a-z_]{1,8}", value()), 0..5),
    )
        .prop_map(|(input, origin, kv)| {
            let mut fields = Map::with_capacity(kv.len());
            for (k, v) in kv {
                fields.insert(k.as_str(), v);
            }
            Event {
                fields,
                meta: EventMeta {
                    input: Arc::from(input),
                    origin: origin.map(|(stream, offset)| Origin { stream, offset }),
                },
            }
        })
}

/// Reads a segment the way the disk buffer replays one: records in order, each checked by its
/// length and checksum, stopping at the first that does not hold.
fn replay(seg: &[u8]) -> Vec<Vec<Event>> {
    let mut out = Vec::new();
    let mut off = 0;
    while let Some((n, crc)) = seg.get(off..).and_then(header) {
        let Some(payload) = seg.get(off + HEADER..).and_then(|p| p.get(..n)) else {
            break;
        };
        if !checksum_ok(payload, crc) {
            break;
        }
        let Some(events) = decode_payload(payload) else {
            break;
        };
        out.push(events);
        off += HEADER + n;
    }
    out
}

#[derive(Debug, Clone)]
enum Damage {
    Flip(usize, u8),
    Truncate(usize),
    Length(usize, u32),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, x)| Damage::Flip(at, x)),
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), any::<u32>()).prop_map(|(r, n)| Damage::Length(r, n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn records_round_trip_and_damage_loses_only_from_the_damaged_record(
        batches in prop::collection::vec(prop::collection::vec(event(), 0..4), 1..6),
        d in damage(),
    ) {
        let mut seg = Vec::new();
        let mut starts = Vec::new();
        for b in &batches {
            starts.push(seg.len());
            encode_record(b, &mut seg);
        }
        prop_assert_eq!(&replay(&seg), &batches);

        // Which record the damage hits; every record before it must still come back intact.
        let (hit, damaged) = match d {
            Damage::Flip(at, x) => {
                let at = at % seg.len();
                let mut s = seg.clone();
                s[at] ^= x;
                (starts.iter().rposition(|&st| st <= at).unwrap_or(0), s)
            }
            Damage::Truncate(at) => {
                let at = at % seg.len();
                (starts.iter().rposition(|&st| st < at).unwrap_or(0), seg[..at].to_vec())
            }
            Damage::Length(r, n) => {
                let r = r % starts.len();
                let mut s = seg.clone();
                let old = u32::from_le_bytes(s[starts[r]..starts[r] + 4].try_into().unwrap_or_default());
                prop_assume!(old != n);
                s[starts[r]..starts[r] + 4].copy_from_slice(&n.to_le_bytes());
                (r, s)
            }
        };
        let got = replay(&damaged);
        prop_assert!(got.len() >= hit, "records before the damaged one were lost");
        prop_assert_eq!(&got[..hit], &batches[..hit]);
        // The damaged record is detected, not returned altered (CRC32 catches every flip of up
        // to 8 bits inside one record and every change of its length field).
        if let Some(r) = got.get(hit) {
            prop_assert_eq!(r, &batches[hit]);
            prop_assert!(matches!(d, Damage::Truncate(_)), "damage went unnoticed: {:?}", d);
        }
    }

    #[test]
    fn random_payloads_never_panic_or_over_allocate(
        p in prop::collection::vec(any::<u8>(), 0..512),
        count in any::<u32>(),
    ) {
        // A payload that passed its checksum (a bug writing it, not the disk, is the threat):
        // decoding is bounded by the bytes there are, whatever the counts claim.
        let _ = decode_payload(&p);
        let mut q = count.to_le_bytes().to_vec();
        q.extend_from_slice(&p);
        let _ = decode_payload(&q);
    }
}

#[test]
fn nesting_past_the_limit_is_refused_without_recursing_without_bound() {
    // One event, one field `a`, whose value is 100k nested one-element arrays.
    let mut p = Vec::new();
    p.extend_from_slice(&1u32.to_le_bytes());
    p.extend_from_slice(&0u32.to_le_bytes());
    p.push(0);
    p.extend_from_slice(&1u32.to_le_bytes());
    p.extend_from_slice(&1u32.to_le_bytes());
    p.push(b'a');
    for _ in 0..100_000 {
        p.push(7);
        p.extend_from_slice(&1u32.to_le_bytes());
    }
    p.push(0);
    assert!(decode_payload(&p).is_none());
}
