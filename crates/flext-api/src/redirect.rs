//! Redirect policy: tower-http's `FollowRedirect` with a hop limit, credentials stripped
//! once a redirect leaves the origin, and bodies replayed when they are in memory.

use flext_core::OriginRef;
use http::header::{AUTHORIZATION, COOKIE, HeaderName, PROXY_AUTHORIZATION};
use http::{Request, Uri};
use tower_http::follow_redirect::policy::{Action, Attempt, Limited, Policy};

use crate::body::Body;

/// The headers a caller may have put credentials in, dropped on leaving the origin (the
/// list of tower-http's `FilterCredentials`, of the Fetch standard and of reqwest).
const CREDENTIAL_HEADERS: [HeaderName; 3] = [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION];

/// Follows up to `max` redirects. 301, 302 and 303 turn the request into a GET without a
/// body (tower-http does this, as browsers do); 307 and 308 keep the method and body when
/// the body is in memory, and stop at the redirect response otherwise (a streamed body
/// cannot be sent twice).
///
/// `Authorization`, `Cookie` and `Proxy-Authorization` headers are removed from the first
/// hop that goes to another origin and from every hop after it, back to the first origin
/// included. (tower-http's `FilterCredentials` compares each hop with the one before and
/// rebuilds each hop from the original headers, so a second redirect within the other
/// origin would get them back.) The auth layer adds credentials only for the origins they
/// are scoped to, so nothing leaks across a redirect.
#[derive(Debug, Clone)]
pub(crate) struct RedirectPolicy {
    limited: Limited,
    /// Whether a hop of this call has left the request's origin; one policy per call.
    left_origin: bool,
}

impl RedirectPolicy {
    pub(crate) fn new(max: usize) -> RedirectPolicy {
        RedirectPolicy {
            limited: Limited::new(max),
            left_origin: false,
        }
    }
}

/// Same scheme, host and port (an omitted port is the scheme's default); a URI without an
/// origin matches nothing.
fn same_origin(a: &Uri, b: &Uri) -> bool {
    match (OriginRef::from_uri(a), OriginRef::from_uri(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

impl<E> Policy<Body, E> for RedirectPolicy {
    fn redirect(&mut self, attempt: &Attempt<'_>) -> Result<Action, E> {
        let action = Policy::<Body, E>::redirect(&mut self.limited, attempt)?;
        if matches!(action, Action::Follow) && !same_origin(attempt.previous(), attempt.location())
        {
            self.left_origin = true;
        }
        Ok(action)
    }

    fn on_request(&mut self, request: &mut Request<Body>) {
        if self.left_origin {
            let headers = request.headers_mut();
            for name in &CREDENTIAL_HEADERS {
                headers.remove(name);
            }
        }
    }

    fn clone_body(&self, body: &Body) -> Option<Body> {
        body.try_clone()
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
}
