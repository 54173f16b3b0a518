//! A request whose own deadline (flext-core's `Deadline`, set by a total timeout) passes while
//! it waits for a connection fails as a timeout, never sent; the pool's own acquire timeout
//! stays an `acquire` error.

use std::time::Duration;

use bytes::Bytes;
use flext_core::{Deadline, TransportError};
use flext_pool::{Config, Pool};
use flext_testkit::{SCRIPT_HEADER, TestServer};
use http::Request;
use http_body_util::Empty;
use tower::{Service, ServiceExt};

fn get(uri: http::Uri) -> Request<Empty<Bytes>> {
    Request::get(uri).body(Empty::new()).unwrap()
}

#[tokio::test]
async fn a_deadline_that_passes_in_the_queue_is_a_timeout() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let config = Config::builder()
        .max_connections_per_origin(1)
        .acquire_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let pool: Pool<_, Empty<Bytes>> = Pool::http_with(config);
    // One request holds the only connection for a while.
    let mut slow = get(server.uri("/slow"));
    slow.headers_mut()
        .insert(SCRIPT_HEADER, "200;delay=2s".parse().unwrap());
    let holder = tokio::spawn(pool.clone().oneshot(slow));
    while server.stats().requests_for_path("/slow") == 0 {
        tokio::task::yield_now().await;
    }

    let mut queued = get(server.uri("/queued"));
    queued
        .extensions_mut()
        .insert(Deadline::after(Duration::from_millis(50)));
    let mut caller = pool.clone();
    let err = caller
        .ready()
        .await
        .unwrap()
        .call(queued)
        .await
        .unwrap_err();
    let transport = TransportError::find(&err).expect("a transport error");
    assert!(transport.is_timeout(), "{err}");
    assert!(transport.is_never_sent(), "{err}");
    assert!(err.to_string().contains("deadline"), "{err}");
    assert_eq!(server.stats().requests_for_path("/queued"), 0);
    holder.abort();
}
