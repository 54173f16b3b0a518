//! A real HTTP client for the tests: hyper-util's legacy client, its errors mapped to
//! flext-core's `TransportError` where the kind is known (the job of flext-pool later).

#![allow(dead_code, unreachable_pub)]

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use flext_core::{BoxError, ReplayBody, TransportError};
use flext_retry::{Retry, RetryLayer};
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceExt};

/// The caller's body type in these tests.
pub type UserBody = BoxBody<Bytes, BoxError>;

/// hyper-util's client as a `Service` whose errors are `TransportError`s when known.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, ReplayBody<UserBody>>,
}

impl HttpClient {
    pub fn http1() -> HttpClient {
        let client = Client::builder(TokioExecutor::new())
            .retry_canceled_requests(false)
            .build_http();
        HttpClient { client }
    }

    pub fn h2c() -> HttpClient {
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .retry_canceled_requests(false)
            .build_http();
        HttpClient { client }
    }
}

impl Service<Request<ReplayBody<UserBody>>> for HttpClient {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Incoming>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReplayBody<UserBody>>) -> Self::Future {
        let fut = self.client.request(req);
        Box::pin(async move { fut.await.map_err(map_error) })
    }
}

/// Connect failures and HTTP/2 `REFUSED_STREAM` are known not to have been processed.
pub fn map_error(e: hyper_util::client::legacy::Error) -> BoxError {
    if e.is_connect() {
        return TransportError::connect(e).into();
    }
    let mut cur: Option<&(dyn StdError + 'static)> = Some(&e);
    while let Some(err) = cur {
        if let Some(h2) = err.downcast_ref::<h2::Error>()
            && h2.reason() == Some(h2::Reason::REFUSED_STREAM)
        {
            return TransportError::refused(Some(e.into())).into();
        }
        cur = err.source();
    }
    e.into()
}

pub fn full(data: impl Into<Bytes>) -> UserBody {
    Full::new(data.into()).map_err(|e| match e {}).boxed()
}

pub fn empty() -> UserBody {
    full(Bytes::new())
}

/// Sends one request through a fresh `Retry` over `client` built from `layer`; returns the
/// response with its body read.
pub async fn send<S>(
    layer: &RetryLayer,
    client: S,
    req: Request<UserBody>,
) -> Result<Response<Bytes>, flext_retry::RetryError>
where
    S: Service<Request<ReplayBody<UserBody>>, Response = Response<Incoming>, Error = BoxError>
        + Clone,
{
    let mut svc: Retry<S> = tower::Layer::layer(layer, client);
    let res = svc.ready().await?.call(req).await?;
    let (parts, body) = res.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    Ok(Response::from_parts(parts, body))
}
