//! Classification: sorting a response head or an error into [`Outcome`]s that retry,
//! breaker and trace all read the same way.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};

use crate::error::{Rejected, Sent, TransportError, TransportErrorKind};
use crate::retry_after::retry_after;

/// What one attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The attempt worked.
    Success,
    /// The attempt failed; retry may resend it, a breaker counts it.
    Failure(Failure),
    /// Neither: not counted by a breaker and never retried (a user classifier's choice, for
    /// example for a cancelled call).
    Ignored,
}

impl Outcome {
    /// Whether this is a success.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }

    /// The failure, if this is one.
    #[inline]
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Outcome::Failure(f) => Some(f),
            _ => None,
        }
    }
}

/// The named kinds of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The server answered with a status that counts as a failure other than 429: by default
    /// 408, 500, 502, 503 and 504.
    Status(StatusCode),
    /// The server asked the client to slow down: 429 Too Many Requests.
    Throttled(StatusCode),
    /// The attempt timed out.
    Timeout,
    /// No connection could be made (refused, unreachable, DNS, TLS handshake).
    Connect,
    /// The connection or stream broke after the request may have been sent.
    Reset,
    /// The request certainly never reached the server's application (refused stream, GOAWAY,
    /// a pooled connection found closed before writing).
    NeverSent,
    /// A layer of this client refused the request before sending it (an open circuit); the
    /// reason is a short label such as `circuit_open`. See [`Rejected`](crate::Rejected).
    Rejected(&'static str),
    /// Anything else.
    Other,
}

/// A failed attempt: its kind, whether the request was sent, and the server's `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    kind: FailureKind,
    sent: Sent,
    retry_after: Option<Duration>,
}

impl Failure {
    /// A failure of the given kind.
    pub fn new(kind: FailureKind, sent: Sent) -> Failure {
        Failure {
            kind,
            sent,
            retry_after: None,
        }
    }

    /// With the wait the server asked for.
    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Failure {
        self.retry_after = retry_after;
        self
    }

    /// The kind.
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// Whether the request reached the server. A response always means [`Sent::Yes`].
    pub fn sent(&self) -> Sent {
        self.sent
    }

    /// Whether the request certainly did not reach the server: safe to resend for any method.
    pub fn is_never_sent(&self) -> bool {
        self.sent == Sent::No
    }

    /// The status, when the failure is a response.
    pub fn status(&self) -> Option<StatusCode> {
        match self.kind {
            FailureKind::Status(s) | FailureKind::Throttled(s) => Some(s),
            _ => None,
        }
    }

    /// How long the server asked the client to wait (`Retry-After`), if it did.
    #[inline]
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether this kind is usually transient, so that an idempotent request may be resent:
    /// every failing status, timeouts, resets, connect failures and never-sent requests.
    /// [`FailureKind::Other`] is not.
    pub fn is_transient(&self) -> bool {
        !matches!(self.kind, FailureKind::Other) || self.sent == Sent::No
    }

    /// A short lower-case label: the status code as text for a response (`"503"`), else
    /// `timeout`, `connect`, `reset`, `never_sent`, a rejection's reason (`circuit_open`) or
    /// `other`. OpenTelemetry's `error.type`
    /// uses the same values.
    pub fn label(&self) -> &str {
        match &self.kind {
            FailureKind::Status(s) | FailureKind::Throttled(s) => s.as_str(),
            FailureKind::Timeout => "timeout",
            FailureKind::Connect => "connect",
            FailureKind::Reset => "reset",
            FailureKind::NeverSent => "never_sent",
            FailureKind::Rejected(reason) => reason,
            FailureKind::Other => "other",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FailureKind::Status(s) => write!(f, "status {}", s.as_u16()),
            FailureKind::Throttled(s) => write!(f, "throttled ({})", s.as_u16()),
            _ => f.write_str(self.label()),
        }
    }
}

/// Sorts attempts into [`Outcome`]s.
///
/// Implementations must be cheap: the method runs once per attempt on the hot path. The
/// default is [`HttpClassifier`].
pub trait Classify: Clone + Send + Sync + 'static {
    /// Classifies a response from its status and headers (the body is not read).
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Outcome;

    /// Classifies an error returned instead of a response.
    fn classify_error(&self, error: &(dyn StdError + 'static)) -> Outcome;
}

/// The default HTTP classifier.
///
/// Responses:
/// - 408 (the server timed out waiting for the request), 500 (a bug or a transient fault),
///   502, 503 and 504 (a gateway or the server is overloaded or restarting) are
///   [`FailureKind::Status`] failures;
/// - 429 is a [`FailureKind::Throttled`] failure;
/// - `Retry-After` on any failing status is read (relative to the classifier's clock);
/// - every other status, 501 and 505 included (they will not get better on retry), and all
///   4xx but 408 and 429 (the request itself is wrong), is a [`Outcome::Success`] as far as
///   transport health goes.
///
/// Errors: a [`Rejected`] anywhere in the chain is a [`FailureKind::Rejected`], never sent,
/// with its `retry_after`; else a [`TransportError`] in the chain gives its kind and sent flag; else a
/// [`std::io::Error`] in the chain is read by its kind (refused and not-connected are connect
/// failures, not sent; reset, aborted and broken pipe are resets; timed-out is a timeout);
/// else the error is [`FailureKind::Other`] and may have been sent.
#[derive(Clone, Copy)]
pub struct HttpClassifier {
    now: fn() -> SystemTime,
}

impl HttpClassifier {
    /// A classifier reading `Retry-After` dates against the system clock.
    pub const fn new() -> HttpClassifier {
        HttpClassifier {
            now: SystemTime::now,
        }
    }

    /// A classifier reading `Retry-After` dates against another clock (for tests).
    pub const fn with_clock(now: fn() -> SystemTime) -> HttpClassifier {
        HttpClassifier { now }
    }

    /// Whether the default classifier counts `status` as a failure.
    pub fn is_failure_status(status: StatusCode) -> bool {
        matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
    }
}

impl Default for HttpClassifier {
    fn default() -> HttpClassifier {
        HttpClassifier::new()
    }
}

impl fmt::Debug for HttpClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClassifier").finish_non_exhaustive()
    }
}

impl Classify for HttpClassifier {
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Outcome {
        if !HttpClassifier::is_failure_status(status) {
            return Outcome::Success;
        }
        let kind = if status == StatusCode::TOO_MANY_REQUESTS {
            FailureKind::Throttled(status)
        } else {
            FailureKind::Status(status)
        };
        let wait = if headers.contains_key(http::header::RETRY_AFTER) {
            retry_after(headers, (self.now)())
        } else {
            None
        };
        Outcome::Failure(Failure::new(kind, Sent::Yes).with_retry_after(wait))
    }

    fn classify_error(&self, error: &(dyn StdError + 'static)) -> Outcome {
        Outcome::Failure(classify_error_chain(error))
    }
}

/// The failure an error stands for, read as [`HttpClassifier`] does. Other classifiers can
/// call it for the error half of their work.
pub fn classify_error_chain(error: &(dyn StdError + 'static)) -> Failure {
    if let Some(r) = Rejected::find(error) {
        return Failure::new(FailureKind::Rejected(r.reason()), Sent::No)
            .with_retry_after(r.retry_after());
    }
    if let Some(t) = TransportError::find(error) {
        let kind = match t.kind() {
            TransportErrorKind::Connect | TransportErrorKind::Tls => FailureKind::Connect,
            TransportErrorKind::Timeout | TransportErrorKind::Acquire => FailureKind::Timeout,
            TransportErrorKind::Reset => FailureKind::Reset,
            TransportErrorKind::Refused => FailureKind::NeverSent,
            TransportErrorKind::Protocol | TransportErrorKind::Other => FailureKind::Other,
            #[allow(unreachable_patterns)]
            _ => FailureKind::Other,
        };
        return Failure::new(kind, t.sent());
    }
    let mut cur = Some(error);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            use io::ErrorKind as K;
            let (kind, sent) = match io.kind() {
                K::ConnectionRefused | K::NotConnected | K::AddrNotAvailable => {
                    (FailureKind::Connect, Sent::No)
                }
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                    (FailureKind::Reset, Sent::Maybe)
                }
                K::TimedOut => (FailureKind::Timeout, Sent::Maybe),
                _ => (FailureKind::Other, Sent::Maybe),
            };
            return Failure::new(kind, sent);
        }
        cur = e.source();
    }
    Failure::new(FailureKind::Other, Sent::Maybe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::BoxError;
    use std::time::UNIX_EPOCH;

    fn fixed() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(784_111_777)
    }

    fn classify(status: u16, retry_after: Option<&'static str>) -> Outcome {
        let mut h = HeaderMap::new();
        if let Some(v) = retry_after {
            h.insert(http::header::RETRY_AFTER, http::HeaderValue::from_static(v));
        }
        HttpClassifier::with_clock(fixed)
            .classify_response(StatusCode::from_u16(status).unwrap(), &h)
    }

    #[test]
    fn default_failure_statuses() {
        for s in [408, 500, 502, 503, 504] {
            let o = classify(s, None);
            let f = o.failure().unwrap();
            assert_eq!(
                f.kind(),
                FailureKind::Status(StatusCode::from_u16(s).unwrap())
            );
            assert_eq!(f.sent(), Sent::Yes);
            assert_eq!(f.label(), s.to_string());
            assert!(f.is_transient());
        }
        let t = classify(429, Some("3"));
        let f = t.failure().unwrap();
        assert_eq!(
            f.kind(),
            FailureKind::Throttled(StatusCode::TOO_MANY_REQUESTS)
        );
        assert_eq!(f.retry_after(), Some(Duration::from_secs(3)));
        for s in [
            200, 201, 204, 301, 304, 400, 401, 403, 404, 409, 422, 501, 505,
        ] {
            assert_eq!(classify(s, None), Outcome::Success, "{s}");
        }
    }

    #[test]
    fn retry_after_date_uses_the_clock() {
        let o = classify(503, Some("Sun, 06 Nov 1994 08:50:37 GMT"));
        assert_eq!(
            o.failure().unwrap().retry_after(),
            Some(Duration::from_secs(60))
        );
        let bad = classify(503, Some("later"));
        assert_eq!(bad.failure().unwrap().retry_after(), None);
    }

    #[test]
    fn errors_by_kind() {
        let c = HttpClassifier::new();
        let refused: BoxError = TransportError::refused(None).into();
        let f = *c.classify_error(&*refused).failure().unwrap();
        assert_eq!((f.kind(), f.sent()), (FailureKind::NeverSent, Sent::No));
        assert_eq!(f.label(), "never_sent");

        let io: BoxError = io::Error::from(io::ErrorKind::ConnectionRefused).into();
        let f = *c.classify_error(&*io).failure().unwrap();
        assert_eq!((f.kind(), f.sent()), (FailureKind::Connect, Sent::No));

        let reset: BoxError = io::Error::from(io::ErrorKind::ConnectionReset).into();
        assert_eq!(
            c.classify_error(&*reset).failure().unwrap().kind(),
            FailureKind::Reset
        );

        let other: BoxError = "something".into();
        let f = *c.classify_error(&*other).failure().unwrap();
        assert_eq!((f.kind(), f.sent()), (FailureKind::Other, Sent::Maybe));
        assert!(!f.is_transient());

        let open: BoxError = Rejected::new("circuit_open", Some(Duration::from_secs(4))).into();
        let f = *c.classify_error(&*open).failure().unwrap();
        assert_eq!(
            (f.kind(), f.sent()),
            (FailureKind::Rejected("circuit_open"), Sent::No)
        );
        assert_eq!(
            (f.label(), f.retry_after()),
            ("circuit_open", Some(Duration::from_secs(4)))
        );

        let timeout: BoxError = TransportError::timeout(Sent::Maybe).into();
        assert_eq!(
            c.classify_error(&*timeout).failure().unwrap().label(),
            "timeout"
        );
    }
}
