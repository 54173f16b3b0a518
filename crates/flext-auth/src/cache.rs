//! [`CachedProvider`]: a token cache in front of a [`CredentialProvider`], refreshing ahead of
//! expiry with a single flight, a timeout and a backoff.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use secrecy::ExposeSecret;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::credential::{self, Redacted};
use crate::error::{Error, Kind, SharedError};
use crate::provider::{CredentialProvider, Expiry, Token};
use crate::watch::{Watch, Watched};

/// A cache in front of a [`CredentialProvider`]: what an [`AuthLayer`](crate::AuthLayer)
/// uses for dynamic credentials.
///
/// - **Warm path**: one relaxed atomic load of the current token (through an `ArcSwap`
///   cache), its fresh flag and a read of the kernel's coarse clock; no lock, no await, no
///   allocation, and no read of tokio's clock: the refresh point is registered with the
///   runtime's timer, which marks the token due, and the coarse clock bounds that by real
///   time in case the timer fires late. Near the refresh point, or for a token cached on a
///   runtime that has since shut down, tokio's clock is read and decides.
/// - **Refresh ahead**: a token with a lifetime `L` is refreshed `clamp(L / 10, 10 s, 5 min)`
///   before it expires (never more than `L / 2`), moved by a random ±20 % that stays within
///   those bounds, so that many clients started together do not refresh together. Until the
///   new token arrives, requests keep using the current one; the refresh runs as a task on the
///   current tokio runtime.
/// - **Single flight**: whatever the number of concurrent requests, at most one call to the
///   provider is in flight; requests that need a token wait for it and share its result,
///   success or failure.
/// - **Timeout and backoff**: a refresh that takes longer than the refresh timeout (5 s) fails;
///   after a failure the provider is not called again before a backoff (1 s doubling to 30 s,
///   with jitter). Meanwhile a still-valid token keeps being used, and requests that have none
///   fail at once with [`Error::is_backoff`].
/// - **Expiry** is counted from the instant the token request was sent; a token is never
///   attached at or after its expiry.
/// - **401**: the [`AuthLayer`](crate::AuthLayer) invalidates the token a rejected request
///   used, unless the cache already holds a newer one, and refreshes it; a refresh forced that
///   way happens at most once per re-authentication interval (5 s), so a server that rejects
///   every token cannot make the cache hammer the provider.
///
/// Time is tokio's clock, so all of this can be tested with a paused clock: moving it past a
/// refresh point marks the token due before `tokio::time::advance` returns. The cache needs a
/// tokio runtime with the time driver enabled. Clones share the cache.
///
/// ```
/// use std::time::Duration;
/// use flext_auth::{provider_fn, CachedProvider, Token};
///
/// let cache = CachedProvider::builder(provider_fn(|| async {
///     Ok::<_, std::io::Error>(Token::new("t0k3n").expires_in(Duration::from_secs(3600)))
/// }))
/// .refresh_timeout(Duration::from_secs(2))
/// .build()?;
/// # Ok::<(), flext_auth::Error>(())
/// ```
#[derive(Clone)]
pub struct CachedProvider {
    shared: Arc<Shared>,
}

struct Shared {
    provider: Box<dyn CredentialProvider>,
    config: CacheConfig,
    current: ArcSwapOption<Entry>,
    /// Held for the whole of a provider call: the single flight.
    state: Mutex<State>,
    /// Provider calls finished (success or failure), to tell a waiter that the call it
    /// waited for has failed.
    completed: AtomicU64,
    next_generation: AtomicU64,
    /// A background refresh is scheduled or running.
    refreshing: AtomicBool,
    /// When a 401 last forced a refresh.
    last_forced: std::sync::Mutex<Option<Instant>>,
}

#[derive(Debug, Clone)]
struct CacheConfig {
    header: HeaderName,
    bearer: bool,
    fraction: f64,
    min_ahead: Duration,
    max_ahead: Duration,
    jitter: f64,
    timeout: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
    reauth_interval: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            header: AUTHORIZATION,
            bearer: true,
            fraction: 0.1,
            min_ahead: Duration::from_secs(10),
            max_ahead: Duration::from_secs(300),
            jitter: 0.2,
            timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            reauth_interval: Duration::from_secs(5),
        }
    }
}

#[derive(Default)]
struct State {
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<Error>,
}

/// One cached token, ready to attach.
pub(crate) struct Entry {
    pub(crate) value: HeaderValue,
    pub(crate) generation: u64,
    /// When to start a background refresh; `None` for a token without expiry.
    refresh_at: Option<Instant>,
    expires_at: Option<Instant>,
    /// Whether the refresh point is known to be ahead without reading tokio's clock.
    watch: Watch,
}

impl Entry {
    /// The entry, its refresh point registered with the current runtime's timer.
    fn new(
        value: HeaderValue,
        generation: u64,
        refresh_at: Option<Instant>,
        expires_at: Option<Instant>,
    ) -> Arc<Entry> {
        let watch = refresh_at.map_or_else(Watch::forever, Watch::until);
        let entry = Arc::new(Entry {
            value,
            generation,
            refresh_at,
            expires_at,
            watch,
        });
        if let Some(at) = refresh_at {
            Watch::arm(&entry, at);
        }
        entry
    }

    fn is_valid(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

impl Watched for Entry {
    fn watch(&self) -> &Watch {
        &self.watch
    }
}

/// Builds a [`CachedProvider`]; from [`CachedProvider::builder`].
pub struct CachedProviderBuilder {
    provider: Box<dyn CredentialProvider>,
    config: CacheConfig,
}

impl fmt::Debug for CachedProviderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedProviderBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl CachedProviderBuilder {
    /// Attach tokens as `Authorization: Bearer <token>` (the default).
    pub fn bearer(mut self) -> Self {
        self.config.header = AUTHORIZATION;
        self.config.bearer = true;
        self
    }

    /// Attach tokens as they are in the named header, such as `X-Api-Key: <token>`.
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_credential`] for an invalid header name, or one that frames the
    /// message.
    pub fn header(mut self, name: impl AsRef<str>) -> Result<Self, Error> {
        self.config.header = credential::header_name(name.as_ref())?;
        self.config.bearer = false;
        Ok(self)
    }

    /// How long before expiry to refresh: `fraction` of the token's lifetime, at least
    /// `min` and at most `max` before it expires, and never more than half the lifetime.
    /// Defaults: 0.1, 10 s, 5 min.
    pub fn refresh_ahead(mut self, fraction: f64, min: Duration, max: Duration) -> Self {
        self.config.fraction = fraction;
        self.config.min_ahead = min;
        self.config.max_ahead = max;
        self
    }

    /// The random spread of the refresh point, as a fraction of the time ahead (default 0.2,
    /// so ±20 %, kept within the bounds of [`refresh_ahead`](Self::refresh_ahead)); 0 for none.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.config.jitter = jitter;
        self
    }

    /// The longest a provider call may take (default 5 s).
    pub fn refresh_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// The wait after a failed refresh before the provider is called again: `initial`,
    /// doubling with each consecutive failure up to `max`, each drawn between half and all of
    /// it. Defaults: 1 s, 30 s.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.backoff_initial = initial;
        self.config.backoff_max = max;
        self
    }

    /// The least time between two refreshes forced by a 401 (default 5 s).
    pub fn reauth_interval(mut self, interval: Duration) -> Self {
        self.config.reauth_interval = interval;
        self
    }

    /// The cache.
    ///
    /// # Errors
    ///
    /// [`Error::is_config`] for a fraction outside `0..=1`, a jitter outside `0..1`,
    /// `min > max`, a zero timeout, or an initial backoff that is zero or above its maximum.
    pub fn build(self) -> Result<CachedProvider, Error> {
        let c = &self.config;
        if !(0.0..=1.0).contains(&c.fraction) {
            return Err(Error::config("refresh-ahead fraction must be within 0..=1"));
        }
        if !(0.0..1.0).contains(&c.jitter) {
            return Err(Error::config("refresh jitter must be within 0..1"));
        }
        if c.min_ahead > c.max_ahead {
            return Err(Error::config("refresh-ahead minimum is above its maximum"));
        }
        if c.timeout.is_zero() {
            return Err(Error::config("refresh timeout is zero"));
        }
        if c.backoff_initial.is_zero() || c.backoff_initial > c.backoff_max {
            return Err(Error::config(
                "refresh backoff must start above zero and at most at its maximum",
            ));
        }
        Ok(CachedProvider::from_parts(self.provider, self.config))
    }
}

impl CachedProvider {
    /// A cache with the default settings (see the type docs).
    pub fn new(provider: impl CredentialProvider) -> CachedProvider {
        CachedProvider::from_parts(Box::new(provider), CacheConfig::default())
    }

    fn from_parts(provider: Box<dyn CredentialProvider>, config: CacheConfig) -> CachedProvider {
        CachedProvider {
            shared: Arc::new(Shared {
                provider,
                config,
                current: ArcSwapOption::empty(),
                state: Mutex::new(State::default()),
                completed: AtomicU64::new(0),
                next_generation: AtomicU64::new(1),
                refreshing: AtomicBool::new(false),
                last_forced: std::sync::Mutex::new(None),
            }),
        }
    }

    /// A builder to change the settings.
    pub fn builder(provider: impl CredentialProvider) -> CachedProviderBuilder {
        CachedProviderBuilder {
            provider: Box::new(provider),
            config: CacheConfig::default(),
        }
    }

    /// Fetches a token now unless a valid one is cached: call it at startup to fail fast on a
    /// wrong client secret rather than on the first request.
    ///
    /// # Errors
    ///
    /// The provider's failure, as a request would see it ([`Error::is_provider`]).
    pub async fn prefetch(&self) -> Result<(), Error> {
        self.acquire().await.map(|_| ())
    }

    /// Drops the cached token, so that the next request fetches a new one.
    pub fn invalidate(&self) {
        self.shared.current.store(None);
    }

    /// The header tokens are attached in.
    pub(crate) fn header_name(&self) -> &HeaderName {
        &self.shared.config.header
    }

    /// A view of the cache for one service, for the warm path.
    pub(crate) fn local(&self) -> LocalView {
        LocalView {
            cache: arc_swap::Cache::new(Current(Arc::clone(&self.shared))),
            provider: self.clone(),
        }
    }

    /// The cached token if it may be used now, starting a background refresh if it is due.
    fn lookup(&self) -> Option<(HeaderValue, u64)> {
        self.usable(self.shared.current.load().as_ref()?)
    }

    /// The authority on whether a token may be used: tokio's clock.
    #[inline(never)]
    fn usable(&self, entry: &Entry) -> Option<(HeaderValue, u64)> {
        if let Some(refresh_at) = entry.refresh_at {
            let now = Instant::now();
            if now >= refresh_at {
                if !entry.is_valid(now) {
                    return None;
                }
                self.refresh_in_background();
            }
        }
        Some((entry.value.clone(), entry.generation))
    }

    /// A token to attach: the cached one, or a new one from the single flight.
    pub(crate) async fn acquire(&self) -> Result<(HeaderValue, u64), Error> {
        if let Some(found) = self.lookup() {
            return Ok(found);
        }
        let seen = self.shared.completed.load(Ordering::Acquire);
        let mut state = self.shared.state.lock().await;
        if let Some(found) = self.lookup() {
            return Ok(found);
        }
        if self.shared.completed.load(Ordering::Acquire) != seen
            && let Some(error) = &state.last_error
        {
            // The call this request waited for failed: share its error, do not call again.
            return Err(error.clone());
        }
        if let Some(error) = backing_off(&state, Instant::now()) {
            return Err(error);
        }
        self.fetch_locked(&mut state).await
    }

    /// After a 401 to a request that carried token `used`: drops that token if it is still
    /// the cached one, unless a 401 already forced a refresh within the re-authentication
    /// interval (then the provider is not asked again so soon).
    pub(crate) fn reject(&self, used: u64) {
        let current = self.shared.current.load();
        if current.as_ref().is_none_or(|e| e.generation != used) {
            return;
        }
        let now = Instant::now();
        {
            let mut last = lock(&self.shared.last_forced);
            if last.is_some_and(|t| {
                now.saturating_duration_since(t) < self.shared.config.reauth_interval
            }) {
                tracing::debug!(
                    target: "flext_auth",
                    generation = used,
                    "credential rejected with 401 again within the re-authentication interval; kept"
                );
                return;
            }
            *last = Some(now);
        }
        // Only if no other request replaced it meanwhile.
        drop(self.shared.current.compare_and_swap(&*current, None));
        tracing::debug!(target: "flext_auth", generation = used, "credential rejected with 401; invalidated");
    }

    /// After a 401 to a request that carried token `used`: [`reject`](Self::reject) it, then a
    /// different token to replay with, if one can be had.
    pub(crate) async fn after_unauthorized(&self, used: u64) -> Option<(HeaderValue, u64)> {
        self.reject(used);
        self.acquire().await.ok().filter(|(_, g)| *g != used)
    }

    fn refresh_in_background(&self) {
        if self.shared.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let this = self.clone();
                drop(handle.spawn(async move { this.refresh_ahead().await }));
            }
            // No runtime: the token stays in use until it expires, then a request refreshes.
            Err(_) => self.shared.refreshing.store(false, Ordering::Release),
        }
    }

    async fn refresh_ahead(&self) {
        let _flag = ClearOnDrop(&self.shared.refreshing);
        let mut state = self.shared.state.lock().await;
        let now = Instant::now();
        let due = self
            .shared
            .current
            .load()
            .as_ref()
            .is_none_or(|e| e.refresh_at.is_some_and(|at| now >= at));
        if !due || backing_off(&state, now).is_some() {
            return;
        }
        tracing::debug!(target: "flext_auth", "refreshing the credential ahead of expiry");
        if self.fetch_locked(&mut state).await.is_err() {
            // Keep the still-valid token, and look again when the backoff ends.
            let current = self.shared.current.load_full();
            if let (Some(entry), Some(retry_at)) = (current, state.retry_at) {
                let postponed = Entry::new(
                    entry.value.clone(),
                    entry.generation,
                    Some(retry_at.min(entry.expires_at.unwrap_or(retry_at))),
                    entry.expires_at,
                );
                self.shared.current.store(Some(postponed));
            }
        }
    }

    /// Calls the provider; the caller holds the single-flight lock.
    async fn fetch_locked(&self, state: &mut State) -> Result<(HeaderValue, u64), Error> {
        let shared = &*self.shared;
        let sent = Instant::now();
        let result =
            match tokio::time::timeout(shared.config.timeout, shared.provider.fetch()).await {
                Ok(Ok(token)) => self.store(&token, sent),
                Ok(Err(e)) => Err(match e.downcast::<Error>() {
                    Ok(ours) => *ours,
                    Err(other) => Error::new(Kind::Provider).with_source(SharedError::from(other)),
                }),
                Err(_) => Err(Error::new(Kind::RefreshTimeout)),
            };
        match &result {
            Ok(_) => {
                state.failures = 0;
                state.retry_at = None;
                state.last_error = None;
            }
            Err(error) => {
                state.failures = state.failures.saturating_add(1);
                let wait = self.backoff(state.failures);
                let now = Instant::now();
                state.retry_at = Some(now.checked_add(wait).unwrap_or(now));
                state.last_error = Some(error.clone());
                tracing::warn!(
                    target: "flext_auth",
                    error = %error,
                    cause = error.shared_source().map(tracing::field::display),
                    failures = state.failures,
                    retry_in = ?wait,
                    "credential refresh failed"
                );
            }
        }
        shared.completed.fetch_add(1, Ordering::AcqRel);
        result
    }

    fn store(&self, token: &Token, sent: Instant) -> Result<(HeaderValue, u64), Error> {
        let config = &self.shared.config;
        let secret = token.secret().expose_secret();
        let value = if config.bearer {
            credential::bearer_value(secret)
        } else {
            credential::plain_value(secret)
        };
        let mut value = value
            .map_err(|_| Error::new(Kind::TokenResponse("token cannot be sent in a header")))?;
        value.set_sensitive(true);
        let expires_at = match token.expiry() {
            None => None,
            Some(Expiry::In(lifetime)) => sent.checked_add(lifetime),
            Some(Expiry::At(at)) => Some(at),
        };
        let now = Instant::now();
        let refresh_at = match expires_at {
            None => None,
            Some(at) if at <= now => return Err(Error::new(Kind::Expired)),
            Some(at) => {
                let lifetime = at.saturating_duration_since(sent);
                Some(at - self.ahead(lifetime, fastrand::f64()))
            }
        };
        let generation = self.shared.next_generation.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            target: "flext_auth",
            generation,
            expires_in = ?expires_at.map(|at| at.saturating_duration_since(now)),
            refresh_in = ?refresh_at.map(|at| at.saturating_duration_since(now)),
            "credential refreshed"
        );
        self.shared.current.store(Some(Entry::new(
            value.clone(),
            generation,
            refresh_at,
            expires_at,
        )));
        Ok((value, generation))
    }

    /// How long before expiry to refresh a token living `lifetime`; `unit` in `0..1` places
    /// it within the jitter.
    fn ahead(&self, lifetime: Duration, unit: f64) -> Duration {
        let c = &self.shared.config;
        let half = lifetime / 2;
        let base = scale(lifetime, c.fraction)
            .clamp(c.min_ahead, c.max_ahead)
            .min(half);
        let lo = scale(base, 1.0 - c.jitter).max(c.min_ahead);
        let hi = scale(base, 1.0 + c.jitter).min(c.max_ahead).min(half);
        if lo >= hi {
            base
        } else {
            lo.saturating_add(scale(hi - lo, unit.clamp(0.0, 1.0)))
                .min(hi)
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        let c = &self.shared.config;
        let doubled = c
            .backoff_initial
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        // At most a day, so that the instant it ends can always be represented.
        let wait = doubled.min(c.backoff_max).min(Duration::from_secs(86_400));
        scale(wait, 0.5 + fastrand::f64() / 2.0)
    }
}

/// `d * factor`, saturating: `Duration::mul_f64` panics when float rounding goes past
/// `Duration::MAX`, which a huge configured bound can reach.
fn scale(d: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn backing_off(state: &State, now: Instant) -> Option<Error> {
    let retry_at = state.retry_at?;
    if now >= retry_at {
        return None;
    }
    let error = Error::new(Kind::Backoff);
    Some(match &state.last_error {
        Some(last) => error.with_source(Arc::new(last.clone())),
        None => error,
    })
}

/// One service's view of a [`CachedProvider`]: the warm path reads the current token through
/// arc-swap's `Cache`, one relaxed atomic load while the token does not change, and no
/// reference count touched.
#[derive(Clone)]
pub(crate) struct LocalView {
    cache: arc_swap::Cache<Current, Option<Arc<Entry>>>,
    provider: CachedProvider,
}

impl LocalView {
    /// The warm path: the cached token if it may be used now, starting a background refresh
    /// if it is due. A token known to be before its refresh point is taken without a clock
    /// read (see [`Watch`]).
    #[inline]
    pub(crate) fn lookup(&mut self) -> Option<(HeaderValue, u64)> {
        let entry = self.cache.load().as_ref()?;
        if entry.watch.is_fresh() {
            return Some((entry.value.clone(), entry.generation));
        }
        self.provider.usable(entry)
    }

    pub(crate) fn provider(&self) -> &CachedProvider {
        &self.provider
    }
}

impl fmt::Debug for LocalView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.provider.fmt(f)
    }
}

/// The current token of a cache, as arc-swap's `Cache` wants it.
#[derive(Clone)]
struct Current(Arc<Shared>);

impl std::ops::Deref for Current {
    type Target = ArcSwapOption<Entry>;

    fn deref(&self) -> &ArcSwapOption<Entry> {
        &self.0.current
    }
}

struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl fmt::Debug for CachedProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.shared.current.load();
        f.debug_struct("CachedProvider")
            .field("config", &self.shared.config)
            .field("token", &current.as_ref().map(|_| Redacted))
            .field("generation", &current.as_ref().map(|e| e.generation))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
