//! A fixed-capacity, insert-only hash table with lock-free lookups.
//!
//! Each slot is a `OnceLock`: a lookup is a few atomic loads and key comparisons; only the
//! first insert of a key allocates (and may briefly block another thread racing for the same
//! empty slot). Entries are never removed, so an index stays valid for the table's life.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

pub(crate) struct Table<T> {
    slots: Box<[OnceLock<Box<Entry<T>>>]>,
    mask: usize,
    len: AtomicUsize,
    limit: usize,
    hasher: FxBuild,
}

struct Entry<T> {
    hash: u64,
    value: T,
}

impl<T> Table<T> {
    /// A table holding at most `limit` entries (more may land under a race, never past the
    /// slot count).
    pub(crate) fn new(limit: usize) -> Table<T> {
        let slots = limit.max(8).saturating_mul(2).next_power_of_two();
        Table {
            slots: (0..slots).map(|_| OnceLock::new()).collect(),
            mask: slots - 1,
            len: AtomicUsize::new(0),
            limit: limit.max(1),
            hasher: FxBuild(fastrand::u64(..)),
        }
    }

    pub(crate) fn hash<K: Hash + ?Sized>(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The index of the entry that `is_key` accepts, inserting `make()` if there is none;
    /// `None` when the table is full.
    pub(crate) fn find_or_insert(
        &self,
        hash: u64,
        is_key: impl Fn(&T) -> bool,
        make: impl Fn() -> T,
    ) -> Option<usize> {
        let mut i = (hash as usize) & self.mask;
        for _ in 0..self.slots.len() {
            let slot = &self.slots[i];
            let entry = match slot.get() {
                Some(e) => e,
                None => {
                    if self.len.load(Ordering::Relaxed) >= self.limit {
                        return None;
                    }
                    slot.get_or_init(|| {
                        self.len.fetch_add(1, Ordering::Relaxed);
                        Box::new(Entry {
                            hash,
                            value: make(),
                        })
                    })
                }
            };
            if entry.hash == hash && is_key(&entry.value) {
                return Some(i);
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// The entry at an index [`find_or_insert`](Table::find_or_insert) returned.
    pub(crate) fn get(&self, index: usize) -> Option<&T> {
        self.slots.get(index)?.get().map(|e| &e.value)
    }

    /// Every entry, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|s| s.get().map(|e| &e.value))
    }
}

/// The Fx hash (rustc's) with a random seed: fast on short keys, which is all we hash.
#[derive(Clone, Copy)]
struct FxBuild(u64);

impl BuildHasher for FxBuild {
    type Hasher = FxHasher;

    fn build_hasher(&self) -> FxHasher {
        FxHasher(self.0)
    }
}

pub(crate) struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn finds_what_it_inserted_and_stops_at_the_limit() {
        let t: Table<u32> = Table::new(4);
        let mut idx = Vec::new();
        for k in 0..4u32 {
            let h = t.hash(&k);
            idx.push(t.find_or_insert(h, |v| *v == k, || k).unwrap());
        }
        for k in 0..4u32 {
            let h = t.hash(&k);
            assert_eq!(
                t.find_or_insert(h, |v| *v == k, || k),
                Some(idx[k as usize])
            );
            assert_eq!(t.get(idx[k as usize]), Some(&k));
        }
        assert_eq!(t.find_or_insert(t.hash(&9u32), |v| *v == 9, || 9), None);
        assert_eq!(t.iter().count(), 4);
    }

    #[test]
    fn colliding_hashes_probe_on() {
        let t: Table<u32> = Table::new(16);
        let a = t.find_or_insert(7, |v| *v == 1, || 1).unwrap();
        let b = t.find_or_insert(7, |v| *v == 2, || 2).unwrap();
        assert_ne!(a, b);
        assert_eq!(t.find_or_insert(7, |v| *v == 2, || 2), Some(b));
    }

    #[test]
    fn concurrent_inserts_agree() {
        let t: Arc<Table<u32>> = Arc::new(Table::new(64));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || {
                    (0..32u32)
                        .map(|k| t.find_or_insert(t.hash(&k), |v| *v == k, || k).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let results: Vec<Vec<usize>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(results.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(t.iter().count(), 32);
    }
}
