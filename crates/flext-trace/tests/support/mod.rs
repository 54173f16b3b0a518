//! Test support: a subscriber layer that captures spans and events, and a Prometheus text
//! parser.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};

use http::{Request, Response};
use tower::service_fn;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// A service that answers at once with `status`, echoing the request headers it got.
pub fn answering(
    status: u16,
) -> impl tower::Service<
    Request<()>,
    Response = Response<()>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<()>, Infallible>> + Send,
> + Clone {
    service_fn(move |request: Request<()>| async move {
        let mut response = Response::builder()
            .status(status)
            .version(http::Version::HTTP_2)
            .body(())
            .unwrap();
        *response.headers_mut() = request.headers().clone();
        Ok::<_, Infallible>(response)
    })
}

/// Polls a future once with a no-op waker.
pub fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
    let mut cx = TaskContext::from_waker(Waker::noop());
    pin!(future).poll(&mut cx)
}

pub fn ready<T>(poll: Poll<T>) -> T {
    match poll {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("pending"),
    }
}

/// A span as the subscriber saw it.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub id: u64,
    pub name: &'static str,
    pub level: Level,
    pub parent: Option<u64>,
    pub fields: BTreeMap<String, String>,
    pub closed: bool,
}

impl SpanRecord {
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }
}

/// An event as the subscriber saw it.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub target: String,
    pub level: Level,
    pub parent: Option<u64>,
    pub fields: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct Store {
    spans: Vec<SpanRecord>,
    events: Vec<EventRecord>,
}

/// Captures every span (with its fields as text) and every event.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    store: Arc<Mutex<Store>>,
}

impl Capture {
    pub fn spans(&self) -> Vec<SpanRecord> {
        self.store.lock().unwrap().spans.clone()
    }

    /// The events of flext-trace (not those of the client below it).
    pub fn events(&self) -> Vec<EventRecord> {
        let store = self.store.lock().unwrap();
        store
            .events
            .iter()
            .filter(|e| e.target.starts_with("flext_trace"))
            .cloned()
            .collect()
    }

    /// Installs a registry with this layer as the thread's default subscriber.
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(self.clone());
        tracing::subscriber::set_default(subscriber)
    }

    /// Every span and every flext-trace event, as text, to search for leaked secrets.
    pub fn all_text(&self) -> String {
        format!("{:?} {:?}", self.spans(), self.events())
    }
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S> Layer<S> for Capture
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let parent = ctx
            .span(id)
            .and_then(|s| s.parent())
            .map(|p| p.id().into_u64());
        self.store.lock().unwrap().spans.push(SpanRecord {
            id: id.into_u64(),
            name: attrs.metadata().name(),
            level: *attrs.metadata().level(),
            parent,
            fields,
            closed: false,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut store = self.store.lock().unwrap();
        if let Some(span) = store.spans.iter_mut().rev().find(|s| s.id == id.into_u64()) {
            values.record(&mut Fields(&mut span.fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let parent = ctx.event_span(event).map(|s| s.id().into_u64());
        self.store.lock().unwrap().events.push(EventRecord {
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            parent,
            fields,
        });
    }

    fn on_close(&self, id: Id, _ctx: Context<'_, S>) {
        let mut store = self.store.lock().unwrap();
        if let Some(span) = store.spans.iter_mut().rev().find(|s| s.id == id.into_u64()) {
            span.closed = true;
        }
    }
}

/// Asserts a `traceparent` value is well formed: `00-<32 hex>-<16 hex>-<2 hex>`, lower-case,
/// ids not all zero. Returns the trace id.
pub fn check_traceparent(value: &str) -> String {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    assert_eq!(parts[0], "00", "{value}");
    assert!(
        hex(parts[1], 32) && parts[1].bytes().any(|b| b != b'0'),
        "{value}"
    );
    assert!(
        hex(parts[2], 16) && parts[2].bytes().any(|b| b != b'0'),
        "{value}"
    );
    assert!(hex(parts[3], 2), "{value}");
    parts[1].to_owned()
}

/// One sample line of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A strict-enough parser of the Prometheus text format: `# HELP` and `# TYPE` lines, then
/// samples `name{label="value",...} value`, each sample belonging to a declared family.
/// Returns the families' types and the samples; panics with the line on anything else.
pub fn parse_prometheus(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut types = BTreeMap::new();
    let mut helps = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect(line);
            assert!(is_metric_name(name), "{line}");
            assert!(
                helps.insert(name.to_owned(), help.to_owned()).is_none(),
                "{line}"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(line);
            assert!(is_metric_name(name), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{line}"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "{line}");
        let name_end = line.find(['{', ' ']).expect(line);
        let name = &line[..name_end];
        assert!(is_metric_name(name), "{line}");
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let end;
            loop {
                let (start, c) = chars.next().expect(line);
                if c == '}' {
                    end = Some(start + 1);
                    break;
                }
                let eq = body[start..].find('=').expect(line) + start;
                let label = &body[start..eq];
                assert!(is_metric_name(label) && !label.contains(':'), "{line}");
                while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                    chars.next();
                }
                assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                let mut value = String::new();
                loop {
                    match chars.next().expect(line).1 {
                        '\\' => match chars.next().expect(line).1 {
                            'n' => value.push('\n'),
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            other => panic!("bad escape {other} in {line}"),
                        },
                        '"' => break,
                        c => value.push(c),
                    }
                }
                assert!(labels.insert(label.to_owned(), value).is_none(), "{line}");
                match chars.peek() {
                    Some((_, ',')) => {
                        chars.next();
                    }
                    Some((_, '}')) => {}
                    _ => panic!("expected , or }} in {line}"),
                }
            }
            rest = &body[end.expect(line)..];
        }
        let value = rest.strip_prefix(' ').expect(line);
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample of an undeclared family: {line}"
        );
        assert!(helps.contains_key(family), "family without HELP: {line}");
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    (types, samples)
}

fn is_metric_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Checks every histogram in parsed samples: buckets cumulative and ending in `+Inf` equal to
/// `_count`. Returns the number of histogram series checked.
pub fn check_histograms(samples: &[Sample], family: &str) -> usize {
    type Labels = Vec<(String, String)>;
    let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<Labels, f64> = BTreeMap::new();
    for s in samples {
        let mut labels = s.labels.clone();
        if s.name == format!("{family}_bucket") {
            let le = labels.remove("le").expect("bucket without le");
            let le: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            series
                .entry(labels.into_iter().collect())
                .or_default()
                .push((le, s.value));
        } else if s.name == format!("{family}_count") {
            counts.insert(labels.into_iter().collect(), s.value);
        }
    }
    for (labels, buckets) in &series {
        assert!(
            buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "{buckets:?}"
        );
        let last = buckets.last().unwrap();
        assert_eq!(last.0, f64::INFINITY);
        assert_eq!(Some(&last.1), counts.get(labels), "{labels:?}");
    }
    series.len()
}
