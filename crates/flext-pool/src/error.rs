//! [`Error`]: what the pool returns, always carrying a [`TransportError`].

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::time::Duration;

use flext_core::{BoxError, Origin, Sent, TransportError, TransportErrorKind};

/// An error from the pool or from a pooled connection.
///
/// It always carries a [`flext_core::TransportError`] as its [`source`](StdError::source),
/// with the kind of failure and whether the request was sent, so layers above find it with
/// [`TransportError::find`] through any number of boxes.
///
/// ```
/// use flext_core::{BoxError, TransportError};
/// # fn check(err: BoxError) {
/// if let Some(t) = TransportError::find(&*err) {
///     if t.is_never_sent() {
///         // safe to resend, whatever the method
///     }
/// }
/// # }
/// ```
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    context: Context,
    origin: Option<Origin>,
    transport: TransportError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    InvalidUri,
    Connect,
    AcquireTimeout(Duration),
    DeadlineWhileAcquiring(Duration),
    QueueFull(usize),
    Request,
    Body,
}

impl Error {
    fn new(context: Context, origin: Option<Origin>, transport: TransportError) -> Error {
        Error {
            inner: Box::new(Inner {
                context,
                origin,
                transport,
            }),
        }
    }

    pub(crate) fn invalid_uri(source: impl Into<BoxError>) -> Error {
        Error::new(
            Context::InvalidUri,
            None,
            TransportError::new(TransportErrorKind::Other, Sent::No, Some(source.into())),
        )
    }

    pub(crate) fn connect(origin: &Origin, transport: TransportError) -> Error {
        Error::new(Context::Connect, Some(origin.clone()), transport)
    }

    pub(crate) fn acquire_timeout(origin: &Origin, waited: Duration) -> Error {
        Error::new(
            Context::AcquireTimeout(waited),
            Some(origin.clone()),
            TransportError::new(TransportErrorKind::Acquire, Sent::No, None),
        )
    }

    /// The request's own deadline (flext-core's `Deadline`, a total timeout) passed while it
    /// waited for a connection: a timeout, never sent, not a pool shortage.
    pub(crate) fn deadline_while_acquiring(origin: &Origin, waited: Duration) -> Error {
        Error::new(
            Context::DeadlineWhileAcquiring(waited),
            Some(origin.clone()),
            TransportError::timeout(Sent::No),
        )
    }

    pub(crate) fn queue_full(origin: &Origin, max: usize) -> Error {
        Error::new(
            Context::QueueFull(max),
            Some(origin.clone()),
            TransportError::new(TransportErrorKind::Acquire, Sent::No, None),
        )
    }

    pub(crate) fn request(origin: &Origin, transport: TransportError) -> Error {
        Error::new(Context::Request, Some(origin.clone()), transport)
    }

    pub(crate) fn body(transport: TransportError) -> Error {
        Error::new(Context::Body, None, transport)
    }

    /// The transport error: kind, sent flag and cause.
    pub fn transport(&self) -> &TransportError {
        &self.inner.transport
    }

    /// The kind of failure.
    pub fn kind(&self) -> TransportErrorKind {
        self.inner.transport.kind()
    }

    /// Whether the request reached the server.
    pub fn sent(&self) -> Sent {
        self.inner.transport.sent()
    }

    /// Whether the request certainly did not reach the server: resending it is safe for any
    /// method.
    pub fn is_never_sent(&self) -> bool {
        self.inner.transport.is_never_sent()
    }

    /// The origin the request went to, when known.
    pub fn origin(&self) -> Option<&Origin> {
        self.inner.origin.as_ref()
    }

    /// No connection could be made (DNS, TCP, proxy, connect timeout, HTTP handshake).
    pub fn is_connect(&self) -> bool {
        self.kind() == TransportErrorKind::Connect
    }

    /// The TLS handshake failed (certificate, protocol).
    pub fn is_tls(&self) -> bool {
        self.kind() == TransportErrorKind::Tls
    }

    /// No connection became available in time, or the origin's queue was full.
    pub fn is_acquire(&self) -> bool {
        self.kind() == TransportErrorKind::Acquire
    }

    /// The server refused the request before processing it (HTTP/2 `REFUSED_STREAM` or
    /// GOAWAY).
    pub fn is_refused(&self) -> bool {
        self.kind() == TransportErrorKind::Refused
    }

    /// The connection or stream closed or was reset.
    pub fn is_reset(&self) -> bool {
        self.kind() == TransportErrorKind::Reset
    }

    /// The peer broke the HTTP protocol.
    pub fn is_protocol(&self) -> bool {
        self.kind() == TransportErrorKind::Protocol
    }

    /// A timeout below the pool's own: an HTTP/2 keep-alive PING went unanswered.
    pub fn is_timeout(&self) -> bool {
        self.kind() == TransportErrorKind::Timeout
    }

    /// The request's URI has no usable origin (relative, or a scheme other than http(s)).
    pub fn is_invalid_uri(&self) -> bool {
        self.inner.context == Context::InvalidUri
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("flext_pool::Error");
        d.field("context", &self.inner.context);
        if let Some(origin) = &self.inner.origin {
            d.field("origin", origin);
        }
        d.field("transport", &self.inner.transport).finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = OriginDisplay(self.inner.origin.as_ref());
        match self.inner.context {
            Context::InvalidUri => f.write_str("request uri has no http or https origin"),
            Context::Connect => write!(f, "could not connect to {origin}"),
            Context::AcquireTimeout(waited) => {
                write!(f, "no connection to {origin} available within {waited:?}")
            }
            Context::DeadlineWhileAcquiring(waited) => write!(
                f,
                "the request's deadline passed after {waited:?} waiting for a connection to {origin}"
            ),
            Context::QueueFull(max) => {
                write!(
                    f,
                    "{max} requests already wait for a connection to {origin}"
                )
            }
            Context::Request => write!(f, "request to {origin} failed"),
            Context::Body => f.write_str("response body failed"),
        }
    }
}

struct OriginDisplay<'a>(Option<&'a Origin>);

impl fmt::Display for OriginDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(o) => fmt::Display::fmt(o, f),
            None => f.write_str("the origin"),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.inner.transport)
    }
}

/// Sorts a connect failure into `Tls` or `Connect`; the request was not sent either way.
pub(crate) fn classify_connect(err: BoxError) -> TransportError {
    if chain_any(&*err, &|e| e.is::<rustls::Error>()) {
        TransportError::tls(err)
    } else {
        TransportError::connect(err)
    }
}

/// Sorts an error from sending a request or reading its response.
///
/// `sent_hint` is what is known without looking at the error: `No` while nothing could
/// have left (the message came back), `Maybe` otherwise.
pub(crate) fn classify_hyper(err: hyper::Error, sent_hint: Sent) -> TransportError {
    let (kind, sent) = kind_of(&err, sent_hint);
    TransportError::new(kind, sent, Some(Box::new(err)))
}

/// Sorts an error reading a response body: the request was sent, the server answered.
pub(crate) fn classify_body(err: hyper::Error) -> TransportError {
    let (kind, _) = kind_of(&err, Sent::Maybe);
    TransportError::new(kind, Sent::Yes, Some(Box::new(err)))
}

fn kind_of(err: &hyper::Error, sent_hint: Sent) -> (TransportErrorKind, Sent) {
    use TransportErrorKind as K;
    if sent_hint == Sent::No {
        return (K::Reset, Sent::No);
    }
    if let Some(h2) = find_h2(err) {
        return h2_kind(h2);
    }
    if err.is_closed() {
        // The connection's dispatcher was gone before it took the request.
        return (K::Reset, Sent::No);
    }
    if err.is_parse() || err.is_parse_status() {
        return (K::Protocol, Sent::Maybe);
    }
    if err.is_timeout() {
        return (K::Timeout, Sent::Maybe);
    }
    if err.is_user() {
        // The request's own body failed, or the request could not be encoded.
        return (K::Other, Sent::Maybe);
    }
    (K::Reset, Sent::Maybe)
}

/// Sorts an error from h2 (opening a stream, its response, or its body).
///
/// `sent_hint` is `No` when the stream was never opened, whatever the error says.
pub(crate) fn classify_h2(err: h2::Error, sent_hint: Sent) -> TransportError {
    let (mut kind, mut sent) = h2_kind(&err);
    if sent_hint == Sent::No {
        sent = Sent::No;
        if err.reason().is_none() && !err.is_io() {
            // h2 refused the request itself (a malformed header, stream ids used up).
            kind = TransportErrorKind::Other;
        }
    }
    TransportError::new(kind, sent, Some(Box::new(err)))
}

/// Sorts an error reading an HTTP/2 response body: the request was sent.
pub(crate) fn classify_h2_body(err: h2::Error) -> TransportError {
    let (kind, _) = h2_kind(&err);
    TransportError::new(kind, Sent::Yes, Some(Box::new(err)))
}

/// REFUSED_STREAM and a graceful GOAWAY that excluded the stream mean "not processed"
/// (RFC 9113 §8.7); any other HTTP/2 error may come after processing.
pub(crate) fn h2_kind(err: &h2::Error) -> (TransportErrorKind, Sent) {
    use TransportErrorKind as K;
    let reason = err.reason();
    if reason == Some(h2::Reason::REFUSED_STREAM) {
        return (K::Refused, Sent::No);
    }
    if err.is_go_away() && err.is_remote() && reason == Some(h2::Reason::NO_ERROR) {
        return (K::Refused, Sent::No);
    }
    match reason {
        Some(
            h2::Reason::PROTOCOL_ERROR
            | h2::Reason::COMPRESSION_ERROR
            | h2::Reason::FRAME_SIZE_ERROR
            | h2::Reason::FLOW_CONTROL_ERROR,
        ) => (K::Protocol, Sent::Maybe),
        _ => (K::Reset, Sent::Maybe),
    }
}

fn find_h2<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a h2::Error> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return Some(h2);
        }
        cur = e.source();
    }
    None
}

/// Whether `f` holds for an error in the chain, looking inside `io::Error`s too (whose
/// `source` skips the wrapped error itself).
fn chain_any(
    err: &(dyn StdError + 'static),
    f: &dyn Fn(&(dyn StdError + 'static)) -> bool,
) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if f(e) {
            return true;
        }
        if let Some(io) = e.downcast_ref::<io::Error>()
            && let Some(inner) = io.get_ref()
            && chain_any(inner, f)
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// An error the pool made up, as a cause for a [`TransportError`].
#[derive(Debug)]
pub(crate) struct Message(pub(crate) &'static str);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl StdError for Message {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_errors_are_found_inside_io_errors() {
        let io = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let boxed: BoxError = Box::new(io);
        assert!(classify_connect(boxed).is_tls());
        let refused: BoxError = Box::new(io::Error::from(io::ErrorKind::ConnectionRefused));
        let t = classify_connect(refused);
        assert!(t.is_connect() && t.is_never_sent());
    }

    #[test]
    fn h2_refusals_are_never_sent() {
        let refused = h2::Error::from(h2::Reason::REFUSED_STREAM);
        assert_eq!(h2_kind(&refused), (TransportErrorKind::Refused, Sent::No));
        let cancel = h2::Error::from(h2::Reason::CANCEL);
        assert_eq!(h2_kind(&cancel), (TransportErrorKind::Reset, Sent::Maybe));
    }

    #[test]
    fn the_transport_error_is_the_source() {
        let origin: Origin = "http://example.com".parse().unwrap();
        let err = Error::acquire_timeout(&origin, Duration::from_secs(1));
        assert_eq!(
            err.to_string(),
            "no connection to http://example.com:80 available within 1s"
        );
        let boxed: BoxError = Box::new(err);
        let t = TransportError::find(&*boxed).unwrap();
        assert!(t.is_acquire() && t.is_never_sent());
    }
}
