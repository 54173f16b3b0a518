//! Counters shared by every clone of a layer, and their snapshot [`RetryMetrics`].

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a layer's counters, from [`RetryLayer::metrics`](crate::RetryLayer::metrics).
///
/// Counters only grow; `budget_available` and `replay_bytes_in_use` are gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RetryMetrics {
    /// Requests called through the layer.
    pub requests: u64,
    /// Attempts started: requests plus retries.
    pub attempts: u64,
    /// Retries started.
    pub retries: u64,
    /// Retries refused because the budget was empty.
    pub budget_exhausted: u64,
    /// Retries refused because the request body passed a replay cap.
    pub replay_cap_hit: u64,
    /// Retries whose wait was set by the server's `Retry-After`.
    pub retry_after_honoured: u64,
    /// Failures returned at once because `Retry-After` asked for more than
    /// `max_retry_after`.
    pub retry_after_too_long: u64,
    /// Retries refused because the wait would reach the request's deadline.
    pub deadline_reached: u64,
    /// Whole retries the budget allows now (`u64::MAX` without a budget).
    pub budget_available: u64,
    /// Bytes of request bodies kept for replay now, across the layer.
    pub replay_bytes_in_use: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) retries: AtomicU64,
    pub(crate) budget_exhausted: AtomicU64,
    pub(crate) replay_cap_hit: AtomicU64,
    pub(crate) retry_after_honoured: AtomicU64,
    pub(crate) retry_after_too_long: AtomicU64,
    pub(crate) deadline_reached: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(
        &self,
        requests: u64,
        budget_available: u64,
        replay_bytes: usize,
    ) -> RetryMetrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let retries = get(&self.retries);
        RetryMetrics {
            requests,
            attempts: requests.saturating_add(retries),
            retries,
            budget_exhausted: get(&self.budget_exhausted),
            replay_cap_hit: get(&self.replay_cap_hit),
            retry_after_honoured: get(&self.retry_after_honoured),
            retry_after_too_long: get(&self.retry_after_too_long),
            deadline_reached: get(&self.deadline_reached),
            budget_available,
            replay_bytes_in_use: replay_bytes as u64,
        }
    }
}
