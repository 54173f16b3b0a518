//! The bounded map from key to breaker.
//!
//! Reads are one atomic load of a copy-on-write table (`ArcSwap`) and a probe with a borrowed
//! key; a new key copies the table under a writer lock, dropping idle breakers on the way and
//! the least recently used one when full. With at most a few thousand keys, the copy costs
//! less than a lock on every read would.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::{ArcSwap, ArcSwapOption};
use hashbrown::HashTable;

use crate::config::BreakerConfig;
use crate::key::{Key, KeyProbe};
use crate::observe::State;
use crate::state::{Cell, Shared};

/// A key and its breaker.
pub(crate) struct Entry<K> {
    hash: u64,
    pub(crate) key: K,
    pub(crate) cell: Arc<Cell>,
}

type Table<K> = HashTable<Arc<Entry<K>>>;

pub(crate) struct Registry<K> {
    table: ArcSwap<Table<K>>,
    // The breaker the last map lookup of any service found. A service remembers its own last
    // breaker, but one cloned per call (as a client facade does, `Service::call` taking
    // `&mut self`) starts with nothing remembered; this spares it the parse and hash of the
    // origin when traffic goes on to the same origin.
    recent: ArcSwapOption<Entry<K>>,
    writer: Mutex<()>,
    hasher: RandomState,
    pub(crate) shared: Arc<Shared>,
    default: BreakerConfig,
    overrides: HashMap<K, BreakerConfig>,
    max_keys: usize,
    idle_ns: u64,
}

/// Whether an insert may go past `max_keys`: an operator's command may, traffic may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Room {
    Bounded,
    Unbounded,
}

impl<K: Key> Registry<K> {
    pub(crate) fn new(
        shared: Arc<Shared>,
        default: BreakerConfig,
        overrides: HashMap<K, BreakerConfig>,
        max_keys: usize,
        idle_ns: u64,
    ) -> Registry<K> {
        Registry {
            table: ArcSwap::from_pointee(HashTable::new()),
            recent: ArcSwapOption::empty(),
            writer: Mutex::new(()),
            hasher: RandomState::new(),
            shared,
            default,
            overrides,
            max_keys,
            idle_ns,
        }
    }

    /// The breaker of `probe`, if there is one.
    #[inline]
    pub(crate) fn find<Q: KeyProbe<K>>(&self, probe: &Q) -> Option<Arc<Entry<K>>> {
        let hash = self.hasher.hash_one(probe);
        self.table
            .load()
            .find(hash, |e| probe.matches(&e.key))
            .cloned()
    }

    /// The breaker any service found last, if `is_it` says it is the one wanted (and the map
    /// still holds it).
    #[inline]
    pub(crate) fn recent(&self, is_it: impl FnOnce(&K) -> bool) -> Option<Arc<Entry<K>>> {
        let recent = self.recent.load();
        match &*recent {
            Some(e) if !e.cell.is_evicted() && is_it(&e.key) => Some(Arc::clone(e)),
            _ => None,
        }
    }

    /// Remembers `entry` as the breaker found last.
    pub(crate) fn set_recent(&self, entry: &Arc<Entry<K>>) {
        self.recent.store(Some(Arc::clone(entry)));
    }

    /// The breaker of `probe`, made if there is none. `None` only when the map is full of
    /// breakers an operator pinned (forced open or disabled).
    #[inline]
    pub(crate) fn get_or_insert<Q: KeyProbe<K>>(
        &self,
        probe: Q,
        room: Room,
    ) -> Option<Arc<Entry<K>>> {
        let hash = self.hasher.hash_one(&probe);
        if let Some(e) = self.table.load().find(hash, |e| probe.matches(&e.key)) {
            return Some(e.clone());
        }
        self.insert(probe.into_key(), hash, room)
    }

    #[cold]
    fn insert(&self, key: K, hash: u64, room: Room) -> Option<Arc<Entry<K>>> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.table.load_full();
        if let Some(e) = current.find(hash, |e| e.key == key) {
            return Some(e.clone());
        }
        let now = self.shared.ticks.now();
        let mut evicted = Vec::new();
        let mut keep = Vec::with_capacity(current.len() + 1);
        for e in current.iter() {
            let idle = e.cell.idle_for(now);
            if e.cell.state() == State::Closed && idle > self.idle_ns {
                evicted.push(e.clone());
            } else {
                keep.push((idle, e.clone()));
            }
        }
        while room == Room::Bounded && keep.len() >= self.max_keys {
            // Least recently used first, closed breakers before open ones; never one an
            // operator pinned.
            let victim = keep
                .iter()
                .enumerate()
                .filter_map(|(i, (idle, e))| {
                    let rank = match e.cell.state() {
                        State::Closed => 0,
                        State::Open | State::HalfOpen => 1,
                        State::ForcedOpen | State::Disabled => return None,
                    };
                    Some((rank, std::cmp::Reverse(*idle), i))
                })
                .min()
                .map(|(_, _, i)| i);
            match victim {
                Some(i) => evicted.push(keep.swap_remove(i).1),
                None => {
                    tracing::debug!(
                        breaker.key = %key,
                        "breaker map full of pinned breakers; call not guarded"
                    );
                    return None;
                }
            }
        }
        let config = self.overrides.get(&key).unwrap_or(&self.default).clone();
        let cell = Cell::new(key.to_string().into(), config, self.shared.clone());
        let entry = Arc::new(Entry {
            hash,
            key,
            cell: Arc::new(cell),
        });
        let mut table = HashTable::with_capacity(keep.len() + 1);
        for (_, e) in keep {
            table.insert_unique(e.hash, e, |e| e.hash);
        }
        table.insert_unique(hash, entry.clone(), |e| e.hash);
        self.table.store(Arc::new(table));
        // After the store: a service that sees the flag and looks again finds the new table.
        for e in evicted {
            e.cell.mark_evicted();
        }
        Some(entry)
    }

    /// Every breaker, in no particular order.
    pub(crate) fn entries(&self) -> Vec<Arc<Entry<K>>> {
        self.table.load().iter().cloned().collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.table.load().len()
    }
}

impl<K> fmt::Debug for Registry<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("keys", &self.table.load().len())
            .field("max_keys", &self.max_keys)
            .field("default", &self.default)
            .field("overrides", &self.overrides.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, Ticks};
    use std::time::Duration;

    fn registry(max_keys: usize, clock: &ManualClock) -> Registry<String> {
        let shared = Arc::new(Shared {
            ticks: Ticks::new(Arc::new(clock.clone())),
            listeners: Vec::new(),
        });
        let mut overrides = HashMap::new();
        overrides.insert(
            "special".to_string(),
            BreakerConfig::default().half_open_probes(7),
        );
        Registry::new(
            shared,
            BreakerConfig::default(),
            overrides,
            max_keys,
            Duration::from_secs(60).as_nanos() as u64,
        )
    }

    #[test]
    fn finds_what_it_made_and_stays_bounded() {
        let clock = ManualClock::new();
        let r = registry(3, &clock);
        let a = r.get_or_insert("a".to_string(), Room::Bounded).unwrap();
        assert!(Arc::ptr_eq(
            &a,
            &r.get_or_insert("a".to_string(), Room::Bounded).unwrap()
        ));
        for k in ["b", "c", "d", "e"] {
            clock.advance(Duration::from_secs(2));
            r.get_or_insert(k.to_string(), Room::Bounded).unwrap();
        }
        assert_eq!(r.len(), 3);
        // "a" was the least recently used: evicted, and told so.
        assert!(a.cell.is_evicted());
        assert!(r.find(&"a".to_string()).is_none());
        assert!(r.find(&"e".to_string()).is_some());
    }

    #[test]
    fn pinned_breakers_are_kept_and_idle_ones_dropped() {
        let clock = ManualClock::new();
        let r = registry(2, &clock);
        for k in ["x", "y"] {
            let e = r.get_or_insert(k.to_string(), Room::Bounded).unwrap();
            e.cell.set(State::ForcedOpen);
        }
        assert!(r.get_or_insert("z".to_string(), Room::Bounded).is_none());
        // An operator may go past the bound.
        assert!(r.get_or_insert("z".to_string(), Room::Unbounded).is_some());
        assert_eq!(r.len(), 3);
        // "z" is closed; once idle it goes with the next insert.
        clock.advance(Duration::from_secs(61));
        r.get_or_insert("w".to_string(), Room::Unbounded).unwrap();
        assert!(r.find(&"z".to_string()).is_none());
        assert!(r.find(&"x".to_string()).is_some());
    }

    #[test]
    fn overrides_apply_to_their_key() {
        let clock = ManualClock::new();
        let r = registry(8, &clock);
        let e = r
            .get_or_insert("special".to_string(), Room::Bounded)
            .unwrap();
        assert_eq!(e.cell.config().half_open_probes, 7);
        let e = r.get_or_insert("plain".to_string(), Room::Bounded).unwrap();
        assert_eq!(e.cell.config().half_open_probes, 1);
    }
}
