//! What a [`TraceLayer`](crate::TraceLayer) records and sends.

use std::fmt;
use std::sync::Arc;

use http::HeaderName;
use tracing::Level;

use crate::attributes::ErrorTypeFn;
use crate::metrics::{HttpClientMetrics, MetricsRecorder};
use crate::redact::Redaction;
use crate::span::level_enabled;

/// Which span a layer makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One `CLIENT` span per attempt: the layer sits inside retry, right above the connection
    /// pool.
    Attempt,
    /// One `INTERNAL` span around the whole call, backoff included: the layer sits outside
    /// retry, and attempt spans become its children.
    Logical,
}

/// When a layer sends W3C trace context (`traceparent`, and `tracestate` from OpenTelemetry).
///
/// A request that already belongs to a trace (an OpenTelemetry context, the logical layer's
/// trace, a `traceparent` the caller set) has it passed on under every setting but
/// [`Off`](TraceContext::Off). The settings differ on a request that belongs to none:
///
/// ```
/// use flext_trace::{TraceContext, TraceLayer};
///
/// // The default: a trace is started when a subscriber records this layer's span.
/// let recorded = TraceLayer::attempt().trace_context(TraceContext::Recorded);
/// // A trace id on every request, recorded or not (flags `00` when nothing records it).
/// let always = TraceLayer::attempt().trace_context(TraceContext::Always);
/// # let _ = (recorded, always);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TraceContext {
    /// Nothing is injected; a `traceparent` the caller set is left as it is.
    Off,
    /// The default. A trace is started, and its id recorded in the span and sent, when a
    /// subscriber records the layer's span; when nothing records it, the layer starts no trace
    /// and sends none (what OpenTelemetry instrumentation does with no tracer installed), and
    /// a trace the request already has is passed on unchanged.
    #[default]
    Recorded,
    /// Every request carries a trace: a new one when it has none, whether or not anything
    /// records the span. A trace nothing on this side records is sent not sampled (flags
    /// `00`), as W3C Trace Context asks; downstream samplers decide.
    Always,
}

/// When the success event is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SuccessLevel {
    /// Logical: INFO. Attempt: INFO, or DEBUG under a logical layer (which logs the call).
    Auto,
    Fixed(Option<Level>),
}

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) mode: Mode,
    pub(crate) span_level: Level,
    pub(crate) success_level: SuccessLevel,
    pub(crate) failure_level: Option<Level>,
    pub(crate) redaction: Redaction,
    pub(crate) request_headers: Vec<HeaderName>,
    pub(crate) response_headers: Vec<HeaderName>,
    pub(crate) trace_context: TraceContext,
    pub(crate) request_id: Option<HeaderName>,
    pub(crate) metrics: Option<HttpClientMetrics>,
    pub(crate) recorder: Option<Arc<dyn MetricsRecorder>>,
    pub(crate) error_type: Option<ErrorTypeFn>,
    /// The most severe level of anything the layer may log (its span and events), kept up to
    /// date by [`Config::refresh`]: when even that level is filtered out, and there are no
    /// metrics, a call records nothing.
    pub(crate) severest: Level,
}

impl Config {
    pub(crate) fn new(mode: Mode) -> Config {
        let mut config = Config {
            mode,
            span_level: Level::INFO,
            success_level: SuccessLevel::Auto,
            failure_level: Some(Level::WARN),
            redaction: Redaction::new(),
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            trace_context: TraceContext::Recorded,
            request_id: None,
            metrics: None,
            recorder: None,
            error_type: None,
            severest: Level::INFO,
        };
        config.refresh();
        config
    }

    /// Recomputes what is derived from the settings; call after changing them.
    pub(crate) fn refresh(&mut self) {
        // `Level` orders the more verbose as the greater.
        self.severest = [
            Some(self.span_level),
            self.success_level(false),
            self.success_level(true),
            self.failure_level,
        ]
        .into_iter()
        .flatten()
        .fold(Level::TRACE, Level::min);
    }

    /// Whether this call may record anything: a span or an event a subscriber may want, or
    /// metrics. A cheap global check; when it says no, the call only propagates.
    #[inline]
    pub(crate) fn may_record(&self) -> bool {
        self.records_metrics() || level_enabled(self.severest)
    }

    /// The level of the success event, knowing whether a logical layer is above.
    pub(crate) fn success_level(&self, under_logical: bool) -> Option<Level> {
        match (self.success_level, self.mode) {
            (SuccessLevel::Fixed(level), _) => level,
            (SuccessLevel::Auto, Mode::Attempt) if under_logical => Some(Level::DEBUG),
            (SuccessLevel::Auto, _) => Some(Level::INFO),
        }
    }

    #[inline]
    pub(crate) fn records_metrics(&self) -> bool {
        self.metrics.is_some() || self.recorder.is_some()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("mode", &self.mode)
            .field("span_level", &self.span_level)
            .field("success_level", &self.success_level)
            .field("failure_level", &self.failure_level)
            .field("redaction", &self.redaction)
            .field("request_headers", &self.request_headers)
            .field("response_headers", &self.response_headers)
            .field("trace_context", &self.trace_context)
            .field("request_id", &self.request_id)
            .field("metrics", &self.metrics)
            .field("recorder", &self.recorder)
            .field("error_type", &self.error_type.is_some())
            .finish_non_exhaustive()
    }
}
