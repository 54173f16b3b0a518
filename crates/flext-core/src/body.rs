//! [`Replayable`] and [`ReplayBody`]: a request body that can be sent more than once.
//!
//! The design follows linkerd's `ReplayBody`: while the first attempt streams the body out,
//! the chunks it reads are kept (cheap [`Bytes`] clones, no copy) so that a later attempt can
//! send them again, trailers included. Two caps bound what is kept: one per body and one
//! shared by every body in flight through a layer ([`ReplayMemory`]). Past a cap the attempt
//! in progress goes on unharmed; only the replay is given up, and [`Replayable::check`] says
//! why.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::error::BoxError;

mod limits;
#[cfg(test)]
mod tests;

use limits::Reservation;
pub use limits::{
    DEFAULT_MAX_REPLAY_BYTES, DEFAULT_MAX_REPLAY_MEMORY, NotReplayable, ReplayBodyError,
    ReplayLimits, ReplayMemory,
};

/// A request body kept so that it can be sent more than once.
///
/// [`Replayable::new`] gives the body of the first attempt with the keeper;
/// [`Replayable::body`] then hands out more [`ReplayBody`]s, each of which sends the whole
/// body from its start. The first one streams the original body and keeps what it reads;
/// later ones replay that, then take over whatever the original has not yielded yet (the
/// newest copy owns the stream; an older copy polled again fails with [`ReplayBodyError`]).
///
/// A body whose exact size is known and within the cap takes a fast path: when its data is
/// already in memory (such as [`http_body_util::Full`]), it is read once when wrapped, with
/// no copy and no shared state, and every copy is a [`Bytes`] clone.
///
/// The original body must be [`Unpin`]; wrap another one with `Box::pin`.
///
/// [`http_body_util::Full`]: https://docs.rs/http-body-util/latest/http_body_util/struct.Full.html
///
/// ```
/// use bytes::Bytes;
/// use flext_core::{ReplayLimits, Replayable};
/// use http_body_util::{BodyExt, Full};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let body = Full::new(Bytes::from_static(b"hello"));
/// let (replay, first) = Replayable::new(body, &ReplayLimits::default());
/// let first = first.collect().await.unwrap().to_bytes();
/// let again = replay.body().unwrap().collect().await.unwrap().to_bytes();
/// assert_eq!(first, again);
/// # }
/// ```
pub struct Replayable<B> {
    source: Source<B>,
}

enum Source<B> {
    /// The whole body, read when wrapped.
    Full {
        data: Bytes,
        // Boxed: rare, and a `HeaderMap` would triple the size of every request's state.
        trailers: Option<Box<HeaderMap>>,
        _reservation: Reservation,
    },
    Shared(Arc<Shared<B>>),
    /// Sent once, not replayable.
    Once {
        reason: NotReplayable,
    },
}

impl<B> Replayable<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    /// Wraps `body`, to be kept within `limits`: returns the keeper and the body of the first
    /// attempt.
    ///
    /// A body whose size hint says it is over the cap is not buffered at all: it can be
    /// sent once.
    // Always inlined, with `full`: returned through memory, the pair is read back wider than
    // it was written, which stalls the caller (~20 ns per request in flext-retry's bench).
    #[inline(always)]
    pub fn new(mut body: B, limits: &ReplayLimits) -> (Replayable<B>, ReplayBody<B>) {
        let hint = body.size_hint();
        if hint.lower() > limits.max_bytes() as u64 {
            return Replayable::once(ReplayBody::once(body), NotReplayable::TooLarge);
        }
        if body.is_end_stream() {
            return Replayable::full(Bytes::new(), None, limits);
        }
        if hint.exact().is_some() {
            // Known size within the cap: if the data is already in memory, take it now. A
            // body that is not ready registered a no-op waker; the first attempt polls it
            // again with a real one.
            let mut cx = Context::from_waker(Waker::noop());
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(None) => return Replayable::full(Bytes::new(), None, limits),
                Poll::Ready(Some(Err(e))) => {
                    let body = ReplayBody::failed(e.into());
                    return Replayable::once(body, NotReplayable::BodyError);
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(mut data) => {
                        let data = data.copy_to_bytes(data.remaining());
                        if body.is_end_stream() {
                            return Replayable::full(data, None, limits);
                        }
                        return Replayable::shared(body, Some(data), limits);
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            let trailers = Some(Box::new(trailers));
                            return Replayable::full(Bytes::new(), trailers, limits);
                        }
                    }
                },
                Poll::Pending => {}
            }
        }
        Replayable::shared(body, None, limits)
    }

    #[inline(always)]
    fn full(
        data: Bytes,
        trailers: Option<Box<HeaderMap>>,
        limits: &ReplayLimits,
    ) -> (Replayable<B>, ReplayBody<B>) {
        let mut reservation = Reservation::none();
        let reason = if data.len() > limits.max_bytes() {
            Some(NotReplayable::TooLarge)
        } else if data.is_empty() || !limits.counts_whole() {
            None
        } else {
            reservation.memory = limits.memory().cloned();
            (!reservation.grow_to(data.len())).then_some(NotReplayable::MemoryLimit)
        };
        if let Some(reason) = reason {
            return Replayable::once(ReplayBody::full(data, trailers), reason);
        }
        let first = ReplayBody::full(data.clone(), trailers.clone());
        let source = Source::Full {
            data,
            trailers,
            _reservation: reservation,
        };
        (Replayable { source }, first)
    }

    fn shared(
        body: B,
        prefix: Option<Bytes>,
        limits: &ReplayLimits,
    ) -> (Replayable<B>, ReplayBody<B>) {
        let orig_hint = body.size_hint();
        let mut state = State {
            rest: Some(body),
            buf: Vec::new(),
            base: 0,
            trailers: None,
            completed: false,
            unreplayable: None,
            owner: 1,
            next_id: 2,
            max_bytes: limits.max_bytes(),
            buffered: 0,
            reservation: Reservation {
                memory: limits.memory().cloned(),
                bytes: 0,
            },
        };
        if let Some(prefix) = prefix {
            // Kept whatever the caps say: the first attempt still has to send it.
            state.keep(prefix.len(), false);
            state.buf.push(prefix);
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            orig_hint,
        });
        let first = ReplayBody::handle(Arc::clone(&shared), 1);
        let source = Source::Shared(shared);
        (Replayable { source }, first)
    }
}

impl<B> Replayable<B> {
    fn once(body: ReplayBody<B>, reason: NotReplayable) -> (Replayable<B>, ReplayBody<B>) {
        let source = Source::Once { reason };
        (Replayable { source }, body)
    }

    /// Another body that sends the whole request body from its start, or why there can be
    /// none.
    ///
    /// The new body becomes the owner of the original stream: an older copy still being
    /// polled fails from then on.
    pub fn body(&self) -> Result<ReplayBody<B>, NotReplayable> {
        match &self.source {
            Source::Full { data, trailers, .. } => {
                Ok(ReplayBody::full(data.clone(), trailers.clone()))
            }
            Source::Shared(shared) => {
                let mut st = lock(&shared.state);
                if let Some(reason) = st.unreplayable {
                    return Err(reason);
                }
                let id = st.next_id;
                st.next_id += 1;
                st.owner = id;
                drop(st);
                Ok(ReplayBody::handle(Arc::clone(shared), id))
            }
            Source::Once { reason } => Err(*reason),
        }
    }

    /// Whether another copy can still be made: `Err` once a cap was passed or the body
    /// failed.
    pub fn check(&self) -> Result<(), NotReplayable> {
        match &self.source {
            Source::Full { .. } => Ok(()),
            Source::Shared(shared) => lock(&shared.state).unreplayable.map_or(Ok(()), Err),
            Source::Once { reason } => Err(*reason),
        }
    }

    /// The size of a body kept whole when it was wrapped (in memory, of known size), which
    /// [`ReplayLimits::caller_counts_whole`] leaves to the caller to count; `None` for a body
    /// kept as it streams or not kept at all.
    pub fn whole_len(&self) -> Option<usize> {
        match &self.source {
            Source::Full { data, .. } => Some(data.len()),
            Source::Shared(_) | Source::Once { .. } => None,
        }
    }

    /// Whether the whole body has been read and kept, so that a copy replays it from memory.
    pub fn is_complete(&self) -> bool {
        match &self.source {
            Source::Full { .. } => true,
            Source::Shared(shared) => {
                let st = lock(&shared.state);
                st.completed && st.unreplayable.is_none()
            }
            Source::Once { .. } => false,
        }
    }
}

impl<B> fmt::Debug for Replayable<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Replayable");
        match &self.source {
            Source::Full { data, trailers, .. } => d
                .field("mode", &"full")
                .field("len", &data.len())
                .field("trailers", &trailers.is_some()),
            Source::Shared(_) => d.field("mode", &"streaming"),
            Source::Once { reason } => d.field("mode", &"once").field("reason", reason),
        };
        d.finish()
    }
}

struct Shared<B> {
    state: Mutex<State<B>>,
    orig_hint: SizeHint,
}

struct State<B> {
    /// What the original body has not yielded yet.
    rest: Option<B>,
    /// Kept chunks, numbered from `base`.
    buf: Vec<Bytes>,
    base: u64,
    trailers: Option<HeaderMap>,
    /// The original body ended (and `rest` is gone).
    completed: bool,
    unreplayable: Option<NotReplayable>,
    /// The copy allowed to poll: the newest one.
    owner: u64,
    next_id: u64,
    max_bytes: usize,
    buffered: usize,
    reservation: Reservation,
}

impl<B> State<B> {
    /// Whether a new chunk of `len` bytes may be kept; gives up the replay when not.
    fn keep(&mut self, len: usize, sole: bool) -> bool {
        if self.unreplayable.is_some() {
            return false;
        }
        if sole {
            // No other handle exists, so nobody can ask for a replay any more.
            self.give_up(None);
            return false;
        }
        let need = self.buffered.saturating_add(len);
        if need > self.max_bytes {
            self.give_up(Some(NotReplayable::TooLarge));
            false
        } else if !self.reservation.grow_to(need) {
            self.give_up(Some(NotReplayable::MemoryLimit));
            false
        } else {
            self.buffered = need;
            true
        }
    }

    fn give_up(&mut self, reason: Option<NotReplayable>) {
        if reason.is_some() {
            self.unreplayable = reason;
        }
        self.reservation.release_all();
        self.buffered = 0;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One copy of a request body handed out by [`Replayable::body`].
///
/// Its data is [`Bytes`] and its error a [`BoxError`]: the original body's error, or a
/// [`ReplayBodyError`].
pub struct ReplayBody<B> {
    inner: Inner<B>,
}

enum Inner<B> {
    Full {
        data: Option<Bytes>,
        trailers: Option<Box<HeaderMap>>,
    },
    Shared(Handle<B>),
    Passthrough(B),
    Failed(Option<BoxError>),
}

struct Handle<B> {
    shared: Arc<Shared<B>>,
    id: u64,
    /// The number of the next kept chunk to send.
    pos: u64,
    trailers_sent: bool,
    ended: bool,
}

impl<B> ReplayBody<B> {
    fn full(data: Bytes, trailers: Option<Box<HeaderMap>>) -> ReplayBody<B> {
        let data = (!data.is_empty()).then_some(data);
        ReplayBody {
            inner: Inner::Full { data, trailers },
        }
    }

    /// A body sent once as it is, with nothing kept: for a request that will not be
    /// retried.
    pub fn once(body: B) -> ReplayBody<B> {
        ReplayBody {
            inner: Inner::Passthrough(body),
        }
    }

    fn handle(shared: Arc<Shared<B>>, id: u64) -> ReplayBody<B> {
        ReplayBody {
            inner: Inner::Shared(Handle {
                shared,
                id,
                pos: 0,
                trailers_sent: false,
                ended: false,
            }),
        }
    }

    fn failed(error: BoxError) -> ReplayBody<B> {
        ReplayBody {
            inner: Inner::Failed(Some(error)),
        }
    }
}

type PollFrame = Poll<Option<Result<Frame<Bytes>, BoxError>>>;

impl<B> Handle<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> PollFrame {
        if self.ended {
            return Poll::Ready(None);
        }
        let sole = Arc::strong_count(&self.shared) == 1;
        let mut st = lock(&self.shared.state);
        if st.owner != self.id {
            return Poll::Ready(Some(Err(ReplayBodyError { taken_over: true }.into())));
        }
        if self.pos < st.base {
            return Poll::Ready(Some(Err(ReplayBodyError { taken_over: false }.into())));
        }
        let idx = usize::try_from(self.pos - st.base).unwrap_or(usize::MAX);
        if let Some(chunk) = st.buf.get(idx) {
            self.pos += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk.clone()))));
        }
        if st.completed {
            self.ended = true;
            if !self.trailers_sent {
                self.trailers_sent = true;
                if let Some(trailers) = &st.trailers {
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers.clone()))));
                }
            }
            return Poll::Ready(None);
        }
        loop {
            let Some(rest) = st.rest.as_mut() else {
                // The original failed earlier: what this copy has to send is gone.
                return Poll::Ready(Some(Err(ReplayBodyError { taken_over: false }.into())));
            };
            let frame = match ready!(Pin::new(rest).poll_frame(cx)) {
                None => {
                    st.completed = true;
                    st.rest = None;
                    self.ended = true;
                    return Poll::Ready(None);
                }
                Some(Err(e)) => {
                    st.rest = None;
                    st.give_up(Some(NotReplayable::BodyError));
                    st.base += st.buf.len() as u64;
                    st.buf.clear();
                    return Poll::Ready(Some(Err(e.into())));
                }
                Some(Ok(frame)) => frame,
            };
            match frame.into_data() {
                Ok(mut data) => {
                    let data = data.copy_to_bytes(data.remaining());
                    if st.keep(data.len(), sole) {
                        st.buf.push(data.clone());
                    } else {
                        // This copy is at the end of the kept chunks: drop them all.
                        st.base += st.buf.len() as u64 + 1;
                        st.buf.clear();
                    }
                    self.pos = st.base + st.buf.len() as u64;
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Err(frame) => {
                    // Trailers end the body; a frame of another kind is skipped.
                    if let Ok(trailers) = frame.into_trailers() {
                        if st.unreplayable.is_none() && !sole {
                            st.trailers = Some(trailers.clone());
                        }
                        st.completed = true;
                        st.rest = None;
                        self.trailers_sent = true;
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.ended {
            return true;
        }
        let st = lock(&self.shared.state);
        if st.owner != self.id || self.pos < st.base {
            return false;
        }
        let at_end = self.pos == st.base + st.buf.len() as u64;
        if st.completed {
            at_end && (self.trailers_sent || st.trailers.is_none())
        } else {
            at_end && st.rest.as_ref().is_some_and(Body::is_end_stream)
        }
    }

    fn size_hint(&self) -> SizeHint {
        if self.pos == 0 && !self.ended {
            return self.shared.orig_hint;
        }
        let st = lock(&self.shared.state);
        let idx = usize::try_from(self.pos.saturating_sub(st.base)).unwrap_or(usize::MAX);
        let kept: u64 = st.buf.iter().skip(idx).map(|b| b.len() as u64).sum();
        match &st.rest {
            _ if self.ended => SizeHint::with_exact(0),
            None => SizeHint::with_exact(kept),
            Some(rest) => {
                let mut hint = SizeHint::new();
                hint.set_lower(kept.saturating_add(rest.size_hint().lower()));
                hint
            }
        }
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> PollFrame {
        match &mut self.get_mut().inner {
            Inner::Full { data, trailers } => {
                if let Some(data) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(*t))))
            }
            Inner::Shared(handle) => handle.poll_frame(cx),
            Inner::Passthrough(body) => Pin::new(body).poll_frame(cx).map(|frame| {
                frame.map(|r| {
                    r.map(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining())))
                        .map_err(Into::into)
                })
            }),
            Inner::Failed(error) => Poll::Ready(error.take().map(Err)),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Full { data, trailers } => data.is_none() && trailers.is_none(),
            Inner::Shared(handle) => handle.is_end_stream(),
            Inner::Passthrough(body) => body.is_end_stream(),
            Inner::Failed(error) => error.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Inner::Shared(handle) => handle.size_hint(),
            Inner::Passthrough(body) => body.size_hint(),
            Inner::Failed(_) => SizeHint::new(),
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match &self.inner {
            Inner::Full { .. } => "full",
            Inner::Shared(_) => "streaming",
            Inner::Passthrough(_) => "once",
            Inner::Failed(_) => "failed",
        };
        f.debug_struct("ReplayBody").field("mode", &mode).finish()
    }
}
