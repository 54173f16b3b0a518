//! The service over an in-process inner service: keys from a function, requests without a
//! key, callbacks, eviction seen from the service, errors passed through.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flext_breaker::{
    BreakerConfig, BreakerLayer, Cause, CircuitOpen, ManualClock, State, Transition, key_fn,
};
use flext_core::{BoxError, Origin};
use http::{Request, Response, StatusCode};
use tower::{Layer, ServiceExt, service_fn};

/// Answers with the status named in the `x-status` header (200 by default), counting calls.
fn server(
    calls: Arc<AtomicUsize>,
) -> impl tower::Service<
    Request<()>,
    Response = Response<()>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<()>, Infallible>> + Send,
> + Clone
+ Send {
    service_fn(move |req: Request<()>| {
        calls.fetch_add(1, Ordering::Relaxed);
        let status = req
            .headers()
            .get("x-status")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(200);
        let mut res = Response::new(());
        *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        async move { Ok(res) }
    })
}

fn req(uri: &str, tenant: &str, status: u16) -> Request<()> {
    Request::get(uri)
        .header("x-tenant", tenant)
        .header("x-status", status.to_string())
        .body(())
        .unwrap()
}

#[tokio::test]
async fn breakers_keyed_by_a_function_are_independent() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = BreakerLayer::keyed(key_fn(|req: &Request<()>| {
        req.headers()
            .get("x-tenant")
            .and_then(|v| v.to_str().ok())
            .map(Arc::<str>::from)
    }))
    .clock(ManualClock::new())
    .build()
    .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(server(calls.clone()));

    for _ in 0..5 {
        let res = svc
            .clone()
            .oneshot(req("http://a.test/", "red", 500))
            .await
            .unwrap();
        assert_eq!(res.status(), 500);
    }
    let err = svc
        .clone()
        .oneshot(req("http://a.test/", "red", 200))
        .await
        .unwrap_err();
    assert_eq!(CircuitOpen::find(&*err).unwrap().key(), "red");
    // Same origin, other tenant: its own breaker, closed.
    let res = svc
        .clone()
        .oneshot(req("http://a.test/", "blue", 200))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(handle.state(&Arc::from("red")), Some(State::Open));
    assert_eq!(handle.state(&Arc::from("blue")), Some(State::Closed));
    assert_eq!(calls.load(Ordering::Relaxed), 6);

    // No tenant: no key, not guarded.
    let untagged = Request::get("http://a.test/")
        .header("x-status", "500")
        .body(())
        .unwrap();
    assert_eq!(svc.clone().oneshot(untagged).await.unwrap().status(), 500);
    assert_eq!(handle.len(), 2);
}

#[tokio::test]
async fn a_request_without_an_origin_is_not_guarded() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = BreakerLayer::builder()
        .config(BreakerConfig::default().consecutive_failures(1))
        .build()
        .unwrap();
    let svc = layer.layer(server(calls.clone()));
    for _ in 0..3 {
        let res = svc
            .clone()
            .oneshot(req("/relative", "", 503))
            .await
            .unwrap();
        assert_eq!(res.status(), 503);
    }
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    assert!(layer.handle().is_empty());
}

#[tokio::test]
async fn callbacks_see_every_transition_and_a_panicking_one_is_contained() {
    let clock = ManualClock::new();
    let seen = Arc::new(Mutex::new(Vec::<Transition>::new()));
    let sink = seen.clone();
    let layer = BreakerLayer::builder()
        .config(BreakerConfig::default().jitter(0.0))
        .clock(clock.clone())
        .on_transition(|_| panic!("a careless callback"))
        .on_transition(move |t| sink.lock().unwrap().push(t.clone()))
        .build()
        .unwrap();
    let svc = layer.layer(server(Arc::new(AtomicUsize::new(0))));
    let uri = "https://api.example.com/v1";

    for _ in 0..5 {
        svc.clone().oneshot(req(uri, "", 502)).await.unwrap();
    }
    clock.advance(Duration::from_secs(30));
    svc.clone().oneshot(req(uri, "", 200)).await.unwrap();
    let origin: Origin = "https://api.example.com".parse().unwrap();
    layer.handle().force_open(&origin);
    layer.handle().reset(&origin);

    let seen = seen.lock().unwrap();
    let steps: Vec<(State, State, Cause)> = seen.iter().map(|t| (t.from, t.to, t.cause)).collect();
    assert_eq!(
        steps,
        [
            (State::Closed, State::Open, Cause::ConsecutiveFailures(5)),
            (State::Open, State::HalfOpen, Cause::OpenElapsed),
            (State::HalfOpen, State::Closed, Cause::ProbesSucceeded),
            (State::Closed, State::ForcedOpen, Cause::ForcedOpen),
            (State::ForcedOpen, State::Closed, Cause::Reset),
        ]
    );
    assert!(
        seen.iter()
            .all(|t| &*t.key == "https://api.example.com:443")
    );
    assert_eq!(seen[0].open_for, Some(Duration::from_secs(30)));
}

#[tokio::test]
async fn an_evicted_breaker_is_not_used_by_a_service_that_cached_it() {
    let clock = ManualClock::new();
    let layer = BreakerLayer::builder()
        .config(BreakerConfig::default().consecutive_failures(2))
        .max_keys(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut a = layer.layer(server(Arc::new(AtomicUsize::new(0))));
    let b = layer.layer(server(Arc::new(AtomicUsize::new(0))));

    // `a` caches the breaker of a.test and records one failure in it.
    a.ready().await.unwrap();
    tower::Service::call(&mut a, req("http://a.test/", "", 500))
        .await
        .unwrap();
    // `b` brings a new origin: with room for one key, a.test's breaker goes.
    b.clone()
        .oneshot(req("http://b.test/", "", 200))
        .await
        .unwrap();
    let a_origin: Origin = "http://a.test".parse().unwrap();
    assert_eq!(handle.state(&a_origin), None);
    // `a` sees the eviction and uses a fresh breaker: one failure does not open it.
    a.ready().await.unwrap();
    tower::Service::call(&mut a, req("http://a.test/", "", 500))
        .await
        .unwrap();
    assert_eq!(handle.state(&a_origin), Some(State::Closed));
    assert_eq!(handle.snapshot(&a_origin).unwrap().consecutive_failures, 1);
}

#[tokio::test]
async fn inner_errors_pass_through_and_count() {
    let layer = BreakerLayer::builder()
        .config(BreakerConfig::default().consecutive_failures(2))
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|_req: Request<()>| async {
        Err::<Response<()>, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ))
    }));
    for _ in 0..2 {
        let err: BoxError = svc
            .clone()
            .oneshot(req("http://down.test/", "", 200))
            .await
            .unwrap_err();
        let io = err.downcast_ref::<std::io::Error>().unwrap();
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    }
    let err = svc
        .clone()
        .oneshot(req("http://down.test/", "", 200))
        .await
        .unwrap_err();
    assert!(err.is::<CircuitOpen>());
}
