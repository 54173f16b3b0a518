use std::time::Duration;

use flext_core::{Origin, Sent};
use flext_pool::{Config, Pool, Protocol};
use flext_testkit::TestServer;
use http::{StatusCode, Version};
use tokio::task::JoinSet;

use crate::common::{Client, fetch, get, get_scripted, until};

fn h2c() -> Config {
    Config::builder()
        .http2_prior_knowledge(true)
        .build()
        .unwrap()
}

fn origin(server: &TestServer) -> Origin {
    Origin::from_uri(&server.uri("/")).unwrap()
}

async fn concurrent(pool: &Client, server: &TestServer, n: usize) -> Vec<StatusCode> {
    let mut tasks = JoinSet::new();
    for _ in 0..n {
        let pool = pool.clone();
        let uri = server.uri("/c");
        tasks.spawn(async move {
            let (resp, _) = fetch(&pool, get(uri)).await.unwrap();
            assert_eq!(resp.version(), Version::HTTP_2);
            resp.status()
        });
    }
    let mut out = Vec::new();
    while let Some(done) = tasks.join_next().await {
        out.push(done.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_requests_share_one_connection() {
    let server = TestServer::builder()
        .h2c()
        .latency(Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    let pool: Client = Pool::http_with(h2c());
    let statuses = concurrent(&pool, &server, 64).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK));
    assert_eq!(server.stats().connections_accepted, 1);
    let m = pool.origin_metrics(&origin(&server)).unwrap();
    assert_eq!(m.protocol, Protocol::Http2);
    assert_eq!(m.counters.opened_http2, 1);
    assert_eq!(m.http2_streams_in_flight, 0);
}

/// An h2c server that allows 10 streams per connection and answers after 50 ms, so that 50
/// requests at once need 5 connections.
async fn ten_stream_server() -> TestServer {
    TestServer::builder()
        .h2c()
        .max_concurrent_streams(10)
        .latency(Duration::from_millis(50))
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_connections_when_the_peer_limits_streams() {
    let server = ten_stream_server().await;
    let config = Config::builder()
        .http2_prior_knowledge(true)
        .http2_max_connections_per_origin(4)
        .build()
        .unwrap();
    let pool: Client = Pool::http_with(config);
    let statuses = concurrent(&pool, &server, 50).await;
    assert_eq!(statuses.len(), 50);
    assert!(statuses.iter().all(|s| *s == StatusCode::OK));
    let accepted = server.stats().connections_accepted;
    assert!((2..=4).contains(&accepted), "accepted {accepted}");
    let m = pool.origin_metrics(&origin(&server)).unwrap();
    assert_eq!(m.http2_peer_max_streams, Some(10));
    assert!(m.http2_connections <= 4);
}

/// By default HTTP/2 is bounded only by the per-origin connection limit, as HTTP/1.1 is: a
/// server that allows 10 streams per connection gets the 5 connections 50 requests need.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_as_many_connections_as_the_waiting_streams_need() {
    let server = ten_stream_server().await;
    let pool: Client = Pool::http_with(h2c());
    let statuses = concurrent(&pool, &server, 50).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK));
    assert_eq!(statuses.len(), 50);
    let accepted = server.stats().connections_accepted;
    assert_eq!(accepted, 5);
    let m = pool.origin_metrics(&origin(&server)).unwrap();
    assert_eq!(m.counters.opened_http2, 5);
}

#[tokio::test]
async fn refused_streams_are_never_sent() {
    let server = TestServer::builder().h2c().start().await.unwrap();
    let pool: Client = Pool::http_with(h2c());
    let err = fetch(&pool, get_scripted(server.uri("/r"), "reset"))
        .await
        .unwrap_err();
    assert!(err.is_refused(), "{err:?}");
    assert_eq!(err.sent(), Sent::No);
    // The connection survives a refused stream.
    fetch(&pool, get(server.uri("/ok"))).await.unwrap();
    assert_eq!(server.stats().connections_accepted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_under_load_fails_nothing_that_was_sent() {
    let server = TestServer::builder()
        .h2c()
        .latency(Duration::from_millis(5))
        .start()
        .await
        .unwrap();
    let pool: Client = Pool::http_with(h2c());
    let mut tasks = JoinSet::new();
    for worker in 0..16 {
        let pool = pool.clone();
        let uri = server.uri(&format!("/w{worker}"));
        tasks.spawn(async move {
            let mut errors = Vec::new();
            for _ in 0..30 {
                if let Err(e) = fetch(&pool, get(uri.clone())).await {
                    errors.push(e);
                }
            }
            errors
        });
    }
    // GOAWAY the connections a few times while the workers run.
    for _ in 0..3 {
        while server.stats().requests < 50 {
            tokio::task::yield_now().await;
        }
        server.goaway();
        server.reset_stats();
    }
    let mut errors = Vec::new();
    while let Some(done) = tasks.join_next().await {
        errors.extend(done.unwrap());
    }
    // Whatever failed was refused before processing, so a retry layer may resend it.
    for e in &errors {
        assert!(e.is_never_sent(), "{e:?}");
        assert!(e.is_refused() || e.is_reset(), "{e:?}");
    }
    assert!(errors.len() < 16 * 30 / 4, "{} errors", errors.len());
    let m = pool.origin_metrics(&origin(&server)).unwrap();
    assert!(m.counters.opened_http2 >= 2, "{:?}", m.counters);
}

#[tokio::test]
async fn h2_connections_are_reused_across_sequential_requests() {
    let server = TestServer::builder().h2c().start().await.unwrap();
    let pool: Client = Pool::http_with(h2c());
    for _ in 0..20 {
        fetch(&pool, get(server.uri("/s"))).await.unwrap();
    }
    assert_eq!(server.stats().connections_accepted, 1);
    let m = pool.origin_metrics(&origin(&server)).unwrap();
    assert_eq!(m.counters.reused, 19);
    assert_eq!(m.idle, 1);
}

#[tokio::test]
async fn an_h2_connection_past_its_lifetime_takes_no_new_streams() {
    let server = TestServer::builder().h2c().start().await.unwrap();
    let config = Config::builder()
        .http2_prior_knowledge(true)
        .max_lifetime(Some(Duration::from_millis(200)))
        .build()
        .unwrap();
    let pool: Client = Pool::http_with(config);
    fetch(&pool, get(server.uri("/1"))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    fetch(&pool, get(server.uri("/2"))).await.unwrap();
    assert_eq!(server.stats().connections_accepted, 2);
    let o = origin(&server);
    until(|| pool.origin_metrics(&o).unwrap().counters.closed_lifetime == 1).await;
    assert_eq!(pool.origin_metrics(&o).unwrap().http2_connections, 1);
}
