//! The retry budget: retries may not exceed a share of the requests plus a floor per second,
//! over a sliding window (tower's `TpsBudget`, Finagle's `RetryBudget`).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::ConfigError;

/// How many retries a layer may make: `ratio` of its requests plus `min_per_sec` per second,
/// counted over a sliding `window`.
///
/// The default is tower's `TpsBudget` and Finagle's numbers: 20% of requests plus 10 per
/// second over 10 s. So at a steady load of `r` requests per second that all fail, at most
/// `0.2 × r + 10` retries are made per second, whatever the per-request retry limit.
///
/// The window is cut in 10 slots; a request adds `ratio` to the slot of its time, a retry
/// takes 1, and a retry is allowed while the slots still in the window plus the floor
/// (`min_per_sec × window`) hold at least 1. Requests count once, when they are called;
/// retries of any kind (never-sent ones too) spend the budget. Requests are credited in
/// batches (every 64 calls and before each retry), never later than they happened, so the
/// budget never grants more than these numbers allow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    ratio: f64,
    min_per_sec: u32,
    window: Duration,
    unlimited: bool,
}

impl Budget {
    /// Retries up to `ratio` (0 to 10) of the requests plus `min_per_sec` per second over
    /// `window` (1 s to 60 s). Checked when the layer is built.
    pub const fn new(ratio: f64, min_per_sec: u32, window: Duration) -> Budget {
        Budget {
            ratio,
            min_per_sec,
            window,
            unlimited: false,
        }
    }

    /// No budget: every retry the policy allows is made. For tests and for clients whose
    /// server protects itself; a fleet of such clients can amplify an outage.
    pub const fn unlimited() -> Budget {
        Budget {
            ratio: 0.0,
            min_per_sec: 0,
            window: Duration::from_secs(10),
            unlimited: true,
        }
    }

    /// The share of requests that may be retried.
    pub const fn ratio(&self) -> f64 {
        self.ratio
    }

    /// The retries per second allowed whatever the load.
    pub const fn min_per_sec(&self) -> u32 {
        self.min_per_sec
    }

    /// The window.
    pub const fn window(&self) -> Duration {
        self.window
    }

    /// Whether this is [`Budget::unlimited`].
    pub const fn is_unlimited(&self) -> bool {
        self.unlimited
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.unlimited {
            return Ok(());
        }
        if !(0.0..=10.0).contains(&self.ratio) {
            return Err(ConfigError::new(format!(
                "budget ratio must be between 0 and 10 (got {})",
                self.ratio
            )));
        }
        if self.window < Duration::from_secs(1) || self.window > Duration::from_secs(60) {
            return Err(ConfigError::new(format!(
                "budget window must be between 1 s and 60 s (got {:?})",
                self.window
            )));
        }
        if self.min_per_sec > MAX_MIN_PER_SEC {
            return Err(ConfigError::new(format!(
                "budget min_per_sec must be at most {MAX_MIN_PER_SEC} (got {})",
                self.min_per_sec
            )));
        }
        Ok(())
    }
}

impl Default for Budget {
    /// 20% of requests plus 10 per second over 10 s.
    fn default() -> Budget {
        Budget::new(0.2, 10, Duration::from_secs(10))
    }
}

const MAX_MIN_PER_SEC: u32 = 100_000;
const SLOTS: u64 = 10;
/// Ratios are kept to a thousandth, in integers, so that sums are exact.
const SCALE: i64 = 1000;
/// Requests are credited to the window once every this many calls (and before every
/// withdrawal), so that a call reads neither the clock nor a lock.
const SAMPLE: u64 = 64;

/// The live balance behind a [`Budget`], shared by every clone of a layer.
///
/// A request costs one atomic increment of `requests`. Every [`SAMPLE`] requests, and before
/// every withdrawal or read, the requests not yet credited are added to the window under a
/// lock, at the slot of the previous crediting: they were all made after it, so they are
/// credited no later than they happened and expire no later than they should. The budget
/// therefore never grants more than its ratio and floor allow; it may grant a little less
/// (at most one sample of requests after an idle spell).
pub(crate) struct BudgetState {
    /// Every request ever called: the `requests` metric too.
    requests: AtomicU64,
    window: Option<Window>,
}

struct Window {
    start: Instant,
    slot_nanos: u64,
    reserve: i64,
    deposit: i64,
    withdraw: i64,
    ring: Mutex<Ring>,
}

/// The window: 10 slots of `(epoch, units)`, plus what has been credited so far.
#[derive(Debug, Default)]
struct Ring {
    slots: [(u64, i64); SLOTS as usize],
    credited: u64,
    last_epoch: u64,
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl BudgetState {
    pub(crate) fn new(budget: &Budget) -> BudgetState {
        let requests = AtomicU64::new(0);
        if budget.unlimited {
            return BudgetState {
                requests,
                window: None,
            };
        }
        let deposit = (budget.ratio * SCALE as f64).round() as i64;
        let divisor = gcd(deposit, SCALE).max(1);
        let (deposit, withdraw) = (deposit / divisor, SCALE / divisor);
        let floor = (f64::from(budget.min_per_sec) * budget.window.as_secs_f64()).round() as i64;
        let slot_nanos = u64::try_from(budget.window.as_nanos() / u128::from(SLOTS))
            .unwrap_or(u64::MAX)
            .max(1);
        BudgetState {
            requests,
            window: Some(Window {
                start: Instant::now(),
                slot_nanos,
                reserve: floor.saturating_mul(withdraw),
                deposit,
                withdraw,
                ring: Mutex::new(Ring::default()),
            }),
        }
    }

    /// Counts one request.
    #[inline]
    pub(crate) fn deposit(&self) {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(SAMPLE) {
            self.credit_sample();
        }
    }

    /// Credits the requests of a sample to the window.
    #[cold]
    fn credit_sample(&self) {
        if let Some(w) = &self.window {
            // Skipped when busy: whoever holds the lock credits them, or the next sample.
            if let Ok(mut ring) = w.ring.try_lock() {
                w.credit(&mut ring, &self.requests, Instant::now());
            }
        }
    }

    /// Requests counted so far.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Takes one retry from the budget, if it has one.
    pub(crate) fn withdraw(&self) -> bool {
        self.withdraw_at(None)
    }

    /// `now` is read under the lock unless given (tests), so that withdrawals are ordered.
    fn withdraw_at(&self, now: Option<Instant>) -> bool {
        let Some(w) = &self.window else {
            return true;
        };
        let mut ring = w.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let now = now.unwrap_or_else(Instant::now);
        let epoch = w.credit(&mut ring, &self.requests, now);
        if w.balance(&ring, epoch) >= w.withdraw {
            ring.add(epoch, -w.withdraw);
            true
        } else {
            false
        }
    }

    /// Whole retries available now (`u64::MAX` when unlimited).
    pub(crate) fn available(&self) -> u64 {
        self.available_at(Instant::now())
    }

    fn available_at(&self, now: Instant) -> u64 {
        let Some(w) = &self.window else {
            return u64::MAX;
        };
        let mut ring = w.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let epoch = w.credit(&mut ring, &self.requests, now);
        u64::try_from(w.balance(&ring, epoch) / w.withdraw).unwrap_or(0)
    }
}

impl Window {
    fn epoch(&self, now: Instant) -> u64 {
        // In u64: a u128 division costs more than the rest of a deposit.
        let elapsed = now.saturating_duration_since(self.start);
        let nanos = elapsed
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(elapsed.subsec_nanos()));
        nanos / self.slot_nanos
    }

    /// Credits the requests made since the last crediting; returns the epoch of `now`.
    fn credit(&self, ring: &mut Ring, requests: &AtomicU64, now: Instant) -> u64 {
        let epoch = self.epoch(now).max(ring.last_epoch);
        let total = requests.load(Ordering::Relaxed);
        let new = total.saturating_sub(ring.credited);
        ring.credited = ring.credited.max(total);
        let units = i64::try_from(new)
            .unwrap_or(i64::MAX)
            .saturating_mul(self.deposit);
        let at = ring.last_epoch;
        if units > 0 && at + SLOTS > epoch {
            ring.add(at, units);
        }
        ring.last_epoch = epoch;
        epoch
    }

    /// The units in the window ending with `epoch`, floor included.
    fn balance(&self, ring: &Ring, epoch: u64) -> i64 {
        ring.slots
            .iter()
            .filter(|(e, _)| *e + SLOTS > epoch && *e <= epoch)
            .fold(self.reserve, |sum, (_, units)| sum.saturating_add(*units))
    }
}

impl Ring {
    fn add(&mut self, epoch: u64, units: i64) {
        let slot = &mut self.slots[(epoch % SLOTS) as usize];
        if slot.0 == epoch {
            slot.1 = slot.1.saturating_add(units);
        } else if slot.0 < epoch {
            *slot = (epoch, units);
        }
    }
}

impl fmt::Debug for BudgetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.window {
            None => f.write_str("BudgetState::unlimited"),
            Some(w) => f
                .debug_struct("BudgetState")
                .field("deposit", &w.deposit)
                .field("withdraw", &w.withdraw)
                .field("reserve", &w.reserve)
                .field("available", &self.available())
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn state(budget: Budget) -> (BudgetState, Instant) {
        let state = BudgetState::new(&budget);
        let start = state
            .window
            .as_ref()
            .map(|w| w.start)
            .unwrap_or_else(Instant::now);
        (state, start)
    }

    fn units(s: &BudgetState) -> (i64, i64, i64) {
        let w = s.window.as_ref().unwrap();
        (w.deposit, w.withdraw, w.reserve)
    }

    /// A request at `now`, credited at once: what the sampling does at high rates.
    fn request_at(s: &BudgetState, now: Instant) {
        let _ = s.available_at(now);
        s.requests.fetch_add(1, Ordering::Relaxed);
        let _ = s.available_at(now);
    }

    #[test]
    fn default_units_are_one_in_five() {
        assert_eq!(units(&state(Budget::default()).0), (1, 5, 500));
        let s = state(Budget::new(0.3, 0, Duration::from_secs(1))).0;
        assert_eq!(units(&s), (3, 10, 0));
        let s = state(Budget::new(0.0, 1, Duration::from_secs(1))).0;
        assert_eq!((units(&s).0, units(&s).1), (0, 1));
    }

    #[test]
    fn floor_then_ratio() {
        let (s, t0) = state(Budget::new(0.5, 2, Duration::from_secs(1)));
        // The floor: 2 per second over 1 s.
        assert!(s.withdraw_at(Some(t0)));
        assert!(s.withdraw_at(Some(t0)));
        assert!(!s.withdraw_at(Some(t0)));
        // Two requests buy one retry at 50%.
        s.deposit();
        assert!(!s.withdraw_at(Some(t0)));
        s.deposit();
        assert!(s.withdraw_at(Some(t0)));
        assert_eq!(s.available_at(t0), 0);
        assert_eq!(s.requests(), 2);
    }

    #[test]
    fn requests_expire_with_the_window() {
        let (s, t0) = state(Budget::new(1.0, 0, Duration::from_secs(1)));
        request_at(&s, t0);
        assert_eq!(s.available_at(t0 + Duration::from_millis(950)), 1);
        let later = t0 + Duration::from_millis(1_050);
        assert!(!s.withdraw_at(Some(later)));
        // A slot reused ten slots later starts from zero.
        request_at(&s, later);
        assert_eq!(s.available_at(later), 1);
    }

    #[test]
    fn requests_after_an_idle_spell_are_credited_early_never_late() {
        let (s, t0) = state(Budget::new(1.0, 0, Duration::from_secs(1)));
        let _ = s.available_at(t0);
        // Uncredited requests after 5 s of silence: credited at the last crediting (t0),
        // so they have already expired when read.
        for _ in 0..3 {
            s.requests.fetch_add(1, Ordering::Relaxed);
        }
        let later = t0 + Duration::from_secs(5);
        assert_eq!(s.available_at(later), 0);
        // From then on, crediting is current again.
        request_at(&s, later);
        assert_eq!(s.available_at(later), 1);
    }

    #[test]
    fn sampling_credits_every_64_requests() {
        let (s, _) = state(Budget::new(1.0, 0, Duration::from_secs(10)));
        for _ in 0..64 {
            s.deposit();
        }
        let w = s.window.as_ref().unwrap();
        assert_eq!(w.ring.lock().unwrap().credited, 64);
    }

    #[test]
    fn config_is_checked() {
        assert!(
            Budget::new(11.0, 10, Duration::from_secs(10))
                .validate()
                .is_err()
        );
        assert!(
            Budget::new(f64::NAN, 10, Duration::from_secs(10))
                .validate()
                .is_err()
        );
        let e = Budget::new(0.2, 10, Duration::from_millis(10))
            .validate()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid retry configuration: budget window must be between 1 s and 60 s (got 10ms)"
        );
        assert!(Budget::unlimited().validate().is_ok());
        let (unlimited, _) = state(Budget::unlimited());
        assert_eq!(unlimited.available(), u64::MAX);
        assert!(unlimited.withdraw());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Request,
        Retry,
        Wait(u64),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        proptest::collection::vec(
            prop_oneof![
                6 => Just(Op::Request),
                4 => Just(Op::Retry),
                1 => (1u64..3_000).prop_map(Op::Wait),
            ],
            1..400,
        )
    }

    /// Runs `ops` against the budget and a plain log of events. At every granted retry,
    /// the retries in the trailing window never exceed `ratio × requests + min_per_sec ×
    /// window` there. With `eager` crediting (each request credited at its time), a retry
    /// is also refused only when one more would exceed that.
    fn check(
        ratio_milli: u32,
        min_per_sec: u32,
        window_s: u64,
        ops: Vec<Op>,
        eager: bool,
    ) -> Result<(), TestCaseError> {
        let budget = Budget::new(
            f64::from(ratio_milli) / 1000.0,
            min_per_sec,
            Duration::from_secs(window_s),
        );
        let (s, t0) = state(budget);
        let w = s.window.as_ref().unwrap();
        let mut now = t0;
        let mut log: Vec<(u64, bool)> = Vec::new(); // (epoch, is_retry)
        for op in ops {
            match op {
                Op::Wait(ms) => now += Duration::from_millis(ms),
                Op::Request => {
                    if eager {
                        request_at(&s, now);
                    } else {
                        s.requests.fetch_add(1, Ordering::Relaxed);
                    }
                    log.push((w.epoch(now), false));
                }
                Op::Retry => {
                    let e = w.epoch(now);
                    let count = |retry: bool| {
                        log.iter()
                            .filter(|&&(at, r)| r == retry && at + SLOTS > e && at <= e)
                            .count() as f64
                    };
                    let allowed = f64::from(ratio_milli) / 1000.0 * count(false)
                        + f64::from(min_per_sec) * window_s as f64;
                    let used = count(true);
                    if s.withdraw_at(Some(now)) {
                        log.push((e, true));
                        prop_assert!(
                            used + 1.0 <= allowed + 1e-9,
                            "{} retries granted, {} allowed",
                            used + 1.0,
                            allowed
                        );
                    } else if eager {
                        prop_assert!(
                            used + 1.0 > allowed - 1e-9,
                            "refused with {} of {} used",
                            used,
                            allowed
                        );
                    }
                }
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn never_grants_more_than_ratio_and_floor(
            ratio_milli in 0u32..=2_000,
            min_per_sec in 0u32..5,
            window_s in 1u64..4,
            ops in ops(),
        ) {
            check(ratio_milli, min_per_sec, window_s, ops, false)?;
        }

        #[test]
        fn credited_at_once_it_grants_exactly_ratio_and_floor(
            ratio_milli in 0u32..=2_000,
            min_per_sec in 0u32..5,
            window_s in 1u64..4,
            ops in ops(),
        ) {
            check(ratio_milli, min_per_sec, window_s, ops, true)?;
        }

        /// A burst inside one window: exactly `floor(ratio × n + min_per_sec × window)` retries.
        #[test]
        fn a_burst_gets_exactly_its_share(n in 0u32..5_000, min_per_sec in 0u32..20) {
            let (s, t0) = state(Budget::new(0.2, min_per_sec, Duration::from_secs(10)));
            for _ in 0..n {
                s.deposit();
            }
            let mut granted = 0u64;
            while s.withdraw_at(Some(t0)) {
                granted += 1;
            }
            prop_assert_eq!(granted, u64::from(n / 5 + min_per_sec * 10));
        }
    }
}
