//! [`CircuitOpen`]: the error of a call the breaker did not let through.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use flext_core::{Origin, Rejected};

use crate::observe::State;

/// A call refused because its breaker is open, half-open with all its probes out, or forced
/// open.
///
/// It reaches the caller inside a `tower::BoxError`; find it with `downcast_ref` (or walk the
/// source chain when another layer wrapped it). The key is the breaker's: the origin in the
/// default setup.
///
/// ```
/// use flext_breaker::{BreakerLayer, CircuitOpen};
/// use flext_core::{Origin, Rejected};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let layer = BreakerLayer::new();
/// let origin: Origin = "https://api.example.com".parse().unwrap();
/// layer.handle().force_open(&origin);
///
/// let svc = layer.layer(service_fn(|_req: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
/// }));
/// let req = http::Request::get("https://api.example.com/items").body(()).unwrap();
/// let err = svc.oneshot(req).await.unwrap_err();
///
/// let open = err.downcast_ref::<CircuitOpen>().unwrap();
/// assert!(open.is_forced());
/// assert_eq!(open.origin(), Some(origin));
/// assert_eq!(open.to_string(), "circuit forced open for https://api.example.com:443");
/// # }
/// ```
#[derive(Clone)]
pub struct CircuitOpen {
    key: Arc<str>,
    state: State,
    retry_after: Option<Duration>,
    rejected: Rejected,
}

impl CircuitOpen {
    pub(crate) fn new(key: Arc<str>, state: State, retry_after: Option<Duration>) -> CircuitOpen {
        CircuitOpen {
            key,
            state,
            retry_after,
            rejected: Rejected::new("circuit_open", retry_after),
        }
    }

    /// The breaker's key as text: the origin (`https://host:443`) by default.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The origin, when the breaker is keyed by origin.
    pub fn origin(&self) -> Option<Origin> {
        self.key.parse().ok()
    }

    /// How long until the breaker lets a probe through: the rest of the open time, or, when
    /// half-open with every probe out, the longest it waits for their verdict (it may close
    /// sooner). `None` when forced open: no probe comes until an operator resets it.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The state that refused the call: [`State::Open`], [`State::HalfOpen`] or
    /// [`State::ForcedOpen`].
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether an operator forced the breaker open.
    pub fn is_forced(&self) -> bool {
        self.state == State::ForcedOpen
    }

    /// Whether the breaker is half-open and its probes are all out.
    pub fn is_half_open(&self) -> bool {
        self.state == State::HalfOpen
    }

    /// The first `CircuitOpen` in `err` or its chain of sources.
    pub fn find<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a CircuitOpen> {
        let mut cur = Some(err);
        while let Some(e) = cur {
            if let Some(open) = e.downcast_ref::<CircuitOpen>() {
                return Some(open);
            }
            cur = e.source();
        }
        None
    }
}

impl fmt::Debug for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitOpen")
            .field("key", &self.key)
            .field("state", &self.state)
            .field("retry_after", &self.retry_after)
            .finish()
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.state, self.retry_after) {
            (State::ForcedOpen, _) | (_, None) => {
                write!(f, "circuit forced open for {}", self.key)
            }
            (State::HalfOpen, Some(d)) => write!(
                f,
                "circuit half-open for {}; probe in flight, next probe in at most {:.1}s",
                self.key,
                d.as_secs_f64()
            ),
            (_, Some(d)) => write!(
                f,
                "circuit open for {}; next probe in {:.1}s",
                self.key,
                d.as_secs_f64()
            ),
        }
    }
}

impl StdError for CircuitOpen {
    // The shared vocabulary's view of this refusal: never sent, retry after the time left.
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_lower_case_with_the_time_left() {
        let e = CircuitOpen::new(
            "https://host:443".into(),
            State::Open,
            Some(Duration::from_millis(12_345)),
        );
        assert_eq!(
            e.to_string(),
            "circuit open for https://host:443; next probe in 12.3s"
        );
        assert_eq!(e.origin(), Some("https://host".parse::<Origin>().unwrap()));
        let h = CircuitOpen::new("tenant-a".into(), State::HalfOpen, Some(Duration::ZERO));
        assert_eq!(
            h.to_string(),
            "circuit half-open for tenant-a; probe in flight, next probe in at most 0.0s"
        );
        assert_eq!(h.origin(), None);
        let boxed: flext_core::BoxError = h.into();
        assert!(CircuitOpen::find(&*boxed).unwrap().is_half_open());
    }

    #[test]
    fn other_layers_read_it_as_a_rejection_never_sent() {
        let e = CircuitOpen::new(
            "https://host:443".into(),
            State::Open,
            Some(Duration::from_secs(7)),
        );
        let boxed: flext_core::BoxError = e.into();
        let failure = flext_core::classify_error_chain(&*boxed);
        assert_eq!(
            failure.kind(),
            flext_core::FailureKind::Rejected("circuit_open")
        );
        assert!(failure.is_never_sent());
        assert_eq!(failure.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(failure.label(), "circuit_open");
    }
}
