//! Following redirects: a hop limit, methods and bodies as RFC 9110 §15.4 and browsers
//! treat them, credentials stripped once a redirect leaves the origin.
//!
//! The facade's own layer rather than tower-http's `FollowRedirect`, for its cost on the
//! common path, a response that is not a redirect: `FollowRedirect` clones its whole inner
//! service (the rest of the stack) and a policy on every call and inserts a `RequestUri`
//! extension into every response. Here a call keeps only what a redirect needs (method, URI,
//! version, headers, an in-memory body's shared bytes) and a reference-counted handle to the
//! inner service, and a next hop clones the service only when a redirect arrives.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use flext_core::{HeaderList, OriginRef};
use http::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HeaderName, LOCATION,
    PROXY_AUTHORIZATION, TRANSFER_ENCODING,
};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use pin_project_lite::pin_project;
use tower::util::{Oneshot, ServiceExt};
use tower::{Layer, Service};

use crate::body::Body;

/// The headers a caller may have put credentials in, dropped on leaving the origin (the
/// list of tower-http's `FilterCredentials`, of the Fetch standard and of reqwest).
const CREDENTIAL_HEADERS: [HeaderName; 3] = [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION];

/// The headers that describe a body, dropped when a redirect turns the request into a GET.
const PAYLOAD_HEADERS: [HeaderName; 4] = [
    CONTENT_TYPE,
    CONTENT_LENGTH,
    CONTENT_ENCODING,
    TRANSFER_ENCODING,
];

/// Follows up to `max` redirects. 301 and 302 turn a POST into a GET without a body, 303
/// turns any method but HEAD into a GET without a body (as tower-http, reqwest and browsers
/// do); 307 and 308 keep the method and body when the body is in memory, and stop at the
/// redirect response otherwise (a streamed body cannot be sent twice). A redirect without a
/// usable `Location`, or past the limit, is returned as it is.
///
/// `Authorization`, `Cookie` and `Proxy-Authorization` headers are removed from the first
/// hop that goes to another origin and from every hop after it, back to the first origin
/// included. (tower-http's `FilterCredentials` compares each hop with the one before and
/// rebuilds each hop from the original headers, so a second redirect within the other
/// origin would get them back.) The auth layer adds credentials only for the origins they
/// are scoped to, so nothing leaks across a redirect.
///
/// Later hops carry the first request's method (as changed above), headers and version,
/// not its extensions, as with tower-http.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RedirectLayer {
    max: usize,
}

impl RedirectLayer {
    pub(crate) fn new(max: usize) -> RedirectLayer {
        RedirectLayer { max }
    }
}

impl<S: Clone> Layer<S> for RedirectLayer {
    type Service = FollowRedirects<S>;

    fn layer(&self, inner: S) -> FollowRedirects<S> {
        FollowRedirects {
            hops: Arc::new(inner.clone()),
            inner,
            max: self.max,
        }
    }
}

/// The service of [`RedirectLayer`].
#[derive(Debug, Clone)]
pub(crate) struct FollowRedirects<S> {
    inner: S,
    // What sends the next hops: cloned only when a redirect is followed.
    hops: Arc<S>,
    max: usize,
}

impl<S, ResB> Service<Request<Body>> for FollowRedirects<S>
where
    S: Service<Request<Body>, Response = Response<ResB>> + Clone,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = RedirectFuture<S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> RedirectFuture<S> {
        let head = Box::new(Head {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: HeaderList::of(req.headers()),
            body: req.body().try_clone(),
            left: self.max,
            left_origin: false,
        });
        RedirectFuture {
            future: Hop::First {
                future: self.inner.call(req),
            },
            head,
            hops: Arc::clone(&self.hops),
        }
    }
}

/// What a next hop is made from.
#[derive(Debug)]
struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderList,
    // `None`: a streamed body, which a hop cannot send again.
    body: Option<Body>,
    // Redirects still allowed.
    left: usize,
    // Whether a hop has left the first request's origin.
    left_origin: bool,
}

impl Head {
    /// The next hop's request for `res`, or `None` when `res` is to be returned as it is.
    fn next(&mut self, status: StatusCode, headers: &HeaderMap) -> Option<Request<Body>> {
        let (method, empty_body) = match status {
            StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND if self.method == Method::POST => {
                (Method::GET, true)
            }
            StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND => (self.method.clone(), false),
            StatusCode::SEE_OTHER if self.method == Method::HEAD => (Method::HEAD, true),
            StatusCode::SEE_OTHER => (Method::GET, true),
            StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT => {
                (self.method.clone(), false)
            }
            _ => return None,
        };
        if self.left == 0 {
            return None;
        }
        let body = if empty_body {
            Body::empty()
        } else {
            self.body.as_ref()?.try_clone()?
        };
        let location = headers
            .get(LOCATION)
            .and_then(|l| std::str::from_utf8(l.as_bytes()).ok())
            .and_then(|l| resolve(l, &self.uri))?;
        if empty_body {
            for name in &PAYLOAD_HEADERS {
                self.headers.remove(name);
            }
            self.body = Some(Body::empty());
        }
        if !same_origin(&self.uri, &location) {
            self.left_origin = true;
        }
        if self.left_origin {
            for name in &CREDENTIAL_HEADERS {
                self.headers.remove(name);
            }
        }
        self.left -= 1;
        self.method = method;
        self.uri = location;
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.to_map();
        Some(req)
    }
}

/// `location` resolved against `base` (RFC 3986 §5, as a browser does); `None` when either
/// is not a valid absolute http(s) URL.
fn resolve(location: &str, base: &Uri) -> Option<Uri> {
    let base = url::Url::parse(&base.to_string()).ok()?;
    let joined = base.join(location).ok()?;
    if !matches!(joined.scheme(), "http" | "https") {
        return None;
    }
    Uri::try_from(String::from(joined)).ok()
}

/// Same scheme, host and port (an omitted port is the scheme's default); a URI without an
/// origin matches nothing.
fn same_origin(a: &Uri, b: &Uri) -> bool {
    match (OriginRef::from_uri(a), OriginRef::from_uri(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

pin_project! {
    #[project = HopProj]
    enum Hop<S: Service<Request<Body>>> {
        First { #[pin] future: S::Future },
        Next { #[pin] future: Oneshot<S, Request<Body>> },
    }
}

pin_project! {
    /// The future of a [`FollowRedirects`] call.
    pub(crate) struct RedirectFuture<S: Service<Request<Body>>> {
        #[pin]
        future: Hop<S>,
        // Boxed: it is needed only when a redirect arrives, and inline it would make the
        // call's future too large for the allocator's per-thread cache (see `call`).
        head: Box<Head>,
        hops: Arc<S>,
    }
}

impl<S, ResB> Future for RedirectFuture<S>
where
    S: Service<Request<Body>, Response = Response<ResB>> + Clone,
{
    type Output = Result<Response<ResB>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let res = match this.future.as_mut().project() {
                HopProj::First { future } => ready!(future.poll(cx))?,
                HopProj::Next { future } => ready!(future.poll(cx))?,
            };
            if !res.status().is_redirection() {
                return Poll::Ready(Ok(res));
            }
            let Some(req) = this.head.next(res.status(), res.headers()) else {
                return Poll::Ready(Ok(res));
            };
            // The redirect's own body is dropped with it.
            drop(res);
            let hop = S::clone(this.hops).oneshot(req);
            this.future.set(Hop::Next { future: hop });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_by_scheme_host_and_port() {
        let same = |a: &str, b: &str| same_origin(&a.parse().unwrap(), &b.parse().unwrap());
        assert!(same(
            "https://api.example.com/a",
            "https://API.example.com:443/b"
        ));
        assert!(same("http://h/a", "http://user@h:80/b?q"));
        assert!(!same("https://h/", "http://h/"));
        assert!(!same("https://h/", "https://h:8443/"));
        assert!(!same("https://h/", "https://h.evil.net/"));
        assert!(!same("/relative", "/relative"));
    }

    #[test]
    fn locations_resolve_as_a_browser_resolves_them() {
        let base: Uri = "https://api.example.com/v1/items/7?q=1".parse().unwrap();
        let r = |l: &str| resolve(l, &base).map(|u| u.to_string());
        assert_eq!(
            r("/other").as_deref(),
            Some("https://api.example.com/other")
        );
        assert_eq!(
            r("8").as_deref(),
            Some("https://api.example.com/v1/items/8")
        );
        assert_eq!(
            r("../x?y=2").as_deref(),
            Some("https://api.example.com/v1/x?y=2")
        );
        assert_eq!(
            r("//cdn.example.net/a").as_deref(),
            Some("https://cdn.example.net/a")
        );
        assert_eq!(
            r("http://plain.test:8080/").as_deref(),
            Some("http://plain.test:8080/")
        );
        assert_eq!(r("ftp://files.test/x"), None);
        assert_eq!(r("http://[bad"), None);
    }

    fn head(method: Method, body: Option<Body>, left: usize) -> Head {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, "Bearer t".parse().unwrap());
        headers.insert(CONTENT_TYPE, "text/plain".parse().unwrap());
        Head {
            method,
            uri: "http://a.test/start".parse().unwrap(),
            version: Version::HTTP_11,
            headers: HeaderList::of(&headers),
            body,
            left,
            left_origin: false,
        }
    }

    fn location(to: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(LOCATION, to.parse().unwrap());
        h
    }

    #[test]
    fn methods_and_bodies_follow_rfc_9110() {
        let post = || head(Method::POST, Some(Body::from("p")), 5);
        let to = location("/next");
        for (status, method, body) in [
            (301, Method::GET, ""),
            (302, Method::GET, ""),
            (303, Method::GET, ""),
            (307, Method::POST, "p"),
            (308, Method::POST, "p"),
        ] {
            let status = StatusCode::from_u16(status).unwrap();
            let req = post().next(status, &to).unwrap();
            assert_eq!(req.method(), method, "{status}");
            assert_eq!(req.body().as_bytes(), Some(body.as_bytes()), "{status}");
            assert_eq!(req.uri(), "http://a.test/next");
            // Same origin: the credential stays; a body-less GET loses its payload headers.
            assert!(req.headers().contains_key(AUTHORIZATION));
            assert_eq!(req.headers().contains_key(CONTENT_TYPE), body == "p");
        }
        let mut h = head(Method::HEAD, None, 5);
        let req = h.next(StatusCode::SEE_OTHER, &to).unwrap();
        assert_eq!(req.method(), Method::HEAD);
        let mut put = head(Method::PUT, Some(Body::from("x")), 5);
        assert_eq!(
            put.next(StatusCode::FOUND, &to).unwrap().method(),
            Method::PUT
        );
    }

    #[test]
    fn redirects_that_cannot_be_followed_are_returned() {
        let to = location("/next");
        // A streamed body cannot be sent again on a 307.
        assert!(
            head(Method::POST, None, 5)
                .next(StatusCode::TEMPORARY_REDIRECT, &to)
                .is_none()
        );
        // ... but a 303 does not send it.
        assert!(
            head(Method::POST, None, 5)
                .next(StatusCode::SEE_OTHER, &to)
                .is_some()
        );
        // No Location, an unusable one, the limit reached, not a followed status.
        let empty = HeaderMap::new();
        assert!(
            head(Method::GET, None, 5)
                .next(StatusCode::FOUND, &empty)
                .is_none()
        );
        let bad = location("mailto:x@y.test");
        assert!(
            head(Method::GET, None, 5)
                .next(StatusCode::FOUND, &bad)
                .is_none()
        );
        assert!(
            head(Method::GET, None, 0)
                .next(StatusCode::FOUND, &to)
                .is_none()
        );
        assert!(
            head(Method::GET, None, 5)
                .next(StatusCode::NOT_MODIFIED, &to)
                .is_none()
        );
        assert!(
            head(Method::GET, None, 5)
                .next(StatusCode::MULTIPLE_CHOICES, &to)
                .is_none()
        );
    }

    #[test]
    fn credentials_are_dropped_from_the_first_hop_off_the_origin_on() {
        let mut h = head(Method::GET, Some(Body::empty()), 5);
        let away = h
            .next(StatusCode::FOUND, &location("http://b.test/x"))
            .unwrap();
        assert!(!away.headers().contains_key(AUTHORIZATION));
        let within = h.next(StatusCode::FOUND, &location("/y")).unwrap();
        assert!(!within.headers().contains_key(AUTHORIZATION));
        let back = h
            .next(StatusCode::FOUND, &location("http://a.test/z"))
            .unwrap();
        assert!(!back.headers().contains_key(AUTHORIZATION));
        assert_eq!(back.uri(), "http://a.test/z");
        assert_eq!(h.left, 2);
    }
}
