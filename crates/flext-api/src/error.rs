//! [`Error`]: one opaque error that never loses what happened.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use flext_breaker::CircuitOpen;
use flext_core::{BoxError, TransportError, TransportErrorKind, classify_error_chain};
use flext_retry::{RetryError, RetryInfo};
use http::{StatusCode, Uri};

/// The error of every fallible call of this crate.
///
/// It is opaque, like hyper's and reqwest's, but unlike reqwest-middleware's it keeps every
/// kind visible through the layers: ask it with the `is_*` methods, read [`status`](Self::status),
/// [`url`](Self::url) and [`retry_info`](Self::retry_info), and walk [`source`](StdError::source)
/// for the original cause (a `flext_core::TransportError`, a `flext_breaker::CircuitOpen`, an
/// `io::Error`, ...).
///
/// ```
/// use flext_api::Client;
///
/// let err = Client::builder().attempt_timeout(std::time::Duration::ZERO).build().unwrap_err();
/// assert!(err.is_builder());
/// assert_eq!(err.to_string(), "invalid setting `attempt_timeout`: must be above zero");
/// ```
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: Kind,
    url: Option<Uri>,
    source: Option<BoxError>,
}

#[derive(Debug)]
enum Kind {
    Builder { setting: &'static str, why: String },
    Request(String),
    Timeout(Duration),
    Send,
    Status(StatusCode),
    Decode(String),
    Body,
    TooLarge(u64),
}

impl Error {
    fn new(kind: Kind, source: Option<BoxError>) -> Error {
        Error {
            inner: Box::new(Inner {
                kind,
                url: None,
                source,
            }),
        }
    }

    pub(crate) fn builder(setting: &'static str, why: impl Into<String>) -> Error {
        Error::new(
            Kind::Builder {
                setting,
                why: why.into(),
            },
            None,
        )
    }

    pub(crate) fn builder_source(setting: &'static str, source: impl Into<BoxError>) -> Error {
        let source = source.into();
        Error::new(
            Kind::Builder {
                setting,
                why: source.to_string(),
            },
            Some(source),
        )
    }

    pub(crate) fn request(why: impl Into<String>) -> Error {
        Error::new(Kind::Request(why.into()), None)
    }

    /// An error from the layers or the pool while sending.
    pub(crate) fn send(source: BoxError) -> Error {
        // A total timeout travels up the stack as its own error type; keep its kind.
        if let Some(t) = source.downcast_ref::<crate::timeout::TotalTimeoutElapsed>() {
            return Error::new(Kind::Timeout(t.after), Some(source));
        }
        Error::new(Kind::Send, Some(source))
    }

    pub(crate) fn from_status(status: StatusCode) -> Error {
        Error::new(Kind::Status(status), None)
    }

    pub(crate) fn decode(why: impl Into<String>, source: Option<BoxError>) -> Error {
        Error::new(Kind::Decode(why.into()), source)
    }

    pub(crate) fn body(source: BoxError) -> Error {
        Error::new(Kind::Body, Some(source))
    }

    pub(crate) fn too_large(limit: u64) -> Error {
        Error::new(Kind::TooLarge(limit), None)
    }

    pub(crate) fn with_url(mut self, url: Uri) -> Error {
        self.inner.url = Some(url);
        self
    }

    fn chain(&self) -> impl Iterator<Item = &(dyn StdError + 'static)> {
        let mut cur = self
            .inner
            .source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static));
        std::iter::from_fn(move || {
            let e = cur?;
            cur = e.source();
            Some(e)
        })
    }

    fn find<T: StdError + 'static>(&self) -> Option<&T> {
        self.chain().find_map(|e| e.downcast_ref::<T>())
    }

    fn transport(&self) -> Option<&TransportError> {
        self.find::<TransportError>()
    }

    /// The URL of the request, when the error concerns one.
    pub fn url(&self) -> Option<&Uri> {
        self.inner.url.as_ref()
    }

    /// A setting was invalid: the client or a request could not be built.
    pub fn is_builder(&self) -> bool {
        matches!(self.inner.kind, Kind::Builder { .. })
    }

    /// The name of the invalid setting, for a builder error.
    pub fn setting(&self) -> Option<&'static str> {
        match self.inner.kind {
            Kind::Builder { setting, .. } => Some(setting),
            _ => None,
        }
    }

    /// The request itself was invalid (a URL, a header, a query), so nothing was sent.
    pub fn is_request(&self) -> bool {
        matches!(self.inner.kind, Kind::Request(_))
    }

    /// The call ran out of time: the total timeout, or the last attempt's timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self.inner.kind, Kind::Timeout(_))
            || self.transport().is_some_and(TransportError::is_timeout)
            || self.chain().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            })
    }

    /// No connection could be made (refused, unreachable, DNS, connect timeout, or a TLS
    /// handshake failure: see [`is_tls`](Self::is_tls)).
    pub fn is_connect(&self) -> bool {
        self.transport().is_some_and(|t| {
            matches!(
                t.kind(),
                TransportErrorKind::Connect | TransportErrorKind::Tls
            )
        })
    }

    /// The TLS handshake failed (an untrusted certificate, a protocol mismatch).
    pub fn is_tls(&self) -> bool {
        self.transport().is_some_and(TransportError::is_tls)
    }

    /// A circuit breaker refused the call: the origin failed too often recently.
    pub fn is_circuit_open(&self) -> bool {
        self.find::<CircuitOpen>().is_some()
    }

    /// For an open circuit, the time until the breaker lets a probe through (`None` when
    /// forced open, or for other errors).
    pub fn circuit_retry_after(&self) -> Option<Duration> {
        self.find::<CircuitOpen>()
            .and_then(CircuitOpen::retry_after)
    }

    /// The retry budget was empty, so a failure that could have been retried was returned.
    pub fn is_budget_exhausted(&self) -> bool {
        self.find::<RetryError>()
            .is_some_and(RetryError::is_budget_exhausted)
    }

    /// The error came from [`Response::error_for_status`](crate::Response::error_for_status).
    pub fn is_status(&self) -> bool {
        matches!(self.inner.kind, Kind::Status(_))
    }

    /// The status, for a status error.
    pub fn status(&self) -> Option<StatusCode> {
        match self.inner.kind {
            Kind::Status(s) => Some(s),
            _ => None,
        }
    }

    /// The response body could not be decoded (bad JSON, a wrong content type, bad UTF-8).
    pub fn is_decode(&self) -> bool {
        matches!(self.inner.kind, Kind::Decode(_))
    }

    /// Reading a body failed, or it was larger than the client's `max_response_body`.
    pub fn is_body(&self) -> bool {
        matches!(self.inner.kind, Kind::Body | Kind::TooLarge(_))
    }

    /// Credentials could not be obtained or attached (a token endpoint failed, credentials
    /// refused over plain http).
    pub fn is_auth(&self) -> bool {
        self.find::<flext_auth::Error>().is_some()
    }

    /// What retrying did before this error, when the request went through the retry layer.
    pub fn retry_info(&self) -> Option<&RetryInfo> {
        self.find::<RetryError>().map(RetryError::info)
    }

    /// A short lower-case name for the kind, for logs, metrics and the CLI: `builder`,
    /// `request`, `timeout`, `connect`, `tls`, `circuit_open`, `budget_exhausted`, `status`,
    /// `decode`, `body`, `auth`, or the transport kind (`reset`, `refused`, `acquire`,
    /// `protocol`), else `other`.
    pub fn kind_label(&self) -> &'static str {
        match &self.inner.kind {
            Kind::Builder { .. } => return "builder",
            Kind::Request(_) => return "request",
            Kind::Timeout(_) => return "timeout",
            Kind::Status(_) => return "status",
            Kind::Decode(_) => return "decode",
            Kind::Body | Kind::TooLarge(_) => return "body",
            Kind::Send => {}
        }
        if self.is_circuit_open() {
            "circuit_open"
        } else if self.is_auth() {
            "auth"
        } else if let Some(t) = self.transport() {
            t.kind().as_str()
        } else if self.is_budget_exhausted() {
            "budget_exhausted"
        } else if self.is_timeout() {
            "timeout"
        } else {
            match self.inner.source.as_deref() {
                Some(e) => match classify_error_chain(e).kind() {
                    flext_core::FailureKind::Connect => "connect",
                    flext_core::FailureKind::Reset => "reset",
                    flext_core::FailureKind::Timeout => "timeout",
                    _ => "other",
                },
                None => "other",
            }
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("flext_api::Error");
        d.field("kind", &self.inner.kind);
        if let Some(url) = &self.inner.url {
            d.field("url", &Redacted(url));
        }
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

/// A URL without user-info and query, which may hold secrets.
pub(crate) struct Redacted<'a>(pub(crate) &'a Uri);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let uri = self.0;
        if let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) {
            write!(f, "{scheme}://{host}")?;
            if let Some(port) = uri.port_u16() {
                write!(f, ":{port}")?;
            }
        }
        f.write_str(uri.path())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.kind {
            Kind::Builder { setting, why } => write!(f, "invalid setting `{setting}`: {why}")?,
            Kind::Request(why) => write!(f, "invalid request: {why}")?,
            Kind::Timeout(after) => write!(
                f,
                "request timed out after {}",
                crate::duration::format(*after)
            )?,
            Kind::Send => write!(f, "request failed ({})", self.kind_label())?,
            Kind::Status(s) => write!(f, "http status {s}")?,
            Kind::Decode(why) => write!(f, "cannot decode the response body: {why}")?,
            Kind::Body => f.write_str("cannot read the response body")?,
            Kind::TooLarge(limit) => {
                write!(f, "response body larger than the limit of {limit} bytes")?;
            }
        }
        if let Some(url) = &self.inner.url {
            write!(f, " for {}", Redacted(url))?;
        }
        Ok(())
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flext_core::Sent;

    #[test]
    fn kinds_are_read_through_the_chain() {
        let e = Error::send(
            TransportError::connect(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
                .into(),
        )
        .with_url(
            "https://user:pw@api.example.com/x?token=s3cret"
                .parse()
                .unwrap(),
        );
        assert!(e.is_connect() && !e.is_timeout() && !e.is_tls());
        assert_eq!(e.kind_label(), "connect");
        let text = format!("{e} {e:?}");
        assert!(!text.contains("s3cret") && !text.contains("pw"), "{text}");
        assert_eq!(
            e.to_string(),
            "request failed (connect) for https://api.example.com/x"
        );

        let t = Error::send(TransportError::timeout(Sent::Maybe).into());
        assert!(t.is_timeout());
        assert_eq!(t.kind_label(), "timeout");

        let s = Error::from_status(StatusCode::NOT_FOUND);
        assert_eq!(
            (s.is_status(), s.status()),
            (true, Some(StatusCode::NOT_FOUND))
        );
        assert_eq!(s.to_string(), "http status 404 Not Found");
    }
}
