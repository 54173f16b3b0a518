//! W3C Trace Context (`traceparent`, `tracestate`) and `x-request-id` propagation.

use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;

use bytes::{Bytes, BytesMut};
use http::header::Entry;
use http::{HeaderMap, HeaderName, HeaderValue};

/// The `traceparent` header (W3C Trace Context).
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The `tracestate` header (W3C Trace Context).
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// The `x-request-id` header, the default name for request ids.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A W3C trace id: 16 bytes, never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(u128);

impl TraceId {
    /// A random trace id.
    pub fn random() -> TraceId {
        loop {
            let v = fastrand::u128(..);
            if v != 0 {
                return TraceId(v);
            }
        }
    }

    /// The id with this value; `None` for zero, which W3C Trace Context forbids.
    pub const fn from_u128(value: u128) -> Option<TraceId> {
        if value == 0 {
            None
        } else {
            Some(TraceId(value))
        }
    }

    /// The id's value.
    pub const fn to_u128(self) -> u128 {
        self.0
    }
}

impl fmt::Display for TraceId {
    /// 32 lower-case hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

/// A W3C span (parent) id: 8 bytes, never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(u64);

impl SpanId {
    /// A random span id.
    pub fn random() -> SpanId {
        loop {
            let v = fastrand::u64(..);
            if v != 0 {
                return SpanId(v);
            }
        }
    }

    /// The id with this value; `None` for zero.
    pub const fn from_u64(value: u64) -> Option<SpanId> {
        if value == 0 {
            None
        } else {
            Some(SpanId(value))
        }
    }

    /// The id's value.
    pub const fn to_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SpanId {
    /// 16 lower-case hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// A `traceparent` value: version `00`, trace id, parent (span) id and trace flags.
///
/// ```
/// use flext_trace::TraceParent;
///
/// let tp: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap();
/// assert!(tp.is_sampled());
/// assert_eq!(tp.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(tp.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
///
/// // All-zero ids, upper-case hex and version ff are rejected.
/// assert!("00-00000000000000000000000000000000-00f067aa0ba902b7-01".parse::<TraceParent>().is_err());
/// assert!("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01".parse::<TraceParent>().is_err());
/// assert!("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse::<TraceParent>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: TraceId,
    parent_id: SpanId,
    flags: u8,
}

impl TraceParent {
    /// A trace parent from its parts; `flags` bit 0 is "sampled".
    pub const fn new(trace_id: TraceId, parent_id: SpanId, flags: u8) -> TraceParent {
        TraceParent {
            trace_id,
            parent_id,
            flags,
        }
    }

    /// The trace id.
    pub const fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The parent (span) id.
    pub const fn parent_id(&self) -> SpanId {
        self.parent_id
    }

    /// The trace flags byte.
    pub const fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the caller may have recorded the trace (flag bit 0).
    pub const fn is_sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The same trace with another parent id.
    pub const fn with_parent(self, parent_id: SpanId) -> TraceParent {
        TraceParent { parent_id, ..self }
    }

    /// The `traceparent` a request carries, if it carries a valid one.
    pub fn from_headers(headers: &HeaderMap) -> Option<TraceParent> {
        headers
            .get(&TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse().ok())
    }

    /// The header value, 55 bytes.
    pub fn to_header_value(&self) -> HeaderValue {
        let mut buf = [0u8; 55];
        buf[..3].copy_from_slice(b"00-");
        buf[3..19].copy_from_slice(&hex_u64((self.trace_id.0 >> 64) as u64));
        buf[19..35].copy_from_slice(&hex_u64(self.trace_id.0 as u64));
        buf[35] = b'-';
        buf[36..52].copy_from_slice(&hex_u64(self.parent_id.0));
        buf[52] = b'-';
        write_hex(&mut buf[53..55], &[self.flags]);
        header_value(&buf)
    }
}

/// How many bytes of header values one arena chunk holds: 64 `traceparent`s.
const ARENA_CHUNK: usize = 64 * 55;

thread_local! {
    /// Room for the header values this thread makes, handed out in slices that share one
    /// allocation (a reference count each), so that a call does not pay a `malloc` and a
    /// `free` for its 55-byte `traceparent`. A chunk is freed when the last value cut from it
    /// is dropped: at worst one live value keeps 3.5 KiB alive.
    static ARENA: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// A header value of ASCII hex digits and dashes, cut from this thread's arena.
fn header_value(text: &[u8]) -> HeaderValue {
    let bytes = ARENA
        .try_with(|arena| {
            let mut arena = arena.try_borrow_mut().ok()?;
            if arena.capacity() < text.len() {
                *arena = BytesMut::with_capacity(ARENA_CHUNK.max(text.len()));
            }
            arena.extend_from_slice(text);
            Some(arena.split().freeze())
        })
        .ok()
        .flatten()
        // During thread teardown: a value of its own.
        .unwrap_or_else(|| Bytes::copy_from_slice(text));
    // Only hex digits and dashes: always a valid header value.
    let mut value =
        HeaderValue::from_maybe_shared(bytes).unwrap_or_else(|_| HeaderValue::from_static(""));
    // A value new on every request: HTTP/2 gains nothing from indexing it (HPACK never-indexed
    // literal), and searching and churning the dynamic table costs both ends.
    value.set_sensitive(true);
    value
}

/// `v` as 16 lower-case hex digits, most significant first, computed on the whole word at once
/// (SWAR) rather than a digit at a time through a table: this runs for every request.
#[inline]
fn hex_u64(v: u64) -> [u8; 16] {
    // Spreads the 8 nibbles of a 32-bit value over the 8 bytes of a word, nibble i in byte i.
    fn spread(x: u64) -> u64 {
        let x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
        let x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
        (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F
    }
    // Each byte n (0..=15) becomes b'0' + n, plus 39 more (b'a' - b'0' - 10) when n > 9.
    fn ascii(n: u64) -> u64 {
        let letters = ((n + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
        n + 0x3030_3030_3030_3030 + letters * 39
    }
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&ascii(spread(v >> 32)).to_be_bytes());
    out[8..].copy_from_slice(&ascii(spread(v & 0xFFFF_FFFF)).to_be_bytes());
    out
}

fn write_hex(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id, self.parent_id, self.flags
        )
    }
}

/// Why a `traceparent` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParentError {
    _private: (),
}

impl fmt::Display for TraceParentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid traceparent (expected 00-<32 hex>-<16 hex>-<2 hex>, ids not all zero)")
    }
}

impl std::error::Error for TraceParentError {}

impl FromStr for TraceParent {
    type Err = TraceParentError;

    /// Parses as W3C Trace Context §3.2 says a receiver must: lower-case hex only, version
    /// `ff` invalid, version `00` exactly 55 characters, a later version at least 55 with a
    /// `-` after the flags when longer.
    fn from_str(s: &str) -> Result<TraceParent, TraceParentError> {
        let err = TraceParentError { _private: () };
        let b = s.as_bytes();
        if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return Err(err);
        }
        let version = parse_hex(&b[..2]).ok_or(err.clone())?;
        if version == 0xff || (version == 0 && b.len() != 55) || (b.len() > 55 && b[55] != b'-') {
            return Err(err);
        }
        let trace = parse_hex(&b[3..35])
            .and_then(TraceId::from_u128)
            .ok_or(err.clone())?;
        let parent = parse_hex(&b[36..52])
            .and_then(|v| u64::try_from(v).ok())
            .and_then(SpanId::from_u64)
            .ok_or(err.clone())?;
        let flags = parse_hex(&b[53..55])
            .and_then(|v| u8::try_from(v).ok())
            .ok_or(err)?;
        Ok(TraceParent::new(trace, parent, flags))
    }
}

/// Lower-case hex digits (at most 32) as a number.
fn parse_hex(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |acc, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u128::from(v))
    })
}

/// A fresh request id: a random UUID (version 4) as text.
pub(crate) fn new_request_id() -> HeaderValue {
    let v = fastrand::u128(..) & !(0xf << 76) & !(0x3 << 62) | (0x4 << 76) | (0x2 << 62);
    let bytes = v.to_be_bytes();
    let mut buf = [0u8; 36];
    let mut at = 0;
    for (i, chunk) in [
        &bytes[0..4],
        &bytes[4..6],
        &bytes[6..8],
        &bytes[8..10],
        &bytes[10..16],
    ]
    .iter()
    .enumerate()
    {
        if i > 0 {
            buf[at] = b'-';
            at += 1;
        }
        write_hex(&mut buf[at..at + chunk.len() * 2], chunk);
        at += chunk.len() * 2;
    }
    header_value(&buf)
}

/// The context a logical span hands to the attempts below it, as a private request extension.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Logical {
    pub(crate) parent: TraceParent,
}

/// The trace an attempt or logical call joins, and where it came from.
#[derive(Debug, Clone)]
pub(crate) struct Joined {
    pub(crate) parent: TraceParent,
    /// `tracestate` to send, from the OpenTelemetry context.
    pub(crate) tracestate: Option<HeaderValue>,
    /// Whether the ids came from OpenTelemetry (then `trace_id` is not recorded as a field:
    /// the exporter has it).
    pub(crate) from_otel: bool,
}

/// Picks the trace for a new span: the span's OpenTelemetry context when it has a valid one,
/// else a logical parent's trace, else a `traceparent` the caller set, else a new trace.
/// The span id is always new (the span's own). With `inject`, writes the result into the
/// headers (one hash of `traceparent` for the read and the write).
pub(crate) fn join(
    span: &tracing::Span,
    logical: Option<&Logical>,
    headers: &mut HeaderMap,
    inject: bool,
) -> Joined {
    if let Some(joined) = otel::from_span(span) {
        if inject {
            headers.insert(TRACEPARENT.clone(), joined.parent.to_header_value());
            if let Some(state) = &joined.tracestate {
                headers.insert(TRACESTATE.clone(), state.clone());
            }
        }
        return joined;
    }
    let own = SpanId::random();
    let continue_or_start = |theirs: Option<&HeaderValue>| {
        match theirs
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<TraceParent>().ok())
        {
            Some(tp) => tp.with_parent(own),
            // We record our ids in the spans: the trace is "maybe recorded", sampled.
            None => TraceParent::new(TraceId::random(), own, 1),
        }
    };
    let parent = match (logical, inject) {
        (Some(l), false) => l.parent.with_parent(own),
        (Some(l), true) => {
            let parent = l.parent.with_parent(own);
            headers.insert(TRACEPARENT.clone(), parent.to_header_value());
            parent
        }
        (None, false) => continue_or_start(headers.get(&TRACEPARENT)),
        // One lookup of `traceparent` for the read and the write.
        (None, true) => match headers.entry(&TRACEPARENT) {
            Entry::Occupied(mut theirs) => {
                let parent = continue_or_start(Some(theirs.get()));
                theirs.insert(parent.to_header_value());
                parent
            }
            Entry::Vacant(slot) => {
                let parent = continue_or_start(None);
                slot.insert(parent.to_header_value());
                parent
            }
        },
    };
    Joined {
        parent,
        tracestate: None,
        from_otel: false,
    }
}

/// Sets a request id header unless the request has one.
pub(crate) fn ensure_request_id(headers: &mut HeaderMap, name: &HeaderName) {
    if !headers.contains_key(name) {
        headers.insert(name.clone(), new_request_id());
    }
}

/// With the `opentelemetry` feature and an OpenTelemetry layer recording `span`: sets each
/// allow-listed header as an `http.{request,response}.header.<name>` string-array attribute
/// and returns `true`. Otherwise does nothing and returns `false`.
pub(crate) fn otel_headers(
    span: &tracing::Span,
    which: crate::service::RequestOrResponse,
    names: &[HeaderName],
    headers: &HeaderMap,
) -> bool {
    otel::headers(span, which, names, headers)
}

#[cfg(feature = "opentelemetry")]
mod otel {
    use super::{Joined, SpanId, TraceId, TraceParent};
    use crate::service::RequestOrResponse;
    use http::{HeaderMap, HeaderName};
    use opentelemetry::{Array, StringValue, Value};

    pub(super) fn headers(
        span: &tracing::Span,
        which: RequestOrResponse,
        names: &[HeaderName],
        headers: &HeaderMap,
    ) -> bool {
        if !span.context().span().span_context().is_valid() {
            return false;
        }
        let prefix = match which {
            RequestOrResponse::Request => "http.request.header.",
            RequestOrResponse::Response => "http.response.header.",
        };
        for name in names {
            let values: Vec<StringValue> = headers
                .get_all(name)
                .iter()
                .map(|v| StringValue::from(crate::redact::header_value_text(name, v)))
                .collect();
            if !values.is_empty() {
                span.set_attribute(
                    format!("{prefix}{}", name.as_str()),
                    Value::Array(Array::String(values)),
                );
            }
        }
        true
    }
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    /// The OpenTelemetry context of `span` (or of the current span when `span` is disabled).
    pub(super) fn from_span(span: &tracing::Span) -> Option<Joined> {
        let cx = if span.is_disabled() {
            tracing::Span::current().context()
        } else {
            span.context()
        };
        let otel_span = cx.span();
        let sc = otel_span.span_context();
        if !sc.is_valid() {
            return None;
        }
        let trace_id = TraceId::from_u128(u128::from_be_bytes(sc.trace_id().to_bytes()))?;
        let span_id = SpanId::from_u64(u64::from_be_bytes(sc.span_id().to_bytes()))?;
        let state = sc.trace_state().header();
        let tracestate = if state.is_empty() {
            None
        } else {
            http::HeaderValue::from_str(&state).ok()
        };
        Some(Joined {
            parent: TraceParent::new(trace_id, span_id, sc.trace_flags().to_u8()),
            tracestate,
            from_otel: true,
        })
    }
}

#[cfg(not(feature = "opentelemetry"))]
mod otel {
    use super::Joined;
    use crate::service::RequestOrResponse;
    use http::{HeaderMap, HeaderName};

    pub(super) fn headers(
        _span: &tracing::Span,
        _which: RequestOrResponse,
        _names: &[HeaderName],
        _headers: &HeaderMap,
    ) -> bool {
        false
    }

    pub(super) fn from_span(_span: &tracing::Span) -> Option<Joined> {
        None
    }
}

#[cfg(test)]
mod tests {
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
    fn joins_logical_then_header_then_new() {
        let span = tracing::Span::none();
        let mut headers = HeaderMap::new();
        let fresh = join(&span, None, &mut headers, false);
        assert!(!fresh.from_otel && fresh.parent.is_sampled());

        let theirs: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
            .parse()
            .unwrap();
        headers.insert(TRACEPARENT.clone(), theirs.to_header_value());
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
        fn hex_is_lower_case_hex(v in any::<u64>()) {
            let expected = format!("{v:016x}");
            prop_assert_eq!(&hex_u64(v)[..], expected.as_bytes());
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
}
