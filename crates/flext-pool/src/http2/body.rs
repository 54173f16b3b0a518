//! [`RecvBody`]: an HTTP/2 response body.

use std::fmt;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http_body::{Frame, SizeHint};

/// The body of an HTTP/2 response: DATA frames, then trailers. Each chunk's bytes are given
/// back to the stream's and the connection's flow-control windows as soon as it is read, so
/// the server may send more.
pub(crate) struct RecvBody {
    recv: h2::RecvStream,
    data_done: bool,
    /// Known to have ended: at its headers, or once its trailers (or their absence) came.
    /// Kept here so that `is_end_stream` takes no lock on the connection's stream state.
    ended: bool,
    /// Bytes still to come by `content-length`, for the size hint.
    remaining: Option<u64>,
}

impl RecvBody {
    pub(crate) fn new(recv: h2::RecvStream, headers: &HeaderMap) -> RecvBody {
        // A response that ended with its headers (HEAD, 204, 304) has no data, whatever its
        // `content-length` says.
        let ended = recv.is_end_stream();
        let remaining = if ended {
            Some(0)
        } else {
            headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        RecvBody {
            recv,
            data_done: ended,
            ended,
            remaining,
        }
    }

    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Fails only when the stream is already gone; the next read says why.
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    if let Some(n) = &mut self.remaining {
                        *n = n.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                // Unless `content-length` says bytes are missing: then it is a truncation.
                Some(Err(e)) if is_no_error_reset(&e) && self.remaining.is_none_or(|n| n == 0) => {
                    self.finish();
                    return Poll::Ready(None);
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    self.data_done = true;
                    self.remaining = Some(0);
                }
            }
        }
        if self.ended {
            return Poll::Ready(None);
        }
        let trailers = ready!(self.recv.poll_trailers(cx));
        self.finish();
        match trailers {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) if is_no_error_reset(&e) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn finish(&mut self) {
        self.data_done = true;
        self.ended = true;
        self.remaining = Some(0);
    }

    /// Whether the body is known to have ended. It may say `false` at the end of the data
    /// until the next poll finds no trailers (`http_body` allows that): asking h2 would lock
    /// the connection's stream state every time.
    pub(crate) fn is_end_stream(&self) -> bool {
        self.ended
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None if self.data_done => SizeHint::with_exact(0),
            None => SizeHint::default(),
        }
    }
}

impl fmt::Debug for RecvBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvBody")
            .field("stream", &self.recv.stream_id())
            .field("remaining", &self.remaining)
            .finish()
    }
}

/// A server may end a response it has sent with `RST_STREAM(NO_ERROR)` (RFC 9113 §8.1:
/// "stop sending the request"); the client must not discard the response for it. The body
/// ends there, as hyper's does; but where `content-length` says more was due, the reset
/// is an error, so that a truncated body never passes for a whole one.
fn is_no_error_reset(e: &h2::Error) -> bool {
    e.is_reset() && e.reason() == Some(h2::Reason::NO_ERROR)
}
