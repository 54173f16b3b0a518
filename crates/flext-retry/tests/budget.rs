//! The budget under a full outage: 5,000 requests to an endpoint that always fails.
//!
//! The endpoint is an in-process `service_fn` (the point is the arithmetic, and 24,000
//! loopback round trips would only slow the suite); the backoff is zero so that the whole run
//! fits in one budget window of the paused clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use flext_core::{BoxError, ReplayBody};
use flext_retry::{Backoff, Budget, RetryLayer, StopReason};
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use tower::{Layer, Service, ServiceExt};

const REQUESTS: u64 = 5_000;

/// Sends `REQUESTS` GETs to an always-503 endpoint; returns attempts per request.
async fn attempts_per_request(layer: &RetryLayer) -> f64 {
    let seen = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&seen);
    let failing = tower::service_fn(move |_req: Request<ReplayBody<Empty<Bytes>>>| {
        counter.fetch_add(1, Ordering::Relaxed);
        let mut res = Response::new(Empty::<Bytes>::new());
        *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        async move { Ok::<_, BoxError>(res) }
    });
    let mut svc = layer.layer(failing);
    for _ in 0..REQUESTS {
        let req = Request::get("http://example.test/")
            .body(Empty::new())
            .unwrap();
        let res = svc.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    seen.load(Ordering::Relaxed) as f64 / REQUESTS as f64
}

#[tokio::test(start_paused = true)]
async fn an_outage_costs_at_most_a_quarter_more_attempts() {
    let budgeted = RetryLayer::builder()
        .backoff(Backoff::none())
        .build()
        .unwrap();
    let ratio = attempts_per_request(&budgeted).await;
    // 20% of 5,000 plus 10/s over the 10 s window: 1,100 retries.
    assert!(ratio <= 1.25, "{ratio} attempts per request");
    assert_eq!(ratio, 1.22);
    let m = budgeted.metrics();
    assert_eq!((m.requests, m.retries), (5_000, 1_100));
    // A request the budget never refused made its 3 retries: at most 366 of them.
    assert!(
        m.budget_exhausted >= 5_000 - 1_100 / 3,
        "{}",
        m.budget_exhausted
    );
    assert_eq!(m.budget_available, 0);

    let unbudgeted = RetryLayer::builder()
        .backoff(Backoff::none())
        .budget(Budget::unlimited())
        .build()
        .unwrap();
    assert_eq!(attempts_per_request(&unbudgeted).await, 4.0);
}

#[tokio::test(start_paused = true)]
async fn the_budget_is_shared_by_clones_and_refills_with_traffic() {
    let layer = RetryLayer::builder()
        .backoff(Backoff::none())
        .budget(Budget::new(0.2, 0, std::time::Duration::from_secs(10)))
        .build()
        .unwrap();
    let clone = layer.clone();
    let ok = tower::service_fn(|_req: Request<ReplayBody<Empty<Bytes>>>| async {
        Ok::<_, BoxError>(Response::new(Empty::<Bytes>::new()))
    });
    let mut svc = clone.layer(ok);
    for _ in 0..10 {
        let req = Request::get("http://example.test/")
            .body(Empty::new())
            .unwrap();
        svc.ready().await.unwrap().call(req).await.unwrap();
    }
    // Ten successful requests through the clone bought two retries for the original.
    assert_eq!(layer.metrics().budget_available, 2);
    let failing = tower::service_fn(|_req: Request<ReplayBody<Empty<Bytes>>>| async {
        let mut res = Response::new(Empty::<Bytes>::new());
        *res.status_mut() = StatusCode::BAD_GATEWAY;
        Ok::<_, BoxError>(res)
    });
    let mut svc = layer.layer(failing);
    let req = Request::get("http://example.test/")
        .body(Empty::new())
        .unwrap();
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    let info = flext_retry::RetryInfo::of(&res).unwrap();
    // Its own request adds 0.2: two retries, then the budget is empty.
    assert_eq!(info.attempts(), 3);
    assert_eq!(info.stop_reason(), Some(StopReason::BudgetExhausted));
}
