//! The HTTP/2 wire as flext-pool drives h2, over real sockets to an h2 server that checks
//! what arrives: request bodies under flow control and their trailers, an answer that comes
//! before the body ends, a body that fails, headers HTTP/2 forbids, response trailers, a
//! `HEAD` answer, the adaptive window, and a response dropped at the server's stream limit.

#[allow(dead_code)]
#[path = "pool/common.rs"]
mod common;

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use flext_core::{Sent, TransportErrorKind};
use flext_pool::{Config, Connector, Pool};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tower::ServiceExt;

use common::{h2_server, h2_server_with, until};

/// A request body made of frames given up front, then (optionally) one that never comes.
struct Frames {
    frames: VecDeque<Result<Frame<Bytes>, io::Error>>,
    then_wait: bool,
    dropped: Arc<AtomicBool>,
}

impl Frames {
    fn new(frames: Vec<Result<Frame<Bytes>, io::Error>>) -> Frames {
        Frames {
            frames: frames.into(),
            then_wait: false,
            dropped: Arc::new(AtomicBool::new(false)),
        }
    }

    fn data(chunks: usize, len: usize) -> Vec<Result<Frame<Bytes>, io::Error>> {
        (0..chunks)
            .map(|i| Ok(Frame::data(Bytes::from(vec![b'a' + (i % 26) as u8; len]))))
            .collect()
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.frames.pop_front() {
            Some(frame) => Poll::Ready(Some(frame)),
            // Never woken: the body waits for ever.
            None if self.then_wait => Poll::Pending,
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && !self.then_wait
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for Frames {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

type Client = Pool<Connector, Frames>;

fn client() -> Client {
    let config = Config::builder()
        .http2_prior_knowledge(true)
        .build()
        .unwrap();
    Pool::http_with(config)
}

fn request(method: Method, uri: &http::Uri, body: Frames) -> Request<Frames> {
    Request::builder()
        .method(method)
        .uri(uri.clone())
        .body(body)
        .unwrap()
}

/// Reads a request body on the server, giving its window back as it goes.
async fn read_body(body: &mut h2::RecvStream) -> Result<(Vec<u8>, Option<HeaderMap>), h2::Error> {
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        body.flow_control().release_capacity(chunk.len())?;
        data.extend_from_slice(&chunk);
    }
    Ok((data, body.trailers().await?))
}

fn respond(
    respond: &mut h2::server::SendResponse<Bytes>,
    status: StatusCode,
    body: &str,
) -> Result<(), h2::Error> {
    let response = Response::builder().status(status).body(()).unwrap();
    let mut stream = respond.send_response(response, false)?;
    stream.send_data(Bytes::copy_from_slice(body.as_bytes()), true)
}

#[tokio::test]
async fn a_body_larger_than_the_servers_window_arrives_whole_with_its_trailers() {
    // 16 KiB per stream: the 640 KiB body needs forty window updates.
    let mut builder = h2::server::Builder::new();
    builder.initial_window_size(16 * 1024);
    let uri = h2_server_with(builder, |mut conn| async move {
        while let Some(Ok((req, mut tx))) = conn.accept().await {
            tokio::spawn(async move {
                let mut body = req.into_body();
                let (data, trailers) = read_body(&mut body).await.unwrap();
                let sum = trailers
                    .and_then(|t| t.get("x-sum").cloned())
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                let ok = data
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == b'a' + ((i / (16 * 1024)) % 26) as u8);
                respond(
                    &mut tx,
                    StatusCode::OK,
                    &format!("{} {sum} {ok}", data.len()),
                )
                .unwrap();
            });
        }
    })
    .await;
    let mut frames = Frames::data(40, 16 * 1024);
    let mut trailers = HeaderMap::new();
    trailers.insert("x-sum", HeaderValue::from_static("forty"));
    frames.push(Ok(Frame::trailers(trailers)));
    let resp = client()
        .oneshot(request(Method::POST, &uri, Frames::new(frames)))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&text[..], b"655360 forty true");
}

#[tokio::test]
async fn an_answer_before_the_body_ends_is_returned_and_the_body_stops_when_the_server_resets() {
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let go_rx = Arc::new(std::sync::Mutex::new(Some(go_rx)));
    let uri = h2_server(move |mut conn| {
        let go_rx = go_rx.clone();
        async move {
            while let Some(Ok((req, mut tx))) = conn.accept().await {
                let go = go_rx.lock().unwrap().take();
                // Reads the first chunk only and answers 413; once the client has read the
                // answer, tells it to stop sending (RFC 9113 §8.1: RST_STREAM NO_ERROR).
                tokio::spawn(async move {
                    let mut body = req.into_body();
                    let _ = body.data().await;
                    respond(&mut tx, StatusCode::PAYLOAD_TOO_LARGE, "too large").unwrap();
                    if let Some(go) = go {
                        let _ = go.await;
                    }
                    tx.send_reset(h2::Reason::NO_ERROR);
                    // Held until the reset is out.
                    std::future::pending::<()>().await;
                });
            }
        }
    })
    .await;
    let mut body = Frames::new(Frames::data(1, 1024));
    body.then_wait = true;
    let dropped = body.dropped.clone();
    let resp = client()
        .oneshot(request(Method::PUT, &uri, body))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&text[..], b"too large");
    // The rest of the body, which would wait for ever, went on in a task of its own; it
    // is let go once the server resets the stream.
    assert!(!dropped.load(Ordering::SeqCst));
    go_tx.send(()).unwrap();
    until(|| dropped.load(Ordering::SeqCst)).await;
}

#[tokio::test]
async fn a_request_body_that_fails_fails_the_request_and_resets_the_stream() {
    let (seen_tx, seen_rx) = oneshot::channel();
    let seen_tx = Arc::new(std::sync::Mutex::new(Some(seen_tx)));
    let uri = h2_server(move |mut conn| {
        let seen_tx = seen_tx.clone();
        async move {
            while let Some(Ok((req, tx))) = conn.accept().await {
                let seen_tx = seen_tx.clone();
                tokio::spawn(async move {
                    let _held = tx;
                    let mut body = req.into_body();
                    let result = read_body(&mut body).await;
                    let reason = result.err().and_then(|e| e.reason());
                    if let Some(tx) = seen_tx.lock().unwrap().take() {
                        let _ = tx.send(reason);
                    }
                });
            }
        }
    })
    .await;
    let mut frames = Frames::data(2, 1024);
    frames.push(Err(io::Error::other("disk gone")));
    let err = client()
        .oneshot(request(Method::POST, &uri, Frames::new(frames)))
        .await
        .unwrap_err();
    assert_eq!(err.transport().kind(), TransportErrorKind::Other, "{err:?}");
    assert_eq!(err.sent(), Sent::Maybe);
    let text = format!("{:?}", err);
    assert!(text.contains("disk gone"), "{text}");
    assert_eq!(seen_rx.await.unwrap(), Some(h2::Reason::CANCEL));
}

#[tokio::test]
async fn headers_http2_forbids_are_dropped_and_the_request_goes_out() {
    let uri = h2_server(|mut conn| async move {
        while let Some(Ok((req, mut tx))) = conn.accept().await {
            let names: Vec<&str> = req.headers().keys().map(|k| k.as_str()).collect();
            respond(&mut tx, StatusCode::OK, &names.join(",")).unwrap();
        }
    })
    .await;
    let req = Request::get(uri.clone())
        .header("connection", "keep-alive, x-hop")
        .header("keep-alive", "timeout=5")
        .header("x-hop", "1")
        .header("te", "gzip")
        .header("upgrade", "h2c")
        .header("x-kept", "1")
        .body(Frames::new(Vec::new()))
        .unwrap();
    let resp = client().oneshot(req).await.unwrap();
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&text[..], b"x-kept");
}

#[tokio::test]
async fn response_trailers_follow_the_data() {
    let uri = h2_server(|mut conn| async move {
        while let Some(Ok((_req, mut tx))) = conn.accept().await {
            let mut stream = tx.send_response(Response::new(()), false).unwrap();
            stream.send_data(Bytes::from_static(b"ok"), false).unwrap();
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            stream.send_trailers(trailers).unwrap();
        }
    })
    .await;
    let resp = client()
        .oneshot(request(Method::GET, &uri, Frames::new(Vec::new())))
        .await
        .unwrap();
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap();
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert_eq!(&collected.to_bytes()[..], b"ok");
}

#[tokio::test]
async fn an_answer_to_head_has_an_empty_body_whatever_its_content_length() {
    let uri = h2_server(|mut conn| async move {
        while let Some(Ok((_req, mut tx))) = conn.accept().await {
            let response = Response::builder()
                .header("content-length", "1000")
                .body(())
                .unwrap();
            tx.send_response(response, true).unwrap();
        }
    })
    .await;
    let resp = client()
        .oneshot(request(Method::HEAD, &uri, Frames::new(Vec::new())))
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-length"], "1000");
    let body = resp.into_body();
    assert!(body.is_end_stream());
    assert_eq!(body.size_hint().exact(), Some(0));
    assert!(body.collect().await.unwrap().to_bytes().is_empty());
}

/// A server that sends 8 MiB and records the most window the client ever gave it at once.
async fn download_server(most: Arc<AtomicU32>) -> http::Uri {
    // h2 grants a sender no more than its send buffer (400 KiB by default) at once.
    let mut builder = h2::server::Builder::new();
    builder.max_send_buffer_size(32 * 1024 * 1024);
    h2_server_with(builder, move |mut conn| {
        let most = most.clone();
        async move {
            while let Some(Ok((_req, mut tx))) = conn.accept().await {
                let most = most.clone();
                tokio::spawn(async move {
                    let mut stream = tx.send_response(Response::new(()), false).unwrap();
                    let mut left = 8 * 1024 * 1024usize;
                    while left > 0 {
                        stream.reserve_capacity(left);
                        let granted = std::future::poll_fn(|cx| stream.poll_capacity(cx))
                            .await
                            .unwrap()
                            .unwrap();
                        most.fetch_max(granted as u32, Ordering::SeqCst);
                        let n = granted.min(left);
                        left -= n;
                        stream
                            .send_data(Bytes::from(vec![0u8; n]), left == 0)
                            .unwrap();
                    }
                });
            }
        }
    })
    .await
}

async fn download(config: Config, uri: http::Uri) -> usize {
    let pool: Pool<Connector, Frames> = Pool::http_with(config);
    let resp = pool
        .oneshot(request(Method::GET, &uri, Frames::new(Vec::new())))
        .await
        .unwrap();
    resp.into_body().collect().await.unwrap().to_bytes().len()
}

/// A TCP relay in front of `to` that delivers every chunk `delay` after it read it, in
/// order: a link with a round trip of twice `delay`.
async fn slow_link(to: http::Uri, delay: Duration) -> http::Uri {
    let target = to.authority().unwrap().to_string();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(&target).await.unwrap();
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(delayed(client_read, server_write, delay));
            tokio::spawn(delayed(server_read, client_write, delay));
        }
    });
    format!("http://{addr}/").parse().unwrap()
}

async fn delayed(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    tokio::spawn(async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf).await {
        if tx
            .send((Instant::now() + delay, buf[..n].to_vec()))
            .is_err()
        {
            return;
        }
    }
}

// The clock is paused so that the link's delay is exact, whatever the machine's load: the
// round trips the driver measures are the link's 40 ms.
#[tokio::test(start_paused = true)]
async fn the_adaptive_window_grows_past_the_spec_default_on_a_slow_link() {
    let most = Arc::new(AtomicU32::new(0));
    let uri = slow_link(
        download_server(most.clone()).await,
        Duration::from_millis(20),
    )
    .await;
    // No keep-alive: a paused clock jumps ahead while the sockets are read, and would fire
    // its timer.
    let config = Config::builder()
        .http2_prior_knowledge(true)
        .http2_keep_alive_interval(None)
        .build()
        .unwrap();
    let start = Instant::now();
    assert_eq!(download(config, uri).await, 8 * 1024 * 1024);
    // Starts at RFC 9113's 65,535 bytes and doubles while the round trips show it limits:
    // 8 MiB at 64 KiB per 40 ms round trip would take 5 s.
    let most = most.load(Ordering::SeqCst);
    assert!(most >= 1024 * 1024, "largest window granted: {most}");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn without_the_adaptive_window_the_stream_window_is_two_mib_from_the_start() {
    let most = Arc::new(AtomicU32::new(0));
    let config = Config::builder()
        .http2_prior_knowledge(true)
        .http2_adaptive_window(false)
        .build()
        .unwrap();
    let uri = download_server(most.clone()).await;
    assert_eq!(download(config, uri).await, 8 * 1024 * 1024);
    let most = most.load(Ordering::SeqCst);
    assert!(
        most > 65_535 && most <= 2 * 1024 * 1024,
        "largest window granted: {most}"
    );
}

/// A server that sends `data` (with `content-length` when given) and, once the client says
/// it has read it, resets the stream with `NO_ERROR` instead of ending it.
async fn reset_after(
    data: &'static [u8],
    content_length: Option<usize>,
) -> (http::Uri, oneshot::Sender<()>) {
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let go_rx = Arc::new(std::sync::Mutex::new(Some(go_rx)));
    let uri = h2_server(move |mut conn| {
        let go_rx = go_rx.clone();
        async move {
            while let Some(Ok((_req, mut tx))) = conn.accept().await {
                let go = go_rx.lock().unwrap().take();
                let mut response = Response::builder();
                if let Some(n) = content_length {
                    response = response.header("content-length", n);
                }
                let mut stream = tx.send_response(response.body(()).unwrap(), false).unwrap();
                stream.send_data(Bytes::from_static(data), false).unwrap();
                tokio::spawn(async move {
                    if let Some(go) = go {
                        let _ = go.await;
                    }
                    stream.send_reset(h2::Reason::NO_ERROR);
                    std::future::pending::<()>().await;
                });
            }
        }
    })
    .await;
    (uri, go_tx)
}

/// Fetches from a [`reset_after`] server: the first frame's data, then (once the server was
/// told to reset) what the next poll of the body gives.
async fn read_then_reset(
    data: &'static [u8],
    content_length: Option<usize>,
) -> (Bytes, Option<Result<Frame<Bytes>, flext_pool::Error>>) {
    let (uri, go) = reset_after(data, content_length).await;
    let resp = client()
        .oneshot(request(Method::GET, &uri, Frames::new(Vec::new())))
        .await
        .unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    go.send(()).unwrap();
    (first, body.frame().await)
}

#[tokio::test]
async fn a_body_the_server_ends_with_a_no_error_reset_ends_cleanly() {
    let (first, next) = read_then_reset(b"complete", None).await;
    assert_eq!(&first[..], b"complete");
    assert!(next.is_none());
}

#[tokio::test]
async fn a_no_error_reset_before_the_content_length_is_met_is_a_body_error() {
    let (first, next) = read_then_reset(b"part", Some(100)).await;
    assert_eq!(&first[..], b"part");
    let err = next.unwrap().unwrap_err();
    assert!(err.is_reset(), "{err:?}");
    assert_eq!(err.sent(), Sent::Yes);
}

#[tokio::test]
async fn connect_over_http2_is_refused_before_anything_is_sent() {
    let streams = Arc::new(AtomicU32::new(0));
    let seen = streams.clone();
    let uri = h2_server(move |mut conn| {
        let seen = seen.clone();
        async move {
            while let Some(Ok(_)) = conn.accept().await {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }
    })
    .await;
    let err = client()
        .oneshot(request(Method::CONNECT, &uri, Frames::new(Vec::new())))
        .await
        .unwrap_err();
    assert_eq!(err.transport().kind(), TransportErrorKind::Other, "{err:?}");
    assert_eq!(err.sent(), Sent::No);
    assert!(format!("{err:?}").contains("CONNECT"), "{err:?}");
    assert_eq!(streams.load(Ordering::SeqCst), 0);
}

/// A stream that took the server's last free stream slot is not kept past its request (h2
/// keeps such a stream in the sender that opened it until that sender is polled again): its
/// response, dropped half read, resets the stream, and the next request, from another thread,
/// gets the slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_dropped_at_the_stream_limit_resets_its_stream_and_frees_the_slot() {
    let (reset_tx, reset_rx) = oneshot::channel::<()>();
    let reset_tx = Arc::new(std::sync::Mutex::new(Some(reset_tx)));
    let mut builder = h2::server::Builder::new();
    builder.max_concurrent_streams(1);
    let uri = h2_server_with(builder, move |mut conn| {
        let reset_tx = reset_tx.clone();
        async move {
            while let Some(Ok((req, mut tx))) = conn.accept().await {
                let reset_tx = reset_tx.clone();
                tokio::spawn(async move {
                    if req.uri().path() != "/big" {
                        return respond(&mut tx, StatusCode::OK, "ok");
                    }
                    // One chunk, then nothing until the client resets the stream.
                    let response = Response::new(());
                    let mut stream = tx.send_response(response, false)?;
                    stream.send_data(Bytes::from(vec![b'x'; 1024]), false)?;
                    let reason = std::future::poll_fn(|cx| stream.poll_reset(cx)).await?;
                    if let Some(reset_tx) = reset_tx.lock().unwrap().take() {
                        let _ = reset_tx.send(());
                    }
                    tracing::debug!(?reason, "reset");
                    Ok(())
                });
            }
        }
    })
    .await;
    let pool = client();
    let big: http::Uri = format!("{uri}big").parse().unwrap();
    let small: http::Uri = format!("{uri}small").parse().unwrap();

    let resp = pool
        .clone()
        .oneshot(request(Method::GET, &big, Frames::new(vec![])))
        .await
        .unwrap();
    let mut body = resp.into_body();
    assert!(body.frame().await.is_some(), "the first chunk arrives");
    drop(body);
    tokio::time::timeout(Duration::from_secs(10), reset_rx)
        .await
        .expect("the server saw no reset of the dropped response's stream")
        .unwrap();

    let handle = tokio::runtime::Handle::current();
    let next = tokio::task::spawn_blocking(move || {
        handle.block_on(tokio::time::timeout(
            Duration::from_secs(10),
            pool.oneshot(request(Method::GET, &small, Frames::new(vec![]))),
        ))
    })
    .await
    .unwrap()
    .expect("the next request waited for a stream slot that was never freed")
    .unwrap();
    assert_eq!(next.status(), StatusCode::OK);
}
