//! [`RetryBuilder`]: every number of the policy, validated once.

use std::fmt;
use std::time::Duration;

use flext_core::{
    Classify, DEFAULT_MAX_REPLAY_BYTES, DEFAULT_MAX_REPLAY_MEMORY, HttpClassifier, ReplayLimits,
    ReplayMemory,
};

use crate::backoff::{Backoff, Random};
use crate::budget::{Budget, BudgetState};
use crate::error::ConfigError;
use crate::layer::RetryLayer;
use crate::metrics::Counters;

/// The hard cap on [`RetryBuilder::max_retries`]: 10.
pub const MAX_RETRIES: u32 = 10;

/// Builds a [`RetryLayer`]; every setting has a default that needs no tuning.
///
/// | setting | default | from |
/// |---|---|---|
/// | [`max_retries`](Self::max_retries) | 3 (4 attempts), at most 10 | AWS SDK standard mode, Polly, gRPC's limit of 5 attempts |
/// | [`max_never_sent_retries`](Self::max_never_sent_retries) | 2 | gRPC A6 transparent retries, Envoy's `reset-before-request` / `refused-stream` |
/// | [`backoff`](Self::backoff) | 100 ms × 2ⁿ, full jitter, cap 10 s | AWS "Exponential Backoff And Jitter"; gRPC (1 s × 1.6, 120 s), Envoy (25 ms, 250 ms) |
/// | [`budget`](Self::budget) | 20% of requests + 10/s over 10 s | tower `TpsBudget`, Finagle; Envoy's `retry_budget` (20%, 3 concurrent) |
/// | [`max_retry_after`](Self::max_retry_after) | 60 s | Polly honours any; a minute keeps a call within a usual total timeout |
/// | [`max_replay_bytes`](Self::max_replay_bytes) | 64 KiB per request | linkerd's retry body limit |
/// | [`max_replay_memory`](Self::max_replay_memory) | 16 MiB in flight | bounds memory at 256 requests of 64 KiB |
/// | [`drain_limit`](Self::drain_limit) | 64 KiB | hyper-util's pool drains idle bodies likewise; more and a new connection is cheaper |
///
/// ```
/// use std::time::Duration;
/// use flext_retry::{Backoff, Budget, Jitter, RetryLayer};
///
/// let layer = RetryLayer::builder()
///     .max_retries(2)
///     .backoff(Backoff::exponential(Duration::from_millis(50), Duration::from_secs(2)).with_jitter(Jitter::Equal))
///     .budget(Budget::new(0.1, 5, Duration::from_secs(10)))
///     .build()?;
/// # let _ = layer;
/// # Ok::<(), flext_retry::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RetryBuilder<C = HttpClassifier> {
    max_retries: u32,
    max_never_sent_retries: u32,
    backoff: Backoff,
    random: Random,
    budget: Budget,
    max_retry_after: Duration,
    max_replay_bytes: usize,
    max_replay_memory: usize,
    drain_limit: usize,
    info_on_every_response: bool,
    classifier: C,
}

impl RetryBuilder<HttpClassifier> {
    /// The defaults, with the [`HttpClassifier`].
    pub fn new() -> RetryBuilder<HttpClassifier> {
        RetryBuilder {
            max_retries: 3,
            max_never_sent_retries: 2,
            backoff: Backoff::default(),
            random: Random::thread(),
            budget: Budget::default(),
            max_retry_after: Duration::from_secs(60),
            max_replay_bytes: DEFAULT_MAX_REPLAY_BYTES,
            max_replay_memory: DEFAULT_MAX_REPLAY_MEMORY,
            drain_limit: 64 * 1024,
            info_on_every_response: false,
            classifier: HttpClassifier::new(),
        }
    }
}

impl Default for RetryBuilder<HttpClassifier> {
    fn default() -> Self {
        RetryBuilder::new()
    }
}

impl<C> RetryBuilder<C> {
    /// Retries after the first attempt, at most [`MAX_RETRIES`]; 0 turns retries off.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Retries of a request that is not idempotent after failures that certainly never
    /// reached the server (connect refused, `REFUSED_STREAM`, GOAWAY). Idempotent requests
    /// retry those under `max_retries` like any transient failure.
    pub fn max_never_sent_retries(mut self, n: u32) -> Self {
        self.max_never_sent_retries = n;
        self
    }

    /// The wait between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The randomness of the jitter; [`Random::seeded`] makes delays deterministic.
    pub fn random(mut self, random: Random) -> Self {
        self.random = random;
        self
    }

    /// The retry budget shared by all clones of the layer.
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budget = budget;
        self
    }

    /// The longest `Retry-After` honoured; a server asking for more gets its response
    /// returned at once.
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// The most bytes of one request body kept for replay; 0 keeps none (only empty bodies
    /// are then retried).
    pub fn max_replay_bytes(mut self, bytes: usize) -> Self {
        self.max_replay_bytes = bytes;
        self
    }

    /// The most bytes kept for replay across all requests in flight through the layer.
    pub fn max_replay_memory(mut self, bytes: usize) -> Self {
        self.max_replay_memory = bytes;
        self
    }

    /// The most bytes of a failed response read (and thrown away) during the backoff so
    /// that its connection can be reused; a longer body is dropped.
    pub fn drain_limit(mut self, bytes: usize) -> Self {
        self.drain_limit = bytes;
        self
    }

    /// Puts a [`RetryInfo`](crate::RetryInfo) on every response, even one that succeeded on
    /// its first attempt. Off by default: that costs three allocations per response.
    pub fn info_on_every_response(mut self, on: bool) -> Self {
        self.info_on_every_response = on;
        self
    }

    /// Another classifier for what counts as a failure.
    pub fn classifier<D: Classify>(self, classifier: D) -> RetryBuilder<D> {
        RetryBuilder {
            max_retries: self.max_retries,
            max_never_sent_retries: self.max_never_sent_retries,
            backoff: self.backoff,
            random: self.random,
            budget: self.budget,
            max_retry_after: self.max_retry_after,
            max_replay_bytes: self.max_replay_bytes,
            max_replay_memory: self.max_replay_memory,
            drain_limit: self.drain_limit,
            info_on_every_response: self.info_on_every_response,
            classifier,
        }
    }

    pub(crate) fn into_config(self) -> Result<Config<C>, ConfigError> {
        if self.max_retries > MAX_RETRIES {
            return Err(ConfigError::new(format!(
                "max_retries must be at most {MAX_RETRIES} (got {})",
                self.max_retries
            )));
        }
        self.backoff.validate()?;
        self.budget.validate()?;
        Ok(Config {
            max_retries: self.max_retries,
            max_never_sent_retries: self.max_never_sent_retries,
            backoff: self.backoff,
            random: self.random,
            budget: self.budget,
            max_retry_after: self.max_retry_after,
            // The future reserves a whole body itself, through the `Arc` it holds anyway.
            replay: ReplayLimits::new(self.max_replay_bytes)
                .with_memory(ReplayMemory::new(self.max_replay_memory))
                .caller_counts_whole(),
            drain_limit: self.drain_limit,
            info_on_every_response: self.info_on_every_response,
            classifier: self.classifier,
        })
    }

    /// The layer, or what is wrong with the settings.
    pub fn build(self) -> Result<RetryLayer<C>, ConfigError> {
        Ok(RetryLayer::from_shared(Shared::new(self.into_config()?)))
    }
}

impl<C> fmt::Debug for RetryBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBuilder")
            .field("max_retries", &self.max_retries)
            .field("max_never_sent_retries", &self.max_never_sent_retries)
            .field("backoff", &self.backoff)
            .field("budget", &self.budget)
            .field("max_retry_after", &self.max_retry_after)
            .field("max_replay_bytes", &self.max_replay_bytes)
            .field("max_replay_memory", &self.max_replay_memory)
            .finish_non_exhaustive()
    }
}

/// The validated settings.
pub(crate) struct Config<C> {
    pub(crate) max_retries: u32,
    pub(crate) max_never_sent_retries: u32,
    pub(crate) backoff: Backoff,
    pub(crate) random: Random,
    pub(crate) budget: Budget,
    pub(crate) max_retry_after: Duration,
    pub(crate) replay: ReplayLimits,
    pub(crate) drain_limit: usize,
    pub(crate) info_on_every_response: bool,
    pub(crate) classifier: C,
}

/// What all clones of a layer share.
pub(crate) struct Shared<C> {
    pub(crate) config: Config<C>,
    pub(crate) budget: BudgetState,
    pub(crate) counters: Counters,
}

impl<C> Shared<C> {
    pub(crate) fn new(config: Config<C>) -> Shared<C> {
        Shared {
            budget: BudgetState::new(&config.budget),
            config,
            counters: Counters::default(),
        }
    }
}

impl<C> fmt::Debug for Shared<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        f.debug_struct("RetryConfig")
            .field("max_retries", &c.max_retries)
            .field("max_never_sent_retries", &c.max_never_sent_retries)
            .field("backoff", &c.backoff)
            .field("budget", &self.budget)
            .field("max_retry_after", &c.max_retry_after)
            .field("replay", &c.replay)
            .finish_non_exhaustive()
    }
}
