//! A reused HTTP/1.1 connection that turns out closed when a request is handed to it: the
//! request comes back unsent, and the pool resends it once on a new connection.
//!
//! The race is made deterministic with an in-memory connection whose read side reports
//! end-of-file from a chosen moment on without waking anyone, the way a server's FIN can
//! arrive while the client's connection task sleeps.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use flext_core::Sent;
use flext_pool::{Config, Pool};
use http::{StatusCode, Uri};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream, ReadBuf,
};
use tower::Service;

use crate::common::{fetch, get};

/// The client's side of an in-memory connection; `eof` makes reads end at once.
struct Io {
    inner: DuplexStream,
    eof: Arc<AtomicBool>,
}

impl AsyncRead for Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.eof.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

struct Conn(TokioIo<Io>);

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Connects to in-memory servers that answer every request `200 ok`; remembers each
/// connection's `eof` switch and counts the requests each server read.
#[derive(Clone, Default)]
struct Memory {
    eofs: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
    served: Arc<Mutex<Vec<Arc<AtomicUsize>>>>,
}

impl Service<Uri> for Memory {
    type Response = Conn;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Conn>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let eof = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        self.eofs.lock().unwrap().push(eof.clone());
        self.served.lock().unwrap().push(served.clone());
        tokio::spawn(serve(server, served));
        Box::pin(async move { Ok(Conn(TokioIo::new(Io { inner: client, eof }))) })
    }
}

async fn serve(stream: DuplexStream, served: Arc<AtomicUsize>) {
    let mut stream = BufReader::new(stream);
    loop {
        // A request head, no body (GETs only).
        let mut line = String::new();
        loop {
            line.clear();
            match stream.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => {}
            }
        }
        served.fetch_add(1, Ordering::SeqCst);
        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        if stream.get_mut().write_all(reply).await.is_err() {
            return;
        }
    }
}

fn counts(m: &Memory) -> Vec<usize> {
    m.served
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.load(Ordering::SeqCst))
        .collect()
}

#[tokio::test]
async fn an_unsent_request_is_resent_once_on_a_new_connection() {
    let memory = Memory::default();
    let pool: Pool<Memory, http_body_util::Empty<bytes::Bytes>> =
        Pool::new(memory.clone(), Config::default());
    let uri: Uri = "http://memory.test/".parse().unwrap();
    fetch(&pool, get(uri.clone())).await.unwrap();
    // The server's FIN is "on the wire": the idle connection's task has not seen it.
    memory.eofs.lock().unwrap()[0].store(true, Ordering::SeqCst);
    let (resp, body) = fetch(&pool, get(uri.clone())).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body, "ok");
    // The first server never saw the second request; the second server did.
    assert_eq!(counts(&memory), [1, 1]);
    let origin = flext_core::Origin::from_uri(&uri).unwrap();
    let m = pool.origin_metrics(&origin).unwrap();
    assert_eq!(m.counters.never_sent_retries, 1);
}

#[tokio::test]
async fn without_the_resend_the_error_says_never_sent() {
    let memory = Memory::default();
    let config = Config::builder()
        .retry_never_sent_once(false)
        .build()
        .unwrap();
    let pool: Pool<Memory, http_body_util::Empty<bytes::Bytes>> = Pool::new(memory.clone(), config);
    let uri: Uri = "http://memory.test/".parse().unwrap();
    fetch(&pool, get(uri.clone())).await.unwrap();
    memory.eofs.lock().unwrap()[0].store(true, Ordering::SeqCst);
    let err = fetch(&pool, get(uri)).await.unwrap_err();
    assert!(err.is_reset(), "{err:?}");
    assert_eq!(err.sent(), Sent::No);
    assert_eq!(counts(&memory), [1]);
}
