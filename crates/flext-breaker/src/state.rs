//! One breaker: its state machine over atomics.
//!
//! The state, the generation and the half-open probe counts share one `AtomicU64`, so a
//! closed-path admission is one load, and a probe admission or release is one CAS that also
//! checks the generation. Transitions are rare; they take a mutex to write the few fields that
//! go with a state (open-until, half-open deadline, failed-probe count) before publishing the
//! new state word, and notify outside it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::clock::{Ticks, nanos};
use crate::config::BreakerConfig;
use crate::error::CircuitOpen;
use crate::observe::{Cause, Snapshot, State, Transition};
use crate::window::Window;

mod word;

use word::{
    ADMITTED_ONE, CLOSED, DISABLED, FORCED_OPEN, HALF_OPEN, OPEN, STATE_MASK, SUCCESS_ONE,
    admitted_of, gen_of, pack, state_of, successes_of,
};

/// A callback on transitions.
pub(crate) type Listener = Arc<dyn Fn(&Transition) + Send + Sync>;

/// What the breakers of one layer share.
pub(crate) struct Shared {
    pub(crate) ticks: Ticks,
    pub(crate) listeners: Vec<Listener>,
}

/// How a call ended, as far as the breaker counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Success,
    Failure,
    Ignored,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Admitted while closed: counted in the window.
    Closed,
    /// A half-open probe.
    Probe,
    /// Admitted while disabled: not counted.
    Unrecorded,
}

/// What every call reads, on a cache line of its own: the reference count (written by every
/// call) and the window (written by every call) live elsewhere, so two threads calling the
/// same origin do not invalidate this line for each other.
#[repr(align(64))]
struct Hot {
    word: AtomicU64,
    consecutive: AtomicU32,
    // Set by calls, cleared by the eviction sweep: "used since the last sweep".
    used: AtomicBool,
    // Set once when the map drops this breaker; services that cached it look again.
    evicted: AtomicBool,
}

/// One breaker.
pub(crate) struct Cell {
    hot: Hot,
    // A copy of the layer's clock, one pointer hop closer.
    ticks: Ticks,
    window: Window,
    open_until: AtomicU64,
    half_open_deadline: AtomicU64,
    // The earliest next probe a server asked for with `Retry-After`.
    hint_until: AtomicU64,
    last_used: AtomicU64,
    // Calls let through that the window does not count: probes, disabled, ignored, cancelled.
    other_permitted: AtomicU64,
    rejected: AtomicU64,
    // Failed probes in a row; the lock also orders transitions.
    failed_probes: Mutex<u32>,
    config: BreakerConfig,
    slow_call_ns: Option<u64>,
    probes: u64,
    key: Arc<str>,
    shared: Arc<Shared>,
}

impl Cell {
    pub(crate) fn new(key: Arc<str>, config: BreakerConfig, shared: Arc<Shared>) -> Cell {
        let now = shared.ticks.now();
        let bucket_ns = nanos(config.window / config.buckets.max(1));
        Cell {
            ticks: shared.ticks.clone(),
            hot: Hot {
                word: AtomicU64::new(pack(CLOSED, 0, 0)),
                consecutive: AtomicU32::new(0),
                used: AtomicBool::new(false),
                evicted: AtomicBool::new(false),
            },
            window: Window::new(config.buckets, bucket_ns, now),
            open_until: AtomicU64::new(0),
            half_open_deadline: AtomicU64::new(0),
            hint_until: AtomicU64::new(0),
            last_used: AtomicU64::new(now),
            other_permitted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            failed_probes: Mutex::new(0),
            slow_call_ns: config.slow_call.map(nanos),
            probes: u64::from(config.half_open_probes),
            config,
            key,
            shared,
        }
    }

    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.ticks.now()
    }

    pub(crate) fn state(&self) -> State {
        State::from_bits(state_of(self.hot.word.load(Ordering::Acquire)))
    }

    #[inline]
    pub(crate) fn is_evicted(&self) -> bool {
        self.hot.evicted.load(Ordering::Acquire)
    }

    pub(crate) fn mark_evicted(&self) {
        self.hot.evicted.store(true, Ordering::Release);
    }

    #[cfg(test)]
    pub(crate) fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// How long the breaker has gone without a call, as seen by successive sweeps at `now`
    /// (a second-chance clock: calls only set a flag, so they need no time).
    pub(crate) fn idle_for(&self, now: u64) -> u64 {
        if self.hot.used.load(Ordering::Relaxed) {
            self.hot.used.store(false, Ordering::Relaxed);
            self.last_used.store(now, Ordering::Relaxed);
        }
        now.saturating_sub(self.last_used.load(Ordering::Relaxed))
    }

    #[inline]
    fn touch(&self) {
        if !self.hot.used.load(Ordering::Relaxed) {
            self.hot.used.store(true, Ordering::Relaxed);
        }
    }

    fn lock(&self) -> MutexGuard<'_, u32> {
        // A panic elsewhere while holding the lock left a plain counter behind: still valid.
        self.failed_probes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets a call through, or says why not.
    #[inline]
    pub(crate) fn admit(self: &Arc<Self>) -> Result<Permit, CircuitOpen> {
        self.touch();
        let w = self.hot.word.load(Ordering::Acquire);
        if state_of(w) == CLOSED && self.slow_call_ns.is_none() {
            return Ok(Permit {
                cell: Arc::clone(self),
                generation: gen_of(w),
                kind: Kind::Closed,
                started: 0,
                done: false,
            });
        }
        self.admit_slow()
    }

    #[inline(never)]
    fn admit_slow(self: &Arc<Self>) -> Result<Permit, CircuitOpen> {
        loop {
            let w = self.hot.word.load(Ordering::Acquire);
            match state_of(w) {
                CLOSED => return Ok(self.permit(gen_of(w), Kind::Closed)),
                DISABLED => {
                    self.other_permitted.fetch_add(1, Ordering::Relaxed);
                    return Ok(self.permit(gen_of(w), Kind::Unrecorded));
                }
                FORCED_OPEN => return Err(self.reject(State::ForcedOpen, None)),
                OPEN => {
                    let now = self.now();
                    let until = self.open_until.load(Ordering::Acquire);
                    if now < until {
                        return Err(self.reject(State::Open, Some(until - now)));
                    }
                    if let Some(generation) = self.to_half_open(w, now) {
                        self.other_permitted.fetch_add(1, Ordering::Relaxed);
                        return Ok(self.permit(generation, Kind::Probe));
                    }
                }
                _ => {
                    if admitted_of(w) < self.probes {
                        if self
                            .hot
                            .word
                            .compare_exchange(
                                w,
                                w + ADMITTED_ONE,
                                Ordering::AcqRel,
                                Ordering::Acquire,
                            )
                            .is_ok()
                        {
                            self.other_permitted.fetch_add(1, Ordering::Relaxed);
                            return Ok(self.permit(gen_of(w), Kind::Probe));
                        }
                        continue;
                    }
                    let now = self.now();
                    let deadline = self.half_open_deadline.load(Ordering::Acquire);
                    if now >= deadline {
                        self.open(gen_of(w), HALF_OPEN, now, Cause::ProbeTimedOut);
                        continue;
                    }
                    return Err(self.reject(State::HalfOpen, Some(deadline - now)));
                }
            }
        }
    }

    fn permit(self: &Arc<Self>, generation: u64, kind: Kind) -> Permit {
        let started = if self.slow_call_ns.is_some() {
            self.ticks.precise()
        } else {
            0
        };
        Permit {
            cell: Arc::clone(self),
            generation,
            kind,
            started,
            done: false,
        }
    }

    fn reject(&self, state: State, left_ns: Option<u64>) -> CircuitOpen {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        CircuitOpen::new(self.key.clone(), state, left_ns.map(Duration::from_nanos))
    }

    /// Records how a permitted call ended. The common case, a success while closed, is a
    /// clock read, a load and one CAS on the window.
    #[inline]
    fn finish(&self, permit: &Permit, verdict: Verdict, retry_after: Option<Duration>) {
        let now = self.now();
        if verdict == Verdict::Success
            && permit.kind == Kind::Closed
            && retry_after.is_none()
            && self.slow_call_ns.is_none()
        {
            let w = self.hot.word.load(Ordering::Acquire);
            if w & STATE_MASK == CLOSED && gen_of(w) == permit.generation {
                self.window.record(now, false);
                if self.hot.consecutive.load(Ordering::Relaxed) != 0 {
                    self.hot.consecutive.store(0, Ordering::Relaxed);
                }
                return;
            }
        }
        self.finish_slow(permit, verdict, retry_after, now);
    }

    #[inline(never)]
    fn finish_slow(
        &self,
        permit: &Permit,
        verdict: Verdict,
        retry_after: Option<Duration>,
        now: u64,
    ) {
        if let Some(wait) = retry_after
            && self.config.respect_retry_after
        {
            let wait = nanos(wait.min(self.config.max_open_duration));
            self.hint_until
                .fetch_max(now.saturating_add(wait), Ordering::Relaxed);
        }
        let verdict = match (verdict, self.slow_call_ns) {
            (Verdict::Success, Some(slow))
                if self.ticks.precise().saturating_sub(permit.started) > slow =>
            {
                Verdict::Failure
            }
            (v, _) => v,
        };
        match permit.kind {
            Kind::Closed => self.record_closed(permit.generation, verdict, now),
            Kind::Probe => self.record_probe(permit.generation, verdict, now),
            Kind::Unrecorded => {}
        }
    }

    fn record_closed(&self, generation: u64, verdict: Verdict, now: u64) {
        let w = self.hot.word.load(Ordering::Acquire);
        if verdict == Verdict::Ignored || w & STATE_MASK != CLOSED || gen_of(w) != generation {
            // A result from an earlier generation, or one that does not count.
            self.other_permitted.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if verdict == Verdict::Success {
            self.window.record(now, false);
            if self.hot.consecutive.load(Ordering::Relaxed) != 0 {
                self.hot.consecutive.store(0, Ordering::Relaxed);
            }
            return;
        }
        self.window.record(now, true);
        let run = self.hot.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        let limit = self.config.consecutive_failures;
        if limit > 0 && run >= limit {
            self.open(generation, CLOSED, now, Cause::ConsecutiveFailures(run));
            return;
        }
        if let Some((threshold, min_calls)) = self.config.failure_rate {
            let c = self.window.totals(now);
            if c.calls >= u64::from(min_calls) && c.failures as f64 >= threshold * c.calls as f64 {
                let cause = Cause::FailureRate {
                    failures: c.failures,
                    calls: c.calls,
                };
                self.open(generation, CLOSED, now, cause);
            }
        }
    }

    fn record_probe(&self, generation: u64, verdict: Verdict, now: u64) {
        match verdict {
            Verdict::Failure => self.open(generation, HALF_OPEN, now, Cause::ProbeFailed),
            Verdict::Ignored => self.release(generation),
            Verdict::Success => loop {
                let w = self.hot.word.load(Ordering::Acquire);
                if state_of(w) != HALF_OPEN || gen_of(w) != generation {
                    return;
                }
                if successes_of(w) + 1 >= self.probes {
                    self.close(generation, now);
                    return;
                }
                if self
                    .hot
                    .word
                    .compare_exchange(w, w + SUCCESS_ONE, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return;
                }
            },
        }
    }

    /// Gives a probe's permit back without a verdict.
    fn release(&self, generation: u64) {
        let mut w = self.hot.word.load(Ordering::Acquire);
        while state_of(w) == HALF_OPEN && gen_of(w) == generation && admitted_of(w) > 0 {
            match self.hot.word.compare_exchange(
                w,
                w - ADMITTED_ONE,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => w = actual,
            }
        }
    }

    /// A permitted call whose future was dropped before it ended.
    fn cancel(&self, permit: &Permit) {
        match permit.kind {
            Kind::Closed => {
                self.other_permitted.fetch_add(1, Ordering::Relaxed);
            }
            Kind::Probe => self.release(permit.generation),
            Kind::Unrecorded => {}
        }
    }

    /// Replaces the state word, keeping nothing of the old one but bumping the generation.
    /// Runs under the lock, so only probe counts can change under it.
    fn publish(&self, mut w: u64, to: u64, admitted: u64) -> u64 {
        let generation = gen_of(w) + 1;
        let next = pack(to, admitted, generation);
        loop {
            match self
                .hot
                .word
                .compare_exchange(w, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return generation,
                Err(actual) => w = actual,
            }
        }
    }

    /// Open -> HalfOpen, the caller holding the first probe. `None` if another thread moved
    /// the state first.
    fn to_half_open(&self, seen: u64, now: u64) -> Option<u64> {
        let guard = self.lock();
        let w = self.hot.word.load(Ordering::Acquire);
        if w != seen {
            return None;
        }
        let deadline = now.saturating_add(nanos(self.config.half_open_timeout));
        self.half_open_deadline.store(deadline, Ordering::Release);
        let generation = self.publish(w, HALF_OPEN, 1);
        drop(guard);
        self.notify(State::Open, State::HalfOpen, Cause::OpenElapsed, None);
        Some(generation)
    }

    /// Closed or HalfOpen (of generation `generation`) -> Open.
    fn open(&self, generation: u64, from: u64, now: u64, cause: Cause) {
        let mut failed = self.lock();
        let w = self.hot.word.load(Ordering::Acquire);
        if gen_of(w) != generation || state_of(w) != from {
            return;
        }
        if from == HALF_OPEN {
            *failed = failed.saturating_add(1);
        }
        let base = self.config.backoff(*failed).as_secs_f64();
        let spread = self.config.jitter * (2.0 * fastrand::f64() - 1.0);
        let max = nanos(self.config.max_open_duration);
        let mut open_ns = ((base * (1.0 + spread)) * 1e9) as u64;
        open_ns = open_ns.clamp(1, max);
        let hint = self.hint_until.load(Ordering::Relaxed).saturating_sub(now);
        open_ns = open_ns.max(hint.min(max));
        self.open_until
            .store(now.saturating_add(open_ns), Ordering::Release);
        self.publish(w, OPEN, 0);
        drop(failed);
        let open_for = Some(Duration::from_nanos(open_ns));
        self.notify(State::from_bits(from), State::Open, cause, open_for);
    }

    /// HalfOpen (of generation `generation`) -> Closed.
    fn close(&self, generation: u64, now: u64) {
        let mut failed = self.lock();
        let w = self.hot.word.load(Ordering::Acquire);
        if gen_of(w) != generation || state_of(w) != HALF_OPEN {
            return;
        }
        *failed = 0;
        self.window.clear(now);
        self.hot.consecutive.store(0, Ordering::Relaxed);
        self.publish(w, CLOSED, 0);
        drop(failed);
        self.notify(State::HalfOpen, State::Closed, Cause::ProbesSucceeded, None);
    }

    /// An operator's change: to ForcedOpen, Disabled, or Closed afresh (a reset).
    pub(crate) fn set(&self, to: State) {
        let cause = match to {
            State::ForcedOpen => Cause::ForcedOpen,
            State::Disabled => Cause::Disabled,
            _ => Cause::Reset,
        };
        let to = match to {
            State::ForcedOpen | State::Disabled => to,
            _ => State::Closed,
        };
        let mut failed = self.lock();
        let w = self.hot.word.load(Ordering::Acquire);
        let from = State::from_bits(state_of(w));
        if from == to && to != State::Closed {
            return;
        }
        if to == State::Closed {
            *failed = 0;
            self.window.clear(self.now());
            self.hot.consecutive.store(0, Ordering::Relaxed);
            self.hint_until.store(0, Ordering::Relaxed);
        }
        self.publish(w, to.to_bits(), 0);
        drop(failed);
        if from != to {
            self.notify(from, to, cause, None);
        }
    }

    fn notify(&self, from: State, to: State, cause: Cause, open_for: Option<Duration>) {
        let key = &*self.key;
        match to {
            State::Open => tracing::warn!(
                breaker.key = key,
                breaker.cause = %cause,
                breaker.open_for_s = open_for.map_or(0.0, |d| d.as_secs_f64()),
                "circuit opened"
            ),
            State::Closed => {
                tracing::info!(breaker.key = key, breaker.cause = %cause, "circuit closed");
            }
            State::HalfOpen => tracing::debug!(breaker.key = key, "circuit half-open, probing"),
            State::ForcedOpen => tracing::warn!(breaker.key = key, "circuit forced open"),
            State::Disabled => tracing::info!(breaker.key = key, "circuit disabled"),
        }
        if self.shared.listeners.is_empty() {
            return;
        }
        let event = Transition {
            key: self.key.clone(),
            from,
            to,
            cause,
            open_for,
        };
        for listener in &self.shared.listeners {
            // A panicking callback must not take the caller's request down with it.
            if catch_unwind(AssertUnwindSafe(|| listener(&event))).is_err() {
                tracing::error!(breaker.key = key, "breaker transition callback panicked");
            }
        }
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let now = self.now();
        let w = self.hot.word.load(Ordering::Acquire);
        let state = State::from_bits(state_of(w));
        let window = self.window.totals(now);
        let lifetime = self.window.lifetime();
        let open_remaining = (state == State::Open).then(|| {
            Duration::from_nanos(self.open_until.load(Ordering::Acquire).saturating_sub(now))
        });
        Snapshot {
            key: self.key.clone(),
            state,
            window_calls: window.calls,
            window_failures: window.failures,
            failure_rate: if window.calls == 0 {
                0.0
            } else {
                window.failures as f64 / window.calls as f64
            },
            consecutive_failures: self.hot.consecutive.load(Ordering::Relaxed),
            open_remaining,
            failed_probes: *self.lock(),
            permitted: lifetime.calls + self.other_permitted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }
}

/// The right to make one call, held by its future. Dropped without a verdict (the future was
/// cancelled), it gives a probe's place back.
pub(crate) struct Permit {
    cell: Arc<Cell>,
    generation: u64,
    kind: Kind,
    started: u64,
    done: bool,
}

impl Permit {
    /// Records the verdict; later calls do nothing.
    #[inline]
    pub(crate) fn finish(&mut self, verdict: Verdict, retry_after: Option<Duration>) {
        if !self.done {
            self.done = true;
            self.cell.finish(self, verdict, retry_after);
        }
    }
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        if !self.done {
            self.cell.cancel(self);
        }
    }
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("key", &self.cell.key)
            .field("generation", &self.generation)
            .field("kind", &self.kind)
            .finish()
    }
}

#[cfg(test)]
mod tests;
