//! Making the span: its name is the method, its fields the OpenTelemetry attributes.
//!
//! `tracing` fixes a span's name and level at its call site, so there is one call site per
//! (level, method) pair: 5 x 10, all expanded from one macro. The OpenTelemetry span name
//! `{method} {url.template}` cannot be static; it goes in `otel.name`, which
//! tracing-opentelemetry uses as the span name.

use std::fmt;

use tracing::field::Empty;
use tracing::{Level, Span};

use crate::attributes::{KnownMethod, Target, UrlTemplate};
use crate::redact::RedactedUrl;

/// The values a span has at creation (the ones samplers may read).
pub(crate) struct Fields<'a> {
    pub(crate) kind: &'static str,
    pub(crate) target: Target<'a>,
    pub(crate) method_original: Option<&'a str>,
    pub(crate) url: RedactedUrl<'a>,
    pub(crate) template: Option<&'a UrlTemplate>,
    pub(crate) resend_count: Option<u32>,
}

/// `{method} {template}` for `otel.name`.
struct SpanName<'a>(KnownMethod, &'a UrlTemplate);

impl fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0.span_name(), self.1)
    }
}

macro_rules! http_span {
    ($level:expr, $name:literal, $f:ident) => {
        tracing::span!(
            $level,
            $name,
            otel.name = $f.template.map(|t| display(SpanName($f.target.method, t))),
            otel.kind = $f.kind,
            otel.status_code = Empty,
            http.request.method = $f.target.method.as_str(),
            http.request.method_original = $f.method_original,
            server.address = $f.target.address,
            server.port = $f.target.port,
            url.full = display($f.url),
            url.scheme = $f.target.scheme,
            url.template = $f.template.map(UrlTemplate::as_str),
            http.request.resend_count = $f.resend_count,
            http.request.headers = Empty,
            network.protocol.version = Empty,
            http.response.status_code = Empty,
            http.response.headers = Empty,
            error.type = Empty,
            trace_id = Empty,
        )
    };
}

macro_rules! by_method {
    ($level:expr, $f:ident) => {
        match $f.target.method {
            KnownMethod::Get => http_span!($level, "GET", $f),
            KnownMethod::Post => http_span!($level, "POST", $f),
            KnownMethod::Put => http_span!($level, "PUT", $f),
            KnownMethod::Delete => http_span!($level, "DELETE", $f),
            KnownMethod::Patch => http_span!($level, "PATCH", $f),
            KnownMethod::Head => http_span!($level, "HEAD", $f),
            KnownMethod::Options => http_span!($level, "OPTIONS", $f),
            KnownMethod::Connect => http_span!($level, "CONNECT", $f),
            KnownMethod::Trace => http_span!($level, "TRACE", $f),
            KnownMethod::Other => http_span!($level, "HTTP", $f),
        }
    };
}

/// A new span at `level`, named by the method (`HTTP` for an unknown one).
pub(crate) fn make(level: Level, f: &Fields<'_>) -> Span {
    match level {
        Level::ERROR => by_method!(Level::ERROR, f),
        Level::WARN => by_method!(Level::WARN, f),
        Level::INFO => by_method!(Level::INFO, f),
        Level::DEBUG => by_method!(Level::DEBUG, f),
        _ => by_method!(Level::TRACE, f),
    }
}

/// Whether any span or event at `level` could be enabled now (a cheap global check).
#[inline]
pub(crate) fn level_enabled(level: Level) -> bool {
    level <= tracing::level_filters::STATIC_MAX_LEVEL
        && level <= tracing::level_filters::LevelFilter::current()
}

/// Logs the end of a request at a level chosen at run time.
pub(crate) fn event(
    span: &Span,
    level: Level,
    failed: bool,
    status: Option<u16>,
    error_type: Option<&str>,
    duration_ms: Option<f64>,
) {
    macro_rules! emit {
        ($lvl:expr) => {
            if failed {
                tracing::event!(
                    parent: span,
                    $lvl,
                    http.response.status_code = status,
                    error.type = error_type,
                    duration_ms,
                    "http request failed"
                )
            } else {
                tracing::event!(
                    parent: span,
                    $lvl,
                    http.response.status_code = status,
                    duration_ms,
                    "http request finished"
                )
            }
        };
    }
    match level {
        Level::ERROR => emit!(Level::ERROR),
        Level::WARN => emit!(Level::WARN),
        Level::INFO => emit!(Level::INFO),
        Level::DEBUG => emit!(Level::DEBUG),
        _ => emit!(Level::TRACE),
    }
}
