use super::*;

use http_body_util::channel::Channel;
use http_body_util::{BodyExt, Full};

type Chan = Channel<Bytes, BoxError>;

fn trailers() -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("x-checksum", http::HeaderValue::from_static("abc"));
    t
}

async fn collect<B>(body: ReplayBody<B>) -> (Bytes, Option<HeaderMap>)
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (collected.to_bytes(), trailers)
}

/// A channel body already holding `chunks` (and `trailers`), then closed.
fn streamed(chunks: &[&'static [u8]], trailers: Option<HeaderMap>) -> Chan {
    let (mut tx, body) = Chan::new(chunks.len() + 1);
    for c in chunks {
        tx.try_send(Frame::data(Bytes::from_static(c))).unwrap();
    }
    if let Some(t) = trailers {
        tx.try_send(Frame::trailers(t)).unwrap();
    }
    body
}

#[tokio::test]
async fn in_memory_body_takes_the_fast_path() {
    let (r, first) = Replayable::new(
        Full::new(Bytes::from_static(b"hello")),
        &ReplayLimits::default(),
    );
    assert!(format!("{r:?}").contains("full"));
    assert!(r.is_complete());
    assert_eq!(collect(first).await.0, "hello");
    for _ in 0..3 {
        let b = r.body().unwrap();
        assert_eq!(b.size_hint().exact(), Some(5));
        assert_eq!(collect(b).await.0, "hello");
    }
    assert_eq!(r.check(), Ok(()));
}

#[tokio::test]
async fn empty_body_is_complete_and_ends_at_once() {
    let (r, b) = Replayable::new(
        http_body_util::Empty::<Bytes>::new(),
        &ReplayLimits::default(),
    );
    assert!(b.is_end_stream());
    assert_eq!(collect(b).await.0, "");
    assert!(r.body().unwrap().is_end_stream());
}

#[tokio::test]
async fn streamed_body_replays_bytes_and_trailers() {
    let body = streamed(&[b"ab", b"cd", b"ef"], Some(trailers()));
    let (r, first) = Replayable::new(body, &ReplayLimits::default());
    assert!(!r.is_complete());
    let (first, t1) = collect(first).await;
    assert!(r.is_complete());
    let (second, t2) = collect(r.body().unwrap()).await;
    assert_eq!(first, "abcdef");
    assert_eq!(second, first);
    assert_eq!(t1.as_ref(), Some(&trailers()));
    assert_eq!(t2, t1);
}

#[tokio::test]
async fn past_the_cap_the_first_attempt_goes_on_but_no_replay() {
    let memory = ReplayMemory::new(1024);
    let limits = ReplayLimits::new(3).with_memory(memory.clone());
    let (r, first) = Replayable::new(streamed(&[b"ab", b"cd", b"ef"], None), &limits);
    let (first, _) = collect(first).await;
    assert_eq!(first, "abcdef");
    assert_eq!(r.check(), Err(NotReplayable::TooLarge));
    assert_eq!(r.body().unwrap_err(), NotReplayable::TooLarge);
    assert_eq!(memory.in_use(), 0);
}

#[tokio::test]
async fn known_size_over_the_cap_is_sent_once_without_buffering() {
    let (r, first) = Replayable::new(
        Full::new(Bytes::from_static(b"0123456789")),
        &ReplayLimits::new(4),
    );
    assert_eq!(r.check(), Err(NotReplayable::TooLarge));
    assert_eq!(collect(first).await.0, "0123456789");
    assert_eq!(r.body().unwrap_err(), NotReplayable::TooLarge);
}

#[tokio::test]
async fn shared_memory_is_capped_and_released() {
    let memory = ReplayMemory::new(6);
    let limits = ReplayLimits::new(64).with_memory(memory.clone());
    let (a, a1) = Replayable::new(streamed(&[b"abcd"], None), &limits);
    let (b, b1) = Replayable::new(streamed(&[b"efgh"], None), &limits);
    let fast = Replayable::new(Full::new(Bytes::from_static(b"xy")), &limits);
    assert_eq!(memory.in_use(), 2);
    collect(a1).await;
    assert_eq!(memory.in_use(), 6);
    assert_eq!(collect(b1).await.0, "efgh");
    assert_eq!(b.check(), Err(NotReplayable::MemoryLimit));
    assert_eq!(a.check(), Ok(()));
    drop((a, fast));
    assert_eq!(memory.in_use(), 0);
    let (full, _) = Replayable::new(Full::new(Bytes::from_static(b"1234567")), &limits);
    assert_eq!(full.check(), Err(NotReplayable::MemoryLimit));
}

#[tokio::test]
async fn a_caller_that_counts_whole_bodies_reserves_them_itself() {
    let memory = ReplayMemory::new(6);
    let limits = ReplayLimits::new(64)
        .with_memory(memory.clone())
        .caller_counts_whole();
    // Kept whole: left to the caller, who sizes it with `whole_len`.
    let (whole, first) = Replayable::new(Full::new(Bytes::from_static(b"wxyz")), &limits);
    assert_eq!((whole.whole_len(), memory.in_use()), (Some(4), 0));
    assert!(memory.try_reserve(4));
    assert!(!memory.try_reserve(3));
    assert_eq!(memory.in_use(), 4);
    assert_eq!(collect(first).await.0, "wxyz");
    assert_eq!(collect(whole.body().unwrap()).await.0, "wxyz");
    memory.release(4);
    assert_eq!(memory.in_use(), 0);
    // Streamed: still counted here, as it is read.
    let (streamed, first) = Replayable::new(streamed(&[b"abc"], None), &limits);
    assert_eq!(streamed.whole_len(), None);
    collect(first).await;
    assert_eq!(memory.in_use(), 3);
    drop(streamed);
    assert_eq!(memory.in_use(), 0);
    // Over the per-body cap: not kept, nothing to count.
    let big = Full::new(Bytes::from(vec![0; 65]));
    assert_eq!(Replayable::new(big, &limits).0.whole_len(), None);
}

#[tokio::test]
async fn a_new_copy_takes_over_a_half_read_body() {
    let (mut tx, body) = Chan::new(4);
    tx.send_data(Bytes::from_static(b"one,")).await.unwrap();
    let (r, mut first) = Replayable::new(body, &ReplayLimits::default());
    let frame = first.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "one,");

    let second = r.body().unwrap();
    tx.send_data(Bytes::from_static(b"two")).await.unwrap();
    drop(tx);
    let err = first.frame().await.unwrap().unwrap_err();
    assert!(
        err.downcast_ref::<ReplayBodyError>()
            .unwrap()
            .is_taken_over()
    );
    assert_eq!(collect(second).await.0, "one,two");
    assert_eq!(collect(r.body().unwrap()).await.0, "one,two");
}

#[tokio::test]
async fn a_failed_body_is_not_replayable() {
    let (mut tx, body) = Chan::new(4);
    tx.send_data(Bytes::from_static(b"part")).await.unwrap();
    tx.abort("broken".into());
    let (r, first) = Replayable::new(body, &ReplayLimits::default());
    let err = first.collect().await.unwrap_err();
    assert_eq!(err.to_string(), "broken");
    assert_eq!(r.check(), Err(NotReplayable::BodyError));
}

#[tokio::test]
async fn a_sole_copy_stops_buffering() {
    let memory = ReplayMemory::new(1024);
    let limits = ReplayLimits::new(64).with_memory(memory.clone());
    let (mut tx, body) = Chan::new(4);
    let (r, mut first) = Replayable::new(body, &limits);
    drop(r);
    tx.send_data(Bytes::from_static(b"data")).await.unwrap();
    drop(tx);
    assert_eq!(
        first.frame().await.unwrap().unwrap().into_data().unwrap(),
        "data"
    );
    assert_eq!(memory.in_use(), 0);
    assert!(first.frame().await.is_none());
}

/// A body of known size that plays `steps`: `None` is a `Pending` (waking at once).
struct Known {
    steps: std::collections::VecDeque<Option<Frame<Bytes>>>,
    size: u64,
}

impl Body for Known {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> PollFrame {
        match self.steps.pop_front() {
            Some(Some(frame)) => Poll::Ready(Some(Ok(frame))),
            Some(None) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.steps.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.size)
    }
}

fn known(steps: Vec<Option<Frame<Bytes>>>, size: u64) -> Known {
    Known {
        steps: steps.into(),
        size,
    }
}

#[tokio::test]
async fn known_size_bodies_not_ready_or_in_parts_are_streamed() {
    let data = |s: &'static str| Some(Frame::data(Bytes::from_static(s.as_bytes())));
    // Not ready when wrapped: read by the first attempt, kept, replayed.
    let (r, first) = Replayable::new(known(vec![None, data("abc")], 3), &ReplayLimits::default());
    assert!(format!("{r:?}").contains("streaming"));
    assert_eq!(first.size_hint().exact(), Some(3));
    assert_eq!(collect(first).await.0, "abc");
    assert_eq!(collect(r.body().unwrap()).await.0, "abc");
    // Ready in two parts, then trailers: the first part is taken when wrapped.
    let steps = vec![data("ab"), data("c"), Some(Frame::trailers(trailers()))];
    let (r, first) = Replayable::new(known(steps, 3), &ReplayLimits::default());
    assert_eq!(
        collect(first).await,
        (Bytes::from_static(b"abc"), Some(trailers()))
    );
    assert_eq!(
        collect(r.body().unwrap()).await,
        (Bytes::from_static(b"abc"), Some(trailers()))
    );
}

#[tokio::test]
async fn known_size_body_with_only_trailers_takes_the_fast_path() {
    let (r, first) = Replayable::new(
        known(vec![Some(Frame::trailers(trailers()))], 0),
        &ReplayLimits::default(),
    );
    assert!(format!("{r:?}").contains("full"));
    assert_eq!(collect(first).await.1, Some(trailers()));
    assert_eq!(collect(r.body().unwrap()).await.1, Some(trailers()));
}

#[test]
fn errors_read_well() {
    assert_eq!(NotReplayable::TooLarge.as_str(), "too_large");
    assert_eq!(
        NotReplayable::MemoryLimit.to_string(),
        "replay memory of the requests in flight exhausted"
    );
    let e = ReplayBodyError { taken_over: true };
    assert_eq!(e.to_string(), "request body taken over by a newer attempt");
}
