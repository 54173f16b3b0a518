//! The less travelled paths of flext-auth over real HTTP: a 401 when no new token can be
//! had, the re-authentication interval, failed refreshes ahead of expiry, absolute expiries,
//! shared failures, invalidation, OAuth bodies cut short, and what `Debug` shows.

#[allow(dead_code)]
#[path = "suite/common.rs"]
mod common;

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use flext_auth::{
    Auth, AuthLayer, CachedProvider, ClientCredentials, Credential, CredentialProvider, Token,
    provider_fn,
};
use flext_core::BoxError;
use flext_testkit::{ID_HEADER, SCRIPT_HEADER, TestServer};
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use common::{
    Echo, Recorder, any_client, assert_no_secret_logged, capture_tracing, client, logs, request,
};

/// A provider whose n-th call (from 1) gives what `answer(n)` says; counts its calls.
fn provider(
    answer: impl Fn(usize) -> Result<Token, BoxError> + Send + Sync + 'static,
) -> (Arc<AtomicUsize>, impl CredentialProvider) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let answer = Arc::new(answer);
    let p = provider_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        let answer = Arc::clone(&answer);
        async move { answer(n) }
    });
    (calls, p)
}

fn hour_token(n: usize) -> Result<Token, BoxError> {
    Ok(Token::new(format!("tok-s3cr3t-{n}")).expires_in(Duration::from_secs(3600)))
}

fn scripted(server: &TestServer, id: &str, script: &str) -> Request<Full<Bytes>> {
    Request::post(server.url("/orders"))
        .header(ID_HEADER, id)
        .header(SCRIPT_HEADER, script)
        .body(Full::new(Bytes::from_static(b"order")))
        .unwrap()
}

fn layer(server: &TestServer, cache: CachedProvider) -> AuthLayer<CachedProvider> {
    AuthLayer::builder(cache)
        .origin(server.url("/").parse().unwrap())
        .build()
        .unwrap()
}

async fn authorization<S, RB>(svc: &S, server: &TestServer) -> String
where
    S: Service<Request<Full<Bytes>>, Response = http::Response<RB>, Error = BoxError> + Clone,
    RB: http_body::Body,
    RB::Error: std::fmt::Debug,
{
    let res = svc
        .clone()
        .oneshot(request(server.url("/who")))
        .await
        .unwrap();
    Echo::read(res).await.header("authorization").unwrap()
}

/// Yields until `done` holds; fails after 1000 rounds. Never sleeps.
async fn settle(mut done: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("condition not met");
}

#[tokio::test(start_paused = true)]
async fn a_401_when_no_new_token_can_be_had_is_handed_back() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let (calls, p) = provider(|n| {
        if n == 1 {
            hour_token(n)
        } else {
            Err("identity service down".into())
        }
    });
    let svc = layer(&server, CachedProvider::new(p)).layer(client());
    let res = svc
        .clone()
        .oneshot(scripted(&server, "gone", "401,echo"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.stats().requests_for_id("gone"), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(logs().contains("401 not replayed: no new credential"));

    // The rejected token is gone and the provider backs off: the next call fails at once.
    let err = svc
        .clone()
        .oneshot(scripted(&server, "next", "echo"))
        .await
        .unwrap_err();
    let err = err.downcast::<flext_auth::Error>().unwrap();
    assert!(err.is_backoff() && err.is_provider(), "{err:?}");
    assert_eq!(
        (
            err.status(),
            err.oauth_error(),
            err.oauth_error_description()
        ),
        (None, None, None)
    );
    let cause = err.source().expect("the failure it backs off from");
    assert_eq!(cause.to_string(), "credential provider failed");
    let debug = format!("{err:?}");
    assert!(
        debug.contains("Backoff") && debug.contains("source"),
        "{debug}"
    );
    assert_eq!(server.stats().requests_for_id("next"), 0);
    assert_no_secret_logged();
}

#[tokio::test]
async fn a_second_401_within_the_reauth_interval_does_not_refresh_again() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let (calls, p) = provider(hour_token);
    let cache = CachedProvider::builder(p)
        .reauth_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    let recorder = Recorder::default();
    let svc = layer(&server, cache).layer(recorder.wrap(client()));

    // The first 401 forces a refresh and a replay.
    let res = svc
        .clone()
        .oneshot(scripted(&server, "first", "401,echo"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // A 401 to the new token a moment later is handed back: no third provider call.
    let res = svc
        .clone()
        .oneshot(scripted(&server, "again", "401,echo"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.stats().requests_for_id("again"), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // And the token is kept for the next request.
    assert_eq!(authorization(&svc, &server).await, "Bearer tok-s3cr3t-2");
    let sent: Vec<_> = recorder
        .sent()
        .iter()
        .map(|s| s.authorization().unwrap().to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        sent,
        [
            "Bearer tok-s3cr3t-1",
            "Bearer tok-s3cr3t-2",
            "Bearer tok-s3cr3t-2",
            "Bearer tok-s3cr3t-2"
        ]
    );
    assert_no_secret_logged();
}

#[tokio::test]
async fn invalidate_makes_the_next_request_fetch_a_new_token() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let (calls, p) = provider(hour_token);
    let cache = CachedProvider::new(p);
    cache.prefetch().await.unwrap();
    let svc = layer(&server, cache.clone()).layer(client());
    assert_eq!(authorization(&svc, &server).await, "Bearer tok-s3cr3t-1");
    cache.invalidate();
    assert_eq!(authorization(&svc, &server).await, "Bearer tok-s3cr3t-2");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let debug = format!("{cache:?}");
    assert!(
        debug.contains("generation: Some(2)") && !debug.contains("s3cr3t"),
        "{debug}"
    );
    assert_no_secret_logged();
}

#[tokio::test]
async fn bearer_after_another_header_goes_back_to_authorization() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let (_, p) = provider(hour_token);
    let builder = CachedProvider::builder(p)
        .header("X-Api-Key")
        .unwrap()
        .bearer();
    let debug = format!("{builder:?}");
    assert!(
        debug.starts_with("CachedProviderBuilder") && debug.contains("\"authorization\""),
        "{debug}"
    );
    let svc = layer(&server, builder.build().unwrap()).layer(client());
    let res = svc.oneshot(request(server.url("/which"))).await.unwrap();
    let echo = Echo::read(res).await;
    assert_eq!(echo.header("authorization").unwrap(), "Bearer tok-s3cr3t-1");
    assert_eq!(echo.header("x-api-key"), None);
    assert_no_secret_logged();
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_ahead_keeps_the_valid_token_and_tries_again_after_the_backoff() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let (calls, p) = provider(|n| match n {
        2 => Err("identity service hiccup".into()),
        _ => Ok(Token::new(format!("tok-s3cr3t-{n}")).expires_in(Duration::from_secs(60))),
    });
    let cache = CachedProvider::new(p);
    cache.prefetch().await.unwrap();
    let svc = layer(&server, cache).layer(client());

    // 60 s tokens are refreshed 10 to 12 s ahead: at 51 s the refresh is due, and fails.
    tokio::time::advance(Duration::from_secs(51)).await;
    assert_eq!(authorization(&svc, &server).await, "Bearer tok-s3cr3t-1");
    settle(|| calls.load(Ordering::SeqCst) == 2).await;
    // Within the backoff (at most 1 s) the still-valid token is used, with no provider call.
    assert_eq!(authorization(&svc, &server).await, "Bearer tok-s3cr3t-1");
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // After it, the next request starts the refresh again, and the one after gets its token.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(authorization(&svc, &server).await, "Bearer tok-s3cr3t-1");
    settle(|| calls.load(Ordering::SeqCst) == 3).await;
    assert_eq!(authorization(&svc, &server).await, "Bearer tok-s3cr3t-3");
    assert!(logs().contains("credential refresh failed"));
    assert_no_secret_logged();
}

#[tokio::test(start_paused = true)]
async fn an_absolute_expiry_is_honoured() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let (calls, p) = provider(|n| {
        Ok(Token::new(format!("tok-s3cr3t-{n}"))
            .expires_at(Instant::now() + Duration::from_secs(30)))
    });
    let svc = layer(&server, CachedProvider::new(p)).layer(client());
    let start = Instant::now();
    assert_eq!(authorization(&svc, &server).await, "Bearer tok-s3cr3t-1");
    // At the expiry instant the token is not used any more.
    tokio::time::advance(start + Duration::from_secs(30) - Instant::now()).await;
    assert_eq!(authorization(&svc, &server).await, "Bearer tok-s3cr3t-2");
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // A token that expires when it is given is refused.
    let (_, stale) = provider(|_| Ok(Token::new("tok-s3cr3t-old").expires_at(Instant::now())));
    let err = CachedProvider::new(stale).prefetch().await.unwrap_err();
    assert!(err.is_token_response() && err.is_provider(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "credential provider returned an expired token"
    );
    assert_no_secret_logged();
}

#[tokio::test(start_paused = true)]
async fn requests_waiting_on_one_failing_fetch_share_its_error() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let cache = CachedProvider::new(provider_fn(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Err::<Token, BoxError>("identity service down".into())
        }
    }));
    let svc = layer(&server, cache).layer(client());
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let svc = svc.clone();
        let req = request(server.url("/waiting"));
        set.spawn(async move { svc.oneshot(req).await });
    }
    while let Some(done) = set.join_next().await {
        let err = done.unwrap().unwrap_err();
        let err = err.downcast::<flext_auth::Error>().unwrap();
        // The failure itself, not a backoff: they waited for the call that failed.
        assert!(err.is_provider() && !err.is_backoff(), "{err:?}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(server.stats().requests, 0);
    assert_no_secret_logged();
}

#[tokio::test]
async fn without_replay_a_cached_tokens_401_is_handed_back_and_the_token_dropped() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let (calls, p) = provider(hour_token);
    let cache = CachedProvider::new(p);
    cache.prefetch().await.unwrap();
    let svc = AuthLayer::builder(cache)
        .origin(server.url("/").parse().unwrap())
        .replay_on_unauthorized(false)
        .build()
        .unwrap()
        .layer(client());
    let res = svc
        .clone()
        .oneshot(scripted(&server, "once", "401,echo"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.stats().requests_for_id("once"), 1);
    assert_eq!(authorization(&svc, &server).await, "Bearer tok-s3cr3t-2");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_no_secret_logged();
}

#[tokio::test]
async fn the_service_and_its_futures_show_no_secret_in_debug() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let credential = Credential::bearer("static-s3cr3t").unwrap();
    assert_eq!(credential.header_name(), Some(&http::header::AUTHORIZATION));
    let layer = Auth::<(), Credential>::layer(credential)
        .origin(server.url("/").parse().unwrap())
        .build()
        .unwrap();
    let mut svc = layer.layer(any_client());
    let debug = format!("{svc:?}");
    assert!(
        debug.starts_with("Auth {") && debug.contains("[REDACTED]") && !debug.contains("s3cr3t"),
        "{debug}"
    );
    assert_eq!(format!("{:?}", svc.get_ref()), format!("{:?}", client()));
    let _: &mut Client<_, _> = svc.get_mut();

    // A static credential: the inner service's future.
    let fut = svc
        .ready()
        .await
        .unwrap()
        .call(request(server.url("/static")));
    assert_eq!(
        format!("{fut:?}"),
        r#"StaticResponseFuture { state: "inner" }"#
    );
    let echo = Echo::read(fut.await.unwrap()).await;
    assert_eq!(
        echo.header("authorization").unwrap(),
        "Bearer static-s3cr3t"
    );
    let inner = svc.into_inner();
    assert_eq!(format!("{inner:?}"), format!("{:?}", client()));

    // A cached credential: acquiring, then sending once a token is cached.
    let plain_fn = provider_fn(|| async { hour_token(0) });
    assert_eq!(format!("{plain_fn:?}"), "ProviderFn { .. }");
    let (_, p) = provider(hour_token);
    let cache = CachedProvider::new(p);
    let mut svc = layer_with(&server, cache.clone()).layer(client());
    let fut = svc
        .ready()
        .await
        .unwrap()
        .call(request(server.url("/first")));
    assert_eq!(
        format!("{fut:?}"),
        r#"ResponseFuture { state: "acquiring" }"#
    );
    fut.await.unwrap();
    let fut = svc
        .ready()
        .await
        .unwrap()
        .call(request(server.url("/second")));
    assert_eq!(format!("{fut:?}"), r#"ResponseFuture { state: "sending" }"#);
    fut.await.unwrap();

    // A remote origin over plain http: failed before anything is sent.
    let mut remote = AuthLayer::builder(Credential::bearer("static-s3cr3t").unwrap())
        .origin("http://api.example.com".parse().unwrap())
        .build()
        .unwrap()
        .layer(any_client());
    let fut = remote
        .ready()
        .await
        .unwrap()
        .call(request("http://api.example.com/x"));
    assert_eq!(
        format!("{fut:?}"),
        r#"StaticResponseFuture { state: "failed" }"#
    );
    let err = fut.await.unwrap_err();
    assert!(err.downcast::<flext_auth::Error>().unwrap().is_insecure());
    assert_no_secret_logged();
}

fn layer_with(server: &TestServer, cache: CachedProvider) -> AuthLayer<CachedProvider> {
    layer(server, cache)
}

#[tokio::test]
async fn oauth_builder_checks_and_a_token_body_cut_short() {
    capture_tracing();
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    // Plain http to a remote token endpoint is allowed only when asked for.
    let plain = ClientCredentials::builder("http://auth.example.com/token", "cid", "client-s3cr3t")
        .allow_plain_http(true)
        .build(http.clone())
        .unwrap();
    let debug = format!("{plain:?}");
    assert!(
        debug.contains("client_id: \"cid\"")
            && debug.contains("[REDACTED]")
            && !debug.contains("s3cr3t"),
        "{debug}"
    );
    let err = ClientCredentials::builder("https://auth.example.com/token", "", "client-s3cr3t")
        .build(http.clone())
        .unwrap_err();
    assert!(err.is_config(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "invalid auth configuration: client id is empty"
    );

    // The token endpoint's body ends early: the HTTP error is the cause, not a bad response.
    let server = TestServer::start().await.unwrap();
    server.script_path("/token", "truncated").unwrap();
    let provider = ClientCredentials::builder(server.url("/token"), "cid", "client-s3cr3t")
        .build(http)
        .unwrap();
    let err = CachedProvider::new(provider).prefetch().await.unwrap_err();
    assert!(
        err.is_provider() && !err.is_token_response() && !err.is_token_endpoint(),
        "{err:?}"
    );
    assert!(err.source().is_some(), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("s3cr3t"));
    assert_eq!(server.stats().requests_for_path("/token"), 1);
    assert_no_secret_logged();
}
