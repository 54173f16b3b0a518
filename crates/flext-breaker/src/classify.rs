//! [`BreakerClassifier`]: what counts against a server's health.

use std::error::Error as StdError;
use std::time::SystemTime;

use flext_core::{
    Classify, FailureKind, HttpClassifier, Outcome, TransportError, classify_error_chain,
};
use http::{HeaderMap, StatusCode};

/// The breaker's default classifier: it counts what says the *server* is unwell.
///
/// - 500, 502, 503 and 504 are failures (with the `Retry-After` of a 503 read);
/// - every error instead of a response is a failure (connect failures, timeouts, resets,
///   and unknown errors, as resilience4j and Polly count every exception), except a request
///   the server's application certainly never saw ([`FailureKind::NeverSent`]: an HTTP/2
///   `REFUSED_STREAM`, a stream a graceful GOAWAY excluded): that is the server closing a
///   connection or shedding a stream, not a sign of ill health, and it is
///   [`Outcome::Ignored`]. Counting it would open the circuit on every graceful restart of an
///   HTTP/2 server, which refuses many streams at once; retry resends such requests anyway;
/// - every other status is a success, 4xx included: 408 and 429 are the client's or the
///   quota's problem, not a sick server, so unlike [`HttpClassifier`] (which retry uses) they
///   do not trip the breaker. A `Retry-After` on a 429 still makes the next open time at least
///   that long (see [`BreakerConfig::respect_retry_after`](crate::BreakerConfig::respect_retry_after)).
///
/// Any other [`Classify`] can be used instead with
/// [`Builder::classifier`](crate::Builder::classifier); [`Outcome::Ignored`] is neither
/// counted nor a probe's verdict.
///
/// ```
/// use flext_breaker::BreakerClassifier;
/// use flext_core::{Classify, Outcome};
/// use http::{HeaderMap, StatusCode};
///
/// let c = BreakerClassifier::new();
/// let h = HeaderMap::new();
/// assert!(c.classify_response(StatusCode::BAD_GATEWAY, &h).failure().is_some());
/// assert_eq!(c.classify_response(StatusCode::TOO_MANY_REQUESTS, &h), Outcome::Success);
/// assert_eq!(c.classify_response(StatusCode::REQUEST_TIMEOUT, &h), Outcome::Success);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct BreakerClassifier {
    http: HttpClassifier,
}

impl BreakerClassifier {
    /// The classifier, reading `Retry-After` dates against the system clock.
    pub const fn new() -> BreakerClassifier {
        BreakerClassifier {
            http: HttpClassifier::new(),
        }
    }

    /// The classifier reading `Retry-After` dates against another clock (for tests).
    pub const fn with_clock(now: fn() -> SystemTime) -> BreakerClassifier {
        BreakerClassifier {
            http: HttpClassifier::with_clock(now),
        }
    }

    /// Whether the classifier counts `status` as a failure.
    #[inline]
    pub fn is_failure_status(status: StatusCode) -> bool {
        matches!(status.as_u16(), 500 | 502 | 503 | 504)
    }
}

impl Classify for BreakerClassifier {
    #[inline]
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Outcome {
        if BreakerClassifier::is_failure_status(status) {
            self.http.classify_response(status, headers)
        } else {
            Outcome::Success
        }
    }

    fn classify_error(&self, error: &(dyn StdError + 'static)) -> Outcome {
        let failure = classify_error_chain(error);
        if failure.kind() == FailureKind::NeverSent {
            return Outcome::Ignored;
        }
        // A connection the server was closing gracefully (it had sent a GOAWAY): a restart,
        // not ill health, even when responses were lost with it.
        if TransportError::find(error).is_some_and(TransportError::is_during_goaway) {
            return Outcome::Ignored;
        }
        Outcome::Failure(failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flext_core::{BoxError, TransportErrorKind};
    use std::time::Duration;

    #[test]
    fn server_faults_fail_client_faults_do_not() {
        let c = BreakerClassifier::new();
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        for s in [500, 502, 503, 504] {
            let status = StatusCode::from_u16(s).unwrap();
            let f = *c.classify_response(status, &h).failure().unwrap();
            assert_eq!(f.kind(), FailureKind::Status(status));
            assert_eq!(f.retry_after(), Some(Duration::from_secs(7)));
        }
        for s in [200, 204, 301, 400, 401, 404, 408, 409, 429, 501, 505] {
            let status = StatusCode::from_u16(s).unwrap();
            assert_eq!(c.classify_response(status, &h), Outcome::Success, "{s}");
        }
        let connect: BoxError = TransportError::connect("refused").into();
        assert_eq!(
            c.classify_error(&*connect).failure().unwrap().kind(),
            FailureKind::Connect
        );
        let other: BoxError = "odd".into();
        assert!(c.classify_error(&*other).failure().is_some());
    }

    /// A reset on a connection the server was closing gracefully is a restart, not ill
    /// health: ignored, while the same reset elsewhere counts.
    #[test]
    fn failures_during_a_graceful_goaway_are_ignored() {
        let c = BreakerClassifier::new();
        let reset =
            || TransportError::new(TransportErrorKind::Reset, flext_core::Sent::Maybe, None);
        let during: BoxError = reset().during_goaway().into();
        assert_eq!(c.classify_error(&*during), Outcome::Ignored);
        let plain: BoxError = reset().into();
        assert!(c.classify_error(&*plain).failure().is_some());
    }

    /// Regression (issue 11, graceful restart under load): streams refused by a graceful
    /// GOAWAY or `REFUSED_STREAM` were counted, so a server restarting gracefully opened the
    /// circuit and idempotent requests failed with `circuit_open`.
    #[test]
    fn requests_the_server_never_saw_are_ignored() {
        let c = BreakerClassifier::new();
        let refused: BoxError = TransportError::refused(None).into();
        assert_eq!(c.classify_error(&*refused), Outcome::Ignored);
        // Never sent, but because no connection could be made: the server is down.
        let connect: BoxError = TransportError::connect("refused").into();
        assert_eq!(
            c.classify_error(&*connect).failure().unwrap().sent(),
            flext_core::Sent::No
        );
    }
}
