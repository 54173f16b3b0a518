//! Clients and helpers shared by the tests.

use std::time::Duration;

use bytes::Bytes;
use flext_testkit::{ID_HEADER, SCRIPT_HEADER, TestServer};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, Error};
use hyper_util::rt::TokioExecutor;

pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// An HTTP/1.1 client with a connection pool.
pub(crate) fn h1_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 prior-knowledge (h2c) client with a connection pool.
///
/// No pool timer: with one, hyper-util's pool stalls a checkout of an idle HTTP/2
/// connection until its idle interval ticks, which the paused clock turns into minutes.
pub(crate) fn h2c_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A GET of `path` with an id and a script, when given.
pub(crate) fn get(
    server: &TestServer,
    path: &str,
    id: Option<&str>,
    script: Option<&str>,
) -> Request<Full<Bytes>> {
    let mut builder = Request::get(server.uri(path));
    if let Some(id) = id {
        builder = builder.header(ID_HEADER, id);
    }
    if let Some(script) = script {
        builder = builder.header(SCRIPT_HEADER, script);
    }
    builder.body(Full::default()).unwrap()
}

/// Sends `req` and reads the whole body.
pub(crate) async fn send(
    client: &HttpClient,
    req: Request<Full<Bytes>>,
) -> Result<Response<Bytes>, Error> {
    let res = client.request(req).await?;
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Ok(Response::from_parts(parts, body))
}

/// Sends a scripted GET and returns the status code.
pub(crate) async fn status(
    client: &HttpClient,
    server: &TestServer,
    id: &str,
    script: &str,
) -> u16 {
    let res = send(client, get(server, "/", Some(id), Some(script)))
        .await
        .unwrap();
    res.status().as_u16()
}

/// Waits, boundedly, until the server's state satisfies `done`.
pub(crate) async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Whether an h2 error with this reason is in the source chain of `err`.
pub(crate) fn has_h2_reason(err: &(dyn std::error::Error + 'static), reason: h2::Reason) -> bool {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if let Some(h2) = err.downcast_ref::<h2::Error>()
            && h2.reason() == Some(reason)
        {
            return true;
        }
        cause = err.source();
    }
    false
}
