//! W3C Trace Context (`traceparent`, `tracestate`) and `x-request-id` propagation.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::str::FromStr;

use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::TraceContext;

// Constants, as `http`'s own names are: used by value, a name is built in place, with no
// reference count or vtable call to clone it for a header-map insert.
/// The `traceparent` header (W3C Trace Context).
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The `tracestate` header (W3C Trace Context).
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// The `x-request-id` header, the default name for request ids.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A W3C trace id: 16 bytes, never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(u128);

impl TraceId {
    /// A random trace id.
    pub fn random() -> TraceId {
        let [hi, lo] = random_words();
        TraceId::from_words(hi, lo)
    }

    /// The id of two random words; an all-zero draw (one in 2^128) becomes 1.
    fn from_words(hi: u64, lo: u64) -> TraceId {
        TraceId((u128::from(hi) << 64 | u128::from(lo)).max(1))
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
        let [v] = random_words();
        SpanId::from_word(v)
    }

    /// The id of a random word; zero (one in 2^64) becomes 1.
    fn from_word(v: u64) -> SpanId {
        SpanId(v.max(1))
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

    /// A new trace: random trace and parent ids, flags `01` (sampled) when it is `recorded`
    /// on this side, else `00`.
    pub(crate) fn random(recorded: bool) -> TraceParent {
        let [hi, lo, parent] = random_words();
        let flags = u8::from(recorded);
        TraceParent::new(
            TraceId::from_words(hi, lo),
            SpanId::from_word(parent),
            flags,
        )
    }

    /// The same trace with another parent id.
    pub const fn with_parent(self, parent_id: SpanId) -> TraceParent {
        TraceParent { parent_id, ..self }
    }

    /// The `traceparent` a request carries, if it carries a valid one.
    pub fn from_headers(headers: &HeaderMap) -> Option<TraceParent> {
        headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse().ok())
    }

    /// The header value, 55 bytes.
    #[inline]
    pub fn to_header_value(&self) -> HeaderValue {
        header_value(|buf| self.write(buf)).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Sets `traceparent` in `headers` to this, replacing any there; returns the first value
    /// it replaced.
    #[inline]
    fn insert_into(&self, headers: &mut HeaderMap) -> Option<HeaderValue> {
        match header_value(|buf| self.write(buf)) {
            Ok(value) => headers.insert(TRACEPARENT, value),
            Err(_) => None,
        }
    }

    /// Writes `00-<trace id>-<parent id>-<flags>`.
    fn write(&self, buf: &mut [u8; 55]) {
        buf[..3].copy_from_slice(b"00-");
        write_hex(&mut buf[3..35], &self.trace_id.0.to_be_bytes());
        buf[35] = b'-';
        write_hex(&mut buf[36..52], &self.parent_id.0.to_be_bytes());
        buf[52] = b'-';
        write_hex(&mut buf[53..], &[self.flags]);
    }
}

/// The two lower-case hex digits of each byte: one load per byte, where computing them (even
/// a word at a time) takes more instructions; this runs for every request.
static HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0; 2]; 256];
    let mut b = 0;
    while b < 256 {
        pairs[b] = [DIGITS[b >> 4], DIGITS[b & 0xf]];
        b += 1;
    }
    pairs
};

thread_local! {
    /// The state of this thread's id generator (`fastrand`'s WyRand), zero until first use.
    /// Initialised by a constant and without a destructor, so that reaching it is a plain
    /// thread-local load, and one reach serves all the ids of a trace.
    static ID_STATE: Cell<u64> = const { Cell::new(0) };
}

/// `N` random words from this thread's generator, seeded on first use from `fastrand`'s
/// thread generator (itself seeded from the OS's entropy).
fn random_words<const N: usize>() -> [u64; N] {
    let state = ID_STATE.try_with(Cell::get).unwrap_or(0);
    let mut rng = fastrand::Rng::with_seed(if state == 0 { fastrand::u64(..) } else { state });
    let words = std::array::from_fn(|_| rng.u64(..));
    // A cell without a destructor is never torn down; were it gone, the next call would seed
    // again.
    let _ = ID_STATE.try_with(|s| s.set(rng.get_seed()));
    words
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

/// A header value of `N` ASCII hex digits and dashes, written by `write` into a slice cut
/// from this thread's arena, marked sensitive. (Only hex digits and dashes: always valid.)
#[inline(always)]
fn header_value<const N: usize>(
    write: impl FnOnce(&mut [u8; N]),
) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    // Cut the slot, then write it: the value is written where it stays, not copied in.
    let cut = ARENA.try_with(|arena| {
        let mut arena = arena.try_borrow_mut().ok()?;
        if arena.len() < N {
            *arena = BytesMut::zeroed(ARENA_CHUNK.max(N));
        }
        Some(arena.split_to(N))
    });
    let mut value = match cut {
        Ok(Some(mut slot)) => {
            if let Ok(buf) = <&mut [u8; N]>::try_from(&mut slot[..]) {
                write(buf);
            }
            HeaderValue::from_maybe_shared(slot.freeze())
        }
        // During thread teardown: a value of its own.
        _ => own_header_value(write),
    };
    // A value new on every request: HTTP/2 gains nothing from indexing it (HPACK never-indexed
    // literal), and searching and churning the dynamic table costs both ends.
    if let Ok(value) = &mut value {
        value.set_sensitive(true);
    }
    value
}

/// A header value in an allocation of its own, for when the arena is gone.
#[cold]
fn own_header_value<const N: usize>(
    write: impl FnOnce(&mut [u8; N]),
) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    let mut buf = [0; N];
    write(&mut buf);
    HeaderValue::from_bytes(&buf)
}

/// `bytes` as lower-case hex digits into `out`, two per byte.
fn write_hex(out: &mut [u8], bytes: &[u8]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(*b)]);
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
    let [hi, lo] = random_words();
    let v = (u128::from(hi) << 64 | u128::from(lo)) & !(0xf << 76) & !(0x3 << 62)
        | (0x4 << 76)
        | (0x2 << 62);
    let bytes = v.to_be_bytes();
    header_value(|buf: &mut [u8; 36]| {
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
    })
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The context a logical span hands to the attempts below it, as a private request extension.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Logical {
    pub(crate) parent: TraceParent,
}

/// The trace an attempt or logical call joins, and where it came from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Joined {
    pub(crate) parent: TraceParent,
    /// Whether the ids came from OpenTelemetry (then `trace_id` is not recorded as a field:
    /// the exporter has it).
    pub(crate) from_otel: bool,
}

/// Picks the trace for a new span: the span's OpenTelemetry context when it has a valid one,
/// else a logical parent's trace, else a `traceparent` the caller set, else a new trace.
/// Unless `when` is [`TraceContext::Off`], writes the result into the headers, replacing any
/// `traceparent` (and, from OpenTelemetry, `tracestate`) there.
///
/// The layer takes part in the trace (a span id of its own, a new trace when there is none)
/// when its span is recorded or `when` is [`TraceContext::Always`]. Otherwise it starts
/// nothing: a logical parent's trace is sent as the logical layer made it, a `traceparent`
/// the caller set passes untouched, and with neither there is no trace (`None`).
pub(crate) fn join(
    span: &tracing::Span,
    logical: Option<&Logical>,
    headers: &mut HeaderMap,
    when: TraceContext,
) -> Option<Joined> {
    let inject = when != TraceContext::Off;
    if let Some((parent, tracestate)) = otel::from_span(span) {
        if inject {
            parent.insert_into(headers);
            if let Some(state) = tracestate {
                headers.insert(TRACESTATE, state);
            }
        }
        return Some(Joined {
            parent,
            from_otel: true,
        });
    }
    let recorded = !span.is_disabled();
    let takes_part = recorded || when == TraceContext::Always;
    let parent = match logical {
        Some(l) if takes_part => l.parent.with_parent(SpanId::random()),
        Some(l) => l.parent,
        None if !takes_part => return None,
        None if inject => {
            // Most requests carry no `traceparent`: insert a new trace straight away (one
            // hash of the name, no entry) and look at what it replaced. A valid one is
            // continued, in a second insert.
            let fresh = TraceParent::random(recorded);
            return Some(Joined {
                parent: match fresh
                    .insert_into(headers)
                    .and_then(|theirs| parse_header(&theirs))
                {
                    None => fresh,
                    Some(theirs) => {
                        let parent = theirs.with_parent(fresh.parent_id);
                        parent.insert_into(headers);
                        parent
                    }
                },
                from_otel: false,
            });
        }
        // Not injecting: a caller's trace is continued in the span only.
        None => match headers.get(TRACEPARENT).and_then(parse_header) {
            Some(theirs) => theirs.with_parent(SpanId::random()),
            None => TraceParent::random(recorded),
        },
    };
    if inject {
        parent.insert_into(headers);
    }
    Some(Joined {
        parent,
        from_otel: false,
    })
}

/// A valid `traceparent` value.
fn parse_header(value: &HeaderValue) -> Option<TraceParent> {
    value.to_str().ok()?.parse().ok()
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
    use super::{SpanId, TraceId, TraceParent};
    use crate::service::RequestOrResponse;
    use http::{HeaderMap, HeaderName, HeaderValue};
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

    /// The OpenTelemetry context of `span` (or of the current span when `span` is disabled):
    /// its ids and flags, and its `tracestate` when not empty.
    pub(super) fn from_span(span: &tracing::Span) -> Option<(TraceParent, Option<HeaderValue>)> {
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
            HeaderValue::from_str(&state).ok()
        };
        Some((
            TraceParent::new(trace_id, span_id, sc.trace_flags().to_u8()),
            tracestate,
        ))
    }
}

#[cfg(not(feature = "opentelemetry"))]
mod otel {
    use super::TraceParent;
    use crate::service::RequestOrResponse;
    use http::{HeaderMap, HeaderName, HeaderValue};

    pub(super) fn headers(
        _span: &tracing::Span,
        _which: RequestOrResponse,
        _names: &[HeaderName],
        _headers: &HeaderMap,
    ) -> bool {
        false
    }

    pub(super) fn from_span(_span: &tracing::Span) -> Option<(TraceParent, Option<HeaderValue>)> {
        None
    }
}

#[cfg(test)]
mod tests;
