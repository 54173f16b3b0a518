//! `Replayable` / `ReplayBody` edge cases through the public API: bodies that fail, lie about
//! their size or end without saying so, what each copy advertises as left to send, what a
//! stale or failed copy yields, and the shared memory cap under concurrency.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use flext_core::{
    BoxError, NotReplayable, ReplayBody, ReplayBodyError, ReplayLimits, ReplayMemory, Replayable,
};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use proptest::prelude::*;

/// A body that is always ready: `frames` in order, then the end. Its size hint is `hint`, or
/// at least the data it has left when `None`; it only says it has ended when `says_end`.
struct Scripted {
    frames: VecDeque<Result<Frame<Bytes>, &'static str>>,
    hint: Option<SizeHint>,
    says_end: bool,
}

impl Body for Scripted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.frames.pop_front().map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.says_end && self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        self.hint.unwrap_or_else(|| {
            let left = self.frames.iter().flatten().filter_map(Frame::data_ref);
            at_least(left.map(|d| d.len() as u64).sum())
        })
    }
}

fn data(s: &'static str) -> Result<Frame<Bytes>, &'static str> {
    Ok(Frame::data(Bytes::from_static(s.as_bytes())))
}

fn scripted(frames: Vec<Result<Frame<Bytes>, &'static str>>, hint: Option<SizeHint>) -> Scripted {
    Scripted {
        frames: frames.into(),
        hint,
        says_end: true,
    }
}

/// A size hint with a lower bound and no upper one: the body is streamed, not read up front.
fn at_least(n: u64) -> SizeHint {
    let mut hint = SizeHint::new();
    hint.set_lower(n);
    hint
}

type Polled<B> = Poll<Option<Result<Frame<<B as Body>::Data>, <B as Body>::Error>>>;

/// Polls `body` once, without a runtime (every body here is ready at once).
fn poll_once<B: Body + Unpin>(body: &mut B) -> Polled<B> {
    Pin::new(body).poll_frame(&mut Context::from_waker(Waker::noop()))
}

/// Reads `body` to its end without a runtime.
fn read_now<B>(mut body: B) -> Result<(Vec<u8>, Option<HeaderMap>), BoxError>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    let (mut bytes, mut trailers) = (Vec::new(), None);
    loop {
        match poll_once(&mut body) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(d) => bytes.extend_from_slice(&d),
                Err(frame) => trailers = frame.into_trailers().ok(),
            },
            Poll::Ready(Some(Err(e))) => return Err(e),
            Poll::Ready(None) => return Ok((bytes, trailers)),
            Poll::Pending => panic!("the test bodies are always ready"),
        }
    }
}

fn next_data<B>(body: &mut ReplayBody<B>) -> Bytes
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    match poll_once(body) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().expect("a data frame"),
        _ => panic!("expected a data frame"),
    }
}

#[test]
fn a_known_size_body_that_fails_at_once_is_sent_as_its_error_and_never_replayed() {
    let body = scripted(vec![Err("disk read failed")], Some(SizeHint::with_exact(5)));
    let (replay, mut first) = Replayable::new(body, &ReplayLimits::default());
    assert_eq!(replay.check(), Err(NotReplayable::BodyError));
    assert_eq!(replay.body().unwrap_err(), NotReplayable::BodyError);
    assert!(!replay.is_complete());
    assert_eq!(
        format!("{replay:?}"),
        "Replayable { mode: \"once\", reason: BodyError }"
    );
    // The error is still ahead: not at its end, no promise about the length.
    assert!(!first.is_end_stream());
    assert_eq!(
        (first.size_hint().lower(), first.size_hint().upper()),
        (0, None)
    );
    assert_eq!(format!("{first:?}"), "ReplayBody { mode: \"failed\" }");
    match poll_once(&mut first) {
        Poll::Ready(Some(Err(e))) => assert_eq!(e.to_string(), "disk read failed"),
        _ => panic!("the original error comes first"),
    }
    assert!(first.is_end_stream());
    assert!(matches!(poll_once(&mut first), Poll::Ready(None)));
}

#[test]
fn a_body_larger_than_its_size_hint_is_sent_whole_but_not_kept() {
    // It says 3 bytes, within the cap of 4, and yields 10.
    let body = scripted(vec![data("0123456789")], Some(SizeHint::with_exact(3)));
    let memory = ReplayMemory::new(1024);
    let limits = ReplayLimits::new(4).with_memory(memory.clone());
    let (replay, first) = Replayable::new(body, &limits);
    assert_eq!(replay.check(), Err(NotReplayable::TooLarge));
    assert_eq!(memory.in_use(), 0);
    assert_eq!(read_now(first).unwrap().0, b"0123456789");
}

#[test]
fn a_known_size_body_that_only_ends_when_polled_is_replayed_as_empty() {
    let mut body = scripted(vec![], Some(SizeHint::with_exact(0)));
    body.says_end = false;
    let (replay, first) = Replayable::new(body, &ReplayLimits::default());
    assert!(replay.is_complete());
    assert!(first.is_end_stream());
    assert_eq!(format!("{first:?}"), "ReplayBody { mode: \"full\" }");
    let again = replay.body().unwrap();
    assert_eq!(again.size_hint().exact(), Some(0));
    assert_eq!(read_now(again).unwrap().0, b"");
}

#[test]
fn a_body_sent_once_keeps_its_length_and_end() {
    // Over the cap by its size hint: passed through, so the transport still knows its length.
    let big = Full::new(Bytes::from_static(b"0123456789"));
    let (replay, mut first) = Replayable::new(big, &ReplayLimits::new(4));
    assert_eq!(
        format!("{replay:?}"),
        "Replayable { mode: \"once\", reason: TooLarge }"
    );
    assert_eq!(format!("{first:?}"), "ReplayBody { mode: \"once\" }");
    assert_eq!(first.size_hint().exact(), Some(10));
    assert!(!first.is_end_stream());
    assert_eq!(next_data(&mut first), "0123456789");
    assert!(first.is_end_stream());

    let once = ReplayBody::once(Full::new(Bytes::from_static(b"abc")));
    assert_eq!(once.size_hint().exact(), Some(3));
    assert_eq!(read_now(once).unwrap().0, b"abc");
}

#[test]
fn each_copy_advertises_what_it_has_left_and_a_stale_copy_never_claims_its_end() {
    let body = scripted(vec![data("abc"), data("def")], None);
    let (replay, mut first) = Replayable::new(body, &ReplayLimits::default());
    assert_eq!(format!("{first:?}"), "ReplayBody { mode: \"streaming\" }");
    assert_eq!(first.size_hint().lower(), 6);
    assert_eq!(next_data(&mut first), "abc");
    // Nothing kept ahead of it; the original still has at least 3.
    assert_eq!(first.size_hint().lower(), 3);

    let mut second = replay.body().unwrap();
    // Taken over: the first copy must be polled to learn that, not be taken as complete.
    assert!(!first.is_end_stream());
    assert_eq!(second.size_hint().lower(), 6);
    assert_eq!(next_data(&mut second), "abc");
    assert_eq!(second.size_hint().lower(), 3);
    assert_eq!(next_data(&mut second), "def");
    assert!(matches!(poll_once(&mut second), Poll::Ready(None)));
    assert!(second.is_end_stream());
    assert_eq!(second.size_hint().exact(), Some(0));

    // Once the original is all kept, a copy knows exactly what it has left.
    let mut third = replay.body().unwrap();
    assert_eq!(next_data(&mut third), "abc");
    assert_eq!(third.size_hint().exact(), Some(3));
    match poll_once(&mut first) {
        Poll::Ready(Some(Err(e))) => {
            let e = e.downcast_ref::<ReplayBodyError>().unwrap();
            assert!(e.is_taken_over() && !e.is_discarded());
        }
        _ => panic!("a stale copy fails"),
    }
}

#[test]
fn a_copy_polled_after_its_body_failed_says_the_data_is_gone_rather_than_ending() {
    let body = scripted(vec![data("part"), Err("upload aborted")], None);
    let (replay, mut first) = Replayable::new(body, &ReplayLimits::default());
    assert_eq!(next_data(&mut first), "part");
    match poll_once(&mut first) {
        Poll::Ready(Some(Err(e))) => assert_eq!(e.to_string(), "upload aborted"),
        _ => panic!("the original error"),
    }
    assert_eq!(replay.check(), Err(NotReplayable::BodyError));
    // Ending cleanly here would let a transport send a truncated body as complete.
    match poll_once(&mut first) {
        Poll::Ready(Some(Err(e))) => {
            let e = e.downcast_ref::<ReplayBodyError>().unwrap();
            assert!(e.is_discarded() && !e.is_taken_over());
            assert_eq!(e.to_string(), "request body replay data discarded");
        }
        _ => panic!("a discarded copy fails"),
    }
}

#[test]
fn debug_never_shows_the_body_bytes() {
    let secret = "client_secret=s3cr3t-value";
    let (replay, first) = Replayable::new(
        Full::new(Bytes::from_static(secret.as_bytes())),
        &ReplayLimits::default(),
    );
    let (r, b) = (format!("{replay:?}"), format!("{first:?}"));
    assert_eq!(
        r,
        format!(
            "Replayable {{ mode: \"full\", len: {}, trailers: false }}",
            secret.len()
        )
    );
    assert!(!r.contains("s3cr3t") && !b.contains("s3cr3t"), "{r} {b}");
}

#[test]
fn replay_memory_reports_its_capacity_and_use_and_clones_share_it() {
    let memory = ReplayMemory::new(4096);
    assert_eq!(memory.capacity(), 4096);
    let limits = ReplayLimits::new(64).with_memory(memory.clone());
    assert_eq!(limits.memory().map(ReplayMemory::capacity), Some(4096));
    let kept = Replayable::new(Full::new(Bytes::from_static(b"hello")), &limits);
    // The limits hold a clone: it sees the same count.
    assert_eq!(
        format!("{:?}", limits.memory().unwrap()),
        "ReplayMemory { capacity: 4096, in_use: 5 }"
    );
    drop(kept);
    assert_eq!(memory.in_use(), 0);
}

#[test]
fn why_a_body_is_not_replayable_reads_as_a_label_and_a_message() {
    let cases = [
        (
            NotReplayable::TooLarge,
            "too_large",
            "request body larger than the replay limit",
        ),
        (
            NotReplayable::MemoryLimit,
            "memory_limit",
            "replay memory of the requests in flight exhausted",
        ),
        (
            NotReplayable::BodyError,
            "body_error",
            "request body failed",
        ),
    ];
    for (why, label, message) in cases {
        assert_eq!(why.as_str(), label);
        let boxed: BoxError = why.into();
        assert_eq!(boxed.to_string(), message);
    }
}

#[test]
fn concurrent_requests_never_overcommit_the_shared_memory() {
    const CAPACITY: usize = 1_000;
    const BODY: usize = 100;
    let memory = ReplayMemory::new(CAPACITY);
    let limits = ReplayLimits::new(BODY).with_memory(memory.clone());
    let body = Bytes::from(vec![b'x'; BODY]);
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (limits, memory, body) = (&limits, &memory, &body);
            s.spawn(move || {
                let mut held = Vec::new();
                for i in 0..500 {
                    let (replay, _) = Replayable::new(Full::new(body.clone()), limits);
                    let used = memory.in_use();
                    assert!(used <= CAPACITY, "{used} bytes reserved");
                    assert_eq!(used % BODY, 0);
                    held.push(replay);
                    if i % 4 == 3 {
                        held.clear();
                    }
                }
            });
        }
    });
    assert_eq!(memory.in_use(), 0);
}

/// Chunks of any length (empty ones included) under any caps: the first attempt sends every
/// byte, a replay sends the same bytes or is refused with the cap that was passed first, and
/// the memory reserved is the body's length while it is kept and zero otherwise.
fn check_caps(chunks: &[Vec<u8>], cap: usize, capacity: usize) -> Result<(), TestCaseError> {
    let all: Vec<u8> = chunks.concat();
    let frames = chunks
        .iter()
        .map(|c| Ok(Frame::data(Bytes::from(c.clone()))))
        .collect();
    let memory = ReplayMemory::new(capacity);
    let limits = ReplayLimits::new(cap).with_memory(memory.clone());
    let (replay, first) = Replayable::new(scripted(frames, Some(SizeHint::new())), &limits);
    prop_assert_eq!(read_now(first).unwrap().0, &all[..]);

    let mut sum = 0;
    let mut expected = Ok(());
    for c in chunks {
        sum += c.len();
        if sum > cap {
            expected = Err(NotReplayable::TooLarge);
            break;
        }
        if sum > capacity {
            expected = Err(NotReplayable::MemoryLimit);
            break;
        }
    }
    prop_assert_eq!(replay.check(), expected);
    if expected.is_ok() {
        prop_assert!(replay.is_complete());
        prop_assert_eq!(memory.in_use(), all.len());
        prop_assert_eq!(read_now(replay.body().unwrap()).unwrap().0, all);
    } else {
        prop_assert_eq!(memory.in_use(), 0);
    }
    drop(replay);
    prop_assert_eq!(memory.in_use(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn caps_are_enforced_chunk_by_chunk(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 0..8),
        cap in 0usize..40,
        capacity in 0usize..60,
    ) {
        check_caps(&chunks, cap, capacity)?;
    }
}

#[test]
fn empty_chunks_do_not_stop_a_replay() {
    let chunks = vec![b"ab".to_vec(), Vec::new(), b"cd".to_vec(), Vec::new()];
    check_caps(&chunks, 4, 4).unwrap();
}
