//! Metrics: atomic counters and fixed-bucket histograms per origin, read as snapshots.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flext_core::Origin;

/// Upper bounds of the histogram buckets, in microseconds; a last bucket takes the rest.
const BOUNDS_US: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000, 30_000_000,
];

/// A histogram of durations in fixed buckets, updated with relaxed atomics.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    pub(crate) fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_US.partition_point(|&b| b < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Records a zero duration without reading the clock (an immediate acquire).
    pub(crate) fn record_zero(&self) {
        self.buckets[0].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let mut buckets = Vec::with_capacity(self.buckets.len());
        let mut count = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            count += n;
            let le = BOUNDS_US
                .get(i)
                .map_or(Duration::MAX, |&us| Duration::from_micros(us));
            buckets.push((le, n));
        }
        HistogramSnapshot {
            buckets,
            count,
            sum: Duration::from_micros(self.sum_us.load(Ordering::Relaxed)),
        }
    }
}

/// A histogram read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// `(upper bound, count)` per bucket, not cumulative; the last bound is
    /// [`Duration::MAX`].
    pub buckets: Vec<(Duration, u64)>,
    /// Number of recorded values.
    pub count: u64,
    /// Sum of the recorded values.
    pub sum: Duration,
}

impl HistogramSnapshot {
    /// The upper bound of the bucket holding the `q`-quantile (`0.0..=1.0`), `None` when empty.
    pub fn quantile_bound(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (le, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return Some(*le);
            }
        }
        self.buckets.last().map(|(le, _)| *le)
    }
}

/// Why a connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    Idle = 1,
    Lifetime = 2,
    GoAway = 3,
    Error = 4,
    Peer = 5,
    Aborted = 6,
}

impl CloseReason {
    pub(crate) fn from_u8(v: u8) -> Option<CloseReason> {
        Some(match v {
            1 => CloseReason::Idle,
            2 => CloseReason::Lifetime,
            3 => CloseReason::GoAway,
            4 => CloseReason::Error,
            5 => CloseReason::Peer,
            6 => CloseReason::Aborted,
            _ => return None,
        })
    }
}

/// Counters and histograms of one origin.
#[derive(Debug, Default)]
pub(crate) struct OriginMetrics {
    pub(crate) opened_h1: AtomicU64,
    pub(crate) opened_h2: AtomicU64,
    pub(crate) reused: AtomicU64,
    pub(crate) connect_errors: AtomicU64,
    pub(crate) closed_idle: AtomicU64,
    pub(crate) closed_lifetime: AtomicU64,
    pub(crate) closed_goaway: AtomicU64,
    pub(crate) closed_error: AtomicU64,
    pub(crate) closed_peer: AtomicU64,
    pub(crate) closed_aborted: AtomicU64,
    pub(crate) acquire_timeouts: AtomicU64,
    pub(crate) never_sent_retries: AtomicU64,
    pub(crate) connect_time: Histogram,
    pub(crate) acquire_time: Histogram,
}

impl OriginMetrics {
    pub(crate) fn closed(&self, reason: CloseReason) {
        let c = match reason {
            CloseReason::Idle => &self.closed_idle,
            CloseReason::Lifetime => &self.closed_lifetime,
            CloseReason::GoAway => &self.closed_goaway,
            CloseReason::Error => &self.closed_error,
            CloseReason::Peer => &self.closed_peer,
            CloseReason::Aborted => &self.closed_aborted,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn counters(&self) -> Counters {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counters {
            opened_http1: r(&self.opened_h1),
            opened_http2: r(&self.opened_h2),
            reused: r(&self.reused),
            connect_errors: r(&self.connect_errors),
            closed_idle: r(&self.closed_idle),
            closed_lifetime: r(&self.closed_lifetime),
            closed_goaway: r(&self.closed_goaway),
            closed_error: r(&self.closed_error),
            closed_by_peer: r(&self.closed_peer),
            closed_aborted: r(&self.closed_aborted),
            acquire_timeouts: r(&self.acquire_timeouts),
            never_sent_retries: r(&self.never_sent_retries),
        }
    }

    pub(crate) fn connect_time(&self) -> HistogramSnapshot {
        self.connect_time.snapshot()
    }

    pub(crate) fn acquire_time(&self) -> HistogramSnapshot {
        self.acquire_time.snapshot()
    }
}

/// Monotonic counters of one origin since the pool was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Counters {
    /// HTTP/1.1 connections opened.
    pub opened_http1: u64,
    /// HTTP/2 connections opened.
    pub opened_http2: u64,
    /// Requests sent on a connection (or HTTP/2 connection) that had served one before.
    pub reused: u64,
    /// Connects that failed (TCP, proxy, TLS, handshake, timeout).
    pub connect_errors: u64,
    /// Connections closed by the pool for being idle too long, or for a full idle list.
    pub closed_idle: u64,
    /// Connections retired at the end of their lifetime.
    pub closed_lifetime: u64,
    /// HTTP/2 connections closed after the server's GOAWAY.
    pub closed_goaway: u64,
    /// Connections that ended with an error, or that a failed request left unusable.
    pub closed_error: u64,
    /// Connections the server closed cleanly (an HTTP/1.1 keep-alive timeout, say).
    pub closed_by_peer: u64,
    /// HTTP/1.1 connections closed because a response body was dropped before its end
    /// (the connection cannot carry another request until the body is read).
    pub closed_aborted: u64,
    /// Requests that found no connection within the acquire timeout or a full queue.
    pub acquire_timeouts: u64,
    /// Requests resent once because a reused connection closed before they were written.
    pub never_sent_retries: u64,
}

/// The protocol an origin speaks, as far as the pool knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// Not known yet: the first TLS connection has not finished ALPN.
    Unknown,
    /// HTTP/1.1.
    Http1,
    /// HTTP/2.
    Http2,
}

/// The state of one origin's connections at one moment, and its counters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OriginSnapshot {
    /// The origin.
    pub origin: Origin,
    /// The protocol in use.
    pub protocol: Protocol,
    /// Open HTTP/1.1 connections (idle and in use).
    pub http1_connections: usize,
    /// Open HTTP/2 connections.
    pub http2_connections: usize,
    /// Connects in progress.
    pub connecting: usize,
    /// Connections with no request in flight (idle HTTP/1.1, HTTP/2 with no stream).
    pub idle: usize,
    /// Connections with at least one request in flight.
    pub in_use: usize,
    /// Requests waiting for a connection.
    pub waiters: usize,
    /// Active HTTP/2 streams over all connections.
    pub http2_streams_in_flight: usize,
    /// The lowest `SETTINGS_MAX_CONCURRENT_STREAMS` among the open HTTP/2 connections
    /// (`None` when no peer named one).
    pub http2_peer_max_streams: Option<u32>,
    /// Counters since the pool was made.
    pub counters: Counters,
    /// Time to open a connection (TCP, proxy, TLS, handshake).
    pub connect_time: HistogramSnapshot,
    /// Time requests waited for a connection (zero when one was free).
    pub acquire_time: HistogramSnapshot,
}

/// Snapshots of every origin the pool knows.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PoolSnapshot {
    /// One entry per origin.
    pub origins: Vec<OriginSnapshot>,
    /// Requests waiting for a connection across the pool (what `poll_ready` looks at).
    pub waiters: usize,
}

impl PoolSnapshot {
    /// The snapshot of one origin.
    pub fn origin(&self, origin: &Origin) -> Option<&OriginSnapshot> {
        self.origins.iter().find(|o| &o.origin == origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_quantiles() {
        let h = Histogram::default();
        h.record_zero();
        h.record(Duration::from_micros(75));
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets[0], (Duration::from_micros(50), 1));
        assert_eq!(s.buckets[1], (Duration::from_micros(100), 1));
        assert_eq!(s.buckets[6], (Duration::from_millis(5), 1));
        assert_eq!(s.buckets.last(), Some(&(Duration::MAX, 1)));
        assert_eq!(s.quantile_bound(0.5), Some(Duration::from_micros(100)));
        assert_eq!(s.quantile_bound(0.75), Some(Duration::from_millis(5)));
        assert_eq!(Histogram::default().snapshot().quantile_bound(0.5), None);
    }
}
