//! Time, injectable: [`Clock`], [`TokioClock`] (the default) and [`ManualClock`] (for tests).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flext_core::coarse;
use tokio::time::Instant;

/// A source of monotonic time for the breakers.
///
/// Without one, a breaker reads the kernel's coarse monotonic clock (`CLOCK_MONOTONIC_COARSE`
/// on Linux: a tick's resolution, 1-4 ms, for a fifth of the cost of `Instant::now()`; a
/// slow-call rule still times calls with `Instant::now()`). [`TokioClock`] reads tokio's
/// [`Instant`], so the breaker follows tokio's paused clock in tests. [`ManualClock`] moves only
/// when told to, which is the reliable tool when a test also does real I/O (a paused tokio
/// clock jumps ahead whenever the runtime waits on a socket).
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// tokio's clock, [`tokio::time::Instant::now`]: give it to
/// [`Builder::clock`](crate::Builder::clock) to drive the breakers from tokio's paused clock
/// in tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

const MAX_OFFSET_NS: u64 = 1 << 62;

/// A clock that moves only when [`advance`](ManualClock::advance) is called. Clones share the
/// same time.
///
/// ```
/// use std::time::Duration;
/// use flext_breaker::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let start = clock.now();
/// clock.advance(Duration::from_secs(3));
/// assert_eq!(clock.now() - start, Duration::from_secs(3));
/// ```
#[derive(Clone)]
pub struct ManualClock {
    base: Instant,
    offset_ns: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at the current instant.
    pub fn new() -> ManualClock {
        ManualClock {
            base: Instant::now(),
            offset_ns: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves the clock forward by `by` (it stops about 146 years after it was made).
    pub fn advance(&self, by: Duration) {
        let ns = nanos(by);
        // Saturating, and bounded so that `base + offset` is always a valid `Instant`.
        let _ = self
            .offset_ns
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                Some(cur.saturating_add(ns).min(MAX_OFFSET_NS))
            });
    }

    /// How far the clock has moved since it was made.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.offset_ns.load(Ordering::Acquire))
    }
}

impl Default for ManualClock {
    fn default() -> ManualClock {
        ManualClock::new()
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("elapsed", &self.elapsed())
            .finish()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        let offset = self.elapsed();
        self.base.checked_add(offset).unwrap_or(self.base)
    }
}

/// A clock with a fixed origin, reading time as nanoseconds since then: what the atomics store.
#[derive(Clone)]
pub(crate) struct Ticks {
    source: Source,
}

#[derive(Clone)]
enum Source {
    // The default: the kernel's coarse monotonic clock (`CLOCK_MONOTONIC_COARSE` on Linux,
    // the cheapest monotonic source on the systems in `flext_core::coarse::IS_MONOTONIC`, `Instant` on
    // the others), as coarsetime's 32.32 fixed-point seconds.
    // Its resolution is the kernel's tick (1-4 ms), which the breaker's times (1 s buckets,
    // 30 s opens) do not notice; it costs a fifth of `Instant::now()` on a VM. A slow-call
    // rule times calls with `precise`, which reads `Instant::now()`.
    Coarse {
        base: u64,
        precise_base: std::time::Instant,
    },
    Custom {
        clock: Arc<dyn Clock>,
        base: Instant,
    },
}

impl Ticks {
    /// The default clock: coarse, not tokio's (see [`Source::Coarse`]).
    pub(crate) fn coarse() -> Ticks {
        Ticks {
            source: Source::Coarse {
                base: coarse::now(),
                precise_base: std::time::Instant::now(),
            },
        }
    }

    pub(crate) fn new(clock: Arc<dyn Clock>) -> Ticks {
        let base = clock.now();
        Ticks {
            source: Source::Custom { clock, base },
        }
    }

    /// Nanoseconds since the origin.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        match &self.source {
            // Where coarsetime reads the wall clock (other BSDs, illumos), which can step
            // back, the precise monotonic clock is used instead.
            Source::Coarse { .. } if !coarse::IS_MONOTONIC => self.precise(),
            Source::Coarse { base, .. } => coarse::to_nanos(coarse::now().saturating_sub(*base)),
            Source::Custom { clock, base } => since(clock.now(), *base),
        }
    }

    /// Nanoseconds since the origin, at full resolution: for timing a call against the
    /// slow-call rule. The same time base as [`now`](Ticks::now) for an injected clock.
    pub(crate) fn precise(&self) -> u64 {
        match &self.source {
            Source::Coarse { precise_base, .. } => nanos(precise_base.elapsed()),
            Source::Custom { clock, base } => since(clock.now(), *base),
        }
    }
}

#[inline]
fn since(now: Instant, base: Instant) -> u64 {
    nanos(now.saturating_duration_since(base))
}

impl fmt::Debug for Ticks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match self.source {
            Source::Coarse { .. } => "coarse",
            Source::Custom { .. } => "custom",
        };
        f.debug_struct("Ticks").field("source", &source).finish()
    }
}

/// A duration as nanoseconds, saturating (after 584 years). `as_secs * 1e9 + subsec` is
/// cheaper than `as_nanos` (no u128): it runs on every call.
#[inline]
pub(crate) fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_ticks_move_forward_with_real_time() {
        let ticks = Ticks::coarse();
        let (a, pa) = (ticks.now(), ticks.precise());
        std::thread::sleep(Duration::from_millis(30));
        let (b, pb) = (ticks.now(), ticks.precise());
        // The coarse clock moves by the sleep give or take a kernel tick (at most 10 ms).
        assert!(b >= a + 20_000_000, "coarse: {a} -> {b}");
        assert!(pb >= pa + 30_000_000, "precise: {pa} -> {pb}");
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new();
        let ticks = Ticks::new(Arc::new(clock.clone()));
        assert_eq!(ticks.now(), 0);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(ticks.now(), 1_500_000_000);
        clock.advance(Duration::MAX);
        assert!(ticks.now() > 1_500_000_000);
    }
}
