//! The sliding window of the failure-rate rule: a ring of atomic buckets, each stamped with
//! the epoch (bucket number since the clock's origin) it counts.

use std::sync::atomic::{AtomicU64, Ordering};

// One bucket is one `u64`: epoch tag (24 bits) | calls (20 bits) | failures (20 bits), so that
// rolling a bucket over to a new epoch and counting in it are the same single CAS.
const COUNT_BITS: u32 = 20;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const TAG_SHIFT: u32 = 2 * COUNT_BITS;
const TAG_MASK: u64 = (1 << (64 - TAG_SHIFT)) - 1;
const CALL: u64 = 1 << COUNT_BITS;
const FAILURE: u64 = 1;

#[inline]
fn tag_of(word: u64) -> u64 {
    word >> TAG_SHIFT
}

#[inline]
fn calls_of(word: u64) -> u64 {
    (word >> COUNT_BITS) & COUNT_MAX
}

#[inline]
fn failures_of(word: u64) -> u64 {
    word & COUNT_MAX
}

/// Whether epoch tag `a` is after `b`, modulo the tag width.
#[inline]
fn is_newer(a: u64, b: u64) -> bool {
    let ahead = a.wrapping_sub(b) & TAG_MASK;
    ahead != 0 && ahead < (TAG_MASK >> 1)
}

/// Calls and failures, in the window or since the breaker was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
}

/// A time-based sliding window of `buckets` buckets of `bucket_ns` each.
///
/// A bucket saturates at about a million calls; past that it stops counting, which keeps the
/// failure rate of that second as it was.
#[derive(Debug)]
pub(crate) struct Window {
    // A power of two at least `buckets` long, so the slot of an epoch is a mask, not a division.
    slots: Box<[AtomicU64]>,
    buckets: u64,
    bucket_ns: u64,
    // ceil(2^64 / bucket_ns): the epoch is a multiply and a shift, not a division.
    reciprocal: u64,
    // Counts of buckets overwritten by a newer epoch or cleared, for lifetime totals.
    retired: AtomicU64,
    retired_failures: AtomicU64,
}

impl Window {
    /// An empty window at `now_ns`.
    pub(crate) fn new(buckets: u32, bucket_ns: u64, now_ns: u64) -> Window {
        let len = buckets.max(1).next_power_of_two() as usize;
        let bucket_ns = bucket_ns.max(2);
        let window = Window {
            slots: (0..len).map(|_| AtomicU64::new(0)).collect(),
            buckets: u64::from(buckets.max(1)),
            bucket_ns,
            reciprocal: u64::MAX / bucket_ns + 1,
            retired: AtomicU64::new(0),
            retired_failures: AtomicU64::new(0),
        };
        window.clear(now_ns);
        window
    }

    /// An empty bucket stamped older than any epoch from `now_ns` on, so that it is neither
    /// counted nor mistaken for a newer one.
    fn empty(&self, now_ns: u64) -> u64 {
        let epoch = self.epoch(now_ns);
        (epoch.wrapping_sub(self.slots.len() as u64) & TAG_MASK) << TAG_SHIFT
    }

    /// `now_ns / bucket_ns`. The reciprocal's rounding makes the product at most one too
    /// large, which the multiply-back corrects.
    #[inline]
    fn epoch(&self, now_ns: u64) -> u64 {
        let q = ((u128::from(now_ns) * u128::from(self.reciprocal)) >> 64) as u64;
        match q.checked_mul(self.bucket_ns) {
            Some(p) if p <= now_ns => q,
            _ => q - 1,
        }
    }

    #[inline]
    fn slot(&self, epoch: u64) -> &AtomicU64 {
        // `slots.len()` is a power of two, so this is `epoch % len`.
        &self.slots[(epoch as usize) & (self.slots.len() - 1)]
    }

    /// Counts one call at `now_ns`.
    #[inline]
    pub(crate) fn record(&self, now_ns: u64, failure: bool) {
        let epoch = self.epoch(now_ns);
        let tag = epoch & TAG_MASK;
        let slot = self.slot(epoch);
        let add = CALL + if failure { FAILURE } else { 0 };
        let mut cur = slot.load(Ordering::Relaxed);
        loop {
            let next = if tag_of(cur) == tag {
                if calls_of(cur) == COUNT_MAX {
                    return;
                }
                cur + add
            } else if is_newer(tag_of(cur), tag) {
                // A late writer (its clock read before a slower thread's): its bucket is gone.
                return;
            } else {
                (tag << TAG_SHIFT) | add
            };
            match slot.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    if tag_of(cur) != tag {
                        self.retire(cur);
                    }
                    return;
                }
                Err(actual) => cur = actual,
            }
        }
    }

    fn retire(&self, word: u64) {
        if calls_of(word) > 0 {
            self.retired.fetch_add(calls_of(word), Ordering::Relaxed);
            self.retired_failures
                .fetch_add(failures_of(word), Ordering::Relaxed);
        }
    }

    /// The calls and failures of the buckets that cover `now_ns` and the `buckets - 1` before.
    pub(crate) fn totals(&self, now_ns: u64) -> Counts {
        let epoch = self.epoch(now_ns);
        let mut counts = Counts::default();
        for back in 0..self.buckets.min(epoch + 1) {
            let e = epoch - back;
            let word = self.slot(e).load(Ordering::Relaxed);
            // An epoch tag repeats every 2^24 buckets (194 days of 1 s buckets); an entry that
            // old and untouched is vanishingly unlikely to alias, and only skews one decision.
            if tag_of(word) == e & TAG_MASK {
                counts.calls += calls_of(word);
                counts.failures += failures_of(word);
            }
        }
        counts
    }

    /// Every call and failure recorded since the window was made.
    pub(crate) fn lifetime(&self) -> Counts {
        let mut counts = Counts {
            calls: self.retired.load(Ordering::Relaxed),
            failures: self.retired_failures.load(Ordering::Relaxed),
        };
        for slot in self.slots.iter() {
            let word = slot.load(Ordering::Relaxed);
            counts.calls += calls_of(word);
            counts.failures += failures_of(word);
        }
        counts
    }

    /// Empties the window at `now_ns` (the lifetime totals keep what it held).
    pub(crate) fn clear(&self, now_ns: u64) {
        let empty = self.empty(now_ns);
        for slot in self.slots.iter() {
            let word = slot.swap(empty, Ordering::Relaxed);
            self.retire(word);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn counts_slide_out_one_bucket_at_a_time() {
        let w = Window::new(10, S, 0);
        for i in 0..10 {
            w.record(i * S + 5, i % 2 == 0);
        }
        assert_eq!(
            w.totals(9 * S),
            Counts {
                calls: 10,
                failures: 5
            }
        );
        // At 10 s the bucket of second 0 (a failure) has left the window.
        assert_eq!(
            w.totals(10 * S),
            Counts {
                calls: 9,
                failures: 4
            }
        );
        assert_eq!(w.totals(19 * S), Counts::default());
        // Writing a new epoch over an old slot keeps the lifetime totals.
        w.record(20 * S, true);
        assert_eq!(
            w.lifetime(),
            Counts {
                calls: 11,
                failures: 6
            }
        );
        w.clear(20 * S);
        assert_eq!(w.totals(20 * S), Counts::default());
        assert_eq!(w.lifetime().calls, 11);
        w.record(20 * S, false);
        assert_eq!(w.totals(20 * S).calls, 1);
    }

    #[test]
    fn late_in_life_windows_count() {
        // Past 2^23 epochs a zeroed bucket would look newer than the present: `new` and
        // `clear` stamp empty buckets in the past instead.
        let now = (1u64 << 23) * 3 * S + 7;
        let w = Window::new(10, S, now);
        w.record(now, true);
        w.record(now + S, false);
        assert_eq!(
            w.totals(now + S),
            Counts {
                calls: 2,
                failures: 1
            }
        );
    }

    #[test]
    fn a_late_writer_does_not_overwrite_a_newer_bucket() {
        let w = Window::new(1, S, 0);
        w.record(5 * S, false);
        w.record(4 * S, true);
        assert_eq!(
            w.totals(5 * S),
            Counts {
                calls: 1,
                failures: 0
            }
        );
    }

    #[test]
    fn the_epoch_is_an_exact_division() {
        for d in [2, 3, 7, 1_000_000, 333_333_333, S, 10 * S, u64::MAX / 3] {
            let w = Window::new(1, d, 0);
            let mut rng = fastrand::Rng::with_seed(d);
            let mut samples = vec![0, 1, d - 1, d, d + 1, 2 * d - 1, u64::MAX - 1, u64::MAX];
            samples.extend((0..10_000).map(|_| rng.u64(..)));
            samples.extend((0..10_000).map(|_| rng.u64(..1 << 44)));
            for n in samples {
                assert_eq!(w.epoch(n), n / d, "{n} / {d}");
            }
        }
    }

    #[test]
    fn a_bucket_saturates_instead_of_overflowing() {
        let w = Window::new(1, S, 0);
        for _ in 0..(COUNT_MAX + 10) {
            w.record(0, false);
        }
        assert_eq!(w.totals(0).calls, COUNT_MAX);
        assert_eq!(w.totals(0).failures, 0);
    }

    #[test]
    fn concurrent_records_are_all_counted() {
        let w = std::sync::Arc::new(Window::new(10, S, 0));
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        // Cross a bucket boundary halfway through.
                        let now = if i < 5_000 { 0 } else { S };
                        w.record(now, t == 0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(
            w.totals(S),
            Counts {
                calls: 20_000,
                failures: 10_000
            }
        );
    }
}
