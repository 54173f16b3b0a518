//! The policy end to end over a scripted `service_fn`; real HTTP is in `tests/`.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use flext_core::{Attempt, BoxError, Deadline, ReplayBody, Sent, TransportError};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::{Backoff, Budget, Random, RetryBuilder, RetryError, RetryInfo, RetryOverride};
use crate::{RetryLayer, StopReason};

/// What the scripted server does for one attempt.
#[derive(Clone)]
enum Step {
    Status(u16),
    RetryAfter(u16, &'static str),
    Refused,
    Other,
}

/// One attempt as the server saw it: its `Attempt`, its `Tag`, its body.
type SeenAttempt = (Option<Attempt>, Option<&'static str>, Bytes);

#[derive(Clone, Default)]
struct Seen {
    attempts: Arc<Mutex<Vec<SeenAttempt>>>,
    ready: Arc<AtomicU32>,
}

#[derive(Clone, Debug, PartialEq)]
struct Tag(&'static str);

type Req = Request<ReplayBody<Full<Bytes>>>;

/// A service playing `steps` in order (the last one repeats), recording what it saw.
#[derive(Clone)]
struct Scripted {
    steps: Arc<Mutex<VecDeque<Step>>>,
    seen: Seen,
}

impl Service<Req> for Scripted {
    type Response = Response<Full<Bytes>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.seen.ready.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let step = {
            let mut steps = self.steps.lock().unwrap();
            if steps.len() > 1 {
                steps.pop_front()
            } else {
                steps.front().cloned()
            }
        };
        let seen = self.seen.clone();
        Box::pin(async move {
            let attempt = req.extensions().get::<Attempt>().copied();
            let tag = req.extensions().get::<Tag>().map(|t| t.0);
            let body = req.into_body().collect().await?.to_bytes();
            seen.attempts.lock().unwrap().push((attempt, tag, body));
            let (status, retry_after) = match step.unwrap_or(Step::Status(200)) {
                Step::Status(s) => (s, None),
                Step::RetryAfter(s, v) => (s, Some(v)),
                Step::Refused => return Err(TransportError::refused(None).into()),
                Step::Other => return Err("boom".into()),
            };
            let mut res = Response::new(Full::new(Bytes::from_static(b"payload")));
            *res.status_mut() = StatusCode::from_u16(status)?;
            if let Some(v) = retry_after {
                res.headers_mut()
                    .insert(http::header::RETRY_AFTER, v.parse()?);
            }
            Ok(res)
        })
    }
}

fn scripted(steps: &[Step]) -> (Scripted, Seen) {
    let seen = Seen::default();
    let svc = Scripted {
        steps: Arc::new(Mutex::new(steps.iter().cloned().collect())),
        seen: seen.clone(),
    };
    (svc, seen)
}

fn layer() -> RetryBuilder {
    RetryLayer::builder()
        .backoff(Backoff::constant(Duration::from_millis(100)))
        .random(Random::seeded(1))
}

async fn send(
    layer: &RetryLayer,
    svc: Scripted,
    req: Request<Full<Bytes>>,
) -> Result<Response<Full<Bytes>>, RetryError> {
    let mut svc = tower_layer::Layer::layer(layer, svc);
    svc.ready().await?.call(req).await
}

fn get() -> Request<Full<Bytes>> {
    Request::get("http://example.test/")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn post(body: &'static str) -> Request<Full<Bytes>> {
    Request::post("http://example.test/")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn retries_until_success_and_says_so() {
    let (svc, seen) = scripted(&[Step::Status(503), Step::Status(502), Step::Status(200)]);
    let layer = layer().build().unwrap();
    let t0 = Instant::now();
    let res = send(&layer, svc, get()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(t0.elapsed(), Duration::from_millis(200));
    let info = RetryInfo::of(&res).unwrap();
    assert_eq!(info.attempts(), 3);
    assert_eq!(info.backoff(), Duration::from_millis(200));
    assert_eq!(info.stop_reason(), None);
    let reasons: Vec<_> = info
        .retries()
        .iter()
        .map(|r| r.failure().label().to_owned())
        .collect();
    assert_eq!(reasons, ["503", "502"]);
    let m = layer.metrics();
    assert_eq!((m.requests, m.attempts, m.retries), (1, 3, 2));
    // poll_ready before every attempt.
    assert_eq!(seen.ready.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn every_attempt_gets_the_extensions_and_its_number() {
    let (svc, seen) = scripted(&[Step::Status(500), Step::Status(500), Step::Status(200)]);
    let layer = layer().build().unwrap();
    let mut req = post("body");
    req.extensions_mut().insert(Tag("mine"));
    req.extensions_mut().insert(RetryOverride::Idempotent);
    send(&layer, svc, req).await.unwrap();
    let attempts = seen.attempts.lock().unwrap().clone();
    let expected = [None, Some(Attempt::new(1)), Some(Attempt::new(2))];
    for (i, (attempt, tag, body)) in attempts.iter().enumerate() {
        assert_eq!(*attempt, expected[i]);
        assert_eq!(*tag, Some("mine"));
        assert_eq!(body, "body");
    }
}

#[tokio::test(start_paused = true)]
async fn a_post_is_not_retried_after_a_503() {
    let (svc, seen) = scripted(&[Step::Status(503), Step::Status(200)]);
    let layer = layer().build().unwrap();
    let res = send(&layer, svc, post("x")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(seen.attempts.lock().unwrap().len(), 1);
    let info = RetryInfo::of(&res).unwrap();
    assert_eq!(
        (info.attempts(), info.stop_reason()),
        (1, Some(StopReason::NotIdempotent))
    );
}

#[tokio::test(start_paused = true)]
async fn never_sent_is_retried_twice_for_a_post_and_the_error_chain_survives() {
    let (svc, seen) = scripted(&[Step::Refused]);
    let layer = layer().build().unwrap();
    let err = send(&layer, svc, post("x")).await.unwrap_err();
    assert_eq!(seen.attempts.lock().unwrap().len(), 3);
    assert_eq!(err.info().attempts(), 3);
    assert_eq!(err.stop_reason(), Some(StopReason::MaxRetries));
    let transport = TransportError::find(&err).unwrap();
    assert_eq!((transport.is_refused(), transport.sent()), (true, Sent::No));
    assert_eq!(
        err.to_string(),
        "request failed after 3 attempts (retry limit reached)"
    );
}

#[tokio::test(start_paused = true)]
async fn other_errors_and_opt_outs_are_not_retried() {
    let layer = layer().build().unwrap();
    let (svc, _) = scripted(&[Step::Other]);
    let err = send(&layer, svc, get()).await.unwrap_err();
    assert_eq!(err.stop_reason(), Some(StopReason::NotRetryable));

    let (svc, seen) = scripted(&[Step::Status(503)]);
    let mut req = get();
    req.extensions_mut().insert(RetryOverride::Disabled);
    let res = send(&layer, svc, req).await.unwrap();
    assert_eq!(
        RetryInfo::of(&res).unwrap().stop_reason(),
        Some(StopReason::Disabled)
    );
    assert_eq!(seen.attempts.lock().unwrap().len(), 1);

    let (svc, _) = scripted(&[Step::Status(503)]);
    let mut req = get();
    req.extensions_mut().insert(RetryOverride::NotIdempotent);
    let res = send(&layer, svc, req).await.unwrap();
    assert_eq!(
        RetryInfo::of(&res).unwrap().stop_reason(),
        Some(StopReason::NotIdempotent)
    );
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_max_retries_with_the_last_response() {
    let (svc, seen) = scripted(&[Step::Status(504)]);
    let layer = layer().build().unwrap();
    let res = send(&layer, svc, get()).await.unwrap();
    assert_eq!(res.status(), 504);
    assert_eq!(seen.attempts.lock().unwrap().len(), 4);
    let info = RetryInfo::of(&res).unwrap();
    assert_eq!(
        (info.attempts(), info.stop_reason()),
        (4, Some(StopReason::MaxRetries))
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_sets_the_wait_and_a_long_one_returns_at_once() {
    let layer = layer().build().unwrap();
    let (svc, _) = scripted(&[Step::RetryAfter(503, "5"), Step::Status(200)]);
    let t0 = Instant::now();
    let res = send(&layer, svc, get()).await.unwrap();
    assert_eq!(t0.elapsed(), Duration::from_secs(5));
    let record = RetryInfo::of(&res).unwrap().retries()[0];
    assert_eq!(
        (record.delay(), record.retry_after()),
        (Duration::from_secs(5), Some(Duration::from_secs(5)))
    );
    assert_eq!(layer.metrics().retry_after_honoured, 1);

    let (svc, seen) = scripted(&[Step::RetryAfter(429, "61"), Step::Status(200)]);
    let t0 = Instant::now();
    let res = send(&layer, svc, get()).await.unwrap();
    assert_eq!(
        (res.status(), t0.elapsed()),
        (StatusCode::TOO_MANY_REQUESTS, Duration::ZERO)
    );
    assert_eq!(seen.attempts.lock().unwrap().len(), 1);
    let reason = RetryInfo::of(&res).unwrap().stop_reason();
    assert_eq!(
        reason,
        Some(StopReason::RetryAfterTooLong(Duration::from_secs(61)))
    );
    assert_eq!(layer.metrics().retry_after_too_long, 1);
}

#[tokio::test(start_paused = true)]
async fn never_sleeps_past_the_deadline() {
    let layer = layer()
        .backoff(Backoff::constant(Duration::from_secs(2)))
        .build()
        .unwrap();
    let (svc, seen) = scripted(&[Step::Status(503), Step::Status(200)]);
    let mut req = get();
    req.extensions_mut()
        .insert(Deadline::after(Duration::from_secs(1)));
    let t0 = Instant::now();
    let res = send(&layer, svc, req).await.unwrap();
    assert_eq!(
        (res.status(), t0.elapsed()),
        (StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO)
    );
    assert_eq!(seen.attempts.lock().unwrap().len(), 1);
    assert_eq!(
        RetryInfo::of(&res).unwrap().stop_reason(),
        Some(StopReason::Deadline)
    );
    assert_eq!(layer.metrics().deadline_reached, 1);
}

/// Ready for its first call only, then busy for good: a retry waits on its `poll_ready`.
#[derive(Clone, Default)]
struct BusyAfterOne {
    calls: Arc<AtomicU32>,
}

impl Service<Req> for BusyAfterOne {
    type Response = Response<Full<Bytes>>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.calls.load(Ordering::SeqCst) == 0 {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, _req: Req) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut res = Response::new(Full::new(Bytes::new()));
        *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        std::future::ready(Ok(res))
    }
}

#[tokio::test(start_paused = true)]
async fn never_waits_for_a_busy_service_past_the_deadline() {
    let layer = layer().build().unwrap();
    let svc = BusyAfterOne::default();
    let mut req = get();
    req.extensions_mut()
        .insert(Deadline::after(Duration::from_secs(1)));
    let t0 = Instant::now();
    let mut retry = tower_layer::Layer::layer(&layer, svc.clone());
    let err = retry.ready().await.unwrap().call(req).await.unwrap_err();
    // The backoff (100 ms) ended before the deadline; the wait for the busy service did not.
    assert_eq!(t0.elapsed(), Duration::from_secs(1));
    assert_eq!(svc.calls.load(Ordering::SeqCst), 1);
    let t = TransportError::find(err.inner()).expect("a transport error");
    assert!(t.is_timeout(), "{err:?}");
    assert_eq!(t.sent(), Sent::No);
    assert_eq!(err.stop_reason(), Some(StopReason::Deadline));
    // The retry never went out: one attempt made.
    assert_eq!(err.info().attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_empty_budget_stops_retries_and_is_counted() {
    let layer = layer()
        .budget(Budget::new(0.0, 1, Duration::from_secs(1)))
        .build()
        .unwrap();
    assert_eq!(layer.metrics().budget_available, 1);
    let (svc, seen) = scripted(&[Step::Status(503)]);
    let res = send(&layer, svc, get()).await.unwrap();
    assert_eq!(seen.attempts.lock().unwrap().len(), 2);
    assert_eq!(
        RetryInfo::of(&res).unwrap().stop_reason(),
        Some(StopReason::BudgetExhausted)
    );
    let m = layer.metrics();
    assert_eq!((m.budget_exhausted, m.budget_available), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_first_success_carries_no_info_unless_asked() {
    let (svc, _) = scripted(&[Step::Status(200)]);
    let res = send(&layer().build().unwrap(), svc, get()).await.unwrap();
    assert!(RetryInfo::of(&res).is_none());
    let (svc, _) = scripted(&[Step::Status(200)]);
    let every = layer().info_on_every_response(true).build().unwrap();
    let res = send(&every, svc, get()).await.unwrap();
    assert_eq!(RetryInfo::of(&res).unwrap().attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn seeded_jitter_gives_the_same_waits() {
    let waits = || async {
        let layer = RetryLayer::builder()
            .random(Random::seeded(9))
            .build()
            .unwrap();
        let (svc, _) = scripted(&[Step::Status(503)]);
        let res = send(&layer, svc, get()).await.unwrap();
        RetryInfo::of(&res)
            .unwrap()
            .retries()
            .iter()
            .map(|r| r.delay())
            .collect::<Vec<_>>()
    };
    let (a, b) = (waits().await, waits().await);
    assert_eq!(a.len(), 3);
    assert_eq!(a, b);
    for (n, d) in a.iter().enumerate() {
        assert!(*d <= Duration::from_millis(100 << n), "{d:?}");
    }
}

/// A response body that yields `data` once, then never ends; counts what was read.
struct Endless {
    data: Option<Bytes>,
    read: Arc<AtomicU32>,
}

impl http_body::Body for Endless {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        match self.data.take() {
            Some(data) => {
                self.read.fetch_add(1, Ordering::SeqCst);
                Poll::Ready(Some(Ok(http_body::Frame::data(data))))
            }
            None => Poll::Pending,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_retried_response_body_is_drained_during_the_backoff_then_dropped() {
    let read = Arc::new(AtomicU32::new(0));
    let calls = Arc::new(AtomicU32::new(0));
    let (read2, calls2) = (read.clone(), calls.clone());
    let svc = tower::service_fn(move |_req: Req| {
        let first = calls2.fetch_add(1, Ordering::SeqCst) == 0;
        let body = Endless {
            data: Some(Bytes::from_static(b"error page")),
            read: read2.clone(),
        };
        let mut res = Response::new(body);
        if first {
            *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        }
        async move { Ok::<_, BoxError>(res) }
    });
    let layer = layer().build().unwrap();
    let mut svc = tower_layer::Layer::layer(&layer, svc);
    let res = svc.ready().await.unwrap().call(get()).await.unwrap();
    assert_eq!(
        (res.status(), calls.load(Ordering::SeqCst)),
        (StatusCode::OK, 2)
    );
    // The 503's body was read during the backoff; only the one returned holds the counter.
    assert_eq!(read.load(Ordering::SeqCst), 1);
    assert_eq!(Arc::strong_count(&read), 3);
    drop(res);
    assert_eq!(Arc::strong_count(&read), 2);
}

#[test]
fn the_service_and_its_future_are_send_and_sync_when_the_inner_ones_are() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<crate::Retry<Scripted>>();
    send_sync::<RetryLayer>();
    send::<
        crate::future::ResponseFuture<
            Scripted,
            Full<Bytes>,
            Full<Bytes>,
            flext_core::HttpClassifier,
        >,
    >();
    send_sync::<RetryError>();
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_in_flight_cap_is_sent_once_and_counted() {
    let layer = layer().max_replay_memory(4).build().unwrap();
    let (svc, seen) = scripted(&[Step::Status(503), Step::Status(200)]);
    let req = Request::put("http://example.test/")
        .body(Full::new(Bytes::from_static(b"ten bytes!")))
        .unwrap();
    let res = send(&layer, svc, req).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.attempts.lock().unwrap()[0].2, "ten bytes!");
    let reason = RetryInfo::of(&res).unwrap().stop_reason();
    let expected = StopReason::BodyNotReplayable(flext_core::NotReplayable::MemoryLimit);
    assert_eq!(reason, Some(expected));
    assert_eq!(layer.metrics().replay_cap_hit, 1);
}

/// One attempt `Held` got: the body it was sent, and its status once the test gives it.
type HeldCall = (Bytes, Option<u16>);

/// An inner service whose attempts answer when the test says so: each records the body it
/// was sent, then waits for its status.
#[derive(Clone, Default)]
struct Held {
    calls: Arc<Mutex<Vec<HeldCall>>>,
}

impl Held {
    fn answer(&self, call: usize, status: u16) {
        self.calls.lock().unwrap()[call].1 = Some(status);
    }

    fn body(&self, call: usize) -> Bytes {
        self.calls.lock().unwrap()[call].0.clone()
    }
}

impl Service<Req> for Held {
    type Response = Response<Full<Bytes>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let calls = self.calls.clone();
        Box::pin(async move {
            let body = req.into_body().collect().await?.to_bytes();
            let n = {
                let mut calls = calls.lock().unwrap();
                calls.push((body, None));
                calls.len() - 1
            };
            let status = std::future::poll_fn(|_| match calls.lock().unwrap()[n].1 {
                Some(status) => Poll::Ready(status),
                None => Poll::Pending,
            })
            .await;
            Ok(Response::builder().status(status).body(Full::default())?)
        })
    }
}

/// Polls by hand: with no backoff nothing sleeps, and `Held` needs no waker.
fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(std::task::Waker::noop()))
}

fn put(len: usize) -> Request<Full<Bytes>> {
    Request::put("http://example.test/")
        .body(Full::new(Bytes::from(vec![b'a'; len])))
        .unwrap()
}

#[test]
fn a_whole_body_holds_the_in_flight_cap_until_its_request_ends() {
    let layer = RetryLayer::builder()
        .backoff(Backoff::none())
        .max_replay_memory(100)
        .build()
        .unwrap();
    let held = Held::default();
    let mut svc = tower_layer::Layer::layer(&layer, held.clone());
    let mut call = |req| {
        assert!(poll_once(std::pin::pin!(svc.ready())).is_ready());
        Box::pin(svc.call(req))
    };
    let in_use = || layer.metrics().replay_bytes_in_use;

    // A: its 60 bytes are kept while its first attempt is out.
    let mut a = call(put(60));
    assert!(poll_once(a.as_mut()).is_pending());
    assert_eq!(in_use(), 60);
    // B: 60 more would pass the 100-byte cap. Sent whole, not kept, not retried.
    let mut b = call(put(60));
    assert!(poll_once(b.as_mut()).is_pending());
    assert_eq!(in_use(), 60);
    held.answer(1, 503);
    let Poll::Ready(Ok(res)) = poll_once(b.as_mut()) else {
        panic!("B answered")
    };
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let expected = StopReason::BodyNotReplayable(flext_core::NotReplayable::MemoryLimit);
    assert_eq!(RetryInfo::of(&res).unwrap().stop_reason(), Some(expected));
    assert_eq!(held.body(1).len(), 60);
    // A's 503 is retried from the kept bytes; once A has its answer they are given back,
    // before its future is dropped.
    held.answer(0, 503);
    assert!(poll_once(a.as_mut()).is_pending());
    held.answer(2, 200);
    let Poll::Ready(Ok(res)) = poll_once(a.as_mut()) else {
        panic!("A answered")
    };
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(held.body(2), held.body(0));
    assert_eq!(in_use(), 0);
    // C: cancelled while in flight, it gives its bytes back too.
    let mut c = call(put(100));
    assert!(poll_once(c.as_mut()).is_pending());
    assert_eq!(in_use(), 100);
    drop(c);
    assert_eq!(in_use(), 0);
    // D: a request that is never retried keeps nothing.
    let mut req = put(10);
    req.extensions_mut().insert(RetryOverride::Disabled);
    let mut d = call(req);
    assert!(poll_once(d.as_mut()).is_pending());
    assert_eq!(in_use(), 0);

    let m = layer.metrics();
    assert_eq!((m.requests, m.retries, m.replay_cap_hit), (4, 1, 1));
    drop((a, b, d));
    assert_eq!(in_use(), 0);
}
