//! The breaker over real HTTP: hyper-util's client against flext-testkit servers on
//! loopback, with an injected manual clock (a paused tokio clock would jump ahead whenever
//! the runtime waits on a socket).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flext_breaker::{BreakerConfig, BreakerLayer, CircuitOpen, ManualClock, State};
use flext_core::{BoxError, Origin, TransportError};
use flext_testkit::{ID_HEADER, SCRIPT_HEADER, TestServer};
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, Service, ServiceExt, service_fn};

/// hyper-util's client as a `Service`, a refused connection mapped to
/// `TransportError::connect` as a pool would.
fn http_client() -> impl Service<
    Request<Empty<Bytes>>,
    Response = Response<impl Send + std::fmt::Debug>,
    Error = BoxError,
    Future = impl Send,
> + Clone
+ Send {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    service_fn(move |req: Request<Empty<Bytes>>| {
        let client = client.clone();
        async move {
            client.request(req).await.map_err(|e| -> BoxError {
                if e.is_connect() {
                    TransportError::connect(e).into()
                } else {
                    e.into()
                }
            })
        }
    })
}

fn request(server: &TestServer, id: &str, script: &str) -> Request<Empty<Bytes>> {
    Request::get(server.uri("/work"))
        .header(ID_HEADER, id)
        .header(SCRIPT_HEADER, script)
        .body(Empty::new())
        .unwrap()
}

fn origin(server: &TestServer) -> Origin {
    Origin::from_uri(&server.uri("/")).unwrap()
}

fn layer(clock: &ManualClock, config: BreakerConfig) -> BreakerLayer {
    BreakerLayer::builder()
        .config(config)
        .clock(clock.clone())
        .build()
        .unwrap()
}

fn circuit_open(err: &BoxError) -> &CircuitOpen {
    CircuitOpen::find(&**err).unwrap_or_else(|| panic!("not a CircuitOpen: {err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_opens_the_circuit_and_recovery_closes_it() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let clock = ManualClock::new();
    let layer = layer(&clock, BreakerConfig::default());
    let handle = layer.handle();
    let svc = layer.layer(http_client());

    server.stop().await;
    for _ in 0..5 {
        let err = svc
            .clone()
            .oneshot(request(&server, "a", "200"))
            .await
            .unwrap_err();
        assert!(TransportError::find(&*err).unwrap().is_connect(), "{err}");
    }
    assert_eq!(handle.state(&origin(&server)), Some(State::Open));

    // While open, a probe goes out only after the open time (30 s ± 10%); the server is
    // still down, so it fails and the open time doubles.
    clock.advance(Duration::from_secs(27));
    let err = svc
        .clone()
        .oneshot(request(&server, "a", "200"))
        .await
        .unwrap_err();
    let left = circuit_open(&err).retry_after().unwrap();
    assert!(left <= Duration::from_secs(6), "{left:?}");
    clock.advance(Duration::from_secs(6));
    let err = svc
        .clone()
        .oneshot(request(&server, "a", "200"))
        .await
        .unwrap_err();
    assert!(TransportError::find(&*err).unwrap().is_connect(), "{err}");
    let err = svc
        .clone()
        .oneshot(request(&server, "a", "200"))
        .await
        .unwrap_err();
    let left = circuit_open(&err).retry_after().unwrap();
    assert!(
        left >= Duration::from_secs(54) && left <= Duration::from_secs(66),
        "{left:?}"
    );

    // The server is back, but the circuit is open: 100 calls fail fast, none reach it.
    server.restart().await.unwrap();
    server.reset_stats();
    for _ in 0..100 {
        let err = svc
            .clone()
            .oneshot(request(&server, "a", "200"))
            .await
            .unwrap_err();
        let open = circuit_open(&err);
        assert_eq!(open.origin(), Some(origin(&server)));
        assert!(open.to_string().starts_with(&format!(
            "circuit open for {}; next probe in ",
            origin(&server)
        )));
    }
    assert_eq!(server.stats().requests, 0);

    // After the open time one probe goes through, succeeds, and traffic flows again.
    clock.advance(Duration::from_secs(66));
    let res = svc
        .clone()
        .oneshot(request(&server, "a", "200"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(server.stats().requests, 1);
    assert_eq!(handle.state(&origin(&server)), Some(State::Closed));
    for _ in 0..20 {
        let res = svc
            .clone()
            .oneshot(request(&server, "a", "200"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(server.stats().requests, 21);

    let s = handle.snapshot(&origin(&server)).unwrap();
    assert_eq!(s.state, State::Closed);
    assert_eq!(s.failed_probes, 0);
    assert_eq!(s.rejected, 102);
    assert_eq!(s.permitted, 5 + 1 + 1 + 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_origin_down_leaves_the_other_alone() {
    let down = TestServer::builder().http1().start().await.unwrap();
    let up = TestServer::builder().http1().start().await.unwrap();
    let clock = ManualClock::new();
    let layer = layer(&clock, BreakerConfig::default());
    let handle = layer.handle();
    let svc = layer.layer(http_client());

    down.stop().await;
    for _ in 0..5 {
        let err = svc
            .clone()
            .oneshot(request(&down, "d", "200"))
            .await
            .unwrap_err();
        assert!(CircuitOpen::find(&*err).is_none());
        // Interleaved calls to the healthy origin.
        let res = svc.clone().oneshot(request(&up, "u", "200")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    for _ in 0..20 {
        let err = svc
            .clone()
            .oneshot(request(&down, "d", "200"))
            .await
            .unwrap_err();
        assert!(CircuitOpen::find(&*err).is_some());
        let res = svc.clone().oneshot(request(&up, "u", "200")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(handle.state(&origin(&down)), Some(State::Open));
    assert_eq!(handle.state(&origin(&up)), Some(State::Closed));
    assert_eq!(up.stats().requests_for_id("u"), 25);
    assert_eq!(handle.snapshot(&origin(&up)).unwrap().rejected, 0);
    assert_eq!(handle.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_lets_exactly_the_configured_probes_through() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let clock = ManualClock::new();
    let layer = layer(&clock, BreakerConfig::default().half_open_probes(3));
    let handle = layer.handle();
    let svc = layer.layer(http_client());

    for _ in 0..5 {
        let res = svc
            .clone()
            .oneshot(request(&server, "trip", "503"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(handle.state(&origin(&server)), Some(State::Open));
    clock.advance(Duration::from_secs(33));

    // 100 callers released at once; the probes are slow enough to still be out when the
    // last caller asks.
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let svc = svc.clone();
        let barrier = barrier.clone();
        let req = request(&server, "probe", "200;delay=500ms");
        tasks.spawn(async move {
            barrier.wait().await;
            svc.oneshot(req).await
        });
    }
    let (mut ok, mut refused) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            Ok(res) => {
                assert_eq!(res.status(), StatusCode::OK);
                ok += 1;
            }
            Err(err) => {
                assert!(circuit_open(&err).is_half_open(), "{err}");
                refused += 1;
            }
        }
    }
    assert_eq!((ok, refused), (3, 97));
    assert_eq!(server.stats().requests_for_id("probe"), 3);
    assert_eq!(handle.state(&origin(&server)), Some(State::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_probe_gives_its_place_back() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let clock = ManualClock::new();
    let layer = layer(&clock, BreakerConfig::default());
    let handle = layer.handle();
    let svc = layer.layer(http_client());

    for _ in 0..5 {
        svc.clone()
            .oneshot(request(&server, "trip", "500"))
            .await
            .unwrap();
    }
    clock.advance(Duration::from_secs(33));

    // The probe's caller gives up (a timeout above the breaker drops its future).
    let slow = svc
        .clone()
        .oneshot(request(&server, "slow", "200;delay=10s"));
    assert!(
        tokio::time::timeout(Duration::from_millis(100), slow)
            .await
            .is_err()
    );
    assert_eq!(handle.state(&origin(&server)), Some(State::HalfOpen));

    // Not stuck: the next call is the probe, and it closes the circuit.
    let res = svc
        .clone()
        .oneshot(request(&server, "next", "200"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(server.stats().requests_for_id("next"), 1);
    assert_eq!(handle.state(&origin(&server)), Some(State::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_sets_a_floor_on_the_open_time_and_429_does_not_trip() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let clock = ManualClock::new();
    let layer = layer(&clock, BreakerConfig::default());
    let handle = layer.handle();
    let svc = layer.layer(http_client());

    for _ in 0..30 {
        let res = svc
            .clone()
            .oneshot(request(&server, "quota", "429;retry-after=120"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(handle.state(&origin(&server)), Some(State::Closed));

    for _ in 0..5 {
        svc.clone()
            .oneshot(request(&server, "busy", "503;retry-after=90"))
            .await
            .unwrap();
    }
    let err = svc
        .clone()
        .oneshot(request(&server, "busy", "200"))
        .await
        .unwrap_err();
    // The 429s asked for 120 s, the 503s for 90 s: the longer wins over the 30 s default.
    assert_eq!(
        circuit_open(&err).retry_after(),
        Some(Duration::from_secs(120))
    );
}
