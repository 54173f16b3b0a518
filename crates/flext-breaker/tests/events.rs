//! The `tracing` events an operator reads in the logs: one per transition, with the key, the
//! cause and the open time; a contained callback panic; a full map of pinned breakers.
//!
//! A minimal subscriber written against `tracing` itself (a dependency of the crate) captures
//! the events on the test's thread; every test installs one, so that no callsite's interest
//! is cached as "never" by a test running without.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flext_breaker::{BreakerConfig, BreakerLayer, ManualClock};
use flext_core::Origin;
use http::{Request, Response, StatusCode};
use tower::{Layer, ServiceExt, service_fn};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

#[derive(Debug, Clone)]
struct Captured {
    target: String,
    level: Level,
    fields: BTreeMap<String, String>,
}

impl Captured {
    fn message(&self) -> &str {
        &self.fields["message"]
    }
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

impl Capture {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(self.clone())
    }

    /// The breaker's events, without the message-less noise of other crates.
    fn events(&self) -> Vec<Captured> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.target.starts_with("flext_breaker"))
            .cloned()
            .collect()
    }
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Captured {
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            fields,
        });
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Answers with the status named in `x-status`, counting calls.
fn server(
    calls: Arc<AtomicUsize>,
) -> impl tower::Service<
    Request<()>,
    Response = Response<()>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<()>, Infallible>>,
> + Clone {
    service_fn(move |req: Request<()>| {
        calls.fetch_add(1, Ordering::Relaxed);
        let status = req
            .headers()
            .get("x-status")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(200);
        let mut res = Response::new(());
        *res.status_mut() = StatusCode::from_u16(status).unwrap();
        async move { Ok(res) }
    })
}

fn req(uri: &str, status: u16) -> Request<()> {
    Request::get(uri)
        .header("x-status", status.to_string())
        .body(())
        .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn every_transition_is_logged_with_its_key_cause_and_open_time() {
    let capture = Capture::default();
    let _guard = capture.install();
    let clock = ManualClock::new();
    let layer = BreakerLayer::builder()
        .config(
            BreakerConfig::default()
                .consecutive_failures(2)
                .jitter(0.0)
                .open_duration(Duration::from_millis(12_500)),
        )
        .clock(clock.clone())
        .on_transition(|t| {
            if t.to == flext_breaker::State::Disabled {
                panic!("a careless callback");
            }
        })
        .build()
        .unwrap();
    let svc = layer.layer(server(Arc::new(AtomicUsize::new(0))));
    let uri = "https://api.example.com/v1";
    let origin: Origin = "https://api.example.com".parse().unwrap();

    for _ in 0..2 {
        svc.clone().oneshot(req(uri, 502)).await.unwrap();
    }
    clock.advance(Duration::from_millis(12_500));
    svc.clone().oneshot(req(uri, 200)).await.unwrap();
    layer.handle().force_open(&origin);
    layer.handle().disable(&origin);

    let events = capture.events();
    let summary: Vec<(Level, &str)> = events.iter().map(|e| (e.level, e.message())).collect();
    assert_eq!(
        summary,
        [
            (Level::WARN, "circuit opened"),
            (Level::DEBUG, "circuit half-open, probing"),
            (Level::INFO, "circuit closed"),
            (Level::WARN, "circuit forced open"),
            (Level::INFO, "circuit disabled"),
            (Level::ERROR, "breaker transition callback panicked"),
        ]
    );
    assert!(
        events
            .iter()
            .all(|e| e.fields["breaker.key"] == "https://api.example.com:443")
    );
    let opened = &events[0].fields;
    assert_eq!(opened["breaker.cause"], "2 consecutive failures");
    assert_eq!(opened["breaker.open_for_s"], "12.5");
    assert_eq!(events[2].fields["breaker.cause"], "probes succeeded");
    assert_eq!(events[0].target, "flext_breaker::state");
}

#[tokio::test(flavor = "current_thread")]
async fn a_map_full_of_pinned_breakers_lets_new_origins_through_unguarded_and_says_so() {
    let capture = Capture::default();
    let _guard = capture.install();
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = BreakerLayer::builder()
        .config(BreakerConfig::default().consecutive_failures(1))
        .max_keys(1)
        .clock(ManualClock::new())
        .build()
        .unwrap();
    let handle = layer.handle();
    let pinned: Origin = "http://pinned.test".parse().unwrap();
    handle.force_open(&pinned);
    let svc = layer.layer(server(calls.clone()));

    // One failure would open a guarded breaker; these go through, uncounted.
    for _ in 0..3 {
        let res = svc
            .clone()
            .oneshot(req("http://new.test/", 500))
            .await
            .unwrap();
        assert_eq!(res.status(), 500);
    }
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    assert_eq!(handle.len(), 1);
    assert_eq!(handle.state(&"http://new.test".parse().unwrap()), None);

    let full: Vec<Captured> = capture
        .events()
        .into_iter()
        .filter(|e| e.message() == "breaker map full of pinned breakers; call not guarded")
        .collect();
    assert_eq!(full.len(), 3);
    assert_eq!(full[0].level, Level::DEBUG);
    assert_eq!(full[0].fields["breaker.key"], "http://new.test:80");
    assert_eq!(full[0].target, "flext_breaker::registry");
}
