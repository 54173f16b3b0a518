//! [`RetryLayer`].

use std::fmt;
use std::sync::Arc;

use flext_core::HttpClassifier;
use tower_layer::Layer;

use crate::config::{RetryBuilder, Shared};
use crate::metrics::RetryMetrics;
use crate::service::Retry;

/// Wraps a service in [`Retry`]; see the [crate docs](crate).
///
/// Clones share one budget, one replay memory cap and one set of counters: build one layer
/// per client, clone it freely.
pub struct RetryLayer<C = HttpClassifier> {
    shared: Arc<Shared<C>>,
}

impl RetryLayer<HttpClassifier> {
    /// A layer with the defaults (see [`RetryBuilder`]).
    pub fn new() -> RetryLayer<HttpClassifier> {
        RetryLayer::from_shared(Shared::new(
            RetryBuilder::new()
                .into_config()
                .unwrap_or_else(|_| unreachable!("the defaults are valid")),
        ))
    }

    /// A builder to change the defaults.
    pub fn builder() -> RetryBuilder<HttpClassifier> {
        RetryBuilder::new()
    }
}

impl Default for RetryLayer<HttpClassifier> {
    fn default() -> Self {
        RetryLayer::new()
    }
}

impl<C> RetryLayer<C> {
    pub(crate) fn from_shared(shared: Shared<C>) -> RetryLayer<C> {
        RetryLayer {
            shared: Arc::new(shared),
        }
    }

    /// A snapshot of the counters of this layer and all its services.
    pub fn metrics(&self) -> RetryMetrics {
        metrics(&self.shared)
    }
}

pub(crate) fn metrics<C>(shared: &Shared<C>) -> RetryMetrics {
    let memory = shared.config.replay.memory().map_or(0, |m| m.in_use());
    let requests = shared.budget.requests();
    shared
        .counters
        .snapshot(requests, shared.budget.available(), memory)
}

impl<C> Clone for RetryLayer<C> {
    fn clone(&self) -> Self {
        RetryLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C> fmt::Debug for RetryLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("config", &self.shared)
            .finish()
    }
}

impl<S, C> Layer<S> for RetryLayer<C> {
    type Service = Retry<S, C>;

    fn layer(&self, inner: S) -> Retry<S, C> {
        Retry::from_shared(inner, Arc::clone(&self.shared))
    }
}
