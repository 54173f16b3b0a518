//! [`BreakerHandle`]: an operator's controls and a view of every breaker of a layer.

use std::fmt;
use std::sync::Arc;

use flext_core::Origin;

use crate::key::Key;
use crate::observe::{Snapshot, State};
use crate::registry::{Registry, Room};

/// Controls and snapshots for the breakers of one [`BreakerLayer`](crate::BreakerLayer),
/// from [`BreakerLayer::handle`](crate::BreakerLayer::handle). Clones share the same
/// breakers.
///
/// ```
/// use flext_breaker::{BreakerLayer, State};
/// use flext_core::Origin;
///
/// let layer = BreakerLayer::new();
/// let handle = layer.handle();
/// let origin: Origin = "https://api.example.com".parse().unwrap();
///
/// handle.force_open(&origin);
/// assert_eq!(handle.state(&origin), Some(State::ForcedOpen));
/// handle.disable(&origin);
/// assert_eq!(handle.snapshot(&origin).unwrap().state, State::Disabled);
/// handle.reset(&origin);
/// assert_eq!(handle.state(&origin), Some(State::Closed));
/// ```
pub struct BreakerHandle<K = Origin> {
    registry: Arc<Registry<K>>,
}

impl<K: Key> BreakerHandle<K> {
    pub(crate) fn new(registry: Arc<Registry<K>>) -> BreakerHandle<K> {
        BreakerHandle { registry }
    }

    /// Holds the breaker of `key` open: every call fails fast until [`reset`](Self::reset).
    /// Makes the breaker if there is none yet, even past the layer's key bound.
    pub fn force_open(&self, key: &K) {
        self.set(key, State::ForcedOpen);
    }

    /// Turns the breaker of `key` off: every call goes through and nothing is counted, until
    /// [`reset`](Self::reset). Makes the breaker if there is none yet.
    pub fn disable(&self, key: &K) {
        self.set(key, State::Disabled);
    }

    /// Puts the breaker of `key` back to a fresh closed state (window, failure counts and
    /// open-time doubling cleared). Results of calls made before the reset are ignored.
    pub fn reset(&self, key: &K) {
        if let Some(e) = self.registry.find(key) {
            e.cell.set(State::Closed);
        }
    }

    /// Resets every breaker.
    pub fn reset_all(&self) {
        for e in self.registry.entries() {
            e.cell.set(State::Closed);
        }
    }

    /// The state of the breaker of `key`, if there is one.
    pub fn state(&self, key: &K) -> Option<State> {
        self.registry.find(key).map(|e| e.cell.state())
    }

    /// A snapshot of the breaker of `key`, if there is one.
    pub fn snapshot(&self, key: &K) -> Option<Snapshot> {
        self.registry.find(key).map(|e| e.cell.snapshot())
    }

    /// A snapshot of every breaker, with its key.
    pub fn snapshots(&self) -> Vec<(K, Snapshot)> {
        self.registry
            .entries()
            .into_iter()
            .map(|e| (e.key.clone(), e.cell.snapshot()))
            .collect()
    }

    /// How many breakers the layer holds.
    pub fn len(&self) -> usize {
        self.registry.len()
    }

    /// Whether the layer holds no breaker yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn set(&self, key: &K, to: State) {
        if let Some(e) = self.registry.get_or_insert(key.clone(), Room::Unbounded) {
            e.cell.set(to);
        }
    }
}

impl<K> Clone for BreakerHandle<K> {
    fn clone(&self) -> Self {
        BreakerHandle {
            registry: self.registry.clone(),
        }
    }
}

impl<K> fmt::Debug for BreakerHandle<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerHandle")
            .field("registry", &self.registry)
            .finish()
    }
}
