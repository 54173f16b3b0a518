//! [`ResponseFuture`]: the future of a [`Breaker`](crate::Breaker) call.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use flext_core::{BoxError, Classify, Outcome};
use http::{HeaderMap, Response, StatusCode};
use pin_project_lite::pin_project;

use crate::error::CircuitOpen;
use crate::state::{Permit, Verdict};

pin_project! {
    /// The future of a [`Breaker`](crate::Breaker) call: the inner future with the call's
    /// permit, or the [`CircuitOpen`] error of a refused call.
    ///
    /// Dropping it before it completes gives a half-open probe's place back, without a
    /// verdict.
    pub struct ResponseFuture<F, C> {
        // First and in an `Option` of its own, so that the inner service's future is written
        // where it stays (no move of a large future through a temporary); `None` when refused.
        #[pin]
        future: Option<F>,
        guard: Guard<C>,
    }
}

/// What a call's future does when the inner future ends.
pub(crate) enum Guard<C> {
    /// Records the outcome with the permit.
    Permit { permit: Permit, classifier: C },
    /// Nothing: the request has no breaker.
    Unguarded,
    /// The call was refused (there is no inner future).
    Rejected(Option<CircuitOpen>),
}

impl<F, C> ResponseFuture<F, C> {
    #[inline]
    pub(crate) fn new(future: F, guard: Guard<C>) -> Self {
        ResponseFuture {
            future: Some(future),
            guard,
        }
    }

    pub(crate) fn rejected(error: CircuitOpen) -> Self {
        ResponseFuture {
            future: None,
            guard: Guard::Rejected(Some(error)),
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.guard {
            Guard::Permit { permit, .. } => format!("guarded({permit:?})"),
            Guard::Unguarded => "unguarded".to_string(),
            Guard::Rejected(error) => format!("rejected({error:?})"),
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<F, C, B, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    C: Classify,
{
    type Output = Result<Response<B>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(future) = this.future.as_pin_mut() else {
            return Poll::Ready(Err(match this.guard {
                Guard::Rejected(error) => match error.take() {
                    Some(open) => open.into(),
                    None => "breaker future polled after completion".into(),
                },
                _ => "breaker future polled after completion".into(),
            }));
        };
        let result = ready!(future.poll(cx));
        let Guard::Permit { permit, classifier } = this.guard else {
            return Poll::Ready(result.map_err(Into::into));
        };
        match result {
            Ok(response) => {
                let (status, headers) = (response.status(), response.headers());
                let outcome = classifier.classify_response(status, headers);
                let wait = server_wait(&outcome, status, headers);
                permit.finish(verdict(&outcome), wait);
                Poll::Ready(Ok(response))
            }
            Err(error) => {
                let error: BoxError = error.into();
                let outcome = classifier.classify_error(&*error);
                let wait = outcome.failure().and_then(|f| f.retry_after());
                permit.finish(verdict(&outcome), wait);
                Poll::Ready(Err(error))
            }
        }
    }
}

#[inline]
fn verdict(outcome: &Outcome) -> Verdict {
    match outcome {
        Outcome::Success => Verdict::Success,
        Outcome::Failure(_) => Verdict::Failure,
        Outcome::Ignored => Verdict::Ignored,
    }
}

/// The `Retry-After` of a failure, or of any 429 or 503 (a 429 is not a failure by default,
/// but its wait still bounds the next open time from below).
#[inline]
fn server_wait(outcome: &Outcome, status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    if let Some(wait) = outcome.failure().and_then(|f| f.retry_after()) {
        return Some(wait);
    }
    if matches!(status.as_u16(), 429 | 503) && headers.contains_key(http::header::RETRY_AFTER) {
        return flext_core::retry_after(headers, SystemTime::now());
    }
    None
}
