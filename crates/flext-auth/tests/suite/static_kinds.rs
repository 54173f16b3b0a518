//! Each static credential arrives at the server exactly as its RFC says.

use std::convert::Infallible;

use bytes::Bytes;
use flext_auth::{AuthLayer, CachedProvider, Credential, CredentialSource, Token, provider_fn};
use flext_core::{Origin, ReplayBody};
use flext_testkit::TestServer;
use http::{Method, Request, Response};
use http_body_util::Full;
use tower::{Layer, ServiceExt};

use crate::common::{assert_no_secret_logged, capture_tracing, echo_through, request};

fn origin(server: &TestServer) -> Origin {
    server.url("/").parse().unwrap()
}

async fn layer(server: &TestServer, credential: Credential) -> AuthLayer<Credential> {
    AuthLayer::builder(credential)
        .origin(origin(server))
        .build()
        .unwrap()
}

#[tokio::test]
async fn bearer_is_rfc6750_and_sensitive() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let layer = layer(
        &server,
        Credential::bearer("mF_9.B5f-4.1JqM-s3cr3t").unwrap(),
    )
    .await;
    let (echo, sent) = echo_through(&layer, request(server.url("/v1"))).await;
    assert_eq!(
        echo.header("authorization").as_deref(),
        Some("Bearer mF_9.B5f-4.1JqM-s3cr3t")
    );
    assert!(sent[0].authorization().unwrap().is_sensitive());
    assert_no_secret_logged();
}

#[tokio::test]
async fn basic_is_rfc7617() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    // RFC 7617 §2's example, and §2.1's UTF-8 one.
    for (user, password, expected) in [
        (
            "Aladdin",
            "open sesame",
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        ),
        ("test", "123\u{a3}", "Basic dGVzdDoxMjPCow=="),
    ] {
        let layer = layer(&server, Credential::basic(user, password).unwrap()).await;
        let (echo, sent) = echo_through(&layer, request(server.url("/"))).await;
        assert_eq!(echo.header("authorization").as_deref(), Some(expected));
        assert!(sent[0].authorization().unwrap().is_sensitive());
    }
    // A user-id with ':' or a control character is a typed error, and says nothing secret.
    for (user, password) in [("a:b", "s3cr3t"), ("a\u{1}", "s3cr3t"), ("a", "s3cr3t\n")] {
        let e = Credential::basic(user, password).unwrap_err();
        assert!(e.is_invalid_credential());
        assert!(!format!("{e} {e:?}").contains("s3cr3t"));
    }
    assert_no_secret_logged();
}

#[tokio::test]
async fn api_key_in_a_header() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let layer = layer(
        &server,
        Credential::api_key_header("X-Api-Key", "key-s3cr3t").unwrap(),
    )
    .await;
    let (echo, sent) = echo_through(&layer, request(server.url("/"))).await;
    assert_eq!(echo.headers("x-api-key"), ["key-s3cr3t"]);
    assert_eq!(echo.header("authorization"), None);
    assert!(sent[0].headers["x-api-key"].is_sensitive());
    assert_no_secret_logged();
}

#[tokio::test]
async fn api_key_in_the_query_is_percent_encoded_and_opt_in() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let credential = Credential::api_key_query("api key", "k&s3cr3t=/é").unwrap();
    let refused = AuthLayer::builder(credential.clone())
        .origin(origin(&server))
        .build()
        .unwrap_err();
    assert!(refused.is_config());
    let layer = AuthLayer::builder(credential)
        .origin(origin(&server))
        .allow_query_credential(true)
        .build()
        .unwrap();
    let (echo, sent) = echo_through(&layer, request(server.url("/items?page=2"))).await;
    assert_eq!(
        echo.query(),
        Some("page=2&api%20key=k%26s3cr3t%3D%2F%C3%A9")
    );
    assert_eq!(sent[0].uri.query(), echo.query());
    let decoded: Vec<(String, String)> = form_urlencoded::parse(echo.query().unwrap().as_bytes())
        .into_owned()
        .collect();
    assert_eq!(decoded[1], ("api key".to_owned(), "k&s3cr3t=/é".to_owned()));
    // The caller's own parameter is kept.
    let (echo, _) = echo_through(&layer, request(server.url("/items?api+key=mine"))).await;
    assert_eq!(echo.query(), Some("api+key=mine"));
    assert_no_secret_logged();
}

#[tokio::test]
async fn any_custom_header() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let layer = layer(
        &server,
        Credential::header("Authorization", "Token tok-s3cr3t").unwrap(),
    )
    .await;
    let (echo, _) = echo_through(&layer, request(server.url("/"))).await;
    assert_eq!(
        echo.header("authorization").as_deref(),
        Some("Token tok-s3cr3t")
    );
    assert_no_secret_logged();
}

#[tokio::test]
async fn the_callers_authorization_is_kept_unless_told_otherwise() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let credential = Credential::bearer("ours-s3cr3t").unwrap();
    let keep = layer(&server, credential.clone()).await;
    let mut req = request(server.url("/"));
    req.headers_mut()
        .insert("authorization", "Bearer the-callers".parse().unwrap());
    let (echo, _) = echo_through(&keep, req).await;
    assert_eq!(
        echo.header("authorization").as_deref(),
        Some("Bearer the-callers")
    );

    let replace = AuthLayer::builder(credential)
        .origin(origin(&server))
        .replace_existing(true)
        .build()
        .unwrap();
    let mut req = request(server.url("/"));
    req.headers_mut()
        .append("authorization", "Bearer the-callers".parse().unwrap());
    req.headers_mut()
        .append("authorization", "Basic another".parse().unwrap());
    let (echo, _) = echo_through(&replace, req).await;
    assert_eq!(echo.headers("authorization"), ["Bearer ours-s3cr3t"]);
    assert_no_secret_logged();
}

/// What the static layer's inner service gets: the request as it came, with the credential
/// added and nothing else changed. Its body need not even be an `http_body::Body`.
#[tokio::test]
async fn a_static_credential_passes_the_request_through() {
    #[derive(Debug, PartialEq)]
    struct Payload(&'static str);

    let layer = AuthLayer::builder(Credential::bearer("tok-s3cr3t").unwrap())
        .origin("https://api.example.com".parse().unwrap())
        .build()
        .unwrap();
    let inner = tower::service_fn(|req: Request<Payload>| async move {
        let (head, body) = req.into_parts();
        Ok::<_, Infallible>(Response::new((head, body)))
    });
    let mut req = Request::put("https://api.example.com/v1/items?page=2")
        .header("x-trace", "abc")
        .body(Payload("the body"))
        .unwrap();
    let attempt = flext_core::Attempt::default().next();
    req.extensions_mut().insert(attempt);
    let res = layer.layer(inner).oneshot(req).await.unwrap();
    let (head, body) = res.into_body();
    assert_eq!(body, Payload("the body"));
    assert_eq!(head.method, Method::PUT);
    assert_eq!(head.uri, "https://api.example.com/v1/items?page=2");
    assert_eq!(head.headers["x-trace"], "abc");
    assert_eq!(head.headers["authorization"], "Bearer tok-s3cr3t");
    assert_eq!(head.headers.len(), 2);
    assert_eq!(head.extensions.get::<flext_core::Attempt>(), Some(&attempt));
    assert_no_secret_logged();
}

/// A source chosen at run time: one layer type, and one inner service type (a `ReplayBody`),
/// for a static credential and for a cached provider.
#[tokio::test]
async fn a_credential_source_chosen_at_run_time() {
    let cache = CachedProvider::new(provider_fn(|| async {
        Ok::<_, Infallible>(Token::new("cached-s3cr3t"))
    }));
    let sources = [
        CredentialSource::from(Credential::bearer("static-s3cr3t").unwrap()),
        CredentialSource::from(cache),
    ];
    for (source, expected) in sources.into_iter().zip(["static-s3cr3t", "cached-s3cr3t"]) {
        let layer: AuthLayer<CredentialSource> = AuthLayer::builder(source)
            .origin("https://api.example.com".parse().unwrap())
            .build()
            .unwrap();
        let inner = tower::service_fn(|req: Request<ReplayBody<Full<Bytes>>>| async move {
            Ok::<_, Infallible>(Response::new(req.headers().get("authorization").cloned()))
        });
        let req = Request::get("https://api.example.com/")
            .body(Full::default())
            .unwrap();
        let res = layer.layer(inner).oneshot(req).await.unwrap();
        assert_eq!(
            res.into_body().unwrap(),
            format!("Bearer {expected}").as_str()
        );
    }
    assert_no_secret_logged();
}
