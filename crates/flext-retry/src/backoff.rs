//! How long to wait before a retry: [`Backoff`], [`Jitter`] and the [`Random`] source.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::ConfigError;

/// How a delay is spread at random, so that clients that failed together do not retry
/// together (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Jitter {
    /// A delay drawn uniformly from `[0, d]`, `d` the exponential delay. The default: the
    /// least total work for the server in AWS's measurements, as in gRPC and Polly.
    #[default]
    Full,
    /// `d / 2` plus a draw from `[0, d / 2]`: never shorter than half the delay.
    Equal,
    /// Drawn from `[base, 3 × previous delay]`, capped (AWS's "decorrelated jitter", Polly's
    /// `DecorrelatedJitterBackoffV2` idea); does not use the factor.
    Decorrelated,
    /// Exactly `d`.
    None,
}

/// Exponential backoff: `min(cap, base × factor^n)` before retry `n` (0 for the first
/// retry), spread by a [`Jitter`].
///
/// The default is base 100 ms, factor 2, cap 10 s, full jitter.
///
/// ```
/// use std::time::Duration;
/// use flext_retry::{Backoff, Jitter, Random};
///
/// let backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10))
///     .with_jitter(Jitter::None);
/// let random = Random::seeded(7);
/// assert_eq!(backoff.delay(0, Duration::ZERO, &random), Duration::from_millis(100));
/// assert_eq!(backoff.delay(3, Duration::ZERO, &random), Duration::from_millis(800));
/// assert_eq!(backoff.delay(30, Duration::ZERO, &random), Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    base: Duration,
    factor: f64,
    cap: Duration,
    jitter: Jitter,
}

impl Backoff {
    /// Doubling from `base` up to `cap`, with full jitter.
    pub const fn exponential(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            factor: 2.0,
            cap,
            jitter: Jitter::Full,
        }
    }

    /// The same `delay` before every retry, without jitter.
    pub const fn constant(delay: Duration) -> Backoff {
        Backoff {
            base: delay,
            factor: 1.0,
            cap: delay,
            jitter: Jitter::None,
        }
    }

    /// No wait at all.
    pub const fn none() -> Backoff {
        Backoff::constant(Duration::ZERO)
    }

    /// With another growth factor (at least 1).
    pub const fn with_factor(mut self, factor: f64) -> Backoff {
        self.factor = factor;
        self
    }

    /// With another jitter.
    pub const fn with_jitter(mut self, jitter: Jitter) -> Backoff {
        self.jitter = jitter;
        self
    }

    /// The first delay, before jitter.
    pub const fn base(&self) -> Duration {
        self.base
    }

    /// The growth factor.
    pub const fn factor(&self) -> f64 {
        self.factor
    }

    /// The longest delay.
    pub const fn cap(&self) -> Duration {
        self.cap
    }

    /// The jitter.
    pub const fn jitter(&self) -> Jitter {
        self.jitter
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !self.factor.is_finite() || self.factor < 1.0 {
            return Err(ConfigError::new(format!(
                "backoff factor must be a finite number of at least 1 (got {})",
                self.factor
            )));
        }
        if self.cap < self.base {
            return Err(ConfigError::new(format!(
                "backoff cap ({:?}) must not be shorter than its base ({:?})",
                self.cap, self.base
            )));
        }
        Ok(())
    }

    /// The exponential delay before retry `retry`, before jitter: always within
    /// `[base, cap]`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let exp = i32::try_from(retry).unwrap_or(i32::MAX);
        let secs = self.base.as_secs_f64() * self.factor.powi(exp);
        if !secs.is_finite() || secs >= self.cap.as_secs_f64() {
            return self.cap;
        }
        Duration::try_from_secs_f64(secs).map_or(self.cap, |d| d.max(self.base).min(self.cap))
    }

    /// The delay before retry `retry` (0 for the first retry), given the delay before the
    /// previous one (used by [`Jitter::Decorrelated`]). Always within `[0, cap]`.
    pub fn delay(&self, retry: u32, previous: Duration, random: &Random) -> Duration {
        let delay = match self.jitter {
            Jitter::None => self.ceiling(retry),
            Jitter::Full => self.ceiling(retry).mul_f64(random.next_f64()),
            Jitter::Equal => {
                let d = self.ceiling(retry);
                let half = d / 2;
                half + (d - half).mul_f64(random.next_f64())
            }
            Jitter::Decorrelated => {
                let previous = if previous.is_zero() {
                    self.base
                } else {
                    previous
                };
                let high = previous.saturating_mul(3).max(self.base).min(self.cap);
                let spread = high.saturating_sub(self.base);
                self.base.saturating_add(spread.mul_f64(random.next_f64()))
            }
        };
        delay.min(self.cap)
    }
}

impl Default for Backoff {
    /// Base 100 ms, factor 2, cap 10 s, full jitter.
    fn default() -> Backoff {
        Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10))
    }
}

/// Where the jitter's randomness comes from.
///
/// The default draws from a fast per-thread generator ([`fastrand`]); tests inject
/// [`Random::seeded`] (a shared splitmix64 sequence, lock-free) or their own function so
/// that delays are deterministic.
#[derive(Clone)]
pub struct Random {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Thread,
    Seeded(Arc<AtomicU64>),
    Custom(Arc<dyn Fn() -> u64 + Send + Sync>),
}

impl Random {
    /// A per-thread generator seeded by the system.
    pub fn thread() -> Random {
        Random { kind: Kind::Thread }
    }

    /// A deterministic sequence from `seed`, shared by every clone.
    pub fn seeded(seed: u64) -> Random {
        Random {
            kind: Kind::Seeded(Arc::new(AtomicU64::new(seed))),
        }
    }

    /// Draws from `f`: 64 random bits per call.
    pub fn from_fn(f: impl Fn() -> u64 + Send + Sync + 'static) -> Random {
        Random {
            kind: Kind::Custom(Arc::new(f)),
        }
    }

    /// 64 random bits.
    pub fn next_u64(&self) -> u64 {
        match &self.kind {
            Kind::Thread => fastrand::u64(..),
            Kind::Seeded(state) => {
                const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
                let z = state
                    .fetch_add(GAMMA, Ordering::Relaxed)
                    .wrapping_add(GAMMA);
                let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^ (z >> 31)
            }
            Kind::Custom(f) => f(),
        }
    }

    /// A number in `[0, 1)`.
    pub fn next_f64(&self) -> f64 {
        // The top 53 bits, as many as an f64 mantissa holds.
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

impl Default for Random {
    fn default() -> Random {
        Random::thread()
    }
}

impl fmt::Debug for Random {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::Thread => "Random::thread",
            Kind::Seeded(_) => "Random::seeded",
            Kind::Custom(_) => "Random::from_fn",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn defaults_double_from_100ms_to_10s() {
        let b = Backoff::default();
        assert_eq!((b.base(), b.factor(), b.cap()), (ms(100), 2.0, ms(10_000)));
        assert_eq!(b.jitter(), Jitter::Full);
        let ceilings: Vec<_> = (0..9).map(|n| b.ceiling(n)).collect();
        assert_eq!(
            ceilings,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000].map(ms)
        );
        assert_eq!(b.ceiling(u32::MAX), ms(10_000));
    }

    #[test]
    fn equal_jitter_keeps_half() {
        let b = Backoff::default().with_jitter(Jitter::Equal);
        let r = Random::from_fn(|| 0);
        assert_eq!(b.delay(2, Duration::ZERO, &r), ms(200));
        let r = Random::from_fn(|| u64::MAX);
        assert!(b.delay(2, Duration::ZERO, &r) <= ms(400));
    }

    #[test]
    fn decorrelated_grows_from_the_previous_delay() {
        let b = Backoff::default().with_jitter(Jitter::Decorrelated);
        let top = Random::from_fn(|| u64::MAX);
        let first = b.delay(0, Duration::ZERO, &top);
        assert!(first > ms(299) && first <= ms(300), "{first:?}");
        let second = b.delay(1, first, &top);
        assert!(second > ms(899) && second <= ms(900), "{second:?}");
        assert_eq!(b.delay(5, ms(9_000), &top), ms(10_000));
        let bottom = Random::from_fn(|| 0);
        assert_eq!(b.delay(3, ms(5_000), &bottom), ms(100));
    }

    #[test]
    fn seeded_is_deterministic_and_spread() {
        let a = Random::seeded(42);
        let b = Random::seeded(42);
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mean = (0..10_000).map(|_| a.next_f64()).sum::<f64>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }

    #[test]
    fn invalid_backoffs_are_refused() {
        let err = Backoff::default().with_factor(0.5).validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid retry configuration: backoff factor must be a finite number of at least 1 (got 0.5)"
        );
        assert!(Backoff::default().with_factor(f64::NAN).validate().is_err());
        assert!(Backoff::exponential(ms(10), ms(1)).validate().is_err());
        assert!(Backoff::none().validate().is_ok());
    }

    fn jitter() -> impl Strategy<Value = Jitter> {
        prop_oneof![
            Just(Jitter::Full),
            Just(Jitter::Equal),
            Just(Jitter::Decorrelated),
            Just(Jitter::None)
        ]
    }

    proptest! {
        #[test]
        fn delays_stay_within_zero_and_cap(
            base_ms in 0u64..5_000,
            extra_ms in 0u64..100_000,
            factor in 1.0f64..10.0,
            retry in any::<u32>(),
            previous_ms in any::<u64>(),
            seed in any::<u64>(),
            jitter in jitter(),
        ) {
            let backoff = Backoff::exponential(ms(base_ms), ms(base_ms + extra_ms))
                .with_factor(factor)
                .with_jitter(jitter);
            prop_assert!(backoff.validate().is_ok());
            let delay = backoff.delay(retry, ms(previous_ms), &Random::seeded(seed));
            prop_assert!(delay <= backoff.cap());
            let ceiling = backoff.ceiling(retry);
            prop_assert!(ceiling >= backoff.base() && ceiling <= backoff.cap());
            if jitter != Jitter::Decorrelated {
                prop_assert!(delay <= ceiling);
            }
            if matches!(jitter, Jitter::Equal | Jitter::None) {
                prop_assert!(delay >= ceiling / 2);
            }
        }

        #[test]
        fn the_ceiling_never_shrinks(base_ms in 1u64..1_000, factor in 1.0f64..4.0, n in 0u32..64) {
            let b = Backoff::exponential(ms(base_ms), Duration::from_secs(60)).with_factor(factor);
            prop_assert!(b.ceiling(n + 1) >= b.ceiling(n));
        }
    }
}
