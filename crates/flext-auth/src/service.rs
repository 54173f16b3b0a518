//! [`Auth`]: the service an [`AuthLayer`](crate::AuthLayer) wraps around another.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use flext_core::{BoxError, Origin, ReplayBody, ReplayLimits, Replayable, RequestHead};
use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, Request, Response, Uri};
use http_body::Body;
use secrecy::{ExposeSecret, SecretString};
use tower_service::Service;

use crate::cache::{CachedProvider, LocalView};
use crate::credential::{Credential, CredentialKind};
use crate::error::{Error, Kind};
use crate::future::{Pending, Replay, ResponseFuture, StaticResponseFuture, Tried};
use crate::layer::{AuthLayerBuilder, Config, CredentialSource, Source};
use crate::scope::Entry;

/// Adds credentials to requests; see [`AuthLayer`](crate::AuthLayer).
///
/// What the inner service receives depends on the source `C`: with a static [`Credential`],
/// the request as it came; with a [`CachedProvider`] or a [`CredentialSource`], the request
/// with its body in a [`ReplayBody`] (flext-core's), so that a request rejected with 401 can
/// be sent again with a new token. A body that is not replayed is passed through as it is.
pub struct Auth<S, C: Source = CredentialSource> {
    inner: S,
    config: Arc<Config<C>>,
    /// This service's view of the token cache, for a dynamic credential.
    local: C::Local,
}

impl<S, C: Source> Auth<S, C> {
    pub(crate) fn from_config(inner: S, config: Arc<Config<C>>) -> Auth<S, C> {
        let local = config.source.local();
        Auth {
            inner,
            config,
            local,
        }
    }

    /// A builder for the layer of this service; the same as
    /// [`AuthLayer::builder`](crate::AuthLayer::builder).
    pub fn layer(source: C) -> AuthLayerBuilder<C> {
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

impl<S: Clone, C: Source> Clone for Auth<S, C> {
    fn clone(&self) -> Self {
        Auth {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
            local: self.local.clone(),
        }
    }
}

impl<S: fmt::Debug, C: Source> fmt::Debug for Auth<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

/// A static credential: the request goes to the inner service as it came, with the
/// credential added, like tower-http's `AddAuthorization`. A 401 is handed back as it is: there
/// is nothing to refresh.
impl<S, B> Service<Request<B>> for Auth<S, Credential>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = StaticResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let config = &*self.config;
        if let Some(entry) = config.scope.find(req.uri())
            && let Err(e) = allowed(entry, config.allow_plain_http)
                .and_then(|()| attach(&config.source, config.replace_existing, &mut req))
        {
            return StaticResponseFuture::failed(e);
        }
        StaticResponseFuture::inner(self.inner.call(req))
    }
}

/// A cached provider: a 401 to a request that carried a cached token refreshes the token and
/// replays the request once.
impl<S, B, RB> Service<Request<B>> for Auth<S, CachedProvider>
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

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // Split borrows: the configuration is read while the inner service is called.
        let Auth {
            inner,
            config,
            local,
        } = self;
        let config = &**config;
        match config.scope.find(req.uri()) {
            // Not an origin of this credential: untouched.
            None => send_once(inner, req),
            Some(entry) => match allowed(entry, config.allow_plain_http) {
                Ok(()) => send_cached(inner, local, config, req),
                Err(e) => ResponseFuture::failed(e),
            },
        }
    }
}

/// A source chosen at run time: either of the above, with the inner service's request type of
/// a cached provider for both.
impl<S, B, RB> Service<Request<B>> for Auth<S, CredentialSource>
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
        let Auth {
            inner,
            config,
            local,
        } = self;
        let config = &**config;
        let Some(entry) = config.scope.find(req.uri()) else {
            return send_once(inner, req);
        };
        if let Err(e) = allowed(entry, config.allow_plain_http) {
            return ResponseFuture::failed(e);
        }
        match &config.source {
            CredentialSource::Static(credential) => {
                match attach(credential, config.replace_existing, &mut req) {
                    Ok(()) => send_once(inner, req),
                    Err(e) => ResponseFuture::failed(e),
                }
            }
            CredentialSource::Cached(cache) => {
                // Made with the service whenever the source is a cache.
                let local = local.get_or_insert_with(|| cache.local());
                send_cached(inner, local, config, req)
            }
        }
    }
}

/// Whether the credential may go to an allowed origin: not over plain http to a remote host,
/// unless that is allowed.
#[inline]
fn allowed(entry: &Entry, allow_plain_http: bool) -> Result<(), Error> {
    if entry.insecure && !allow_plain_http {
        return Err(refuse_insecure(&entry.origin));
    }
    Ok(())
}

#[cold]
#[inline(never)]
fn refuse_insecure(origin: &Origin) -> Error {
    tracing::debug!(
        target: "flext_auth",
        %origin,
        "credential refused over plain http to a non-loopback host"
    );
    Error::new(Kind::Insecure(origin.to_string()))
}

/// Adds a static credential to a request bound for one of its origins.
#[inline(always)]
fn attach<B>(credential: &Credential, replace: bool, req: &mut Request<B>) -> Result<(), Error> {
    match &credential.kind {
        CredentialKind::Header { name, value, .. } => {
            let headers = req.headers_mut();
            if replace || !has(headers, name) {
                insert(headers, name, value.clone());
            }
            Ok(())
        }
        CredentialKind::Query { param, pair } => attach_query(param, pair, replace, req),
    }
}

/// A query credential: rare (and discouraged), so out of line.
#[cold]
#[inline(never)]
fn attach_query<B>(
    param: &str,
    pair: &SecretString,
    replace: bool,
    req: &mut Request<B>,
) -> Result<(), Error> {
    if let Some(uri) = with_query(req.uri(), param, pair, replace)? {
        *req.uri_mut() = uri;
    }
    Ok(())
}

/// Whether the caller set header `name`. (Two lookups, this and the insert, measure faster
/// than the entry API, whose enum is moved around.)
#[inline(always)]
fn has(headers: &HeaderMap, name: &HeaderName) -> bool {
    if headers.is_empty() {
        return false;
    }
    if *name == AUTHORIZATION {
        headers.contains_key(AUTHORIZATION)
    } else {
        headers.contains_key(name)
    }
}

/// Sets header `name` to the credential, replacing every value the caller set. The name of
/// bearer and Basic credentials (and of a cache's tokens by default) is a constant, so that the
/// compiler hashes it.
#[inline(always)]
fn insert(headers: &mut HeaderMap, name: &HeaderName, value: HeaderValue) {
    if *name == AUTHORIZATION {
        headers.insert(AUTHORIZATION, value);
    } else {
        insert_named(headers, name, value);
    }
}

/// Any other header: out of line, so that the insert above stays small enough to inline.
#[inline(never)]
fn insert_named(headers: &mut HeaderMap, name: &HeaderName, value: HeaderValue) {
    headers.insert(name, value);
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

/// Sends a request with the cached token, keeping what a replay after a 401 needs.
fn send_cached<S, B, C>(
    inner: &mut S,
    local: &mut LocalView,
    config: &Config<C>,
    req: Request<B>,
) -> ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>> + Clone,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    if !config.replace_existing && has(req.headers(), local.provider().header_name()) {
        // The caller's own credential: sent as it is, and its 401 is not ours to handle.
        return send_once(inner, req);
    }
    let Some((value, generation)) = local.lookup() else {
        return wait_for_token(inner, local.provider(), config.replay, &config.limits, req);
    };
    let cache = local.provider();
    if !config.replay {
        let mut req = req.map(ReplayBody::once);
        insert(req.headers_mut(), cache.header_name(), value);
        let fut = inner.call(req);
        return ResponseFuture::sending(fut, Tried::new(cache.clone(), generation, None));
    }
    let (mut parts, body) = req.into_parts();
    let (replayable, first) = Replayable::new(body, &config.limits);
    // The head is kept without the credential: a replay gets a new one.
    let head = RequestHead::from_parts(&parts);
    insert(&mut parts.headers, cache.header_name(), value);
    let fut = inner.call(Request::from_parts(parts, first));
    let replay = Replay::new(inner.clone(), head, replayable);
    ResponseFuture::sending(fut, Tried::new(cache.clone(), generation, Some(replay)))
}

/// No valid token cached: the request waits for the cache's single flight, with the service
/// that was made ready for it.
#[cold]
#[inline(never)]
fn wait_for_token<S, B>(
    inner: &mut S,
    cache: &CachedProvider,
    replay: bool,
    limits: &ReplayLimits,
    req: Request<B>,
) -> ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>> + Clone,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    let (replayable, first) = if replay {
        let (replayable, first) = Replayable::new(body, limits);
        (Some(replayable), first)
    } else {
        (None, ReplayBody::once(body))
    };
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

/// The URI with the credential's `name=value` appended to its query; `None` when the caller
/// already set that parameter and it is to be kept.
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
