//! The layer over a stand-in service: naming, levels, headers, cancellation, propagation
//! rules and the optional back-ends.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use flext_core::Attempt;
use flext_trace::{HttpClientMetrics, TraceContext, TraceLayer, TraceParent, UrlTemplate};
use http::{HeaderValue, Method, Request, Response, header};
use support::{Capture, answering, check_traceparent, poll_once, ready};
use tower::{Layer, ServiceExt, service_fn};
use tracing::Level;

#[test]
fn template_names_the_span_and_unknown_methods_are_other() {
    let capture = Capture::default();
    let _guard = capture.install();
    let svc = TraceLayer::attempt().layer(answering(200));

    let mut request = Request::get("https://api.example.com/users/42")
        .body(())
        .unwrap();
    request
        .extensions_mut()
        .insert(UrlTemplate::new("/users/{id}"));
    request.extensions_mut().insert(Attempt::new(3));
    ready(poll_once(svc.clone().oneshot(request))).unwrap();

    let purge = Method::from_bytes(b"PURGE").unwrap();
    let request = Request::builder()
        .method(purge)
        .uri("http://cache.local:8080/x")
        .body(())
        .unwrap();
    ready(poll_once(svc.oneshot(request))).unwrap();

    let spans = capture.spans();
    assert_eq!(spans[0].name, "GET");
    assert_eq!(spans[0].get("otel.name"), Some("GET /users/{id}"));
    assert_eq!(spans[0].get("url.template"), Some("/users/{id}"));
    assert_eq!(spans[0].get("http.request.resend_count"), Some("3"));
    assert_eq!(spans[0].get("server.port"), Some("443"));
    assert_eq!(spans[0].get("network.protocol.version"), Some("2"));
    assert_eq!(spans[1].name, "HTTP");
    assert_eq!(spans[1].get("http.request.method"), Some("_OTHER"));
    assert_eq!(spans[1].get("http.request.method_original"), Some("PURGE"));
    assert_eq!(spans[1].get("otel.name"), None);
}

#[test]
fn relative_uris_use_the_host_header() {
    let capture = Capture::default();
    let _guard = capture.install();
    let svc = TraceLayer::attempt().layer(answering(200));
    let request = Request::get("/p?sig=1")
        .header(header::HOST, "h.example:81")
        .body(())
        .unwrap();
    ready(poll_once(svc.oneshot(request))).unwrap();
    let span = &capture.spans()[0];
    assert_eq!(span.get("url.full"), Some("//h.example:81/p?sig=REDACTED"));
    assert_eq!(span.get("server.address"), Some("h.example"));
    assert_eq!(span.get("server.port"), Some("81"));
    assert_eq!(span.get("url.scheme"), None);
}

#[test]
fn levels_are_configurable() {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(
        capture
            .clone()
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
    );
    let _guard = tracing::subscriber::set_default(subscriber);

    let quiet = TraceLayer::attempt()
        .span_level(Level::DEBUG)
        .success_event(Some(Level::DEBUG))
        .layer(answering(200));
    ready(poll_once(
        quiet.oneshot(Request::get("http://a/").body(()).unwrap()),
    ))
    .unwrap();
    assert!(capture.spans().is_empty());
    assert!(capture.events().is_empty());

    // Failures still show at the failure level, at the root since the span is filtered out.
    let quiet = TraceLayer::attempt()
        .span_level(Level::DEBUG)
        .failure_event(Some(Level::ERROR))
        .layer(answering(500));
    ready(poll_once(
        quiet.oneshot(Request::get("http://a/").body(()).unwrap()),
    ))
    .unwrap();
    let events = capture.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].level, Level::ERROR);
    assert_eq!(events[0].fields["error.type"], "500");

    let loud = TraceLayer::logical()
        .span_level(Level::WARN)
        .success_event(None)
        .layer(answering(200));
    ready(poll_once(
        loud.oneshot(Request::get("http://a/").body(()).unwrap()),
    ))
    .unwrap();
    let spans = capture.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].level, Level::WARN);
    assert_eq!(spans[0].get("otel.kind"), Some("internal"));
    assert_eq!(capture.events().len(), 1, "no success event");
}

#[test]
fn response_headers_are_recorded_from_the_allow_list() {
    let capture = Capture::default();
    let _guard = capture.install();
    let svc = TraceLayer::attempt()
        .trace_context(TraceContext::Off)
        .record_response_headers([
            header::CONTENT_TYPE,
            header::SET_COOKIE,
            http::HeaderName::from_static("x-secret"),
        ])
        .layer(answering(200));
    let mut secret = HeaderValue::from_static("hidden");
    secret.set_sensitive(true);
    let request = Request::get("http://a/")
        .header(header::CONTENT_TYPE, "text/plain")
        .header(header::SET_COOKIE, "id=42")
        .header("x-secret", secret)
        .header("x-other", "no")
        .body(())
        .unwrap();
    ready(poll_once(svc.oneshot(request))).unwrap();
    assert_eq!(
        capture.spans()[0].get("http.response.headers"),
        Some("content-type: text/plain; set-cookie: REDACTED; x-secret: REDACTED")
    );
}

#[test]
fn a_dropped_call_is_recorded_as_cancelled() {
    let capture = Capture::default();
    let _guard = capture.install();
    let metrics = HttpClientMetrics::new();
    let never =
        service_fn(|_: Request<()>| std::future::pending::<Result<Response<()>, Infallible>>());
    let mut svc = TraceLayer::attempt().metrics(metrics.clone()).layer(never);
    let future = tower::Service::call(&mut svc, Request::get("http://a/").body(()).unwrap());
    let mut future = Box::pin(future);
    assert!(poll_once(future.as_mut()).is_pending());
    assert_eq!(metrics.snapshot().active_requests()[0].value(), 1);
    drop(future);

    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.active_requests()[0].value(), 0);
    assert_eq!(snapshot.count_by_error_type().get("cancelled"), Some(&1));
    let span = &capture.spans()[0];
    assert_eq!(span.get("error.type"), Some("cancelled"));
    assert_eq!(span.get("otel.status_code"), Some("ERROR"));
    assert!(span.closed);
}

#[test]
fn a_callers_traceparent_is_continued_and_request_ids_kept() {
    // Every test installs a subscriber: tracing caches a callsite's interest globally, and a
    // test running with none could cache `never` while another test registers its own.
    let _guard = Capture::default().install();
    let svc = TraceLayer::attempt().request_id().layer(answering(200));
    let theirs = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let request = Request::get("http://a/")
        .header("traceparent", theirs)
        .header("x-request-id", "mine")
        .body(())
        .unwrap();
    let response = ready(poll_once(svc.clone().oneshot(request))).unwrap();
    let sent = response.headers()["traceparent"].to_str().unwrap();
    assert_eq!(check_traceparent(sent), "4bf92f3577b34da6a3ce929d0e0e4736");
    let sent: TraceParent = sent.parse().unwrap();
    assert_ne!(
        sent.parent_id().to_string(),
        "00f067aa0ba902b7",
        "our span is the parent"
    );
    assert!(!sent.is_sampled(), "the caller's sampling decision is kept");
    assert_eq!(response.headers()["x-request-id"], "mine");

    let response = ready(poll_once(
        svc.oneshot(Request::get("http://a/").body(()).unwrap()),
    ))
    .unwrap();
    assert_eq!(response.headers()["x-request-id"].len(), 36);
}

#[test]
fn metrics_of_each_request() {
    // Every test installs a subscriber: tracing caches a callsite's interest globally, and a
    // test running with none could cache `never` while another test registers its own.
    let _guard = Capture::default().install();
    let metrics = HttpClientMetrics::new();
    let svc = TraceLayer::attempt()
        .metrics(metrics.clone())
        .layer(answering(404));
    for _ in 0..3 {
        ready(poll_once(
            svc.clone()
                .oneshot(Request::get("http://a:8080/").body(()).unwrap()),
        ))
        .unwrap();
    }
    let snapshot = metrics.snapshot();
    let series = &snapshot.durations()[0];
    assert_eq!(series.count(), 3);
    assert_eq!(series.attributes().status(), Some(404));
    assert_eq!(series.attributes().error_type(), Some("404"));
    assert_eq!(series.attributes().server_port(), Some(8080));
    assert!(series.sum() < Duration::from_secs(1));
}

#[test]
fn services_and_futures_are_send_and_sync() {
    // Every test installs a subscriber: tracing caches a callsite's interest globally, and a
    // test running with none could cache `never` while another test registers its own.
    let _guard = Capture::default().install();
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let mut svc = TraceLayer::attempt()
        .metrics(HttpClientMetrics::new())
        .layer(answering(200));
    send_sync(&svc);
    let future = tower::Service::call(&mut svc, Request::get("http://a/").body(()).unwrap());
    send(&future);
    send_sync(&TraceLayer::logical());
}
