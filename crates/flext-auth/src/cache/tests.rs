//! The cache on tokio's paused clock: refresh timing, backoff, timeouts, forced refreshes.

use super::*;
use crate::provider::provider_fn;
use flext_core::BoxError;
use std::sync::atomic::AtomicUsize;

fn counting(lifetime: Duration) -> (Arc<AtomicUsize>, impl CredentialProvider) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let p = provider_fn(move || {
        let n = c.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok::<_, BoxError>(Token::new(format!("tok-{n}")).expires_in(lifetime)) }
    });
    (calls, p)
}

#[test]
fn ahead_follows_the_issue_defaults() {
    let cache = CachedProvider::new(counting(Duration::ZERO).1);
    let s = Duration::from_secs;
    // 60 s: 10 % is 6 s, raised to the 10 s floor; jitter only upwards from there.
    assert_eq!(cache.ahead(s(60), 0.0), s(10));
    assert_eq!(cache.ahead(s(60), 1.0), s(12));
    // 1 h: 6 min, capped at 5 min; jitter only downwards.
    assert_eq!(cache.ahead(s(3600), 1.0), s(300));
    assert_eq!(cache.ahead(s(3600), 0.0), s(240));
    // 10 min: 1 min ± 20 %.
    assert_eq!(cache.ahead(s(600), 0.0), s(48));
    assert_eq!(cache.ahead(s(600), 1.0), s(72));
    // 8 s: never more than half the lifetime.
    assert_eq!(cache.ahead(s(8), 0.5), s(4));
}

#[test]
fn builder_validates() {
    let p = || counting(Duration::ZERO).1;
    assert!(
        CachedProvider::builder(p())
            .jitter(1.0)
            .build()
            .unwrap_err()
            .is_config()
    );
    assert!(
        CachedProvider::builder(p())
            .refresh_ahead(1.5, Duration::ZERO, Duration::ZERO)
            .build()
            .unwrap_err()
            .is_config()
    );
    assert!(
        CachedProvider::builder(p())
            .refresh_ahead(0.1, Duration::from_secs(2), Duration::from_secs(1))
            .build()
            .unwrap_err()
            .is_config()
    );
    assert!(
        CachedProvider::builder(p())
            .refresh_timeout(Duration::ZERO)
            .build()
            .unwrap_err()
            .is_config()
    );
    assert!(
        CachedProvider::builder(p())
            .backoff(Duration::ZERO, Duration::ZERO)
            .build()
            .unwrap_err()
            .is_config()
    );
    assert!(
        CachedProvider::builder(p())
            .header("Host")
            .unwrap_err()
            .is_invalid_credential()
    );
}

#[tokio::test(start_paused = true)]
async fn refreshes_ahead_and_never_serves_an_expired_token() {
    let (calls, p) = counting(Duration::from_secs(60));
    let cache = CachedProvider::new(p);
    let start = Instant::now();
    let (v, g1) = cache.acquire().await.unwrap();
    assert_eq!(v, "Bearer tok-1");
    assert!(v.is_sensitive());
    // Before the refresh point (48..=50 s): the same token, no call.
    tokio::time::advance(Duration::from_secs(47)).await;
    assert_eq!(cache.lookup().unwrap().1, g1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Inside the window: still the old token for this request, a refresh in background.
    tokio::time::advance(Duration::from_secs(4)).await;
    assert_eq!(cache.lookup().unwrap().1, g1);
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    let (v, g2) = cache.lookup().unwrap();
    assert_ne!(g2, g1);
    assert_eq!(v, "Bearer tok-2");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(Instant::now() < start + Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_and_are_shared() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let cache = CachedProvider::new(provider_fn(move || {
        c.fetch_add(1, Ordering::SeqCst);
        async { Err::<Token, _>(std::io::Error::other("vault down")) }
    }));
    let e = cache.acquire().await.unwrap_err();
    assert!(e.is_provider() && !e.is_backoff());
    assert_eq!(
        std::error::Error::source(&e).unwrap().to_string(),
        "vault down"
    );
    // Within the backoff: no call, a typed error carrying the cause.
    let e = cache.acquire().await.unwrap_err();
    assert!(e.is_backoff());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // After it (at most 1 s for the first failure), one more call.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(!cache.acquire().await.unwrap_err().is_backoff());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn slow_providers_time_out() {
    let cache = CachedProvider::new(provider_fn(|| async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok::<_, BoxError>(Token::new("late"))
    }));
    let start = Instant::now();
    let e = cache.acquire().await.unwrap_err();
    assert!(e.is_timeout());
    assert_eq!(start.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn expiry_counts_from_when_the_request_was_sent() {
    let cache = CachedProvider::new(provider_fn(|| async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok::<_, BoxError>(Token::new("t").expires_in(Duration::from_secs(20)))
    }));
    let start = Instant::now();
    cache.acquire().await.unwrap();
    let entry = cache.shared.current.load_full().unwrap();
    assert_eq!(entry.expires_at, Some(start + Duration::from_secs(20)));
    // 20 s lifetime: refresh 10 s ahead (half the lifetime caps it).
    assert_eq!(entry.refresh_at, Some(start + Duration::from_secs(10)));

    let expired = CachedProvider::new(provider_fn(|| async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok::<_, BoxError>(Token::new("t").expires_in(Duration::from_secs(2)))
    }));
    assert!(expired.acquire().await.unwrap_err().is_token_response());
}

#[tokio::test(start_paused = true)]
async fn forced_refreshes_are_rate_limited() {
    let (calls, p) = counting(Duration::from_secs(3600));
    let cache = CachedProvider::new(p);
    let (_, g1) = cache.acquire().await.unwrap();
    let (v, g2) = cache.after_unauthorized(g1).await.unwrap();
    assert_eq!(v, "Bearer tok-2");
    // A stale 401 for g1 does not invalidate g2: it gets g2 to replay with.
    assert_eq!(cache.after_unauthorized(g1).await.unwrap().1, g2);
    // g2 rejected at once too: no third call within the interval.
    assert!(cache.after_unauthorized(g2).await.is_none());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(cache.after_unauthorized(g2).await.is_some());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn debug_is_redacted() {
    let cache = CachedProvider::new(counting(Duration::ZERO).1);
    let s = format!("{cache:?}");
    assert!(s.contains("CachedProvider") && !s.contains("tok-"));
}

#[tokio::test(start_paused = true)]
async fn unusable_tokens_are_provider_errors() {
    let cache = CachedProvider::new(provider_fn(|| async {
        Ok::<_, BoxError>(Token::new("two words"))
    }));
    let e = cache.acquire().await.unwrap_err();
    assert!(e.is_token_response() && e.is_provider());
    assert!(!e.to_string().contains("words"));
}

#[tokio::test(start_paused = true)]
async fn huge_settings_do_not_panic() {
    let (_, p) = counting(Duration::from_secs(u64::MAX / 4));
    let cache = CachedProvider::builder(p)
        .refresh_ahead(1.0, Duration::ZERO, Duration::MAX)
        .backoff(Duration::MAX, Duration::MAX)
        .build()
        .unwrap();
    cache.prefetch().await.unwrap();
    assert!(cache.ahead(Duration::MAX, 1.0) <= Duration::MAX / 2);
    assert!(cache.backoff(u32::MAX) <= Duration::from_secs(86_400));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn ahead_stays_within_bounds(lifetime_ms in 0u64..10_000_000_000, unit in 0.0f64..=1.0) {
            let cache = CachedProvider::new(counting(Duration::ZERO).1);
            let lifetime = Duration::from_millis(lifetime_ms);
            let ahead = cache.ahead(lifetime, unit);
            prop_assert!(ahead <= lifetime / 2);
            prop_assert!(ahead <= Duration::from_secs(300));
            if lifetime >= Duration::from_secs(20) {
                prop_assert!(ahead >= Duration::from_secs(10));
            }
        }
    }
}

/// The warm path (a service's `LocalView`) reads no clock while the token is fresh, and still
/// follows tokio's paused clock: past the refresh point it starts a refresh, past expiry it
/// has no token.
#[tokio::test(start_paused = true)]
async fn the_warm_path_follows_the_paused_clock() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    // The first token lives 60 s; the refresh for the second never answers (it times out).
    let cache = CachedProvider::new(provider_fn(move || {
        let n = c.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n > 1 {
                std::future::pending::<()>().await;
            }
            Ok::<_, BoxError>(Token::new("tok-1").expires_in(Duration::from_secs(60)))
        }
    }));
    let (_, g1) = cache.acquire().await.unwrap();
    let mut local = cache.local();
    let entry = cache.shared.current.load_full().unwrap();
    assert!(entry.watch.is_fresh());
    assert_eq!(local.lookup().unwrap().1, g1);
    // Before the refresh point (48-50 s): fresh, no call.
    tokio::time::advance(Duration::from_secs(47)).await;
    assert!(entry.watch.is_fresh());
    assert_eq!(local.lookup().unwrap().1, g1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Past it: marked due by the time `advance` returns; the token is still used, and a
    // refresh starts.
    tokio::time::advance(Duration::from_secs(4)).await;
    assert!(!entry.watch.is_fresh());
    assert_eq!(local.lookup().unwrap().1, g1);
    tokio::task::yield_now().await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // Past expiry, with the refresh still hanging: no token, rather than an expired one.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(local.lookup().is_none());
}

/// A token cached on a runtime that is gone has no timer: the warm path reads the clock.
#[test]
fn without_its_runtime_a_token_is_checked_against_the_clock() {
    let (_, p) = counting(Duration::from_secs(60));
    let cache = CachedProvider::new(p);
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    first.block_on(cache.prefetch()).unwrap();
    let entry = cache.shared.current.load_full().unwrap();
    assert!(entry.watch.is_fresh());
    drop(first);
    assert!(!entry.watch.is_fresh());

    let paused = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    paused.block_on(async {
        let mut local = cache.local();
        assert!(local.lookup().is_some());
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(local.lookup().is_none(), "an expired token was used");
    });
}
