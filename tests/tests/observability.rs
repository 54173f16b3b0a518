//! Trace correlation through `flext_api::Client`'s default stack, with a subscriber recording
//! its spans as an application's would: the `traceparent` the server gets carries the trace id
//! the client's log lines carry, and every attempt of a retried call carries the same one.
//!
//! The whole test binary logs, at INFO, to a `fmt` layer writing into a buffer (installed
//! once, globally: tracing caches callsite interest process-wide). The default without a
//! subscriber (no trace made up) is tested in flext-api's and flext-trace's own tests.

use std::sync::{Mutex, OnceLock, PoisonError};

mod support;

use flext_api::trace::TraceParent;
use flext_api::{Client, RetrySettings};
use flext_testkit::{Echoed, ID_HEADER, SCRIPT_HEADER, TestServer};
use tracing_subscriber::fmt::format::FmtSpan;

static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn capture() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        tracing_subscriber::fmt()
            .with_writer(support::Capture(&LOG))
            .with_ansi(false)
            .with_span_events(FmtSpan::CLOSE)
            .with_max_level(tracing::Level::INFO)
            .init();
    });
}

fn log_lines() -> String {
    String::from_utf8_lossy(&LOG.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
}

#[tokio::test]
async fn a_recorded_calls_trace_id_reaches_the_server_and_is_in_the_logs() {
    capture();
    let server = TestServer::start().await.unwrap();
    let client = Client::builder()
        .base_url(&server.url("/"))
        .retry(RetrySettings {
            backoff_base: std::time::Duration::from_millis(1),
            ..RetrySettings::default()
        })
        .build()
        .unwrap();
    // A 503 and then the echo: two attempts of one call.
    let echoed: Echoed = client
        .get("traced")
        .header(SCRIPT_HEADER, "503,echo")
        .header(ID_HEADER, "traced-1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(server.stats().requests_for_id("traced-1"), 2);
    let sent = echoed
        .header("traceparent")
        .expect("a recorded call sends its trace");
    let sent: TraceParent = sent.parse().unwrap();
    assert!(sent.is_sampled(), "this side records it");
    let trace_id = sent.trace_id().to_string();

    // Every span the call logged (the call and both attempts) names the trace the server got.
    // This call's lines only: the tests of this file run at once and share the log.
    let logs: String = log_lines()
        .lines()
        .filter(|l| l.contains("/traced"))
        .map(|l| format!("{l}\n"))
        .collect();
    let ids: Vec<&str> = logs
        .match_indices("trace_id=")
        .map(|(at, key)| &logs[at + key.len()..at + key.len() + 32])
        .collect();
    assert!(ids.iter().all(|id| *id == trace_id), "{trace_id} in {logs}");
    // Each attempt's span records the id itself: its close line names it twice, in the
    // call's span and in its own.
    let attempts: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("otel.kind=\"client\"") && l.contains(": close "))
        .collect();
    assert_eq!(attempts.len(), 2, "two attempts: {logs}");
    for line in &attempts {
        assert_eq!(
            line.matches(&format!("trace_id={trace_id}")).count(),
            2,
            "{line}"
        );
    }
    assert!(
        attempts
            .iter()
            .any(|l| l.contains("http.request.resend_count=1")),
        "{logs}"
    );
}

#[tokio::test]
async fn a_calls_spans_are_children_of_the_span_that_polls_it() {
    use tracing::Instrument;

    capture();
    let server = TestServer::start().await.unwrap();
    let client = Client::builder()
        .base_url(&server.url("/"))
        .build()
        .unwrap();
    // Made outside any span, awaited inside one: the stack's spans open at the first poll.
    let pending = client.get("parented").header(SCRIPT_HEADER, "200").send();
    let response = pending
        .instrument(tracing::info_span!("caller", marker = 4711))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let logs = log_lines();
    let closes: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("close") && l.contains("/parented"))
        .collect();
    assert!(!closes.is_empty(), "{logs}");
    assert!(
        closes.iter().all(|l| l.contains("caller{marker=4711}:")),
        "{closes:#?}"
    );
}
