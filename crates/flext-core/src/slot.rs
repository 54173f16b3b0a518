//! Per-thread slots: for state a layer keeps one copy of per thread rather than sharing one
//! between threads (which then write the same cache lines on every call).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// This thread's slot number: threads are numbered in the order they first ask, from 0.
/// Index a table of [`thread_slots`] entries with it modulo the table's length.
///
/// ```
/// let mine = flext_core::thread_slot();
/// assert_eq!(flext_core::thread_slot(), mine, "a thread keeps its number");
/// let other = std::thread::spawn(flext_core::thread_slot).join().unwrap();
/// assert_ne!(other, mine);
/// ```
pub fn thread_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SLOT.with(|slot| *slot)
}

/// How many slots a per-thread table has: twice the threads that can run at once (2 to
/// 128), so that the threads of a runtime sized to the machine each find one of their own.
///
/// ```
/// assert!((2..=128).contains(&flext_core::thread_slots()));
/// ```
pub fn thread_slots() -> usize {
    // Read once: `available_parallelism` reads the cgroup's CPU quota from files on Linux,
    // and a pool asks for every connection it opens.
    static SLOTS: OnceLock<usize> = OnceLock::new();
    *SLOTS.get_or_init(|| {
        std::thread::available_parallelism().map_or(8, |n| n.get().saturating_mul(2).clamp(2, 128))
    })
}
