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
use flext_core::{ReplayBody, Replayable};
use http::{Extensions, HeaderMap, Method, Request, Response, Uri, Version};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use crate::config::Shared;
use crate::error::RetryError;
use crate::info::{RetryInfo, RetryRecord, StopReason};
use crate::metrics::bump;
use crate::policy::{self, Idempotency, Progress};

pin_project! {
    /// The future of [`Retry`](crate::Retry): the response of the last attempt, or its
    /// error as a [`RetryError`].
    pub struct ResponseFuture<S, B, ResBody, C>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        #[pin]
        state: State<S::Future, ResBody>,
        service: S,
        ctx: Ctx<B, C>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, ResBody> {
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
        },
        Ready,
        Done,
    }
}

/// What a retry needs of the original request.
pub(crate) struct Saved<B> {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) extensions: Extensions,
    pub(crate) replay: Replayable<B>,
}

struct Ctx<B, C> {
    shared: Arc<Shared<C>>,
    /// `None` when retries are off for this request.
    saved: Option<Saved<B>>,
    info: RetryInfo,
    progress: Progress,
    /// The body of the next attempt, taken when the retry was decided.
    next: Option<ReplayBody<B>>,
}

enum Next<T, ResBody> {
    Return(T),
    Retry {
        delay: Duration,
        drain: Option<ResBody>,
    },
}

impl<S, B, ResBody, C> ResponseFuture<S, B, ResBody, C>
where
    S: Service<Request<ReplayBody<B>>>,
{
    pub(crate) fn new(
        future: S::Future,
        service: S,
        shared: Arc<Shared<C>>,
        saved: Option<Saved<B>>,
    ) -> Self {
        ResponseFuture {
            state: State::Called { future },
            service,
            ctx: Ctx {
                shared,
                saved,
                info: RetryInfo::new(),
                progress: Progress::default(),
                next: None,
            },
        }
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
                    let result = ready!(future.poll(cx)).map_err(Into::into);
                    match this.ctx.on_result(result) {
                        Next::Return(out) => {
                            this.state.set(State::Done);
                            return Poll::Ready(out);
                        }
                        Next::Retry { delay, drain } if delay.is_zero() => {
                            // No time to drain: read what is already there, drop the rest.
                            let mut drain = std::pin::pin!(drain);
                            let mut drained = 0;
                            poll_drain(drain.as_mut(), &mut drained, this.ctx.drain_limit(), cx);
                            this.state.set(State::Ready);
                        }
                        Next::Retry { delay, drain } => {
                            this.state.set(State::Backoff {
                                sleep: Box::pin(tokio::time::sleep(delay)),
                                drain,
                                drained: 0,
                            });
                        }
                    }
                }
                StateProj::Backoff {
                    sleep,
                    drain,
                    drained,
                } => {
                    poll_drain(drain, drained, this.ctx.drain_limit(), cx);
                    ready!(sleep.as_mut().poll(cx));
                    this.state.set(State::Ready);
                }
                StateProj::Ready => {
                    if let Err(e) = ready!(this.service.poll_ready(cx)) {
                        this.state.set(State::Done);
                        // The retry never went out: it is not an attempt made.
                        this.ctx.info.unsent();
                        return Poll::Ready(Err(this.ctx.fail(e.into(), None)));
                    }
                    let future = this.service.call(this.ctx.next_request());
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

impl<B, C: Classify> Ctx<B, C> {
    fn drain_limit(&self) -> usize {
        self.shared.config.drain_limit
    }

    fn on_result<ResBody>(
        &mut self,
        result: Result<Response<ResBody>, BoxError>,
    ) -> Next<Result<Response<ResBody>, RetryError>, ResBody> {
        let classifier = &self.shared.config.classifier;
        let outcome = match &result {
            Ok(res) => classifier.classify_response(res.status(), res.headers()),
            Err(e) => classifier.classify_error(&**e),
        };
        let Outcome::Failure(failure) = outcome else {
            return Next::Return(self.finish(result, None));
        };
        match self.decide(&failure) {
            Ok(delay) => Next::Retry {
                delay,
                drain: result.ok().map(Response::into_body),
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

    /// Decides whether to retry after `failure`; when it does, the next request is made.
    fn decide(&mut self, failure: &Failure) -> Result<Duration, StopReason> {
        let shared = &*self.shared;
        let counters = &shared.counters;
        let Some(saved) = &self.saved else {
            return Err(StopReason::Disabled);
        };
        let idempotency = Idempotency::of(&saved.method, &saved.headers, &saved.extensions);
        let deadline = saved.extensions.get::<Deadline>().copied();
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
        saved.replay.check().map_err(not_replayable)?;
        if !shared.budget.withdraw() {
            bump(&counters.budget_exhausted);
            return Err(StopReason::BudgetExhausted);
        }
        let body = saved.replay.body().map_err(not_replayable)?;

        let retry = self.progress.retries + 1;
        self.next = Some(body);

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
        Ok(plan.delay)
    }

    /// The request of the retry `on_result` decided: a copy of the original's head, its
    /// extensions with `Attempt` set, and the body taken then.
    fn next_request(&mut self) -> Request<ReplayBody<B>> {
        // Invariant: the state is `Ready` only after `decide` kept a body for the retry.
        let (Some(saved), Some(body)) = (&self.saved, self.next.take()) else {
            unreachable!("a retry has its saved request and its body")
        };
        let base = saved
            .extensions
            .get::<Attempt>()
            .copied()
            .unwrap_or_default();
        let mut extensions = saved.extensions.clone();
        let number = base.number().saturating_add(self.progress.retries);
        extensions.insert(Attempt::new(number));
        let mut req = Request::new(body);
        *req.method_mut() = saved.method.clone();
        *req.uri_mut() = saved.uri.clone();
        *req.version_mut() = saved.version;
        *req.headers_mut() = saved.headers.clone();
        *req.extensions_mut() = extensions;
        req
    }

    fn finish<ResBody>(
        &mut self,
        result: Result<Response<ResBody>, BoxError>,
        reason: Option<StopReason>,
    ) -> Result<Response<ResBody>, RetryError> {
        match result {
            Ok(mut res) => {
                if self.info.attempts() > 1
                    || reason.is_some()
                    || self.shared.config.info_on_every_response
                {
                    let mut info = mem::take(&mut self.info);
                    info.stop(reason);
                    res.extensions_mut().insert(info);
                }
                Ok(res)
            }
            Err(e) => Err(self.fail(e, reason)),
        }
    }

    fn fail(&mut self, error: BoxError, reason: Option<StopReason>) -> RetryError {
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
            State::Called { .. } => "called",
            State::Backoff { .. } => "backoff",
            State::Ready => "ready",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("attempts", &self.ctx.info.attempts())
            .finish_non_exhaustive()
    }
}
