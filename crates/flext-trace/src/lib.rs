//! # flext-trace
//!
//! OpenTelemetry-conformant tracing and metrics for any HTTP client service, as a
//! [`tower::Layer`](tower_layer::Layer) over `http::Request<B>` / `http::Response<B>`.
//!
//! - **Spans** follow the OpenTelemetry HTTP client conventions exactly:
//!   [`TraceLayer::attempt`] makes one `CLIENT` span per attempt (named `GET`, or
//!   `GET /users/{id}` with a [`UrlTemplate`]), with `http.request.method`, `server.address`,
//!   `server.port`, `url.full`, `url.scheme`, `network.protocol.version`,
//!   `http.response.status_code`, `error.type`, `http.request.resend_count` (from
//!   [`flext_core::Attempt`]) and `otel.status_code = ERROR` on 4xx, 5xx and errors.
//!   [`TraceLayer::logical`] makes one `INTERNAL` span around the whole call, backoff
//!   included; attempt spans become its children.
//! - **Redaction**: `url.full` never shows user-info or the values of signed-URL query keys
//!   ([`Redaction`]); headers are recorded only from an allow-list, and sensitive values never.
//! - **Propagation**: W3C `traceparent`, from the OpenTelemetry context with the
//!   `opentelemetry` feature, else from an id generated per logical request and recorded in the
//!   spans, so client and server logs correlate. A trace is started only for a call a subscriber
//!   records ([`TraceContext`]); one the request already has is always passed on. Optional
//!   `x-request-id`.
//! - **Metrics**: `http.client.request.duration` and `http.client.active_requests` in the
//!   lock-free [`HttpClientMetrics`], with a [snapshot](HttpClientMetrics::snapshot) and
//!   [Prometheus text](HttpClientMetrics::prometheus); other back-ends through
//!   [`MetricsRecorder`].
//!
//! ```
//! use std::convert::Infallible;
//! use flext_trace::{HttpClientMetrics, TraceLayer, TraceParent};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // The application's subscriber records the spans (here a bare registry).
//! let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
//! let metrics = HttpClientMetrics::new();
//! let client = ServiceBuilder::new()
//!     .layer(TraceLayer::attempt().metrics(metrics.clone()))
//!     .service(service_fn(|request: http::Request<()>| async move {
//!         // A stand-in for a real client: the request arrives with the recorded span's trace.
//!         let traceparent = TraceParent::from_headers(request.headers());
//!         assert!(traceparent.is_some());
//!         Ok::<_, Infallible>(http::Response::new(()))
//!     }));
//!
//! let request = http::Request::get("https://user:pw@api.example.com/items?sig=s3cr3t").body(()).unwrap();
//! let response = client.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), 200);
//!
//! let snapshot = metrics.snapshot();
//! assert_eq!(snapshot.request_count(), 1);
//! assert_eq!(snapshot.durations()[0].attributes().server_address(), "api.example.com");
//! # }
//! ```
//!
//! # Features
//!
//! - `opentelemetry`: `traceparent`/`tracestate` from the current span's OpenTelemetry
//!   context through `tracing-opentelemetry` 0.34 (OpenTelemetry 0.33), and allow-listed headers
//!   as `http.request.header.<name>` attributes.
//! - `metrics`: `MetricsFacade`, a recorder for the `metrics` facade.
//! - `opentelemetry-metrics`: `OtelMetrics`, a recorder for an
//!   OpenTelemetry `Meter`.
//!
//! See `docs/observability.md` for the attribute table, the redaction rules, exporter wiring
//! and what each metric means.

#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]

mod attributes;
mod config;
mod future;
mod layer;
pub mod metrics;
mod propagate;
mod redact;
mod service;
mod span;

pub use attributes::UrlTemplate;
pub use config::{Mode, TraceContext};
pub use future::ResponseFuture;
pub use layer::TraceLayer;
#[cfg(feature = "metrics")]
pub use metrics::MetricsFacade;
#[cfg(feature = "opentelemetry-metrics")]
pub use metrics::OtelMetrics;
pub use metrics::{HttpClientMetrics, MetricsRecorder, MetricsSnapshot};
pub use propagate::{
    SpanId, TRACEPARENT, TRACESTATE, TraceId, TraceParent, TraceParentError, X_REQUEST_ID,
};
pub use redact::{DEFAULT_SENSITIVE_QUERY_KEYS, REDACTED, RedactedUrl, Redaction};
pub use service::Trace;
