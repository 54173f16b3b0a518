//! The `hickory-dns` resolver: names from the hosts file, and failures as connect errors.

use std::time::{Duration, Instant};

use flext_core::{Sent, TransportErrorKind};
use flext_pool::{Config, Connector, HickoryResolver, Pool};
use flext_testkit::TestServer;
use http::StatusCode;

use crate::common::{Client, fetch, get};

/// A pool over hickory with a short per-query timeout and no retry, so that a name server
/// that does not answer (none is reachable here) fails the test in well under 2 s.
fn hickory_pool() -> Client {
    let resolver = HickoryResolver::builder()
        .timeout(Duration::from_millis(500))
        .attempts(0)
        .build()
        .unwrap();
    let connector = Connector::builder().resolver(resolver).build().unwrap();
    let config = Config::builder()
        .connect_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    Pool::new(connector, config)
}

#[tokio::test]
async fn localhost_resolves_and_the_request_succeeds() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let pool = hickory_pool();
    let uri: http::Uri = format!("http://localhost:{}/dns", server.addr().port())
        .parse()
        .unwrap();
    for _ in 0..2 {
        let (resp, body) = fetch(&pool, get(uri.clone())).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(body, "ok");
    }
    assert_eq!(server.stats().requests_for_path("/dns"), 2);
    assert_eq!(server.stats().connections_accepted, 1);
}

#[tokio::test]
async fn an_unresolvable_name_is_a_quick_never_sent_connect_error() {
    let pool = hickory_pool();
    let start = Instant::now();
    let err = fetch(&pool, get("http://no-such-host.invalid/".parse().unwrap()))
        .await
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(err.is_connect(), "{err:?}");
    assert_eq!(err.kind(), TransportErrorKind::Connect);
    assert_eq!(err.sent(), Sent::No);
    // The resolver's own words are in the chain.
    let mut chain = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(&err);
    while let Some(e) = source {
        chain.push_str(&format!("{e}: "));
        source = e.source();
    }
    assert!(chain.contains("dns"), "{chain}");
}
