//! The response body: whole, or streamed in chunks with a delay between them.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Sleep, sleep};

use crate::conn::InFlight;

pin_project! {
    /// A response body of known bytes, sent in `chunks` frames with `delay` between frames.
    ///
    /// It holds the request's [`InFlight`] guard, so the connection counts as busy until the
    /// body is sent or dropped.
    #[derive(Debug)]
    pub(crate) struct TestBody {
        data: Bytes,
        chunks: u32,
        // The first `longer` chunks carry one byte more than `chunk_len`.
        chunk_len: usize,
        longer: usize,
        delay: Duration,
        streamed: bool,
        #[pin]
        state: State,
        in_flight: Option<InFlight>,
    }
}

pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State {
        Ready,
        Waiting { #[pin] sleep: Sleep },
    }
}

impl TestBody {
    /// `data` in one frame.
    pub(crate) fn full(data: impl Into<Bytes>, in_flight: Option<InFlight>) -> Self {
        Self::chunked(data.into(), 1, Duration::ZERO, in_flight)
    }

    /// `data` in `chunks` frames (fewer if there are fewer bytes) with `delay` between them.
    pub(crate) fn chunked(
        data: Bytes,
        chunks: u32,
        delay: Duration,
        in_flight: Option<InFlight>,
    ) -> Self {
        let len = data.len();
        // One chunk per byte at most, so that no frame is empty.
        let chunks = usize::try_from(chunks).unwrap_or(usize::MAX).min(len);
        let chunk_len = len.checked_div(chunks).unwrap_or(0);
        let longer = len.checked_rem(chunks).unwrap_or(0);
        TestBody {
            data,
            chunks: u32::try_from(chunks).unwrap_or(u32::MAX),
            chunk_len,
            longer,
            delay,
            streamed: chunks > 1,
            state: State::Ready,
            in_flight,
        }
    }
}

/// `len` bytes of a fixed pattern, `abc...z` repeated.
pub(crate) fn pattern(len: usize) -> Bytes {
    (0..len)
        .map(|i| b'a' + u8::try_from(i % 26).unwrap_or(0))
        .collect::<Vec<u8>>()
        .into()
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let mut this = self.project();
        if *this.chunks == 0 {
            this.in_flight.take();
            return Poll::Ready(None);
        }
        if let StateProj::Waiting { sleep } = this.state.as_mut().project() {
            ready!(sleep.poll(cx));
            this.state.set(State::Ready);
        }
        let len = if *this.longer > 0 {
            *this.longer -= 1;
            *this.chunk_len + 1
        } else {
            *this.chunk_len
        };
        let chunk = this.data.split_to(len.min(this.data.len()));
        *this.chunks -= 1;
        if *this.chunks > 0 && !this.delay.is_zero() {
            this.state.set(State::Waiting {
                sleep: sleep(*this.delay),
            });
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks == 0
    }

    fn size_hint(&self) -> SizeHint {
        let remaining = u64::try_from(self.data.len()).unwrap_or(u64::MAX);
        if self.streamed {
            // Unknown length, so HTTP/1.1 uses chunked transfer encoding.
            let mut hint = SizeHint::new();
            hint.set_lower(remaining);
            hint
        } else {
            SizeHint::with_exact(remaining)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test(start_paused = true)]
    async fn splits_into_chunks_with_delays() {
        let start = tokio::time::Instant::now();
        let mut body = std::pin::pin!(TestBody::chunked(
            pattern(10),
            4,
            Duration::from_millis(100),
            None
        ));
        let mut sizes = Vec::new();
        while let Some(frame) = body.frame().await {
            sizes.push(frame.unwrap().into_data().unwrap().len());
        }
        assert_eq!(sizes, [3, 3, 2, 2]);
        assert_eq!(start.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test]
    async fn never_sends_empty_frames() {
        let body = TestBody::chunked(pattern(2), 5, Duration::ZERO, None);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "ab");
        let body = TestBody::chunked(Bytes::new(), 5, Duration::ZERO, None);
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }
}
