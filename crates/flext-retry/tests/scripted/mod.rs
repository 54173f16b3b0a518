//! A scripted inner service for tests that need no sockets: it plays one step per attempt
//! and records what it was sent.

#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use flext_core::{Attempt, BoxError, ReplayBody, TransportError};
use flext_retry::{RetryError, RetryLayer};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt};

/// The request an inner service gets from the layer in these tests.
pub type Req = Request<ReplayBody<Full<Bytes>>>;

/// What the server does for one attempt.
#[derive(Debug, Clone)]
pub enum Step {
    /// A response with this status.
    Status(u16),
    /// A response with this status and `Retry-After`.
    RetryAfter(u16, &'static str),
    /// A `TransportError::refused`: never sent.
    Refused,
    /// An error the classifier does not know.
    Fail(&'static str),
}

/// Plays its steps in order, the last one repeating; counts calls and keeps the bodies and
/// attempt numbers it received.
#[derive(Clone)]
pub struct Server {
    steps: Arc<Mutex<VecDeque<Step>>>,
    calls: Arc<AtomicU32>,
    seen: Arc<Mutex<Vec<(Attempt, Bytes)>>>,
}

impl Server {
    pub fn new(steps: &[Step]) -> Server {
        Server {
            steps: Arc::new(Mutex::new(steps.iter().cloned().collect())),
            calls: Arc::default(),
            seen: Arc::default(),
        }
    }

    /// Answers every attempt with `status`.
    pub fn always(status: u16) -> Server {
        Server::new(&[Step::Status(status)])
    }

    /// Attempts it was called with.
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    /// The bodies it received, in order.
    pub fn bodies(&self) -> Vec<Bytes> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.1.clone())
            .collect()
    }

    /// The attempt numbers it received, in order.
    pub fn attempts(&self) -> Vec<u32> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.0.number())
            .collect()
    }
}

impl Service<Req> for Server {
    type Response = Response<Full<Bytes>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let step = {
            let mut steps = self.steps.lock().unwrap();
            if steps.len() > 1 {
                steps.pop_front()
            } else {
                steps.front().cloned()
            }
        };
        let seen = Arc::clone(&self.seen);
        Box::pin(async move {
            let attempt = Attempt::of(&req);
            let body = req.into_body().collect().await?.to_bytes();
            seen.lock().unwrap().push((attempt, body));
            let (status, retry_after) = match step.unwrap_or(Step::Status(200)) {
                Step::Status(s) => (s, None),
                Step::RetryAfter(s, v) => (s, Some(v)),
                Step::Refused => return Err(TransportError::refused(None).into()),
                Step::Fail(msg) => return Err(msg.into()),
            };
            let mut res = Response::new(Full::new(Bytes::from_static(b"payload")));
            *res.status_mut() = StatusCode::from_u16(status)?;
            if let Some(v) = retry_after {
                res.headers_mut()
                    .insert(http::header::RETRY_AFTER, v.parse()?);
            }
            Ok(res)
        })
    }
}

/// Sends `req` through `layer` over `server`.
pub async fn send<C>(
    layer: &RetryLayer<C>,
    server: &Server,
    req: Request<Full<Bytes>>,
) -> Result<Response<Full<Bytes>>, RetryError>
where
    C: flext_core::Classify,
{
    let mut svc = layer.layer(server.clone());
    svc.ready().await?.call(req).await
}

pub fn get() -> Request<Full<Bytes>> {
    Request::get("http://api.example/items")
        .body(Full::default())
        .unwrap()
}

pub fn post(body: &'static str) -> Request<Full<Bytes>> {
    Request::post("http://api.example/items")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

pub fn put(body: &'static str) -> Request<Full<Bytes>> {
    Request::put("http://api.example/items/1")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}
