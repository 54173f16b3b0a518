//! Token caching on tokio's paused clock, over real HTTP: refresh ahead of expiry, no expired
//! token ever sent, one provider call for any number of concurrent requests, backoff.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flext_auth::{AuthLayer, CachedProvider, CredentialProvider, Token, provider_fn};
use flext_core::BoxError;
use flext_testkit::TestServer;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

use crate::common::{Echo, Recorder, assert_no_secret_logged, capture_tracing, client, request};

/// A provider issuing `tok-s3cr3t-N` valid for `lifetime`, after `latency`, and remembering
/// when each token request was sent.
#[derive(Clone, Default)]
struct Issuer {
    issued: Arc<Mutex<Vec<Instant>>>,
}

impl Issuer {
    fn provider(&self, lifetime: Duration, latency: Duration) -> impl CredentialProvider {
        let issued = Arc::clone(&self.issued);
        provider_fn(move || {
            let n = {
                let mut issued = issued.lock().unwrap();
                issued.push(Instant::now());
                issued.len()
            };
            async move {
                tokio::time::sleep(latency).await;
                Ok::<_, BoxError>(Token::new(format!("tok-s3cr3t-{n}")).expires_in(lifetime))
            }
        })
    }

    fn calls(&self) -> usize {
        self.issued.lock().unwrap().len()
    }

    /// When token `tok-s3cr3t-N`, as sent in `Bearer ...`, expires.
    fn expiry(&self, authorization: &str, lifetime: Duration) -> Instant {
        let n: usize = authorization
            .strip_prefix("Bearer tok-s3cr3t-")
            .unwrap()
            .parse()
            .unwrap();
        self.issued.lock().unwrap()[n - 1] + lifetime
    }
}

fn layer(server: &TestServer, cache: CachedProvider) -> AuthLayer<CachedProvider> {
    AuthLayer::builder(cache)
        .origin(server.url("/").parse().unwrap())
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_60s_token_is_refreshed_ahead_and_never_sent_expired() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let lifetime = Duration::from_secs(60);
    let issuer = Issuer::default();
    let cache = CachedProvider::new(issuer.provider(lifetime, Duration::from_millis(300)));
    let recorder = Recorder::default();
    let svc = layer(&server, cache).layer(recorder.wrap(client()));

    let start = Instant::now();
    for i in 0..240u64 {
        let before = Instant::now();
        let res = svc.clone().oneshot(request(server.url("/"))).await.unwrap();
        let echo = Echo::read(res).await;
        let sent = recorder.sent().pop().unwrap();
        let auth = sent.authorization().unwrap().to_str().unwrap().to_owned();
        assert_eq!(echo.header("authorization").as_deref(), Some(auth.as_str()));
        assert!(
            sent.at < issuer.expiry(&auth, lifetime),
            "request {i} at {:?} went out with an expired token",
            sent.at - start
        );
        if i > 0 {
            // Only the very first request waits for a token: refreshes run in the background.
            assert_eq!(sent.at, before, "request {i} waited for a refresh");
        }
        tokio::time::sleep_until(start + Duration::from_secs(i + 1)).await;
    }
    // Refreshed 10-12 s before expiry: a new token every 48-50 s (plus the 0.3 s latency)
    // over 240 s, and never at the last moment.
    let issued = issuer.issued.lock().unwrap().clone();
    assert!(
        (5..=6).contains(&issued.len()),
        "{} provider calls",
        issued.len()
    );
    for pair in issued.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_secs(47) && gap <= Duration::from_secs(51),
            "refreshed {gap:?} after the previous token"
        );
    }
    assert!(logs_have("credential refreshed"));
    assert_no_secret_logged();
}

fn logs_have(what: &str) -> bool {
    crate::common::logs().contains(what)
}

#[tokio::test(start_paused = true)]
async fn a_hundred_concurrent_requests_at_expiry_make_one_provider_call() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let lifetime = Duration::from_secs(60);
    let issuer = Issuer::default();
    let cache = CachedProvider::new(issuer.provider(lifetime, Duration::from_millis(100)));
    let svc = layer(&server, cache).layer(client());

    let res = svc.clone().oneshot(request(server.url("/"))).await.unwrap();
    assert_eq!(
        Echo::read(res).await.header("authorization").unwrap(),
        "Bearer tok-s3cr3t-1"
    );
    assert_eq!(issuer.calls(), 1);

    // Past expiry, with no request in the refresh window: every request needs a new token.
    tokio::time::advance(Duration::from_secs(61)).await;
    let mut set = JoinSet::new();
    for _ in 0..100 {
        let svc = svc.clone();
        let uri = server.url("/");
        set.spawn(async move {
            let res = svc.oneshot(request(uri)).await.unwrap();
            Echo::read(res).await.header("authorization").unwrap()
        });
    }
    let mut n = 0;
    while let Some(auth) = set.join_next().await {
        assert_eq!(auth.unwrap(), "Bearer tok-s3cr3t-2");
        n += 1;
    }
    assert_eq!(n, 100);
    assert_eq!(
        issuer.calls(),
        2,
        "exactly one provider call for 100 requests"
    );
    assert_eq!(server.stats().requests, 101);
    assert_no_secret_logged();
}

#[tokio::test(start_paused = true)]
async fn concurrent_requests_in_the_refresh_window_do_not_wait() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let issuer = Issuer::default();
    let cache =
        CachedProvider::new(issuer.provider(Duration::from_secs(60), Duration::from_secs(2)));
    let svc = layer(&server, cache).layer(client());
    svc.clone().oneshot(request(server.url("/"))).await.unwrap();

    // In the window (48-50 s): 50 requests use the current token at once; one refresh starts.
    tokio::time::advance(Duration::from_secs(51)).await;
    let before = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..50 {
        let (svc, uri) = (svc.clone(), server.url("/"));
        set.spawn(async move {
            let res = svc.oneshot(request(uri)).await.unwrap();
            Echo::read(res).await.header("authorization").unwrap()
        });
    }
    while let Some(auth) = set.join_next().await {
        assert_eq!(auth.unwrap(), "Bearer tok-s3cr3t-1");
    }
    assert!(
        before.elapsed() < Duration::from_secs(2),
        "requests waited for the refresh"
    );
    // Once the refresh (2 s) is done, the new token is used.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let res = svc.oneshot(request(server.url("/"))).await.unwrap();
    assert_eq!(
        Echo::read(res).await.header("authorization").unwrap(),
        "Bearer tok-s3cr3t-2"
    );
    assert_eq!(issuer.calls(), 2);
    assert_no_secret_logged();
}

#[tokio::test(start_paused = true)]
async fn a_failing_provider_is_not_hammered() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let calls = Arc::new(Mutex::new(0u32));
    let counter = Arc::clone(&calls);
    let cache = CachedProvider::new(provider_fn(move || {
        *counter.lock().unwrap() += 1;
        let n = *counter.lock().unwrap();
        async move {
            if n < 3 {
                Err::<Token, BoxError>("identity service unavailable".into())
            } else {
                Ok(Token::new("tok-s3cr3t-ok").expires_in(Duration::from_secs(3600)))
            }
        }
    }));
    let svc = layer(&server, cache).layer(client());

    let err = svc
        .clone()
        .oneshot(request(server.url("/")))
        .await
        .unwrap_err();
    let err = err.downcast::<flext_auth::Error>().unwrap();
    assert!(err.is_provider() && !err.is_backoff());
    // 20 more requests within the backoff: failed fast, no provider call, nothing sent.
    for _ in 0..20 {
        let err = svc
            .clone()
            .oneshot(request(server.url("/")))
            .await
            .unwrap_err();
        assert!(err.downcast::<flext_auth::Error>().unwrap().is_backoff());
    }
    assert_eq!(*calls.lock().unwrap(), 1);
    assert_eq!(server.stats().requests, 0);
    // After the first backoff (at most 1 s) one call, failing again; the second backoff is at
    // most 2 s.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(svc.clone().oneshot(request(server.url("/"))).await.is_err());
    assert_eq!(*calls.lock().unwrap(), 2);
    tokio::time::advance(Duration::from_secs(2)).await;
    let res = svc.oneshot(request(server.url("/"))).await.unwrap();
    assert_eq!(
        Echo::read(res).await.header("authorization").unwrap(),
        "Bearer tok-s3cr3t-ok"
    );
    assert_eq!(*calls.lock().unwrap(), 3);
    assert!(logs_have("credential refresh failed"));
    assert_no_secret_logged();
}

#[tokio::test]
async fn cached_tokens_can_go_in_another_header() {
    capture_tracing();
    let server = TestServer::start().await.unwrap();
    let issuer = Issuer::default();
    let cache = CachedProvider::builder(issuer.provider(Duration::from_secs(600), Duration::ZERO))
        .header("X-Api-Key")
        .unwrap()
        .build()
        .unwrap();
    let recorder = Recorder::default();
    let svc = layer(&server, cache).layer(recorder.wrap(client()));
    let res = svc.oneshot(request(server.url("/"))).await.unwrap();
    let echo = Echo::read(res).await;
    assert_eq!(echo.headers("x-api-key"), ["tok-s3cr3t-1"]);
    assert_eq!(echo.header("authorization"), None);
    assert!(recorder.sent()[0].headers["x-api-key"].is_sensitive());
    assert_no_secret_logged();
}
