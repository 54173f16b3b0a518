//! [`Body`]: a response body that gives its connection back to the pool when it ends.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use flext_core::TransportError;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use crate::conn::{Conn, Proto};
use crate::error::{Error, classify_body, classify_h2_body};
use crate::http2::RecvBody;
use crate::metrics::CloseReason;
use crate::origin_pool::Release;

/// The body of a response from the pool.
///
/// It holds its connection (HTTP/1.1) or stream slot (HTTP/2) until it ends: an HTTP/1.1
/// connection returns to the pool when the body has been read to its end, and is closed if
/// the body is dropped before that; an HTTP/2 stream slot is freed at the end or on drop.
/// Read bodies to the end (or drop them) promptly: a body kept unread keeps its connection.
///
/// Errors are [`Error`]s whose transport error says the request was sent.
pub struct Body {
    inner: Inner,
    guard: Option<Arc<dyn Finish>>,
    reuse: bool,
}

/// The body as the connection gives it.
#[derive(Debug)]
pub(crate) enum Inner {
    H1(Incoming),
    H2(RecvBody),
}

impl Inner {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, TransportError>>> {
        match self {
            Inner::H1(incoming) => http_body::Body::poll_frame(Pin::new(incoming), cx)
                .map(|frame| frame.map(|r| r.map_err(classify_body))),
            Inner::H2(recv) => recv
                .poll_frame(cx)
                .map(|frame| frame.map(|r| r.map_err(classify_h2_body))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Inner::H1(incoming) => http_body::Body::is_end_stream(incoming),
            Inner::H2(recv) => recv.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Inner::H1(incoming) => http_body::Body::size_hint(incoming),
            Inner::H2(recv) => recv.size_hint(),
        }
    }
}

/// How a body ended, for the connection it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Done { reuse: bool },
    Failed,
    Dropped,
}

/// A connection (type-erased over the request body type) that a response body gives back.
pub(crate) trait Finish: Send + Sync {
    fn finish(self: Arc<Self>, end: End);

    /// `err`, marked when the server was closing this connection gracefully.
    fn mark(&self, err: TransportError) -> TransportError;
}

impl<B: Send + 'static> Finish for Conn<B>
where
    Conn<B>: Send + Sync,
{
    fn finish(self: Arc<Self>, end: End) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        match self.proto {
            Proto::H1(_) => {
                let how = match end {
                    End::Done { reuse: true } => Release::Reuse,
                    End::Done { reuse: false } => Release::Close(CloseReason::Peer),
                    End::Failed => Release::Close(CloseReason::Error),
                    End::Dropped => Release::Close(CloseReason::Aborted),
                };
                pool.release_h1(self, how);
            }
            Proto::H2(_) => pool.release_h2(&self),
        }
    }

    fn mark(&self, err: TransportError) -> TransportError {
        self.link.mark(err)
    }
}

impl Body {
    /// Wraps a body; `reuse` says whether an HTTP/1.1 connection may carry another request
    /// once this body ends (no `Connection: close`).
    pub(crate) fn new(inner: Inner, guard: Arc<dyn Finish>, reuse: bool) -> Body {
        let mut body = Body {
            inner,
            guard: Some(guard),
            reuse,
        };
        if body.inner.is_end_stream() {
            body.finish(End::Done { reuse });
        }
        body
    }

    fn finish(&mut self, end: End) {
        if let Some(guard) = self.guard.take() {
            guard.finish(end);
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => {
                if this.inner.is_end_stream() {
                    let reuse = this.reuse;
                    this.finish(End::Done { reuse });
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(transport)) => {
                let transport = match &this.guard {
                    Some(guard) => guard.mark(transport),
                    None => transport,
                };
                this.finish(End::Failed);
                Poll::Ready(Some(Err(Error::body(transport))))
            }
            None => {
                let reuse = this.reuse;
                this.finish(End::Done { reuse });
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        if self.guard.is_none() {
            return;
        }
        let end = if self.inner.is_end_stream() {
            End::Done { reuse: self.reuse }
        } else {
            End::Dropped
        };
        self.finish(end);
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body")
            .field("inner", &self.inner)
            .field("holds_connection", &self.guard.is_some())
            .finish()
    }
}
