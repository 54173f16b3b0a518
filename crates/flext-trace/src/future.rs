//! [`ResponseFuture`]: waits for the inner service and records how the request ended.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use http::{Response, StatusCode};
use pin_project_lite::pin_project;
use tracing::Span;

use crate::attributes::{OTHER, as_std_error, error_type, protocol_version};
use crate::config::Config;
use crate::metrics::{RequestAttributes, ResultAttributes, Started};
use crate::service::{RequestOrResponse, record_headers};
use crate::span::{event, level_enabled};

/// `error.type` of a request whose future was dropped before it ended.
pub(crate) const CANCELLED: &str = "cancelled";

pin_project! {
    /// The response future of [`Trace`](crate::Trace).
    ///
    /// The span ends when the response head (or an error) arrives, as the OpenTelemetry
    /// conventions advise for clients whose callers may not read the body; if the future is
    /// dropped first, the request is recorded with `error.type = cancelled`.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // `None` when nothing is recorded: then this is the inner future and nothing more.
        recording: Option<Recording>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, recording: Option<Recording>) -> ResponseFuture<F> {
        ResponseFuture { inner, recording }
    }

    /// The inner future, with nothing to record.
    pub(crate) fn passthrough(inner: F) -> ResponseFuture<F> {
        ResponseFuture {
            inner,
            recording: None,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("span", &self.recording.as_ref().map(|r| &r.span))
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: 'static,
{
    type Output = Result<Response<B>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.recording {
            None => this.inner.poll(cx),
            Some(recording) => recording.poll(this.inner, cx),
        }
    }
}

/// A request's attributes kept for a [`MetricsRecorder`](crate::MetricsRecorder) back-end.
#[derive(Debug)]
pub(crate) struct OwnedRequest {
    method: &'static str,
    address: Box<str>,
    port: Option<u16>,
}

impl OwnedRequest {
    pub(crate) fn new(attributes: &RequestAttributes<'_>) -> OwnedRequest {
        OwnedRequest {
            method: attributes.method,
            address: attributes.server_address.into(),
            port: attributes.server_port,
        }
    }

    fn attributes(&self) -> RequestAttributes<'_> {
        RequestAttributes {
            method: self.method,
            server_address: &self.address,
            server_port: self.port,
        }
    }
}

/// What is left to record when the request ends. `config` is `None` once it has been
/// recorded.
pub(crate) struct Recording {
    pub(crate) config: Option<Arc<Config>>,
    pub(crate) span: Span,
    pub(crate) start: Option<Instant>,
    pub(crate) started: Option<Started>,
    pub(crate) request: Option<OwnedRequest>,
    pub(crate) under_logical: bool,
}

impl Recording {
    /// Polls `inner` in the span, and records how the request ended.
    #[inline(never)]
    fn poll<F, B, E>(&mut self, inner: Pin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output>
    where
        F: Future<Output = Result<Response<B>, E>>,
        E: 'static,
    {
        let result = {
            let _entered = self.span.enter();
            ready!(inner.poll(cx))
        };
        match &result {
            Ok(response) => self.response(response),
            Err(error) => self.error(error),
        }
        Poll::Ready(result)
    }

    fn response<B>(&mut self, response: &Response<B>) {
        let Some(config) = self.config.take() else {
            return;
        };
        if !self.span.is_disabled() && !config.response_headers.is_empty() {
            record_headers(
                &self.span,
                "http.response.headers",
                RequestOrResponse::Response,
                &config.response_headers,
                response.headers(),
            );
        }
        self.finish(
            &config,
            Some(response.status()),
            protocol_version(response.version()),
            None,
        );
    }

    fn error<E: 'static>(&mut self, error: &E) {
        let Some(config) = self.config.take() else {
            return;
        };
        let kind = match as_std_error(error) {
            Some(e) => error_type(e, config.error_type),
            None => OTHER,
        };
        self.finish(&config, None, None, Some(kind));
    }

    fn finish(
        &self,
        config: &Config,
        status: Option<StatusCode>,
        version: Option<&'static str>,
        error: Option<&'static str>,
    ) {
        let duration = self.start.map(|s| s.elapsed());
        let status_error = status.filter(|s| s.as_u16() >= 400);
        let error_text: Option<&str> = error.or(status_error.as_ref().map(StatusCode::as_str));
        let failed = error_text.is_some();
        let code = status.map(|s| s.as_u16());

        let span = &self.span;
        if !span.is_disabled() {
            span.record("http.response.status_code", code);
            span.record("network.protocol.version", version);
            span.record("error.type", error_text);
            if failed {
                span.record("otel.status_code", "ERROR");
            }
        }
        let level = if failed {
            config.failure_level
        } else {
            config.success_level(self.under_logical)
        };
        if let Some(level) = level.filter(|l| level_enabled(*l)) {
            let ms = duration.map(|d| d.as_secs_f64() * 1000.0);
            event(span, level, failed, code, error_text, ms);
        }
        let duration = duration.unwrap_or(Duration::ZERO);
        if let (Some(metrics), Some(started)) = (&config.metrics, self.started) {
            metrics.finish(started, code, error, duration);
        }
        if let (Some(recorder), Some(request)) = (&config.recorder, &self.request) {
            let result = ResultAttributes {
                status: code,
                error_type: error_text,
                protocol_version: version,
            };
            recorder.request_finished(&request.attributes(), &result, duration);
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if let Some(config) = self.config.take() {
            let _entered = self.span.enter();
            self.finish(&config, None, None, Some(CANCELLED));
        }
    }
}

impl fmt::Debug for Recording {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recording")
            .field("span", &self.span)
            .field("start", &self.start)
            .field("pending", &self.config.is_some())
            .finish_non_exhaustive()
    }
}
