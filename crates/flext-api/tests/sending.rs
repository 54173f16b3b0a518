//! When and what a call sends, through `flext_api::Client` against flext-testkit over real
//! sockets: the request is handed to the stack when its future is first polled (timeouts count
//! from then), and W3C trace context is sent as `trace.propagate` says, with no subscriber in
//! this test binary (so nothing records the spans).

use std::time::Duration;

use flext_api::{Body, Client, Propagate, RetrySettings, TraceSettings};
use flext_testkit::{Echoed, ID_HEADER, SCRIPT_HEADER, TestServer};

async fn client_for(server: &TestServer) -> Client {
    Client::builder()
        .base_url(&server.url("/"))
        .retry(RetrySettings {
            backoff_base: Duration::from_millis(1),
            backoff_max: Duration::from_millis(5),
            ..RetrySettings::default()
        })
        .build()
        .unwrap()
}

/// The `traceparent` the server got, read from its echo.
async fn traceparent_sent(request: flext_api::RequestBuilder) -> Option<String> {
    let echoed: Echoed = request
        .header(SCRIPT_HEADER, "echo")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    echoed.header("traceparent").map(str::to_owned)
}

#[tokio::test]
async fn a_request_is_handed_to_the_stack_only_when_first_polled() {
    let server = TestServer::start().await.unwrap();
    let client = client_for(&server).await;
    let metrics = client.stack().metrics().unwrap().clone();
    // Made and dropped: nothing counted, started or sent; through execute() as well.
    drop(client.get("never").header(ID_HEADER, "never").send());
    drop(
        client.execute(
            http::Request::get("/never")
                .header(ID_HEADER, "never")
                .body(Body::empty())
                .unwrap(),
        ),
    );
    let sent = client.get("once").header(ID_HEADER, "once").send();
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.request_count(), 0);
    assert!(snapshot.active_requests().iter().all(|a| a.value() == 0));
    assert_eq!(client.health().retry.map(|r| r.requests), Some(0));

    let response = sent.await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.stats().requests_for_id("never"), 0);
    assert_eq!(server.stats().requests_for_id("once"), 1);
    assert_eq!(metrics.snapshot().request_count(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_per_request_timeout_counts_from_the_first_poll() {
    let server = TestServer::start().await.unwrap();
    let client = client_for(&server).await;
    let pending = client.get("later").timeout(Duration::from_secs(1)).send();
    // Five seconds pass between making the call and awaiting it (the clock moved by hand,
    // then running again for the real sockets).
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(5)).await;
    tokio::time::resume();
    let response = pending.await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_callers_trace_is_passed_on_and_always_sends_one_on_every_call() {
    let server = TestServer::start().await.unwrap();
    let client = client_for(&server).await;
    let theirs = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let sent = traceparent_sent(client.get("a").header("traceparent", theirs)).await;
    assert_eq!(sent.as_deref(), Some(theirs));

    let propagating = |propagate| {
        Client::builder()
            .base_url(&server.url("/"))
            .trace(TraceSettings {
                propagate,
                ..TraceSettings::default()
            })
            .build()
            .unwrap()
    };
    let always = propagating(Propagate::Always);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let sent = traceparent_sent(always.get("b"))
            .await
            .expect("a traceparent");
        let parsed: flext_trace::TraceParent = sent.parse().unwrap();
        assert!(!parsed.is_sampled(), "nothing here records it: {sent}");
        ids.push(parsed.trace_id());
    }
    assert_ne!(ids[0], ids[1], "a trace per call");

    let off = propagating(Propagate::Off);
    assert_eq!(traceparent_sent(off.get("c")).await, None);
}
