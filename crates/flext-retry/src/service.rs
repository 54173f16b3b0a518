//! [`Retry`], the service.

use std::fmt;
use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};

use flext_core::{BoxError, HttpClassifier, ReplayBody, Replayable, RequestHead};
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::config::Shared;
use crate::error::RetryError;
use crate::future::{Ctx, ResponseFuture, State, reserve};
use crate::info::RetryInfo;
use crate::layer::{RetryLayer, metrics};
use crate::metrics::RetryMetrics;
use crate::policy::{Progress, RetryOverride};

/// Retries the requests it is given on the inner service, as its [`RetryLayer`] says.
///
/// The inner service gets `Request<ReplayBody<B>>`: the caller's body, kept so it can be
/// sent again. Its errors come back as [`RetryError`].
pub struct Retry<S, C = HttpClassifier> {
    inner: S,
    shared: Arc<Shared<C>>,
}

impl<S> Retry<S, HttpClassifier> {
    /// Wraps `inner` with the defaults, and a budget of its own.
    pub fn new(inner: S) -> Self {
        tower_layer::Layer::layer(&RetryLayer::new(), inner)
    }

    /// A [`RetryLayer`] with the defaults.
    pub fn layer() -> RetryLayer<HttpClassifier> {
        RetryLayer::new()
    }
}

impl<S, C> Retry<S, C> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared<C>>) -> Self {
        Retry { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, by value.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// A snapshot of the counters shared with the layer and its other services.
    pub fn metrics(&self) -> RetryMetrics {
        metrics(&self.shared)
    }
}

impl<S: Clone, C> Clone for Retry<S, C> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for Retry<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("config", &self.shared)
            .finish()
    }
}

impl<S, C, B, ResBody> Service<Request<B>> for Retry<S, C>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
    ResBody: Body,
    C: flext_core::Classify,
{
    type Response = Response<ResBody>;
    type Error = RetryError;
    type Future = ResponseFuture<S, B, ResBody, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| RetryError::new(e.into(), RetryInfo::new()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The ready service goes into the future; a clone waits for the next poll_ready.
        let clone = self.inner.clone();
        let mut service = mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        // Counts the request, for the budget and the metrics alike.
        shared.budget.deposit();

        let retry = shared.config.max_retries > 0
            && req.extensions().get::<RetryOverride>() != Some(&RetryOverride::Disabled);
        if !retry {
            let future = service.call(req.map(ReplayBody::once));
            return ResponseFuture {
                state: State::Called { future },
                service,
                ctx: Ctx::once(shared),
            };
        }
        // The future is built in one go from parts made beforehand: each further move of a
        // part (into a nested struct, say) is one more copy.
        let head = RequestHead::of(&req);
        let (parts, body) = req.into_parts();
        let (replay, first) = Replayable::new(body, &shared.config.replay);
        let future = service.call(Request::from_parts(parts, first));
        // After the call: from here nothing unwinds before the future's drop gives it back.
        let mut replay = Some(replay);
        let reserved = reserve(&mut replay, &shared);
        ResponseFuture {
            state: State::Called { future },
            service,
            ctx: Ctx {
                shared,
                head: Some(head),
                replay,
                reserved,
                info: RetryInfo::new(),
                progress: Progress::default(),
                done: false,
            },
        }
    }
}
