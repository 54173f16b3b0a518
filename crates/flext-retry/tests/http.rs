//! The retry layer over real HTTP to flext-testkit: what the server counted and received.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{HttpClient, UserBody, empty, full, send};
use flext_core::{BoxError, Deadline, FailureKind, NotReplayable, TransportError};
use flext_retry::StopReason;
use flext_retry::{Backoff, IDEMPOTENCY_KEY, Random, RetryBuilder, RetryInfo, RetryLayer};
use flext_testkit::{ID_HEADER, SCRIPT_HEADER, TestServer};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use http_body_util::channel::Channel;
use tokio::time::Instant;
use tower::Service;

type TestResult = Result<(), BoxError>;

fn request(
    method: Method,
    server: &TestServer,
    id: &str,
    script: &str,
    body: UserBody,
) -> Request<UserBody> {
    Request::builder()
        .method(method)
        .uri(server.uri("/items"))
        .header(ID_HEADER, id)
        .header(SCRIPT_HEADER, script)
        .body(body)
        .expect("a valid request")
}

/// A short constant backoff, so that counting tests run on the real clock quickly.
fn quick() -> RetryBuilder {
    RetryLayer::builder()
        .backoff(Backoff::constant(Duration::from_millis(10)))
        .random(Random::seeded(3))
}

/// A body streamed by a task through a small channel: its size is unknown to the client.
fn streamed(chunks: Vec<Bytes>, trailers: Option<HeaderMap>) -> UserBody {
    let (mut tx, body) = Channel::<Bytes, BoxError>::new(2);
    tokio::spawn(async move {
        for chunk in chunks {
            if tx.send_data(chunk).await.is_err() {
                return;
            }
        }
        if let Some(trailers) = trailers {
            let _ = tx.send_trailers(trailers).await;
        }
    });
    body.boxed()
}

/// `n` bytes of letters, in chunks of 4 KiB.
fn letters(n: usize) -> (Bytes, Vec<Bytes>) {
    let all: Bytes = (0..n)
        .map(|i| b'a' + (i % 26) as u8)
        .collect::<Vec<u8>>()
        .into();
    let chunks = (0..n)
        .step_by(4096)
        .map(|at| all.slice(at..(at + 4096).min(n)))
        .collect();
    (all, chunks)
}

fn echo(body: &Bytes) -> serde_json::Value {
    serde_json::from_slice(body).expect("echo answers JSON")
}

#[tokio::test]
async fn get_503_503_200_is_one_call_and_three_requests() -> TestResult {
    let server = TestServer::builder().http1().start().await?;
    let layer = quick().build()?;
    let req = request(Method::GET, &server, "get", "503,503,200", empty());
    let res = send(&layer, HttpClient::http1(), req).await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(server.stats().requests_for_id("get"), 3);
    let info = RetryInfo::of(&res).expect("retried");
    assert_eq!(info.attempts(), 3);
    assert_eq!(
        info.retries()[1].failure().status(),
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
    Ok(())
}

#[tokio::test]
async fn a_post_on_503_is_sent_once() -> TestResult {
    let server = TestServer::builder().http1().start().await?;
    let layer = quick().build()?;
    let req = request(Method::POST, &server, "post", "503,200", full("order"));
    let res = send(&layer, HttpClient::http1(), req).await?;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.stats().requests_for_id("post"), 1);
    assert_eq!(
        RetryInfo::of(&res).unwrap().stop_reason(),
        Some(StopReason::NotIdempotent)
    );
    Ok(())
}

#[tokio::test]
async fn a_post_with_an_idempotency_key_is_retried() -> TestResult {
    let server = TestServer::builder().http1().start().await?;
    let layer = quick().build()?;
    let mut req = request(Method::POST, &server, "keyed", "503,200", full("order"));
    req.headers_mut()
        .insert(IDEMPOTENCY_KEY, "8e03978e".parse()?);
    let res = send(&layer, HttpClient::http1(), req).await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(server.stats().requests_for_id("keyed"), 2);
    Ok(())
}

#[tokio::test]
async fn a_post_whose_connection_was_refused_is_retried_and_executed_once() -> TestResult {
    let server = Arc::new(TestServer::builder().http1().start().await?);
    server.stop().await;
    // The outage ends as soon as the first attempt has been refused.
    let restarted = Arc::new(AtomicBool::new(false));
    let (srv, http) = (Arc::clone(&server), HttpClient::http1());
    let client = tower::service_fn(move |req| {
        let (mut http, srv, restarted) = (http.clone(), Arc::clone(&srv), Arc::clone(&restarted));
        async move {
            let result = http.call(req).await;
            if let Err(e) = &result
                && TransportError::find(&**e).is_some_and(TransportError::is_connect)
                && !restarted.swap(true, Ordering::SeqCst)
            {
                srv.restart().await?;
            }
            result
        }
    });
    let layer = quick().build()?;
    let req = request(Method::POST, &server, "refused", "200", full("order"));
    let res = send(&layer, client, req).await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(server.stats().requests_for_id("refused"), 1);
    let first = RetryInfo::of(&res).unwrap().retries()[0];
    assert_eq!(first.failure().kind(), FailureKind::Connect);
    assert!(first.failure().is_never_sent());
    Ok(())
}

#[tokio::test]
async fn a_post_whose_stream_was_refused_is_retried_and_executed_once() -> TestResult {
    let server = TestServer::builder().h2c().start().await?;
    let layer = quick().build()?;
    let req = request(Method::POST, &server, "rst", "reset,echo", full("order"));
    let res = send(&layer, HttpClient::h2c(), req).await?;
    assert_eq!(res.status(), StatusCode::OK);
    // Both heads reached the server; the first was refused before processing, the second
    // executed and echoed the body.
    assert_eq!(server.stats().requests_for_id("rst"), 2);
    assert_eq!(echo(res.body())["body"], "order");
    let first = RetryInfo::of(&res).unwrap().retries()[0];
    assert_eq!(first.failure().kind(), FailureKind::NeverSent);
    Ok(())
}

/// On the paused clock with real sockets, tokio may also jump ahead while the runtime waits
/// on I/O; so the elapsed time is asserted to be at least the wait, and the wait the layer
/// chose (in `RetryInfo`) to be exactly what the server asked.
#[tokio::test(start_paused = true)]
async fn retry_after_in_seconds_is_waited_on_the_paused_clock() -> TestResult {
    let server = TestServer::builder().http1().start().await?;
    let layer = RetryLayer::builder()
        .backoff(Backoff::constant(Duration::from_millis(100)))
        .build()?;
    let req = request(Method::GET, &server, "ra", "503;retry-after=2,200", empty());
    let t0 = Instant::now();
    let res = send(&layer, HttpClient::http1(), req).await?;
    assert_eq!(res.status(), StatusCode::OK);
    let record = RetryInfo::of(&res).unwrap().retries()[0];
    assert_eq!(record.retry_after(), Some(Duration::from_secs(2)));
    assert_eq!(record.delay(), Duration::from_secs(2));
    assert!(t0.elapsed() >= Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(layer.metrics().retry_after_honoured, 1);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn retry_after_as_a_date_is_waited_on_the_paused_clock() -> TestResult {
    let server = TestServer::builder().http1().start().await?;
    let layer = RetryLayer::builder()
        .backoff(Backoff::constant(Duration::from_millis(100)))
        .build()?;
    let req = request(
        Method::GET,
        &server,
        "date",
        "503;retry-after-date=3,200",
        empty(),
    );
    let t0 = Instant::now();
    let res = send(&layer, HttpClient::http1(), req).await?;
    assert_eq!(res.status(), StatusCode::OK);
    let record = RetryInfo::of(&res).unwrap().retries()[0];
    // An HTTP-date has whole seconds: 3 s after the server's clock, read a moment later.
    let asked = record.retry_after().expect("honoured");
    assert!(
        asked > Duration::from_secs(2) && asked <= Duration::from_secs(3),
        "{asked:?}"
    );
    assert_eq!(record.delay(), asked);
    assert!(t0.elapsed() >= asked, "{:?}", t0.elapsed());
    Ok(())
}

#[tokio::test]
async fn retry_after_beyond_the_maximum_returns_the_503_at_once() -> TestResult {
    let server = TestServer::builder().http1().start().await?;
    let layer = quick().max_retry_after(Duration::from_secs(60)).build()?;
    let req = request(
        Method::GET,
        &server,
        "long",
        "503;retry-after=120,200",
        empty(),
    );
    let t0 = std::time::Instant::now();
    let res = send(&layer, HttpClient::http1(), req).await?;
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.stats().requests_for_id("long"), 1);
    let reason = RetryInfo::of(&res).unwrap().stop_reason();
    assert_eq!(
        reason,
        Some(StopReason::RetryAfterTooLong(Duration::from_secs(120)))
    );
    Ok(())
}

#[tokio::test]
async fn a_streamed_48k_body_arrives_identical_on_the_third_attempt() -> TestResult {
    let server = TestServer::builder().http1().start().await?;
    let layer = quick().build()?;
    let (all, chunks) = letters(48 * 1024);
    let req = request(
        Method::PUT,
        &server,
        "48k",
        "503,503,echo",
        streamed(chunks, None),
    );
    let res = send(&layer, HttpClient::http1(), req).await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(server.stats().requests_for_id("48k"), 3);
    let echoed = echo(res.body());
    assert_eq!(echoed["body_len"], 48 * 1024);
    assert_eq!(echoed["body"].as_str().map(str::as_bytes), Some(&all[..]));
    assert_eq!(layer.metrics().replay_bytes_in_use, 0);
    Ok(())
}

#[tokio::test]
async fn a_streamed_200k_body_is_sent_once_and_not_retried() -> TestResult {
    let server = TestServer::builder().http1().start().await?;
    let layer = quick().build()?;
    let (_, chunks) = letters(200 * 1024);
    let req = request(
        Method::PUT,
        &server,
        "200k",
        "503,200",
        streamed(chunks, None),
    );
    let res = send(&layer, HttpClient::http1(), req).await?;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.stats().requests_for_id("200k"), 1);
    let reason = RetryInfo::of(&res).unwrap().stop_reason();
    assert_eq!(
        reason,
        Some(StopReason::BodyNotReplayable(NotReplayable::TooLarge))
    );
    assert_eq!(layer.metrics().replay_cap_hit, 1);
    Ok(())
}

#[tokio::test]
async fn a_body_with_trailers_replays_its_trailers() -> TestResult {
    let server = TestServer::builder().h2c().start().await?;
    let layer = quick().build()?;
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "c0ffee".parse()?);
    let chunks = vec![
        Bytes::from_static(b"part one, "),
        Bytes::from_static(b"part two"),
    ];
    let req = request(
        Method::PUT,
        &server,
        "trailers",
        "503,echo",
        streamed(chunks, Some(trailers)),
    );
    let res = send(&layer, HttpClient::h2c(), req).await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(server.stats().requests_for_id("trailers"), 2);
    let echoed = echo(res.body());
    assert_eq!(echoed["body"], "part one, part two");
    assert_eq!(
        echoed["trailers"],
        serde_json::json!([["x-checksum", "c0ffee"]])
    );
    Ok(())
}

#[tokio::test]
async fn with_one_second_left_and_a_two_second_backoff_it_returns_before_the_deadline() -> TestResult
{
    let server = TestServer::builder().http1().start().await?;
    let layer = RetryLayer::builder()
        .backoff(Backoff::constant(Duration::from_secs(2)))
        .build()?;
    let mut req = request(Method::GET, &server, "deadline", "503,200", empty());
    let deadline = Deadline::after(Duration::from_secs(1));
    req.extensions_mut().insert(deadline);
    let res = send(&layer, HttpClient::http1(), req).await?;
    assert!(!deadline.is_expired());
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.stats().requests_for_id("deadline"), 1);
    assert_eq!(
        RetryInfo::of(&res).unwrap().stop_reason(),
        Some(StopReason::Deadline)
    );
    Ok(())
}
