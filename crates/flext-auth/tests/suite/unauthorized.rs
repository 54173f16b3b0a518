//! A 401 to a request with a cached token: invalidate, refresh once, replay once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use flext_auth::{AuthLayer, CachedProvider, Credential, Token, provider_fn};
use flext_core::{BoxError, ReplayLimits};
use flext_testkit::{ID_HEADER, SCRIPT_HEADER, TestServer};
use http::{Request, StatusCode};
use http_body_util::Full;
use tower::{Layer, ServiceExt};

use crate::common::{
    Echo, Recorder, any_client, assert_no_secret_logged, capture_tracing, client, logs,
};

fn counting_cache() -> (Arc<AtomicUsize>, CachedProvider) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let cache = CachedProvider::new(provider_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            Ok::<_, BoxError>(
                Token::new(format!("tok-s3cr3t-{n}")).expires_in(Duration::from_secs(3600)),
            )
        }
    }));
    (calls, cache)
}

fn post(server: &TestServer, id: &str, script: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::post(server.url("/orders"))
        .header(ID_HEADER, id)
        .header(SCRIPT_HEADER, script)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

fn layer_for(
    server: &TestServer,
    cache: CachedProvider,
) -> flext_auth::AuthLayerBuilder<CachedProvider> {
    AuthLayer::builder(cache).origin(server.url("/").parse().unwrap())
}

#[tokio::test]
async fn a_401_refreshes_and_replays_once_with_the_new_token() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let (calls, cache) = counting_cache();
    let recorder = Recorder::default();
    let svc = layer_for(&server, cache)
        .build()
        .unwrap()
        .layer(recorder.wrap(client()));

    let res = svc
        .clone()
        .oneshot(post(&server, "replay", "401,echo", "order-42"))
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the caller sees the replay's 200"
    );
    let echo = Echo::read(res).await;
    assert_eq!(echo.header("authorization").unwrap(), "Bearer tok-s3cr3t-2");
    assert_eq!(echo.body(), "order-42", "the body was replayed");
    assert_eq!(echo.json["method"], "POST");

    let sent = recorder.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].authorization().unwrap(), "Bearer tok-s3cr3t-1");
    assert_eq!(sent[0].attempt.number(), 0);
    assert_eq!(sent[1].authorization().unwrap(), "Bearer tok-s3cr3t-2");
    assert_eq!(
        sent[1].attempt.number(),
        1,
        "the replay counts as an attempt"
    );
    assert!(sent[1].authorization().unwrap().is_sensitive());
    assert_eq!(server.stats().requests_for_id("replay"), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // The new token stays cached.
    let res = svc
        .oneshot(post(&server, "after", "echo", ""))
        .await
        .unwrap();
    assert_eq!(
        Echo::read(res).await.header("authorization").unwrap(),
        "Bearer tok-s3cr3t-2"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(logs().contains("401: replaying with a new credential"));
    assert_no_secret_logged();
}

#[tokio::test]
async fn a_second_401_is_handed_back() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let (calls, cache) = counting_cache();
    let svc = layer_for(&server, cache).build().unwrap().layer(client());
    let res = svc
        .oneshot(post(&server, "twice", "401,401,echo", "x"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        server.stats().requests_for_id("twice"),
        2,
        "replayed once, not more"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_no_secret_logged();
}

#[tokio::test]
async fn concurrent_401s_refresh_once() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let (calls, cache) = counting_cache();
    cache.prefetch().await.unwrap();
    let svc = layer_for(&server, cache).build().unwrap().layer(client());
    let mut set = tokio::task::JoinSet::new();
    for i in 0..20 {
        let svc = svc.clone();
        let req = post(&server, &format!("c{i}"), "401,echo", "x");
        set.spawn(async move {
            let res = svc.oneshot(req).await.unwrap();
            Echo::read(res).await.header("authorization").unwrap()
        });
    }
    while let Some(auth) = set.join_next().await {
        assert_eq!(auth.unwrap(), "Bearer tok-s3cr3t-2");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one refresh for all the 401s of one token"
    );
    assert_no_secret_logged();
}

#[tokio::test]
async fn a_body_too_large_to_replay_gets_its_401_but_the_token_is_dropped() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let (calls, cache) = counting_cache();
    let svc = layer_for(&server, cache)
        .replay_limits(ReplayLimits::new(4))
        .build()
        .unwrap()
        .layer(client());
    let res = svc
        .clone()
        .oneshot(post(&server, "big", "401,echo", "more than four bytes"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.stats().requests_for_id("big"), 1);
    // The next request (a retry, say) carries a new token.
    let res = svc
        .oneshot(post(&server, "big", "401,echo", "more than four bytes"))
        .await
        .unwrap();
    assert_eq!(
        Echo::read(res).await.header("authorization").unwrap(),
        "Bearer tok-s3cr3t-2"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_no_secret_logged();
}

#[tokio::test]
async fn no_replay_for_static_credentials_or_the_callers_own() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let svc = AuthLayer::builder(Credential::bearer("static-s3cr3t").unwrap())
        .origin(server.url("/").parse().unwrap())
        .build()
        .unwrap()
        .layer(any_client());
    let res = svc
        .oneshot(post(&server, "static", "401,echo", "x"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.stats().requests_for_id("static"), 1);

    let (calls, cache) = counting_cache();
    let svc = layer_for(&server, cache).build().unwrap().layer(client());
    let mut req = post(&server, "own", "401,echo", "x");
    req.headers_mut()
        .insert("authorization", "Bearer the-callers".parse().unwrap());
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.stats().requests_for_id("own"), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_no_secret_logged();
}

#[tokio::test]
async fn replay_can_be_turned_off() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let (calls, cache) = counting_cache();
    let svc = layer_for(&server, cache)
        .replay_on_unauthorized(false)
        .build()
        .unwrap()
        .layer(client());
    let res = svc
        .clone()
        .oneshot(post(&server, "off", "401,echo", "x"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.stats().requests_for_id("off"), 1);
    let res = svc
        .oneshot(post(&server, "off", "echo", "x"))
        .await
        .unwrap();
    assert_eq!(
        Echo::read(res).await.header("authorization").unwrap(),
        "Bearer tok-s3cr3t-2"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_no_secret_logged();
}

#[tokio::test(start_paused = true)]
async fn no_replay_past_the_requests_deadline() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    // The second token takes 2 s to come.
    let cache = CachedProvider::new(provider_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n > 1 {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Ok::<_, BoxError>(Token::new(format!("tok-s3cr3t-{n}")))
        }
    }));
    let svc = layer_for(&server, cache).build().unwrap().layer(client());
    let mut req = post(&server, "deadline", "401,echo", "x");
    req.extensions_mut()
        .insert(flext_core::Deadline::after(Duration::from_secs(1)));
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.stats().requests_for_id("deadline"), 1);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the token was still refreshed"
    );
    assert_no_secret_logged();
}
