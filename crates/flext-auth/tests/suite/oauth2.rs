//! The OAuth 2.0 client credentials provider: its token request, its parsing, its errors,
//! against a `service_fn` token endpoint and over real HTTP to the testkit.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use flext_auth::{AuthLayer, CachedProvider, ClientAuth, ClientCredentials, CredentialProvider};
use flext_core::BoxError;
use flext_testkit::TestServer;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use secrecy::ExposeSecret;
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};

use crate::common::{Echo, assert_no_secret_logged, capture_tracing, client, request};

/// What a token endpoint double received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    uri: String,
    headers: http::HeaderMap,
    form: Vec<(String, String)>,
}

/// A token endpoint as a `service_fn`: records each request, answers `status` with `answer`.
#[allow(clippy::type_complexity)] // The bounds `ClientCredentials::build` asks of a service.
fn endpoint(
    status: u16,
    answer: &'static str,
) -> (
    Arc<Mutex<Vec<Received>>>,
    impl tower::Service<
        Request<Full<Bytes>>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static,
) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&log);
    let svc = service_fn(move |req: Request<Full<Bytes>>| {
        let seen = Arc::clone(&seen);
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            seen.lock().unwrap().push(Received {
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                headers: parts.headers,
                form: form_urlencoded::parse(&bytes).into_owned().collect(),
            });
            let mut res = Response::new(Full::new(Bytes::from_static(answer.as_bytes())));
            *res.status_mut() = StatusCode::from_u16(status).unwrap();
            res.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            Ok::<_, Infallible>(res)
        }
    });
    (log, svc)
}

const TOKEN: &str =
    r#"{"access_token":"at-s3cr3t-1","token_type":"Bearer","expires_in":3600,"scope":"read"}"#;

#[tokio::test]
async fn client_secret_basic_request_is_rfc6749() {
    capture_tracing();
    let (log, svc) = endpoint(200, TOKEN);
    let provider = ClientCredentials::builder(
        "https://auth.example.com/oauth2/token",
        "my client:1",
        "client-s3cr3t",
    )
    .scopes(["orders:read", "orders:write"])
    .audience("https://api.example.com")
    .build(svc)
    .unwrap();
    let token = provider.fetch().await.unwrap();
    assert_eq!(token.secret().expose_secret(), "at-s3cr3t-1");
    assert_eq!(token.lifetime(), Some(Duration::from_secs(3600)));

    let got = log.lock().unwrap()[0].clone();
    assert_eq!(got.method, "POST");
    assert_eq!(got.uri, "https://auth.example.com/oauth2/token");
    assert_eq!(
        got.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(got.headers["accept"], "application/json");
    // §2.3.1: id and secret form-encoded, then Basic.
    let basic = got.headers["authorization"].to_str().unwrap();
    let decoded = STANDARD
        .decode(basic.strip_prefix("Basic ").unwrap())
        .unwrap();
    assert_eq!(decoded, b"my+client%3A1:client-s3cr3t");
    assert!(got.headers["authorization"].is_sensitive());
    let form: Vec<(&str, &str)> = got
        .form
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        form,
        [
            ("grant_type", "client_credentials"),
            ("scope", "orders:read orders:write"),
            ("audience", "https://api.example.com"),
        ]
    );
    assert_no_secret_logged();
}

#[tokio::test]
async fn client_secret_post_puts_the_credentials_in_the_body() {
    capture_tracing();
    let (log, svc) = endpoint(200, TOKEN);
    let provider =
        ClientCredentials::builder("https://auth.example.com/token", "cid", "client-s3cr3t")
            .client_auth(ClientAuth::Post)
            .build(svc)
            .unwrap();
    provider.fetch().await.unwrap();
    let got = log.lock().unwrap()[0].clone();
    assert!(got.headers.get("authorization").is_none());
    let form: Vec<(&str, &str)> = got
        .form
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        form,
        [
            ("grant_type", "client_credentials"),
            ("client_id", "cid"),
            ("client_secret", "client-s3cr3t"),
        ]
    );
    assert_no_secret_logged();
}

fn provider_error(e: BoxError) -> flext_auth::Error {
    *e.downcast::<flext_auth::Error>().unwrap()
}

#[tokio::test]
async fn error_responses_and_bad_json_are_typed() {
    capture_tracing();
    let build = |status, body| {
        ClientCredentials::builder("https://auth.example.com/token", "cid", "client-s3cr3t")
            .build(endpoint(status, body).1)
            .unwrap()
    };
    let e = provider_error(
        build(
            401,
            r#"{"error":"invalid_client","error_description":"Client authentication failed"}"#,
        )
        .fetch()
        .await
        .unwrap_err(),
    );
    assert!(e.is_token_endpoint());
    assert_eq!(e.status(), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(e.oauth_error(), Some("invalid_client"));
    assert_eq!(
        e.oauth_error_description(),
        Some("Client authentication failed")
    );

    let e = provider_error(
        build(400, r#"{"error":"invalid_scope"}"#)
            .fetch()
            .await
            .unwrap_err(),
    );
    assert_eq!(e.oauth_error(), Some("invalid_scope"));
    assert_eq!(
        e.to_string(),
        "token endpoint answered 400 Bad Request: invalid_scope"
    );

    for body in [
        "<html>oops</html>",
        r#"{"token_type":"Bearer"}"#,
        r#"{"access_token":"at-s3cr3t","token_type":"MAC"}"#,
    ] {
        let e = provider_error(build(200, body).fetch().await.unwrap_err());
        assert!(e.is_token_response(), "{body}");
        assert!(!format!("{e} {e:?}").contains("s3cr3t"));
    }

    // Through the cache, a request sees the same typed error.
    let cache = CachedProvider::new(build(401, r#"{"error":"invalid_client"}"#));
    let e = cache.prefetch().await.unwrap_err();
    assert!(e.is_token_endpoint() && e.is_provider());
    assert_no_secret_logged();
}

#[test]
fn a_plain_http_token_endpoint_is_refused() {
    let e = ClientCredentials::builder("http://auth.example.com/token", "cid", "client-s3cr3t")
        .build(endpoint(200, TOKEN).1)
        .unwrap_err();
    assert!(e.is_insecure());
    let e = ClientCredentials::builder("/token", "cid", "client-s3cr3t")
        .build(endpoint(200, TOKEN).1)
        .unwrap_err();
    assert!(e.is_config());
    let e = ClientCredentials::builder("https://a.example/token", "cid", "client-s3cr3t")
        .scope("two words")
        .build(endpoint(200, TOKEN).1)
        .unwrap_err();
    assert!(e.is_invalid_credential());
    let debug = format!(
        "{:?}",
        ClientCredentials::builder("https://a.example/token", "cid", "client-s3cr3t")
    );
    assert!(
        !debug.contains("s3cr3t") && debug.contains("[REDACTED]"),
        "{debug}"
    );
}

#[tokio::test]
async fn token_endpoint_errors_over_real_http() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    server.script_path("/token-401", "401").unwrap();
    server.script_path("/token-503", "503").unwrap();
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for (path, status) in [("/token-401", 401), ("/token-503", 503)] {
        let provider = ClientCredentials::builder(server.url(path), "cid", "client-s3cr3t")
            .build(http.clone())
            .unwrap();
        let e = provider_error(provider.fetch().await.unwrap_err());
        assert!(e.is_token_endpoint());
        assert_eq!(e.status().map(|s| s.as_u16()), Some(status));
        assert_eq!(e.oauth_error(), None, "a text body has no oauth error code");
    }
    // The testkit's `200 ok` is not a token response.
    let provider = ClientCredentials::builder(server.url("/token-ok"), "cid", "client-s3cr3t")
        .build(http)
        .unwrap();
    assert!(provider_error(provider.fetch().await.unwrap_err()).is_token_response());
    assert_eq!(server.stats().requests, 3);
    assert_no_secret_logged();
}

/// The token endpoint over real HTTP: the testkit echoes the token request as it arrived,
/// and this adapter (standing in for the authorization server's logic, which the testkit
/// does not have) answers with a token when the request is a valid client credentials grant.
#[tokio::test]
async fn the_whole_stack_over_real_http() {
    capture_tracing();
    let auth_server = TestServer::start().await.unwrap();
    auth_server.script_path("/oauth2/token", "echo").unwrap();
    let api = TestServer::start().await.unwrap();

    let seen: Arc<Mutex<Vec<Echo>>> = Arc::default();
    let log = Arc::clone(&seen);
    let token_http = ServiceBuilder::new()
        .and_then(move |res: Response<_>| {
            let log = Arc::clone(&log);
            async move {
                let echo = Echo::read(res).await;
                let expected = format!("Basic {}", STANDARD.encode("client-id:client-s3cr3t"));
                let ok = echo.json["method"] == "POST"
                    && echo.header("authorization").as_deref() == Some(expected.as_str())
                    && echo.header("content-type").as_deref()
                        == Some("application/x-www-form-urlencoded")
                    && echo.body() == "grant_type=client_credentials&scope=orders%3Aread";
                let n = {
                    let mut log = log.lock().unwrap();
                    log.push(echo);
                    log.len()
                };
                let body = if ok {
                    format!(r#"{{"access_token":"at-s3cr3t-{n}","token_type":"bearer","expires_in":"3600"}}"#)
                } else {
                    r#"{"error":"invalid_request"}"#.to_owned()
                };
                let mut res = Response::new(Full::new(Bytes::from(body)));
                if !ok {
                    *res.status_mut() = StatusCode::BAD_REQUEST;
                }
                Ok::<_, BoxError>(res)
            }
        })
        .map_err(BoxError::from)
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());

    let provider = ClientCredentials::builder(
        auth_server.url("/oauth2/token"),
        "client-id",
        "client-s3cr3t",
    )
    .scope("orders:read")
    .build(token_http)
    .unwrap();
    let svc = AuthLayer::builder(CachedProvider::new(provider))
        .origin(api.url("/").parse().unwrap())
        .build()
        .unwrap()
        .layer(client());
    for _ in 0..3 {
        let res = svc
            .clone()
            .oneshot(request(api.url("/orders")))
            .await
            .unwrap();
        let echo = Echo::read(res).await;
        assert_eq!(echo.header("authorization").unwrap(), "Bearer at-s3cr3t-1");
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "one token request for three calls"
    );
    assert_eq!(auth_server.stats().requests_for_path("/oauth2/token"), 1);
    // The token request itself never goes to the API, and the client secret never to it.
    assert_eq!(api.stats().requests, 3);
    assert_no_secret_logged();
}
