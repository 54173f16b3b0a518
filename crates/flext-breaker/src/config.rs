//! [`BreakerConfig`]: the settings of one breaker, and [`ConfigError`].

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// The most probes a half-open breaker can admit at once (they are counted in 10 bits).
pub(crate) const MAX_PROBES: u32 = 1000;
/// The most buckets a window can have.
pub(crate) const MAX_BUCKETS: u32 = 64;

/// The settings of one breaker: when it trips, how long it stays open, how it probes.
///
/// The defaults, and where they come from:
///
/// | setting | default | source |
/// |---|---|---|
/// | [`consecutive_failures`](Self::consecutive_failures) | 5 | Envoy outlier detection's `consecutive_5xx` |
/// | [`failure_rate`](Self::failure_rate) | 50% once 20 calls were seen | Hystrix (`errorThresholdPercentage`, `requestVolumeThreshold`), resilience4j's 50% |
/// | [`window`](Self::window) | 10 s in 10 buckets of 1 s | Hystrix's rolling window |
/// | [`slow_call`](Self::slow_call) | off | resilience4j's slow-call rule, opt-in |
/// | [`open_duration`](Self::open_duration) | 30 s, ±10% jitter | Envoy's `base_ejection_time` |
/// | [`max_open_duration`](Self::max_open_duration) | 5 min, doubling per failed probe | Envoy's `max_ejection_time` |
/// | [`half_open_probes`](Self::half_open_probes) | 1 | Hystrix, Polly (one trial call) |
/// | [`half_open_timeout`](Self::half_open_timeout) | 30 s | resilience4j's `maxWaitDurationInHalfOpenState` (off there) |
/// | [`respect_retry_after`](Self::respect_retry_after) | on | RFC 9110 §10.2.3 |
///
/// ```
/// use std::time::Duration;
/// use flext_breaker::BreakerConfig;
///
/// let config = BreakerConfig::default()
///     .consecutive_failures(3)
///     .failure_rate(0.25, 50)
///     .slow_call(Duration::from_secs(2))
///     .open_duration(Duration::from_secs(10));
/// assert!(config.validate().is_ok());
/// assert!(BreakerConfig::default().half_open_probes(0).validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    pub(crate) consecutive_failures: u32,
    pub(crate) failure_rate: Option<(f64, u32)>,
    pub(crate) window: Duration,
    pub(crate) buckets: u32,
    pub(crate) slow_call: Option<Duration>,
    pub(crate) open_duration: Duration,
    pub(crate) max_open_duration: Duration,
    pub(crate) jitter: f64,
    pub(crate) half_open_probes: u32,
    pub(crate) half_open_timeout: Duration,
    pub(crate) respect_retry_after: bool,
}

impl Default for BreakerConfig {
    fn default() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 5,
            failure_rate: Some((0.5, 20)),
            window: Duration::from_secs(10),
            buckets: 10,
            slow_call: None,
            open_duration: Duration::from_secs(30),
            max_open_duration: Duration::from_secs(300),
            jitter: 0.1,
            half_open_probes: 1,
            half_open_timeout: Duration::from_secs(30),
            respect_retry_after: true,
        }
    }
}

impl BreakerConfig {
    /// Trips after `n` failures in a row; 0 turns this rule off.
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive_failures = n;
        self
    }

    /// Trips when the share of failures over the window reaches `threshold` (in `(0, 1]`),
    /// once at least `min_calls` calls were recorded in the window.
    pub fn failure_rate(mut self, threshold: f64, min_calls: u32) -> Self {
        self.failure_rate = Some((threshold, min_calls));
        self
    }

    /// Turns the failure-rate rule off.
    pub fn no_failure_rate(mut self) -> Self {
        self.failure_rate = None;
        self
    }

    /// The sliding window of the failure-rate rule: `length`, kept in `buckets` buckets
    /// (1 to 64, each at least 1 ms long). Calls leave the window one bucket at a time.
    pub fn window(mut self, length: Duration, buckets: u32) -> Self {
        self.window = length;
        self.buckets = buckets;
        self
    }

    /// Counts a call that took longer than `threshold` (until the response head, or the
    /// error) as a failure, even if it succeeded.
    pub fn slow_call(mut self, threshold: Duration) -> Self {
        self.slow_call = Some(threshold);
        self
    }

    /// How long the breaker stays open after it trips; each failed probe doubles it, up to
    /// [`max_open_duration`](Self::max_open_duration), and a successful probe resets it.
    pub fn open_duration(mut self, d: Duration) -> Self {
        self.open_duration = d;
        self
    }

    /// The longest open time, for doubling and for a server's `Retry-After` alike.
    pub fn max_open_duration(mut self, d: Duration) -> Self {
        self.max_open_duration = d;
        self
    }

    /// The random spread of each open time, as a fraction (0 to 0.5): 0.1 gives ±10%, so
    /// that many clients do not probe a recovering server all at once.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction;
        self
    }

    /// How many probes a half-open breaker lets through (1 to 1,000); all of them must
    /// succeed to close it, and any failure opens it again.
    pub fn half_open_probes(mut self, n: u32) -> Self {
        self.half_open_probes = n;
        self
    }

    /// How long a half-open breaker waits for its probes' verdicts; past that it opens again
    /// as if a probe had failed, so a hung probe never leaves the breaker stuck.
    pub fn half_open_timeout(mut self, d: Duration) -> Self {
        self.half_open_timeout = d;
        self
    }

    /// Whether a `Retry-After` on a 429 or 503 response makes the next open time at least
    /// that long (capped at [`max_open_duration`](Self::max_open_duration)).
    pub fn respect_retry_after(mut self, yes: bool) -> Self {
        self.respect_retry_after = yes;
        self
    }

    /// Checks every setting.
    ///
    /// # Errors
    ///
    /// The first setting out of range, named in the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some((threshold, min_calls)) = self.failure_rate {
            if !(threshold > 0.0 && threshold <= 1.0) {
                return Err(ConfigError::new("failure rate threshold must be in (0, 1]"));
            }
            if min_calls == 0 {
                return Err(ConfigError::new(
                    "failure rate min_calls must be at least 1",
                ));
            }
        }
        if self.buckets == 0 || self.buckets > MAX_BUCKETS {
            return Err(ConfigError::new("window buckets must be between 1 and 64"));
        }
        if self.window / self.buckets < Duration::from_millis(1) {
            return Err(ConfigError::new(
                "window buckets must be at least 1 ms long",
            ));
        }
        if self.slow_call.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new("slow call threshold must be above zero"));
        }
        if self.open_duration.is_zero() {
            return Err(ConfigError::new("open duration must be above zero"));
        }
        if self.max_open_duration < self.open_duration {
            return Err(ConfigError::new(
                "max open duration must be at least the open duration",
            ));
        }
        if !(0.0..=0.5).contains(&self.jitter) {
            return Err(ConfigError::new("jitter must be between 0 and 0.5"));
        }
        if self.half_open_probes == 0 || self.half_open_probes > MAX_PROBES {
            return Err(ConfigError::new(
                "half-open probes must be between 1 and 1000",
            ));
        }
        if self.half_open_timeout.is_zero() {
            return Err(ConfigError::new("half-open timeout must be above zero"));
        }
        Ok(())
    }

    /// The open time after `failed_probes` failed probes in a row, before jitter.
    pub(crate) fn backoff(&self, failed_probes: u32) -> Duration {
        let factor = 1u32.checked_shl(failed_probes.min(31)).unwrap_or(u32::MAX);
        self.open_duration
            .checked_mul(factor)
            .unwrap_or(self.max_open_duration)
            .min(self.max_open_duration)
    }
}

/// A setting out of range, found when a layer is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    what: &'static str,
}

impl ConfigError {
    pub(crate) const fn new(what: &'static str) -> ConfigError {
        ConfigError { what }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid breaker config: {}", self.what)
    }
}

impl StdError for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(BreakerConfig::default().validate(), Ok(()));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = BreakerConfig::default();
        let secs: Vec<u64> = (0..6).map(|n| c.backoff(n).as_secs()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 300, 300]);
        assert_eq!(c.backoff(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn out_of_range_settings_are_errors() {
        let bad = [
            BreakerConfig::default().failure_rate(0.0, 20),
            BreakerConfig::default().failure_rate(f64::NAN, 20),
            BreakerConfig::default().failure_rate(1.5, 20),
            BreakerConfig::default().failure_rate(0.5, 0),
            BreakerConfig::default().window(Duration::from_secs(10), 0),
            BreakerConfig::default().window(Duration::from_secs(10), 65),
            BreakerConfig::default().window(Duration::from_micros(10), 10),
            BreakerConfig::default().slow_call(Duration::ZERO),
            BreakerConfig::default().open_duration(Duration::ZERO),
            BreakerConfig::default().max_open_duration(Duration::from_secs(1)),
            BreakerConfig::default().jitter(-0.1),
            BreakerConfig::default().jitter(0.9),
            BreakerConfig::default().half_open_probes(0),
            BreakerConfig::default().half_open_probes(1001),
            BreakerConfig::default().half_open_timeout(Duration::ZERO),
        ];
        for c in bad {
            let err = c.validate().unwrap_err();
            assert!(err.to_string().starts_with("invalid breaker config: "));
        }
    }
}
