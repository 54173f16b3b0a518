//! [`ClientConfig`]: every setting of the client as plain, serde-readable data.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::serde_human;
use crate::error::Error;

/// The client's settings, loadable from TOML or JSON so that a service configures its client
/// from a file. Durations are written like `"250ms"`, `"10s"`, `"1m30s"`; optional ones take
/// `"off"`. Every field has a default, so a file names only what it changes; an unknown
/// field is an error (a typo must not be silently ignored).
///
/// Secrets (credentials) are not part of it: set them on the [`ClientBuilder`](crate::ClientBuilder).
///
/// ```
/// use std::time::Duration;
/// use flext_api::ClientConfig;
///
/// let config = ClientConfig::from_toml(r#"
///     base_url = "https://api.example.com/v1/"
///     timeout = "5s"
///     attempt_timeout = "2s"
///
///     [retry]
///     max_retries = 2
///
///     [breaker]
///     enabled = false
/// "#).unwrap();
/// assert_eq!(config.timeout, Duration::from_secs(5));
/// assert_eq!(config.retry.max_retries, 2);
/// assert!(!config.breaker.enabled);
///
/// let bad = ClientConfig::from_toml(r#"timeout = "soon""#).unwrap_err();
/// assert!(bad.is_builder());
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// Relative request paths are joined to it. Default: none.
    pub base_url: Option<String>,
    /// The `User-Agent` header. Default: `flext/<version>`.
    pub user_agent: Option<String>,
    /// Headers added to every request that does not set them. Default: none.
    pub default_headers: BTreeMap<String, String>,
    /// Total time for a call, every attempt and backoff included. Default: 30 s.
    #[serde(with = "serde_human")]
    pub timeout: Duration,
    /// Time for one attempt. Default: 10 s. Must not exceed `timeout`.
    #[serde(with = "serde_human")]
    pub attempt_timeout: Duration,
    /// Time to open a TCP connection. Default: 10 s.
    #[serde(with = "serde_human")]
    pub connect_timeout: Duration,
    /// Largest response body `bytes()`, `text()` and `json()` will read. Default: 64 MiB.
    pub max_response_body: u64,
    /// Which HTTP versions to speak. Default: `auto` (HTTP/2 when TLS ALPN says so).
    pub protocol: HttpVersionPref,
    /// Extra CA certificates (PEM files) to trust, for private PKI. Default: none.
    pub ca_certs: Vec<PathBuf>,
    /// Accept any server certificate. For development only; never in production.
    pub danger_accept_invalid_certs: bool,
    /// Redirects followed per call; 0 turns following off. Default: 10.
    pub max_redirects: usize,
    /// Retry settings.
    pub retry: RetrySettings,
    /// Circuit breaker settings.
    pub breaker: BreakerSettings,
    /// Connection pool settings.
    pub pool: PoolSettings,
    /// Tracing settings.
    pub trace: TraceSettings,
}

/// Every field, but the base URL without user-info or query (they may hold secrets).
impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let base_url = self.base_url.as_deref().map(crate::url::redacted_text);
        f.debug_struct("ClientConfig")
            .field("base_url", &base_url)
            .field("user_agent", &self.user_agent)
            .field("default_headers", &self.default_headers)
            .field("timeout", &self.timeout)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_response_body", &self.max_response_body)
            .field("protocol", &self.protocol)
            .field("ca_certs", &self.ca_certs)
            .field(
                "danger_accept_invalid_certs",
                &self.danger_accept_invalid_certs,
            )
            .field("max_redirects", &self.max_redirects)
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .field("pool", &self.pool)
            .field("trace", &self.trace)
            .finish()
    }
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            base_url: None,
            user_agent: None,
            default_headers: BTreeMap::new(),
            timeout: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            max_response_body: 64 * 1024 * 1024,
            protocol: HttpVersionPref::Auto,
            ca_certs: Vec::new(),
            danger_accept_invalid_certs: false,
            max_redirects: 10,
            retry: RetrySettings::default(),
            breaker: BreakerSettings::default(),
            pool: PoolSettings::default(),
            trace: TraceSettings::default(),
        }
    }
}

/// Which HTTP versions the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum HttpVersionPref {
    /// HTTP/2 over TLS when the server's ALPN picks it, else HTTP/1.1; HTTP/1.1 on plain http.
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 without negotiation, also on plain http (h2c).
    Http2PriorKnowledge,
}

/// Retry settings (see flext-retry for where each default comes from).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrySettings {
    /// Whether to retry at all. Default: on.
    pub enabled: bool,
    /// Retries after the first attempt, at most 10. Default: 3.
    pub max_retries: u32,
    /// First backoff; it doubles each retry, with full jitter. Default: 100 ms.
    #[serde(with = "serde_human")]
    pub backoff_base: Duration,
    /// Largest backoff. Default: 10 s.
    #[serde(with = "serde_human")]
    pub backoff_max: Duration,
    /// Longest `Retry-After` honoured; a server asking for more gets its response returned.
    /// Default: 60 s.
    #[serde(with = "serde_human")]
    pub max_retry_after: Duration,
    /// Largest request body kept for replay. Default: 64 KiB.
    pub max_replay_bytes: usize,
    /// Retries may not exceed this share of requests... Default: 0.2.
    pub budget_ratio: f64,
    /// ...plus this many per second. Default: 10.
    pub budget_min_per_second: u32,
}

impl Default for RetrySettings {
    fn default() -> RetrySettings {
        RetrySettings {
            enabled: true,
            max_retries: 3,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
            max_replay_bytes: 64 * 1024,
            budget_ratio: 0.2,
            budget_min_per_second: 10,
        }
    }
}

/// Circuit breaker settings (see flext-breaker for where each default comes from).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSettings {
    /// Whether to use circuit breakers. Default: on.
    pub enabled: bool,
    /// Failures in a row that open a circuit. Default: 5.
    pub consecutive_failures: u32,
    /// Failure rate over the window that opens a circuit. Default: 0.5.
    pub failure_rate: f64,
    /// Calls the window must have seen before the rate counts. Default: 20.
    pub minimum_calls: u32,
    /// Length of the sliding window, in 1 s buckets (64 longer ones for a window over
    /// 64 s); at least 1 ms. Default: 20 s, which is twice the
    /// default attempt timeout (the client checks `window >= 2 x attempt_timeout`, as .NET's
    /// standard resilience handler does: a shorter window cannot see slow failures).
    #[serde(with = "serde_human")]
    pub window: Duration,
    /// First open time (jittered by 10%); it doubles after each failed probe. Default: 30 s.
    #[serde(with = "serde_human")]
    pub open_for: Duration,
    /// Longest open time. Default: 5 min.
    #[serde(with = "serde_human")]
    pub max_open_for: Duration,
    /// Calls let through when half-open. Default: 1.
    pub half_open_probes: u32,
    /// The clock the breakers read. Default: [`BreakerClock::Coarse`].
    pub clock: BreakerClock,
}

/// The clock the circuit breakers read (`breaker.clock` in a config file: `"coarse"` or
/// `"tokio"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum BreakerClock {
    /// The kernel's coarse monotonic clock: cheap enough to read on every call, with a
    /// resolution of a few milliseconds. The default.
    #[default]
    Coarse,
    /// tokio's clock, which follows `tokio::time::pause` and `advance`: for tests that drive
    /// the client on tokio's paused clock and expect an open circuit to move on with it.
    Tokio,
}

impl Default for BreakerSettings {
    fn default() -> BreakerSettings {
        BreakerSettings {
            enabled: true,
            consecutive_failures: 5,
            failure_rate: 0.5,
            minimum_calls: 20,
            window: Duration::from_secs(20),
            open_for: Duration::from_secs(30),
            max_open_for: Duration::from_secs(300),
            half_open_probes: 1,
            clock: BreakerClock::Coarse,
        }
    }
}

/// Connection pool settings (see flext-pool and `docs/pool-tuning.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolSettings {
    /// Connections per origin. Default: 100.
    pub max_connections_per_origin: usize,
    /// Idle connections kept per origin. Default: 20.
    pub max_idle_per_origin: usize,
    /// Idle connections are closed after this. Default: 30 s.
    #[serde(with = "serde_human::option")]
    pub idle_timeout: Option<Duration>,
    /// Connections are retired after this (jittered). Default: 5 min.
    #[serde(with = "serde_human::option")]
    pub max_lifetime: Option<Duration>,
    /// HTTP/2 connections per origin when streams run out (never past
    /// `max_connections_per_origin`). Default: 100.
    pub http2_max_connections_per_origin: usize,
    /// Requests waiting for a connection per origin. Default: 1,024.
    pub max_waiters_per_origin: usize,
    /// Longest wait for a connection. Default: 30 s.
    #[serde(with = "serde_human")]
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> PoolSettings {
        PoolSettings {
            max_connections_per_origin: 100,
            max_idle_per_origin: 20,
            idle_timeout: Some(Duration::from_secs(30)),
            max_lifetime: Some(Duration::from_secs(300)),
            http2_max_connections_per_origin: 100,
            max_waiters_per_origin: 1024,
            acquire_timeout: Duration::from_secs(30),
        }
    }
}

/// Tracing settings (see flext-trace and `docs/observability.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TraceSettings {
    /// Spans and metrics. Default: on.
    pub enabled: bool,
    /// When to send W3C `traceparent`. Default: [`Propagate::Recorded`]. Nothing is sent
    /// when `enabled` is off, which removes the trace layers.
    pub propagate: Propagate,
}

/// When the client sends W3C trace context (`trace.propagate` in a config file: `"off"`,
/// `"recorded"` or `"always"`; the booleans of earlier versions still read, `true` as
/// `"recorded"` and `false` as `"off"`); see [`flext_trace::TraceContext`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Propagate {
    /// Never; a `traceparent` the caller set is sent as it is.
    Off,
    /// The default: the call's trace is sent when a `tracing` subscriber records its spans
    /// (their `trace_id` is the one sent), or when the call already belongs to a trace (an
    /// OpenTelemetry context, a `traceparent` the caller set). With nothing recording, no
    /// trace is made up: what OpenTelemetry instrumentation does with no tracer installed.
    #[default]
    Recorded,
    /// Every call carries a trace id, recorded or not (flags `00` when nothing records it).
    Always,
}

impl<'de> Deserialize<'de> for Propagate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Propagate, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "lowercase")]
        enum Named {
            Off,
            Recorded,
            Always,
        }
        #[derive(Deserialize)]
        #[serde(untagged, expecting = "\"off\", \"recorded\" or \"always\"")]
        enum Repr {
            Named(Named),
            Bool(bool),
        }
        // `untagged` needs a self-describing format; a binary one reads the names alone.
        if !d.is_human_readable() {
            return Ok(match Named::deserialize(d)? {
                Named::Off => Propagate::Off,
                Named::Recorded => Propagate::Recorded,
                Named::Always => Propagate::Always,
            });
        }
        Ok(match Repr::deserialize(d)? {
            Repr::Named(Named::Off) | Repr::Bool(false) => Propagate::Off,
            Repr::Named(Named::Recorded) | Repr::Bool(true) => Propagate::Recorded,
            Repr::Named(Named::Always) => Propagate::Always,
        })
    }
}

impl Propagate {
    /// The flext-trace setting this stands for.
    pub(crate) fn trace_context(self) -> flext_trace::TraceContext {
        match self {
            Propagate::Off => flext_trace::TraceContext::Off,
            Propagate::Recorded => flext_trace::TraceContext::Recorded,
            Propagate::Always => flext_trace::TraceContext::Always,
        }
    }
}

impl Default for TraceSettings {
    fn default() -> TraceSettings {
        TraceSettings {
            enabled: true,
            propagate: Propagate::Recorded,
        }
    }
}

impl ClientConfig {
    /// Reads a configuration from TOML text.
    ///
    /// # Errors
    ///
    /// A builder error naming the problem (syntax, unknown field, bad duration), or a
    /// setting that fails [`validate`](Self::validate).
    pub fn from_toml(text: &str) -> Result<ClientConfig, Error> {
        let config: ClientConfig =
            toml::from_str(text).map_err(|e| Error::builder("config", e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads a configuration from JSON text.
    ///
    /// # Errors
    ///
    /// As [`from_toml`](Self::from_toml).
    pub fn from_json(text: &str) -> Result<ClientConfig, Error> {
        let config: ClientConfig =
            serde_json::from_str(text).map_err(|e| Error::builder("config", e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Writes the configuration as TOML.
    ///
    /// # Errors
    ///
    /// Only if serialisation fails, which these types do not cause.
    pub fn to_toml(&self) -> Result<String, Error> {
        toml::to_string(self).map_err(|e| Error::builder("config", e.to_string()))
    }

    /// Checks the settings against each other, as .NET's standard resilience handler does.
    ///
    /// # Errors
    ///
    /// A builder error naming the first setting that is out of bounds.
    pub fn validate(&self) -> Result<(), Error> {
        fn check(ok: bool, setting: &'static str, why: String) -> Result<(), Error> {
            if ok {
                Ok(())
            } else {
                Err(Error::builder(setting, why))
            }
        }
        let d = crate::duration::format;
        check(
            !self.timeout.is_zero(),
            "timeout",
            "must be above zero".into(),
        )?;
        check(
            !self.attempt_timeout.is_zero(),
            "attempt_timeout",
            "must be above zero".into(),
        )?;
        check(
            self.attempt_timeout <= self.timeout,
            "attempt_timeout",
            format!(
                "must be at most timeout ({} > {})",
                d(self.attempt_timeout),
                d(self.timeout)
            ),
        )?;
        check(
            !self.connect_timeout.is_zero(),
            "connect_timeout",
            "must be above zero".into(),
        )?;
        let r = &self.retry;
        check(
            r.max_retries <= flext_retry::MAX_RETRIES,
            "retry.max_retries",
            format!("must be at most {}", flext_retry::MAX_RETRIES),
        )?;
        check(
            r.backoff_base <= r.backoff_max,
            "retry.backoff_base",
            "must be at most retry.backoff_max".into(),
        )?;
        check(
            (0.0..=1.0).contains(&r.budget_ratio),
            "retry.budget_ratio",
            "must be between 0 and 1".into(),
        )?;
        check(
            r.budget_min_per_second <= 100_000,
            "retry.budget_min_per_second",
            "must be at most 100000".into(),
        )?;
        let b = &self.breaker;
        if b.enabled {
            check(
                b.window >= self.attempt_timeout.saturating_mul(2),
                "breaker.window",
                format!(
                    "must be at least twice attempt_timeout ({} < 2 x {})",
                    d(b.window),
                    d(self.attempt_timeout)
                ),
            )?;
            check(
                b.failure_rate > 0.0 && b.failure_rate <= 1.0,
                "breaker.failure_rate",
                "must be above 0 and at most 1".into(),
            )?;
            check(
                b.window >= Duration::from_millis(1),
                "breaker.window",
                "must be at least 1ms".into(),
            )?;
            check(
                b.minimum_calls > 0,
                "breaker.minimum_calls",
                "must be above zero".into(),
            )?;
            check(
                b.consecutive_failures > 0,
                "breaker.consecutive_failures",
                "must be above zero".into(),
            )?;
            check(
                (1..=1000).contains(&b.half_open_probes),
                "breaker.half_open_probes",
                "must be between 1 and 1000".into(),
            )?;
            check(
                !b.open_for.is_zero(),
                "breaker.open_for",
                "must be above zero".into(),
            )?;
            check(
                b.open_for <= b.max_open_for,
                "breaker.open_for",
                "must be at most breaker.max_open_for".into(),
            )?;
        }
        let p = &self.pool;
        check(
            p.max_connections_per_origin > 0,
            "pool.max_connections_per_origin",
            "must be above zero".into(),
        )?;
        check(
            p.http2_max_connections_per_origin > 0,
            "pool.http2_max_connections_per_origin",
            "must be above zero".into(),
        )?;
        check(
            p.max_waiters_per_origin > 0,
            "pool.max_waiters_per_origin",
            "must be above zero".into(),
        )?;
        check(
            !p.acquire_timeout.is_zero(),
            "pool.acquire_timeout",
            "must be above zero".into(),
        )?;
        check(
            p.idle_timeout != Some(Duration::ZERO),
            "pool.idle_timeout",
            "must be above zero (or \"off\")".into(),
        )?;
        check(
            p.max_lifetime != Some(Duration::ZERO),
            "pool.max_lifetime",
            "must be above zero (or \"off\")".into(),
        )?;
        if let Some(base) = &self.base_url {
            crate::url::BaseUrl::parse(base)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_propagate_reads_its_names_and_the_old_booleans() {
        for (text, expected) in [
            ("\"off\"", Propagate::Off),
            ("\"recorded\"", Propagate::Recorded),
            ("\"always\"", Propagate::Always),
            ("true", Propagate::Recorded),
            ("false", Propagate::Off),
        ] {
            let c = ClientConfig::from_toml(&format!("[trace]\npropagate = {text}\n")).unwrap();
            assert_eq!(c.trace.propagate, expected, "{text}");
            let written = toml::to_string(&c).unwrap();
            assert!(
                written.contains(&format!(
                    "propagate = \"{}\"",
                    match expected {
                        Propagate::Off => "off",
                        Propagate::Recorded => "recorded",
                        _ => "always",
                    }
                )),
                "{written}"
            );
        }
        for (json, expected) in [
            ("true", Propagate::Recorded),
            ("\"always\"", Propagate::Always),
        ] {
            let c: ClientConfig =
                serde_json::from_str(&format!(r#"{{"trace": {{"propagate": {json}}}}}"#)).unwrap();
            assert_eq!(c.trace.propagate, expected, "{json}");
        }
        let err = ClientConfig::from_toml("[trace]\npropagate = \"sometimes\"\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("\"off\", \"recorded\" or \"always\""),
            "{err}"
        );
    }

    #[test]
    fn defaults_are_valid_and_round_trip_through_toml_and_json() {
        let c = ClientConfig::default();
        c.validate().unwrap();
        let text = c.to_toml().unwrap();
        assert_eq!(ClientConfig::from_toml(&text).unwrap(), c);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(ClientConfig::from_json(&json).unwrap(), c);
        assert!(text.contains("timeout = \"30s\""), "{text}");
    }

    #[test]
    fn errors_name_the_setting() {
        let e = ClientConfig::from_toml("attempt_timeout = \"40s\"").unwrap_err();
        assert!(e.is_builder());
        assert!(e.to_string().contains("attempt_timeout"), "{e}");
        let e = ClientConfig::from_toml("[breaker]\nwindow = \"5s\"").unwrap_err();
        assert!(e.to_string().contains("breaker.window"), "{e}");
        let e = ClientConfig::from_toml("[retry]\nmax_retries = 11").unwrap_err();
        assert!(e.to_string().contains("retry.max_retries"), "{e}");
        let e = ClientConfig::from_toml("timeuot = \"1s\"").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = ClientConfig::from_json("{\"pool\": {\"idle_timeout\": \"never\"}}").unwrap_err();
        assert!(e.to_string().contains("invalid duration"), "{e}");
        let off = ClientConfig::from_json("{\"pool\": {\"idle_timeout\": \"off\"}}").unwrap();
        assert_eq!(off.pool.idle_timeout, None);
    }
}
