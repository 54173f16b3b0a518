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
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C> {
        Guarded {
            #[pin]
            future: F,
            permit: Permit,
            classifier: C,
        },
        Unguarded {
            #[pin]
            future: F,
        },
        Rejected {
            error: Option<CircuitOpen>,
        },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn guarded(future: F, permit: Permit, classifier: C) -> Self {
        ResponseFuture {
            kind: Kind::Guarded {
                future,
                permit,
                classifier,
            },
        }
    }

    pub(crate) fn unguarded(future: F) -> Self {
        ResponseFuture {
            kind: Kind::Unguarded { future },
        }
    }

    pub(crate) fn rejected(error: CircuitOpen) -> Self {
        ResponseFuture {
            kind: Kind::Rejected { error: Some(error) },
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Guarded { permit, .. } => format!("guarded({permit:?})"),
            Kind::Unguarded { .. } => "unguarded".to_string(),
            Kind::Rejected { error } => format!("rejected({error:?})"),
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
        match self.project().kind.project() {
            KindProj::Guarded {
                future,
                permit,
                classifier,
            } => match ready!(future.poll(cx)) {
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
            },
            KindProj::Unguarded { future } => future.poll(cx).map_err(Into::into),
            KindProj::Rejected { error } => Poll::Ready(Err(match error.take() {
                Some(open) => open.into(),
                None => "breaker future polled after completion".into(),
            })),
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
