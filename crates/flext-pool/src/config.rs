//! [`Config`]: the pool's limits and protocol settings, validated by [`ConfigBuilder`].

use std::fmt;
use std::time::Duration;

/// The pool's settings. [`Config::default`] holds the production defaults; change them with
/// [`Config::builder`], which validates the values.
///
/// Every limit is per origin (scheme, host and port): two origins never share connections,
/// waiters or limits. `docs/pool-tuning.md` explains each default and how to size them.
///
/// ```
/// use std::time::Duration;
/// use flext_pool::Config;
///
/// let config = Config::builder()
///     .max_connections_per_origin(10)
///     .acquire_timeout(Duration::from_secs(2))
///     .build()?;
/// assert_eq!(config.max_connections_per_origin(), 10);
/// assert_eq!(config.max_idle_per_origin(), 10); // capped at the connection limit
///
/// // Bad values are typed errors, never panics.
/// assert!(Config::builder().max_connections_per_origin(0).build().is_err());
/// # Ok::<(), flext_pool::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) max_connections: usize,
    pub(crate) max_idle: usize,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) lifetime_jitter: f64,
    pub(crate) max_waiters: usize,
    pub(crate) acquire_timeout: Duration,
    pub(crate) ready_limit: Option<usize>,
    pub(crate) connect_timeout: Duration,
    pub(crate) http1_only: bool,
    pub(crate) http2_prior_knowledge: bool,
    pub(crate) http2_max_connections: usize,
    pub(crate) http2_max_streams_per_connection: Option<u32>,
    pub(crate) http2_keep_alive_interval: Option<Duration>,
    pub(crate) http2_keep_alive_timeout: Duration,
    pub(crate) http2_adaptive_window: bool,
    pub(crate) retry_never_sent_once: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_connections: 100,
            max_idle: 20,
            idle_timeout: Some(Duration::from_secs(30)),
            max_lifetime: Some(Duration::from_secs(300)),
            lifetime_jitter: 0.1,
            max_waiters: 1024,
            acquire_timeout: Duration::from_secs(30),
            ready_limit: Some(1024),
            connect_timeout: Duration::from_secs(10),
            http1_only: false,
            http2_prior_knowledge: false,
            http2_max_connections: 100,
            http2_max_streams_per_connection: None,
            http2_keep_alive_interval: Some(Duration::from_secs(30)),
            http2_keep_alive_timeout: Duration::from_secs(20),
            http2_adaptive_window: true,
            retry_never_sent_once: true,
        }
    }
}

impl Config {
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config::default(),
        }
    }

    /// Most connections open to one origin, HTTP/1.1 and HTTP/2 together, connects in
    /// progress included. Default 100.
    pub fn max_connections_per_origin(&self) -> usize {
        self.max_connections
    }

    /// Most idle HTTP/1.1 connections kept per origin. Default 20.
    pub fn max_idle_per_origin(&self) -> usize {
        self.max_idle
    }

    /// How long an unused connection is kept. Default 30 s.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// Longest a connection is used for new requests, before jitter. Default 5 min.
    pub fn max_lifetime(&self) -> Option<Duration> {
        self.max_lifetime
    }

    /// Most requests queued per origin waiting for a connection. Default 1,024.
    pub fn max_waiters_per_origin(&self) -> usize {
        self.max_waiters
    }

    /// Longest a request waits for a connection. Default 30 s.
    pub fn acquire_timeout(&self) -> Duration {
        self.acquire_timeout
    }

    /// Requests queued across the whole pool at which `poll_ready` stops saying ready.
    /// Default 1,024.
    pub fn ready_limit(&self) -> Option<usize> {
        self.ready_limit
    }

    /// Longest a new connection may take: TCP, proxy, TLS and the HTTP handshake together.
    /// Default 10 s.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Whether HTTP/2 is never used. Default `false`.
    pub fn http1_only(&self) -> bool {
        self.http1_only
    }

    /// Whether plain `http` origins speak HTTP/2 without negotiation (h2c). Default `false`.
    pub fn http2_prior_knowledge(&self) -> bool {
        self.http2_prior_knowledge
    }

    /// Most HTTP/2 connections per origin (at most `max_connections_per_origin`). Default 100.
    pub fn http2_max_connections_per_origin(&self) -> usize {
        self.http2_max_connections
    }

    /// A local cap on streams per HTTP/2 connection, below the peer's own limit. Default none.
    pub fn http2_max_streams_per_connection(&self) -> Option<u32> {
        self.http2_max_streams_per_connection
    }
}

/// Builds a validated [`Config`]; start with [`Config::builder`].
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    config: Config,
}

impl ConfigBuilder {
    /// Most connections open to one origin (HTTP/1.1 and HTTP/2 together, connects in
    /// progress included). Default 100; at least 1.
    pub fn max_connections_per_origin(mut self, max: usize) -> Self {
        self.config.max_connections = max;
        self
    }

    /// Most idle HTTP/1.1 connections kept per origin; more are closed when released.
    /// Default 20; capped at the connection limit.
    pub fn max_idle_per_origin(mut self, max: usize) -> Self {
        self.config.max_idle = max;
        self
    }

    /// How long an unused connection (an idle HTTP/1.1 connection, an HTTP/2 connection
    /// with no stream) is kept; `None` keeps it until the server closes it. Default 30 s.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// Longest a connection takes new requests, so that DNS changes and server-side
    /// rebalancing are followed; `None` for no limit. Each connection's lifetime is shortened
    /// by a random part of up to a tenth so that connections opened together do not all
    /// close together. Default 5 min.
    pub fn max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.config.max_lifetime = lifetime;
        self
    }

    /// Most requests queued per origin waiting for a connection, in FIFO order; one more
    /// fails at once with an acquire error. Default 1,024; at least 1.
    pub fn max_waiters_per_origin(mut self, max: usize) -> Self {
        self.config.max_waiters = max;
        self
    }

    /// Longest a request waits for a connection before it fails with an acquire error
    /// (never sent). A request's [`flext_core::Deadline`] shortens it; a wait that the
    /// deadline ends fails as a timeout (never sent) instead. Default 30 s.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.config.acquire_timeout = timeout;
        self
    }

    /// The number of requests queued for a connection, across the pool, at which
    /// `poll_ready` returns `Pending` until one leaves the queue; `None` makes the pool
    /// always ready. Default 1,024.
    pub fn ready_limit(mut self, limit: Option<usize>) -> Self {
        self.config.ready_limit = limit;
        self
    }

    /// Longest a new connection may take, TCP connect, proxy tunnel, TLS and HTTP handshake
    /// together. Default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Never use HTTP/2: TLS offers only `http/1.1` in ALPN. Default `false`.
    pub fn http1_only(mut self, enabled: bool) -> Self {
        self.config.http1_only = enabled;
        self
    }

    /// Speak HTTP/2 without negotiation on plain `http` origins (h2c with prior knowledge).
    /// `https` origins follow ALPN whatever this says. Default `false`.
    pub fn http2_prior_knowledge(mut self, enabled: bool) -> Self {
        self.config.http2_prior_knowledge = enabled;
        self
    }

    /// Most HTTP/2 connections per origin. A new one is opened only when every open one has
    /// as many active streams as its peer allows, and never past
    /// [`max_connections_per_origin`](Self::max_connections_per_origin). Default 100, the
    /// same bound as HTTP/1.1's: a server that allows few streams per connection still gets
    /// as many requests at once as it would over HTTP/1.1 (Go and Envoy open more
    /// connections the same way). At least 1.
    pub fn http2_max_connections_per_origin(mut self, max: usize) -> Self {
        self.config.http2_max_connections = max;
        self
    }

    /// A local cap on active streams per HTTP/2 connection, applied below the peer's
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`. Default none (the peer's limit, or 100 while the
    /// peer names none, as hyper assumes).
    pub fn http2_max_streams_per_connection(mut self, max: Option<u32>) -> Self {
        self.config.http2_max_streams_per_connection = max;
        self
    }

    /// HTTP/2 keep-alive: a PING this often, also while the connection is idle; `None`
    /// disables it. Default 30 s.
    pub fn http2_keep_alive_interval(mut self, interval: Option<Duration>) -> Self {
        self.config.http2_keep_alive_interval = interval;
        self
    }

    /// How long to wait for a keep-alive PING's answer before closing the connection.
    /// Default 20 s.
    pub fn http2_keep_alive_timeout(mut self, timeout: Duration) -> Self {
        self.config.http2_keep_alive_timeout = timeout;
        self
    }

    /// HTTP/2 adaptive flow-control window (BDP estimation). Default on.
    pub fn http2_adaptive_window(mut self, enabled: bool) -> Self {
        self.config.http2_adaptive_window = enabled;
        self
    }

    /// Resend once, on another connection, a request that a reused connection closed
    /// before a byte of it was written (it was never sent, so this is safe for any method).
    /// Default on.
    pub fn retry_never_sent_once(mut self, enabled: bool) -> Self {
        self.config.retry_never_sent_once = enabled;
        self
    }

    /// Checks the values and returns the config.
    ///
    /// # Errors
    ///
    /// A zero connection, HTTP/2 connection or waiter limit, a zero stream cap, or a zero
    /// acquire, connect or keep-alive timeout.
    pub fn build(self) -> Result<Config, ConfigError> {
        let mut c = self.config;
        let positive = |v: usize, what: &'static str| {
            if v == 0 {
                Err(ConfigError::new(what, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        positive(c.max_connections, "max_connections_per_origin")?;
        positive(c.http2_max_connections, "http2_max_connections_per_origin")?;
        positive(c.max_waiters, "max_waiters_per_origin")?;
        if c.http2_max_streams_per_connection == Some(0) {
            return Err(ConfigError::new(
                "http2_max_streams_per_connection",
                "must be at least 1",
            ));
        }
        let nonzero = |d: Duration, what: &'static str| {
            if d.is_zero() {
                Err(ConfigError::new(what, "must be above zero"))
            } else {
                Ok(())
            }
        };
        nonzero(c.acquire_timeout, "acquire_timeout")?;
        nonzero(c.connect_timeout, "connect_timeout")?;
        nonzero(c.http2_keep_alive_timeout, "http2_keep_alive_timeout")?;
        if let Some(d) = c.http2_keep_alive_interval {
            nonzero(d, "http2_keep_alive_interval")?;
        }
        if let Some(d) = c.idle_timeout {
            nonzero(d, "idle_timeout")?;
        }
        if let Some(d) = c.max_lifetime {
            nonzero(d, "max_lifetime")?;
        }
        if c.ready_limit == Some(0) {
            return Err(ConfigError::new("ready_limit", "must be at least 1"));
        }
        if c.http1_only && c.http2_prior_knowledge {
            return Err(ConfigError::new(
                "http2_prior_knowledge",
                "cannot be combined with http1_only",
            ));
        }
        c.max_idle = c.max_idle.min(c.max_connections);
        c.http2_max_connections = c.http2_max_connections.min(c.max_connections);
        Ok(c)
    }
}

/// A setting that cannot be used: a zero limit, a bad certificate, a bad proxy address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    setting: &'static str,
    problem: String,
}

impl ConfigError {
    pub(crate) fn new(setting: &'static str, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            setting,
            problem: problem.into(),
        }
    }

    /// The name of the setting at fault (`max_connections_per_origin`, `root_pem`, ...).
    pub fn setting(&self) -> &str {
        self.setting
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid pool setting {}: {}", self.setting, self.problem)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.max_connections_per_origin(), 100);
        assert_eq!(c.max_idle_per_origin(), 20);
        assert_eq!(c.idle_timeout(), Some(Duration::from_secs(30)));
        assert_eq!(c.max_lifetime(), Some(Duration::from_secs(300)));
        assert_eq!(c.max_waiters_per_origin(), 1024);
        assert_eq!(c.acquire_timeout(), Duration::from_secs(30));
        assert_eq!(c.connect_timeout(), Duration::from_secs(10));
        assert_eq!(c.http2_max_connections_per_origin(), 100);
        assert!(Config::builder().build().is_ok());
    }

    #[test]
    fn http2_connections_never_exceed_the_connection_limit() {
        let c = Config::builder()
            .max_connections_per_origin(10)
            .build()
            .unwrap();
        assert_eq!(c.http2_max_connections_per_origin(), 10);
        let c = Config::builder()
            .max_connections_per_origin(10)
            .http2_max_connections_per_origin(3)
            .build()
            .unwrap();
        assert_eq!(c.http2_max_connections_per_origin(), 3);
    }

    #[test]
    fn rejects_bad_values_with_the_setting_named() {
        let e = Config::builder()
            .max_waiters_per_origin(0)
            .build()
            .unwrap_err();
        assert_eq!(e.setting(), "max_waiters_per_origin");
        assert_eq!(
            e.to_string(),
            "invalid pool setting max_waiters_per_origin: must be at least 1"
        );
        let e = Config::builder()
            .acquire_timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(e.setting(), "acquire_timeout");
        let e = Config::builder()
            .http1_only(true)
            .http2_prior_knowledge(true)
            .build()
            .unwrap_err();
        assert_eq!(e.setting(), "http2_prior_knowledge");
        assert!(
            Config::builder()
                .http2_max_streams_per_connection(Some(0))
                .build()
                .is_err()
        );
    }
}
