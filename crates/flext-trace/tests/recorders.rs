//! Metrics as a user reads them: a custom `MetricsRecorder` next to the built-in one, status
//! classes, the overflow series past the cardinality limit, and the snapshot's accessors.

mod support;

use std::convert::Infallible;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flext_trace::metrics::{RequestAttributes, ResultAttributes};
use flext_trace::{HttpClientMetrics, MetricsRecorder, TraceLayer};
use http::{Request, Response, Version};
use support::{Capture, answering, check_histograms, parse_prometheus, poll_once, ready};
use tower::{Layer, Service, ServiceExt, service_fn};

type Started = (&'static str, String, Option<u16>);
type Finished = (Option<u16>, Option<String>, Option<&'static str>, Duration);

/// Keeps what it was told, as owned values.
#[derive(Debug, Clone, Default)]
struct Log {
    started: Arc<Mutex<Vec<Started>>>,
    finished: Arc<Mutex<Vec<Finished>>>,
}

impl MetricsRecorder for Log {
    fn request_started(&self, request: &RequestAttributes<'_>) {
        self.started.lock().unwrap().push((
            request.method(),
            request.server_address().to_owned(),
            request.server_port(),
        ));
    }

    fn request_finished(
        &self,
        request: &RequestAttributes<'_>,
        result: &ResultAttributes<'_>,
        duration: Duration,
    ) {
        // The end carries the same request attributes as the start.
        let last = self.started.lock().unwrap().last().cloned().unwrap();
        assert_eq!(
            (
                request.method(),
                request.server_address(),
                request.server_port()
            ),
            (last.0, last.1.as_str(), last.2)
        );
        self.finished.lock().unwrap().push((
            result.status(),
            result.error_type().map(str::to_owned),
            result.protocol_version(),
            duration,
        ));
    }
}

#[test]
fn a_custom_recorder_sees_each_request_start_and_end() {
    let _guard = Capture::default().install();
    let log = Log::default();
    let builtin = HttpClientMetrics::new();
    let layer = TraceLayer::attempt()
        .metrics(builtin.clone())
        .recorder(log.clone());

    let ok = layer.layer(answering(503));
    ready(poll_once(
        ok.oneshot(
            Request::post("https://api.example.com/v1")
                .body(())
                .unwrap(),
        ),
    ))
    .unwrap();
    let refused = layer.layer(service_fn(|_: Request<()>| async {
        Err::<Response<()>, _>(io::Error::from(io::ErrorKind::ConnectionRefused))
    }));
    ready(poll_once(refused.oneshot(
        Request::get("http://db.internal:5984/").body(()).unwrap(),
    )))
    .unwrap_err();

    assert_eq!(
        *log.started.lock().unwrap(),
        [
            ("POST", "api.example.com".to_owned(), Some(443)),
            ("GET", "db.internal".to_owned(), Some(5984)),
        ]
    );
    let finished = log.finished.lock().unwrap();
    assert_eq!(
        (finished[0].0, finished[0].1.as_deref(), finished[0].2),
        (Some(503), Some("503"), Some("2"))
    );
    assert_eq!(
        (finished[1].0, finished[1].1.as_deref(), finished[1].2),
        (None, Some("connect"), None)
    );
    assert!(finished.iter().all(|f| f.3 < Duration::from_secs(1)));
    // Both back-ends were told: the built-in one has the same two requests.
    assert_eq!(builtin.snapshot().request_count(), 2);
    assert_eq!(
        builtin
            .snapshot()
            .count_by_error_type()
            .into_iter()
            .collect::<Vec<_>>(),
        [("503".to_owned(), 1), ("connect".to_owned(), 1)]
    );
}

#[test]
fn requests_are_counted_by_status_class() {
    let _guard = Capture::default().install();
    let metrics = HttpClientMetrics::default();
    for status in [101, 200, 302, 404, 503, 600] {
        let svc = TraceLayer::attempt()
            .metrics(metrics.clone())
            .layer(answering(status));
        ready(poll_once(
            svc.oneshot(Request::get("http://a.test/").body(()).unwrap()),
        ))
        .unwrap();
    }
    let classes: Vec<(&str, u64)> = metrics
        .snapshot()
        .count_by_status_class()
        .into_iter()
        .collect();
    assert_eq!(
        classes,
        [
            ("1xx", 1),
            ("2xx", 1),
            ("3xx", 1),
            ("4xx", 1),
            ("5xx", 1),
            ("other", 1)
        ]
    );

    let text = metrics.prometheus();
    assert_eq!(text, metrics.snapshot().prometheus());
    let (_, samples) = parse_prometheus(&text);
    let mut totals: Vec<(String, f64)> = samples
        .iter()
        .filter(|s| s.name == "flext_http_client_requests_total")
        .map(|s| {
            assert_eq!(s.labels["server_address"], "a.test");
            assert_eq!(s.labels["server_port"], "80");
            (s.labels["http_response_status_class"].clone(), s.value)
        })
        .collect();
    totals.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        totals,
        [
            ("1xx".to_owned(), 1.0),
            ("2xx".to_owned(), 1.0),
            ("3xx".to_owned(), 1.0),
            ("4xx".to_owned(), 1.0),
            ("5xx".to_owned(), 1.0),
            ("other".to_owned(), 1.0)
        ]
    );
    assert!(text.contains(
        "flext_http_client_requests_total{http_request_method=\"GET\",server_address=\"a.test\",\
         server_port=\"80\",http_response_status_class=\"other\",error_type=\"600\"} 1\n"
    ));
}

#[test]
fn past_the_cardinality_limit_requests_land_in_one_overflow_series() {
    let _guard = Capture::default().install();
    let metrics = HttpClientMetrics::with_cardinality_limit(1);
    let layer = TraceLayer::attempt().metrics(metrics.clone());
    for host in ["http://a.test/", "http://b.test/", "http://c.test/"] {
        let svc = layer.layer(answering(200));
        ready(poll_once(svc.oneshot(Request::get(host).body(()).unwrap()))).unwrap();
    }
    // One more new host, still in flight.
    let mut pending = layer.layer(service_fn(|_: Request<()>| {
        std::future::pending::<Result<Response<()>, Infallible>>()
    }));
    let mut in_flight = Box::pin(pending.call(Request::get("http://d.test/").body(()).unwrap()));
    assert!(poll_once(in_flight.as_mut()).is_pending());

    let snapshot = metrics.snapshot();
    let durations = snapshot.durations();
    assert_eq!(durations.len(), 2);
    let (overflow, normal): (Vec<_>, Vec<_>) =
        durations.iter().partition(|d| d.attributes().is_overflow());
    assert_eq!(normal[0].attributes().server_address(), "a.test");
    assert_eq!(normal[0].attributes().method(), "GET");
    assert_eq!(normal[0].count(), 1);
    let overflow = overflow[0];
    assert_eq!(overflow.attributes().method(), "");
    assert_eq!(overflow.attributes().server_address(), "");
    assert_eq!(overflow.count(), 2);
    // Per-bucket counts add up to the count (fast calls: all in the first bucket).
    assert_eq!(overflow.bucket_counts().iter().sum::<u64>(), 2);
    assert_eq!(overflow.bucket_counts()[0], 2);

    let active = snapshot.active_requests();
    let values: Vec<(bool, &str, i64)> = active
        .iter()
        .map(|a| {
            (
                a.attributes().is_overflow(),
                a.attributes().server_address(),
                a.value(),
            )
        })
        .collect();
    assert_eq!(values, [(true, "", 1), (false, "a.test", 0)]);

    let text = metrics.prometheus();
    for line in [
        "http_client_request_duration_seconds_count{otel_metric_overflow=\"true\"} 2\n",
        "http_client_request_duration_seconds_bucket{otel_metric_overflow=\"true\",le=\"+Inf\"} 2\n",
        "http_client_active_requests{otel_metric_overflow=\"true\"} 1\n",
        "flext_http_client_requests_total{otel_metric_overflow=\"true\"} 2\n",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
    let (_, samples) = parse_prometheus(&text);
    assert_eq!(
        check_histograms(&samples, "http_client_request_duration_seconds"),
        2
    );
    assert_eq!(
        format!("{metrics:?}"),
        "HttpClientMetrics { targets: 1, duration_series: 1 }"
    );

    drop(in_flight);
    let active = metrics.snapshot().active_requests().to_vec();
    assert!(active.iter().all(|a| a.value() == 0), "{active:?}");
}

#[test]
fn a_success_reaches_the_recorder_with_its_version_and_no_error_type() {
    let _guard = Capture::default().install();
    let log = Log::default();
    let svc = TraceLayer::attempt()
        .recorder(log.clone())
        .layer(service_fn(|_: Request<()>| async {
            let response = Response::builder()
                .version(Version::HTTP_11)
                .body(())
                .unwrap();
            Ok::<_, Infallible>(response)
        }));
    ready(poll_once(
        svc.oneshot(Request::get("http://a.test/").body(()).unwrap()),
    ))
    .unwrap();
    let finished = log.finished.lock().unwrap();
    assert_eq!(
        (finished[0].0, finished[0].1.as_deref(), finished[0].2),
        (Some(200), None, Some("1.1"))
    );
}

/// Regression: `count_by_status_class` documents `none` as "requests that got no response";
/// past the cardinality limit, answered requests were counted there too, because the overflow
/// series keeps no status, so an error rate read from it showed transport failures that never
/// happened. They are counted under `overflow` now.
#[test]
fn overflow_requests_with_a_response_are_not_counted_as_having_none() {
    let _guard = Capture::default().install();
    let metrics = HttpClientMetrics::with_cardinality_limit(1);
    let layer = TraceLayer::attempt().metrics(metrics.clone());
    for host in ["http://a.test/", "http://b.test/"] {
        let svc = layer.layer(answering(200));
        ready(poll_once(svc.oneshot(Request::get(host).body(()).unwrap()))).unwrap();
    }
    let classes = metrics.snapshot().count_by_status_class();
    assert_eq!(classes.get("none"), None, "{classes:?}");
    assert_eq!(classes.get("overflow"), Some(&1), "{classes:?}");
    assert_eq!(classes.get("2xx"), Some(&1), "{classes:?}");
}
