//! Redirect policy: tower-http's `FollowRedirect` with a hop limit, credentials stripped
//! when a redirect leaves the origin, and bodies replayed when they are in memory.

use http::Request;
use tower_http::follow_redirect::policy::{Action, Attempt, FilterCredentials, Limited, Policy};

use crate::body::Body;

/// Follows up to `max` redirects. 301, 302 and 303 turn the request into a GET without a
/// body (tower-http does this, as browsers do); 307 and 308 keep the method and body when
/// the body is in memory, and stop at the redirect response otherwise (a streamed body
/// cannot be sent twice). `Authorization`, `Cookie` and `Proxy-Authorization` headers are
/// removed when a redirect goes to another origin; the auth layer adds credentials only for
/// the origins they are scoped to, so nothing leaks across a redirect.
#[derive(Debug, Clone)]
pub(crate) struct RedirectPolicy {
    limited: Limited,
    filter: FilterCredentials,
}

impl RedirectPolicy {
    pub(crate) fn new(max: usize) -> RedirectPolicy {
        RedirectPolicy {
            limited: Limited::new(max),
            filter: FilterCredentials::new(),
        }
    }
}

impl<E> Policy<Body, E> for RedirectPolicy {
    fn redirect(&mut self, attempt: &Attempt<'_>) -> Result<Action, E> {
        match Policy::<Body, E>::redirect(&mut self.limited, attempt)? {
            Action::Follow => Policy::<Body, E>::redirect(&mut self.filter, attempt),
            Action::Stop => Ok(Action::Stop),
        }
    }

    fn on_request(&mut self, request: &mut Request<Body>) {
        Policy::<Body, E>::on_request(&mut self.filter, request);
    }

    fn clone_body(&self, body: &Body) -> Option<Body> {
        body.try_clone()
    }
}
