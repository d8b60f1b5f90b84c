//! The map the flow table and the connection table keep their entries in, keyed by `FlowKey`.
//! It remembers the bucket of the last key it found: the segments of one connection mostly
//! come in trains, and a packet of the same flow as the one before skips hashing and probing.

use super::FlowKey;
use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;
use std::hash::BuildHasher;

/// The hash `KeyMap` files `key` under.
#[inline]
fn hash_of(key: &FlowKey) -> u64 {
    FxBuildHasher.hash_one(key)
}

/// A packet's key hash, worked out the first time one of the tables needs it and then shared:
/// a packet both tables find in their last bucket needs none.
#[derive(Default)]
pub struct KeyHash(Option<u64>);

impl KeyHash {
    #[inline]
    fn of(&mut self, key: &FlowKey) -> u64 {
        *self.0.get_or_insert_with(|| hash_of(key))
    }
}

pub struct KeyMap<V> {
    table: HashTable<(FlowKey, V)>,
    /// Bucket of the last key found or inserted. A hint only: the bucket's key is compared
    /// before it is used, so a removal or a resize since costs a probe, never a wrong entry.
    last: usize,
}

impl<V> Default for KeyMap<V> {
    fn default() -> Self {
        KeyMap {
            table: HashTable::new(),
            last: 0,
        }
    }
}

impl<V> KeyMap<V> {
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The bucket `key` is in, if it is there; remembered for the next packet. Inlined, the
    /// probe not: called a few times a packet, a call was as dear as the probe it saved.
    #[inline(always)]
    pub fn find(&mut self, key: &FlowKey, hash: &mut KeyHash) -> Option<usize> {
        if self
            .table
            .get_bucket(self.last)
            .is_some_and(|(k, _)| k == key)
        {
            return Some(self.last);
        }
        self.probe(key, hash)
    }

    #[inline(never)]
    fn probe(&mut self, key: &FlowKey, hash: &mut KeyHash) -> Option<usize> {
        let at = self
            .table
            .find_bucket_index(hash.of(key), |(k, _)| k == key)?;
        self.last = at;
        Some(at)
    }

    /// The entry in bucket `at`, as `find` or `insert_new` gave it (nothing has been removed
    /// or inserted since).
    #[inline]
    pub fn at_mut(&mut self, at: usize) -> Option<&mut V> {
        self.table.get_bucket_mut(at).map(|(_, v)| v)
    }

    /// Files `v` under `key`, which is not in the map; its bucket.
    #[inline]
    pub fn insert_new(&mut self, key: FlowKey, hash: &mut KeyHash, v: V) -> usize {
        let at = self
            .table
            .insert_unique(hash.of(&key), (key, v), |(k, _)| hash_of(k))
            .bucket_index();
        self.last = at;
        at
    }

    pub fn get(&self, key: &FlowKey) -> Option<&V> {
        if let Some((k, v)) = self.table.get_bucket(self.last) {
            if k == key {
                return Some(v);
            }
        }
        self.table
            .find(hash_of(key), |(k, _)| k == key)
            .map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &FlowKey) -> Option<&mut V> {
        let at = self.find(key, &mut KeyHash::default())?;
        self.at_mut(at)
    }

    pub fn contains_key(&self, key: &FlowKey) -> bool {
        self.get(key).is_some()
    }

    pub fn remove(&mut self, key: &FlowKey) -> Option<V> {
        self.remove_if(key, |_| true)
    }

    /// Removes the entry under `key` when `remove` says so of it: one look-up.
    pub fn remove_if(&mut self, key: &FlowKey, remove: impl FnOnce(&V) -> bool) -> Option<V> {
        let entry = self
            .table
            .find_entry(hash_of(key), |(k, _)| k == key)
            .ok()?;
        if !remove(&entry.get().1) {
            return None;
        }
        Some(entry.remove().0 .1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&FlowKey, &V)> {
        self.table.iter().map(|(k, v)| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::addr::Addr;

    fn key(port: u16) -> FlowKey {
        let ip = |d| Addr::v4([10, 0, 0, d]);
        FlowKey {
            a: ip(1),
            b: ip(2),
            ap: port,
            bp: 80,
            proto: 6,
            vlan: 0,
            tunnel: 0,
            label: 0,
        }
    }

    /// The remembered bucket is only a hint: after removals, re-insertions and the table
    /// growing under it, every key still finds its own value and a removed key none.
    #[test]
    fn the_last_bucket_never_gives_another_keys_entry() {
        let mut m: KeyMap<u16> = KeyMap::default();
        for port in 0..2000u16 {
            m.insert_new(key(port), &mut KeyHash::default(), port);
            // The key just inserted is the remembered one; an earlier one is found by probing.
            assert_eq!(m.get_mut(&key(port)).copied(), Some(port));
            if port > 0 {
                assert_eq!(m.get_mut(&key(port / 2)).copied(), Some(port / 2));
            }
        }
        for port in (0..2000u16).step_by(3) {
            let at = m.find(&key(port), &mut KeyHash::default());
            assert!(at.is_some());
            assert_eq!(m.remove(&key(port)), Some(port));
            // The remembered bucket is now empty (or, once re-used, another key's).
            assert_eq!(m.find(&key(port), &mut KeyHash::default()), None);
            assert_eq!(m.get(&key(port)), None);
        }
        for port in 2000..2600u16 {
            m.insert_new(key(port), &mut KeyHash::default(), port);
        }
        *m.get_mut(&key(1)).expect("key 1 was filed") = 7;
        for port in 0..2600u16 {
            let want = match port {
                1 => Some(7),
                p if p < 2000 && p % 3 == 0 => None,
                p => Some(p),
            };
            assert_eq!(m.get(&key(port)).copied(), want, "port {port}");
            assert_eq!(m.contains_key(&key(port)), want.is_some());
        }
        assert_eq!(m.len(), 2600 - 667);
        assert_eq!(m.iter().count(), m.len());
        assert_eq!(
            m.remove_if(&key(2), |v| *v == 3),
            None,
            "kept when the test says no"
        );
        assert_eq!(m.remove_if(&key(2), |v| *v == 2), Some(2));
    }
}
