//! What the layer did for one request: [`RetryInfo`], [`RetryRecord`], [`StopReason`].

use std::fmt;
use std::time::Duration;

use flext_core::{Failure, NotReplayable};

/// What happened to a request that went through the layer.
///
/// A response carries it in its extensions when the layer has something to say: after any
/// retry, or when a failure was returned without retrying it (then [`stop_reason`] says
/// why). A response that succeeded on its first attempt carries none, which keeps the common
/// path free of allocations, unless the layer was built with
/// [`RetryBuilder::info_on_every_response`](crate::RetryBuilder::info_on_every_response).
/// An error always carries it: see [`RetryError::info`](crate::RetryError::info).
///
/// [`stop_reason`]: RetryInfo::stop_reason
///
/// ```
/// use flext_retry::RetryInfo;
///
/// # fn read(response: http::Response<()>) {
/// match RetryInfo::of(&response) {
///     Some(info) => println!(
///         "{} attempts, {:?} in backoff, stopped: {:?}",
///         info.attempts(),
///         info.backoff(),
///         info.stop_reason(),
///     ),
///     None => println!("first attempt, nothing to report"),
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryInfo {
    attempts: u32,
    backoff: Duration,
    retries: Vec<RetryRecord>,
    stopped: Option<StopReason>,
}

impl RetryInfo {
    pub(crate) const fn new() -> RetryInfo {
        RetryInfo {
            attempts: 1,
            backoff: Duration::ZERO,
            retries: Vec::new(),
            stopped: None,
        }
    }

    /// The info a response carries, if any.
    pub fn of<B>(response: &http::Response<B>) -> Option<&RetryInfo> {
        response.extensions().get::<RetryInfo>()
    }

    /// Attempts made, the first included: 1 when nothing was retried.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Each retry: the failure that caused it and the wait before it, in order. Usually
    /// `attempts() - 1` of them; one more when the last retry was decided but could not be
    /// sent because the inner service failed to become ready (the request then fails with
    /// that service's `poll_ready` error).
    pub fn retries(&self) -> &[RetryRecord] {
        &self.retries
    }

    /// Total time waited between attempts.
    pub fn backoff(&self) -> Duration {
        self.backoff
    }

    /// Why the last failure was returned instead of retried; `None` when the last attempt
    /// succeeded (or was not a failure).
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stopped
    }

    pub(crate) fn record(&mut self, record: RetryRecord) {
        self.attempts += 1;
        self.backoff = self.backoff.saturating_add(record.delay);
        self.retries.push(record);
    }

    /// The last recorded retry was decided but never sent (the inner service failed to become
    /// ready for it): it is not an attempt made. Its record stays, since the failure that
    /// caused it and the wait before it happened.
    pub(crate) fn unsent(&mut self) {
        self.attempts = self.attempts.saturating_sub(1).max(1);
    }

    pub(crate) fn stop(&mut self, reason: Option<StopReason>) {
        self.stopped = reason;
    }
}

impl Default for RetryInfo {
    /// One attempt, nothing retried.
    fn default() -> RetryInfo {
        RetryInfo::new()
    }
}

/// One retry: why, and how long the layer waited before it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryRecord {
    failure: Failure,
    delay: Duration,
    retry_after: Option<Duration>,
}

impl RetryRecord {
    pub(crate) fn new(failure: Failure, delay: Duration, retry_after: Option<Duration>) -> Self {
        RetryRecord {
            failure,
            delay,
            retry_after,
        }
    }

    /// The failure of the attempt before this retry.
    pub fn failure(&self) -> &Failure {
        &self.failure
    }

    /// The wait before the retry.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// The wait the server asked for with `Retry-After`, when it was honoured.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

/// Why a failure was returned rather than retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopReason {
    /// Retries are off for this request (a [`RetryOverride::Disabled`] extension or
    /// `max_retries(0)`).
    ///
    /// [`RetryOverride::Disabled`]: crate::RetryOverride::Disabled
    Disabled,
    /// The failure is not one that a retry can help (classified as not transient).
    NotRetryable,
    /// The request may have reached the server and is not idempotent.
    NotIdempotent,
    /// The retry limit was reached (for a request that is not idempotent, the limit of
    /// never-sent retries).
    MaxRetries,
    /// The retry budget shared by the layer is empty.
    BudgetExhausted,
    /// The request body cannot be sent again.
    BodyNotReplayable(NotReplayable),
    /// The wait would end at or after the request's deadline.
    Deadline,
    /// The server asked for a longer wait (`Retry-After`) than `max_retry_after`.
    RetryAfterTooLong(Duration),
    /// A layer below refused the call without sending it (an open circuit breaker) and will
    /// not let a new try through before the next backoff is over: the refusal is returned at
    /// once instead of waiting behind the open circuit.
    Rejected,
}

impl StopReason {
    /// A short, stable, lower-case label for metrics and logs: `disabled`, `not_retryable`,
    /// `not_idempotent`, `max_retries`, `budget_exhausted`, `body_not_replayable`,
    /// `deadline`, `retry_after_too_long` or `rejected`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            StopReason::Disabled => "disabled",
            StopReason::NotRetryable => "not_retryable",
            StopReason::NotIdempotent => "not_idempotent",
            StopReason::MaxRetries => "max_retries",
            StopReason::BudgetExhausted => "budget_exhausted",
            StopReason::BodyNotReplayable(_) => "body_not_replayable",
            StopReason::Deadline => "deadline",
            StopReason::RetryAfterTooLong(_) => "retry_after_too_long",
            StopReason::Rejected => "rejected",
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Disabled => f.write_str("retries disabled for this request"),
            StopReason::NotRetryable => f.write_str("failure not retryable"),
            StopReason::NotIdempotent => f.write_str("request not idempotent"),
            StopReason::MaxRetries => f.write_str("retry limit reached"),
            StopReason::BudgetExhausted => f.write_str("retry budget exhausted"),
            StopReason::BodyNotReplayable(why) => write!(f, "body not replayable: {why}"),
            StopReason::Deadline => f.write_str("deadline too close"),
            StopReason::RetryAfterTooLong(d) => {
                write!(f, "server asked to retry after {} s", d.as_secs())
            }
            StopReason::Rejected => f.write_str("refused before sending, not waited out"),
        }
    }
}
