//! Malformed HTTP/1.1 responses: the bytes, and the socket wrapper that lets the connection
//! task take the stream back from hyper to write them.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::script::Malformed;

/// The size of each header of `huge-headers`; 17 of them make a header block over 1 MiB.
const HUGE_HEADER_VALUE: usize = 64 * 1024;
const HUGE_HEADERS: usize = 17;

/// The bytes a malformed-response action writes instead of a response.
pub(crate) fn bytes(malformed: Malformed) -> Bytes {
    match malformed {
        Malformed::Garbage => {
            // Fixed seed: the same bytes every time. Bytes 0x80.. never start an HTTP line.
            let mut rng = fastrand::Rng::with_seed(0x6172_6261_6765);
            let mut out = BytesMut::with_capacity(256);
            for _ in 0..256 {
                out.put_u8(rng.u8(0x80..=0xff));
            }
            out.freeze()
        }
        Malformed::BadStatus => Bytes::from_static(b"HTTP/1.1 abc OK\r\n\r\n"),
        Malformed::HugeHeaders => {
            let mut out = BytesMut::with_capacity(HUGE_HEADERS * (HUGE_HEADER_VALUE + 32) + 64);
            out.put_slice(b"HTTP/1.1 200 OK\r\n");
            for i in 0..HUGE_HEADERS {
                out.put_slice(format!("x-huge-{i}: ").as_bytes());
                out.put_bytes(b'a', HUGE_HEADER_VALUE);
                out.put_slice(b"\r\n");
            }
            out.put_slice(b"content-length: 0\r\n\r\n");
            out.freeze()
        }
        Malformed::Truncated => {
            Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabcdefghij")
        }
        Malformed::WrongLength => Bytes::from_static(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n\
              abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwx",
        ),
    }
}

/// A stream hyper serves through while the connection task can take it back.
///
/// Each read or write locks an uncontended mutex; once [`take`](Self::take)n, reads see
/// end of file and writes fail, and hyper's connection is dropped right after anyway.
#[derive(Debug)]
pub(crate) struct Hijack<IO> {
    inner: Arc<Mutex<Option<IO>>>,
}

impl<IO> Hijack<IO> {
    /// The wrapper for hyper and the handle to take the stream back.
    pub(crate) fn new(io: IO) -> (Self, Arc<Mutex<Option<IO>>>) {
        let inner = Arc::new(Mutex::new(Some(io)));
        (
            Hijack {
                inner: Arc::clone(&inner),
            },
            inner,
        )
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "testkit: socket taken over")
}

impl<IO: AsyncRead + Unpin> AsyncRead for Hijack<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match crate::lock(&self.inner).as_mut() {
            Some(io) => Pin::new(io).poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Hijack<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match crate::lock(&self.inner).as_mut() {
            Some(io) => Pin::new(io).poll_write(cx, buf),
            None => Poll::Ready(Err(gone())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match crate::lock(&self.inner).as_mut() {
            Some(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            None => Poll::Ready(Err(gone())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        crate::lock(&self.inner)
            .as_ref()
            .is_some_and(AsyncWrite::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match crate::lock(&self.inner).as_mut() {
            Some(io) => Pin::new(io).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match crate::lock(&self.inner).as_mut() {
            Some(io) => Pin::new(io).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// How long to wait for the client to hang up after a malformed response.
const LINGER: Duration = Duration::from_secs(1);

/// Writes `bytes` on a stream taken back from hyper, then closes it.
///
/// After the FIN it reads until the client hangs up (or for at most a second), so that the
/// close does not turn into a reset that could discard the bytes before the client reads them.
pub(crate) async fn write_and_close<IO>(io: &Mutex<Option<IO>>, bytes: &[u8])
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let Some(mut io) = crate::lock(io).take() else {
        return;
    };
    // The client may hang up early (a header block too large for it, say): not our problem.
    if let Err(e) = io.write_all(bytes).await {
        tracing::debug!(error = %e, "testkit: writing a malformed response failed");
    }
    if let Err(e) = io.shutdown().await {
        tracing::debug!(error = %e, "testkit: shutdown after a malformed response failed");
        return;
    }
    let mut sink = [0u8; 4096];
    let drain = async { while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {} };
    // Timing out is fine: the client kept the connection, closing it now is all we can do.
    let _ = tokio::time::timeout(LINGER, drain).await;
}
