//! [`Trace`]: the service the layer wraps around a client.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use flext_core::Attempt;
use http::{HeaderMap, HeaderName, Request, Response, header};
use tower_service::Service;
use tracing::Span;
use tracing::field::display;

use crate::attributes::{KnownMethod, Target, UrlTemplate, is_absolute};
use crate::config::{Config, Mode, TraceContext};
use crate::future::{OwnedRequest, Recording, ResponseFuture};
use crate::layer::TraceLayer;
use crate::metrics::{Started, spelling};
use crate::propagate::{self, Logical};
use crate::redact::RecordedHeaders;
use crate::span::{self, Fields, level_enabled};

/// The service made by [`TraceLayer`]: spans, propagation and metrics around `S`.
///
/// Errors of `S` pass through unchanged. Their `error.type` is read through `&dyn Any`: a
/// boxed error (`tower::BoxError` and the like), `flext_core::TransportError`,
/// `std::io::Error` and tokio's and tower's timeout errors are understood (with their source
/// chains); any other error type is `_OTHER` unless it is mapped into a `BoxError` first.
#[derive(Debug, Clone)]
pub struct Trace<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Trace<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Trace<S> {
        Trace { inner, config }
    }

    /// A [`TraceLayer`] of the given mode; shorthand for [`TraceLayer::new`].
    pub fn layer(mode: Mode) -> TraceLayer {
        TraceLayer::new(mode)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Trace<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut request: Request<ReqB>) -> Self::Future {
        let config = &*self.config;
        if config.may_record() {
            return self.call_recorded(request);
        }
        // No subscriber wants anything at our levels and there are no metrics: no span, no
        // clock, nothing kept for the response; the request is only propagated. Small enough
        // to inline into the caller, which saves moving the request and the future around.
        propagate(config, &Span::none(), &mut request);
        ResponseFuture::passthrough(self.inner.call(request))
    }
}

impl<S> Trace<S> {
    /// `call` with a span, events or metrics to record.
    #[inline(never)]
    fn call_recorded<ReqB, ResB>(&mut self, mut request: Request<ReqB>) -> ResponseFuture<S::Future>
    where
        S: Service<Request<ReqB>, Response = Response<ResB>>,
    {
        let config = &*self.config;
        let under_logical = request.extensions().get::<Logical>().is_some();
        let (span, started, owned) = open(config, &request);

        if !span.is_disabled() && !config.request_headers.is_empty() {
            record_headers(
                &span,
                "http.request.headers",
                RequestOrResponse::Request,
                &config.request_headers,
                request.headers(),
            );
        }
        propagate(config, &span, &mut request);

        let events = config
            .success_level(under_logical)
            .into_iter()
            .chain(config.failure_level)
            .any(level_enabled);
        let active = events || !span.is_disabled() || config.records_metrics();
        let start = (events || config.records_metrics()).then(Instant::now);
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        let recording = active.then(|| Recording {
            config: Some(Arc::clone(&self.config)),
            span,
            start,
            started,
            request: owned,
            under_logical,
        });
        ResponseFuture::new(future, recording)
    }
}

/// Joins (or, when `span` is recorded, starts) the trace, injects it, records its id in
/// `span`, hands it to the attempts below a logical layer, and sets the request id.
#[inline]
fn propagate<B>(config: &Config, span: &Span, request: &mut Request<B>) {
    if config.trace_context != TraceContext::Off || config.mode == Mode::Logical {
        let logical = request.extensions().get::<Logical>().copied();
        let joined = propagate::join(
            span,
            logical.as_ref(),
            request.headers_mut(),
            config.trace_context,
        );
        if let Some(joined) = joined {
            if !joined.from_otel && !span.is_disabled() {
                span.record("trace_id", display(joined.parent.trace_id()));
            }
            if config.mode == Mode::Logical {
                request.extensions_mut().insert(Logical {
                    parent: joined.parent,
                });
            }
        }
    }
    if let Some(name) = &config.request_id {
        propagate::ensure_request_id(request.headers_mut(), name);
    }
}

/// Makes the span and starts the metrics, reading the request before it is changed.
fn open<B>(config: &Config, request: &Request<B>) -> (Span, Option<Started>, Option<OwnedRequest>) {
    let span_enabled = level_enabled(config.span_level);
    if !span_enabled && !config.records_metrics() {
        // Nobody reads the request's attributes: skip parsing the authority.
        return (Span::none(), None, None);
    }
    if !span_enabled && config.recorder.is_none() {
        // The built-in metrics alone: they remember the last target and skip the parse.
        let started = config.metrics.as_ref().map(|m| m.start_request(request));
        return (Span::none(), started, None);
    }
    let target = Target::of(request);
    let span = if span_enabled {
        let host = if is_absolute(request.uri()) {
            None
        } else {
            request
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
        };
        let resend = Attempt::of(request);
        let fields = Fields {
            kind: match config.mode {
                Mode::Attempt => "client",
                Mode::Logical => "internal",
            },
            target,
            method_original: (target.method == KnownMethod::Other)
                .then(|| request.method().as_str()),
            url: config.redaction.url(request.uri()).with_host(host),
            template: UrlTemplate::of(request),
            resend_count: (config.mode == Mode::Attempt && resend.is_retry())
                .then(|| resend.number()),
        };
        span::make(config.span_level, &fields)
    } else {
        Span::none()
    };
    let attributes = target.attributes();
    let started = config
        .metrics
        .as_ref()
        .map(|m| m.start_spelled(&attributes, || spelling(request.uri())));
    let owned = config.recorder.as_ref().map(|r| {
        r.request_started(&attributes);
        OwnedRequest::new(&attributes)
    });
    (span, started, owned)
}

#[derive(Clone, Copy)]
pub(crate) enum RequestOrResponse {
    Request,
    Response,
}

/// Records allow-listed headers: as `http.{request,response}.header.<name>` attributes when
/// an OpenTelemetry layer is recording the span, else in one field.
pub(crate) fn record_headers(
    span: &Span,
    field: &'static str,
    which: RequestOrResponse,
    names: &[HeaderName],
    headers: &HeaderMap,
) {
    let recorded = RecordedHeaders { names, headers };
    if !recorded.any() {
        return;
    }
    if propagate::otel_headers(span, which, names, headers) {
        return;
    }
    span.record(field, display(recorded));
}
