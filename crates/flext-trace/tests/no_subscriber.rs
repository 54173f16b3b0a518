//! With no `tracing` subscriber anywhere in the process (this test binary installs none), the
//! layer makes no span and logs nothing, starts no trace (by default) yet passes on one the
//! request has, records metrics, and passes responses and errors through unchanged.

mod support;

use std::io;

use flext_trace::{HttpClientMetrics, TraceContext, TraceLayer, TraceParent};
use http::{Request, Response};
use support::{answering, check_traceparent, poll_once, ready};
use tower::{Layer, ServiceExt, service_fn};

#[test]
fn metrics_are_recorded_without_a_subscriber() {
    let metrics = HttpClientMetrics::new();
    let svc = TraceLayer::attempt()
        .metrics(metrics.clone())
        .layer(answering(502));
    let response = ready(poll_once(
        svc.oneshot(
            Request::get("https://api.example.com:8443/x")
                .body(())
                .unwrap(),
        ),
    ))
    .unwrap();
    assert_eq!(response.status(), 502);
    assert!(
        !response.headers().contains_key("traceparent"),
        "no trace is made up for a call nothing records"
    );

    let snapshot = metrics.snapshot();
    let series = &snapshot.durations()[0];
    assert_eq!(series.count(), 1);
    assert_eq!(series.attributes().server_address(), "api.example.com");
    assert_eq!(series.attributes().server_port(), Some(8443));
    assert_eq!(series.attributes().error_type(), Some("502"));
    assert_eq!(snapshot.active_requests()[0].value(), 0);
}

#[test]
fn with_nothing_to_record_the_layer_starts_no_trace_passes_one_on_and_passes_results_through() {
    let svc = TraceLayer::attempt().request_id().layer(answering(200));
    let response = ready(poll_once(
        svc.clone()
            .oneshot(Request::get("http://a.test/").body(()).unwrap()),
    ))
    .unwrap();
    assert_eq!(response.status(), 200);
    assert!(!response.headers().contains_key("traceparent"));
    assert_eq!(response.headers()["x-request-id"].len(), 36);

    // A trace the caller's request belongs to is passed on as it is.
    let theirs = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = ready(poll_once(
        svc.oneshot(
            Request::get("http://a.test/")
                .header("traceparent", theirs)
                .body(())
                .unwrap(),
        ),
    ))
    .unwrap();
    assert_eq!(response.headers()["traceparent"], theirs);

    // Asked for one on every request: a new trace, not sampled since nothing records it.
    let always = TraceLayer::attempt()
        .trace_context(TraceContext::Always)
        .layer(answering(200));
    let response = ready(poll_once(
        always.oneshot(Request::get("http://a.test/").body(()).unwrap()),
    ))
    .unwrap();
    let sent = response.headers()["traceparent"].to_str().unwrap();
    check_traceparent(sent);
    assert!(!sent.parse::<TraceParent>().unwrap().is_sampled());

    let failing = TraceLayer::attempt().layer(service_fn(|_: Request<()>| async {
        Err::<Response<()>, _>(io::Error::new(io::ErrorKind::ConnectionReset, "peer gone"))
    }));
    let err = ready(poll_once(
        failing.oneshot(Request::get("http://a.test/").body(()).unwrap()),
    ))
    .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(err.to_string(), "peer gone");
}

#[test]
fn with_always_attempts_under_a_logical_layer_share_its_trace_without_a_subscriber() {
    use std::sync::{Arc, Mutex};

    let sent = Arc::new(Mutex::new(Vec::new()));
    let attempt = TraceLayer::attempt()
        .trace_context(TraceContext::Always)
        .layer(answering(200));
    // Two attempts of one call, as a retry layer makes them: headers and extensions copied.
    let twice = {
        let sent = Arc::clone(&sent);
        service_fn(move |request: Request<()>| {
            let (attempt, sent) = (attempt.clone(), Arc::clone(&sent));
            async move {
                let mut last = None;
                for _ in 0..2 {
                    let mut copy = Request::new(());
                    *copy.headers_mut() = request.headers().clone();
                    *copy.extensions_mut() = request.extensions().clone();
                    let response = attempt.clone().oneshot(copy).await?;
                    let value = response.headers()["traceparent"].to_str().unwrap();
                    sent.lock().unwrap().push(value.to_owned());
                    last = Some(response);
                }
                Ok::<_, std::convert::Infallible>(last.unwrap())
            }
        })
    };
    let svc = TraceLayer::logical()
        .trace_context(TraceContext::Always)
        .layer(twice);
    ready(poll_once(
        svc.oneshot(Request::get("http://a.test/").body(()).unwrap()),
    ))
    .unwrap();

    let sent = sent.lock().unwrap();
    assert_eq!(sent.len(), 2);
    assert_eq!(check_traceparent(&sent[0]), check_traceparent(&sent[1]));
    assert_ne!(sent[0], sent[1], "each attempt sends its own parent id");
}

#[test]
fn by_default_a_logical_and_an_attempt_layer_send_no_trace_nothing_records() {
    let svc = TraceLayer::logical().layer(TraceLayer::attempt().layer(answering(200)));
    let response = ready(poll_once(
        svc.oneshot(Request::get("http://a.test/").body(()).unwrap()),
    ))
    .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().is_empty(), "{:?}", response.headers());
}
