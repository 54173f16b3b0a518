//! [`OtelMetrics`]: a [`MetricsRecorder`] for an OpenTelemetry `Meter`.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter, UpDownCounter};

use super::{
    ACTIVE_REQUESTS, DURATION_BUCKETS, MetricsRecorder, REQUEST_DURATION, RequestAttributes,
    ResultAttributes,
};

/// Reports `http.client.request.duration` (an `f64` histogram in seconds with the
/// conventions' [buckets](DURATION_BUCKETS)) and `http.client.active_requests` (an `i64`
/// up-down counter) to an OpenTelemetry [`Meter`].
///
/// ```
/// use flext_trace::{OtelMetrics, TraceLayer};
///
/// let meter = opentelemetry::global::meter("flext");
/// let layer = TraceLayer::attempt().recorder(OtelMetrics::new(&meter));
/// # let _ = layer;
/// ```
#[derive(Debug, Clone)]
pub struct OtelMetrics {
    duration: Histogram<f64>,
    active: UpDownCounter<i64>,
}

impl OtelMetrics {
    /// Creates both instruments on `meter`.
    pub fn new(meter: &Meter) -> OtelMetrics {
        OtelMetrics {
            duration: meter
                .f64_histogram(REQUEST_DURATION)
                .with_unit("s")
                .with_description("Duration of HTTP client requests.")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            active: meter
                .i64_up_down_counter(ACTIVE_REQUESTS)
                .with_unit("{request}")
                .with_description("Number of active HTTP requests.")
                .build(),
        }
    }
}

fn request_attributes(request: &RequestAttributes<'_>) -> Vec<KeyValue> {
    let mut attrs = Vec::with_capacity(5);
    attrs.push(KeyValue::new("http.request.method", request.method));
    attrs.push(KeyValue::new(
        "server.address",
        request.server_address.to_owned(),
    ));
    if let Some(port) = request.server_port {
        attrs.push(KeyValue::new("server.port", i64::from(port)));
    }
    attrs
}

impl MetricsRecorder for OtelMetrics {
    fn request_started(&self, request: &RequestAttributes<'_>) {
        self.active.add(1, &request_attributes(request));
    }

    fn request_finished(
        &self,
        request: &RequestAttributes<'_>,
        result: &ResultAttributes<'_>,
        duration: Duration,
    ) {
        let mut attrs = request_attributes(request);
        self.active.add(-1, &attrs);
        if let Some(status) = result.status {
            attrs.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        if let Some(error) = result.error_type {
            attrs.push(KeyValue::new("error.type", error.to_owned()));
        }
        if let Some(version) = result.protocol_version {
            attrs.push(KeyValue::new("network.protocol.version", version));
        }
        self.duration.record(duration.as_secs_f64(), &attrs);
    }
}
