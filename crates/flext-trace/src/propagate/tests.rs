//! Tests of `traceparent` generation, parsing and injection.

use super::*;
use proptest::prelude::*;

#[test]
fn header_round_trip() {
    let tp = TraceParent::new(TraceId::random(), SpanId::random(), 1);
    let v = tp.to_header_value();
    assert_eq!(v.len(), 55);
    assert_eq!(v.to_str().unwrap(), tp.to_string());
    assert_eq!(v.to_str().unwrap().parse::<TraceParent>().unwrap(), tp);
}

#[test]
fn future_versions_and_bad_input() {
    let base = "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert!(
        format!("01-{base}-what-ever")
            .parse::<TraceParent>()
            .is_ok()
    );
    assert!(format!("01-{base}").parse::<TraceParent>().is_ok());
    assert!(format!("01-{base}x").parse::<TraceParent>().is_err());
    assert!(format!("00-{base}-").parse::<TraceParent>().is_err());
    assert!(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"
            .parse::<TraceParent>()
            .is_err()
    );
    assert!(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g"
            .parse::<TraceParent>()
            .is_err()
    );
    assert!("".parse::<TraceParent>().is_err());
}

#[test]
fn request_ids_are_uuid_v4() {
    let id = new_request_id();
    let s = id.to_str().unwrap();
    assert_eq!(s.len(), 36);
    let groups: Vec<&str> = s.split('-').collect();
    assert_eq!(
        groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12]
    );
    assert!(groups[2].starts_with('4'));
    assert!(matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
    assert_ne!(new_request_id(), id);
}

#[test]
fn new_traces_are_w3c_non_zero_and_unique() {
    use std::collections::HashSet;
    let n = 20_000;
    let (mut traces, mut spans) = (HashSet::new(), HashSet::new());
    for _ in 0..n {
        let tp = TraceParent::random();
        assert_ne!(tp.trace_id().to_u128(), 0);
        assert_ne!(tp.parent_id().to_u64(), 0);
        assert_eq!(tp.flags(), 1);
        let value = tp.to_header_value();
        assert!(value.is_sensitive());
        let text = value.to_str().unwrap();
        assert!(
            text.bytes()
                .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(text.parse::<TraceParent>(), Ok(tp));
        traces.insert(tp.trace_id());
        spans.insert(tp.parent_id());
    }
    // 2^-64-ish odds of a collision among 20 000 random 64-bit (and 128-bit) ids.
    assert_eq!((traces.len(), spans.len()), (n, n));
    // The two halves of a trace id and the span id are separate draws.
    let tp = TraceParent::random();
    let t = tp.trace_id().to_u128();
    assert_ne!(t >> 64, t & u128::from(u64::MAX));
    assert_ne!(t as u64, tp.parent_id().to_u64());
}

#[test]
fn threads_draw_different_ids() {
    let ids: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(|| TraceParent::random().trace_id()))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    for (i, a) in ids.iter().enumerate() {
        assert!(ids[i + 1..].iter().all(|b| b != a), "{ids:?}");
    }
}

#[test]
fn an_all_zero_draw_is_not_an_id() {
    assert_eq!(TraceId::from_words(0, 0).to_u128(), 1);
    assert_eq!(SpanId::from_word(0).to_u64(), 1);
    assert_eq!(
        TraceId::from_words(1, 2).to_u128(),
        (1 << 64) | 2,
        "the first word is the high half"
    );
}

#[test]
fn values_sharing_an_arena_chunk_stay_intact() {
    // More values than two chunks hold, all alive at once, then dropped out of order.
    let parents: Vec<TraceParent> = (0..3 * ARENA_CHUNK / 55)
        .map(|_| TraceParent::random())
        .collect();
    let mut values: Vec<(TraceParent, HeaderValue)> = parents
        .iter()
        .map(|tp| (*tp, tp.to_header_value()))
        .collect();
    for i in (0..values.len()).filter(|i| i % 3 == 0).rev() {
        drop(values.remove(i));
    }
    for (tp, value) in &values {
        assert_eq!(value.to_str().unwrap(), tp.to_string());
    }
    // Request ids share the arena with traceparents.
    let id = new_request_id();
    let tp = TraceParent::random();
    let value = tp.to_header_value();
    assert_eq!(id.len(), 36);
    assert_eq!(value.to_str().unwrap(), tp.to_string());
}

#[test]
fn values_are_made_during_thread_teardown() {
    // A thread-local whose destructor makes values runs when this thread's arena may
    // already be gone: the values must still be right (a copy of their own).
    struct MakesValues(std::sync::mpsc::Sender<(TraceParent, HeaderValue, HeaderValue)>);
    impl Drop for MakesValues {
        fn drop(&mut self) {
            let tp = TraceParent::random();
            let _ = self.0.send((tp, tp.to_header_value(), new_request_id()));
        }
    }
    thread_local! {
        static GUARD: RefCell<Option<MakesValues>> = const { RefCell::new(None) };
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // The arena first, then the guard: destructors run in reverse, or in any order.
        let _ = TraceParent::random().to_header_value();
        GUARD.with(|g| *g.borrow_mut() = Some(MakesValues(tx)));
    })
    .join()
    .unwrap();
    let (tp, value, id) = rx.recv().unwrap();
    assert_eq!(value.to_str().unwrap(), tp.to_string());
    assert!(value.is_sensitive());
    assert_eq!(id.len(), 36);
}

#[test]
fn injection_replaces_a_callers_value_and_continues_a_valid_one() {
    let span = tracing::Span::none();
    let theirs = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

    // A valid one, sent twice: continued (trace id and flags kept), one value left.
    let mut headers = HeaderMap::new();
    headers.append(TRACEPARENT, HeaderValue::from_static(theirs));
    headers.append(TRACEPARENT, HeaderValue::from_static("stale"));
    let joined = join(&span, None, &mut headers, true);
    assert_eq!(headers.get_all(TRACEPARENT).iter().count(), 1);
    let sent = TraceParent::from_headers(&headers).unwrap();
    assert_eq!(sent, joined.parent);
    assert_eq!(
        sent.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_ne!(sent.parent_id().to_string(), "00f067aa0ba902b7");
    assert_eq!(sent.flags(), 0);

    // An invalid one: replaced by a new trace.
    let mut headers = HeaderMap::new();
    headers.insert(TRACEPARENT, HeaderValue::from_static("00-garbage"));
    let joined = join(&span, None, &mut headers, true);
    assert_eq!(headers.get_all(TRACEPARENT).iter().count(), 1);
    assert_eq!(TraceParent::from_headers(&headers), Some(joined.parent));
    assert!(joined.parent.is_sampled());

    // None: a new trace, and other headers untouched.
    let mut headers = HeaderMap::new();
    headers.insert(http::header::ACCEPT, HeaderValue::from_static("*/*"));
    let joined = join(&span, None, &mut headers, true);
    assert_eq!(TraceParent::from_headers(&headers), Some(joined.parent));
    assert_eq!(headers["accept"], "*/*");
    assert_eq!(headers.len(), 2);
}

#[test]
fn joins_logical_then_header_then_new() {
    let span = tracing::Span::none();
    let mut headers = HeaderMap::new();
    let fresh = join(&span, None, &mut headers, false);
    assert!(!fresh.from_otel && fresh.parent.is_sampled());

    let theirs: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        .parse()
        .unwrap();
    headers.insert(TRACEPARENT, theirs.to_header_value());
    let joined = join(&span, None, &mut headers, false);
    assert_eq!(joined.parent.trace_id(), theirs.trace_id());
    assert_ne!(joined.parent.parent_id(), theirs.parent_id());
    assert!(!joined.parent.is_sampled());

    let logical = Logical {
        parent: fresh.parent,
    };
    let joined = join(&span, Some(&logical), &mut headers, true);
    assert_eq!(joined.parent.trace_id(), fresh.parent.trace_id());
    assert_eq!(TraceParent::from_headers(&headers), Some(joined.parent));
}

proptest! {
    #[test]
    fn header_values_are_lower_case_hex(t in 1u128.., p in 1u64.., flags in any::<u8>()) {
        let tp = TraceParent::new(TraceId::from_u128(t).unwrap(), SpanId::from_u64(p).unwrap(), flags);
        let value = tp.to_header_value();
        let expected = format!("00-{t:032x}-{p:016x}-{flags:02x}");
        prop_assert_eq!(value.as_bytes(), expected.as_bytes());
        prop_assert!(value.is_sensitive());
    }

    #[test]
    fn parse_never_panics(s in "\\PC{0,70}") {
        let _ = s.parse::<TraceParent>();
    }

    #[test]
    fn valid_values_round_trip(t in 1u128.., p in 1u64.., flags in any::<u8>()) {
        let tp = TraceParent::new(TraceId::from_u128(t).unwrap(), SpanId::from_u64(p).unwrap(), flags);
        prop_assert_eq!(tp.to_string().parse::<TraceParent>(), Ok(tp));
    }
}
