//! [`Breaker`]: the service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use flext_core::{BoxError, Classify};
use http::{Request, Response};
use tower_service::Service;

use crate::classify::BreakerClassifier;
use crate::future::{Guard, ResponseFuture};
use crate::handle::BreakerHandle;
use crate::key::{ByOrigin, Partition, PartitionFor};
use crate::layer::BreakerLayer;
use crate::registry::{Entry, Registry, Room};

/// Guards an inner service with one circuit breaker per origin (or per key); made by
/// [`BreakerLayer`].
///
/// `poll_ready` is the inner service's. `call` finds the request's breaker and either lets
/// the request through, recording how it ends, or fails it at once with
/// [`CircuitOpen`](crate::CircuitOpen). Errors are boxed (`tower::BoxError`), with the inner
/// error passed through unchanged inside.
pub struct Breaker<S, P: Partition = ByOrigin, C = BreakerClassifier> {
    inner: S,
    registry: Arc<Registry<P::Key>>,
    partition: P,
    classifier: C,
    // The last breaker used: most services talk to one origin, and this skips the map.
    last: Option<Arc<Entry<P::Key>>>,
}

impl<S, P: Partition, C> Breaker<S, P, C> {
    pub(crate) fn new(
        inner: S,
        registry: Arc<Registry<P::Key>>,
        partition: P,
        classifier: C,
    ) -> Breaker<S, P, C> {
        Breaker {
            inner,
            registry,
            partition,
            classifier,
            last: None,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The controls and snapshots of the breakers this service shares with its layer.
    pub fn handle(&self) -> BreakerHandle<P::Key> {
        BreakerHandle::new(self.registry.clone())
    }
}

impl<S> Breaker<S> {
    /// A [`BreakerLayer`] with the default settings: `Breaker::layer()` reads well in a
    /// `ServiceBuilder`.
    pub fn layer() -> BreakerLayer {
        BreakerLayer::new()
    }
}

impl<S: Clone, P: Partition, C: Clone> Clone for Breaker<S, P, C> {
    fn clone(&self) -> Self {
        Breaker {
            inner: self.inner.clone(),
            registry: self.registry.clone(),
            partition: self.partition.clone(),
            classifier: self.classifier.clone(),
            last: self.last.clone(),
        }
    }
}

impl<S: fmt::Debug, P: Partition, C> fmt::Debug for Breaker<S, P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("inner", &self.inner)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl<S, P: Partition, C> Breaker<S, P, C> {
    /// The breaker of `req`, past this service's own cache: the one any service found last if
    /// it is the same, else the map's (made if new); `None` when the request has no key.
    #[inline(never)]
    fn lookup<B>(&self, req: &Request<B>) -> Option<Arc<Entry<P::Key>>>
    where
        P: PartitionFor<B>,
    {
        if let Some(e) = self.registry.recent(|key| self.partition.is_key(req, key)) {
            return Some(e);
        }
        // No key: not guarded.
        let probe = self.partition.probe(req)?;
        let entry = self.registry.get_or_insert(probe, Room::Bounded)?;
        self.registry.set_recent(&entry);
        Some(entry)
    }
}

impl<S, P, C, B, ResBody> Service<Request<B>> for Breaker<S, P, C>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    P: PartitionFor<B>,
    C: Classify,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let hit = match &self.last {
            Some(e) => !e.cell.is_evicted() && self.partition.is_key(&req, &e.key),
            None => false,
        };
        if !hit {
            self.last = self.lookup(&req);
        }
        let guard = match self.last.as_ref().map(|e| e.cell.admit()) {
            None => Guard::Unguarded,
            Some(Ok(permit)) => Guard::Permit {
                permit,
                classifier: self.classifier.clone(),
            },
            Some(Err(open)) => return ResponseFuture::rejected(open),
        };
        ResponseFuture::new(self.inner.call(req), guard)
    }
}
