//! [`Auth`]: the service an [`AuthLayer`](crate::AuthLayer) wraps around another.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use flext_core::{BoxError, Origin, ReplayBody, Replayable};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Request, Response, Uri};
use http_body::Body;
use secrecy::{ExposeSecret, SecretString};
use tower_service::Service;

use crate::cache::LocalView;
use crate::credential::CredentialKind;
use crate::error::{Error, Kind};
use crate::future::{Pending, Replay, ResponseFuture, Tried};
use crate::layer::{AuthLayerBuilder, Config, CredentialSource};

/// Adds credentials to requests; see [`AuthLayer`](crate::AuthLayer).
///
/// The inner service receives the request body as a [`ReplayBody`] (flext-core's), so that a
/// request rejected with 401 can be sent again with a new token. A body that is not
/// replayed is passed through as it is.
pub struct Auth<S> {
    inner: S,
    config: Arc<Config>,
    /// This service's view of the token cache, for a dynamic credential.
    local: Option<LocalView>,
}

impl<S> Auth<S> {
    pub(crate) fn from_config(inner: S, config: Arc<Config>) -> Auth<S> {
        let local = match &config.source {
            CredentialSource::Cached(cache) => Some(cache.local()),
            CredentialSource::Static(_) => None,
        };
        Auth {
            inner,
            config,
            local,
        }
    }

    /// A builder for the layer of this service; the same as
    /// [`AuthLayer::builder`](crate::AuthLayer::builder).
    pub fn layer(source: impl Into<CredentialSource>) -> AuthLayerBuilder {
        crate::AuthLayer::builder(source)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for Auth<S> {
    fn clone(&self) -> Self {
        Auth {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
            local: self.local.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Auth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

impl<S, B, RB> Service<Request<B>> for Auth<S>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // Split borrows: the configuration is read while the inner service is called.
        let Auth {
            inner,
            config,
            local,
        } = self;
        let config = &**config;
        let Some(entry) = config.scope.find(req.uri()) else {
            // Not an origin of this credential: untouched.
            return send_once(inner, req);
        };
        if entry.insecure && !config.allow_plain_http {
            return refuse_insecure(&entry.origin);
        }
        match &config.source {
            CredentialSource::Static(credential) => match &credential.kind {
                CredentialKind::Header { name, value, .. } => {
                    // `insert` replaces every value the caller set. (Two lookups measure faster
                    // than the entry API, whose enum is moved around.)
                    if config.replace_existing
                        || req.headers().is_empty()
                        || !req.headers().contains_key(name)
                    {
                        req.headers_mut().insert(name, value.clone());
                    }
                    send_once(inner, req)
                }
                CredentialKind::Query { param, pair } => {
                    match with_query(req.uri(), param, pair, config.replace_existing) {
                        Ok(Some(uri)) => *req.uri_mut() = uri,
                        Ok(None) => {}
                        Err(e) => return ResponseFuture::failed(e),
                    }
                    send_once(inner, req)
                }
            },
            CredentialSource::Cached(cache) => {
                if !config.replace_existing
                    && !req.headers().is_empty()
                    && req.headers().contains_key(cache.header_name())
                {
                    return send_once(inner, req);
                }
                // Made with the service whenever the source is a cache.
                let local = local.get_or_insert_with(|| cache.local());
                send_cached(inner, local, config, req)
            }
        }
    }
}

#[cold]
fn refuse_insecure<S, B>(origin: &Origin) -> ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
{
    tracing::debug!(
        target: "flext_auth",
        %origin,
        "credential refused over plain http to a non-loopback host"
    );
    ResponseFuture::failed(Error::new(Kind::Insecure(origin.to_string())))
}

/// Sends a request that will not be replayed.
fn send_once<S, B>(inner: &mut S, req: Request<B>) -> ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    ResponseFuture::inner(inner.call(req.map(ReplayBody::once)))
}

// Kept out of line, so that the static path of `call` stays small enough to inline.
#[inline(never)]
fn send_cached<S, B>(
    inner: &mut S,
    local: &mut LocalView,
    config: &Config,
    req: Request<B>,
) -> ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>> + Clone,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    let (replayable, first) = if config.replay {
        let (replayable, first) = Replayable::new(body, &config.limits);
        (Some(replayable), first)
    } else {
        (None, ReplayBody::once(body))
    };
    let found = local.lookup();
    let cache = local.provider();
    match found {
        Some((value, generation)) => {
            // The head is kept without the credential: a replay gets a new one.
            let saved = replayable.as_ref().map(|_| head_copy(&parts));
            let mut req = Request::from_parts(parts, first);
            req.headers_mut().insert(cache.header_name(), value);
            let fut = inner.call(req);
            let replay = match (saved, replayable) {
                (Some(parts), Some(replayable)) => {
                    let header = cache.header_name().clone();
                    Some(Replay::new(inner.clone(), parts, replayable, header))
                }
                _ => None,
            };
            ResponseFuture::sending(fut, Tried::new(cache.clone(), generation, replay))
        }
        None => {
            // Waiting for a token: the service that was made ready goes with the request.
            let clone = inner.clone();
            let svc = std::mem::replace(inner, clone);
            let waiting = cache.clone();
            let acquire = Box::pin(async move { waiting.acquire().await });
            ResponseFuture::acquiring(
                acquire,
                Pending {
                    svc,
                    parts,
                    first,
                    replayable,
                    cache: cache.clone(),
                },
            )
        }
    }
}

/// A copy of the request head for a replay. A header map with no entries is not cloned (its
/// clone would allocate a table for nothing): the copy gets an empty map, which allocates
/// only if a replay inserts into it.
fn head_copy(parts: &Parts) -> Parts {
    let (mut copy, ()) = Request::new(()).into_parts();
    copy.method = parts.method.clone();
    copy.uri = parts.uri.clone();
    copy.version = parts.version;
    if !parts.headers.is_empty() {
        copy.headers = parts.headers.clone();
    }
    copy.extensions = parts.extensions.clone();
    copy
}

/// The URI with the credential's `name=value` appended to its query; `None` when the caller
/// already set that parameter and it is to be kept.
#[inline(never)]
fn with_query(
    uri: &Uri,
    param: &str,
    pair: &SecretString,
    replace: bool,
) -> Result<Option<Uri>, Error> {
    let pair = pair.expose_secret();
    let path = uri.path();
    let query = uri.query().unwrap_or("");
    let is_ours = |segment: &str| {
        form_urlencoded::parse(segment.as_bytes())
            .next()
            .is_some_and(|(name, _)| name == param)
    };
    let mut text = String::with_capacity(path.len() + query.len() + pair.len() + 2);
    text.push_str(path);
    text.push('?');
    for segment in query.split('&').filter(|s| !s.is_empty()) {
        if is_ours(segment) {
            if !replace {
                return Ok(None);
            }
            continue;
        }
        text.push_str(segment);
        text.push('&');
    }
    text.push_str(pair);
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        PathAndQuery::from_maybe_shared(Bytes::from(text))
            .map_err(|_| Error::invalid("query credential does not fit in the uri"))?,
    );
    Uri::from_parts(parts)
        .map(Some)
        .map_err(|_| Error::invalid("query credential does not fit in the uri"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(uri: &str, replace: bool) -> Option<String> {
        let pair = SecretString::from("api%20key=k%26v");
        with_query(&uri.parse().unwrap(), "api key", &pair, replace)
            .unwrap()
            .map(|u| u.to_string())
    }

    #[test]
    fn query_credentials_append_and_respect_the_callers() {
        assert_eq!(
            q("https://a.com/p", false).unwrap(),
            "https://a.com/p?api%20key=k%26v"
        );
        assert_eq!(
            q("https://a.com/p?x=1&&y", false).unwrap(),
            "https://a.com/p?x=1&y&api%20key=k%26v"
        );
        assert_eq!(q("https://a.com/p?api+key=mine", false), None);
        assert_eq!(
            q("https://a.com/p?api+key=mine&z=2", true).unwrap(),
            "https://a.com/p?z=2&api%20key=k%26v"
        );
    }
}
