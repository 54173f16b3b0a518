//! The `Retry` service and its future as a caller and a stack see them: the shortcuts, access
//! to the inner service, shared counters, `poll_ready` errors, the future's states, and the
//! error and stop reasons a caller reads.

mod scripted;

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use flext_core::{BoxError, NotReplayable, TransportError};
use flext_retry::{Backoff, Retry, RetryError, RetryInfo, RetryLayer, StopReason};
use http::{Response, StatusCode};
use http_body_util::Full;
use scripted::{Req, Server, Step, get, send};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

#[tokio::test(start_paused = true)]
async fn retry_new_retries_with_the_default_jittered_backoff() {
    let server = Server::new(&[Step::Status(503), Step::Status(503), Step::Status(200)]);
    let mut svc = Retry::new(server.clone());
    let t0 = Instant::now();
    let res = svc.ready().await.unwrap().call(get()).await.unwrap();
    assert_eq!((res.status(), server.calls()), (StatusCode::OK, 3));
    let info = RetryInfo::of(&res).unwrap();
    // Full jitter over 100 ms doubling: each wait within its ceiling, all of it slept.
    for (n, retry) in info.retries().iter().enumerate() {
        assert!(
            retry.delay() <= Duration::from_millis(100 << n),
            "{retry:?}"
        );
    }
    // tokio's timer rounds each sleep up to the next millisecond.
    let slept = t0.elapsed();
    assert!(slept >= info.backoff() && slept <= info.backoff() + Duration::from_millis(2));
    let m = svc.metrics();
    assert_eq!((m.requests, m.attempts, m.retries), (1, 3, 2));
    // The floor of 100 retries, less 2, plus a fifth of the one request.
    assert_eq!(m.budget_available, 98);
}

#[tokio::test(start_paused = true)]
async fn the_layer_shortcut_gives_the_defaults_four_attempts() {
    let server = Server::always(502);
    let mut svc = Retry::<Server>::layer().layer(server.clone());
    let res = svc.ready().await.unwrap().call(get()).await.unwrap();
    assert_eq!(server.calls(), 4);
    assert_eq!(
        RetryInfo::of(&res).unwrap().stop_reason(),
        Some(StopReason::MaxRetries)
    );
    assert_eq!(server.attempts(), [0, 1, 2, 3]);
}

/// An inner service with a name it answers in a header.
#[derive(Debug, Clone)]
struct Named {
    name: &'static str,
}

impl Service<Req> for Named {
    type Response = Response<Full<Bytes>>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Req) -> Self::Future {
        let mut res = Response::new(Full::default());
        res.headers_mut()
            .insert("x-name", self.name.parse().unwrap());
        std::future::ready(Ok(res))
    }
}

#[tokio::test]
async fn the_inner_service_can_be_read_changed_and_taken_back() {
    let layer = RetryLayer::builder().max_retries(2).build().unwrap();
    let mut svc = layer.layer(Named { name: "first" });
    assert_eq!(svc.get_ref().name, "first");
    svc.get_mut().name = "second";
    let res = svc.ready().await.unwrap().call(get()).await.unwrap();
    assert_eq!(res.headers()["x-name"], "second");
    // Debug shows the inner service and the settings.
    let text = format!("{svc:?}");
    assert!(
        text.starts_with(
            "Retry { inner: Named { name: \"second\" }, config: RetryConfig { max_retries: 2,"
        ),
        "{text}"
    );
    assert_eq!(svc.into_inner().name, "second");
}

#[tokio::test]
async fn clones_of_a_service_share_the_layers_counters() {
    let layer = RetryLayer::new();
    let svc = layer.layer(Server::always(200));
    let mut clone = svc.clone();
    for _ in 0..3 {
        clone.ready().await.unwrap().call(get()).await.unwrap();
    }
    assert_eq!(svc.metrics().requests, 3);
    assert_eq!(layer.metrics(), svc.metrics());
}

/// `poll_ready` fails once `ready` is false, as a closed pool does.
#[derive(Clone)]
struct Closable {
    server: Server,
    ready: Arc<AtomicBool>,
    pending: Arc<AtomicBool>,
}

impl Service<Req> for Closable {
    type Response = Response<Full<Bytes>>;
    type Error = BoxError;
    type Future = <Server as Service<Req>>::Future;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.pending.load(Ordering::SeqCst) {
            Poll::Pending
        } else if self.ready.load(Ordering::SeqCst) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Ready(Err(TransportError::new(
                flext_core::TransportErrorKind::Acquire,
                flext_core::Sent::No,
                Some("pool closed".into()),
            )
            .into()))
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.server.call(req)
    }
}

fn closable(steps: &[Step]) -> (Closable, Arc<AtomicBool>, Arc<AtomicBool>) {
    let ready = Arc::new(AtomicBool::new(true));
    let pending = Arc::new(AtomicBool::new(false));
    let svc = Closable {
        server: Server::new(steps),
        ready: Arc::clone(&ready),
        pending: Arc::clone(&pending),
    };
    (svc, ready, pending)
}

#[tokio::test]
async fn a_poll_ready_error_comes_back_as_a_retry_error_of_one_attempt() {
    let (inner, ready, _) = closable(&[Step::Status(200)]);
    ready.store(false, Ordering::SeqCst);
    let mut svc = RetryLayer::new().layer(inner);
    let Err(err) = svc.ready().await else {
        panic!("poll_ready failed")
    };
    assert_eq!(err.to_string(), "request failed after 1 attempt");
    assert_eq!(err.stop_reason(), None);
    assert!(TransportError::find(&err).unwrap().is_acquire());
}

#[tokio::test(start_paused = true)]
async fn a_poll_ready_error_before_a_retry_ends_the_request_with_that_error() {
    let (inner, ready, _) = closable(&[Step::Status(503), Step::Status(200)]);
    let server = inner.server.clone();
    let layer = RetryLayer::builder()
        .backoff(Backoff::constant(Duration::from_millis(100)))
        .build()
        .unwrap();
    let mut svc = layer.layer(inner);
    let future = svc.ready().await.unwrap().call(get());
    ready.store(false, Ordering::SeqCst);
    let err = future.await.unwrap_err();
    // Sent once; the 503 it was retrying is on record, and no stop reason: it did not give up.
    assert_eq!(server.calls(), 1);
    assert_eq!(err.stop_reason(), None);
    let retries = err.info().retries();
    assert_eq!(retries.len(), 1);
    assert_eq!(
        retries[0].failure().status(),
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
    let inner = err.into_inner();
    assert!(TransportError::find(&*inner).unwrap().is_acquire());
}

/// `RetryInfo::attempts` is "attempts made, the first included", and the error reads "request
/// failed after N attempts". Regression: when `poll_ready` failed before a retry, the retry
/// was decided (and recorded) but never sent, yet counted: the server saw one attempt, the
/// error said two.
#[tokio::test(start_paused = true)]
async fn a_retry_that_never_got_a_ready_service_is_not_counted_as_an_attempt() {
    let (inner, ready, _) = closable(&[Step::Status(503), Step::Status(200)]);
    let server = inner.server.clone();
    let mut svc = RetryLayer::new().layer(inner);
    let future = svc.ready().await.unwrap().call(get());
    ready.store(false, Ordering::SeqCst);
    let err = future.await.unwrap_err();
    assert_eq!(server.calls(), 1);
    assert_eq!(err.info().attempts(), server.calls());
    assert_eq!(err.to_string(), "request failed after 1 attempt");
}

#[tokio::test(start_paused = true)]
async fn the_future_debug_says_where_a_request_is() {
    let (inner, _, pending) = closable(&[Step::Status(503), Step::Status(200)]);
    let layer = RetryLayer::builder()
        .backoff(Backoff::constant(Duration::from_millis(100)))
        .build()
        .unwrap();
    let mut svc = layer.layer(inner);
    let mut future = pin!(svc.ready().await.unwrap().call(get()));
    let state = |f: &dyn std::fmt::Debug| format!("{f:?}");
    assert_eq!(
        state(&future),
        "ResponseFuture { state: \"called\", attempts: 1, .. }"
    );
    assert!(
        poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx)))
            .await
            .is_pending()
    );
    // The 503 came back: waiting 100 ms before the second attempt.
    assert_eq!(
        state(&future),
        "ResponseFuture { state: \"backoff\", attempts: 2, .. }"
    );
    // The wait is over, but the inner service is not ready.
    pending.store(true, Ordering::SeqCst);
    tokio::time::advance(Duration::from_millis(100)).await;
    assert!(
        poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx)))
            .await
            .is_pending()
    );
    assert_eq!(
        state(&future),
        "ResponseFuture { state: \"ready\", attempts: 2, .. }"
    );
    pending.store(false, Ordering::SeqCst);
    let res = future.as_mut().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(state(&future).starts_with("ResponseFuture { state: \"done\""));
}

#[tokio::test]
#[should_panic(expected = "retry ResponseFuture polled after completion")]
async fn polling_a_finished_future_again_panics() {
    let mut svc = RetryLayer::new().layer(Server::always(200));
    let mut future = pin!(svc.ready().await.unwrap().call(get()));
    let _ = future.as_mut().await;
    let _ = poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
}

#[tokio::test]
async fn a_retry_error_hands_back_the_inner_error_and_what_happened() {
    let layer = RetryLayer::new();
    let server = Server::new(&[Step::Fail("tls alert: bad certificate")]);
    let err = send(&layer, &server, get()).await.unwrap_err();
    assert_eq!(err.inner().to_string(), "tls alert: bad certificate");
    assert_eq!(
        format!("{err:?}"),
        "RetryError { inner: \"tls alert: bad certificate\", attempts: 1, stop_reason: Some(NotRetryable) }"
    );
    assert!(!err.is_budget_exhausted());
    let (inner, info): (BoxError, RetryInfo) = err.into_parts();
    assert_eq!(inner.to_string(), "tls alert: bad certificate");
    assert_eq!(
        (info.attempts(), info.stop_reason()),
        (1, Some(StopReason::NotRetryable))
    );
    assert_eq!(RetryInfo::default().attempts(), 1);
}

/// Labels are stable (metrics, logs); messages are lower-case without trailing punctuation.
#[test]
fn every_stop_reason_has_a_label_and_a_message() {
    let cases = [
        (
            StopReason::Disabled,
            "disabled",
            "retries disabled for this request",
        ),
        (
            StopReason::NotRetryable,
            "not_retryable",
            "failure not retryable",
        ),
        (
            StopReason::NotIdempotent,
            "not_idempotent",
            "request not idempotent",
        ),
        (StopReason::MaxRetries, "max_retries", "retry limit reached"),
        (
            StopReason::BudgetExhausted,
            "budget_exhausted",
            "retry budget exhausted",
        ),
        (
            StopReason::BodyNotReplayable(NotReplayable::MemoryLimit),
            "body_not_replayable",
            "body not replayable: replay memory of the requests in flight exhausted",
        ),
        (StopReason::Deadline, "deadline", "deadline too close"),
        (
            StopReason::RetryAfterTooLong(Duration::from_secs(120)),
            "retry_after_too_long",
            "server asked to retry after 120 s",
        ),
        (
            StopReason::Rejected,
            "rejected",
            "refused before sending, not waited out",
        ),
    ];
    for (reason, label, message) in cases {
        assert_eq!(reason.as_str(), label);
        assert_eq!(reason.to_string(), message);
        assert_eq!(message, message.to_lowercase());
        assert!(!message.ends_with(['.', '!']));
    }
}

#[tokio::test(start_paused = true)]
async fn a_refused_error_is_retried_and_the_retry_error_counts_every_attempt() {
    let server = Server::new(&[Step::Refused]);
    let layer = RetryLayer::builder()
        .backoff(Backoff::none())
        .build()
        .unwrap();
    let err: RetryError = send(&layer, &server, get()).await.unwrap_err();
    assert_eq!(server.calls(), 4);
    assert_eq!(
        err.to_string(),
        "request failed after 4 attempts (retry limit reached)"
    );
    assert_eq!(err.info().attempts(), server.calls());
}
