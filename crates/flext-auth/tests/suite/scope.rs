//! Credentials go only to their origins, and never over plain http to a remote host.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use flext_auth::{AuthLayer, Credential};
use flext_testkit::TestServer;
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use tower::{Layer, ServiceExt, service_fn};

use crate::common::{assert_no_secret_logged, capture_tracing, echo_through, request};

#[tokio::test]
async fn another_origin_gets_no_credential() {
    capture_tracing();
    let api = TestServer::start().await.unwrap();
    let other = TestServer::start().await.unwrap();
    let layer = AuthLayer::builder(Credential::bearer("tok-s3cr3t").unwrap())
        .origin(api.url("/").parse().unwrap())
        .build()
        .unwrap();

    let (echo, _) = echo_through(&layer, request(api.url("/a"))).await;
    assert_eq!(
        echo.header("authorization").as_deref(),
        Some("Bearer tok-s3cr3t")
    );

    // Another port of the same host is another origin.
    let (echo, sent) = echo_through(&layer, request(other.url("/a"))).await;
    assert_eq!(echo.header("authorization"), None);
    assert!(sent[0].authorization().is_none());

    // So is another name for the same server.
    let by_name = format!("http://localhost:{}/a", api.addr().port());
    let (echo, _) = echo_through(&layer, request(by_name)).await;
    assert_eq!(echo.header("authorization"), None);
    assert_no_secret_logged();
}

/// An inner service that never touches the network: counts calls, answers with the
/// `Authorization` it got.
fn stub<B>(
    calls: &Arc<AtomicUsize>,
) -> impl tower::Service<Request<B>, Response = Response<Option<HeaderValue>>, Error = Infallible> + Clone
{
    let calls = Arc::clone(calls);
    service_fn(move |req: Request<B>| {
        calls.fetch_add(1, Ordering::SeqCst);
        let auth = req.headers().get("authorization").cloned();
        async move { Ok::<_, Infallible>(Response::new(auth)) }
    })
}

fn get(uri: &str) -> Request<Full<Bytes>> {
    Request::get(uri).body(Full::default()).unwrap()
}

#[tokio::test]
async fn plain_http_to_a_remote_host_is_refused() {
    capture_tracing();
    let calls = Arc::new(AtomicUsize::new(0));
    let credential = Credential::bearer("tok-s3cr3t").unwrap();
    let layer = AuthLayer::builder(credential.clone())
        .origin("http://api.example.com".parse().unwrap())
        .origin("https://api.example.com".parse().unwrap())
        .build()
        .unwrap();
    let svc = layer.layer(stub(&calls));

    let err = svc
        .clone()
        .oneshot(get("http://api.example.com/v1"))
        .await
        .unwrap_err();
    let err = err.downcast::<flext_auth::Error>().unwrap();
    assert!(err.is_insecure());
    assert_eq!(
        err.to_string(),
        "credential refused over plain http to a non-loopback host (http://api.example.com:80)"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing may go out");

    // https to the same host is fine; so is plain http to loopback.
    let res = svc
        .clone()
        .oneshot(get("https://api.example.com/v1"))
        .await
        .unwrap();
    assert_eq!(res.body().as_ref().unwrap(), "Bearer tok-s3cr3t");

    // Explicitly allowed.
    let allowed = AuthLayer::builder(credential)
        .origin("http://api.example.com".parse().unwrap())
        .allow_plain_http(true)
        .build()
        .unwrap()
        .layer(stub(&calls));
    let res = allowed
        .oneshot(get("http://api.example.com/v1"))
        .await
        .unwrap();
    assert_eq!(res.body().as_ref().unwrap(), "Bearer tok-s3cr3t");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_no_secret_logged();
}

#[tokio::test]
async fn loopback_over_plain_http_needs_no_opt_in() {
    capture_tracing();
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = AuthLayer::builder(Credential::bearer("tok-s3cr3t").unwrap())
        .origins([
            "http://localhost:8080".parse().unwrap(),
            "http://127.0.0.1:8080".parse().unwrap(),
            "http://[::1]:8080".parse().unwrap(),
        ])
        .build()
        .unwrap();
    let svc = layer.layer(stub(&calls));
    for uri in [
        "http://localhost:8080/",
        "http://127.0.0.1:8080/",
        "http://[::1]:8080/",
    ] {
        let res = svc.clone().oneshot(get(uri)).await.unwrap();
        assert_eq!(res.body().as_ref().unwrap(), "Bearer tok-s3cr3t", "{uri}");
    }
    // A relative URI has no origin: untouched.
    let res = svc.oneshot(get("/relative")).await.unwrap();
    assert!(res.body().is_none());
    assert_no_secret_logged();
}
