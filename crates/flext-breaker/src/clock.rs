//! Time, injectable: [`Clock`], [`TokioClock`] (the default) and [`ManualClock`] (for tests).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// A source of monotonic time for the breakers.
///
/// The default, [`TokioClock`], reads tokio's [`Instant`], so the breaker follows tokio's paused
/// clock in tests. [`ManualClock`] moves only when told to, which is the reliable tool when a
/// test also does real I/O (a paused tokio clock jumps ahead whenever the runtime waits on a
/// socket).
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The default clock: [`tokio::time::Instant::now`].
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
    base: Instant,
}

#[derive(Clone)]
enum Source {
    // The default, called directly rather than through a vtable: it is read on every call.
    Tokio,
    Custom(Arc<dyn Clock>),
}

impl Ticks {
    pub(crate) fn tokio() -> Ticks {
        Ticks {
            source: Source::Tokio,
            base: Instant::now(),
        }
    }

    pub(crate) fn new(clock: Arc<dyn Clock>) -> Ticks {
        let base = clock.now();
        Ticks {
            source: Source::Custom(clock),
            base,
        }
    }

    /// Nanoseconds since the origin.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        let now = match &self.source {
            Source::Tokio => Instant::now(),
            Source::Custom(clock) => clock.now(),
        };
        let d = now.saturating_duration_since(self.base);
        // `as_secs * 1e9 + subsec` is cheaper than `as_nanos` (no u128) and overflows only
        // after 584 years.
        d.as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(d.subsec_nanos()))
    }
}

impl fmt::Debug for Ticks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match self.source {
            Source::Tokio => "tokio",
            Source::Custom(_) => "custom",
        };
        f.debug_struct("Ticks")
            .field("source", &source)
            .field("base", &self.base)
            .finish()
    }
}

/// A duration as nanoseconds, saturating.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

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
