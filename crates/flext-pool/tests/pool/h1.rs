use std::time::Duration;

use flext_core::{Origin, Sent, TransportError};
use flext_pool::{Config, Pool};
use flext_testkit::TestServer;
use http::StatusCode;
use tokio::task::JoinSet;
use tower::{Service, ServiceExt};

use crate::common::{Client, fetch, get, get_scripted, is_ready, until};

fn origin(server: &TestServer) -> Origin {
    Origin::from_uri(&server.uri("/")).unwrap()
}

#[tokio::test]
async fn sequential_requests_use_one_connection() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let pool: Client = Pool::http();
    for _ in 0..100 {
        let (resp, body) = fetch(&pool, get(server.uri("/seq"))).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(body, "ok");
    }
    let stats = server.stats();
    assert_eq!(stats.connections_accepted, 1);
    assert_eq!(stats.requests, 100);
    let m = pool.origin_metrics(&origin(&server)).unwrap();
    assert_eq!(m.counters.opened_http1, 1);
    assert_eq!(m.counters.reused, 99);
    assert_eq!((m.http1_connections, m.idle, m.in_use), (1, 1, 0));
    assert_eq!(m.acquire_time.count, 100);
    assert_eq!(m.connect_time.count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_requests_stay_within_ten_connections() {
    let server = TestServer::builder()
        .http1()
        .latency(Duration::from_millis(2))
        .start()
        .await
        .unwrap();
    let config = Config::builder()
        .max_connections_per_origin(10)
        .build()
        .unwrap();
    let pool: Client = Pool::http_with(config);
    let mut tasks = JoinSet::new();
    for _ in 0..500 {
        let pool = pool.clone();
        let uri = server.uri("/burst");
        tasks.spawn(async move { fetch(&pool, get(uri)).await.map(|(r, _)| r.status()) });
    }
    let mut ok = 0;
    while let Some(done) = tasks.join_next().await {
        assert_eq!(done.unwrap().unwrap(), StatusCode::OK);
        ok += 1;
    }
    assert_eq!(ok, 500);
    let stats = server.stats();
    assert!(stats.max_connections_open <= 10, "{stats:?}");
    assert!(stats.connections_accepted <= 10, "{stats:?}");
    assert_eq!(stats.requests, 500);
    let m = pool.origin_metrics(&origin(&server)).unwrap();
    assert!(m.counters.opened_http1 <= 10);
    assert_eq!(m.waiters, 0);
}

#[tokio::test]
async fn acquire_timeout_is_typed_and_never_sent() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let config = Config::builder()
        .max_connections_per_origin(1)
        .acquire_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let pool: Client = Pool::http_with(config);
    // The only connection is busy for a while.
    let slow = tokio::spawn({
        let pool = pool.clone();
        let uri = server.uri("/slow");
        async move { fetch(&pool, get_scripted(uri, "200;delay=1500ms")).await }
    });
    // Wait until the slow request holds the connection (the server has seen it).
    while server.stats().requests_for_path("/slow") == 0 {
        tokio::task::yield_now().await;
    }
    let err = fetch(&pool, get(server.uri("/fast"))).await.unwrap_err();
    assert!(err.is_acquire(), "{err:?}");
    assert_eq!(err.sent(), Sent::No);
    let boxed: flext_core::BoxError = Box::new(err);
    let t = TransportError::find(&*boxed).unwrap();
    assert!(t.is_acquire() && t.is_never_sent());
    assert_eq!(server.stats().requests_for_path("/fast"), 0);
    assert!(slow.await.unwrap().is_ok());
    let m = pool.origin_metrics(&origin(&server)).unwrap();
    assert_eq!(m.counters.acquire_timeouts, 1);
}

#[tokio::test]
async fn a_full_queue_fails_at_once_and_poll_ready_says_so() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let config = Config::builder()
        .max_connections_per_origin(1)
        .max_waiters_per_origin(1)
        .ready_limit(Some(1))
        .build()
        .unwrap();
    let mut pool: Client = Pool::http_with(config);
    assert!(is_ready(&mut pool).await);
    let slow = tokio::spawn({
        let pool = pool.clone();
        let uri = server.uri("/slow");
        async move { fetch(&pool, get_scripted(uri, "200;delay=500ms")).await }
    });
    while server.stats().requests_for_path("/slow") == 0 {
        tokio::task::yield_now().await;
    }
    // One waiter fills the queue...
    let queued = tokio::spawn({
        let pool = pool.clone();
        let uri = server.uri("/queued");
        async move { fetch(&pool, get(uri)).await }
    });
    while pool.metrics().waiters == 0 {
        tokio::task::yield_now().await;
    }
    // ...so the pool is not ready, and one more request is turned away at once.
    assert!(!is_ready(&mut pool).await);
    // (`call` without `poll_ready`: a caller that ignores readiness.)
    let err = pool
        .clone()
        .call(get(server.uri("/rejected")))
        .await
        .unwrap_err();
    assert!(err.is_acquire() && err.is_never_sent(), "{err:?}");
    // Readiness comes back when the queue drains.
    assert!(pool.ready().await.is_ok());
    assert!(slow.await.unwrap().is_ok());
    assert!(queued.await.unwrap().is_ok());
    assert_eq!(server.stats().requests_for_path("/rejected"), 0);
}

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_not_used() {
    let server = TestServer::builder()
        .http1()
        .keep_alive_timeout(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    let pool: Client = Pool::http();
    let (resp, _) = fetch(&pool, get(server.uri("/a"))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Longer than the server's keep-alive timeout: it closes the idle connection.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (resp, _) = fetch(&pool, get(server.uri("/b"))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(server.stats().connections_accepted, 2);
    let m = pool.origin_metrics(&origin(&server)).unwrap();
    assert_eq!(m.counters.closed_by_peer, 1);
    assert_eq!(m.counters.opened_http1, 2);
}

#[tokio::test]
async fn connection_close_is_honoured() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let pool: Client = Pool::http();
    fetch(&pool, get_scripted(server.uri("/c"), "200;close"))
        .await
        .unwrap();
    fetch(&pool, get(server.uri("/d"))).await.unwrap();
    assert_eq!(server.stats().connections_accepted, 2);
}

#[tokio::test]
async fn a_dropped_connection_may_have_been_sent() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let pool: Client = Pool::http();
    let err = fetch(&pool, get_scripted(server.uri("/drop"), "drop"))
        .await
        .unwrap_err();
    assert!(err.is_reset(), "{err:?}");
    assert_eq!(err.sent(), Sent::Maybe);
    // The pool recovers with a new connection.
    let (resp, _) = fetch(&pool, get(server.uri("/after"))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_body_dropped_early_closes_its_connection() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let pool: Client = Pool::http();
    let resp = pool
        .clone()
        .oneshot(get_scripted(
            server.uri("/big"),
            "200;body=100000;chunks=10",
        ))
        .await
        .unwrap();
    drop(resp);
    fetch(&pool, get(server.uri("/next"))).await.unwrap();
    assert_eq!(server.stats().connections_accepted, 2);
    let o = origin(&server);
    until(|| pool.origin_metrics(&o).unwrap().counters.closed_aborted == 1).await;
}

#[tokio::test]
async fn connect_errors_are_typed() {
    // Bind a port, then free it: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let pool: Client = Pool::http();
    let uri: http::Uri = format!("http://{addr}/").parse().unwrap();
    let err = fetch(&pool, get(uri)).await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert!(err.is_never_sent());
    assert!(
        err.to_string()
            .starts_with("could not connect to http://127.0.0.1:")
    );
    let relative = fetch(&pool, get("/relative".parse().unwrap()))
        .await
        .unwrap_err();
    assert!(relative.is_invalid_uri() && relative.is_never_sent());
}

#[tokio::test]
async fn connections_retire_after_their_lifetime() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let config = Config::builder()
        .max_lifetime(Some(Duration::from_millis(200)))
        .build()
        .unwrap();
    let pool: Client = Pool::http_with(config);
    fetch(&pool, get(server.uri("/1"))).await.unwrap();
    fetch(&pool, get(server.uri("/2"))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    fetch(&pool, get(server.uri("/3"))).await.unwrap();
    assert_eq!(server.stats().connections_accepted, 2);
    let o = origin(&server);
    until(|| pool.origin_metrics(&o).unwrap().counters.closed_lifetime == 1).await;
}

#[tokio::test]
async fn idle_connections_are_closed_by_the_pool() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let config = Config::builder()
        .idle_timeout(Some(Duration::from_millis(200)))
        .build()
        .unwrap();
    let pool: Client = Pool::http_with(config);
    fetch(&pool, get(server.uri("/1"))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    fetch(&pool, get(server.uri("/2"))).await.unwrap();
    assert_eq!(server.stats().connections_accepted, 2);
    let o = origin(&server);
    until(|| pool.origin_metrics(&o).unwrap().counters.closed_idle == 1).await;
}

#[tokio::test]
async fn a_request_deadline_shortens_the_wait_for_a_connection() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let config = Config::builder()
        .max_connections_per_origin(1)
        .build()
        .unwrap();
    let pool: Client = Pool::http_with(config);
    let slow = tokio::spawn({
        let pool = pool.clone();
        let uri = server.uri("/slow");
        async move { fetch(&pool, get_scripted(uri, "200;delay=1s")).await }
    });
    while server.stats().requests_for_path("/slow") == 0 {
        tokio::task::yield_now().await;
    }
    let mut req = get(server.uri("/hurried"));
    req.extensions_mut()
        .insert(flext_core::Deadline::after(Duration::from_millis(100)));
    let err = fetch(&pool, req).await.unwrap_err();
    // Well before the 30 s acquire timeout, and a timeout: the request's deadline ended the
    // wait, not a shortage of connections (that stays an acquire error).
    assert!(err.is_timeout() && err.is_never_sent(), "{err:?}");
    assert!(!err.is_acquire(), "{err:?}");
    assert!(err.to_string().contains("deadline"), "{err}");
    assert_eq!(server.stats().requests_for_path("/hurried"), 0);
    assert!(!slow.is_finished());
    assert!(slow.await.unwrap().is_ok());
}
