//! Time as the breaker sees it: tokio's paused clock through `TokioClock`, the manual clock,
//! and a server's `Retry-After` (read against the classifier's clock, or ignored on request).

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flext_breaker::{
    BreakerClassifier, BreakerConfig, BreakerLayer, CircuitOpen, Clock, ManualClock, State,
    TokioClock,
};
use flext_core::{BoxError, Origin};
use http::{Request, Response, StatusCode};
use tower::{Layer, ServiceExt, service_fn};

/// Answers with the status in `x-status` and echoes `x-retry-after` as `Retry-After`.
fn server() -> impl tower::Service<
    Request<()>,
    Response = Response<()>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<()>, Infallible>>,
> + Clone {
    service_fn(|req: Request<()>| {
        let status = req
            .headers()
            .get("x-status")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(200);
        let mut res = Response::new(());
        *res.status_mut() = StatusCode::from_u16(status).unwrap();
        if let Some(wait) = req.headers().get("x-retry-after") {
            res.headers_mut()
                .insert(http::header::RETRY_AFTER, wait.clone());
        }
        async move { Ok(res) }
    })
}

fn req(status: u16, retry_after: Option<&str>) -> Request<()> {
    let mut b = Request::get("http://svc.test/x").header("x-status", status.to_string());
    if let Some(wait) = retry_after {
        b = b.header("x-retry-after", wait);
    }
    b.body(()).unwrap()
}

fn retry_after(err: &BoxError) -> Option<Duration> {
    CircuitOpen::find(&**err).unwrap().retry_after()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_tokio_clock_follows_tokios_paused_time() {
    let layer = BreakerLayer::builder()
        .config(BreakerConfig::default().consecutive_failures(1).jitter(0.0))
        .clock(TokioClock)
        .build()
        .unwrap();
    let svc = layer.layer(server());
    let origin: Origin = "http://svc.test".parse().unwrap();

    svc.clone().oneshot(req(503, None)).await.unwrap();
    tokio::time::advance(Duration::from_secs(29)).await;
    let err = svc.clone().oneshot(req(200, None)).await.unwrap_err();
    assert_eq!(retry_after(&err), Some(Duration::from_secs(1)));

    tokio::time::advance(Duration::from_secs(1)).await;
    let res = svc.clone().oneshot(req(200, None)).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(layer.handle().state(&origin), Some(State::Closed));
    // `TokioClock::now` is tokio's `Instant::now`.
    let before = TokioClock.now();
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(TokioClock.now() - before, Duration::from_secs(5));
}

#[test]
fn a_manual_clock_starts_still_and_shows_how_far_it_moved() {
    let clock = ManualClock::default();
    let start = clock.now();
    assert_eq!(clock.elapsed(), Duration::ZERO);
    assert_eq!(format!("{clock:?}"), "ManualClock { elapsed: 0ns }");
    let shared = clock.clone();
    shared.advance(Duration::from_millis(2500));
    assert_eq!(format!("{clock:?}"), "ManualClock { elapsed: 2.5s }");
    assert_eq!(clock.now() - start, Duration::from_millis(2500));
}

#[tokio::test(flavor = "current_thread")]
async fn a_retry_after_date_is_read_against_the_classifiers_clock() {
    // 2023-11-14T22:13:20Z; the server asks for two minutes.
    fn fixed() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }
    let layer = BreakerLayer::builder()
        .config(BreakerConfig::default().consecutive_failures(1).jitter(0.0))
        .clock(ManualClock::new())
        .classifier(BreakerClassifier::with_clock(fixed))
        .build()
        .unwrap();
    let svc = layer.layer(server());

    let res = svc
        .clone()
        .oneshot(req(503, Some("Tue, 14 Nov 2023 22:15:20 GMT")))
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let err = svc.clone().oneshot(req(200, None)).await.unwrap_err();
    // Not the 30 s open time: the server's two minutes.
    assert_eq!(retry_after(&err), Some(Duration::from_secs(120)));
}

#[tokio::test(flavor = "current_thread")]
async fn retry_after_can_be_ignored() {
    let open_time = |respect: bool| async move {
        let layer = BreakerLayer::builder()
            .config(
                BreakerConfig::default()
                    .consecutive_failures(1)
                    .jitter(0.0)
                    .respect_retry_after(respect),
            )
            .clock(ManualClock::new())
            .build()
            .unwrap();
        let svc = layer.layer(server());
        svc.clone().oneshot(req(503, Some("120"))).await.unwrap();
        let err = svc.clone().oneshot(req(200, None)).await.unwrap_err();
        retry_after(&err)
    };
    assert_eq!(open_time(true).await, Some(Duration::from_secs(120)));
    assert_eq!(open_time(false).await, Some(Duration::from_secs(30)));
}
