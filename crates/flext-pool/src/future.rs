//! [`ResponseFuture`]: the future of [`Pool`](crate::Pool)'s `call`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;

use crate::body::Body;
use crate::error::Error;

type Boxed = Pin<Box<dyn Future<Output = Result<Response<Body>, Error>> + Send>>;

/// The response future of the pool: the response head, or a typed [`Error`].
///
/// It is boxed once per request: hyper's send futures cannot be named.
pub struct ResponseFuture {
    state: State,
}

enum State {
    Running(Boxed),
    Failed(Option<Error>),
}

impl ResponseFuture {
    pub(crate) fn new(fut: Boxed) -> ResponseFuture {
        ResponseFuture {
            state: State::Running(fut),
        }
    }

    pub(crate) fn error(err: Error) -> ResponseFuture {
        ResponseFuture {
            state: State::Failed(Some(err)),
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            State::Running(fut) => fut.as_mut().poll(cx),
            State::Failed(err) => match err.take() {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Running(_) => "running",
            State::Failed(_) => "failed",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
