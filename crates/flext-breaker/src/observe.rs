//! What a breaker shows: its [`State`], a [`Snapshot`], and [`Transition`] events.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The state of one breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls flow; outcomes are counted.
    Closed,
    /// Calls fail fast with [`CircuitOpen`](crate::CircuitOpen) until the open time is over.
    Open,
    /// A limited number of probes go through; their verdict closes or re-opens the breaker.
    HalfOpen,
    /// Held open by an operator through the [`BreakerHandle`](crate::BreakerHandle) until a
    /// reset.
    ForcedOpen,
    /// Turned off by an operator: every call goes through and nothing is counted.
    Disabled,
}

impl State {
    /// A short lower-case name: `closed`, `open`, `half-open`, `forced-open`, `disabled`.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
            State::ForcedOpen => "forced-open",
            State::Disabled => "disabled",
        }
    }

    pub(crate) const fn to_bits(self) -> u64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
            State::ForcedOpen => 3,
            State::Disabled => 4,
        }
    }

    pub(crate) const fn from_bits(bits: u64) -> State {
        match bits {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::ForcedOpen,
            _ => State::Disabled,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Cause {
    /// This many failures in a row.
    ConsecutiveFailures(u32),
    /// The failure rate over the window reached the threshold.
    FailureRate {
        /// Failures in the window.
        failures: u64,
        /// Calls in the window.
        calls: u64,
    },
    /// The open time ran out: the next call is a probe.
    OpenElapsed,
    /// A half-open probe failed.
    ProbeFailed,
    /// The half-open probes gave no verdict in time.
    ProbeTimedOut,
    /// Every half-open probe succeeded.
    ProbesSucceeded,
    /// An operator forced the breaker open.
    ForcedOpen,
    /// An operator disabled the breaker.
    Disabled,
    /// An operator reset the breaker.
    Reset,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::ConsecutiveFailures(n) => write!(f, "{n} consecutive failures"),
            Cause::FailureRate { failures, calls } => {
                write!(f, "{failures} failures in {calls} calls")
            }
            Cause::OpenElapsed => f.write_str("open time elapsed"),
            Cause::ProbeFailed => f.write_str("probe failed"),
            Cause::ProbeTimedOut => f.write_str("probe timed out"),
            Cause::ProbesSucceeded => f.write_str("probes succeeded"),
            Cause::ForcedOpen => f.write_str("forced open"),
            Cause::Disabled => f.write_str("disabled"),
            Cause::Reset => f.write_str("reset"),
        }
    }
}

/// One state change of one breaker, as given to the callbacks registered with
/// [`Builder::on_transition`](crate::Builder::on_transition).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Transition {
    /// The breaker's key as text (the origin by default).
    pub key: Arc<str>,
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
    /// Why.
    pub cause: Cause,
    /// When `to` is [`State::Open`]: how long it stays open.
    pub open_for: Option<Duration>,
}

/// The state and counters of one breaker at one instant.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The breaker's key as text (the origin by default).
    pub key: Arc<str>,
    /// The state.
    pub state: State,
    /// Calls recorded in the sliding window (closed state only).
    pub window_calls: u64,
    /// Failures recorded in the sliding window.
    pub window_failures: u64,
    /// `window_failures / window_calls`, 0 for an empty window.
    pub failure_rate: f64,
    /// Failures in a row (closed state only).
    pub consecutive_failures: u32,
    /// When open: the time left before the next probe is let through (zero when the next
    /// call will be that probe).
    pub open_remaining: Option<Duration>,
    /// Failed probes in a row: the open time is the base open time doubled this many times.
    pub failed_probes: u32,
    /// Calls let through since the breaker was made (a closed-state call is counted when it
    /// ends).
    pub permitted: u64,
    /// Calls refused since the breaker was made.
    pub rejected: u64,
}
