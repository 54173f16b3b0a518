//! The public surface of the layer, the builder, the handle and the service: validation
//! errors, overrides, eviction rules, shared breakers, accessors, and the `Display`/`Debug`
//! texts an operator reads.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use flext_breaker::{
    Breaker, BreakerConfig, BreakerLayer, Cause, CircuitOpen, ManualClock, State, Transition,
    key_fn,
};
use flext_core::Origin;
use http::{Request, Response, StatusCode};
use tower::{Layer, Service, ServiceExt};

/// An inner service with a name (to see it through the accessors) that answers with the
/// status named in `x-status` (200 by default) and counts its calls.
#[derive(Debug, Clone)]
struct Backend {
    name: &'static str,
    calls: Arc<AtomicUsize>,
}

impl Backend {
    fn new(name: &'static str) -> Backend {
        Backend {
            name,
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }
}

impl Service<Request<()>> for Backend {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<()>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let status = req
            .headers()
            .get("x-status")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(200);
        let mut res = Response::new(());
        *res.status_mut() = StatusCode::from_u16(status).unwrap();
        std::future::ready(Ok(res))
    }
}

fn req(uri: &str, status: u16) -> Request<()> {
    Request::get(uri)
        .header("x-status", status.to_string())
        .body(())
        .unwrap()
}

fn origin(s: &str) -> Origin {
    s.parse().unwrap()
}

/// Polls a future once with a no-op waker.
fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

async fn call_n(svc: &Breaker<Backend>, uri: &str, status: u16, n: usize) {
    for _ in 0..n {
        let res = svc.clone().oneshot(req(uri, status)).await.unwrap();
        assert_eq!(res.status(), status);
    }
}

#[test]
fn invalid_settings_are_typed_errors_with_their_reason() {
    let err = BreakerLayer::builder().max_keys(0).build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid breaker config: max_keys must be at least 1"
    );

    // A bad override is caught too, even when the default config is fine.
    let err = BreakerLayer::builder()
        .override_key(
            origin("https://flaky.example.com"),
            BreakerConfig::default().half_open_probes(0),
        )
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid breaker config: half-open probes must be between 1 and 1000"
    );

    let err = BreakerLayer::builder()
        .config(BreakerConfig::default().jitter(0.7))
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid breaker config: jitter must be between 0 and 0.5"
    );
    // A `std::error::Error`, so it boxes into the usual error types.
    let boxed: Box<dyn std::error::Error + Send + Sync> = err.clone().into();
    assert_eq!(boxed.to_string(), err.to_string());
}

#[tokio::test(flavor = "current_thread")]
async fn an_override_gives_one_origin_its_own_threshold() {
    let layer = BreakerLayer::builder()
        .config(BreakerConfig::default().no_failure_rate())
        .override_key(
            origin("http://flaky.test"),
            BreakerConfig::default().consecutive_failures(2),
        )
        .clock(ManualClock::new())
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Backend::new("backend"));

    call_n(&svc, "http://flaky.test/x", 503, 2).await;
    call_n(&svc, "http://steady.test/x", 503, 4).await;
    assert_eq!(
        handle.state(&origin("http://flaky.test")),
        Some(State::Open)
    );
    // The default of 5 in a row still holds for every other origin.
    assert_eq!(
        handle.state(&origin("http://steady.test")),
        Some(State::Closed)
    );
    assert_eq!(
        handle
            .snapshot(&origin("http://steady.test"))
            .unwrap()
            .consecutive_failures,
        4
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_closed_breaker_idle_past_the_idle_timeout_is_dropped() {
    let clock = ManualClock::new();
    let layer = BreakerLayer::builder()
        .idle_timeout(Duration::from_secs(60))
        .clock(clock.clone())
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Backend::new("backend"));

    call_n(&svc, "http://a.test/", 200, 1).await;
    clock.advance(Duration::from_secs(61));
    call_n(&svc, "http://b.test/", 200, 1).await;
    // a.test was used in the first minute: still there.
    assert_eq!(handle.len(), 2);
    clock.advance(Duration::from_secs(61));
    call_n(&svc, "http://c.test/", 200, 1).await;
    // A minute and more without a call: gone when a new key came, although the map had room.
    assert_eq!(handle.state(&origin("http://a.test")), None);
    assert_eq!(
        handle.state(&origin("http://b.test")),
        Some(State::Closed),
        "b.test was used since the last look"
    );
    assert_eq!(handle.len(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn services_cloned_per_call_keep_each_origin_on_its_own_breaker() {
    // A facade clones its service for every call, so each call starts with nothing
    // remembered and goes through the map's "found last" slot: alternating origins must
    // still land on their own breakers, and an evicted breaker must not come back from it.
    let clock = ManualClock::new();
    let layer = BreakerLayer::builder()
        .idle_timeout(Duration::from_secs(60))
        .clock(clock.clone())
        .build()
        .unwrap();
    let handle = layer.handle();
    let backend = Backend::new("backend");
    let svc = layer.layer(backend.clone());

    for _ in 0..5 {
        call_n(&svc, "http://down.test/", 503, 1).await;
        call_n(&svc, "http://up.test/", 200, 1).await;
    }
    assert_eq!(handle.state(&origin("http://down.test")), Some(State::Open));
    assert_eq!(handle.state(&origin("http://up.test")), Some(State::Closed));
    assert_eq!(backend.calls(), 10);
    for _ in 0..3 {
        let refused = svc.clone().oneshot(req("http://down.test/", 200)).await;
        assert!(refused.unwrap_err().is::<CircuitOpen>());
        call_n(&svc, "http://up.test/", 200, 1).await;
    }
    assert_eq!(
        backend.calls(),
        13,
        "the open origin's calls never reached the server"
    );

    // up.test is the breaker found last; idle past the timeout (two sweeps: the first sees
    // its recent use), it is dropped when a new origin arrives, and the next call to it gets
    // a new breaker in the map, not the old one.
    clock.advance(Duration::from_secs(61));
    call_n(&svc, "http://new.test/", 200, 1).await;
    clock.advance(Duration::from_secs(61));
    call_n(&svc, "http://newer.test/", 200, 1).await;
    assert_eq!(handle.state(&origin("http://up.test")), None);
    call_n(&svc, "http://up.test/", 200, 1).await;
    assert_eq!(handle.state(&origin("http://up.test")), Some(State::Closed));
    let up = handle.snapshot(&origin("http://up.test")).unwrap();
    assert_eq!(
        up.permitted, 1,
        "a new breaker counts from the call after eviction"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_map_evicts_a_closed_breaker_before_an_older_open_one() {
    let clock = ManualClock::new();
    let layer = BreakerLayer::builder()
        .config(BreakerConfig::default().consecutive_failures(1))
        .max_keys(2)
        .clock(clock.clone())
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Backend::new("backend"));

    call_n(&svc, "http://down.test/", 503, 1).await;
    clock.advance(Duration::from_secs(1));
    call_n(&svc, "http://up.test/", 200, 1).await;
    clock.advance(Duration::from_secs(1));
    call_n(&svc, "http://new.test/", 200, 1).await;

    // The open breaker keeps its open time: the least recently used *closed* one went.
    assert_eq!(handle.state(&origin("http://down.test")), Some(State::Open));
    assert_eq!(handle.state(&origin("http://up.test")), None);
    assert_eq!(
        handle.state(&origin("http://new.test")),
        Some(State::Closed)
    );
}

#[tokio::test(flavor = "current_thread")]
async fn handles_and_layer_clones_share_the_breakers_and_reset_all_clears_them() {
    let clock = ManualClock::new();
    let layer = BreakerLayer::builder()
        .config(BreakerConfig::default().consecutive_failures(1).jitter(0.0))
        .clock(clock.clone())
        .build()
        .unwrap();
    let copy = layer.clone();
    let handle = copy.handle().clone();
    let svc = layer.layer(Backend::new("backend"));

    call_n(&svc, "http://a.test/", 502, 1).await;
    handle.force_open(&origin("http://b.test"));
    handle.disable(&origin("http://c.test"));

    let mut states: Vec<(String, State, Option<Duration>)> = layer
        .handle()
        .snapshots()
        .into_iter()
        .map(|(key, s)| {
            assert_eq!(key.to_string(), &*s.key);
            (key.to_string(), s.state, s.open_remaining)
        })
        .collect();
    states.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        states,
        [
            (
                "http://a.test:80".to_string(),
                State::Open,
                Some(Duration::from_secs(30))
            ),
            ("http://b.test:80".to_string(), State::ForcedOpen, None),
            ("http://c.test:80".to_string(), State::Disabled, None),
        ]
    );

    layer.handle().reset_all();
    let snapshots = handle.snapshots();
    assert_eq!(snapshots.len(), 3);
    assert!(snapshots.iter().all(|(_, s)| s.state == State::Closed));
    // Reset means calls flow again, through the service the original layer made.
    call_n(&svc, "http://a.test/", 200, 1).await;
    call_n(&svc, "http://b.test/", 200, 1).await;
    assert_eq!(svc.get_ref().calls(), 3);
}

#[test]
fn the_default_layer_starts_empty_and_describes_itself() {
    let layer = BreakerLayer::default();
    assert!(layer.handle().is_empty());
    let text = format!("{layer:?}");
    assert!(text.starts_with("BreakerLayer { registry: Registry { keys: 0, max_keys: 1024"));
    // The partition and classifier by type name.
    assert!(text.contains("ByOrigin"), "{text}");
    assert!(text.contains("BreakerClassifier"), "{text}");

    // `Breaker::layer()` is the same default layer.
    let other = Breaker::<Backend>::layer();
    assert_eq!(format!("{other:?}"), text);
    assert_eq!(
        format!("{:?}", BreakerLayer::new().handle()),
        "BreakerHandle { registry: Registry { keys: 0, max_keys: 1024, default: BreakerConfig { \
         consecutive_failures: 5, failure_rate: Some((0.5, 20)), window: 10s, buckets: 10, \
         slow_call: None, open_duration: 30s, max_open_duration: 300s, jitter: 0.1, \
         half_open_probes: 1, half_open_timeout: 30s, respect_retry_after: true }, overrides: 0 } }"
    );
}

#[test]
fn the_builder_describes_its_settings() {
    let builder = BreakerLayer::builder()
        .config(BreakerConfig::default().consecutive_failures(3))
        .override_key(origin("https://a.example.com"), BreakerConfig::default())
        .max_keys(256)
        .idle_timeout(Duration::from_secs(90))
        .on_transition(|_| {});
    let text = format!("{builder:?}");
    assert!(text.starts_with("Builder { config: BreakerConfig { consecutive_failures: 3,"));
    assert!(
        text.ends_with("overrides: 1, max_keys: 256, idle_timeout: 90s, listeners: 1, .. }"),
        "{text}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn the_service_exposes_its_inner_service_and_its_breakers() {
    let layer = BreakerLayer::builder()
        .clock(ManualClock::new())
        .build()
        .unwrap();
    let mut svc = layer.layer(Backend::new("backend"));
    assert_eq!(svc.get_ref().name, "backend");
    svc.get_mut().name = "renamed";

    svc.ready().await.unwrap();
    svc.call(req("http://a.test/", 200)).await.unwrap();
    // The service's handle sees the layer's breakers.
    assert_eq!(
        svc.handle().state(&origin("http://a.test")),
        Some(State::Closed)
    );
    assert_eq!(layer.handle().len(), 1);

    let text = format!("{svc:?}");
    assert!(
        text.starts_with("Breaker { inner: Backend { name: \"renamed\""),
        "{text}"
    );
    assert!(
        text.contains("registry: Registry { keys: 1, max_keys: 1024"),
        "{text}"
    );

    let inner = svc.into_inner();
    assert_eq!(inner.name, "renamed");
    assert_eq!(inner.calls(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn one_service_reuses_a_function_keyed_breaker_across_calls() {
    let layer = BreakerLayer::keyed(key_fn(|req: &Request<()>| {
        req.headers()
            .get("x-tenant")
            .and_then(|v| v.to_str().ok())
            .map(|t| if t == "red" { "red" } else { "other" })
    }))
    .config(BreakerConfig::default().consecutive_failures(3))
    .clock(ManualClock::new())
    .build()
    .unwrap();
    let handle = layer.handle();
    let backend = Backend::new("backend");
    // One service, not clones: each call checks the breaker it used last.
    let mut svc = layer.layer(backend.clone());
    let tenant = |t: &str, status: u16| {
        Request::get("http://a.test/")
            .header("x-tenant", t)
            .header("x-status", status.to_string())
            .body(())
            .unwrap()
    };
    for t in ["red", "red", "blue", "red"] {
        svc.ready().await.unwrap();
        let res = svc.call(tenant(t, 500)).await.unwrap();
        assert_eq!(res.status(), 500);
    }
    assert_eq!(handle.state(&"red"), Some(State::Open));
    assert_eq!(handle.snapshot(&"other").unwrap().consecutive_failures, 1);
    svc.ready().await.unwrap();
    let err = svc.call(tenant("red", 200)).await.unwrap_err();
    assert_eq!(CircuitOpen::find(&*err).unwrap().key(), "red");
    assert_eq!(backend.calls(), 4);

    let text = format!("{:?}", key_fn(|_: &Request<()>| Some(7u32)));
    assert_eq!(text, "KeyFn { key: \"u32\", .. }");
}

#[tokio::test(flavor = "current_thread")]
async fn futures_describe_themselves_and_a_finished_rejection_stays_an_error() {
    let layer = BreakerLayer::builder()
        .clock(ManualClock::new())
        .build()
        .unwrap();
    let mut svc = layer.layer(Backend::new("backend"));

    let guarded = svc.call(req("http://a.test/", 200));
    let text = format!("{guarded:?}");
    assert!(
        text.starts_with("ResponseFuture { kind: \"guarded(Permit { key: \\\"http://a.test:80\\\""),
        "{text}"
    );
    drop(guarded);

    let unguarded = svc.call(req("/relative", 200));
    assert_eq!(
        format!("{unguarded:?}"),
        "ResponseFuture { kind: \"unguarded\" }"
    );
    drop(unguarded);

    layer.handle().force_open(&origin("http://a.test"));
    let mut rejected = Box::pin(svc.call(req("http://a.test/", 200)));
    assert_eq!(
        format!("{rejected:?}"),
        "ResponseFuture { kind: \"rejected(Some(CircuitOpen { key: \\\"http://a.test:80\\\", \
         state: ForcedOpen, retry_after: None }))\" }"
    );
    let Poll::Ready(Err(first)) = poll_once(rejected.as_mut()) else {
        panic!("a rejection is ready at once");
    };
    assert!(CircuitOpen::find(&*first).unwrap().is_forced());
    // Polled again: an error, not a panic and not a second `CircuitOpen`.
    let Poll::Ready(Err(again)) = poll_once(rejected.as_mut()) else {
        panic!("still ready");
    };
    assert_eq!(again.to_string(), "breaker future polled after completion");
    assert!(CircuitOpen::find(&*again).is_none());
}

#[tokio::test(flavor = "current_thread")]
async fn circuit_open_texts_name_the_origin_and_never_the_path() {
    let layer = BreakerLayer::builder()
        .config(BreakerConfig::default().consecutive_failures(1).jitter(0.0))
        .clock(ManualClock::new())
        .build()
        .unwrap();
    let svc = layer.layer(Backend::new("backend"));
    let secret = "https://user:s3cret@api.example.com/v1/items?token=abc";
    svc.clone().oneshot(req(secret, 503)).await.unwrap();
    let err = svc.clone().oneshot(req(secret, 200)).await.unwrap_err();
    let open = CircuitOpen::find(&*err).unwrap();
    assert_eq!(
        open.to_string(),
        "circuit open for https://api.example.com:443; next probe in 30.0s"
    );
    assert_eq!(
        format!("{open:?}"),
        "CircuitOpen { key: \"https://api.example.com:443\", state: Open, retry_after: Some(30s) }"
    );
    for text in [open.to_string(), format!("{open:?}"), format!("{err:?}")] {
        assert!(!text.contains("s3cret") && !text.contains("token") && !text.contains("/v1"));
    }

    let forced = origin("https://other.example.com");
    layer.handle().force_open(&forced);
    let err = svc
        .clone()
        .oneshot(req("https://other.example.com/", 200))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "circuit forced open for https://other.example.com:443"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn callbacks_name_every_cause_and_state_in_lower_case() {
    let clock = ManualClock::new();
    let seen = Arc::new(Mutex::new(Vec::<Transition>::new()));
    let sink = seen.clone();
    let layer = BreakerLayer::builder()
        .config(
            BreakerConfig::default()
                .consecutive_failures(0)
                .failure_rate(0.5, 4)
                .jitter(0.0),
        )
        .clock(clock.clone())
        .on_transition(move |t| sink.lock().unwrap().push(t.clone()))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Backend::new("backend"));
    let uri = "http://a.test/";

    for status in [200, 500, 200, 500] {
        call_n(&svc, uri, status, 1).await;
    }
    clock.advance(Duration::from_secs(30));
    call_n(&svc, uri, 503, 1).await; // the probe fails
    clock.advance(Duration::from_secs(60));
    // A probe that never ends: the next call after the half-open timeout finds it open.
    let mut hung = svc.clone();
    let probe = hung.call(req(uri, 200));
    clock.advance(Duration::from_secs(30));
    let err = svc.clone().oneshot(req(uri, 200)).await.unwrap_err();
    assert_eq!(
        CircuitOpen::find(&*err).unwrap().retry_after(),
        Some(Duration::from_secs(120)),
        "a timed-out probe doubles the open time as a failed one does"
    );
    drop(probe);
    let a = origin("http://a.test");
    handle.disable(&a);
    handle.reset(&a);

    let steps: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|t| format!("{} -> {}: {}", t.from, t.to, t.cause))
        .collect();
    assert_eq!(
        steps,
        [
            "closed -> open: 2 failures in 4 calls",
            "open -> half-open: open time elapsed",
            "half-open -> open: probe failed",
            "open -> half-open: open time elapsed",
            "half-open -> open: probe timed out",
            "open -> disabled: disabled",
            "disabled -> closed: reset",
        ]
    );
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen[0].cause,
        Cause::FailureRate {
            failures: 2,
            calls: 4
        }
    );
    assert_eq!(seen[2].open_for, Some(Duration::from_secs(60)));
    assert_eq!(seen[1].open_for, None);
    assert_eq!(State::ForcedOpen.to_string(), "forced-open");
    assert_eq!(Cause::ProbesSucceeded.to_string(), "probes succeeded");
    assert_eq!(Cause::ForcedOpen.to_string(), "forced open");
    assert_eq!(
        Cause::ConsecutiveFailures(5).to_string(),
        "5 consecutive failures"
    );
}
