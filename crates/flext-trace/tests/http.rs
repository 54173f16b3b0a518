//! Spans, propagation and metrics over real HTTP: hyper-util's legacy client against
//! flext-testkit, with a capturing subscriber.

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use flext_core::{Attempt, BoxError, Sent, TransportError};
use flext_testkit::{ID_HEADER, SCRIPT_HEADER, TestServer};
use flext_trace::{HttpClientMetrics, TraceContext, TraceLayer};
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use support::{Capture, SpanRecord, check_histograms, check_traceparent, parse_prometheus};
use tower::{Layer, Service, ServiceExt};

type Body = Empty<Bytes>;
type HyperClient = Client<HttpConnector, Body>;
type ResBody = BoxBody<Bytes, BoxError>;

/// hyper-util's client as an inner service: connect failures become
/// `TransportError::connect`, an attempt slower than `timeout` becomes
/// `TransportError::timeout`, as flext-pool will report them.
#[derive(Clone)]
struct Transport {
    client: HyperClient,
    timeout: Duration,
}

impl Transport {
    fn new() -> Transport {
        Transport {
            client: Client::builder(TokioExecutor::new()).build_http(),
            timeout: Duration::from_secs(10),
        }
    }
}

impl Service<Request<Body>> for Transport {
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let client = self.client.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, client.request(request)).await {
                Ok(Ok(response)) => Ok(response.map(|b| b.map_err(BoxError::from).boxed())),
                Ok(Err(e)) if e.is_connect() => Err(TransportError::connect(e).into()),
                Ok(Err(e)) => Err(e.into()),
                Err(_) => Err(TransportError::timeout(Sent::Maybe).into()),
            }
        })
    }
}

/// A hand-written retry: resends on 5xx up to `attempts` times, setting `Attempt` on each
/// copy of the request (what flext-retry does; layer crates do not depend on each other).
#[derive(Clone)]
struct RetryLoop<S> {
    inner: S,
    attempts: u32,
}

impl<S> Service<Request<Body>> for RetryLoop<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        let attempts = self.attempts;
        let (parts, _) = request.into_parts();
        Box::pin(async move {
            let mut attempt = Attempt::FIRST;
            loop {
                let mut copy = Request::from_parts(parts.clone(), Empty::new());
                copy.extensions_mut().insert(attempt);
                let response = inner.clone().oneshot(copy).await?;
                if response.status().is_server_error() && attempt.number() + 1 < attempts {
                    // A backoff sleep, inside the logical span.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    attempt = attempt.next();
                    continue;
                }
                return Ok(response);
            }
        })
    }
}

fn get(server: &TestServer, path: &str, id: &str, script: &str) -> Request<Body> {
    Request::get(server.uri(path))
        .header(ID_HEADER, id)
        .header(SCRIPT_HEADER, script)
        .body(Empty::new())
        .unwrap()
}

/// The fields of a span with `trace_id` checked (32 hex) and removed.
fn fields(span: &SpanRecord) -> BTreeMap<String, String> {
    let mut f = span.fields.clone();
    let trace_id = f.remove("trace_id").expect("trace_id recorded");
    assert_eq!(trace_id.len(), 32, "{trace_id}");
    f
}

fn expected(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn attributes_for_statuses_and_errors() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let port = server.addr().port().to_string();
    let capture = Capture::default();
    let _guard = capture.install();

    let svc = TraceLayer::attempt().layer(Transport::new());
    for (path, script) in [("/ok", "200"), ("/missing", "404"), ("/busy", "503")] {
        let _ = svc.clone().oneshot(get(&server, path, path, script)).await;
    }
    // Only this attempt has a short timeout, so a loaded machine cannot fail the others.
    let mut impatient = Transport::new();
    impatient.timeout = Duration::from_millis(300);
    let err = TraceLayer::attempt()
        .layer(impatient)
        .oneshot(get(&server, "/slow", "/slow", "200;delay=5s"))
        .await
        .unwrap_err();
    assert!(TransportError::find(&*err).unwrap().is_timeout());
    // A closed port: bind, read the port, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let request = Request::get(format!("http://127.0.0.1:{closed_port}/x"))
        .body(Empty::new())
        .unwrap();
    let err = svc.clone().oneshot(request).await.unwrap_err();
    assert!(TransportError::find(&*err).unwrap().is_connect());

    let spans = capture.spans();
    assert_eq!(spans.len(), 5, "{spans:#?}");
    assert!(
        spans
            .iter()
            .all(|s| s.closed && s.level == tracing::Level::INFO)
    );
    assert!(spans.iter().all(|s| s.name == "GET"));

    let base = |path: &str| {
        vec![
            ("otel.kind", "client".to_owned()),
            ("http.request.method", "GET".to_owned()),
            ("server.address", "127.0.0.1".to_owned()),
            ("server.port", port.clone()),
            ("url.full", format!("http://127.0.0.1:{port}{path}")),
            ("url.scheme", "http".to_owned()),
        ]
    };
    let with = |mut v: Vec<(&'static str, String)>, more: &[(&'static str, &str)]| {
        v.extend(more.iter().map(|(k, x)| (*k, (*x).to_owned())));
        expected(&v)
    };
    assert_eq!(
        fields(&spans[0]),
        with(
            base("/ok"),
            &[
                ("network.protocol.version", "1.1"),
                ("http.response.status_code", "200")
            ]
        )
    );
    assert_eq!(
        fields(&spans[1]),
        with(
            base("/missing"),
            &[
                ("network.protocol.version", "1.1"),
                ("http.response.status_code", "404"),
                ("error.type", "404"),
                ("otel.status_code", "ERROR"),
            ]
        )
    );
    assert_eq!(
        fields(&spans[2]),
        with(
            base("/busy"),
            &[
                ("network.protocol.version", "1.1"),
                ("http.response.status_code", "503"),
                ("error.type", "503"),
                ("otel.status_code", "ERROR"),
            ]
        )
    );
    assert_eq!(
        fields(&spans[3]),
        with(
            base("/slow"),
            &[("error.type", "timeout"), ("otel.status_code", "ERROR")]
        )
    );
    let mut connect = base("/x");
    connect[3].1 = closed_port.to_string();
    connect[4].1 = format!("http://127.0.0.1:{closed_port}/x");
    assert_eq!(
        fields(&spans[4]),
        with(
            connect,
            &[("error.type", "connect"), ("otel.status_code", "ERROR")]
        )
    );

    // One event per request inside its span: INFO on success, WARN on failure.
    let events = capture.events();
    assert_eq!(events.len(), 5, "{events:#?}");
    for (event, span) in events.iter().zip(&spans) {
        assert_eq!(event.parent, Some(span.id));
        let failed = span.get("otel.status_code") == Some("ERROR");
        let level = if failed {
            tracing::Level::WARN
        } else {
            tracing::Level::INFO
        };
        assert_eq!(event.level, level);
        assert_eq!(
            event.fields.get("error.type").map(String::as_str),
            span.get("error.type")
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn attempts_under_one_logical_span_through_a_retry() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let capture = Capture::default();
    let _guard = capture.install();
    let metrics = HttpClientMetrics::new();

    let attempt = TraceLayer::attempt()
        .metrics(metrics.clone())
        .layer(Transport::new());
    let retry = RetryLoop {
        inner: attempt,
        attempts: 3,
    };
    let svc = TraceLayer::logical().request_id().layer(retry);
    let response = svc
        .oneshot(get(&server, "/items", "retry", "503,503,echo"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(server.stats().requests_for_id("retry"), 3);

    let spans = capture.spans();
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let logical = &spans[0];
    assert_eq!(logical.get("otel.kind"), Some("internal"));
    assert_eq!(logical.get("http.response.status_code"), Some("200"));
    assert_eq!(logical.get("error.type"), None);
    assert_eq!(logical.get("http.request.resend_count"), None);
    let attempts = &spans[1..];
    let resend: Vec<Option<&str>> = attempts
        .iter()
        .map(|s| s.get("http.request.resend_count"))
        .collect();
    assert_eq!(resend, [None, Some("1"), Some("2")]);
    let statuses: Vec<Option<&str>> = attempts
        .iter()
        .map(|s| s.get("http.response.status_code"))
        .collect();
    assert_eq!(statuses, [Some("503"), Some("503"), Some("200")]);
    for a in attempts {
        assert_eq!(a.get("otel.kind"), Some("client"));
        assert_eq!(
            a.parent,
            Some(logical.id),
            "attempt spans are children of the call"
        );
        assert_eq!(
            a.get("trace_id"),
            logical.get("trace_id"),
            "one trace for the call"
        );
    }

    // The server saw the call's trace id and a request id.
    let headers: BTreeMap<String, String> = echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_owned(),
                p[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let trace_id = check_traceparent(&headers["traceparent"]);
    assert_eq!(Some(trace_id.as_str()), logical.get("trace_id"));
    assert_eq!(headers["x-request-id"].len(), 36);

    // Success events: DEBUG for attempts under a logical span, INFO for the call; the two
    // 503s are WARN.
    use tracing::Level;
    let levels: Vec<(Option<u64>, Level)> = capture
        .events()
        .iter()
        .map(|e| (e.parent, e.level))
        .collect();
    assert_eq!(
        levels,
        [
            (Some(attempts[0].id), Level::WARN),
            (Some(attempts[1].id), Level::WARN),
            (Some(attempts[2].id), Level::DEBUG),
            (Some(logical.id), Level::INFO),
        ]
    );

    // One histogram observation per attempt; the Prometheus text parses.
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.request_count(), 3);
    assert_eq!(snapshot.count_by_status_class().get("5xx"), Some(&2));
    assert_eq!(snapshot.count_by_error_type().get("503"), Some(&2));
    assert!(snapshot.active_requests().iter().all(|a| a.value() == 0));
    let (types, samples) = parse_prometheus(&snapshot.prometheus());
    assert_eq!(types["http_client_request_duration_seconds"], "histogram");
    assert_eq!(types["http_client_active_requests"], "gauge");
    assert_eq!(types["flext_http_client_requests_total"], "counter");
    assert_eq!(
        check_histograms(&samples, "http_client_request_duration_seconds"),
        2
    );
    let count: f64 = samples
        .iter()
        .filter(|s| s.name == "http_client_request_duration_seconds_count")
        .map(|s| s.value)
        .sum();
    assert_eq!(count, 3.0);
    let ok = samples
        .iter()
        .find(|s| {
            s.name == "http_client_request_duration_seconds_count"
                && s.labels
                    .get("http_response_status_code")
                    .map(String::as_str)
                    == Some("200")
        })
        .unwrap();
    assert_eq!(ok.labels["http_request_method"], "GET");
    assert_eq!(ok.labels["server_address"], "127.0.0.1");
    assert_eq!(ok.labels["server_port"], server.addr().port().to_string());
    assert!(!ok.labels.contains_key("error_type"));
}

#[tokio::test(flavor = "current_thread")]
async fn secrets_never_reach_the_spans_or_the_logs() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let port = server.addr().port();
    let capture = Capture::default();

    // A formatting subscriber writing to a buffer, next to the capture.
    let logs = LogBuffer::default();
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry().with(capture.clone()).with(
        tracing_subscriber::fmt::layer()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            // hyper-util's own pool logs write the URI's user-info: not ours to fix.
            .with_filter(Targets::new().with_target("flext_trace", tracing::Level::TRACE)),
    );
    let _guard = tracing::subscriber::set_default(subscriber);

    let svc = TraceLayer::attempt()
        .record_request_headers([http::header::AUTHORIZATION, http::header::ACCEPT])
        .layer(Transport::new());
    let request = Request::get(format!(
        "http://user:pass@127.0.0.1:{port}/r?sig=xyzzy&page=2"
    ))
    .header(http::header::AUTHORIZATION, "Bearer t0ps3cret")
    .header(http::header::ACCEPT, "text/plain")
    .body(Empty::new())
    .unwrap();
    let _ = svc.oneshot(request).await;

    let spans = capture.spans();
    assert_eq!(
        spans[0].get("url.full"),
        Some(format!("http://REDACTED:REDACTED@127.0.0.1:{port}/r?sig=REDACTED&page=2").as_str())
    );
    assert_eq!(
        spans[0].get("http.request.headers"),
        Some("authorization: REDACTED; accept: text/plain")
    );
    let everything = format!("{} {}", capture.all_text(), logs.text());
    for secret in ["pass", "xyzzy", "t0ps3cret", "user:"] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked: {everything}"
        );
    }
    assert!(logs.text().contains("page=2"), "{}", logs.text());
}

#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> LogBuffer {
        self.clone()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn traceparent_reaches_the_server() {
    // Every test installs a subscriber: tracing caches a callsite's interest globally, and a
    // test running with none could cache `never` while another test registers its own.
    let _guard = Capture::default().install();
    let server = TestServer::builder().http1().start().await.unwrap();
    let svc = TraceLayer::attempt().layer(Transport::new());
    let mut seen = Vec::new();
    for _ in 0..2 {
        let response = svc
            .clone()
            .oneshot(get(&server, "/echo", "tp", "echo"))
            .await
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let tp = echo["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p[0] == "traceparent")
            .map(|p| p[1].as_str().unwrap().to_owned())
            .expect("traceparent sent");
        seen.push(check_traceparent(&tp));
    }
    assert_ne!(
        seen[0], seen[1],
        "a new trace per call without a logical span"
    );

    // Turned off: nothing is sent.
    let svc = TraceLayer::attempt()
        .trace_context(TraceContext::Off)
        .layer(Transport::new());
    let response = svc
        .oneshot(get(&server, "/echo", "off", "echo"))
        .await
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(!String::from_utf8_lossy(&body).contains("traceparent"));
}
