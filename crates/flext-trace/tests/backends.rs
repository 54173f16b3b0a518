//! The optional back-ends: the OpenTelemetry context and attributes (`opentelemetry`), the
//! `metrics` facade (`metrics`) and an OpenTelemetry meter (`opentelemetry-metrics`).

#![cfg(any(
    feature = "opentelemetry",
    feature = "metrics",
    feature = "opentelemetry-metrics"
))]

mod support;

use flext_trace::TraceLayer;
use http::Request;
use support::{Capture, answering, poll_once, ready};
use tower::{Layer, ServiceExt};

#[cfg(feature = "opentelemetry")]
mod otel_tracer {
    //! A minimal OpenTelemetry tracer that keeps the spans it ends, to see what an exporter
    //! would get.

    use std::borrow::Cow;
    use std::sync::{Arc, Mutex};
    use std::time::SystemTime;

    use opentelemetry::trace::{
        SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
        Tracer,
    };
    use opentelemetry::{Context, KeyValue};

    #[derive(Debug, Clone)]
    pub struct Ended {
        pub name: String,
        pub kind: Option<SpanKind>,
        pub context: SpanContext,
        pub parent_span_id: SpanId,
        pub attributes: Vec<KeyValue>,
        pub status: Status,
    }

    impl Ended {
        pub fn attr(&self, key: &str) -> Option<String> {
            self.attributes
                .iter()
                .rev()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.to_string())
        }
    }

    #[derive(Debug, Clone, Default)]
    pub struct TestTracer(pub Arc<Mutex<Vec<Ended>>>);

    #[derive(Debug)]
    pub struct TestSpan {
        log: Arc<Mutex<Vec<Ended>>>,
        ended: Ended,
    }

    impl Tracer for TestTracer {
        type Span = TestSpan;

        fn build_with_context(&self, builder: SpanBuilder, parent_cx: &Context) -> TestSpan {
            let parent = parent_cx.span().span_context().clone();
            let trace_id = if parent.is_valid() {
                parent.trace_id()
            } else {
                TraceId::from(fastrand::u128(1..))
            };
            let context = SpanContext::new(
                trace_id,
                SpanId::from(fastrand::u64(1..)),
                TraceFlags::SAMPLED,
                false,
                parent.trace_state().clone(),
            );
            TestSpan {
                log: Arc::clone(&self.0),
                ended: Ended {
                    name: builder.name.to_string(),
                    kind: builder.span_kind,
                    context,
                    parent_span_id: parent.span_id(),
                    attributes: builder.attributes.unwrap_or_default(),
                    status: Status::Unset,
                },
            }
        }
    }

    impl opentelemetry::trace::Span for TestSpan {
        fn add_event_with_timestamp<T>(&mut self, _: T, _: SystemTime, _: Vec<KeyValue>)
        where
            T: Into<Cow<'static, str>>,
        {
        }

        fn span_context(&self) -> &SpanContext {
            &self.ended.context
        }

        fn is_recording(&self) -> bool {
            true
        }

        fn set_attribute(&mut self, attribute: KeyValue) {
            self.ended.attributes.push(attribute);
        }

        fn set_status(&mut self, status: Status) {
            self.ended.status = status;
        }

        fn update_name<T>(&mut self, name: T)
        where
            T: Into<Cow<'static, str>>,
        {
            self.ended.name = name.into().into_owned();
        }

        fn add_link(&mut self, _: SpanContext, _: Vec<KeyValue>) {}

        fn end_with_timestamp(&mut self, _: SystemTime) {
            self.log.lock().unwrap().push(self.ended.clone());
        }
    }
}

#[cfg(feature = "opentelemetry")]
#[test]
fn opentelemetry_context_attributes_and_traceparent() {
    use opentelemetry::trace::{
        SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::layer::SubscriberExt;

    let tracer = otel_tracer::TestTracer::default();
    let subscriber = tracing_subscriber::registry().with(
        tracing_opentelemetry::OpenTelemetryLayer::new(tracer.clone()),
    );
    let _guard = tracing::subscriber::set_default(subscriber);

    let remote = SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::from_key_value([("vendor", "v1")]).unwrap(),
    );
    let caller = tracing::info_span!("caller");
    caller
        .set_parent(opentelemetry::Context::new().with_remote_span_context(remote))
        .unwrap();

    let svc = TraceLayer::attempt()
        .record_request_headers([http::header::ACCEPT])
        .layer(answering(503));
    let request = Request::get("https://u:p@api.example.com/items?sig=x")
        .header(http::header::ACCEPT, "text/plain")
        .body(())
        .unwrap();
    let response = caller
        .in_scope(|| ready(poll_once(svc.oneshot(request))))
        .unwrap();
    drop(caller);

    let ended = tracer.0.lock().unwrap().clone();
    let attempt = ended
        .iter()
        .find(|s| s.name == "GET")
        .unwrap_or_else(|| panic!("the attempt span was exported: {ended:#?}"));
    assert_eq!(attempt.kind, Some(SpanKind::Client));
    let caller = ended
        .iter()
        .find(|s| s.name == "caller")
        .expect("the caller span was exported");
    assert_eq!(
        attempt.parent_span_id,
        caller.context.span_id(),
        "a child of the current span"
    );
    assert_eq!(
        attempt.context.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert!(matches!(attempt.status, Status::Error { .. }));
    assert_eq!(attempt.attr("http.request.method").as_deref(), Some("GET"));
    assert_eq!(
        attempt.attr("server.address").as_deref(),
        Some("api.example.com")
    );
    assert_eq!(attempt.attr("server.port").as_deref(), Some("443"));
    assert_eq!(
        attempt.attr("url.full").as_deref(),
        Some("https://REDACTED:REDACTED@api.example.com/items?sig=REDACTED")
    );
    assert_eq!(
        attempt.attr("http.response.status_code").as_deref(),
        Some("503")
    );
    assert_eq!(attempt.attr("error.type").as_deref(), Some("503"));
    assert_eq!(
        attempt.attr("http.request.header.accept").as_deref(),
        Some("[\"text/plain\"]")
    );
    assert_eq!(
        attempt.attr("http.request.headers"),
        None,
        "headers went to real attributes"
    );
    assert_eq!(attempt.attr("trace_id"), None, "the exporter has the ids");

    // The server is told this CLIENT span is the parent, in the caller's trace.
    let sent: flext_trace::TraceParent = response.headers()["traceparent"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        sent.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(
        sent.parent_id().to_string(),
        attempt.context.span_id().to_string()
    );
    assert!(sent.is_sampled());
    assert_eq!(response.headers()["tracestate"], "vendor=v1");
}

#[cfg(feature = "metrics")]
#[test]
fn metrics_facade_back_end() {
    // Every test installs a subscriber: tracing caches a callsite's interest globally, and a
    // test running with none could cache `never` while another test registers its own.
    let _guard = Capture::default().install();
    use std::sync::{Arc, Mutex};

    use metrics::{
        Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };

    #[derive(Debug, Default)]
    struct Seen(Mutex<Vec<String>>);

    #[derive(Debug, Clone, Default)]
    struct Rec(Arc<Seen>);

    struct Handle(Arc<Seen>, String);
    impl metrics::HistogramFn for Handle {
        fn record(&self, value: f64) {
            assert!(value >= 0.0);
            self.0.0.lock().unwrap().push(format!("record {}", self.1));
        }
    }
    impl metrics::GaugeFn for Handle {
        fn increment(&self, value: f64) {
            self.0
                .0
                .lock()
                .unwrap()
                .push(format!("+{value} {}", self.1));
        }
        fn decrement(&self, value: f64) {
            self.0
                .0
                .lock()
                .unwrap()
                .push(format!("-{value} {}", self.1));
        }
        fn set(&self, _value: f64) {}
    }

    fn describe(key: &Key) -> String {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        format!("{} {}", key.name(), labels.join(","))
    }

    impl Recorder for Rec {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
            Counter::noop()
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(Arc::new(Handle(self.0.clone(), describe(key))))
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(Arc::new(Handle(self.0.clone(), describe(key))))
        }
    }

    let recorder = Rec::default();
    metrics::with_local_recorder(&recorder, || {
        let svc = TraceLayer::attempt()
            .recorder(flext_trace::MetricsFacade::new())
            .layer(answering(503));
        ready(poll_once(
            svc.oneshot(Request::get("http://a/").body(()).unwrap()),
        ))
        .unwrap();
    });
    let seen = recorder.0.0.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "+1 http.client.active_requests http.request.method=GET,server.address=a,server.port=80",
            "-1 http.client.active_requests http.request.method=GET,server.address=a,server.port=80",
            "record http.client.request.duration http.request.method=GET,server.address=a,server.port=80,http.response.status_code=503,error.type=503",
        ]
    );
}

#[cfg(feature = "opentelemetry-metrics")]
#[test]
fn opentelemetry_meter_back_end() {
    // Every test installs a subscriber: tracing caches a callsite's interest globally, and a
    // test running with none could cache `never` while another test registers its own.
    let _guard = Capture::default().install();
    use std::sync::{Arc, Mutex};

    use opentelemetry::KeyValue;
    use opentelemetry::metrics::{
        Histogram, HistogramBuilder, InstrumentBuilder, InstrumentProvider, Meter, SyncInstrument,
        UpDownCounter,
    };

    type Log = Arc<Mutex<Vec<String>>>;

    struct Instrument(Log, String);
    impl<T: std::fmt::Debug> SyncInstrument<T> for Instrument {
        fn measure(&self, value: T, attributes: &[KeyValue]) {
            let attrs: Vec<String> = attributes
                .iter()
                .map(|kv| format!("{}={}", kv.key, kv.value))
                .collect();
            let value = format!("{value:?}");
            let shown = if self.1.ends_with("duration") {
                "d".to_owned()
            } else {
                value
            };
            self.0
                .lock()
                .unwrap()
                .push(format!("{} {shown} {}", self.1, attrs.join(",")));
        }
    }

    struct Provider(Log);
    impl InstrumentProvider for Provider {
        fn f64_histogram(&self, builder: HistogramBuilder<'_, Histogram<f64>>) -> Histogram<f64> {
            assert_eq!(builder.unit.as_deref(), Some("s"));
            assert_eq!(
                builder.boundaries.as_deref(),
                Some(&flext_trace::metrics::DURATION_BUCKETS[..])
            );
            Histogram::new(Arc::new(Instrument(
                self.0.clone(),
                builder.name.to_string(),
            )))
        }
        fn i64_up_down_counter(
            &self,
            builder: InstrumentBuilder<'_, UpDownCounter<i64>>,
        ) -> UpDownCounter<i64> {
            UpDownCounter::new(Arc::new(Instrument(
                self.0.clone(),
                builder.name.to_string(),
            )))
        }
    }

    let log: Log = Arc::default();
    let meter = Meter::new(Arc::new(Provider(log.clone())));
    let svc = TraceLayer::attempt()
        .recorder(flext_trace::OtelMetrics::new(&meter))
        .layer(answering(200));
    ready(poll_once(
        svc.oneshot(Request::get("https://b/").body(()).unwrap()),
    ))
    .unwrap();
    let seen = log.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "http.client.active_requests 1 http.request.method=GET,server.address=b,server.port=443",
            "http.client.active_requests -1 http.request.method=GET,server.address=b,server.port=443",
            "http.client.request.duration d http.request.method=GET,server.address=b,server.port=443,http.response.status_code=200,network.protocol.version=2",
        ]
    );
}
