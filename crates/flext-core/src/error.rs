//! [`TransportError`]: what went wrong below HTTP, and whether the request was sent.

use std::error::Error as StdError;
use std::fmt;

/// A boxed error, as [`tower::BoxError`](https://docs.rs/tower/latest/tower/type.BoxError.html)
/// spells it.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// Whether a request reached the server before an error.
///
/// This is what makes retrying safe: a request that was certainly not sent can be sent again
/// whatever its method, while one that may have been processed is resent only when it is
/// idempotent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sent {
    /// Not a byte of the request left this process, or the server said it did not process it
    /// (HTTP/2 `REFUSED_STREAM`, a stream above a GOAWAY's last stream id).
    No,
    /// It may have been sent in part or in whole; the server may have acted on it.
    Maybe,
    /// It was sent in whole.
    Yes,
}

/// The kind of a [`TransportError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// A TCP connection could not be made (refused, unreachable, DNS failure, connect
    /// timeout).
    Connect,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// An attempt ran out of time.
    Timeout,
    /// The connection or the stream was reset, or closed before the response was complete.
    Reset,
    /// The server refused the request without processing it (HTTP/2 `REFUSED_STREAM`, or a
    /// GOAWAY that excluded its stream).
    Refused,
    /// No connection became available in time (a pool's acquire timeout or a full queue).
    Acquire,
    /// The peer broke the HTTP protocol (a malformed response).
    Protocol,
    /// Anything else below HTTP.
    Other,
}

impl TransportErrorKind {
    /// A short, stable, lower-case name (`connect`, `tls`, `timeout`, ...), usable as a metric
    /// label or an OpenTelemetry `error.type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            TransportErrorKind::Connect => "connect",
            TransportErrorKind::Tls => "tls",
            TransportErrorKind::Timeout => "timeout",
            TransportErrorKind::Reset => "reset",
            TransportErrorKind::Refused => "refused",
            TransportErrorKind::Acquire => "acquire",
            TransportErrorKind::Protocol => "protocol",
            TransportErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for TransportErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error below HTTP, produced by a connection pool (or an attempt timeout) and readable by
/// every layer above it through `tower::BoxError` by downcast, or by walking the source chain
/// with [`TransportError::find`].
///
/// ```
/// use flext_core::{BoxError, Sent, TransportError};
///
/// let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// let err: BoxError = TransportError::connect(io).into();
///
/// let transport = TransportError::find(&*err).unwrap();
/// assert!(transport.is_connect());
/// assert_eq!(transport.sent(), Sent::No);
/// assert_eq!(err.to_string(), "connect error");
/// ```
pub struct TransportError {
    kind: TransportErrorKind,
    sent: Sent,
    source: Option<BoxError>,
    during_goaway: bool,
}

impl TransportError {
    /// An error of any kind, with whether the request was sent and an optional cause.
    pub fn new(kind: TransportErrorKind, sent: Sent, source: Option<BoxError>) -> TransportError {
        TransportError {
            kind,
            sent,
            source,
            during_goaway: false,
        }
    }

    /// Marks the error as having happened on a connection the server had already begun to
    /// close gracefully (an HTTP/2 GOAWAY): the server is restarting or shedding connections,
    /// not failing. A request on it may still have been processed ([`sent`](Self::sent) says
    /// so, and retry treats it as usual), but a circuit breaker need not count it against the
    /// server's health.
    ///
    /// ```
    /// use flext_core::{Sent, TransportError, TransportErrorKind};
    ///
    /// let err = TransportError::new(TransportErrorKind::Reset, Sent::Maybe, None).during_goaway();
    /// assert!(err.is_during_goaway() && err.is_reset());
    /// assert_eq!(
    ///     err.to_string(),
    ///     "connection reset (request may have been sent) while the server was closing the connection"
    /// );
    /// ```
    pub fn during_goaway(mut self) -> TransportError {
        self.during_goaway = true;
        self
    }

    /// Whether the error happened on a connection the server was closing gracefully; see
    /// [`during_goaway`](Self::during_goaway).
    pub fn is_during_goaway(&self) -> bool {
        self.during_goaway
    }

    /// A connection could not be made: the request was not sent.
    pub fn connect(source: impl Into<BoxError>) -> TransportError {
        TransportError::new(TransportErrorKind::Connect, Sent::No, Some(source.into()))
    }

    /// The TLS handshake failed: the request was not sent.
    pub fn tls(source: impl Into<BoxError>) -> TransportError {
        TransportError::new(TransportErrorKind::Tls, Sent::No, Some(source.into()))
    }

    /// An attempt timed out; `sent` says how far it got.
    pub fn timeout(sent: Sent) -> TransportError {
        TransportError::new(TransportErrorKind::Timeout, sent, None)
    }

    /// The server refused the request without processing it.
    pub fn refused(source: Option<BoxError>) -> TransportError {
        TransportError::new(TransportErrorKind::Refused, Sent::No, source)
    }

    /// The kind of failure.
    pub fn kind(&self) -> TransportErrorKind {
        self.kind
    }

    /// Whether the request reached the server.
    pub fn sent(&self) -> Sent {
        self.sent
    }

    /// Whether the request certainly did not reach the server, so that sending it again is
    /// safe for any method.
    pub fn is_never_sent(&self) -> bool {
        self.sent == Sent::No
    }

    /// A connection could not be made.
    pub fn is_connect(&self) -> bool {
        self.kind == TransportErrorKind::Connect
    }

    /// The TLS handshake failed.
    pub fn is_tls(&self) -> bool {
        self.kind == TransportErrorKind::Tls
    }

    /// An attempt timed out.
    pub fn is_timeout(&self) -> bool {
        self.kind == TransportErrorKind::Timeout
    }

    /// The connection or stream was reset or closed early.
    pub fn is_reset(&self) -> bool {
        self.kind == TransportErrorKind::Reset
    }

    /// The server refused the request without processing it.
    pub fn is_refused(&self) -> bool {
        self.kind == TransportErrorKind::Refused
    }

    /// No connection became available in time.
    pub fn is_acquire(&self) -> bool {
        self.kind == TransportErrorKind::Acquire
    }

    /// The peer broke the HTTP protocol.
    pub fn is_protocol(&self) -> bool {
        self.kind == TransportErrorKind::Protocol
    }

    /// The first `TransportError` in `err` or its chain of sources.
    pub fn find<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a TransportError> {
        let mut cur = Some(err);
        while let Some(e) = cur {
            if let Some(t) = e.downcast_ref::<TransportError>() {
                return Some(t);
            }
            cur = e.source();
        }
        None
    }
}

impl fmt::Debug for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TransportError");
        d.field("kind", &self.kind).field("sent", &self.sent);
        if self.during_goaway {
            d.field("during_goaway", &true);
        }
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            TransportErrorKind::Connect => "connect error",
            TransportErrorKind::Tls => "tls handshake error",
            TransportErrorKind::Timeout => "attempt timed out",
            TransportErrorKind::Reset => "connection reset",
            TransportErrorKind::Refused => "request refused by the server before processing",
            TransportErrorKind::Acquire => "no connection available in time",
            TransportErrorKind::Protocol => "http protocol error",
            TransportErrorKind::Other => "transport error",
        })?;
        match (self.kind, self.sent) {
            (
                TransportErrorKind::Connect | TransportErrorKind::Tls | TransportErrorKind::Refused,
                Sent::No,
            ) => Ok(()),
            (_, Sent::No) => f.write_str(" (request not sent)"),
            (_, Sent::Maybe) => f.write_str(" (request may have been sent)"),
            (_, Sent::Yes) => Ok(()),
        }?;
        if self.during_goaway {
            f.write_str(" while the server was closing the connection")?;
        }
        Ok(())
    }
}

impl StdError for TransportError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// A request the client refused locally, without sending it: an open circuit breaker, a
/// load shedder, a rate limiter.
///
/// Layers that refuse calls put one in their error's source chain (the breaker's
/// `CircuitOpen` does), so that every other layer reads the refusal the same way: it was
/// never sent, it has a short reason for labels (`circuit_open`), and it may say when trying
/// again makes sense. [`classify_error_chain`](crate::classify_error_chain) turns it into
/// [`FailureKind::Rejected`](crate::FailureKind::Rejected); retry returns it at once (it does
/// not wait behind an open circuit) unless `retry_after` ends before its next backoff does.
///
/// ```
/// use std::time::Duration;
/// use flext_core::{BoxError, Rejected};
///
/// let err: BoxError = Rejected::new("circuit_open", Some(Duration::from_secs(3))).into();
/// let rejected = Rejected::find(&*err).unwrap();
/// assert_eq!(rejected.reason(), "circuit_open");
/// assert_eq!(rejected.retry_after(), Some(Duration::from_secs(3)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    reason: &'static str,
    retry_after: Option<std::time::Duration>,
}

impl Rejected {
    /// A refusal with a short lower-case reason (`circuit_open`, `overloaded`, ...) and when
    /// a new try may be let through, if known.
    pub const fn new(reason: &'static str, retry_after: Option<std::time::Duration>) -> Rejected {
        Rejected {
            reason,
            retry_after,
        }
    }

    /// The short reason, usable as a label.
    pub const fn reason(&self) -> &'static str {
        self.reason
    }

    /// How long until a new try may be let through, if known.
    pub const fn retry_after(&self) -> Option<std::time::Duration> {
        self.retry_after
    }

    /// The first `Rejected` in `err` or its chain of sources.
    pub fn find<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a Rejected> {
        let mut cur = Some(err);
        while let Some(e) = cur {
            if let Some(r) = e.downcast_ref::<Rejected>() {
                return Some(r);
            }
            cur = e.source();
        }
        None
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request rejected before sending ({})", self.reason)
    }
}

impl StdError for Rejected {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(TransportError);
    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }
    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn found_through_a_chain() {
        let err: BoxError = Box::new(Wrapper(TransportError::refused(None)));
        let t = TransportError::find(&*err).unwrap();
        assert!(t.is_refused() && t.is_never_sent());
        let plain: BoxError = "nope".into();
        assert!(TransportError::find(&*plain).is_none());
    }

    #[test]
    fn display_says_whether_sent() {
        assert_eq!(
            TransportError::timeout(Sent::Maybe).to_string(),
            "attempt timed out (request may have been sent)"
        );
        assert_eq!(
            TransportError::timeout(Sent::No).to_string(),
            "attempt timed out (request not sent)"
        );
        assert_eq!(
            TransportError::refused(None).to_string(),
            "request refused by the server before processing"
        );
        let e = TransportError::new(TransportErrorKind::Reset, Sent::Maybe, Some("eof".into()));
        assert_eq!(e.source().unwrap().to_string(), "eof");
    }
}
