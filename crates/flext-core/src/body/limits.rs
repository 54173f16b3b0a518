//! Limits on what is kept for replay, and the errors of a replay.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The default per-body cap: 64 KiB, as linkerd's retries.
pub const DEFAULT_MAX_REPLAY_BYTES: usize = 64 * 1024;

/// The default cap across all bodies in flight through one layer: 16 MiB.
pub const DEFAULT_MAX_REPLAY_MEMORY: usize = 16 * 1024 * 1024;

/// Memory shared by the replay buffers of all requests in flight through one layer.
///
/// Clones share the same count. Bytes are reserved as a body is buffered and released when
/// the last handle on that body is dropped or when the body gives up its replay.
#[derive(Clone)]
pub struct ReplayMemory {
    inner: Arc<MemoryInner>,
}

struct MemoryInner {
    capacity: usize,
    used: AtomicUsize,
}

impl ReplayMemory {
    /// Memory for at most `capacity` buffered bytes at once.
    pub fn new(capacity: usize) -> ReplayMemory {
        ReplayMemory {
            inner: Arc::new(MemoryInner {
                capacity,
                used: AtomicUsize::new(0),
            }),
        }
    }

    /// The cap, in bytes.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Bytes buffered now.
    pub fn in_use(&self) -> usize {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// Reserves `bytes` if they fit under the cap; `false` (and nothing reserved) if not.
    ///
    /// For a caller that keeps bodies itself (see [`ReplayLimits::caller_counts_whole`]):
    /// every successful reservation must be given back with [`release`](Self::release).
    #[inline]
    pub fn try_reserve(&self, bytes: usize) -> bool {
        let used = &self.inner.used;
        let mut cur = used.load(Ordering::Relaxed);
        loop {
            let Some(next) = cur.checked_add(bytes).filter(|n| *n <= self.inner.capacity) else {
                return false;
            };
            match used.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Gives back `bytes` reserved with [`try_reserve`](Self::try_reserve).
    #[inline]
    pub fn release(&self, bytes: usize) {
        self.inner.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl fmt::Debug for ReplayMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayMemory")
            .field("capacity", &self.capacity())
            .field("in_use", &self.in_use())
            .finish()
    }
}

/// How much of a body may be kept for replay.
#[derive(Debug, Clone)]
pub struct ReplayLimits {
    max_bytes: usize,
    memory: Option<ReplayMemory>,
    /// Whether a body taken whole on the fast path is counted against `memory` here.
    count_whole: bool,
}

impl ReplayLimits {
    /// At most `max_bytes` per body, and no shared cap.
    pub fn new(max_bytes: usize) -> ReplayLimits {
        ReplayLimits {
            max_bytes,
            memory: None,
            count_whole: true,
        }
    }

    /// Also count every buffered byte against `memory`, shared with other bodies.
    pub fn with_memory(mut self, memory: ReplayMemory) -> ReplayLimits {
        self.memory = Some(memory);
        self
    }

    /// Leaves the bodies [`Replayable::new`](crate::Replayable::new) keeps whole when it wraps
    /// them (in memory, of known size) out of the shared memory: the caller reserves their
    /// [`whole_len`](crate::Replayable::whole_len) itself with
    /// [`ReplayMemory::try_reserve`], and does not replay one it could not reserve. For a
    /// layer whose request state already holds the memory, this saves a reference count per
    /// body. Bodies kept as they stream are still counted as they are read.
    pub fn caller_counts_whole(mut self) -> ReplayLimits {
        self.count_whole = false;
        self
    }

    /// The per-body cap.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The shared cap, if any.
    pub fn memory(&self) -> Option<&ReplayMemory> {
        self.memory.as_ref()
    }

    pub(super) fn counts_whole(&self) -> bool {
        self.count_whole
    }
}

impl Default for ReplayLimits {
    /// [`DEFAULT_MAX_REPLAY_BYTES`] per body, no shared cap.
    fn default() -> ReplayLimits {
        ReplayLimits::new(DEFAULT_MAX_REPLAY_BYTES)
    }
}

/// Why a body cannot be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NotReplayable {
    /// The body is larger than the per-body cap.
    TooLarge,
    /// The shared cap of the bodies in flight was reached.
    MemoryLimit,
    /// Reading the body failed.
    BodyError,
}

impl NotReplayable {
    /// A short, stable, lower-case label: `too_large`, `memory_limit` or `body_error`.
    pub const fn as_str(self) -> &'static str {
        match self {
            NotReplayable::TooLarge => "too_large",
            NotReplayable::MemoryLimit => "memory_limit",
            NotReplayable::BodyError => "body_error",
        }
    }
}

impl fmt::Display for NotReplayable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotReplayable::TooLarge => "request body larger than the replay limit",
            NotReplayable::MemoryLimit => "replay memory of the requests in flight exhausted",
            NotReplayable::BodyError => "request body failed",
        })
    }
}

impl StdError for NotReplayable {}

/// An error a [`ReplayBody`](crate::ReplayBody) yields itself (other errors come from the original body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayBodyError {
    pub(super) taken_over: bool,
}

impl ReplayBodyError {
    /// A newer copy of the body took over the stream; this one is stale.
    pub fn is_taken_over(&self) -> bool {
        self.taken_over
    }

    /// Data this copy still had to send was discarded after a cap was reached, or the
    /// original body failed.
    pub fn is_discarded(&self) -> bool {
        !self.taken_over
    }
}

impl fmt::Display for ReplayBodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.taken_over {
            "request body taken over by a newer attempt"
        } else {
            "request body replay data discarded"
        })
    }
}

impl StdError for ReplayBodyError {}

/// Bytes held against a [`ReplayMemory`], released on drop.
pub(super) struct Reservation {
    pub(super) memory: Option<ReplayMemory>,
    pub(super) bytes: usize,
}

impl Reservation {
    pub(super) fn none() -> Reservation {
        Reservation {
            memory: None,
            bytes: 0,
        }
    }

    pub(super) fn grow_to(&mut self, total: usize) -> bool {
        if total <= self.bytes {
            return true;
        }
        if let Some(memory) = &self.memory
            && !memory.try_reserve(total - self.bytes)
        {
            return false;
        }
        self.bytes = total;
        true
    }

    pub(super) fn release_all(&mut self) {
        if let Some(memory) = &self.memory {
            memory.release(self.bytes);
        }
        self.bytes = 0;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release_all();
    }
}
