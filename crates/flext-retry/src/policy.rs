//! What may be retried, and how long to wait: the idempotency rules, the per-request
//! [`RetryOverride`], and the decision for one failure.

use std::time::Duration;

use flext_core::{Deadline, Failure, FailureKind};
use http::header::HeaderName;
use http::{Extensions, Method, StatusCode};

use crate::config::Config;
use crate::info::StopReason;

/// The `Idempotency-Key` request header (IETF draft `httpapi-idempotency-key-header`): a
/// request that carries it may be retried whatever its method, since the server promises to
/// execute it once.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// A per-request override of the idempotency rules, set as a request extension.
///
/// ```
/// use flext_retry::RetryOverride;
///
/// // This POST is safe to repeat (an upsert keyed by the URL, say).
/// let mut request = http::Request::post("http://api.example/items/7").body(()).unwrap();
/// request.extensions_mut().insert(RetryOverride::Idempotent);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryOverride {
    /// Treat the request as idempotent: transient failures are retried whatever its method.
    Idempotent,
    /// Treat the request as not idempotent, even a `GET` with side effects: only failures
    /// that certainly never reached the server are retried.
    NotIdempotent,
    /// Never retry this request. Its body is not kept either.
    Disabled,
}

/// Whether RFC 9110 §9.2.2 calls `method` idempotent: `GET`, `HEAD`, `OPTIONS`, `TRACE`,
/// `PUT` and `DELETE`.
pub fn is_idempotent_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// How a request may be retried, read from its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    Idempotent,
    NotIdempotent,
    Disabled,
}

impl Idempotency {
    /// `has_key`: whether the request carries an `Idempotency-Key`.
    pub(crate) fn of(method: &Method, has_key: bool, extensions: &Extensions) -> Self {
        match extensions.get::<RetryOverride>() {
            Some(RetryOverride::Idempotent) => Idempotency::Idempotent,
            Some(RetryOverride::NotIdempotent) => Idempotency::NotIdempotent,
            Some(RetryOverride::Disabled) => Idempotency::Disabled,
            None if is_idempotent_method(method) || has_key => Idempotency::Idempotent,
            None => Idempotency::NotIdempotent,
        }
    }
}

/// Where a request is in its retries.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Progress {
    pub(crate) retries: u32,
    pub(crate) never_sent_retries: u32,
    pub(crate) previous_delay: Duration,
}

/// A retry the policy allows, before the body and the budget are asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) delay: Duration,
    /// The server's `Retry-After`, when it is what set the delay.
    pub(crate) retry_after: Option<Duration>,
    /// Allowed only because the request was never sent.
    pub(crate) never_sent: bool,
}

/// The decision for one failure: a planned retry, or why not.
pub(crate) fn plan<C>(
    config: &Config<C>,
    failure: &Failure,
    idempotency: Idempotency,
    progress: Progress,
    deadline: Option<Deadline>,
) -> Result<Plan, StopReason> {
    let never_sent = match idempotency {
        Idempotency::Disabled => return Err(StopReason::Disabled),
        Idempotency::Idempotent if failure.is_transient() => false,
        _ if failure.is_never_sent() => {
            if progress.never_sent_retries >= config.max_never_sent_retries {
                return Err(StopReason::MaxRetries);
            }
            true
        }
        Idempotency::NotIdempotent if failure.is_transient() => {
            return Err(StopReason::NotIdempotent);
        }
        _ => return Err(StopReason::NotRetryable),
    };
    if progress.retries >= config.max_retries {
        return Err(StopReason::MaxRetries);
    }
    let backoff = config
        .backoff
        .delay(progress.retries, progress.previous_delay, &config.random);
    let asked = match (failure.kind(), failure.status()) {
        // A layer below refused it locally (an open circuit). Resend only when it will let a
        // try through by the time the backoff is over anyway; otherwise fail fast: waiting
        // out an open circuit would pile callers up behind it, which is what it is for.
        (FailureKind::Rejected(_), _) => match failure.retry_after() {
            Some(wait) if wait <= backoff => None,
            _ => return Err(StopReason::Rejected),
        },
        (_, Some(StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE)) => {
            failure.retry_after()
        }
        _ => None,
    };
    if let Some(asked) = asked
        && asked > config.max_retry_after
    {
        return Err(StopReason::RetryAfterTooLong(asked));
    }
    let delay = asked.map_or(backoff, |asked| asked.max(backoff));
    if deadline.is_some_and(|d| delay >= d.remaining()) {
        return Err(StopReason::Deadline);
    }
    Ok(Plan {
        delay,
        retry_after: asked.filter(|a| *a >= backoff),
        never_sent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::Backoff;
    use crate::config::RetryBuilder;
    use flext_core::Sent;
    use http::HeaderMap;

    fn config() -> Config<flext_core::HttpClassifier> {
        RetryBuilder::new()
            .backoff(Backoff::constant(Duration::from_millis(100)))
            .into_config()
            .unwrap()
    }

    fn status(code: u16) -> Failure {
        let s = StatusCode::from_u16(code).unwrap();
        let kind = if code == 429 {
            FailureKind::Throttled(s)
        } else {
            FailureKind::Status(s)
        };
        Failure::new(kind, Sent::Yes)
    }

    fn idem(method: &Method, headers: &[(&str, &str)]) -> Idempotency {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let kept = flext_core::HeaderList::of(&h);
        Idempotency::of(method, kept.contains(&IDEMPOTENCY_KEY), &Extensions::new())
    }

    #[test]
    fn idempotency_rules() {
        for m in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::TRACE,
            Method::PUT,
            Method::DELETE,
        ] {
            assert_eq!(idem(&m, &[]), Idempotency::Idempotent);
        }
        assert_eq!(idem(&Method::POST, &[]), Idempotency::NotIdempotent);
        assert_eq!(idem(&Method::PATCH, &[]), Idempotency::NotIdempotent);
        assert_eq!(
            idem(&Method::POST, &[("Idempotency-Key", "k1")]),
            Idempotency::Idempotent
        );
        let mut ext = Extensions::new();
        ext.insert(RetryOverride::NotIdempotent);
        assert_eq!(
            Idempotency::of(&Method::GET, false, &ext),
            Idempotency::NotIdempotent
        );
        ext.insert(RetryOverride::Idempotent);
        assert_eq!(
            Idempotency::of(&Method::POST, false, &ext),
            Idempotency::Idempotent
        );
    }

    #[test]
    fn transient_failures_need_idempotency() {
        let c = config();
        let p = Progress::default();
        let plan = plan(&c, &status(503), Idempotency::Idempotent, p, None).unwrap();
        assert_eq!(plan.delay, Duration::from_millis(100));
        assert!(!plan.never_sent);
        assert_eq!(
            super::plan(&c, &status(503), Idempotency::NotIdempotent, p, None),
            Err(StopReason::NotIdempotent)
        );
        let other = Failure::new(FailureKind::Other, Sent::Maybe);
        assert_eq!(
            super::plan(&c, &other, Idempotency::Idempotent, p, None),
            Err(StopReason::NotRetryable)
        );
    }

    #[test]
    fn an_open_circuit_fails_fast_unless_it_reopens_within_the_backoff() {
        let c = config();
        let p = Progress::default();
        let open = |secs: u64| {
            Failure::new(FailureKind::Rejected("circuit_open"), Sent::No)
                .with_retry_after(Some(Duration::from_secs(secs)))
        };
        // 30 s until the next probe: no waiting, the caller gets the rejection at once.
        assert_eq!(
            plan(&c, &open(30), Idempotency::Idempotent, p, None),
            Err(StopReason::Rejected)
        );
        // Forced open (no time): never resent.
        let forced = Failure::new(FailureKind::Rejected("circuit_open"), Sent::No);
        assert_eq!(
            plan(&c, &forced, Idempotency::Idempotent, p, None),
            Err(StopReason::Rejected)
        );
        // A probe is due before the backoff ends: resend after the backoff, even a POST
        // (the request was never sent).
        let due = Failure::new(FailureKind::Rejected("circuit_open"), Sent::No)
            .with_retry_after(Some(Duration::ZERO));
        let plan = plan(&c, &due, Idempotency::NotIdempotent, p, None).unwrap();
        assert_eq!(plan.delay, Duration::from_millis(100));
        assert!(plan.never_sent);
    }

    #[test]
    fn never_sent_is_retried_for_any_method_twice() {
        let c = config();
        let refused = Failure::new(FailureKind::NeverSent, Sent::No);
        let mut p = Progress::default();
        for _ in 0..2 {
            let plan = plan(&c, &refused, Idempotency::NotIdempotent, p, None).unwrap();
            assert!(plan.never_sent);
            p.retries += 1;
            p.never_sent_retries += 1;
        }
        assert_eq!(
            plan(&c, &refused, Idempotency::NotIdempotent, p, None),
            Err(StopReason::MaxRetries)
        );
        // An idempotent request keeps the general limit.
        assert!(plan(&c, &refused, Idempotency::Idempotent, p, None).is_ok());
        p.retries = 3;
        assert_eq!(
            plan(&c, &refused, Idempotency::Idempotent, p, None),
            Err(StopReason::MaxRetries)
        );
        assert_eq!(
            plan(
                &c,
                &refused,
                Idempotency::Disabled,
                Progress::default(),
                None
            ),
            Err(StopReason::Disabled)
        );
    }

    #[test]
    fn retry_after_sets_the_wait_on_429_and_503_only() {
        let c = config();
        let p = Progress::default();
        let ra = |code, secs| status(code).with_retry_after(Some(Duration::from_secs(secs)));
        let plan503 = plan(&c, &ra(503, 2), Idempotency::Idempotent, p, None).unwrap();
        assert_eq!(plan503.delay, Duration::from_secs(2));
        assert_eq!(plan503.retry_after, Some(Duration::from_secs(2)));
        let plan429 = plan(&c, &ra(429, 0), Idempotency::Idempotent, p, None).unwrap();
        assert_eq!(plan429.delay, Duration::from_millis(100));
        assert_eq!(plan429.retry_after, None);
        let plan502 = plan(&c, &ra(502, 5), Idempotency::Idempotent, p, None).unwrap();
        assert_eq!(plan502.delay, Duration::from_millis(100));
        assert_eq!(
            plan(&c, &ra(503, 61), Idempotency::Idempotent, p, None),
            Err(StopReason::RetryAfterTooLong(Duration::from_secs(61)))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_wait_reaches_the_deadline() {
        let c = config();
        let p = Progress::default();
        let soon = Some(Deadline::after(Duration::from_millis(100)));
        assert_eq!(
            plan(&c, &status(503), Idempotency::Idempotent, p, soon),
            Err(StopReason::Deadline)
        );
        let later = Some(Deadline::after(Duration::from_millis(101)));
        assert!(plan(&c, &status(503), Idempotency::Idempotent, p, later).is_ok());
    }
}
