//! Request extensions every layer reads: [`Attempt`] and [`Deadline`].

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::HeaderList;

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
        Deadline::after_from(Instant::now(), timeout)
    }

    /// A deadline `timeout` after `now`, capped as [`Deadline::after`] caps it: for a caller
    /// that has read the clock already.
    pub fn after_from(now: Instant, timeout: Duration) -> Deadline {
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

    /// Sets this deadline on `req`, unless the request carries an earlier one, and returns
    /// the deadline the request carries then.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flext_core::Deadline;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let mut req = http::Request::new(());
    /// let soon = Deadline::after(Duration::from_secs(1));
    /// assert_eq!(soon.set_on(&mut req), soon);
    /// // A later deadline leaves the request's own in place.
    /// assert_eq!(Deadline::after(Duration::from_secs(30)).set_on(&mut req), soon);
    /// assert_eq!(Deadline::of(&req), Some(soon));
    /// # }
    /// ```
    pub fn set_on<B>(self, req: &mut http::Request<B>) -> Deadline {
        let deadline = Deadline::of(req).map_or(self, |own| own.min(self));
        req.extensions_mut().insert(deadline);
        deadline
    }
}

/// A copy of a request's head (method, URI, version, headers, extensions), kept by the layers
/// that may send a request again (a retry, a 401 replay) once the request itself has gone to
/// the inner service.
///
/// Its fields rather than `http`'s `Parts`, which can only be had from a `Request` (a default
/// `Uri` made and dropped for every copy); the headers are kept as a [`HeaderList`], which
/// allocates once at most where a cloned map allocates twice. A [`Deadline`] that is the request's only
/// extension (as under a total timeout) is kept apart rather than in a cloned map: cloning
/// `http`'s extension map allocates three times (its box, its table, the value's box), and a
/// kept head is most often never used. Read the request's deadline with
/// [`deadline()`](RequestHead::deadline()), which looks in both places;
/// [`into_request`](RequestHead::into_request) puts it back.
///
/// ```
/// use flext_core::{Attempt, RequestHead};
///
/// let req = http::Request::put("https://api.example.com/items/7")
///     .header("content-type", "application/json")
///     .body("first")
///     .unwrap();
/// let head = RequestHead::of(&req);
/// let mut again = head.to_request("second");
/// again.extensions_mut().insert(Attempt::new(1));
/// assert_eq!(again.method(), "PUT");
/// assert_eq!(again.uri(), "https://api.example.com/items/7");
/// assert_eq!(again.headers()["content-type"], "application/json");
/// assert_eq!(*again.body(), "second");
///
/// // A deadline alone is kept apart, and comes back with the request.
/// let mut req = http::Request::get("https://api.example.com/").body(()).unwrap();
/// let deadline = flext_core::Deadline::after(std::time::Duration::from_secs(30));
/// req.extensions_mut().insert(deadline);
/// let head = RequestHead::of(&req);
/// assert!(head.extensions.is_empty());
/// assert_eq!(head.deadline(), Some(deadline));
/// assert_eq!(flext_core::Deadline::of(&head.to_request(())), Some(deadline));
/// ```
#[derive(Clone)]
pub struct RequestHead {
    /// The method.
    pub method: http::Method,
    /// The URI.
    pub uri: http::Uri,
    /// The HTTP version.
    pub version: http::Version,
    /// The headers.
    pub headers: HeaderList,
    /// The extensions, without a [`Deadline`] that was the only one (that one is in the
    /// `deadline` field).
    pub extensions: http::Extensions,
    /// A [`Deadline`] that was the request's only extension, kept out of `extensions`.
    /// [`into_request`](RequestHead::into_request) puts it back (the earlier of the two when
    /// `extensions` has one by then).
    pub deadline: Option<Deadline>,
}

impl RequestHead {
    /// A copy of `req`'s head.
    #[inline]
    pub fn of<B>(req: &http::Request<B>) -> RequestHead {
        RequestHead::copy(
            req.method(),
            req.uri(),
            req.version(),
            req.headers(),
            req.extensions(),
        )
    }

    /// A copy of the head in `parts`.
    #[inline]
    pub fn from_parts(parts: &http::request::Parts) -> RequestHead {
        RequestHead::copy(
            &parts.method,
            &parts.uri,
            parts.version,
            &parts.headers,
            &parts.extensions,
        )
    }

    #[inline(always)]
    fn copy(
        method: &http::Method,
        uri: &http::Uri,
        version: http::Version,
        headers: &http::HeaderMap,
        extensions: &http::Extensions,
    ) -> RequestHead {
        let (extensions, deadline) = match extensions.get::<Deadline>() {
            Some(deadline) if extensions.len() == 1 => (http::Extensions::new(), Some(*deadline)),
            _ => (extensions.clone(), None),
        };
        RequestHead {
            method: method.clone(),
            uri: uri.clone(),
            version,
            headers: HeaderList::of(headers),
            extensions,
            deadline,
        }
    }

    /// The request's [`Deadline`]: the earlier of the one in `extensions` and the one kept
    /// apart.
    #[inline]
    pub fn deadline(&self) -> Option<Deadline> {
        match (self.extensions.get::<Deadline>().copied(), self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A request with this head and `body`, the head kept for another.
    pub fn to_request<B>(&self, body: B) -> http::Request<B> {
        self.clone().into_request(body)
    }

    /// A request with this head and `body`.
    pub fn into_request<B>(self, body: B) -> http::Request<B> {
        let mut req = http::Request::new(body);
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        if !self.headers.is_empty() {
            *req.headers_mut() = self.headers.into_map();
        }
        *req.extensions_mut() = self.extensions;
        if let Some(deadline) = self.deadline {
            deadline.set_on(&mut req);
        }
        req
    }
}

/// The method, version and header names only: a URI's query or a caller's header may hold a
/// secret.
impl fmt::Debug for RequestHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestHead")
            .field("method", &self.method)
            .field("version", &self.version)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
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

    #[tokio::test(start_paused = true)]
    async fn a_head_keeps_a_lone_deadline_apart_and_gives_every_extension_back() {
        let deadline = Deadline::after(Duration::from_secs(5));
        let mut alone = http::Request::new(());
        alone.extensions_mut().insert(deadline);
        let head = RequestHead::of(&alone);
        assert!(head.extensions.is_empty());
        assert_eq!(head.deadline(), Some(deadline));
        let again = head.to_request(());
        assert_eq!(again.extensions().len(), 1);
        assert_eq!(Deadline::of(&again), Some(deadline));

        let mut mixed = http::Request::new(());
        mixed.extensions_mut().insert(deadline);
        mixed.extensions_mut().insert(Attempt::new(2));
        let head = RequestHead::of(&mixed);
        assert_eq!(head.extensions.len(), 2);
        assert_eq!(head.deadline(), Some(deadline));
        let again = head.into_request(());
        assert_eq!(Deadline::of(&again), Some(deadline));
        assert_eq!(Attempt::of(&again).number(), 2);

        // A deadline put into the head's extensions since: the earlier of the two counts.
        let sooner = Deadline::after(Duration::from_secs(1));
        let later = Deadline::after(Duration::from_secs(60));
        for put in [sooner, later] {
            let mut head = RequestHead::of(&alone);
            head.extensions.insert(put);
            let expected = put.min(deadline);
            assert_eq!(head.deadline(), Some(expected));
            assert_eq!(Deadline::of(&head.into_request(())), Some(expected));
        }

        let none = RequestHead::of(&http::Request::new(()));
        assert_eq!(none.deadline(), None);
        assert!(none.into_request(()).extensions().is_empty());
    }

    #[test]
    fn attempt_saturates() {
        assert_eq!(Attempt::new(u32::MAX).next().number(), u32::MAX);
        assert!(!Attempt::FIRST.is_retry());
    }
}
