//! The `tracing` events the layer emits (docs/retry.md, "In traces"): one debug event per
//! retry with its attempt, reason, delay and whether `Retry-After` set it, and one when a
//! failure is returned rather than retried, with the stop reason's label.

mod scripted;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flext_retry::{Backoff, RetryLayer};
use http::StatusCode;
use scripted::{Server, Step, get, post, send};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber, span};

type Fields = BTreeMap<&'static str, String>;

/// Records the level and fields of every event of this crate.
#[derive(Clone, Default)]
struct Capture {
    events: Arc<Mutex<Vec<(Level, Fields)>>>,
}

struct Visitor<'a>(&'a mut Fields);

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_owned());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        if !event.metadata().target().starts_with("flext_retry") {
            return;
        }
        let mut fields = Fields::new();
        event.record(&mut Visitor(&mut fields));
        let level = *event.metadata().level();
        self.events.lock().unwrap().push((level, fields));
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

fn fields(pairs: &[(&'static str, &str)]) -> Fields {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

#[tokio::test(start_paused = true)]
async fn each_retry_is_a_debug_event_with_its_attempt_reason_and_wait() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let layer = RetryLayer::builder()
        .backoff(Backoff::constant(Duration::from_millis(100)))
        .build()
        .unwrap();
    let server = Server::new(&[
        Step::RetryAfter(503, "1"),
        Step::Status(502),
        Step::Status(200),
    ]);
    let res = send(&layer, &server, get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let events = capture.events.lock().unwrap().clone();
    assert_eq!(
        events,
        [
            (
                Level::DEBUG,
                fields(&[
                    ("message", "retrying request"),
                    ("attempt", "1"),
                    ("reason", "status 503"),
                    ("delay_ms", "1000"),
                    ("retry_after", "true"),
                ])
            ),
            (
                Level::DEBUG,
                fields(&[
                    ("message", "retrying request"),
                    ("attempt", "2"),
                    ("reason", "status 502"),
                    ("delay_ms", "100"),
                    ("retry_after", "false"),
                ])
            ),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_returned_is_an_event_with_the_stop_reason_label() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let layer = RetryLayer::new();
    let server = Server::always(503);
    let res = send(&layer, &server, post("order")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let events = capture.events.lock().unwrap().clone();
    assert_eq!(
        events,
        [(
            Level::DEBUG,
            fields(&[
                ("message", "not retrying request"),
                ("attempts", "1"),
                ("failure", "status 503"),
                ("reason", "not_idempotent"),
            ])
        )]
    );
}
