//! [`BreakerLayer`] and its [`Builder`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use flext_core::Classify;
use tower_layer::Layer;

use crate::classify::BreakerClassifier;
use crate::clock::{Clock, Ticks, nanos};
use crate::config::{BreakerConfig, ConfigError};
use crate::handle::BreakerHandle;
use crate::key::{ByOrigin, Partition};
use crate::observe::Transition;
use crate::registry::Registry;
use crate::service::Breaker;
use crate::state::{Listener, Shared};

/// Wraps a service in [`Breaker`]: one circuit breaker per origin (or per key of a
/// [`Partition`]).
///
/// Every service made by one layer (and every clone of them) shares the layer's breakers,
/// so the layer is made once per client and its [`handle`](Self::handle) sees all traffic.
pub struct BreakerLayer<P: Partition = ByOrigin, C = BreakerClassifier> {
    registry: Arc<Registry<P::Key>>,
    partition: P,
    classifier: C,
}

impl BreakerLayer {
    /// A layer with the default settings (see [`BreakerConfig`]), one breaker per origin.
    pub fn new() -> BreakerLayer {
        Builder::new(ByOrigin).build_valid()
    }

    /// A builder keyed by origin.
    pub fn builder() -> Builder {
        Builder::new(ByOrigin)
    }
}

impl Default for BreakerLayer {
    fn default() -> BreakerLayer {
        BreakerLayer::new()
    }
}

impl<P: Partition> BreakerLayer<P> {
    /// A builder keyed by `partition`, such as [`key_fn`](crate::key_fn).
    pub fn keyed(partition: P) -> Builder<P> {
        Builder::new(partition)
    }
}

impl<P: Partition, C> BreakerLayer<P, C> {
    /// The controls and snapshots of this layer's breakers.
    pub fn handle(&self) -> BreakerHandle<P::Key> {
        BreakerHandle::new(self.registry.clone())
    }
}

impl<P: Partition, C: Clone> Clone for BreakerLayer<P, C> {
    fn clone(&self) -> Self {
        BreakerLayer {
            registry: self.registry.clone(),
            partition: self.partition.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<P: Partition, C> fmt::Debug for BreakerLayer<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerLayer")
            .field("registry", &self.registry)
            .field("partition", &std::any::type_name::<P>())
            .field("classifier", &std::any::type_name::<C>())
            .finish()
    }
}

impl<S, P: Partition, C: Clone> Layer<S> for BreakerLayer<P, C> {
    type Service = Breaker<S, P, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Breaker::new(
            inner,
            self.registry.clone(),
            self.partition.clone(),
            self.classifier.clone(),
        )
    }
}

/// Builds a [`BreakerLayer`]; from [`BreakerLayer::builder`] or [`BreakerLayer::keyed`].
///
/// ```
/// use std::time::Duration;
/// use flext_breaker::{BreakerConfig, BreakerLayer, State};
/// use flext_core::Origin;
///
/// let flaky: Origin = "https://flaky.example.com".parse().unwrap();
/// let layer = BreakerLayer::builder()
///     .config(BreakerConfig::default().open_duration(Duration::from_secs(10)))
///     .override_key(flaky, BreakerConfig::default().consecutive_failures(2))
///     .max_keys(256)
///     .on_transition(|t| {
///         if t.to == State::Open {
///             eprintln!("{} opened: {}", t.key, t.cause);
///         }
///     })
///     .build()
///     .unwrap();
/// # let _ = layer;
/// ```
pub struct Builder<P: Partition = ByOrigin, C = BreakerClassifier> {
    config: BreakerConfig,
    overrides: HashMap<P::Key, BreakerConfig>,
    max_keys: usize,
    idle_timeout: Duration,
    clock: Option<Arc<dyn Clock>>,
    listeners: Vec<Listener>,
    partition: P,
    classifier: C,
}

impl<P: Partition> Builder<P> {
    fn new(partition: P) -> Builder<P> {
        Builder {
            config: BreakerConfig::default(),
            overrides: HashMap::new(),
            max_keys: 1024,
            idle_timeout: Duration::from_secs(600),
            clock: None,
            listeners: Vec::new(),
            partition,
            classifier: BreakerClassifier::new(),
        }
    }
}

impl<P: Partition, C> Builder<P, C> {
    /// The settings of every breaker without an override.
    pub fn config(mut self, config: BreakerConfig) -> Self {
        self.config = config;
        self
    }

    /// Other settings for the breaker of `key`.
    pub fn override_key(mut self, key: P::Key, config: BreakerConfig) -> Self {
        self.overrides.insert(key, config);
        self
    }

    /// The most breakers the layer keeps (default 1,024). A new key past it evicts the least
    /// recently used breaker, closed ones first; forced-open and disabled ones are never
    /// evicted.
    pub fn max_keys(mut self, n: usize) -> Self {
        self.max_keys = n;
        self
    }

    /// How long a closed breaker may go unused before a new key may evict it (default
    /// 10 minutes). Open breakers are kept.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// The clock. By default the breakers read the kernel's coarse monotonic clock, without
    /// dynamic dispatch (see [`Clock`]); [`TokioClock`](crate::TokioClock) follows tokio's
    /// paused clock, [`ManualClock`](crate::ManualClock) moves only when a test says so.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Calls `f` on every state change of every breaker, after the change and outside any
    /// lock; it may run on any thread, and a panic in it is caught and logged.
    pub fn on_transition(mut self, f: impl Fn(&Transition) + Send + Sync + 'static) -> Self {
        self.listeners.push(Arc::new(f));
        self
    }

    /// Another classifier (default [`BreakerClassifier`]).
    pub fn classifier<C2: Classify>(self, classifier: C2) -> Builder<P, C2> {
        Builder {
            config: self.config,
            overrides: self.overrides,
            max_keys: self.max_keys,
            idle_timeout: self.idle_timeout,
            clock: self.clock,
            listeners: self.listeners,
            partition: self.partition,
            classifier,
        }
    }

    /// The layer.
    ///
    /// # Errors
    ///
    /// A setting out of range (see [`BreakerConfig::validate`]), in the default config or an
    /// override, or `max_keys` of 0.
    pub fn build(self) -> Result<BreakerLayer<P, C>, ConfigError> {
        self.config.validate()?;
        for config in self.overrides.values() {
            config.validate()?;
        }
        if self.max_keys == 0 {
            return Err(ConfigError::new("max_keys must be at least 1"));
        }
        Ok(self.build_valid())
    }

    fn build_valid(self) -> BreakerLayer<P, C> {
        let shared = Arc::new(Shared {
            ticks: self.clock.map_or_else(Ticks::coarse, Ticks::new),
            listeners: self.listeners,
        });
        let registry = Registry::new(
            shared,
            self.config,
            self.overrides,
            self.max_keys,
            nanos(self.idle_timeout),
        );
        BreakerLayer {
            registry: Arc::new(registry),
            partition: self.partition,
            classifier: self.classifier,
        }
    }
}

impl<P: Partition, C> fmt::Debug for Builder<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("overrides", &self.overrides.len())
            .field("max_keys", &self.max_keys)
            .field("idle_timeout", &self.idle_timeout)
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}
