//! [`ResponseFuture`], the future of one request through [`Retry`](crate::Retry).

use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Buf;
use flext_core::{Attempt, BoxError, Classify, Deadline, Failure, NotReplayable, Outcome};
use flext_core::{ReplayBody, Replayable, RequestHead};
use flext_core::{Sent, TransportError};
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use crate::config::Shared;
use crate::error::RetryError;
use crate::info::{RetryInfo, RetryRecord, StopReason};
use crate::metrics::bump;
use crate::policy::{self, IDEMPOTENCY_KEY, Idempotency, Progress};

pin_project! {
    /// The future of [`Retry`](crate::Retry): the response of the last attempt, or its
    /// error as a [`RetryError`].
    pub struct ResponseFuture<S, B, ResBody, C>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        #[pin]
        pub(crate) state: State<S::Future, ResBody, B>,
        pub(crate) service: S,
        pub(crate) ctx: Ctx<B, C>,
    }
}

pin_project! {
    #[project = StateProj]
    pub(crate) enum State<F, ResBody, B> {
        Called {
            #[pin]
            future: F,
        },
        Backoff {
            // Boxed: only a retried request pays for it, and it keeps every request's future
            // (moved on every call) 90 bytes smaller.
            sleep: Pin<Box<Sleep>>,
            // The failed response's body, read and thrown away meanwhile.
            #[pin]
            drain: Option<ResBody>,
            drained: usize,
            // The body of the next attempt, taken when the retry was decided.
            next: Option<ReplayBody<B>>,
        },
        Ready {
            next: Option<ReplayBody<B>>,
            // Made when the inner service is not ready for the retry: the wait for it ends
            // at the request's deadline, as a backoff would. Boxed: only a retry that finds
            // the inner service busy pays for it.
            wait: Option<Pin<Box<Sleep>>>,
        },
        Done,
    }
}

/// What the future needs besides the attempt in progress. Flat, and built in one go by
/// `Retry::call`: each nested value would be one more copy of the head.
pub(crate) struct Ctx<B, C> {
    pub(crate) shared: Arc<Shared<C>>,
    /// The original request's head; `None` when retries are off for this request, and once
    /// it has finished.
    pub(crate) head: Option<RequestHead>,
    /// The body to send again; `None` as `head` is, or when the layer's replay memory had no
    /// room for it.
    pub(crate) replay: Option<Replayable<B>>,
    /// Bytes of a whole body held against the layer's replay memory.
    pub(crate) reserved: usize,
    pub(crate) info: RetryInfo,
    pub(crate) progress: Progress,
    /// The output was returned.
    pub(crate) done: bool,
}

enum Next<T, ResBody, B> {
    Return(T),
    Retry {
        delay: Duration,
        drain: Option<ResBody>,
        /// The body of the next attempt.
        next: ReplayBody<B>,
    },
}

/// Holds a whole body's bytes against the layer's replay memory and returns their number;
/// past the cap, drops them: the request is then not retried.
#[inline]
pub(crate) fn reserve<B, C>(replay: &mut Option<Replayable<B>>, shared: &Shared<C>) -> usize {
    let len = replay.as_ref().and_then(Replayable::whole_len).unwrap_or(0);
    match shared.config.replay.memory() {
        Some(memory) if len > 0 => {
            if memory.try_reserve(len) {
                return len;
            }
            *replay = None;
            0
        }
        _ => 0,
    }
}

impl<S, B, ResBody, C> Future for ResponseFuture<S, B, ResBody, C>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body,
    C: Classify,
{
    type Output = Result<Response<ResBody>, RetryError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { future } => {
                    // The last attempt's future stays until this one is dropped, as in tower's
                    // retry: replacing it would cost its drop twice on every request.
                    if this.ctx.done {
                        panic!("retry ResponseFuture polled after completion");
                    }
                    let classifier = &this.ctx.shared.config.classifier;
                    let (result, outcome) = match ready!(future.poll(cx)) {
                        Ok(mut res) => {
                            let outcome = classifier.classify_response(res.status(), res.headers());
                            if !matches!(outcome, Outcome::Failure(_)) {
                                // The common end, where the response is moved only once.
                                this.ctx.finish_ok(&mut res, None);
                                return Poll::Ready(Ok(res));
                            }
                            (Ok(res), outcome)
                        }
                        Err(e) => {
                            let e: BoxError = e.into();
                            let outcome = classifier.classify_error(&*e);
                            (Err(e), outcome)
                        }
                    };
                    let Outcome::Failure(failure) = outcome else {
                        return Poll::Ready(this.ctx.finish(result, None));
                    };
                    match this.ctx.on_failure(result, failure) {
                        Next::Return(out) => return Poll::Ready(out),
                        Next::Retry { delay, drain, next } if delay.is_zero() => {
                            // No time to drain: read what is already there, drop the rest.
                            let mut drain = std::pin::pin!(drain);
                            let mut drained = 0;
                            poll_drain(drain.as_mut(), &mut drained, this.ctx.drain_limit(), cx);
                            this.state.set(State::Ready {
                                next: Some(next),
                                wait: None,
                            });
                        }
                        Next::Retry { delay, drain, next } => {
                            this.state.set(State::Backoff {
                                sleep: Box::pin(tokio::time::sleep(delay)),
                                drain,
                                drained: 0,
                                next: Some(next),
                            });
                        }
                    }
                }
                StateProj::Backoff {
                    sleep,
                    drain,
                    drained,
                    next,
                } => {
                    poll_drain(drain, drained, this.ctx.drain_limit(), cx);
                    ready!(sleep.as_mut().poll(cx));
                    let next = next.take();
                    this.state.set(State::Ready { next, wait: None });
                }
                StateProj::Ready { next, wait } => {
                    let ready: Result<(), BoxError> = match this.service.poll_ready(cx) {
                        Poll::Ready(ready) => ready.map_err(Into::into),
                        Poll::Pending => {
                            let Some(deadline) = this.ctx.deadline() else {
                                return Poll::Pending;
                            };
                            let wait = wait.get_or_insert_with(|| {
                                Box::pin(tokio::time::sleep_until(deadline.instant()))
                            });
                            ready!(wait.as_mut().poll(cx));
                            // The deadline passed while the inner service was busy.
                            Err(TransportError::timeout(Sent::No).into())
                        }
                    };
                    if let Err(e) = ready {
                        let reason = this.ctx.past_deadline().then_some(StopReason::Deadline);
                        this.state.set(State::Done);
                        // The retry never went out: it is not an attempt made.
                        this.ctx.info.unsent();
                        return Poll::Ready(Err(this.ctx.fail(e, reason)));
                    }
                    // Invariant: `Ready` is only entered with the body `decide` took.
                    let Some(body) = next.take() else {
                        unreachable!("a retry has its body")
                    };
                    let future = this.service.call(this.ctx.next_request(body));
                    this.state.set(State::Called { future });
                }
                StateProj::Done => panic!("retry ResponseFuture polled after completion"),
            }
        }
    }
}

/// Reads and discards the body until it ends, fails, passes `limit` or is not ready; drops
/// it in all cases but the last.
fn poll_drain<R: Body>(
    mut drain: Pin<&mut Option<R>>,
    drained: &mut usize,
    limit: usize,
    cx: &mut Context<'_>,
) {
    while let Some(body) = drain.as_mut().as_pin_mut() {
        match body.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, Buf::remaining);
                *drained = drained.saturating_add(len);
                if *drained > limit {
                    drain.set(None);
                }
            }
            Poll::Ready(_) => drain.set(None),
            Poll::Pending => return,
        }
    }
}

impl<B, C> Ctx<B, C> {
    /// The request's deadline, while its head is kept.
    fn deadline(&self) -> Option<Deadline> {
        self.head.as_ref()?.deadline()
    }

    /// Whether the request's deadline has passed.
    fn past_deadline(&self) -> bool {
        self.deadline().is_some_and(Deadline::is_expired)
    }

    /// For a request that is not retried.
    pub(crate) fn once(shared: Arc<Shared<C>>) -> Ctx<B, C> {
        Ctx {
            shared,
            head: None,
            replay: None,
            reserved: 0,
            info: RetryInfo::new(),
            progress: Progress::default(),
            done: false,
        }
    }

    /// Drops what was kept for a retry, and gives its bytes back to the replay memory.
    fn release(&mut self) {
        self.head = None;
        self.replay = None;
        let reserved = mem::take(&mut self.reserved);
        if reserved > 0
            && let Some(memory) = self.shared.config.replay.memory()
        {
            memory.release(reserved);
        }
    }
}

impl<B, C> Drop for Ctx<B, C> {
    fn drop(&mut self) {
        // A finished request has released already.
        if !self.done {
            self.release();
        }
    }
}

impl<B, C: Classify> Ctx<B, C> {
    fn drain_limit(&self) -> usize {
        self.shared.config.drain_limit
    }

    /// What to do after an attempt that ended in `failure`.
    // Kept out of `poll`: most attempts succeed, and their path stays short.
    #[inline(never)]
    fn on_failure<ResBody>(
        &mut self,
        result: Result<Response<ResBody>, BoxError>,
        failure: Failure,
    ) -> Next<Result<Response<ResBody>, RetryError>, ResBody, B> {
        match self.decide(&failure) {
            Ok((delay, next)) => Next::Retry {
                delay,
                drain: result.ok().map(Response::into_body),
                next,
            },
            Err(reason) => {
                tracing::debug!(
                    attempts = self.info.attempts(),
                    failure = %failure,
                    reason = reason.as_str(),
                    "not retrying request"
                );
                Next::Return(self.finish(result, Some(reason)))
            }
        }
    }

    /// Decides whether to retry after `failure`; when it does, gives the wait and the body
    /// of the next attempt.
    fn decide(&mut self, failure: &Failure) -> Result<(Duration, ReplayBody<B>), StopReason> {
        let shared = &*self.shared;
        let counters = &shared.counters;
        let Some(head) = &self.head else {
            return Err(StopReason::Disabled);
        };
        let idempotency = Idempotency::of(
            &head.method,
            head.headers.contains(&IDEMPOTENCY_KEY),
            &head.extensions,
        );
        let deadline = self.deadline();
        let plan = policy::plan(
            &shared.config,
            failure,
            idempotency,
            self.progress,
            deadline,
        )
        .inspect_err(|reason| match reason {
            StopReason::RetryAfterTooLong(_) => bump(&counters.retry_after_too_long),
            StopReason::Deadline => bump(&counters.deadline_reached),
            _ => {}
        })?;
        // The body is checked before the budget is spent; taking a copy comes last, since it
        // takes the original stream over from the attempt that may still be sending it.
        let not_replayable = |why: NotReplayable| {
            if matches!(why, NotReplayable::TooLarge | NotReplayable::MemoryLimit) {
                bump(&counters.replay_cap_hit);
            }
            StopReason::BodyNotReplayable(why)
        };
        let replay = self
            .replay
            .as_ref()
            .ok_or_else(|| not_replayable(NotReplayable::MemoryLimit))?;
        replay.check().map_err(not_replayable)?;
        if !shared.budget.withdraw() {
            bump(&counters.budget_exhausted);
            return Err(StopReason::BudgetExhausted);
        }
        let body = replay.body().map_err(not_replayable)?;

        let retry = self.progress.retries + 1;

        bump(&counters.retries);
        if plan.retry_after.is_some() {
            bump(&counters.retry_after_honoured);
        }
        tracing::debug!(
            attempt = retry,
            reason = %failure,
            delay_ms = plan.delay.as_millis() as u64,
            retry_after = plan.retry_after.is_some(),
            "retrying request"
        );
        self.progress = Progress {
            retries: retry,
            never_sent_retries: self.progress.never_sent_retries + u32::from(plan.never_sent),
            previous_delay: plan.delay,
        };
        self.info
            .record(RetryRecord::new(*failure, plan.delay, plan.retry_after));
        Ok((plan.delay, body))
    }

    /// The request of the retry `on_failure` decided: a copy of the original's head, its
    /// extensions with `Attempt` set, and `body`, taken then.
    fn next_request(&self, body: ReplayBody<B>) -> Request<ReplayBody<B>> {
        // Invariant: a retry is only decided with the saved request.
        let Some(head) = &self.head else {
            unreachable!("a retry has its saved request")
        };
        let base = head
            .extensions
            .get::<Attempt>()
            .copied()
            .unwrap_or_default();
        let number = base.number().saturating_add(self.progress.retries);
        let mut req = head.to_request(body);
        req.extensions_mut().insert(Attempt::new(number));
        req
    }

    fn finish<ResBody>(
        &mut self,
        result: Result<Response<ResBody>, BoxError>,
        reason: Option<StopReason>,
    ) -> Result<Response<ResBody>, RetryError> {
        match result {
            Ok(mut res) => {
                self.finish_ok(&mut res, reason);
                Ok(res)
            }
            Err(e) => Err(self.fail(e, reason)),
        }
    }

    /// Ends the request with `res`: what was kept for a retry goes now, not when the future
    /// is dropped, and the response gets its `RetryInfo` if there is something to say.
    fn finish_ok<ResBody>(&mut self, res: &mut Response<ResBody>, reason: Option<StopReason>) {
        self.release();
        self.done = true;
        if self.info.attempts() > 1 || reason.is_some() || self.shared.config.info_on_every_response
        {
            self.attach_info(res, reason);
        }
    }

    #[cold]
    fn attach_info<ResBody>(&mut self, res: &mut Response<ResBody>, reason: Option<StopReason>) {
        let mut info = mem::take(&mut self.info);
        info.stop(reason);
        res.extensions_mut().insert(info);
    }

    fn fail(&mut self, error: BoxError, reason: Option<StopReason>) -> RetryError {
        self.release();
        self.done = true;
        let mut info = mem::take(&mut self.info);
        info.stop(reason);
        RetryError::new(error, info)
    }
}

impl<S, B, ResBody, C> fmt::Debug for ResponseFuture<S, B, ResBody, C>
where
    S: Service<Request<ReplayBody<B>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            _ if self.ctx.done => "done",
            State::Called { .. } => "called",
            State::Backoff { .. } => "backoff",
            State::Ready { .. } => "ready",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("attempts", &self.ctx.info.attempts())
            .finish_non_exhaustive()
    }
}
