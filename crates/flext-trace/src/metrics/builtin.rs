//! [`HttpClientMetrics`]: the built-in, lock-free recorder.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use http::{Request, Uri};

use super::exposition::{ActiveSeries, DurationSeries, MetricsSnapshot, SeriesAttributes};
use super::table::Table;
use super::{DURATION_BUCKETS, RequestAttributes};
use crate::attributes::{KnownMethod, Target};

/// The bucket bounds in nanoseconds, so that recording is integer work.
const BOUNDS_NANOS: [u64; 14] = {
    let mut out = [0u64; 14];
    let mut i = 0;
    while i < 14 {
        out[i] = (DURATION_BUCKETS[i] * 1e9) as u64;
        i += 1;
    }
    out
};

const OVERFLOW: u32 = u32::MAX;

/// The default cardinality limit: the number of distinct attribute sets per metric, as the
/// OpenTelemetry SDK's default.
pub const DEFAULT_CARDINALITY_LIMIT: usize = 2000;

/// The built-in metrics recorder: `http.client.request.duration` and
/// `http.client.active_requests`, kept in atomics.
///
/// Clones share the same series. Give one to [`TraceLayer::metrics`](crate::TraceLayer::metrics),
/// then read it with [`snapshot`](HttpClientMetrics::snapshot) or serve
/// [`prometheus`](HttpClientMetrics::prometheus) from a `/metrics` endpoint.
///
/// The per-call path takes no lock and does not allocate: a new attribute set (a new host, a
/// new status) allocates once. Past the cardinality limit, new attribute sets are counted in
/// one overflow series marked `otel.metric.overflow = true`, as the OpenTelemetry SDK does.
///
/// ```
/// use flext_trace::{HttpClientMetrics, TraceLayer};
///
/// let metrics = HttpClientMetrics::new();
/// let layer = TraceLayer::attempt().metrics(metrics.clone());
/// # let _ = layer;
/// assert_eq!(metrics.snapshot().request_count(), 0);
/// assert!(metrics.prometheus().contains("# TYPE http_client_request_duration_seconds histogram"));
/// ```
#[derive(Clone)]
pub struct HttpClientMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    targets: Table<TargetEntry>,
    // The target the last `start_request` found (`OVERFLOW`: none yet). Most clients talk to
    // one origin: a request written like that target's first one skips the parse of its
    // authority and the table's hash and probe.
    recent: AtomicU32,
    durations: Table<DurationEntry>,
    overflow_active: AtomicI64,
    overflow_durations: Histogram,
}

struct TargetEntry {
    method: &'static str,
    address: Box<str>,
    port: Option<u16>,
    active: AtomicI64,
    // How the first request of this target wrote its origin (`scheme://authority`), for the
    // quick check of `start_request`; `None` when that request had no absolute URI.
    spelled: Option<Box<str>>,
}

struct DurationEntry {
    target: u32,
    status: Option<u16>,
    error: Option<&'static str>,
    histogram: Histogram,
}

/// Per-bucket counts (not cumulative; the last is above 10 s) and the sum in nanoseconds.
#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; 15],
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn record(&self, duration: Duration) {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NANOS
            .iter()
            .position(|b| nanos <= *b)
            .unwrap_or(BOUNDS_NANOS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn read(&self) -> ([u64; 15], u64) {
        let mut counts = [0u64; 15];
        for (c, b) in counts.iter_mut().zip(&self.buckets) {
            *c = b.load(Ordering::Relaxed);
        }
        (counts, self.sum_nanos.load(Ordering::Relaxed))
    }
}

/// What the layer keeps between a request's start and its end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Started {
    target: u32,
}

impl HttpClientMetrics {
    /// A recorder with the default cardinality limit (2000 attribute sets per metric).
    pub fn new() -> HttpClientMetrics {
        HttpClientMetrics::with_cardinality_limit(DEFAULT_CARDINALITY_LIMIT)
    }

    /// A recorder keeping at most `limit` attribute sets per metric (at least 1).
    pub fn with_cardinality_limit(limit: usize) -> HttpClientMetrics {
        let limit = limit.clamp(1, OVERFLOW as usize - 1);
        HttpClientMetrics {
            inner: Arc::new(Inner {
                targets: Table::new(limit),
                recent: AtomicU32::new(OVERFLOW),
                durations: Table::new(limit),
                overflow_active: AtomicI64::new(0),
                overflow_durations: Histogram::default(),
            }),
        }
    }

    /// [`start`](Self::start) for `request`: the target the last call found when `request`
    /// writes the same method, scheme and authority, without parsing them again.
    pub(crate) fn start_request<B>(&self, request: &Request<B>) -> Started {
        let method = KnownMethod::of(request.method()).as_str();
        let recent = self.inner.recent.load(Ordering::Relaxed);
        if let Some(entry) = self.inner.targets.get(recent as usize)
            && entry.method == method
            && entry
                .spelled
                .as_deref()
                .is_some_and(|spelled| spelled_as(spelled, request.uri()))
        {
            entry.active.fetch_add(1, Ordering::Relaxed);
            return Started { target: recent };
        }
        let attributes = Target::of(request).attributes();
        let started = self.start_spelled(&attributes, || spelling(request.uri()));
        if started.target != OVERFLOW {
            self.inner.recent.store(started.target, Ordering::Relaxed);
        }
        started
    }

    #[cfg(test)]
    pub(crate) fn start(&self, request: &RequestAttributes<'_>) -> Started {
        self.start_spelled(request, || None)
    }

    /// `start`, with how the request wrote its origin kept for `start_request` when the
    /// target is new.
    pub(crate) fn start_spelled(
        &self,
        request: &RequestAttributes<'_>,
        spelled: impl Fn() -> Option<Box<str>>,
    ) -> Started {
        let targets = &self.inner.targets;
        let hash = targets.hash(&(request.method, request.server_address, request.server_port));
        let index = targets.find_or_insert(
            hash,
            |t| {
                t.method == request.method
                    && t.port == request.server_port
                    && *t.address == *request.server_address
            },
            || TargetEntry {
                method: request.method,
                address: request.server_address.into(),
                port: request.server_port,
                active: AtomicI64::new(0),
                spelled: spelled(),
            },
        );
        let target = match index.and_then(|i| u32::try_from(i).ok()) {
            Some(i) => i,
            None => OVERFLOW,
        };
        self.active(target).fetch_add(1, Ordering::Relaxed);
        Started { target }
    }

    fn active(&self, target: u32) -> &AtomicI64 {
        match self.inner.targets.get(target as usize) {
            Some(t) if target != OVERFLOW => &t.active,
            _ => &self.inner.overflow_active,
        }
    }

    /// Records the end of a request: `error` is the `error.type` of a failure that is not a
    /// 4xx/5xx status (those are labelled by their status).
    pub(crate) fn finish(
        &self,
        started: Started,
        status: Option<u16>,
        error: Option<&'static str>,
        duration: Duration,
    ) {
        self.active(started.target).fetch_sub(1, Ordering::Relaxed);
        let histogram = if started.target == OVERFLOW {
            None
        } else {
            let durations = &self.inner.durations;
            let hash = durations.hash(&(started.target, status, error));
            durations
                .find_or_insert(
                    hash,
                    |d| d.target == started.target && d.status == status && d.error == error,
                    || DurationEntry {
                        target: started.target,
                        status,
                        error,
                        histogram: Histogram::default(),
                    },
                )
                .and_then(|i| durations.get(i))
                .map(|d| &d.histogram)
        };
        histogram
            .unwrap_or(&self.inner.overflow_durations)
            .record(duration);
    }

    /// The current values of every series.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let inner = &*self.inner;
        let target_attrs = |t: &TargetEntry| SeriesAttributes {
            method: t.method,
            server_address: t.address.to_string(),
            server_port: t.port,
            status: None,
            error_type: None,
            overflow: false,
        };
        let mut durations: Vec<DurationSeries> = inner
            .durations
            .iter()
            .filter_map(|d| {
                let target = inner.targets.get(d.target as usize)?;
                let (buckets, sum) = d.histogram.read();
                let mut attributes = target_attrs(target);
                attributes.status = d.status;
                attributes.error_type = match (d.error, d.status) {
                    (Some(e), _) => Some(e.to_owned()),
                    (None, Some(s)) if s >= 400 => Some(s.to_string()),
                    _ => None,
                };
                Some(DurationSeries::new(attributes, buckets, sum))
            })
            .collect();
        let (buckets, sum) = inner.overflow_durations.read();
        if buckets.iter().any(|c| *c > 0) {
            durations.push(DurationSeries::new(
                SeriesAttributes::overflow(),
                buckets,
                sum,
            ));
        }
        let mut active: Vec<ActiveSeries> = inner
            .targets
            .iter()
            .map(|t| ActiveSeries::new(target_attrs(t), t.active.load(Ordering::Relaxed)))
            .collect();
        let overflow = inner.overflow_active.load(Ordering::Relaxed);
        if overflow != 0 {
            active.push(ActiveSeries::new(SeriesAttributes::overflow(), overflow));
        }
        MetricsSnapshot::new(durations, active)
    }

    /// The [snapshot](HttpClientMetrics::snapshot) in the Prometheus text format.
    pub fn prometheus(&self) -> String {
        self.snapshot().prometheus()
    }
}

impl Default for HttpClientMetrics {
    fn default() -> HttpClientMetrics {
        HttpClientMetrics::new()
    }
}

impl fmt::Debug for HttpClientMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClientMetrics")
            .field("targets", &self.inner.targets.iter().count())
            .field("duration_series", &self.inner.durations.iter().count())
            .finish()
    }
}

/// `scheme://authority` of an absolute URI.
pub(crate) fn spelling(uri: &Uri) -> Option<Box<str>> {
    let (scheme, authority) = (uri.scheme_str()?, uri.authority()?);
    Some(format!("{scheme}://{authority}").into_boxed_str())
}

/// Whether `uri` writes its scheme and authority as `spelled` (from [`spelling`]) does.
fn spelled_as(spelled: &str, uri: &Uri) -> bool {
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return false;
    };
    spelled
        .strip_prefix(scheme)
        .and_then(|rest| rest.strip_prefix("://"))
        .is_some_and(|rest| rest == authority.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(address: &str) -> RequestAttributes<'_> {
        RequestAttributes {
            method: "GET",
            server_address: address,
            server_port: Some(80),
        }
    }

    /// The quick path finds the series the full parse finds, whatever the order of targets.
    #[test]
    fn a_remembered_target_is_only_reused_for_the_same_spelling() {
        let m = HttpClientMetrics::new();
        let requests = [
            ("GET", "http://a.test/x"),
            ("GET", "http://a.test/y"),
            ("POST", "http://a.test/x"),
            ("GET", "https://a.test/x"),
            ("GET", "http://a.test:8080/x"),
            ("GET", "http://u@a.test/x"),
            ("GET", "http://b.test/x"),
            ("GET", "http://a.test/z"),
            ("GET", "http://[::1]:80/"),
            ("GET", "http://[::1]/"),
        ];
        for round in 0..3 {
            for (i, (method, uri)) in requests.iter().enumerate() {
                let req = Request::builder()
                    .method(*method)
                    .uri(*uri)
                    .body(())
                    .unwrap();
                let quick = m.start_request(&req);
                let full = m.start(&Target::of(&req).attributes());
                assert_eq!(
                    quick.target, full.target,
                    "round {round}, request {i}: {method} {uri}"
                );
                m.finish(quick, Some(200), None, Duration::from_millis(1));
                m.finish(full, Some(200), None, Duration::from_millis(1));
            }
        }
        // a.test:80 by GET (x, y, z and with user-info), by POST, https, :8080, b.test, [::1]:80.
        let snapshot = m.snapshot();
        assert_eq!(snapshot.request_count(), 2 * 3 * requests.len() as u64);
        assert!(snapshot.active_requests().iter().all(|a| a.value() == 0));
        // Six targets: the paths and the user-info spelling share `a.test:80` by GET, and
        // `[::1]` is `[::1]:80`.
        assert_eq!(snapshot.active_requests().len(), 6);
    }

    #[test]
    fn buckets_are_le_bounds() {
        let h = Histogram::default();
        for ms in [0, 5, 6, 100, 10_000, 10_001] {
            h.record(Duration::from_millis(ms));
        }
        let (b, sum) = h.read();
        assert_eq!(b[0], 2, "0 ms and 5 ms are <= 0.005");
        assert_eq!(b[1], 1);
        assert_eq!(b[5], 1, "100 ms is <= 0.1");
        assert_eq!(b[13], 1, "10 s is <= 10");
        assert_eq!(b[14], 1, "above 10 s");
        assert_eq!(sum, 20_112_000_000);
    }

    #[test]
    fn records_by_target_and_result() {
        let m = HttpClientMetrics::new();
        let s = m.start(&attrs("a.example"));
        assert_eq!(m.snapshot().active_requests()[0].value(), 1);
        m.finish(s, Some(200), None, Duration::from_millis(20));
        let s = m.start(&attrs("a.example"));
        m.finish(s, Some(503), None, Duration::from_millis(20));
        let s = m.start(&attrs("a.example"));
        m.finish(s, None, Some("timeout"), Duration::from_millis(20));
        let snap = m.snapshot();
        assert_eq!(snap.request_count(), 3);
        assert_eq!(snap.active_requests()[0].value(), 0);
        let by_error = snap.count_by_error_type();
        assert_eq!(by_error.get("503"), Some(&1));
        assert_eq!(by_error.get("timeout"), Some(&1));
        let by_class = snap.count_by_status_class();
        assert_eq!(by_class.get("2xx"), Some(&1));
        assert_eq!(by_class.get("5xx"), Some(&1));
    }

    #[test]
    fn overflow_series_past_the_limit() {
        let m = HttpClientMetrics::with_cardinality_limit(1);
        for host in ["a", "b", "c"] {
            let s = m.start(&attrs(host));
            m.finish(s, Some(200), None, Duration::from_millis(1));
        }
        let snap = m.snapshot();
        assert_eq!(snap.request_count(), 3);
        assert!(
            snap.durations()
                .iter()
                .any(|d| d.attributes().is_overflow() && d.count() == 2)
        );
    }
}
