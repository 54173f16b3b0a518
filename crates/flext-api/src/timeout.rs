//! The two timeouts of the default stack: total (sets the [`Deadline`]) and per attempt.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use flext_core::{BoxError, Deadline, Sent, TransportError};
use http::Request;
use pin_project_lite::pin_project;
use tokio::time::{Sleep, sleep_until};
use tower::{Layer, Service};

/// The error of a call that ran past its total timeout (or the request's own deadline).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TotalTimeoutElapsed {
    pub(crate) after: Duration,
}

impl fmt::Display for TotalTimeoutElapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "total timeout of {} elapsed",
            crate::duration::format(self.after)
        )
    }
}

impl StdError for TotalTimeoutElapsed {}

/// What the timeout future returns when time runs out.
#[derive(Debug, Clone, Copy)]
enum OnElapsed {
    Total(Duration),
    Attempt,
}

impl OnElapsed {
    fn error(self) -> BoxError {
        match self {
            OnElapsed::Total(after) => Box::new(TotalTimeoutElapsed { after }),
            // The attempt may have reached the server: retry resends it only when idempotent.
            OnElapsed::Attempt => Box::new(TransportError::timeout(Sent::Maybe)),
        }
    }
}

/// Sets a [`Deadline`] `timeout` from now on each request (or keeps the request's own, when
/// earlier) and fails the call with a timeout error when it passes. Placed above retry, so
/// that backoff sleeps count and retry never sleeps past it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TotalTimeoutLayer {
    timeout: Duration,
}

impl TotalTimeoutLayer {
    pub(crate) fn new(timeout: Duration) -> TotalTimeoutLayer {
        TotalTimeoutLayer { timeout }
    }
}

impl<S> Layer<S> for TotalTimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            mode: Mode::Total(self.timeout),
        }
    }
}

/// Bounds each attempt by `timeout`, or by what is left of the request's [`Deadline`] when
/// that is sooner. An attempt that runs out fails with a `flext_core::TransportError` of kind
/// timeout (may have been sent), which the layers above classify like any other timeout.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttemptTimeoutLayer {
    timeout: Duration,
}

impl AttemptTimeoutLayer {
    pub(crate) fn new(timeout: Duration) -> AttemptTimeoutLayer {
        AttemptTimeoutLayer { timeout }
    }
}

impl<S> Layer<S> for AttemptTimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            mode: Mode::Attempt(self.timeout),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Total(Duration),
    Attempt(Duration),
}

/// The service of both timeout layers.
#[derive(Debug, Clone)]
pub(crate) struct Timeout<S> {
    inner: S,
    mode: Mode,
}

impl<S, B> Service<Request<B>> for Timeout<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // One clock read per call (tokio's, so that paused-clock tests see these timeouts).
        let now = tokio::time::Instant::now();
        let (deadline, on_elapsed) = match self.mode {
            Mode::Total(timeout) => {
                let deadline = Deadline::after_from(now, timeout).set_on(&mut req);
                let after = deadline.instant().saturating_duration_since(now);
                (deadline, OnElapsed::Total(after))
            }
            Mode::Attempt(timeout) => {
                let own = Deadline::after_from(now, timeout);
                (
                    Deadline::of(&req).map_or(own, |d| d.min(own)),
                    OnElapsed::Attempt,
                )
            }
        };
        ResponseFuture {
            inner: self.inner.call(req),
            sleep: None,
            deadline,
            on_elapsed,
        }
    }
}

pin_project! {
    /// The response future of the timeout layers.
    pub(crate) struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // Made when the inner future first waits: a call that is ready at once (a breaker's
        // rejection, an error before sending) never touches the runtime's timer.
        #[pin]
        sleep: Option<Sleep>,
        deadline: Deadline,
        on_elapsed: OnElapsed,
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(out) = this.inner.poll(cx) {
            return Poll::Ready(out.map_err(Into::into));
        }
        if this.sleep.is_none() {
            this.sleep.set(Some(sleep_until(this.deadline.instant())));
        }
        // `sleep` is always set here, so its waker is registered whenever this is pending.
        match this.sleep.as_pin_mut().map(|sleep| sleep.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Err(this.on_elapsed.error())),
            _ => Poll::Pending,
        }
    }
}

/// The total timeout of a stack whose every layer below is already bounded by the
/// [`Deadline`]: sets it on each request as [`TotalTimeoutLayer`] does, but keeps no timer of
/// its own, so a call pays for one timer (the attempt's) rather than two.
///
/// Only for the default shape of the stack (see `Stack::build_all_on`), where that holds:
/// retry never starts a backoff that would end past the deadline nor waits past it for the
/// inner service to be ready for a resend, the breaker never waits, the attempt timeout's
/// timer fires by the deadline at the latest, and there are neither credentials (a token
/// fetch may wait) nor custom layers (which may wait for anything).
/// A call cut short by the deadline then ends with the attempt's timeout error, as it did
/// when both timers fired together.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeadlineLayer {
    timeout: Duration,
}

impl DeadlineLayer {
    pub(crate) fn new(timeout: Duration) -> DeadlineLayer {
        DeadlineLayer { timeout }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = SetDeadline<S>;

    fn layer(&self, inner: S) -> SetDeadline<S> {
        SetDeadline {
            inner,
            timeout: self.timeout,
        }
    }
}

/// The service of [`DeadlineLayer`].
#[derive(Debug, Clone)]
pub(crate) struct SetDeadline<S> {
    inner: S,
    timeout: Duration,
}

impl<S, B> Service<Request<B>> for SetDeadline<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        Deadline::after_from(tokio::time::Instant::now(), self.timeout).set_on(&mut req);
        DeadlineFuture {
            inner: self.inner.call(req),
        }
    }
}

pin_project! {
    /// The response future of [`SetDeadline`]: the inner one, its error made a `BoxError`.
    pub(crate) struct DeadlineFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, T, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx).map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{ServiceExt, service_fn};

    fn slow(
        d: Duration,
    ) -> impl Service<Request<()>, Response = Option<Deadline>, Error = Infallible, Future: Send> + Clone
    {
        service_fn(move |req: Request<()>| async move {
            tokio::time::sleep(d).await;
            Ok::<_, Infallible>(Deadline::of(&req))
        })
    }

    /// A call that is ready at once makes no timer: this runs outside any runtime, where
    /// making a tokio `Sleep` panics.
    #[test]
    fn a_call_ready_at_once_needs_no_timer() {
        use std::future::Future;
        use std::task::Waker;
        for layer in [
            TotalTimeoutLayer::new(Duration::from_secs(1)).layer(service_fn(ready)),
            AttemptTimeoutLayer::new(Duration::from_secs(1)).layer(service_fn(ready)),
        ] {
            let mut svc = layer;
            let mut fut = std::pin::pin!(svc.call(Request::new(())));
            let mut cx = Context::from_waker(Waker::noop());
            assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(()))));
        }
    }

    async fn ready(_: Request<()>) -> Result<(), Infallible> {
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn total_timeout_sets_the_deadline_and_fires() {
        let svc =
            TotalTimeoutLayer::new(Duration::from_secs(2)).layer(slow(Duration::from_secs(1)));
        let deadline = svc
            .clone()
            .oneshot(Request::new(()))
            .await
            .unwrap()
            .unwrap();
        assert!(deadline.remaining() <= Duration::from_secs(1));

        let svc =
            TotalTimeoutLayer::new(Duration::from_secs(2)).layer(slow(Duration::from_secs(5)));
        let start = tokio::time::Instant::now();
        let err = svc.oneshot(Request::new(())).await.unwrap_err();
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert!(err.downcast_ref::<TotalTimeoutElapsed>().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_deadline_that_is_sooner_wins() {
        let svc =
            TotalTimeoutLayer::new(Duration::from_secs(30)).layer(slow(Duration::from_secs(5)));
        let mut req = Request::new(());
        req.extensions_mut()
            .insert(Deadline::after(Duration::from_millis(300)));
        let start = tokio::time::Instant::now();
        assert!(svc.oneshot(req).await.is_err());
        assert_eq!(start.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_layer_sets_the_deadline_and_the_attempt_timeout_keeps_it() {
        let svc = DeadlineLayer::new(Duration::from_secs(2)).layer(
            AttemptTimeoutLayer::new(Duration::from_secs(10)).layer(slow(Duration::from_secs(5))),
        );
        let start = tokio::time::Instant::now();
        let err = svc.oneshot(Request::new(())).await.unwrap_err();
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert!(TransportError::find(&*err).is_some_and(TransportError::is_timeout));

        // A sooner deadline of the request's own wins; the deadline reaches the inner service.
        let svc = DeadlineLayer::new(Duration::from_secs(30)).layer(slow(Duration::from_secs(1)));
        let mut req = Request::new(());
        req.extensions_mut()
            .insert(Deadline::after(Duration::from_secs(3)));
        let deadline = svc.oneshot(req).await.unwrap().unwrap();
        assert_eq!(deadline.remaining(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn attempt_timeout_is_a_transport_timeout_bounded_by_the_deadline() {
        let svc =
            AttemptTimeoutLayer::new(Duration::from_secs(10)).layer(slow(Duration::from_secs(60)));
        let mut req = Request::new(());
        req.extensions_mut()
            .insert(Deadline::after(Duration::from_secs(3)));
        let start = tokio::time::Instant::now();
        let err = svc.oneshot(req).await.unwrap_err();
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        let t = TransportError::find(&*err).unwrap();
        assert!(t.is_timeout());
        assert_eq!(t.sent(), Sent::Maybe);
    }
}
