//! The body of a failed response that is retried is read during the backoff, up to
//! `drain_limit`, so that its HTTP/1.1 connection can carry the retry; past the limit it is
//! dropped and the retry opens a new connection. What the server counts: connections.
//! The 250 ms backoff leaves the 15 ms body ample time to arrive on a loaded machine.

mod common;

use std::time::Duration;

use common::{HttpClient, empty, send};
use flext_core::BoxError;
use flext_retry::{Backoff, RetryLayer};
use flext_testkit::{ID_HEADER, SCRIPT_HEADER, TestServer};
use http::{Request, StatusCode};

/// A 503 with a 4 KiB body streamed in 4 chunks 5 ms apart, then a 200; returns the
/// connections the server accepted.
async fn connections_for(drain_limit: Option<usize>) -> Result<u64, BoxError> {
    let server = TestServer::builder().http1().start().await?;
    let mut builder = RetryLayer::builder().backoff(Backoff::constant(Duration::from_millis(250)));
    if let Some(limit) = drain_limit {
        builder = builder.drain_limit(limit);
    }
    let layer = builder.build()?;
    let req = Request::get(server.uri("/items"))
        .header(ID_HEADER, "drain")
        .header(SCRIPT_HEADER, "503;body=4096;chunks=4;chunk-delay=5ms,200")
        .body(empty())?;
    let res = send(&layer, HttpClient::http1(), req).await?;
    assert_eq!(res.status(), StatusCode::OK);
    let stats = server.stats();
    assert_eq!(stats.requests_for_id("drain"), 2);
    Ok(stats.connections_accepted)
}

#[tokio::test]
async fn a_drained_error_body_lets_the_retry_reuse_its_connection() -> Result<(), BoxError> {
    assert_eq!(connections_for(None).await?, 1);
    Ok(())
}

#[tokio::test]
async fn an_error_body_over_the_drain_limit_is_dropped_and_the_retry_reconnects()
-> Result<(), BoxError> {
    assert_eq!(connections_for(Some(100)).await?, 2);
    Ok(())
}
