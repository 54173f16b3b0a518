//! The response futures of [`Auth`](crate::Auth): [`StaticResponseFuture`] for a static
//! credential, and [`ResponseFuture`], which waits for a token when none is cached, and after a
//! 401 refreshes it and replays the request once.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use flext_core::{Attempt, BoxError, Deadline, ReplayBody, Replayable, RequestHead};
use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::cache::CachedProvider;
use crate::error::Error;
use crate::provider::BoxFuture;

pin_project! {
    /// The response future of [`Auth`](crate::Auth) with a static
    /// [`Credential`](crate::Credential): the inner service's future, or the error of a request
    /// refused before it was sent.
    pub struct StaticResponseFuture<F> {
        #[pin]
        state: StaticState<F>,
    }
}

pin_project! {
    #[project = StaticStateProj]
    enum StaticState<F> {
        Inner {
            #[pin]
            fut: F,
        },
        Failed {
            error: Option<Error>,
        },
    }
}

impl<F> StaticResponseFuture<F> {
    pub(crate) fn inner(fut: F) -> Self {
        StaticResponseFuture {
            state: StaticState::Inner { fut },
        }
    }

    pub(crate) fn failed(error: Error) -> Self {
        StaticResponseFuture {
            state: StaticState::Failed { error: Some(error) },
        }
    }
}

impl<F, T, E> Future for StaticResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StaticStateProj::Inner { fut } => fut.poll(cx).map_err(Into::into),
            StaticStateProj::Failed { error } => {
                Poll::Ready(Err(error.take().map_or_else(done, |e| Box::new(e))))
            }
        }
    }
}

impl<F> fmt::Debug for StaticResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            StaticState::Inner { .. } => "inner",
            StaticState::Failed { .. } => "failed",
        };
        f.debug_struct("StaticResponseFuture")
            .field("state", &state)
            .finish()
    }
}

pin_project! {
    /// The response future of [`Auth`](crate::Auth) with a
    /// [`CachedProvider`](crate::CachedProvider) or a
    /// [`CredentialSource`](crate::CredentialSource).
    ///
    /// For a static credential, or a request the credential does not go to, it is the inner
    /// service's future and nothing more.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        Inner {
            #[pin]
            fut: S::Future,
        },
        Failed {
            error: Option<Error>,
        },
        // No token cached: waiting for the cache's single flight.
        Acquiring {
            acquire: BoxFuture<'static, Result<(HeaderValue, u64), Error>>,
            pending: Option<Box<Pending<S, B>>>,
        },
        // Sent with a cached token; a 401 may lead to a replay.
        Sending {
            #[pin]
            fut: S::Future,
            tried: Option<Tried<S, B>>,
        },
        // Got a 401: waiting for a new token, holding the 401 in case there is none.
        Refreshing {
            refresh: BoxFuture<'static, Option<(HeaderValue, u64)>>,
            held: Option<Box<(Replay<S, B>, HeaderName, S::Response)>>,
        },
        Replaying {
            next: Option<Box<(S, Request<ReplayBody<B>>)>>,
        },
    }
}

/// A request waiting for a token, with the service made ready for it.
pub(crate) struct Pending<S, B> {
    pub(crate) svc: S,
    pub(crate) parts: Parts,
    pub(crate) first: ReplayBody<B>,
    pub(crate) replayable: Option<Replayable<B>>,
    pub(crate) cache: CachedProvider,
}

/// A request sent with token `generation`. What a replay needs is kept inline: it is made for
/// every request when replay is on (the default), and a `malloc` and `free` per call cost more
/// than moving the larger future. The rare paths' state (after a 401) is boxed.
pub(crate) struct Tried<S, B> {
    cache: CachedProvider,
    generation: u64,
    replay: Option<Replay<S, B>>,
}

/// What a replay needs: a service, the head without the credential, the body.
pub(crate) struct Replay<S, B> {
    svc: S,
    head: RequestHead,
    replayable: Replayable<B>,
}

impl<S, B> Replay<S, B> {
    pub(crate) fn new(svc: S, head: RequestHead, replayable: Replayable<B>) -> Replay<S, B> {
        Replay {
            svc,
            head,
            replayable,
        }
    }
}

impl<S, B> Tried<S, B> {
    pub(crate) fn new(
        cache: CachedProvider,
        generation: u64,
        replay: Option<Replay<S, B>>,
    ) -> Tried<S, B> {
        Tried {
            cache,
            generation,
            replay,
        }
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
{
    pub(crate) fn inner(fut: S::Future) -> Self {
        ResponseFuture {
            state: State::Inner { fut },
        }
    }

    pub(crate) fn failed(error: Error) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
        }
    }

    pub(crate) fn sending(fut: S::Future, tried: Tried<S, B>) -> Self {
        ResponseFuture {
            state: State::Sending {
                fut,
                tried: Some(tried),
            },
        }
    }

    pub(crate) fn acquiring(
        acquire: BoxFuture<'static, Result<(HeaderValue, u64), Error>>,
        pending: Pending<S, B>,
    ) -> Self {
        ResponseFuture {
            state: State::Acquiring {
                acquire,
                pending: Some(Box::new(pending)),
            },
        }
    }
}

fn done() -> BoxError {
    "auth response future polled after completion".into()
}

impl<S, B, RB> Future for ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<RB>, BoxError>;

    // The common cases, kept small: the inner future, and a response other than 401 to a
    // request sent with a cached token. Everything else is `poll_rare`.
    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.as_mut().project();
        match this.state.as_mut().project() {
            StateProj::Inner { fut } => return fut.poll(cx).map_err(Into::into),
            StateProj::Sending { fut, tried } => {
                let res = ready!(fut.poll(cx)).map_err(Into::into)?;
                if res.status() != StatusCode::UNAUTHORIZED {
                    return Poll::Ready(Ok(res));
                }
                match unauthorized(tried.take(), res) {
                    Ok(next) => this.state.set(next),
                    Err(res) => return Poll::Ready(Ok(res)),
                }
            }
            _ => {}
        }
        self.poll_rare(cx)
    }
}

/// After a 401 to a request sent with a cached token: the state that refreshes the token to
/// replay the request, or the 401 to hand back.
#[cold]
#[inline(never)]
fn unauthorized<S, B, RB>(
    tried: Option<Tried<S, B>>,
    res: Response<RB>,
) -> Result<State<S, B>, Response<RB>>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>>,
{
    let Some(Tried {
        cache,
        generation,
        replay,
    }) = tried
    else {
        return Err(res);
    };
    let Some(replay) = replay else {
        cache.reject(generation);
        return Err(res);
    };
    if let Err(reason) = replay.replayable.check() {
        cache.reject(generation);
        tracing::debug!(
            target: "flext_auth",
            %reason,
            "401 not replayed: the request body cannot be sent again"
        );
        return Err(res);
    }
    let header = cache.header_name().clone();
    let refresh = Box::pin(async move { cache.after_unauthorized(generation).await });
    Ok(State::Refreshing {
        refresh,
        held: Some(Box::new((replay, header, res))),
    })
}

impl<S, B, RB> ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    /// Every state, one after the other: waiting for a token, a refresh after a 401, the
    /// replay.
    #[inline(never)]
    fn poll_rare(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Response<RB>, BoxError>> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Inner { fut } => return fut.poll(cx).map_err(Into::into),
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(error.take().map_or_else(done, |e| Box::new(e))));
                }
                StateProj::Acquiring { acquire, pending } => {
                    let acquired = ready!(acquire.as_mut().poll(cx));
                    let Some(pending) = pending.take() else {
                        return Poll::Ready(Err(done()));
                    };
                    let (value, generation) = match acquired {
                        Ok(found) => found,
                        Err(e) => {
                            this.state.set(State::Failed { error: None });
                            return Poll::Ready(Err(Box::new(e)));
                        }
                    };
                    let Pending {
                        mut svc,
                        parts,
                        first,
                        replayable,
                        cache,
                    } = *pending;
                    let head = replayable.as_ref().map(|_| RequestHead::from_parts(&parts));
                    let mut req = Request::from_parts(parts, first);
                    req.headers_mut().insert(cache.header_name(), value);
                    let fut = svc.call(req);
                    let replay = match (head, replayable) {
                        (Some(head), Some(replayable)) => Some(Replay::new(svc, head, replayable)),
                        _ => None,
                    };
                    let tried = Tried::new(cache, generation, replay);
                    this.state.set(State::Sending {
                        fut,
                        tried: Some(tried),
                    });
                }
                StateProj::Sending { fut, tried } => {
                    let res = ready!(fut.poll(cx)).map_err(Into::into)?;
                    if res.status() != StatusCode::UNAUTHORIZED {
                        return Poll::Ready(Ok(res));
                    }
                    match unauthorized(tried.take(), res) {
                        Ok(next) => this.state.set(next),
                        Err(res) => return Poll::Ready(Ok(res)),
                    }
                }
                StateProj::Refreshing { refresh, held } => {
                    let fresh = ready!(refresh.as_mut().poll(cx));
                    let Some(held) = held.take() else {
                        return Poll::Ready(Err(done()));
                    };
                    let (replay, header, res) = *held;
                    let Some((value, _)) = fresh else {
                        tracing::debug!(
                            target: "flext_auth",
                            "401 not replayed: no new credential"
                        );
                        return Poll::Ready(Ok(res));
                    };
                    let deadline = replay.head.deadline();
                    if deadline.is_some_and(Deadline::is_expired) {
                        tracing::debug!(
                            target: "flext_auth",
                            "401 not replayed: the request's deadline has passed"
                        );
                        return Poll::Ready(Ok(res));
                    }
                    let body = match replay.replayable.body() {
                        Ok(body) => body,
                        Err(reason) => {
                            tracing::debug!(
                                target: "flext_auth",
                                %reason,
                                "401 not replayed: the request body cannot be sent again"
                            );
                            return Poll::Ready(Ok(res));
                        }
                    };
                    drop(res);
                    let mut head = replay.head;
                    let attempt = head
                        .extensions
                        .get::<Attempt>()
                        .copied()
                        .unwrap_or_default()
                        .next();
                    head.extensions.insert(attempt);
                    head.headers.insert(header, value);
                    tracing::debug!(
                        target: "flext_auth",
                        attempt = attempt.number(),
                        "401: replaying with a new credential"
                    );
                    let req = head.into_request(body);
                    this.state.set(State::Replaying {
                        next: Some(Box::new((replay.svc, req))),
                    });
                }
                StateProj::Replaying { next } => {
                    let Some((svc, _)) = next.as_deref_mut() else {
                        return Poll::Ready(Err(done()));
                    };
                    ready!(svc.poll_ready(cx)).map_err(Into::into)?;
                    let Some((mut svc, req)) = next.take().map(|next| *next) else {
                        return Poll::Ready(Err(done()));
                    };
                    let fut = svc.call(req);
                    this.state.set(State::Inner { fut });
                }
            }
        }
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Inner { .. } => "inner",
            State::Failed { .. } => "failed",
            State::Acquiring { .. } => "acquiring",
            State::Sending { .. } => "sending",
            State::Refreshing { .. } => "refreshing",
            State::Replaying { .. } => "replaying",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
