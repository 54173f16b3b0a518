//! [`Pending`]: a call on its way, and the one type erasure of the client's stack behind it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use flext_core::BoxError;
use http::{Request, Uri};
use pin_project_lite::pin_project;
use tower::Service;
use tower::util::{Oneshot, ServiceExt};

use crate::body::Body;
use crate::error::Error;
use crate::response::{DecodedBody, DecodedInner, Response, ResponseBody};

/// A request on its way: the future of [`RequestBuilder::send`](crate::RequestBuilder::send)
/// and [`Client::execute`](crate::Client::execute). It resolves to the [`Response`] (its
/// status not yet checked) or an [`Error`] naming the URL.
///
/// A named type rather than an `async fn`'s: everything up to handing the request to the
/// stack is done when it is made, and polling it polls the stack's future directly, so the
/// request is not moved through the states of nested `async` blocks on the way.
#[must_use = "a request is sent only when its `Pending` is awaited"]
pub struct Pending {
    state: State,
}

enum State {
    Sending {
        future: ExecuteFuture,
        url: Uri,
        max_response_body: u64,
    },
    Failed(Option<Error>),
}

impl Pending {
    pub(crate) fn sending(future: ExecuteFuture, url: Uri, max_response_body: u64) -> Pending {
        Pending {
            state: State::Sending {
                future,
                url,
                max_response_body,
            },
        }
    }

    pub(crate) fn failed(error: Error) -> Pending {
        Pending {
            state: State::Failed(Some(error)),
        }
    }
}

impl Future for Pending {
    type Output = Result<Response, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            State::Sending {
                future,
                url,
                max_response_body,
            } => {
                let result = ready!(future.as_mut().poll(cx));
                let url = std::mem::take(url);
                let limit = *max_response_body;
                self.state = State::Failed(None);
                Poll::Ready(match result {
                    Ok(response) => Ok(Response::new(response, url, limit)),
                    Err(e) => Err(Error::send(e).with_url(url)),
                })
            }
            State::Failed(error) => Poll::Ready(Err(error.take().unwrap_or_else(|| {
                Error::request("a request's future was polled after it completed")
            }))),
        }
    }
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            State::Sending { url, .. } => f
                .debug_struct("Pending")
                .field("url", &crate::error::Redacted(url))
                .finish_non_exhaustive(),
            State::Failed(e) => f.debug_tuple("Pending").field(e).finish(),
        }
    }
}

/// The stack behind a [`Client`](crate::Client), type-erased so that one call costs one
/// allocation: the boxed future holds the per-call clone of the stack (a
/// `BoxCloneSyncService` would box the clone and the future separately).
pub(crate) trait CallCloned: Send + Sync {
    /// Clones the stack and sends `req` through the clone.
    fn call_cloned(&self, req: Request<Body>) -> ExecuteFuture;
}

/// The future of one [`CallCloned::call_cloned`].
pub(crate) type ExecuteFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<DecodedBody>, BoxError>> + Send>>;

/// A stack whose responses are made [`DecodedBody`]s, behind [`CallCloned`].
struct Decoded<S>(S);

impl<S> CallCloned for Decoded<S>
where
    S: Service<Request<Body>, Response = http::Response<DecodedInner>, Error = BoxError>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    fn call_cloned(&self, req: Request<Body>) -> ExecuteFuture {
        Box::pin(Decode {
            call: self.0.clone().oneshot(req),
        })
    }
}

pin_project! {
    /// A call whose response body is made a [`DecodedBody`]. A struct rather than an `async`
    /// block, which would keep the call twice (as captured, then as awaited) and move it from
    /// one to the other on the first poll.
    struct Decode<S: Service<Request<Body>>> {
        #[pin]
        call: Oneshot<S, Request<Body>>,
    }
}

impl<S> Future for Decode<S>
where
    S: Service<Request<Body>, Response = http::Response<DecodedInner>, Error = BoxError>,
{
    type Output = Result<http::Response<DecodedBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = ready!(self.project().call.poll(cx))?;
        Poll::Ready(Ok(response.map(DecodedBody::new)))
    }
}

/// The client's top: response decompression when a feature asks for it, one body type, and
/// the only type erasure of the stack.
pub(crate) fn decoded<S>(service: S) -> Box<dyn CallCloned>
where
    S: Service<Request<Body>, Response = http::Response<ResponseBody>, Error = BoxError>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    #[cfg(any(feature = "gzip", feature = "brotli", feature = "zstd"))]
    let service = {
        use tower::Layer;
        tower_http::decompression::DecompressionLayer::new().layer(service)
    };
    Box::new(Decoded(service))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn poll_now(pending: &mut Pending) -> Poll<Result<Response, Error>> {
        Pin::new(pending).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_failed_call_gives_its_error_once_then_says_it_was_polled_again() {
        let mut pending = Pending::failed(Error::request("header name \"a b\": invalid"));
        let Poll::Ready(Err(first)) = poll_now(&mut pending) else {
            panic!("a failed call is ready at once");
        };
        assert!(first.to_string().contains("header name"), "{first}");
        let Poll::Ready(Err(again)) = poll_now(&mut pending) else {
            panic!("a completed call is ready at once");
        };
        assert!(
            again.to_string().contains("polled after it completed"),
            "{again}"
        );
    }

    #[test]
    fn a_call_that_fails_below_names_its_url() {
        let future: ExecuteFuture = Box::pin(async { Err::<_, BoxError>("refused".into()) });
        let url: Uri = "http://example.test/items?id=7".parse().unwrap();
        let mut pending = Pending::sending(future, url, 1024);
        assert!(format!("{pending:?}").contains("example.test"));
        let Poll::Ready(Err(e)) = poll_now(&mut pending) else {
            panic!("the stack's future is ready at once");
        };
        assert!(
            e.url().is_some_and(|u| u.host() == Some("example.test")),
            "{e:?}"
        );
    }
}
