//! Request extensions every layer reads: [`Attempt`] and [`Deadline`].

use std::time::Duration;

use tokio::time::Instant;

/// Which attempt of a logical request this is: 0 for the first try, then 1, 2, ...
///
/// The retry layer (and auth's 401 replay) set it on each attempt's copy of the request;
/// tracing reports it as `http.request.resend_count`. A request without it is attempt 0.
///
/// ```
/// use flext_core::Attempt;
///
/// let mut req = http::Request::new(());
/// assert_eq!(Attempt::of(&req), Attempt::FIRST);
/// req.extensions_mut().insert(Attempt::FIRST.next());
/// assert_eq!(Attempt::of(&req).number(), 1);
/// assert!(Attempt::of(&req).is_retry());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Attempt(u32);

impl Attempt {
    /// The first try.
    pub const FIRST: Attempt = Attempt(0);

    /// The attempt with this number (0 for the first try).
    pub const fn new(number: u32) -> Attempt {
        Attempt(number)
    }

    /// The attempt's number: 0 for the first try.
    pub const fn number(self) -> u32 {
        self.0
    }

    /// Whether this is a resend (number above 0).
    pub const fn is_retry(self) -> bool {
        self.0 > 0
    }

    /// The attempt after this one.
    pub const fn next(self) -> Attempt {
        Attempt(self.0.saturating_add(1))
    }

    /// The attempt a request carries; [`Attempt::FIRST`] when it carries none.
    pub fn of<B>(req: &http::Request<B>) -> Attempt {
        req.extensions()
            .get::<Attempt>()
            .copied()
            .unwrap_or_default()
    }
}

/// The instant by which a whole logical request must be done, retries and backoff included.
///
/// Set once by a total-timeout layer (or by the caller); the retry layer never sleeps past it
/// and does not start an attempt that cannot finish before it. It uses tokio's [`Instant`],
/// so it follows tokio's paused clock in tests.
///
/// ```
/// use std::time::Duration;
/// use flext_core::Deadline;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let deadline = Deadline::after(Duration::from_secs(2));
/// tokio::time::sleep(Duration::from_millis(500)).await;
/// assert_eq!(deadline.remaining(), Duration::from_millis(1500));
/// assert!(!deadline.is_expired());
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Deadline(Instant);

impl Deadline {
    /// A deadline at `instant`.
    pub const fn at(instant: Instant) -> Deadline {
        Deadline(instant)
    }

    /// A deadline `timeout` from now. A timeout too large to represent is capped at about
    /// thirty years.
    pub fn after(timeout: Duration) -> Deadline {
        let now = Instant::now();
        let far = Duration::from_secs(30 * 365 * 24 * 3600);
        Deadline(
            now.checked_add(timeout)
                .or_else(|| now.checked_add(far))
                .unwrap_or(now),
        )
    }

    /// The instant.
    pub const fn instant(self) -> Instant {
        self.0
    }

    /// Time left before the deadline; zero once it has passed.
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn is_expired(self) -> bool {
        self.remaining().is_zero()
    }

    /// The earlier of two deadlines (a per-request deadline within a client's total timeout).
    pub fn min(self, other: Deadline) -> Deadline {
        if other.0 < self.0 { other } else { self }
    }

    /// The deadline a request carries, if any.
    pub fn of<B>(req: &http::Request<B>) -> Option<Deadline> {
        req.extensions().get::<Deadline>().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn deadline_follows_the_paused_clock() {
        let d = Deadline::after(Duration::from_secs(1));
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(d.remaining(), Duration::from_millis(1));
        tokio::time::advance(Duration::from_millis(5)).await;
        assert!(d.is_expired());
        assert_eq!(d.remaining(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn huge_timeouts_do_not_panic() {
        let d = Deadline::after(Duration::MAX);
        assert!(d.remaining() > Duration::from_secs(365 * 24 * 3600));
        let near = Deadline::after(Duration::from_secs(1));
        assert_eq!(d.min(near), near);
        assert_eq!(near.min(d), near);
    }

    #[test]
    fn attempt_saturates() {
        assert_eq!(Attempt::new(u32::MAX).next().number(), u32::MAX);
        assert!(!Attempt::FIRST.is_retry());
    }
}
