//! Request metrics, as the OpenTelemetry HTTP client conventions name them.
//!
//! | metric | kind | unit | attributes |
//! |---|---|---|---|
//! | `http.client.request.duration` | histogram, buckets [`DURATION_BUCKETS`] | s | `http.request.method`, `server.address`, `server.port`, `http.response.status_code` (when a response came), `error.type` (when it failed) |
//! | `http.client.active_requests` | up-down counter | `{request}` | `http.request.method`, `server.address`, `server.port` |
//!
//! [`HttpClientMetrics`] is the built-in recorder: lock-free on the per-call path, with a
//! [snapshot](HttpClientMetrics::snapshot) and [Prometheus text](MetricsSnapshot::prometheus).
//! Other back-ends implement [`MetricsRecorder`]; two ship behind features:
//! `MetricsFacade` (`metrics` feature) and `OtelMetrics` (`opentelemetry-metrics` feature).

use std::fmt;
use std::time::Duration;

mod builtin;
mod exposition;
#[cfg(feature = "metrics")]
mod facade;
#[cfg(feature = "opentelemetry-metrics")]
mod otel;
mod table;

pub use builtin::{DEFAULT_CARDINALITY_LIMIT, HttpClientMetrics};
pub(crate) use builtin::{Started, spelling};
pub use exposition::{ActiveSeries, DurationSeries, MetricsSnapshot, SeriesAttributes};
#[cfg(feature = "metrics")]
pub use facade::MetricsFacade;
#[cfg(feature = "opentelemetry-metrics")]
pub use otel::OtelMetrics;

/// The bucket boundaries of `http.client.request.duration`, in seconds, as the conventions
/// advise.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The name of the duration histogram.
pub const REQUEST_DURATION: &str = "http.client.request.duration";
/// The name of the active-requests up-down counter.
pub const ACTIVE_REQUESTS: &str = "http.client.active_requests";

/// The attributes a request has before it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestAttributes<'a> {
    pub(crate) method: &'static str,
    pub(crate) server_address: &'a str,
    pub(crate) server_port: Option<u16>,
}

impl<'a> RequestAttributes<'a> {
    /// `http.request.method`: a known method or `_OTHER`.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// `server.address`; empty when the request named no host.
    pub fn server_address(&self) -> &'a str {
        self.server_address
    }

    /// `server.port`, explicit or the scheme's default.
    pub fn server_port(&self) -> Option<u16> {
        self.server_port
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultAttributes<'a> {
    pub(crate) status: Option<u16>,
    pub(crate) error_type: Option<&'a str>,
    pub(crate) protocol_version: Option<&'static str>,
}

impl<'a> ResultAttributes<'a> {
    /// `http.response.status_code`, when a response came.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// `error.type`, when the request failed: the status code for 4xx and 5xx, else the kind
    /// of error (`timeout`, `connect`, ..., `cancelled`, `_OTHER`).
    pub fn error_type(&self) -> Option<&'a str> {
        self.error_type
    }

    /// `network.protocol.version` of the response (`1.1`, `2`).
    pub fn protocol_version(&self) -> Option<&'static str> {
        self.protocol_version
    }
}

/// A metrics back-end: told when a request starts and when it ends.
///
/// Implementations are called on the request path; keep them cheap.
pub trait MetricsRecorder: fmt::Debug + Send + Sync + 'static {
    /// A request starts: `http.client.active_requests` goes up.
    fn request_started(&self, request: &RequestAttributes<'_>);

    /// A request ended (a response head, an error, or the caller dropped it): record the
    /// duration, and `http.client.active_requests` goes down.
    fn request_finished(
        &self,
        request: &RequestAttributes<'_>,
        result: &ResultAttributes<'_>,
        duration: Duration,
    );
}

/// The status class label (`2xx`) of a status code.
pub(crate) fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "other",
    }
}
