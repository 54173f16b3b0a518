//! [`Pending`]: a call on its way, and the one type erasure of the client's stack behind it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, TryLockError};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use flext_core::BoxError;
use http::{Request, Uri};
use pin_project_lite::pin_project;
use tower::Service;
use tower::util::{Oneshot, ServiceExt};

use crate::body::Body;
use crate::client::Client;
use crate::error::Error;
use crate::response::{DecodedBody, DecodedInner, Response, ResponseBody};

/// A request on its way: the future of [`RequestBuilder::send`](crate::RequestBuilder::send)
/// and [`Client::execute`](crate::Client::execute). It resolves to the [`Response`] (its
/// status not yet checked) or an [`Error`] naming the URL.
///
/// A named type rather than an `async fn`'s: the request is built (its URL joined, the
/// client's default headers added) when it is made, and handed to the stack when it is first
/// polled, so that the stack's spans have the span current at that poll as their parent and
/// its timeouts start then; polling it afterwards polls the stack's future directly, so the
/// request is not moved through the states of nested `async` blocks on the way.
#[must_use = "a request is sent only when its `Pending` is awaited"]
pub struct Pending {
    state: State,
}

enum State {
    /// Built, not yet handed to the stack.
    Unsent {
        client: Client,
        request: Request<Body>,
        timeout: Option<Duration>,
    },
    Sending {
        future: ExecuteFuture,
        url: Uri,
        max_response_body: u64,
    },
    Failed(Option<Error>),
}

impl Pending {
    /// A request `client` sends when the `Pending` is first polled, with a timeout counted
    /// from then.
    pub(crate) fn unsent(
        client: Client,
        request: Request<Body>,
        timeout: Option<Duration>,
    ) -> Pending {
        Pending {
            state: State::Unsent {
                client,
                request,
                timeout,
            },
        }
    }

    #[cfg(test)]
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
        if matches!(self.state, State::Unsent { .. })
            && let State::Unsent {
                client,
                mut request,
                timeout,
            } = std::mem::replace(&mut self.state, State::Failed(None))
        {
            if let Some(timeout) = timeout {
                flext_core::Deadline::after(timeout).set_on(&mut request);
            }
            let url = request.uri().clone();
            let future = client.inner_service().call_cloned(request);
            self.state = State::Sending {
                future,
                url,
                max_response_body: client.max_response_body(),
            };
        }
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
            // Handed over above.
            State::Unsent { .. } => Poll::Ready(Err(Error::request(
                "a request's future could not hand its request to the stack",
            ))),
        }
    }
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            State::Unsent { request, .. } => f
                .debug_struct("Pending")
                .field("url", &crate::error::Redacted(request.uri()))
                .finish_non_exhaustive(),
            State::Sending { url, .. } => f
                .debug_struct("Pending")
                .field("url", &crate::error::Redacted(url))
                .finish_non_exhaustive(),
            State::Failed(e) => f.debug_tuple("Pending").field(e).finish(),
        }
    }
}

/// The stack behind a [`Client`](crate::Client), type-erased so that one call costs one
/// allocation: the boxed future holds the call (and, when the call needs one, its clone of
/// the stack; a `BoxCloneSyncService` would box the clone and the future separately).
pub(crate) trait CallCloned: Send + Sync {
    /// Sends `req` through the stack: a kept clone when the stack keeps them (see
    /// [`Slotted`]), else a clone made for the call.
    fn call_cloned(&self, req: Request<Body>) -> ExecuteFuture;
}

/// The future of one [`CallCloned::call_cloned`].
pub(crate) type ExecuteFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<DecodedBody>, BoxError>> + Send>>;

/// A stack the client's top can call: cloneable, shared between threads, with `'static`
/// futures. `R` is its response body.
pub(crate) trait TopStack<R>:
    Service<Request<Body>, Response = http::Response<R>, Error = BoxError, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S, R> TopStack<R> for S where
    S: Service<
            Request<Body>,
            Response = http::Response<R>,
            Error = BoxError,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// A stack whose responses are made [`DecodedBody`]s, behind [`CallCloned`], called through a
/// clone per call.
struct Decoded<S>(S);

impl<S: TopStack<DecodedInner>> CallCloned for Decoded<S> {
    fn call_cloned(&self, req: Request<Body>) -> ExecuteFuture {
        Box::pin(Decode {
            future: self.0.clone().oneshot(req),
        })
    }
}

pin_project! {
    /// A call whose response body is made a [`DecodedBody`]. A struct rather than an `async`
    /// block, which would keep the call twice (as captured, then as awaited) and move it from
    /// one to the other on the first poll.
    struct Decode<F> {
        #[pin]
        future: F,
    }
}

impl<F> Future for Decode<F>
where
    F: Future<Output = Result<http::Response<DecodedInner>, BoxError>>,
{
    type Output = Result<http::Response<DecodedBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = ready!(self.project().future.poll(cx))?;
        Poll::Ready(Ok(response.map(DecodedBody::new)))
    }
}

/// A stack whose services are never waited for in `poll_ready` and keep nothing reserved
/// when they say they are not ready, called on clones kept one per slot rather than on a
/// clone made for each call.
///
/// Cloning the default stack takes a reference on each of its seven shared parts (the
/// layers' settings, the breakers, the retry budget, the pool) and dropping the clone gives
/// them back: fourteen atomic writes per call, on cache lines every thread calling the
/// client writes too. A thread instead locks its slot (one atomic write on a line of its
/// own), checks that the kept stack is ready without waiting, and calls it. When the slot is
/// taken (a thread sharing it is calling) or the stack would have to wait (the pool's queue
/// is full), the call goes through a clone as before, which waits as `Service` asks.
struct Slotted<S> {
    proto: S,
    slots: Box<[Slot<S>]>,
}

/// One kept stack, alone on its cache lines.
#[repr(align(128))]
struct Slot<S>(Mutex<S>);

impl<S: Service<Request<Body>> + Clone> Slotted<S> {
    /// Calls a kept stack when this thread's slot is free and its stack ready without
    /// waiting, else a clone.
    fn call(&self, req: Request<Body>) -> Kept<S> {
        let slot = &self.slots[flext_core::thread_slot() % self.slots.len()];
        let kept = match slot.0.try_lock() {
            Ok(svc) => Some(svc),
            // A call panicked in the stack while it held the slot: start it afresh.
            Err(TryLockError::Poisoned(poisoned)) => {
                let mut svc = poisoned.into_inner();
                *svc = self.proto.clone();
                slot.0.clear_poison();
                Some(svc)
            }
            Err(TryLockError::WouldBlock) => None,
        };
        if let Some(mut svc) = kept {
            // A no-op waker: a stack that is not ready is not called here, and nothing in it
            // waits on the registration.
            match svc.poll_ready(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(Ok(())) => {
                    return Kept::Called {
                        future: svc.call(req),
                    };
                }
                // A service that failed is not used again (the clone below reports the error
                // as its own readiness does).
                Poll::Ready(Err(_)) => *svc = self.proto.clone(),
                Poll::Pending => {}
            }
        }
        Kept::Cloned {
            future: self.proto.clone().oneshot(req),
        }
    }
}

pin_project! {
    /// The future of [`Slotted::call`].
    #[project = KeptProj]
    enum Kept<S: Service<Request<Body>>> {
        Called { #[pin] future: S::Future },
        Cloned { #[pin] future: Oneshot<S, Request<Body>> },
    }
}

impl<S: Service<Request<Body>>> Future for Kept<S> {
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            KeptProj::Called { future } => future.poll(cx),
            KeptProj::Cloned { future } => future.poll(cx),
        }
    }
}

impl<S: TopStack<DecodedInner>> CallCloned for Slotted<S> {
    fn call_cloned(&self, req: Request<Body>) -> ExecuteFuture {
        Box::pin(Decode {
            future: self.call(req),
        })
    }
}

/// The client's top: response decompression when a feature asks for it, one body type, and
/// the only type erasure of the stack.
pub(crate) fn decoded<S: TopStack<ResponseBody>>(service: S) -> Box<dyn CallCloned> {
    Box::new(Decoded(decompressed(service)))
}

/// As [`decoded`], for a stack whose every service is ready without waiting and reserves
/// nothing in `poll_ready` (the default shape: flext's own layers over the pool), called on
/// kept clones (see [`Slotted`]).
pub(crate) fn decoded_kept<S: TopStack<ResponseBody>>(service: S) -> Box<dyn CallCloned> {
    let proto = decompressed(service);
    let slots = (0..flext_core::thread_slots())
        .map(|_| Slot(Mutex::new(proto.clone())))
        .collect();
    Box::new(Slotted { proto, slots })
}

/// `service` with tower-http's response decompression when a decompression feature is on.
fn decompressed<S: TopStack<ResponseBody>>(service: S) -> impl TopStack<DecodedInner> {
    #[cfg(any(feature = "gzip", feature = "brotli", feature = "zstd"))]
    let service = {
        use tower::Layer;
        tower_http::decompression::DecompressionLayer::new().layer(service)
    };
    service
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn poll_now(pending: &mut Pending) -> Poll<Result<Response, Error>> {
        Pin::new(pending).poll(&mut Context::from_waker(Waker::noop()))
    }

    /// A stack that counts its clones and is ready only once `open` is set (waking the
    /// waker `poll_ready` was given).
    #[derive(Clone)]
    struct Gated {
        clones: Arc<AtomicUsize>,
        open: Arc<std::sync::atomic::AtomicBool>,
        broken: Arc<std::sync::atomic::AtomicBool>,
        waker: Arc<Mutex<Option<Waker>>>,
    }

    impl Gated {
        fn new() -> Gated {
            Gated {
                clones: Arc::new(AtomicUsize::new(0)),
                open: Arc::new(std::sync::atomic::AtomicBool::new(true)),
                broken: Arc::new(std::sync::atomic::AtomicBool::new(false)),
                waker: Arc::new(Mutex::new(None)),
            }
        }

        fn set_open(&self, open: bool) {
            self.open.store(open, Ordering::SeqCst);
            if open && let Some(w) = self.waker.lock().unwrap().take() {
                w.wake();
            }
        }
    }

    struct Counted(Gated);

    impl Clone for Counted {
        fn clone(&self) -> Counted {
            self.0.clones.fetch_add(1, Ordering::SeqCst);
            Counted(self.0.clone())
        }
    }

    impl Service<Request<Body>> for Counted {
        type Response = http::Response<()>;
        type Error = BoxError;
        type Future = std::future::Ready<Result<http::Response<()>, BoxError>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            if self.0.broken.load(Ordering::SeqCst) {
                return Poll::Ready(Err("broken".into()));
            }
            if self.0.open.load(Ordering::SeqCst) {
                return Poll::Ready(Ok(()));
            }
            *self.0.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }

        fn call(&mut self, req: Request<Body>) -> Self::Future {
            assert!(req.uri().path() != "/panic", "a layer panicked");
            let mut res = http::Response::new(());
            *res.status_mut() = if req.uri().path() == "/teapot" {
                http::StatusCode::IM_A_TEAPOT
            } else {
                http::StatusCode::OK
            };
            std::future::ready(Ok(res))
        }
    }

    fn kept(gated: &Gated) -> Slotted<Counted> {
        let proto = Counted(gated.clone());
        let slots = (0..2).map(|_| Slot(Mutex::new(proto.clone()))).collect();
        Slotted { proto, slots }
    }

    #[tokio::test]
    async fn a_ready_kept_stack_is_called_without_a_clone_per_call() {
        let gated = Gated::new();
        let client = kept(&gated);
        let made = gated.clones.load(Ordering::SeqCst);
        for path in ["/a", "/teapot", "/b"] {
            let req = Request::get(path).body(Body::empty()).unwrap();
            let res = client.call(req).await.unwrap();
            let expected = if path == "/teapot" { 418 } else { 200 };
            assert_eq!(res.status(), expected);
        }
        assert_eq!(
            gated.clones.load(Ordering::SeqCst),
            made,
            "no clone per call"
        );
    }

    #[tokio::test]
    async fn a_slot_whose_stack_failed_or_panicked_gets_a_fresh_clone() {
        let gated = Gated::new();
        let client = kept(&gated);
        let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();

        // Failed readiness: the error comes back, and the slot's stack is replaced.
        gated.broken.store(true, Ordering::SeqCst);
        let made = gated.clones.load(Ordering::SeqCst);
        let err = client.call(get("/a")).await.unwrap_err();
        assert_eq!(err.to_string(), "broken");
        assert_eq!(
            gated.clones.load(Ordering::SeqCst),
            made + 2,
            "replaced, and a clone"
        );
        gated.broken.store(false, Ordering::SeqCst);

        // A panic while the slot is held poisons it; the next call starts it afresh.
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drop(client.call(get("/panic")));
        }));
        assert!(panicked.is_err());
        let made = gated.clones.load(Ordering::SeqCst);
        let res = client.call(get("/teapot")).await.unwrap();
        assert_eq!(res.status(), 418);
        assert_eq!(
            gated.clones.load(Ordering::SeqCst),
            made + 1,
            "the slot is refilled"
        );
        let res = client.call(get("/b")).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            gated.clones.load(Ordering::SeqCst),
            made + 1,
            "and used again"
        );
    }

    #[tokio::test]
    async fn a_stack_that_must_wait_is_called_through_a_clone_that_waits() {
        let gated = Gated::new();
        let client = kept(&gated);
        gated.set_open(false);
        let made = gated.clones.load(Ordering::SeqCst);
        let req = Request::get("/teapot").body(Body::empty()).unwrap();
        let mut call = std::pin::pin!(client.call(req));
        assert!(
            call.as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_pending()
        );
        assert_eq!(
            gated.clones.load(Ordering::SeqCst),
            made + 1,
            "a clone waits"
        );
        let opener = {
            let gated = gated.clone();
            tokio::spawn(async move { gated.set_open(true) })
        };
        let res = call.await.unwrap();
        assert_eq!(res.status(), 418);
        opener.await.unwrap();
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
