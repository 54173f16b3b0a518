//! [`MetricsFacade`]: a [`MetricsRecorder`] for the `metrics` crate's facade.

use std::time::Duration;

use metrics::{Label, Unit};

use super::{
    ACTIVE_REQUESTS, MetricsRecorder, REQUEST_DURATION, RequestAttributes, ResultAttributes,
};

/// Reports to whatever recorder the [`metrics`](https://docs.rs/metrics) facade has installed
/// (a Prometheus exporter, StatsD, ...), under the OpenTelemetry names
/// `http.client.request.duration` (seconds) and `http.client.active_requests` (a gauge moved
/// up and down). Histogram buckets are the exporter's to choose; give it
/// [`DURATION_BUCKETS`](super::DURATION_BUCKETS).
///
/// Each call builds its labels (a few small allocations); the built-in
/// [`HttpClientMetrics`](super::HttpClientMetrics) does not.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsFacade {
    _private: (),
}

impl MetricsFacade {
    /// A facade recorder. Call [`describe`](MetricsFacade::describe) once the facade's
    /// recorder is installed to give the metrics their unit and help text.
    pub fn new() -> MetricsFacade {
        MetricsFacade { _private: () }
    }

    /// Describes both metrics to the installed recorder.
    pub fn describe(&self) {
        metrics::describe_histogram!(
            REQUEST_DURATION,
            Unit::Seconds,
            "Duration of HTTP client requests."
        );
        metrics::describe_gauge!(
            ACTIVE_REQUESTS,
            Unit::Count,
            "Number of active HTTP requests."
        );
    }
}

fn request_labels(request: &RequestAttributes<'_>) -> Vec<Label> {
    let mut labels = Vec::with_capacity(5);
    labels.push(Label::new("http.request.method", request.method));
    labels.push(Label::new(
        "server.address",
        request.server_address.to_owned(),
    ));
    if let Some(port) = request.server_port {
        labels.push(Label::new("server.port", port.to_string()));
    }
    labels
}

impl MetricsRecorder for MetricsFacade {
    fn request_started(&self, request: &RequestAttributes<'_>) {
        metrics::gauge!(ACTIVE_REQUESTS, request_labels(request)).increment(1.0);
    }

    fn request_finished(
        &self,
        request: &RequestAttributes<'_>,
        result: &ResultAttributes<'_>,
        duration: Duration,
    ) {
        let mut labels = request_labels(request);
        metrics::gauge!(ACTIVE_REQUESTS, labels.clone()).decrement(1.0);
        if let Some(status) = result.status {
            labels.push(Label::new("http.response.status_code", status.to_string()));
        }
        if let Some(error) = result.error_type {
            labels.push(Label::new("error.type", error.to_owned()));
        }
        metrics::histogram!(REQUEST_DURATION, labels).record(duration.as_secs_f64());
    }
}
