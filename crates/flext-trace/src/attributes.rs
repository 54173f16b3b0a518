//! Reading OpenTelemetry HTTP client attributes off a request, a response or an error.

use std::any::Any;
use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::io;

use flext_core::{FailureKind, TransportError, classify_error_chain};
use http::{Method, Request, Uri, Version, header};

use crate::metrics::RequestAttributes;

/// The low-cardinality template of a request's path, as a request extension: the span is then
/// named `{method} {template}` and carries `url.template`.
///
/// OpenTelemetry never names a span by its raw path (that has unbounded cardinality); a caller
/// that knows the route it is calling says so with this extension.
///
/// ```
/// use flext_trace::UrlTemplate;
///
/// let mut request = http::Request::get("https://api.example.com/users/42").body(()).unwrap();
/// request.extensions_mut().insert(UrlTemplate::new("/users/{id}"));
/// assert_eq!(UrlTemplate::of(&request).map(UrlTemplate::as_str), Some("/users/{id}"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UrlTemplate(Cow<'static, str>);

impl UrlTemplate {
    /// A template such as `/users/{id}`.
    pub fn new(template: impl Into<Cow<'static, str>>) -> UrlTemplate {
        UrlTemplate(template.into())
    }

    /// The template text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The template a request carries, if any.
    pub fn of<B>(request: &Request<B>) -> Option<&UrlTemplate> {
        request.extensions().get::<UrlTemplate>()
    }
}

impl fmt::Display for UrlTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An HTTP method as OpenTelemetry records it: one of the nine known methods (RFC 9110 and
/// PATCH), or `_OTHER` with the original text kept apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum KnownMethod {
    Connect,
    Delete,
    Get,
    Head,
    Options,
    Patch,
    Post,
    Put,
    Trace,
    Other,
}

impl KnownMethod {
    pub(crate) fn of(method: &Method) -> KnownMethod {
        // Method names are case-sensitive: `get` is not `GET` (RFC 9110 §9.1).
        match *method {
            Method::GET => KnownMethod::Get,
            Method::POST => KnownMethod::Post,
            Method::PUT => KnownMethod::Put,
            Method::DELETE => KnownMethod::Delete,
            Method::HEAD => KnownMethod::Head,
            Method::OPTIONS => KnownMethod::Options,
            Method::PATCH => KnownMethod::Patch,
            Method::CONNECT => KnownMethod::Connect,
            Method::TRACE => KnownMethod::Trace,
            _ => KnownMethod::Other,
        }
    }

    /// The `http.request.method` value.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            KnownMethod::Connect => "CONNECT",
            KnownMethod::Delete => "DELETE",
            KnownMethod::Get => "GET",
            KnownMethod::Head => "HEAD",
            KnownMethod::Options => "OPTIONS",
            KnownMethod::Patch => "PATCH",
            KnownMethod::Post => "POST",
            KnownMethod::Put => "PUT",
            KnownMethod::Trace => "TRACE",
            KnownMethod::Other => "_OTHER",
        }
    }

    /// The `{method}` part of a span name: `HTTP` for an unknown method.
    pub(crate) const fn span_name(self) -> &'static str {
        match self {
            KnownMethod::Other => "HTTP",
            known => known.as_str(),
        }
    }
}

/// Where a request goes, as `server.address`, `server.port` and `url.scheme` see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target<'a> {
    pub(crate) method: KnownMethod,
    /// Host without IPv6 brackets; empty when the request names none.
    pub(crate) address: &'a str,
    pub(crate) port: Option<u16>,
    pub(crate) scheme: Option<&'a str>,
}

impl<'a> Target<'a> {
    /// Reads the target from the URI when it is absolute, else from the `Host` header.
    pub(crate) fn of<B>(request: &'a Request<B>) -> Target<'a> {
        let uri = request.uri();
        let method = KnownMethod::of(request.method());
        let scheme = uri.scheme_str();
        let default_port = scheme.and_then(default_port);
        // One pass over the authority (`Uri::host` and `Uri::port_u16` each parse it again).
        let authority = match uri.authority() {
            Some(a) => Some(a.as_str()),
            None => request
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok()),
        };
        let (address, port) = authority.map_or(("", None), split_host_port);
        Target {
            method,
            address,
            port: port.or(default_port),
            scheme,
        }
    }
}

impl<'a> Target<'a> {
    /// The metrics attributes of the target.
    pub(crate) fn attributes(&self) -> RequestAttributes<'a> {
        RequestAttributes {
            method: self.method.as_str(),
            server_address: self.address,
            server_port: self.port,
        }
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("http") {
        Some(80)
    } else if scheme.eq_ignore_ascii_case("https") {
        Some(443)
    } else {
        None
    }
}

/// Splits an authority (`user@example.com:8080`) or a `Host` header value (`example.com:8080`,
/// `[::1]:80`, `example.com`) into host and port. Byte loops over a string this short: a
/// `rsplit_once` or `contains` sets up a vectorised search for each separator, and this runs
/// on every request.
fn split_host_port(value: &str) -> (&str, Option<u16>) {
    let value = value.trim_ascii();
    // User-info ends at the last `@`.
    let value = match value.bytes().rposition(|b| b == b'@') {
        Some(at) => &value[at + 1..],
        None => value,
    };
    if let Some(rest) = value.strip_prefix('[') {
        return match rest.bytes().position(|b| b == b']') {
            Some(end) => (
                &rest[..end],
                rest[end + 1..]
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok()),
            ),
            None => (value, None),
        };
    }
    let (mut first, mut last) = (None, None);
    for (i, b) in value.bytes().enumerate() {
        if b == b':' {
            first = first.or(Some(i));
            last = Some(i);
        }
    }
    match (first, last) {
        // One colon: a port. More: an IPv6 address without brackets, and no port.
        (Some(colon), Some(same)) if colon == same => {
            (&value[..colon], value[colon + 1..].parse().ok())
        }
        _ => (value, None),
    }
}

/// `network.protocol.version` for a response's version: `1.1`, `2`, ...
pub(crate) fn protocol_version(version: Version) -> Option<&'static str> {
    match version {
        Version::HTTP_09 => Some("0.9"),
        Version::HTTP_10 => Some("1.0"),
        Version::HTTP_11 => Some("1.1"),
        Version::HTTP_2 => Some("2"),
        Version::HTTP_3 => Some("3"),
        _ => None,
    }
}

/// Whether the request's URI is absolute (has a scheme and a host).
pub(crate) fn is_absolute(uri: &Uri) -> bool {
    uri.scheme().is_some() && uri.authority().is_some()
}

/// A user function naming the `error.type` of errors the built-in rules do not know.
pub(crate) type ErrorTypeFn = fn(&(dyn StdError + 'static)) -> Option<&'static str>;

/// The `error.type` of an error, from the first rule that knows it:
///
/// 1. the user's function, when it returns `Some`;
/// 2. a [`Rejected`](flext_core::Rejected) anywhere in the chain (a call refused locally,
///    such as by an open circuit breaker): its reason (`circuit_open`);
/// 3. a [`TransportError`] anywhere in the chain: its kind (`connect`, `timeout`, `tls`, ...);
/// 4. a tokio or tower timeout in the chain: `timeout`;
/// 5. an [`io::Error`] in the chain, read as flext-core's classifier reads it: `connect`,
///    `reset` or `timeout`;
/// 6. else `_OTHER`.
pub(crate) fn error_type(
    error: &(dyn StdError + 'static),
    user: Option<ErrorTypeFn>,
) -> &'static str {
    if let Some(name) = user.and_then(|f| f(error)) {
        return name;
    }
    if let Some(r) = flext_core::Rejected::find(error) {
        return r.reason();
    }
    if let Some(t) = TransportError::find(error) {
        return t.kind().as_str();
    }
    let mut cur = Some(error);
    while let Some(e) = cur {
        if e.is::<tokio::time::error::Elapsed>() || e.is::<tower::timeout::error::Elapsed>() {
            return "timeout";
        }
        cur = e.source();
    }
    let failure = classify_error_chain(error);
    match failure.kind() {
        FailureKind::Connect => "connect",
        FailureKind::Reset => "reset",
        FailureKind::Timeout => "timeout",
        _ => OTHER,
    }
}

/// OpenTelemetry's fallback `error.type`.
pub(crate) const OTHER: &str = "_OTHER";

/// Views a service's error as a `std::error::Error` when its type allows: any boxed error
/// (`tower::BoxError` and the like), [`TransportError`], [`io::Error`] and the tokio and tower
/// timeout errors. Other concrete types are opaque here (their `error.type` is `_OTHER`);
/// map them into a `BoxError` to let the chain be read.
pub(crate) fn as_std_error<E: 'static>(error: &E) -> Option<&(dyn StdError + 'static)> {
    let any: &dyn Any = error;
    if let Some(b) = any.downcast_ref::<Box<dyn StdError + Send + Sync>>() {
        return Some(&**b);
    }
    if let Some(b) = any.downcast_ref::<Box<dyn StdError + Send>>() {
        return Some(&**b);
    }
    if let Some(b) = any.downcast_ref::<Box<dyn StdError>>() {
        return Some(&**b);
    }
    if let Some(e) = any.downcast_ref::<TransportError>() {
        return Some(e);
    }
    if let Some(e) = any.downcast_ref::<io::Error>() {
        return Some(e);
    }
    if let Some(e) = any.downcast_ref::<tower::timeout::error::Elapsed>() {
        return Some(e);
    }
    if let Some(e) = any.downcast_ref::<tokio::time::error::Elapsed>() {
        return Some(e);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use flext_core::{BoxError, Sent};

    fn target_of(
        uri: &str,
        host: Option<&str>,
    ) -> (KnownMethod, String, Option<u16>, Option<String>) {
        let mut b = Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header(header::HOST, h);
        }
        let req = b.body(()).unwrap();
        let t = Target::of(&req);
        (
            t.method,
            t.address.to_owned(),
            t.port,
            t.scheme.map(str::to_owned),
        )
    }

    #[test]
    fn targets_from_uri_and_host_header() {
        assert_eq!(
            target_of("https://Example.com/x", None),
            (
                KnownMethod::Get,
                "Example.com".into(),
                Some(443),
                Some("https".into())
            )
        );
        assert_eq!(target_of("http://[::1]:8080/", None).1, "::1");
        assert_eq!(target_of("http://[::1]:8080/", None).2, Some(8080));
        assert_eq!(target_of("http://a.b/", None).2, Some(80));
        assert_eq!(
            target_of("/rel", Some("h.example:81")),
            (KnownMethod::Get, "h.example".into(), Some(81), None)
        );
        assert_eq!(target_of("/rel", Some("[::1]:82")).1, "::1");
        assert_eq!(target_of("/rel", Some("[::1]:82")).2, Some(82));
        assert_eq!(target_of("/rel", None).1, "");
        assert_eq!(target_of("http://u:p@h:99/", None).1, "h");
        assert_eq!(target_of("http://u:p@h:99/", None).2, Some(99));
        assert_eq!(target_of("https://[2001:db8::1]/", None).1, "2001:db8::1");
        assert_eq!(target_of("https://[2001:db8::1]/", None).2, Some(443));
        assert_eq!(target_of("/rel", Some(" h.example:83 ")).1, "h.example");
        assert_eq!(target_of("/rel", Some(" h.example:83 ")).2, Some(83));
        assert_eq!(
            target_of("/rel", Some("::1")),
            (KnownMethod::Get, "::1".into(), None, None)
        );
        assert_eq!(target_of("/rel", Some("h:port")).2, None);
    }

    proptest::proptest! {
        /// Whatever the text, the host and port come from it, and a host with a port written
        /// after it is read back.
        #[test]
        fn host_and_port_split_like_the_text_says(
            host in "[a-z0-9.-]{1,20}",
            port: u16,
            user in proptest::option::of("[a-z]{1,8}(:[a-z]{0,8})?"),
        ) {
            let user = user.map(|u| format!("{u}@")).unwrap_or_default();
            let text = format!("{user}{host}:{port}");
            proptest::prop_assert_eq!(split_host_port(&text), (host.as_str(), Some(port)));
            let bracketed = format!("{user}[{host}]:{port}");
            proptest::prop_assert_eq!(split_host_port(&bracketed), (host.as_str(), Some(port)));
            proptest::prop_assert_eq!(split_host_port(&host), (host.as_str(), None));
        }

        #[test]
        fn any_text_splits_without_panicking(text in "\\PC{0,40}") {
            let (host, _) = split_host_port(&text);
            proptest::prop_assert!(text.contains(host));
        }
    }

    #[test]
    fn methods() {
        assert_eq!(KnownMethod::of(&Method::PATCH).as_str(), "PATCH");
        let odd = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(KnownMethod::of(&odd).as_str(), "_OTHER");
        assert_eq!(KnownMethod::of(&odd).span_name(), "HTTP");
        let lower = Method::from_bytes(b"get").unwrap();
        assert_eq!(KnownMethod::of(&lower), KnownMethod::Other);
    }

    #[test]
    fn error_types() {
        let e: BoxError =
            TransportError::connect(io::Error::from(io::ErrorKind::ConnectionRefused)).into();
        assert_eq!(error_type(&*e, None), "connect");
        let e: BoxError = TransportError::timeout(Sent::Maybe).into();
        assert_eq!(error_type(&*e, None), "timeout");
        let e: BoxError = io::Error::from(io::ErrorKind::ConnectionReset).into();
        assert_eq!(error_type(&*e, None), "reset");
        let e: BoxError = tower::timeout::error::Elapsed::new().into();
        assert_eq!(error_type(&*e, None), "timeout");
        let e: BoxError = "weird".into();
        assert_eq!(error_type(&*e, None), "_OTHER");
        let open: BoxError = flext_core::Rejected::new("circuit_open", None).into();
        assert_eq!(error_type(&*open, None), "circuit_open");
        fn mine(e: &(dyn StdError + 'static)) -> Option<&'static str> {
            (e.to_string() == "weird").then_some("circuit_open")
        }
        assert_eq!(error_type(&*e, Some(mine)), "circuit_open");
    }

    #[test]
    fn errors_are_viewed_through_any() {
        let boxed: BoxError = "x".into();
        assert!(as_std_error(&boxed).is_some());
        assert!(as_std_error(&TransportError::timeout(Sent::No)).is_some());
        assert!(as_std_error(&io::Error::other("x")).is_some());
        #[derive(Debug)]
        struct Opaque;
        assert!(as_std_error(&Opaque).is_none());
    }
}
