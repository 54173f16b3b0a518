//! Counting calls: a [`Recorder`] per worker task, merged at the end; [`Live`] counters for
//! the progress bars; [`Latency`] percentiles from sorted samples.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use http::{StatusCode, Version};
use serde::Serialize;

use crate::client::protocol_label;
use crate::duration::millis;

/// What one worker saw. Cheap to update: no locks, no shared state.
#[derive(Debug, Default, Clone)]
pub(crate) struct Recorder {
    /// Latencies of calls that got a response.
    responses: Vec<Duration>,
    /// Latencies of calls that ended in an error (circuit-open rejections included).
    errors: Vec<Duration>,
    /// Latencies of calls refused by an open circuit.
    fail_fast: Vec<Duration>,
    /// Calls whose final status was below 400.
    pub(crate) succeeded: u64,
    /// Final statuses.
    pub(crate) statuses: BTreeMap<u16, u64>,
    /// Protocols of the responses.
    pub(crate) protocols: BTreeMap<&'static str, u64>,
    /// Errors by [`flext_api::Error::kind_label`].
    pub(crate) error_kinds: BTreeMap<&'static str, u64>,
    /// Retries made: attempts beyond the first, over every call.
    pub(crate) retries: u64,
    /// Calls refused by an open circuit.
    pub(crate) circuit_open: u64,
    /// When the first successful call ended, from the start of the run.
    pub(crate) first_success: Option<Duration>,
}

impl Recorder {
    /// Calls recorded.
    pub(crate) fn calls(&self) -> u64 {
        (self.responses.len() + self.errors.len()) as u64
    }

    /// Calls that got a response (any status).
    pub(crate) fn responses(&self) -> u64 {
        self.responses.len() as u64
    }

    /// Calls that got no response.
    pub(crate) fn errors(&self) -> u64 {
        self.errors.len() as u64
    }

    /// Records a response: its final status, the attempts it took and the call's latency;
    /// `at` is when it ended, from the start of the run.
    pub(crate) fn response(
        &mut self,
        status: StatusCode,
        version: Version,
        attempts: u32,
        latency: Duration,
        at: Duration,
    ) {
        self.responses.push(latency);
        *self.statuses.entry(status.as_u16()).or_default() += 1;
        *self.protocols.entry(protocol_label(version)).or_default() += 1;
        self.retries += u64::from(attempts.saturating_sub(1));
        if status.as_u16() < 400 {
            self.succeeded += 1;
            self.first_success = Some(self.first_success.map_or(at, |f| f.min(at)));
        }
    }

    /// Records a call that ended in an error.
    pub(crate) fn error(&mut self, error: &flext_api::Error, latency: Duration) {
        self.errors.push(latency);
        let kind = error.kind_label();
        *self.error_kinds.entry(kind).or_default() += 1;
        let attempts = error
            .retry_info()
            .map_or(1, flext_api::retry::RetryInfo::attempts);
        self.retries += u64::from(attempts.saturating_sub(1));
        if error.is_circuit_open() {
            self.circuit_open += 1;
            self.fail_fast.push(latency);
        }
    }

    /// Adds another worker's counts to these.
    pub(crate) fn merge(&mut self, other: Recorder) {
        self.responses.extend(other.responses);
        self.errors.extend(other.errors);
        self.fail_fast.extend(other.fail_fast);
        self.succeeded += other.succeeded;
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for (k, v) in other.protocols {
            *self.protocols.entry(k).or_default() += v;
        }
        for (k, v) in other.error_kinds {
            *self.error_kinds.entry(k).or_default() += v;
        }
        self.retries += other.retries;
        self.circuit_open += other.circuit_open;
        self.first_success = match (self.first_success, other.first_success) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// Latency of the calls that got a response.
    pub(crate) fn response_latency(&self) -> Latency {
        Latency::of(self.responses.clone())
    }

    /// Latency of the calls that ended in an error.
    pub(crate) fn error_latency(&self) -> Latency {
        Latency::of(self.errors.clone())
    }

    /// Latency of every call, errors included.
    pub(crate) fn call_latency(&self) -> Latency {
        let mut all = self.responses.clone();
        all.extend_from_slice(&self.errors);
        Latency::of(all)
    }

    /// Latency of the calls an open circuit refused, if any was.
    pub(crate) fn fail_fast_latency(&self) -> Option<Latency> {
        (!self.fail_fast.is_empty()).then(|| Latency::of(self.fail_fast.clone()))
    }

    /// The protocol most responses came over.
    pub(crate) fn protocol(&self) -> Option<&'static str> {
        self.protocols
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(p, _)| *p)
    }

    /// Final statuses with their codes as text, for JSON.
    pub(crate) fn status_counts(&self) -> BTreeMap<String, u64> {
        self.statuses
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect()
    }
}

/// `part` of `whole` in percent; 0 for an empty whole.
pub(crate) fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Latency percentiles in milliseconds (nearest rank); zeros when there were no samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct Latency {
    /// Samples.
    pub(crate) samples: u64,
    /// Mean.
    pub(crate) mean: f64,
    /// Median.
    pub(crate) p50: f64,
    /// 90th percentile.
    pub(crate) p90: f64,
    /// 99th percentile.
    pub(crate) p99: f64,
    /// Largest.
    pub(crate) max: f64,
}

impl Latency {
    /// Percentiles of `samples`.
    pub(crate) fn of(mut samples: Vec<Duration>) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let total: Duration = samples.iter().sum();
        let n = samples.len();
        Latency {
            samples: n as u64,
            mean: millis(total) / n as f64,
            p50: millis(percentile(&samples, 0.50)),
            p90: millis(percentile(&samples, 0.90)),
            p99: millis(percentile(&samples, 0.99)),
            max: millis(samples[n - 1]),
        }
    }
}

/// The nearest-rank percentile `q` (0 to 1) of sorted, non-empty samples.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let n = sorted.len();
    // The rank is at most n, which fits in f64 exactly for any sample count we can hold.
    let rank = (q * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// Counters every worker bumps, read by the progress display while a run goes on.
#[derive(Debug, Default)]
pub(crate) struct Live {
    /// Calls finished.
    pub(crate) done: AtomicU64,
    /// Calls whose final status was below 400.
    pub(crate) ok: AtomicU64,
    /// Calls with no response or a status of 400 or more.
    pub(crate) failed: AtomicU64,
    /// Retries made.
    pub(crate) retries: AtomicU64,
    /// Calls refused by an open circuit.
    pub(crate) circuit_open: AtomicU64,
}

impl Live {
    /// Counts a response.
    pub(crate) fn response(&self, status: StatusCode, attempts: u32) {
        self.done.fetch_add(1, Relaxed);
        if status.as_u16() < 400 {
            self.ok.fetch_add(1, Relaxed);
        } else {
            self.failed.fetch_add(1, Relaxed);
        }
        self.retries
            .fetch_add(u64::from(attempts.saturating_sub(1)), Relaxed);
    }

    /// Counts an error.
    pub(crate) fn error(&self, error: &flext_api::Error) {
        self.done.fetch_add(1, Relaxed);
        self.failed.fetch_add(1, Relaxed);
        let attempts = error
            .retry_info()
            .map_or(1, flext_api::retry::RetryInfo::attempts);
        self.retries
            .fetch_add(u64::from(attempts.saturating_sub(1)), Relaxed);
        if error.is_circuit_open() {
            self.circuit_open.fetch_add(1, Relaxed);
        }
    }

    /// `done, ok, failed, retries, circuit_open` now.
    pub(crate) fn read(&self) -> [u64; 5] {
        [
            self.done.load(Relaxed),
            self.ok.load(Relaxed),
            self.failed.load(Relaxed),
            self.retries.load(Relaxed),
            self.circuit_open.load(Relaxed),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let l = Latency::of(samples);
        assert_eq!((l.p50, l.p90, l.p99, l.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(l.samples, 100);
        let one = Latency::of(vec![Duration::from_millis(3)]);
        assert_eq!((one.p50, one.p99, one.max), (3.0, 3.0, 3.0));
        assert_eq!(Latency::of(Vec::new()), Latency::default());
    }

    #[test]
    fn recorders_merge() {
        let mut a = Recorder::default();
        a.response(
            StatusCode::OK,
            Version::HTTP_2,
            2,
            Duration::from_millis(5),
            Duration::from_secs(2),
        );
        let mut b = Recorder::default();
        b.response(
            StatusCode::NOT_FOUND,
            Version::HTTP_2,
            1,
            Duration::from_millis(1),
            Duration::from_secs(1),
        );
        b.response(
            StatusCode::OK,
            Version::HTTP_11,
            1,
            Duration::from_millis(1),
            Duration::from_secs(3),
        );
        a.merge(b);
        assert_eq!((a.calls(), a.succeeded, a.retries), (3, 2, 1));
        assert_eq!(a.first_success, Some(Duration::from_secs(2)));
        assert_eq!(a.protocol(), Some("HTTP/2"));
        assert_eq!(a.status_counts().get("200"), Some(&2));
    }
}
