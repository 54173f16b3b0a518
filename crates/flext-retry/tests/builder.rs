//! Every setting of `RetryBuilder`: the typed error for a bad one, and what a good one changes
//! in what the inner service sees.

mod scripted;

use std::error::Error as StdError;
use std::time::Duration;

use flext_core::{Classify, Failure, FailureKind, HttpClassifier, NotReplayable, Outcome, Sent};
use flext_retry::{
    Backoff, Budget, ConfigError, MAX_RETRIES, Random, RetryBuilder, RetryInfo, RetryLayer,
    StopReason,
};
use http::{HeaderMap, StatusCode};
use scripted::{Server, Step, get, post, put, send};

fn refused(builder: RetryBuilder) -> String {
    let err: ConfigError = builder.build().unwrap_err();
    assert!(err.source().is_none());
    err.to_string()
}

/// Fast and unlimited, so that only the setting under test stops retries.
fn quick() -> RetryBuilder {
    RetryLayer::builder()
        .backoff(Backoff::none())
        .budget(Budget::unlimited())
}

#[test]
fn more_than_ten_retries_is_refused_with_a_typed_error() {
    assert_eq!(
        refused(RetryLayer::builder().max_retries(MAX_RETRIES + 1)),
        "invalid retry configuration: max_retries must be at most 10 (got 11)"
    );
    assert!(
        RetryLayer::builder()
            .max_retries(MAX_RETRIES)
            .build()
            .is_ok()
    );
}

#[test]
fn a_budget_or_backoff_out_of_bounds_is_refused_with_what_is_wrong() {
    let secs = Duration::from_secs;
    let cases = [
        (
            Budget::new(-0.1, 10, secs(10)),
            "budget ratio must be between 0 and 10 (got -0.1)",
        ),
        (
            Budget::new(0.2, 10, secs(61)),
            "budget window must be between 1 s and 60 s (got 61s)",
        ),
        (
            Budget::new(0.2, 100_001, secs(10)),
            "budget min_per_sec must be at most 100000 (got 100001)",
        ),
    ];
    for (budget, message) in cases {
        assert_eq!(
            refused(RetryLayer::builder().budget(budget)),
            format!("invalid retry configuration: {message}")
        );
    }
    assert_eq!(
        refused(RetryLayer::builder().backoff(Backoff::exponential(secs(2), secs(1)))),
        "invalid retry configuration: backoff cap (1s) must not be shorter than its base (2s)"
    );
    // The bounds themselves are allowed.
    for budget in [
        Budget::new(0.0, 100_000, secs(1)),
        Budget::new(10.0, 0, secs(60)),
    ] {
        assert!(RetryLayer::builder().budget(budget).build().is_ok());
    }
}

#[test]
fn a_budget_reports_its_settings() {
    let default = Budget::default();
    assert_eq!(
        (
            default.ratio(),
            default.min_per_sec(),
            default.window(),
            default.is_unlimited()
        ),
        (0.2, 10, Duration::from_secs(10), false)
    );
    let custom = Budget::new(0.1, 5, Duration::from_secs(30));
    assert_eq!(
        (custom.ratio(), custom.min_per_sec(), custom.window()),
        (0.1, 5, Duration::from_secs(30))
    );
    assert!(Budget::unlimited().is_unlimited());
}

#[tokio::test(start_paused = true)]
async fn max_retries_sets_how_many_attempts_a_failing_get_gets() {
    for (retries, attempts) in [(0, 1), (1, 2), (MAX_RETRIES, 11)] {
        let layer = quick().max_retries(retries).build().unwrap();
        let server = Server::always(503);
        let res = send(&layer, &server, get()).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(server.calls(), attempts);
        let info = RetryInfo::of(&res).unwrap();
        let reason = if retries == 0 {
            StopReason::Disabled
        } else {
            StopReason::MaxRetries
        };
        assert_eq!(
            (info.attempts(), info.stop_reason()),
            (attempts, Some(reason))
        );
    }
}

#[tokio::test(start_paused = true)]
async fn max_never_sent_retries_bounds_the_resends_of_a_refused_post() {
    // The general limit (3 retries) still applies above it.
    for (limit, calls) in [(0, 1), (1, 2), (5, 4)] {
        let layer = quick().max_never_sent_retries(limit).build().unwrap();
        let server = Server::new(&[Step::Refused]);
        let err = send(&layer, &server, post("order")).await.unwrap_err();
        assert_eq!(server.calls(), calls, "limit {limit}");
        assert_eq!(err.stop_reason(), Some(StopReason::MaxRetries));
        assert!(server.bodies().iter().all(|b| b == "order"));
    }
}

#[tokio::test(start_paused = true)]
async fn max_replay_bytes_decides_which_bodies_can_be_sent_again() {
    let retried = |cap: usize, req| async move {
        let layer = quick().max_replay_bytes(cap).build().unwrap();
        let server = Server::new(&[Step::Status(503), Step::Status(200)]);
        let res = send(&layer, &server, req).await.unwrap();
        let reason = RetryInfo::of(&res).and_then(RetryInfo::stop_reason);
        (
            res.status(),
            server.bodies(),
            reason,
            layer.metrics().replay_cap_hit,
        )
    };
    let too_large = Some(StopReason::BodyNotReplayable(NotReplayable::TooLarge));
    assert_eq!(
        retried(9, put("ten bytes!")).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            vec!["ten bytes!".into()],
            too_large,
            1
        )
    );
    assert_eq!(
        retried(10, put("ten bytes!")).await,
        (StatusCode::OK, vec!["ten bytes!".into(); 2], None, 0)
    );
    // With no bytes kept, only an empty body is sent again.
    assert_eq!(retried(0, get()).await.0, StatusCode::OK);
    assert_eq!(retried(0, put("x")).await.2, too_large);
}

/// Counts 404 as a failure (an eventually consistent store) and ignores 503.
#[derive(Clone)]
struct NotFoundIsTransient;

impl Classify for NotFoundIsTransient {
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Outcome {
        match status {
            StatusCode::NOT_FOUND => {
                Outcome::Failure(Failure::new(FailureKind::Status(status), Sent::Yes))
            }
            StatusCode::SERVICE_UNAVAILABLE => Outcome::Ignored,
            _ => HttpClassifier::new().classify_response(status, headers),
        }
    }

    fn classify_error(&self, error: &(dyn StdError + 'static)) -> Outcome {
        HttpClassifier::new().classify_error(error)
    }
}

#[tokio::test(start_paused = true)]
async fn a_custom_classifier_decides_what_is_retried_and_keeps_the_other_settings() {
    let layer = quick()
        .max_retries(1)
        .classifier(NotFoundIsTransient)
        .build()
        .unwrap();
    let server = Server::always(404);
    let res = send(&layer, &server, get()).await.unwrap();
    assert_eq!((res.status(), server.calls()), (StatusCode::NOT_FOUND, 2));
    let info = RetryInfo::of(&res).unwrap();
    assert_eq!(info.stop_reason(), Some(StopReason::MaxRetries));
    assert_eq!(
        info.retries()[0].failure().status(),
        Some(StatusCode::NOT_FOUND)
    );

    // Ignored: returned as it is, with nothing to report.
    let server = Server::new(&[Step::Status(503), Step::Status(200)]);
    let res = send(&layer, &server, get()).await.unwrap();
    assert_eq!(
        (res.status(), server.calls()),
        (StatusCode::SERVICE_UNAVAILABLE, 1)
    );
    assert!(RetryInfo::of(&res).is_none());

    // The default classifier does not retry a 404.
    let server = Server::always(404);
    send(&quick().build().unwrap(), &server, get())
        .await
        .unwrap();
    assert_eq!(server.calls(), 1);
}

#[test]
fn debug_shows_the_settings() {
    let builder = RetryLayer::builder()
        .max_retries(2)
        .max_retry_after(Duration::from_secs(30))
        .max_replay_bytes(1000)
        .max_replay_memory(5000)
        .drain_limit(7);
    let text = format!("{builder:?}");
    for field in [
        "max_retries: 2",
        "max_never_sent_retries: 2",
        "max_retry_after: 30s",
        "max_replay_bytes: 1000",
        "max_replay_memory: 5000",
    ] {
        assert!(text.contains(field), "{field} in {text}");
    }
    assert_eq!(
        format!("{:?}", RetryBuilder::default()),
        format!("{:?}", RetryLayer::builder())
    );

    let layer = builder.build().unwrap();
    let text = format!("{layer:?}");
    for field in [
        "RetryLayer { config: RetryConfig { max_retries: 2,",
        // The floor of the default budget: 10 per second over 10 s.
        "available: 100",
        "max_bytes: 1000",
        "ReplayMemory { capacity: 5000, in_use: 0 }",
    ] {
        assert!(text.contains(field), "{field} in {text}");
    }
    assert_eq!(
        format!("{:?}", RetryLayer::default()),
        format!("{:?}", RetryLayer::new())
    );
    let unlimited = RetryLayer::builder()
        .budget(Budget::unlimited())
        .build()
        .unwrap();
    assert!(format!("{unlimited:?}").contains("budget: BudgetState::unlimited"));
}

#[test]
fn the_default_randomness_spreads_full_jitter_over_the_whole_backoff() {
    let backoff = Backoff::default();
    let random = Random::default();
    let delays: Vec<Duration> = (0..200)
        .map(|_| backoff.delay(0, Duration::ZERO, &random))
        .collect();
    assert!(delays.iter().all(|d| *d <= Duration::from_millis(100)));
    let low = delays
        .iter()
        .filter(|d| **d < Duration::from_millis(50))
        .count();
    assert!((40..=160).contains(&low), "{low} of 200 below half");
    // Debug names the source, not its state.
    assert_eq!(format!("{random:?}"), "Random::thread");
    assert_eq!(format!("{:?}", Random::seeded(42)), "Random::seeded");
    assert_eq!(format!("{:?}", Random::from_fn(|| 7)), "Random::from_fn");
}
