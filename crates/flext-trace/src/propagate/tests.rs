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
        let tp = TraceParent::random(true);
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
    let tp = TraceParent::random(true);
    let t = tp.trace_id().to_u128();
    assert_ne!(t >> 64, t & u128::from(u64::MAX));
    assert_ne!(t as u64, tp.parent_id().to_u64());
}

#[test]
fn threads_draw_different_ids() {
    let ids: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(|| TraceParent::random(true).trace_id()))
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
        .map(|_| TraceParent::random(true))
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
    let tp = TraceParent::random(true);
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
            let tp = TraceParent::random(true);
            let _ = self.0.send((tp, tp.to_header_value(), new_request_id()));
        }
    }
    thread_local! {
        static GUARD: RefCell<Option<MakesValues>> = const { RefCell::new(None) };
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // The arena first, then the guard: destructors run in reverse, or in any order.
        let _ = TraceParent::random(true).to_header_value();
        GUARD.with(|g| *g.borrow_mut() = Some(MakesValues(tx)));
    })
    .join()
    .unwrap();
    let (tp, value, id) = rx.recv().unwrap();
    assert_eq!(value.to_str().unwrap(), tp.to_string());
    assert!(value.is_sensitive());
    assert_eq!(id.len(), 36);
}

/// Runs `f` with a span a subscriber records (the layer's span when its level is enabled).
fn with_recorded_span<R>(f: impl FnOnce(&tracing::Span) -> R) -> R {
    tracing::subscriber::with_default(tracing_subscriber::registry(), || {
        let span = tracing::info_span!("attempt");
        assert!(!span.is_disabled());
        f(&span)
    })
}

const THEIRS: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

#[test]
fn a_recorded_span_continues_a_callers_valid_value_and_replaces_a_bad_one() {
    with_recorded_span(|span| {
        // A valid one, sent twice: continued (trace id and flags kept), one value left.
        let mut headers = HeaderMap::new();
        headers.append(TRACEPARENT, HeaderValue::from_static(THEIRS));
        headers.append(TRACEPARENT, HeaderValue::from_static("stale"));
        let joined = join(span, None, &mut headers, TraceContext::Recorded).unwrap();
        assert_eq!(headers.get_all(TRACEPARENT).iter().count(), 1);
        let sent = TraceParent::from_headers(&headers).unwrap();
        assert_eq!(sent, joined.parent);
        assert_eq!(
            sent.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_ne!(sent.parent_id().to_string(), "00f067aa0ba902b7");
        assert_eq!(sent.flags(), 0);

        // An invalid one: replaced by a new trace, sampled since this side records it.
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static("00-garbage"));
        let joined = join(span, None, &mut headers, TraceContext::Recorded).unwrap();
        assert_eq!(headers.get_all(TRACEPARENT).iter().count(), 1);
        assert_eq!(TraceParent::from_headers(&headers), Some(joined.parent));
        assert!(joined.parent.is_sampled());

        // None: a new trace, and other headers untouched.
        let mut headers = HeaderMap::new();
        headers.insert(http::header::ACCEPT, HeaderValue::from_static("*/*"));
        let joined = join(span, None, &mut headers, TraceContext::Recorded).unwrap();
        assert_eq!(TraceParent::from_headers(&headers), Some(joined.parent));
        assert!(joined.parent.is_sampled());
        assert_eq!(headers["accept"], "*/*");
        assert_eq!(headers.len(), 2);
    });
}

#[test]
fn with_nothing_recording_no_trace_is_started_and_a_callers_value_passes_untouched() {
    let span = tracing::Span::none();
    assert!(span.is_disabled());

    // No trace: none made up, nothing sent.
    let mut headers = HeaderMap::new();
    assert!(join(&span, None, &mut headers, TraceContext::Recorded).is_none());
    assert!(headers.is_empty());

    // The caller's values, valid or not, pass as they are: this side takes no part.
    let mut headers = HeaderMap::new();
    headers.append(TRACEPARENT, HeaderValue::from_static(THEIRS));
    headers.append(TRACEPARENT, HeaderValue::from_static("stale"));
    assert!(join(&span, None, &mut headers, TraceContext::Recorded).is_none());
    let left: Vec<_> = headers.get_all(TRACEPARENT).iter().collect();
    assert_eq!(left, [THEIRS, "stale"]);

    // A logical parent's trace is sent as the logical span made it: it is the parent.
    let logical = Logical {
        parent: THEIRS.parse().unwrap(),
    };
    let mut headers = HeaderMap::new();
    let joined = join(&span, Some(&logical), &mut headers, TraceContext::Recorded).unwrap();
    assert_eq!(joined.parent, logical.parent);
    assert_eq!(headers[TRACEPARENT], THEIRS);
}

#[test]
fn always_starts_a_trace_nothing_records_as_not_sampled() {
    let span = tracing::Span::none();
    let mut headers = HeaderMap::new();
    let joined = join(&span, None, &mut headers, TraceContext::Always).unwrap();
    assert_eq!(TraceParent::from_headers(&headers), Some(joined.parent));
    assert_eq!(joined.parent.flags(), 0);

    // A caller's trace is continued under a new parent id, its flags kept.
    let mut headers = HeaderMap::new();
    headers.insert(TRACEPARENT, HeaderValue::from_static(THEIRS));
    let joined = join(&span, None, &mut headers, TraceContext::Always).unwrap();
    assert_eq!(
        joined.parent.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_ne!(joined.parent.parent_id().to_string(), "00f067aa0ba902b7");
    assert_eq!(TraceParent::from_headers(&headers), Some(joined.parent));

    // Under a logical parent: its trace, a parent id of this attempt's own.
    let logical = Logical {
        parent: joined.parent,
    };
    let mut headers = HeaderMap::new();
    let under = join(&span, Some(&logical), &mut headers, TraceContext::Always).unwrap();
    assert_eq!(under.parent.trace_id(), logical.parent.trace_id());
    assert_ne!(under.parent.parent_id(), logical.parent.parent_id());
    assert_eq!(TraceParent::from_headers(&headers), Some(under.parent));
}

#[test]
fn with_off_a_recorded_logical_span_keeps_a_trace_it_does_not_send_and_its_attempts_send_it() {
    with_recorded_span(|span| {
        let mut headers = HeaderMap::new();
        let fresh = join(span, None, &mut headers, TraceContext::Off).unwrap();
        assert!(!fresh.from_otel && fresh.parent.is_sampled());
        assert!(headers.is_empty());

        // A caller's value is read (its trace continued in the span) but left as it is.
        let theirs: TraceParent = THEIRS.parse().unwrap();
        headers.insert(TRACEPARENT, theirs.to_header_value());
        let joined = join(span, None, &mut headers, TraceContext::Off).unwrap();
        assert_eq!(joined.parent.trace_id(), theirs.trace_id());
        assert_ne!(joined.parent.parent_id(), theirs.parent_id());
        assert!(!joined.parent.is_sampled());
        assert_eq!(headers[TRACEPARENT], THEIRS);

        // An attempt below that logical layer, injecting (the default stack's shape): the
        // same trace, a parent id of its own.
        let logical = Logical {
            parent: fresh.parent,
        };
        let mut headers = HeaderMap::new();
        let joined = join(span, Some(&logical), &mut headers, TraceContext::Recorded).unwrap();
        assert_eq!(joined.parent.trace_id(), fresh.parent.trace_id());
        assert_ne!(joined.parent.parent_id(), fresh.parent.parent_id());
        assert_eq!(TraceParent::from_headers(&headers), Some(joined.parent));
    });
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
