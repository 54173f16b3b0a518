//! Span attributes for every method, protocol version and error shape; the layer's settings
//! (levels, redaction, `error.type` naming, nested logical layers); the service's accessors
//! and `Debug` texts.

mod support;

use std::convert::Infallible;
use std::error::Error as StdError;
use std::io;

use flext_core::{BoxError, Rejected, TransportError, TransportErrorKind};
use flext_trace::{Mode, Redaction, Trace, TraceContext, TraceLayer, TraceParent};
use http::{HeaderName, Method, Request, Response, Version, header};
use support::{Capture, SpanRecord, answering, check_traceparent, poll_once, ready};
use tower::{Layer, Service, ServiceExt, service_fn};
use tracing::Level;

/// Runs one request through `layer` over an inner service failing with `error`, and returns
/// the span's `error.type`.
fn error_type_of<E: 'static>(layer: &TraceLayer, error: impl Fn() -> E + Clone) -> String {
    let capture = Capture::default();
    let _guard = capture.install();
    let svc = layer.layer(service_fn(move |_: Request<()>| {
        let error = error.clone();
        async move { Err::<Response<()>, E>(error()) }
    }));
    assert!(
        ready(poll_once(
            svc.oneshot(Request::get("http://a.test/").body(()).unwrap())
        ))
        .is_err()
    );
    let span = &capture.spans()[0];
    assert_eq!(span.get("otel.status_code"), Some("ERROR"));
    span.get("error.type").unwrap().to_owned()
}

fn one_span(
    svc: impl Service<Request<()>, Response = Response<()>, Error = Infallible>,
    request: Request<()>,
) -> SpanRecord {
    let capture = Capture::default();
    let _guard = capture.install();
    ready(poll_once(svc.oneshot(request))).unwrap();
    let spans = capture.spans();
    assert_eq!(spans.len(), 1);
    spans[0].clone()
}

#[test]
fn every_known_method_names_its_span() {
    let svc = TraceLayer::attempt().layer(answering(200));
    for method in [
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
        Method::PATCH,
    ] {
        let request = Request::builder()
            .method(method.clone())
            .uri("https://api.example.com/x")
            .body(())
            .unwrap();
        let span = one_span(svc.clone(), request);
        assert_eq!(span.name, method.as_str());
        assert_eq!(span.get("http.request.method"), Some(method.as_str()));
        assert_eq!(span.get("http.request.method_original"), None);
    }
}

#[test]
fn the_protocol_version_of_the_response_is_recorded() {
    let svc = TraceLayer::attempt().layer(service_fn(|request: Request<()>| async move {
        let version = match request.headers()["x-version"].to_str().unwrap() {
            "0.9" => Version::HTTP_09,
            "1.0" => Version::HTTP_10,
            _ => Version::HTTP_3,
        };
        let response = Response::builder().version(version).body(()).unwrap();
        Ok::<_, Infallible>(response)
    }));
    for (asked, recorded) in [("0.9", "0.9"), ("1.0", "1.0"), ("3", "3")] {
        let request = Request::get("http://a.test/")
            .header("x-version", asked)
            .body(())
            .unwrap();
        let span = one_span(svc.clone(), request);
        assert_eq!(span.get("network.protocol.version"), Some(recorded));
    }
}

#[test]
fn odd_targets_are_recorded_as_written_without_a_guessed_port() {
    let svc = TraceLayer::attempt().layer(answering(200));
    // A scheme without a default port: no `server.port`.
    let span = one_span(
        svc.clone(),
        Request::get("ws://chat.example.com/room").body(()).unwrap(),
    );
    assert_eq!(span.get("server.address"), Some("chat.example.com"));
    assert_eq!(span.get("server.port"), None);
    assert_eq!(span.get("url.scheme"), Some("ws"));

    // A bracket that never closes: the Host header as it is, no port read out of it.
    let request = Request::get("/p")
        .header(header::HOST, "[::1:8080")
        .body(())
        .unwrap();
    let span = one_span(svc, request);
    assert_eq!(span.get("server.address"), Some("[::1:8080"));
    assert_eq!(span.get("server.port"), None);
}

#[test]
fn error_types_of_every_error_shape_the_layer_can_read() {
    let attempt = TraceLayer::attempt();
    // A plain `io::Error`, read as flext-core's classifier reads it.
    let refused = || io::Error::from(io::ErrorKind::ConnectionRefused);
    assert_eq!(error_type_of(&attempt, refused), "connect");
    let timed_out = || io::Error::from(io::ErrorKind::TimedOut);
    assert_eq!(error_type_of(&attempt, timed_out), "timeout");
    // Boxed without `Sync`, and without `Send` either.
    let reset = || -> Box<dyn StdError + Send> {
        Box::new(TransportError::new(
            TransportErrorKind::Reset,
            flext_core::Sent::Maybe,
            Some("peer reset".into()),
        ))
    };
    assert_eq!(error_type_of(&attempt, reset), "reset");
    let rejected = || -> Box<dyn StdError> { Box::new(Rejected::new("circuit_open", None)) };
    assert_eq!(error_type_of(&attempt, rejected), "circuit_open");
    // tower's timeout error as the service's own error type.
    let elapsed = tower::timeout::error::Elapsed::new;
    assert_eq!(error_type_of(&attempt, elapsed), "timeout");
    // A concrete type the layer cannot see into.
    #[derive(Debug, Clone)]
    struct Opaque;
    assert_eq!(error_type_of(&attempt, || Opaque), "_OTHER");
}

#[test]
fn a_tokio_timeout_as_the_error_type_is_a_timeout() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let capture = Capture::default();
    let _guard = capture.install();
    let svc = TraceLayer::attempt().layer(service_fn(|_: Request<()>| async {
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            std::future::pending::<Result<Response<()>, tokio::time::error::Elapsed>>(),
        )
        .await?
    }));
    let result = runtime.block_on(svc.oneshot(Request::get("http://a.test/").body(()).unwrap()));
    assert!(result.is_err());
    assert_eq!(capture.spans()[0].get("error.type"), Some("timeout"));
}

#[test]
fn a_users_error_namer_is_asked_first() {
    fn name(err: &(dyn StdError + 'static)) -> Option<&'static str> {
        err.to_string()
            .starts_with("quota")
            .then_some("quota_exceeded")
    }
    let layer = TraceLayer::attempt().error_type(name);
    let quota = || -> BoxError { "quota of 100 requests used".into() };
    assert_eq!(error_type_of(&layer, quota), "quota_exceeded");
    // `None` falls back to the built-in rules.
    let connect = || -> BoxError { TransportError::connect("refused").into() };
    assert_eq!(error_type_of(&layer, connect), "connect");
}

#[test]
fn span_and_event_levels_follow_the_settings() {
    for level in [Level::ERROR, Level::WARN, Level::DEBUG, Level::TRACE] {
        let capture = Capture::default();
        let _guard = capture.install();
        let svc = TraceLayer::attempt()
            .span_level(level)
            .success_event(Some(level))
            .layer(answering(200));
        ready(poll_once(
            svc.oneshot(Request::get("http://a.test/").body(()).unwrap()),
        ))
        .unwrap();
        let spans = capture.spans();
        assert_eq!(spans[0].level, level);
        let events = capture.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].level, level);
        assert_eq!(events[0].fields["message"], "http request finished");
        assert_eq!(events[0].parent, Some(spans[0].id));
    }
}

#[test]
fn redaction_settings_reach_url_full() {
    let request = || {
        Request::get("https://api.example.com/p?token=t0k&page=2&Sig%6eature=abc")
            .body(())
            .unwrap()
    };
    let span = one_span(
        TraceLayer::attempt()
            .redact_query_key("token")
            .layer(answering(200)),
        request(),
    );
    // `Sig%6eature` is `Signature` percent-encoded with a lower-case hex digit.
    assert_eq!(
        span.get("url.full"),
        Some("https://api.example.com/p?token=REDACTED&page=2&Sig%6eature=REDACTED")
    );

    let span = one_span(
        TraceLayer::attempt()
            .redaction(Redaction::new().all_query_values())
            .layer(answering(200)),
        request(),
    );
    assert_eq!(
        span.get("url.full"),
        Some("https://api.example.com/p?token=REDACTED&page=REDACTED&Sig%6eature=REDACTED")
    );
    // The default redaction is `Redaction::new`.
    assert_eq!(Redaction::default(), Redaction::new());
    assert_eq!(
        Redaction::default().redact("https://u:p@a.test/?sig=1&page=2"),
        "https://REDACTED:REDACTED@a.test/?sig=REDACTED&page=2"
    );
}

#[test]
fn listed_headers_that_are_absent_record_nothing() {
    let span = one_span(
        TraceLayer::attempt()
            .record_request_headers([HeaderName::from_static("x-missing")])
            .layer(answering(200)),
        Request::get("http://a.test/")
            .header("x-other", "1")
            .body(())
            .unwrap(),
    );
    assert_eq!(span.get("http.request.headers"), None);
}

#[test]
fn a_logical_layer_under_another_joins_its_trace() {
    let capture = Capture::default();
    let _guard = capture.install();
    let inner = TraceLayer::logical()
        .trace_context(TraceContext::Off)
        .layer(answering(200));
    let svc = TraceLayer::logical().layer(inner);
    let response = ready(poll_once(
        svc.oneshot(Request::get("http://a.test/").body(()).unwrap()),
    ))
    .unwrap();
    let spans = capture.spans();
    assert_eq!(spans.len(), 2);
    let sent = response.headers()["traceparent"].to_str().unwrap();
    let trace_id = check_traceparent(sent);
    // Both spans are in the trace the server was told about; the inner one sent nothing.
    assert_eq!(spans[0].get("trace_id"), Some(trace_id.as_str()));
    assert_eq!(spans[1].get("trace_id"), Some(trace_id.as_str()));
    assert_eq!(spans[1].parent, Some(spans[0].id));
    let sent: TraceParent = sent.parse().unwrap();
    assert!(sent.is_sampled());
}

#[derive(Debug, Clone)]
struct Named(&'static str);

impl Service<Request<()>> for Named {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        std::future::ready(Ok(Response::new(())))
    }
}

#[test]
fn the_service_exposes_its_inner_service_and_describes_itself() {
    let _guard = Capture::default().install();
    assert_eq!(TraceLayer::logical().mode(), Mode::Logical);
    assert_eq!(Trace::<Named>::layer(Mode::Attempt).mode(), Mode::Attempt);

    let layer = Trace::<Named>::layer(Mode::Attempt)
        .trace_context(TraceContext::Off)
        .request_id_header(HeaderName::from_static("x-correlation-id"))
        .error_type(|_| None);
    let text = format!("{layer:?}");
    for part in [
        "mode: Attempt",
        "span_level: Level(Info)",
        "failure_level: Some(Level(Warn))",
        "trace_context: Off",
        "request_id: Some(\"x-correlation-id\")",
        "metrics: None",
        "recorder: None",
        "error_type: true",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }

    let mut svc = layer.layer(Named("pool"));
    assert_eq!(svc.get_ref().0, "pool");
    svc.get_mut().0 = "other pool";
    let future = svc.call(Request::get("http://a.test/").body(()).unwrap());
    assert!(format!("{future:?}").starts_with("ResponseFuture { span: "));
    drop(future);
    assert_eq!(svc.into_inner().0, "other pool");
}
