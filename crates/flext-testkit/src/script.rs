//! The step language: what the server does for the n-th request of a script.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};

/// Largest `body=` a step may ask for, so that a typo cannot exhaust memory.
pub(crate) const MAX_BODY: u64 = 64 * 1024 * 1024;
/// Largest `chunks=` a step may ask for.
pub(crate) const MAX_CHUNKS: u32 = 65_536;
/// Largest `retry-after-date=`: a century, far below httpdate's year-9999 limit.
const MAX_RETRY_AFTER_DATE: u64 = 100 * 365 * 24 * 3600;

/// A parsed fault script: a list of steps, the n-th request executes step n.
///
/// Once the list is exhausted the last step repeats. Parse one with
/// [`str::parse`] or [`Script::parse`]; [`Display`](fmt::Display) writes it back in the
/// same language, so `s.to_string().parse() == Ok(s)`.
///
/// # Language
///
/// Steps are separated by `,`; each step is an action followed by `;`-separated options.
/// Whitespace around steps, actions and options is ignored; names are case-insensitive.
///
/// | action | response |
/// |---|---|
/// | `200`, `503`, ... (200-999) | that status, body `ok` for 2xx, the reason phrase otherwise |
/// | `echo` | 200 with a JSON description of the request |
/// | `drop` | close the connection without responding |
/// | `reset` | HTTP/2: `RST_STREAM(REFUSED_STREAM)`; HTTP/1.1: like `drop` |
/// | `goaway` | 200, then close the connection gracefully (like `200;close`) |
/// | `garbage` | HTTP/1.1: 256 fixed pseudo-random non-HTTP bytes (all >= 0x80), then close |
/// | `bad-status` | HTTP/1.1: `HTTP/1.1 abc OK` and an empty header block, then close |
/// | `huge-headers` | HTTP/1.1: `200` with a header block over 1 MiB (17 headers of 64 KiB), then close |
/// | `truncated` | HTTP/1.1: `200` with `content-length: 100` and 10 body bytes, then close |
/// | `wrong-length` | HTTP/1.1: `200` with `content-length: 5` and 50 body bytes, then close |
///
/// | option | effect |
/// |---|---|
/// | `retry-after=5` | `Retry-After: 5` |
/// | `retry-after-date=5` | `Retry-After` as an HTTP-date 5 s after the server's wall clock now |
/// | `delay=150ms`, `delay=2s` | wait before the response head (or before `drop` / `reset`) |
/// | `body=1024` | a body of that many bytes of a fixed pattern (at most 64 MiB) |
/// | `chunks=4` | stream the body in that many chunks (at most 65536) |
/// | `chunk-delay=50ms` | wait between two chunks |
/// | `close` | close the connection after this response: HTTP/1.1 `Connection: close`, HTTP/2 GOAWAY |
/// | `header=Name:Value` | an extra response header; may repeat |
///
/// The last five are malformed responses: the server stops serving HTTP on the connection,
/// writes those bytes on the socket (inside TLS with [`Builder::tls`](crate::Builder::tls)),
/// shuts down its write side and closes. Over HTTP/2 they act like `reset`. Of the options
/// only `delay` applies to them.
///
/// Every option but `header` may appear once per step. Options that do not apply to the
/// action (`body` on `drop`, say) are accepted and ignored; `body` replaces even `echo`'s
/// JSON. A `body=` is `abc...z` repeated. A body is sent in at most as many
/// chunks as it has bytes.
///
/// `echo` answers `application/json` with `method`, `uri`, `path`, `query` (or `null`),
/// `version` (`"HTTP/1.1"`, `"HTTP/2.0"`), `headers` as `[name, value]` pairs in order with
/// repeats, `body` (UTF-8, lossy), `body_len`, `trailers` as pairs when the request had
/// any, and `connection`, the server's number for the connection; a test reads it back
/// as an [`Echoed`](crate::Echoed).
///
/// ```
/// use flext_testkit::Script;
///
/// let script: Script = "503;retry-after=1, 503, 200;body=64;chunks=4;chunk-delay=10ms".parse()?;
/// assert_eq!(script.len(), 3);
/// assert_eq!(script.to_string(), "503;retry-after=1,503,200;body=64;chunks=4;chunk-delay=10ms");
/// # Ok::<(), flext_testkit::ScriptError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    steps: Vec<Step>,
}

impl Script {
    /// Parses a script; see the [type docs](Script) for the language.
    pub fn parse(s: &str) -> Result<Self, ScriptError> {
        s.parse()
    }

    /// The number of steps (at least one).
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Always `false`: a script has at least one step. Here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The step for the `n`-th request (1-based); the last step repeats.
    pub(crate) fn step(&self, n: u64) -> &Step {
        let index = usize::try_from(n.saturating_sub(1)).unwrap_or(usize::MAX);
        let last = self.steps.len().saturating_sub(1);
        &self.steps[index.min(last)]
    }
}

impl FromStr for Script {
    type Err = ScriptError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(ScriptError::new(0, s, Kind::Empty));
        }
        let steps = s
            .split(',')
            .enumerate()
            .map(|(i, text)| parse_step(text).map_err(|kind| ScriptError::new(i + 1, text, kind)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Script { steps })
    }
}

impl fmt::Display for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{step}")?;
        }
        Ok(())
    }
}

/// One step: an action and its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) action: Action,
    pub(crate) options: Options,
}

impl Step {
    /// A plain status response with no options.
    pub(crate) fn status(status: StatusCode) -> Self {
        Step {
            action: Action::Status(status),
            options: Options::default(),
        }
    }
}

/// What a step does with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Status(StatusCode),
    Echo,
    Drop,
    Reset,
    GoAway,
    Malformed(Malformed),
}

/// A malformed HTTP/1.1 response, written on the raw socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    Garbage,
    BadStatus,
    HugeHeaders,
    Truncated,
    WrongLength,
}

impl Malformed {
    pub(crate) const ALL: [Malformed; 5] = [
        Malformed::Garbage,
        Malformed::BadStatus,
        Malformed::HugeHeaders,
        Malformed::Truncated,
        Malformed::WrongLength,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Malformed::Garbage => "garbage",
            Malformed::BadStatus => "bad-status",
            Malformed::HugeHeaders => "huge-headers",
            Malformed::Truncated => "truncated",
            Malformed::WrongLength => "wrong-length",
        }
    }
}

/// `Retry-After` in one of its two forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryAfter {
    /// Delta seconds.
    Seconds(u64),
    /// An HTTP-date this many seconds after now.
    DateIn(u64),
}

/// The options of a step; each at most once, except headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) retry_after: Option<RetryAfter>,
    pub(crate) delay: Option<Duration>,
    pub(crate) body: Option<u64>,
    pub(crate) chunks: Option<u32>,
    pub(crate) chunk_delay: Option<Duration>,
    pub(crate) close: bool,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
}

fn parse_step(text: &str) -> Result<Step, Kind> {
    let mut parts = text.split(';');
    let action = parts.next().unwrap_or_default().trim();
    if action.is_empty() {
        return Err(Kind::EmptyStep);
    }
    let action = parse_action(action)?;
    let mut options = Options::default();
    for option in parts {
        parse_option(option.trim(), &mut options)?;
    }
    Ok(Step { action, options })
}

fn parse_action(s: &str) -> Result<Action, Kind> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u16>()
            .ok()
            .filter(|code| (200..=999).contains(code))
            .and_then(|code| StatusCode::from_u16(code).ok())
            .map(Action::Status)
            .ok_or_else(|| Kind::InvalidStatus(s.to_owned()));
    }
    match s.to_ascii_lowercase().as_str() {
        "echo" => Ok(Action::Echo),
        "drop" => Ok(Action::Drop),
        "reset" => Ok(Action::Reset),
        "goaway" => Ok(Action::GoAway),
        lower => Malformed::ALL
            .into_iter()
            .find(|m| m.name() == lower)
            .map(Action::Malformed)
            .ok_or_else(|| Kind::UnknownAction(s.to_owned())),
    }
}

fn parse_option(s: &str, options: &mut Options) -> Result<(), Kind> {
    if s.is_empty() {
        return Err(Kind::EmptyOption);
    }
    let (name, value) = match s.split_once('=') {
        Some((name, value)) => (name.trim().to_ascii_lowercase(), Some(value.trim())),
        None => (s.to_ascii_lowercase(), None),
    };
    let name = name.as_str();
    match name {
        "close" => {
            if value.is_some() {
                return Err(Kind::UnexpectedValue("close"));
            }
            set(&mut options.close, true, "close")
        }
        "retry-after" => {
            let secs = parse_u64(need(value, "retry-after")?, "retry-after")?;
            set_once(
                &mut options.retry_after,
                RetryAfter::Seconds(secs),
                "retry-after",
            )
        }
        "retry-after-date" => {
            let secs = parse_u64(need(value, "retry-after-date")?, "retry-after-date")?;
            if secs > MAX_RETRY_AFTER_DATE {
                return Err(Kind::TooLarge("retry-after-date", MAX_RETRY_AFTER_DATE));
            }
            set_once(
                &mut options.retry_after,
                RetryAfter::DateIn(secs),
                "retry-after",
            )
        }
        "delay" => {
            let d = parse_duration(need(value, "delay")?, "delay")?;
            set_once(&mut options.delay, d, "delay")
        }
        "chunk-delay" => {
            let d = parse_duration(need(value, "chunk-delay")?, "chunk-delay")?;
            set_once(&mut options.chunk_delay, d, "chunk-delay")
        }
        "body" => {
            let n = parse_u64(need(value, "body")?, "body")?;
            if n > MAX_BODY {
                return Err(Kind::TooLarge("body", MAX_BODY));
            }
            set_once(&mut options.body, n, "body")
        }
        "chunks" => {
            let n = parse_u64(need(value, "chunks")?, "chunks")?;
            if n == 0 {
                return Err(Kind::InvalidValue("chunks", "must be at least 1".into()));
            }
            let n = u32::try_from(n)
                .ok()
                .filter(|n| *n <= MAX_CHUNKS)
                .ok_or(Kind::TooLarge("chunks", u64::from(MAX_CHUNKS)))?;
            set_once(&mut options.chunks, n, "chunks")
        }
        "header" => {
            let value = need(value, "header")?;
            let (name, value) = value
                .split_once(':')
                .ok_or_else(|| Kind::InvalidValue("header", "expected `Name:Value`".into()))?;
            let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
                Kind::InvalidValue("header", format!("invalid header name `{}`", name.trim()))
            })?;
            let value = HeaderValue::from_str(value.trim())
                .ok()
                // Only text values, so that Display can write them back.
                .filter(|v| v.to_str().is_ok())
                .ok_or_else(|| {
                    Kind::InvalidValue("header", format!("invalid header value `{}`", value.trim()))
                })?;
            options.headers.push((name, value));
            Ok(())
        }
        _ => Err(Kind::UnknownOption(s.to_owned())),
    }
}

fn need<'a>(value: Option<&'a str>, name: &'static str) -> Result<&'a str, Kind> {
    value.ok_or(Kind::MissingValue(name))
}

fn set(slot: &mut bool, value: bool, name: &'static str) -> Result<(), Kind> {
    if *slot {
        return Err(Kind::Duplicate(name));
    }
    *slot = value;
    Ok(())
}

fn set_once<T>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), Kind> {
    if slot.is_some() {
        return Err(Kind::Duplicate(name));
    }
    *slot = Some(value);
    Ok(())
}

fn parse_u64(s: &str, option: &'static str) -> Result<u64, Kind> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Kind::InvalidValue(
            option,
            format!("`{s}` is not a non-negative integer"),
        ));
    }
    s.parse()
        .map_err(|_| Kind::InvalidValue(option, format!("`{s}` is too large")))
}

fn parse_duration(s: &str, option: &'static str) -> Result<Duration, Kind> {
    let (digits, millis_per_unit) = if let Some(ms) = s.strip_suffix("ms") {
        (ms, 1)
    } else if let Some(secs) = s.strip_suffix('s') {
        (secs, 1000)
    } else {
        return Err(Kind::InvalidValue(
            option,
            format!("`{s}` needs a unit, `ms` or `s` (like `150ms`)"),
        ));
    };
    let n = parse_u64(digits.trim(), option)?;
    n.checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| Kind::InvalidValue(option, format!("`{s}` is too large")))
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.action {
            Action::Status(status) => write!(f, "{}", status.as_u16())?,
            Action::Echo => f.write_str("echo")?,
            Action::Drop => f.write_str("drop")?,
            Action::Reset => f.write_str("reset")?,
            Action::GoAway => f.write_str("goaway")?,
            Action::Malformed(m) => f.write_str(m.name())?,
        }
        let o = &self.options;
        match o.retry_after {
            Some(RetryAfter::Seconds(s)) => write!(f, ";retry-after={s}")?,
            Some(RetryAfter::DateIn(s)) => write!(f, ";retry-after-date={s}")?,
            None => {}
        }
        if let Some(d) = o.delay {
            write!(f, ";delay={}", DisplayDuration(d))?;
        }
        if let Some(n) = o.body {
            write!(f, ";body={n}")?;
        }
        if let Some(n) = o.chunks {
            write!(f, ";chunks={n}")?;
        }
        if let Some(d) = o.chunk_delay {
            write!(f, ";chunk-delay={}", DisplayDuration(d))?;
        }
        if o.close {
            f.write_str(";close")?;
        }
        for (name, value) in &o.headers {
            // Values were checked to be text when parsed.
            write!(f, ";header={name}:{}", value.to_str().unwrap_or_default())?;
        }
        Ok(())
    }
}

/// Writes a millisecond duration in the largest exact unit.
struct DisplayDuration(Duration);

impl fmt::Display for DisplayDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms != 0 && ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

/// A script that could not be parsed: which step, and why.
///
/// The server answers a request whose `x-testkit-script` header does not parse with
/// `400 Bad Request` and this error's message as the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError {
    step: usize,
    text: String,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Empty,
    EmptyStep,
    EmptyOption,
    InvalidStatus(String),
    UnknownAction(String),
    UnknownOption(String),
    MissingValue(&'static str),
    UnexpectedValue(&'static str),
    InvalidValue(&'static str, String),
    TooLarge(&'static str, u64),
    Duplicate(&'static str),
}

impl ScriptError {
    fn new(step: usize, text: &str, kind: Kind) -> Self {
        ScriptError {
            step,
            text: text.trim().to_owned(),
            kind,
        }
    }

    /// The 1-based index of the offending step, or `None` when the script is empty.
    pub fn step(&self) -> Option<usize> {
        (self.step > 0).then_some(self.step)
    }
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.step > 0 {
            write!(f, "invalid script step {} `{}`: ", self.step, self.text)?;
        }
        match &self.kind {
            Kind::Empty => f.write_str("empty script"),
            Kind::EmptyStep => f.write_str("empty step"),
            Kind::EmptyOption => f.write_str("empty option"),
            Kind::InvalidStatus(s) => write!(f, "status `{s}` is not in 200..=999"),
            Kind::UnknownAction(s) => write!(
                f,
                "unknown action `{s}` (expected a status code, echo, drop, reset, goaway, \
                 garbage, bad-status, huge-headers, truncated or wrong-length)"
            ),
            Kind::UnknownOption(s) => write!(
                f,
                "unknown option `{s}` (expected retry-after, retry-after-date, delay, body, \
                 chunks, chunk-delay, close or header)"
            ),
            Kind::MissingValue(name) => write!(f, "option `{name}` needs a value"),
            Kind::UnexpectedValue(name) => write!(f, "option `{name}` takes no value"),
            Kind::InvalidValue(name, why) => write!(f, "option `{name}`: {why}"),
            Kind::TooLarge(name, max) => write!(f, "option `{name}` is larger than {max}"),
            Kind::Duplicate(name) => write!(f, "option `{name}` given twice"),
        }
    }
}

impl std::error::Error for ScriptError {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_documented_forms() {
        let s: Script = " 503 ; retry-after=5 , drop;delay=1s,ECHO,200;header=X-A: b c;close"
            .parse()
            .unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(
            s.step(1).action,
            Action::Status(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(s.step(1).options.retry_after, Some(RetryAfter::Seconds(5)));
        assert_eq!(s.step(2).action, Action::Drop);
        assert_eq!(s.step(2).options.delay, Some(Duration::from_secs(1)));
        assert_eq!(s.step(3).action, Action::Echo);
        assert_eq!(s.step(4).options.headers[0].1, "b c");
        assert!(s.step(4).options.close);
        // The last step repeats.
        assert_eq!(s.step(99), s.step(4));
        assert_eq!(s.step(0), s.step(1));
        assert_eq!(
            s.to_string(),
            "503;retry-after=5,drop;delay=1s,echo,200;close;header=x-a:b c"
        );
    }

    #[test]
    fn errors_name_the_step_and_the_reason() {
        let cases = [
            ("", None, "empty script"),
            ("200,,503", Some(2), "empty step"),
            ("200,", Some(2), "empty step"),
            ("99", Some(1), "status `99` is not in 200..=999"),
            ("1000", Some(1), "is not in 200..=999"),
            ("teapot", Some(1), "unknown action `teapot`"),
            ("200;delay=5", Some(1), "needs a unit"),
            ("200;delay=-5ms", Some(1), "not a non-negative integer"),
            (
                "200;delay=1ms;delay=2ms",
                Some(1),
                "option `delay` given twice",
            ),
            (
                "200;retry-after=1;retry-after-date=1",
                Some(1),
                "`retry-after` given twice",
            ),
            ("200;body", Some(1), "option `body` needs a value"),
            ("200;close=1", Some(1), "takes no value"),
            ("200;chunks=0", Some(1), "must be at least 1"),
            ("200;body=99999999999", Some(1), "larger than"),
            ("200;header=nocolon", Some(1), "expected `Name:Value`"),
            ("200;header=bad name:v", Some(1), "invalid header name"),
            ("200;frobnicate", Some(1), "unknown option `frobnicate`"),
            ("200;", Some(1), "empty option"),
        ];
        for (input, step, message) in cases {
            let err = input.parse::<Script>().unwrap_err();
            assert_eq!(err.step(), step, "{input}");
            assert!(err.to_string().contains(message), "{input}: {err}");
        }
    }

    fn duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            (0u64..100_000).prop_map(Duration::from_millis),
            (0u64..10_000).prop_map(Duration::from_secs),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        let action = prop_oneof![
            (200u16..1000).prop_map(|c| Action::Status(StatusCode::from_u16(c).unwrap())),
            Just(Action::Echo),
            Just(Action::Drop),
            Just(Action::Reset),
            Just(Action::GoAway),
            proptest::sample::select(Malformed::ALL.to_vec()).prop_map(Action::Malformed),
        ];
        let retry_after = proptest::option::of(prop_oneof![
            any::<u64>().prop_map(RetryAfter::Seconds),
            (0..=MAX_RETRY_AFTER_DATE).prop_map(RetryAfter::DateIn),
        ]);
        let header = (
            "[a-z][a-z0-9-]{0,10}",
            "[!-+\\--:<-~]([ !-+\\--:<-~]{0,8}[!-+\\--:<-~])?",
        )
            .prop_map(|(n, v)| {
                (
                    HeaderName::try_from(n).unwrap(),
                    HeaderValue::try_from(v).unwrap(),
                )
            });
        let options = (
            retry_after,
            proptest::option::of(duration()),
            proptest::option::of(0..=MAX_BODY),
            proptest::option::of(1..=MAX_CHUNKS),
            proptest::option::of(duration()),
            any::<bool>(),
            proptest::collection::vec(header, 0..3),
        )
            .prop_map(
                |(retry_after, delay, body, chunks, chunk_delay, close, headers)| Options {
                    retry_after,
                    delay,
                    body,
                    chunks,
                    chunk_delay,
                    close,
                    headers,
                },
            );
        (action, options).prop_map(|(action, options)| Step { action, options })
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(steps in proptest::collection::vec(step(), 1..5)) {
            let script = Script { steps };
            let text = script.to_string();
            prop_assert_eq!(text.parse::<Script>(), Ok(script));
        }

        #[test]
        fn never_panics_on_arbitrary_input(input in "\\PC{0,64}") {
            if let Ok(script) = input.parse::<Script>() {
                prop_assert_eq!(script.to_string().parse::<Script>(), Ok(script));
            }
        }

        #[test]
        fn never_panics_on_near_miss_input(
            input in "([0-9]{1,4}|echo|drop|reset|goaway|garbage|bad-status|huge-headers|\
                      truncated|wrong-length|x)(;(retry-after|retry-after-date|delay|\
                      body|chunks|chunk-delay|close|header)(=[0-9a-z:; ]{0,12})?){0,3}(,|;)?"
        ) {
            if let Ok(script) = input.parse::<Script>() {
                prop_assert_eq!(script.to_string().parse::<Script>(), Ok(script));
            }
        }
    }
}
