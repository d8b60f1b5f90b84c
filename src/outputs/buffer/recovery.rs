//! Reading disk buffer segments back safely: a record is taken only when its checksum holds and
//! it decodes; after a damaged one, the next intact record is found (by the damaged record's own
//! length, else by scanning), so damage costs only itself; a torn tail is told apart from it.

use super::codec;
use crate::event::Event;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Length of the segment without its torn tail: the end of the last intact record. A damaged
/// record followed by intact ones is kept (the reader skips it, counted); one followed by
/// nothing intact is the write a crash interrupted.
pub fn valid_length(file: &File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    let mut off = 0u64;
    while off < len {
        if let Some(size) = record_size(file, off, len)? {
            off += size;
            continue;
        }
        let rest = read_range(file, off, len)?;
        let skip = resync(&rest);
        if skip as u64 == len - off {
            break;
        }
        off += skip as u64;
    }
    Ok(off)
}

/// Size of the intact record at `off` (its checksum holds and it fits before `end`), if any.
fn record_size(file: &File, off: u64, end: u64) -> std::io::Result<Option<u64>> {
    let mut head = [0u8; codec::HEADER];
    if off + codec::HEADER as u64 > end {
        return Ok(None);
    }
    file.read_exact_at(&mut head, off)?;
    let Some((n, crc)) = codec::header(&head) else {
        return Ok(None);
    };
    if !(4..=codec::MAX_RECORD - codec::HEADER).contains(&n)
        || off + (codec::HEADER + n) as u64 > end
    {
        return Ok(None);
    }
    let mut payload = vec![0u8; n];
    file.read_exact_at(&mut payload, off + codec::HEADER as u64)?;
    Ok(codec::checksum_ok(&payload, crc).then_some((codec::HEADER + n) as u64))
}

/// Events in the records from `from` to `to`, read from each record's header and event count
/// only (no checksum: a startup gauge, not a delivery decision); stops at a record whose length
/// does not fit.
pub fn count_events(file: &File, from: u64, to: u64) -> std::io::Result<u64> {
    let mut head = [0u8; codec::HEADER + 4];
    let mut off = from;
    let mut events = 0u64;
    while off + head.len() as u64 <= to {
        file.read_exact_at(&mut head, off)?;
        let Some((n, _)) = codec::header(&head) else {
            break;
        };
        if n < 4 || off + (codec::HEADER + n) as u64 > to {
            break;
        }
        let mut count = [0u8; 4];
        count.copy_from_slice(&head[codec::HEADER..]);
        events += u64::from(u32::from_le_bytes(count));
        off += (codec::HEADER + n) as u64;
    }
    Ok(events)
}

pub fn read_range(file: &File, from: u64, to: u64) -> std::io::Result<Vec<u8>> {
    let mut data = vec![0u8; to.saturating_sub(from) as usize];
    file.read_exact_at(&mut data, from)?;
    Ok(data)
}

/// Whether a whole record that checks out and decodes starts at `data[at..]`.
fn intact_at(data: &[u8], at: usize) -> bool {
    let Some((n, crc)) = data.get(at..).and_then(codec::header) else {
        return false;
    };
    let Some(payload) = data.get(at + codec::HEADER..at + codec::HEADER + n) else {
        return false;
    };
    // An empty payload (all zeros: a hole left by a crash) is not a record trawl writes.
    n >= 4 && codec::checksum_ok(payload, crc) && codec::decode_payload(payload).is_some()
}

/// `data` starts with a damaged record: how many bytes to skip to the next intact one (right
/// after the damaged record when its length is intact, else the first offset where one
/// starts), or `data.len()` when nothing intact follows.
pub fn resync(data: &[u8]) -> usize {
    if let Some((n, _)) = codec::header(data) {
        let next = codec::HEADER.saturating_add(n);
        if next < data.len() && intact_at(data, next) {
            return next;
        }
    }
    (1..data.len())
        .find(|&i| intact_at(data, i))
        .unwrap_or(data.len())
}

/// Reads and checks the record at `off`: its events and its size with the frame.
pub fn read_record(f: &File, off: u64) -> Result<(Vec<Event>, u64), String> {
    let mut head = [0u8; codec::HEADER];
    f.read_exact_at(&mut head, off)
        .map_err(|e| format!("reading header: {e}"))?;
    let (n, crc) = codec::header(&head).ok_or("short header")?;
    if n > codec::MAX_RECORD - codec::HEADER {
        return Err(format!("record length {n} is implausible"));
    }
    let mut payload = vec![0u8; n];
    f.read_exact_at(&mut payload, off + codec::HEADER as u64)
        .map_err(|e| format!("reading record: {e}"))?;
    if !codec::checksum_ok(&payload, crc) {
        return Err("checksum mismatch".into());
    }
    let events = codec::decode_payload(&payload).ok_or("undecodable record")?;
    Ok((events, (codec::HEADER + n) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(message: &str) -> Vec<u8> {
        let mut bytes = Vec::new();
        let e = Event::from_message("in".into(), chrono::Utc::now(), message.into());
        codec::encode_event(&e, &mut bytes).unwrap();
        let mut out = Vec::new();
        codec::frame(1, &bytes, &mut out);
        out
    }

    #[test]
    fn a_damaged_record_is_skipped_to_the_next_intact_one() {
        let (a, b, c) = (record("a"), record("bb"), record("ccc"));
        let seg = [a.clone(), b.clone(), c.clone()].concat();
        // Payload damaged, length intact: exactly that record.
        let mut d = seg.clone();
        d[a.len() + codec::HEADER + 5] ^= 1;
        assert_eq!(resync(&d[a.len()..]), b.len());
        // Length damaged: the next record is found by its checksum.
        let mut d = seg.clone();
        d[a.len() + 1] ^= 0x40;
        assert_eq!(resync(&d[a.len()..]), b.len());
        // Nothing intact after it: the rest.
        assert_eq!(resync(&d[a.len()..a.len() + b.len()]), b.len());
        // Zeros (a hole a crash can leave) are not records.
        assert_eq!(resync(&[0u8; 64]), 64);
        assert_eq!(resync(&[vec![0u8; 64], c.clone()].concat()), 64);

        // At start-up, damage followed by intact records is kept for the reader to skip; a
        // torn tail is cut.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.seg");
        let mut damaged = seg.clone();
        damaged[a.len() + codec::HEADER + 5] ^= 1;
        std::fs::write(&path, &damaged).unwrap();
        let f = File::open(&path).unwrap();
        assert_eq!(valid_length(&f).unwrap(), seg.len() as u64);
        std::fs::write(&path, &seg[..seg.len() - 2]).unwrap();
        let f = File::open(&path).unwrap();
        assert_eq!(valid_length(&f).unwrap(), (a.len() + b.len()) as u64);
    }
}
