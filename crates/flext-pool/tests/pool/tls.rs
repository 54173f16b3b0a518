use std::time::Duration;

use flext_core::{Origin, Sent};
use flext_pool::{Config, Pool, Protocol, TlsConfig};
use flext_testkit::TestServer;
use http::{StatusCode, Version};
use tokio::task::JoinSet;

use crate::common::{Client, fetch, get};

fn trusting(server: &TestServer) -> TlsConfig {
    TlsConfig::new()
        .webpki_roots(false)
        .add_root_pem(server.ca_pem().unwrap().as_bytes())
        .unwrap()
}

fn origin(server: &TestServer) -> Origin {
    Origin::from_uri(&server.uri("/")).unwrap()
}

#[tokio::test]
async fn alpn_negotiates_h2_with_a_custom_ca() {
    let server = TestServer::builder().tls().start().await.unwrap();
    let pool: Client = Pool::https(trusting(&server)).unwrap();
    let (resp, body) = fetch(&pool, get(server.uri("/tls"))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(body, "ok");
    let m = pool.origin_metrics(&origin(&server)).unwrap();
    assert_eq!(m.protocol, Protocol::Http2);
}

#[tokio::test]
async fn http1_when_the_server_offers_only_http1() {
    let server = TestServer::builder()
        .alpn(["http/1.1"])
        .start()
        .await
        .unwrap();
    let pool: Client = Pool::https(trusting(&server)).unwrap();
    for _ in 0..3 {
        let (resp, _) = fetch(&pool, get(server.uri("/h1"))).await.unwrap();
        assert_eq!(resp.version(), Version::HTTP_11);
    }
    assert_eq!(server.stats().connections_accepted, 1);
    let m = pool.origin_metrics(&origin(&server)).unwrap();
    assert_eq!(m.protocol, Protocol::Http1);
}

#[tokio::test]
async fn http1_only_offers_only_http1() {
    let server = TestServer::builder().tls().start().await.unwrap();
    let config = Config::builder().http1_only(true).build().unwrap();
    let pool: Client = Pool::https_with(config, trusting(&server)).unwrap();
    let (resp, _) = fetch(&pool, get(server.uri("/h1"))).await.unwrap();
    assert_eq!(resp.version(), Version::HTTP_11);
}

#[tokio::test]
async fn a_wrong_ca_is_a_tls_error() {
    let server = TestServer::builder().tls().start().await.unwrap();
    let other = TestServer::builder().tls().start().await.unwrap();
    let pool: Client = Pool::https(trusting(&other)).unwrap();
    let err = fetch(&pool, get(server.uri("/x"))).await.unwrap_err();
    assert!(err.is_tls(), "{err:?}");
    assert_eq!(err.sent(), Sent::No);
    assert_eq!(server.stats().requests, 0);
    let m = pool.origin_metrics(&origin(&server)).unwrap();
    assert_eq!(m.counters.connect_errors, 1);
}

#[tokio::test]
async fn danger_accept_invalid_certs_accepts_an_unknown_ca() {
    let server = TestServer::builder().tls().start().await.unwrap();
    let pool: Client = Pool::https(TlsConfig::new().danger_accept_invalid_certs(true)).unwrap();
    let (resp, _) = fetch(&pool, get(server.uri("/x"))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_shares_one_handshake() {
    let server = TestServer::builder()
        .tls()
        .latency(Duration::from_millis(10))
        .start()
        .await
        .unwrap();
    let pool: Client = Pool::https(trusting(&server)).unwrap();
    let mut tasks = JoinSet::new();
    for _ in 0..50 {
        let pool = pool.clone();
        let uri = server.uri("/cold");
        tasks.spawn(async move { fetch(&pool, get(uri)).await.map(|(r, _)| r.version()) });
    }
    while let Some(done) = tasks.join_next().await {
        assert_eq!(done.unwrap().unwrap(), Version::HTTP_2);
    }
    let stats = server.stats();
    assert_eq!(stats.connections_accepted, 1, "{stats:?}");
    assert_eq!(stats.tls_handshakes, 1);
    let m = pool.origin_metrics(&origin(&server)).unwrap();
    assert_eq!(m.counters.opened_http2, 1);
}
