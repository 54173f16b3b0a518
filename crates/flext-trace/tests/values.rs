//! The W3C trace-context values users build, parse and print.

use flext_trace::{SpanId, TraceId, TraceParent, TraceParentError};

#[test]
fn ids_refuse_zero_and_round_trip_their_value() {
    assert_eq!(TraceId::from_u128(0), None);
    assert_eq!(SpanId::from_u64(0), None);
    let trace = TraceId::from_u128(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736).unwrap();
    let span = SpanId::from_u64(0x00f0_67aa_0ba9_02b7).unwrap();
    assert_eq!(trace.to_u128(), 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736);
    assert_eq!(span.to_u64(), 0x00f0_67aa_0ba9_02b7);
    assert_eq!(
        format!("{trace:?}"),
        "TraceId(4bf92f3577b34da6a3ce929d0e0e4736)"
    );
    assert_eq!(format!("{span:?}"), "SpanId(00f067aa0ba902b7)");
    // Small values keep their leading zeros.
    assert_eq!(
        TraceId::from_u128(1).unwrap().to_string(),
        "00000000000000000000000000000001"
    );
    assert_ne!(TraceId::random(), TraceId::random());
    assert_ne!(SpanId::random().to_u64(), 0);
}

#[test]
fn a_traceparent_keeps_its_flags_and_its_trace_under_a_new_parent() {
    let tp: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"
        .parse()
        .unwrap();
    assert_eq!(tp.flags(), 3);
    assert!(tp.is_sampled());
    let ours = SpanId::from_u64(0xabc).unwrap();
    let child = tp.with_parent(ours);
    assert_eq!(child.trace_id(), tp.trace_id());
    assert_eq!(child.parent_id(), ours);
    assert_eq!(child.flags(), 3);
    assert_eq!(
        child.to_header_value(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-03"
    );
    assert!(child.to_header_value().is_sensitive());
}

#[test]
fn a_bad_traceparent_says_what_was_expected() {
    let err: TraceParentError = "00-xyz".parse::<TraceParent>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid traceparent (expected 00-<32 hex>-<16 hex>-<2 hex>, ids not all zero)"
    );
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(err);
    assert!(boxed.source().is_none());
}
