//! [`Watch`]: whether a cached token is still before its refresh point, known on the warm path
//! without reading tokio's clock.
//!
//! Reading tokio's clock costs a `clock_gettime(CLOCK_MONOTONIC)` (about 25-30 ns on a VM)
//! per request. Instead, a token's refresh point is registered once with tokio's timer, whose
//! waker marks the token due; until then, the warm path reads a flag and the kernel's coarse
//! clock, and only a token marked due (or close to its refresh point) reads tokio's clock,
//! which stays the authority:
//!
//! - tokio's timer follows tokio's clock, so a paused clock moved past the refresh point marks
//!   the token due before `tokio::time::advance` returns: the timer driver wakes the timer's
//!   waker while it processes the new time, before the task that advanced runs again;
//! - the coarse clock (`CLOCK_MONOTONIC_COARSE`, a kernel tick behind, a fifth of the cost)
//!   bounds the flag by real time, so a timer that fires late (a busy or blocked runtime) can
//!   never let a token be used past its refresh point, let alone its expiry;
//! - a runtime that shuts down fires every timer, and a token cached without a runtime to
//!   register with is never marked fresh: either way the warm path reads tokio's clock.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use flext_core::coarse;
use tokio::time::{Instant, Sleep};

/// The token may be used without a clock read, until the coarse deadline.
const FRESH: u8 = 0;
/// Being registered with the timer.
const ARMING: u8 = 1;
/// The refresh point may have passed: read tokio's clock.
const DUE: u8 = 2;

/// How long before the refresh point the coarse deadline falls: more than the coarse clock
/// can lag behind the precise one (a tick, 1-10 ms; a few ticks when a VM's timekeeping CPU is
/// descheduled).
const MARGIN: Duration = Duration::from_secs(1);

/// The fresh flag of one cached token, its coarse deadline, and its registration with tokio's
/// timer.
pub(crate) struct Watch {
    state: AtomicU8,
    /// The coarse clock's reading (coarsetime's 32.32 fixed-point seconds) at which the flag
    /// stops counting, `MARGIN` before the refresh point.
    until: u64,
    /// Kept so that the timer stays registered; dropped with the token, which deregisters it.
    sleep: Mutex<Option<Pin<Box<Sleep>>>>,
}

impl Watch {
    /// For a token without a refresh point: always fresh, no clock read.
    pub(crate) fn forever() -> Watch {
        Watch {
            state: AtomicU8::new(FRESH),
            until: u64::MAX,
            sleep: Mutex::new(None),
        }
    }

    /// For a token to refresh at `refresh_at`: due until [`arm`](Watch::arm) registers it.
    pub(crate) fn until(refresh_at: Instant) -> Watch {
        let ahead = refresh_at.saturating_duration_since(Instant::now());
        let until = if coarse::IS_MONOTONIC {
            coarse::now()
                .saturating_add(coarse::fixed(ahead))
                .saturating_sub(coarse::fixed(MARGIN))
        } else {
            0
        };
        Watch {
            state: AtomicU8::new(DUE),
            until,
            sleep: Mutex::new(None),
        }
    }

    /// Whether the token is known to be before its refresh point without reading tokio's
    /// clock. A relaxed load: the flag publishes nothing else.
    #[inline]
    pub(crate) fn is_fresh(&self) -> bool {
        self.state.load(Ordering::Relaxed) == FRESH
            && (self.until == u64::MAX || coarse::now() < self.until)
    }

    /// Registers the refresh point of the token `owner` watches with the current runtime's
    /// timer, and marks the token fresh. Without a runtime, or with a refresh point already
    /// past (or too close for the coarse clock), it stays due.
    pub(crate) fn arm<T: Watched>(owner: &Arc<T>, refresh_at: Instant) {
        let watch = owner.watch();
        if coarse::now() >= watch.until || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        watch.state.store(ARMING, Ordering::Relaxed);
        let waker = Waker::from(Arc::new(MarkDue(Arc::downgrade(owner))));
        let mut sleep = Box::pin(tokio::time::sleep_until(refresh_at));
        // Polled once, to register the timer; unconstrained, because a task out of its coop
        // budget would get `Pending` without the timer being registered.
        let mut cx = Context::from_waker(&waker);
        let mut registering = tokio::task::unconstrained(sleep.as_mut());
        if Pin::new(&mut registering).poll(&mut cx).is_ready() {
            watch.state.store(DUE, Ordering::Relaxed);
            return;
        }
        *watch.sleep.lock().unwrap_or_else(PoisonError::into_inner) = Some(sleep);
        // Unless the timer fired meanwhile, on another thread.
        let _ = watch
            .state
            .compare_exchange(ARMING, FRESH, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// What a [`Watch`] belongs to (a cache entry), reached from the timer's waker.
pub(crate) trait Watched: Send + Sync + 'static {
    fn watch(&self) -> &Watch;
}

/// The timer's waker: marks the token due.
struct MarkDue<T>(Weak<T>);

impl<T: Watched> Wake for MarkDue<T> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(owner) = self.0.upgrade() {
            owner.watch().state.store(DUE, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state.load(Ordering::Relaxed) {
            FRESH => "fresh",
            ARMING => "arming",
            _ => "due",
        };
        f.debug_struct("Watch").field("state", &state).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Owner(Watch);

    impl Watched for Owner {
        fn watch(&self) -> &Watch {
            &self.0
        }
    }

    #[test]
    fn without_a_runtime_it_stays_due() {
        let at = Instant::now() + Duration::from_secs(3600);
        let owner = Arc::new(Owner(Watch::until(at)));
        Watch::arm(&owner, at);
        assert!(!owner.0.is_fresh());
        assert!(Arc::new(Owner(Watch::forever())).0.is_fresh());
    }

    #[tokio::test(start_paused = true)]
    async fn the_paused_clock_marks_it_due_before_advance_returns() {
        let at = Instant::now() + Duration::from_secs(60);
        let owner = Arc::new(Owner(Watch::until(at)));
        Watch::arm(&owner, at);
        assert!(owner.0.is_fresh());
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(owner.0.is_fresh());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!owner.0.is_fresh());
    }

    #[test]
    fn a_runtime_that_shuts_down_marks_it_due() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let at = Instant::now() + Duration::from_secs(3600);
        let owner = Arc::new(Owner(Watch::until(at)));
        rt.block_on(async { Watch::arm(&owner, at) });
        assert!(owner.0.is_fresh());
        drop(rt);
        assert!(!owner.0.is_fresh());
    }

    #[tokio::test]
    async fn close_to_the_refresh_point_it_stays_due() {
        // Within the coarse clock's margin: the coarse deadline is already past.
        let at = Instant::now() + MARGIN / 2;
        let owner = Arc::new(Owner(Watch::until(at)));
        Watch::arm(&owner, at);
        assert!(!owner.0.is_fresh());
        // The real clock bounds the flag even when the timer has not fired.
        let at = Instant::now() + Duration::from_secs(3600);
        let early = Arc::new(Owner(Watch {
            until: coarse::now(),
            ..Watch::until(at)
        }));
        Watch::arm(&early, at);
        assert!(!early.0.is_fresh());
    }
}
