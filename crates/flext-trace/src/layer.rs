//! [`TraceLayer`]: the layer and its settings.

use std::error::Error as StdError;
use std::sync::Arc;

use http::HeaderName;
use tower_layer::Layer;
use tracing::Level;

use crate::config::{Config, Mode, SuccessLevel, TraceContext};
use crate::metrics::{HttpClientMetrics, MetricsRecorder};
use crate::propagate::X_REQUEST_ID;
use crate::redact::Redaction;
use crate::service::Trace;

/// Instruments an HTTP client service with OpenTelemetry-conformant spans, W3C trace-context
/// propagation and request metrics.
///
/// Two modes, usually stacked together around a retry layer:
///
/// ```text
/// TraceLayer::logical()   one INTERNAL span for the call, backoff included
/// RetryLayer
/// TraceLayer::attempt()   one CLIENT span per attempt, with http.request.resend_count
/// client (pool)
/// ```
///
/// # Defaults
///
/// | setting | attempt | logical |
/// |---|---|---|
/// | span level | INFO | INFO |
/// | event when the request succeeds | INFO alone, DEBUG under a logical layer | INFO |
/// | event when it fails (error, 4xx, 5xx) | WARN | WARN |
/// | `traceparent` injected | when the span is recorded or the request has a trace ([`TraceContext::Recorded`]) | same |
/// | `x-request-id` | no | no |
/// | headers recorded | none | none |
/// | query keys redacted | [`DEFAULT_SENSITIVE_QUERY_KEYS`](crate::DEFAULT_SENSITIVE_QUERY_KEYS) | same |
/// | metrics | none until [`metrics`](TraceLayer::metrics) or [`recorder`](TraceLayer::recorder) | same |
#[derive(Debug, Clone)]
pub struct TraceLayer {
    config: Arc<Config>,
}

impl TraceLayer {
    /// A layer making one `CLIENT` span per attempt; place it inside retry.
    pub fn attempt() -> TraceLayer {
        TraceLayer::new(Mode::Attempt)
    }

    /// A layer making one `INTERNAL` span per logical call; place it outside retry.
    pub fn logical() -> TraceLayer {
        TraceLayer::new(Mode::Logical)
    }

    /// A layer of the given mode.
    pub fn new(mode: Mode) -> TraceLayer {
        TraceLayer {
            config: Arc::new(Config::new(mode)),
        }
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.config.mode
    }

    fn with(mut self, f: impl FnOnce(&mut Config)) -> TraceLayer {
        let config = Arc::make_mut(&mut self.config);
        f(config);
        config.refresh();
        self
    }

    /// The level of the spans (default INFO, so that a subscriber at INFO sees every request).
    pub fn span_level(self, level: Level) -> TraceLayer {
        self.with(|c| c.span_level = level)
    }

    /// The level of the event logged when a request succeeds, or `None` for no event.
    pub fn success_event(self, level: Option<Level>) -> TraceLayer {
        self.with(|c| c.success_level = SuccessLevel::Fixed(level))
    }

    /// The level of the event logged when a request fails (an error, a 4xx or a 5xx), or
    /// `None` for no event (default WARN).
    pub fn failure_event(self, level: Option<Level>) -> TraceLayer {
        self.with(|c| c.failure_level = level)
    }

    /// The URL redaction rules (default [`Redaction::new`]).
    pub fn redaction(self, redaction: Redaction) -> TraceLayer {
        self.with(|c| c.redaction = redaction)
    }

    /// Also redacts the value of query key `key` in `url.full`.
    pub fn redact_query_key(self, key: impl Into<std::borrow::Cow<'static, str>>) -> TraceLayer {
        let key = key.into();
        self.with(move |c| c.redaction = std::mem::take(&mut c.redaction).query_key(key))
    }

    /// Records these request headers (`http.request.header.<name>`); sensitive values are
    /// written `REDACTED`.
    pub fn record_request_headers(self, names: impl IntoIterator<Item = HeaderName>) -> TraceLayer {
        let names: Vec<HeaderName> = names.into_iter().collect();
        self.with(|c| c.request_headers.extend(names))
    }

    /// Records these response headers (`http.response.header.<name>`); sensitive values are
    /// written `REDACTED`.
    pub fn record_response_headers(
        self,
        names: impl IntoIterator<Item = HeaderName>,
    ) -> TraceLayer {
        let names: Vec<HeaderName> = names.into_iter().collect();
        self.with(|c| c.response_headers.extend(names))
    }

    /// When to send `traceparent` (and `tracestate`); default [`TraceContext::Recorded`]:
    /// when a subscriber records the span, or the request already belongs to a trace.
    pub fn trace_context(self, when: TraceContext) -> TraceLayer {
        self.with(|c| c.trace_context = when)
    }

    /// Sets `x-request-id` to a random UUID on requests that have none (kept across attempts
    /// when the logical layer sets it).
    pub fn request_id(self) -> TraceLayer {
        self.request_id_header(X_REQUEST_ID)
    }

    /// As [`request_id`](TraceLayer::request_id), under another header name.
    pub fn request_id_header(self, name: HeaderName) -> TraceLayer {
        self.with(|c| c.request_id = Some(name))
    }

    /// Records request metrics into the built-in recorder.
    pub fn metrics(self, metrics: HttpClientMetrics) -> TraceLayer {
        self.with(|c| c.metrics = Some(metrics))
    }

    /// Records request metrics into another back-end as well.
    pub fn recorder(self, recorder: impl MetricsRecorder) -> TraceLayer {
        let recorder: Arc<dyn MetricsRecorder> = Arc::new(recorder);
        self.with(|c| c.recorder = Some(recorder))
    }

    /// Names the `error.type` of errors the built-in rules do not know (a circuit breaker's
    /// rejection, say). The function sees each error and its chain; `None` falls back to the
    /// built-in rules (a `TransportError`'s kind, timeouts, I/O errors, then `_OTHER`).
    ///
    /// ```
    /// use flext_trace::TraceLayer;
    ///
    /// let layer = TraceLayer::attempt().error_type(|err| {
    ///     err.to_string().starts_with("circuit open").then_some("circuit_open")
    /// });
    /// # let _ = layer;
    /// ```
    pub fn error_type(
        self,
        f: fn(&(dyn StdError + 'static)) -> Option<&'static str>,
    ) -> TraceLayer {
        self.with(|c| c.error_type = Some(f))
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Trace<S> {
        Trace::new(inner, Arc::clone(&self.config))
    }
}
