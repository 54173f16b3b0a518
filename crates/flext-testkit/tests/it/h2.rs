//! HTTP/2 faults over h2c: stream resets, GOAWAY, stream and request limits.

use std::time::Duration;

use flext_testkit::TestServer;
use http::Version;
use tokio::time::Instant;

use crate::support::{eventually, get, h2c_client, has_h2_reason, send, status};

#[tokio::test]
async fn reset_refuses_the_stream_and_keeps_the_connection() {
    let server = TestServer::builder().h2c().start().await.unwrap();
    let client = h2c_client();
    let err = send(&client, get(&server, "/", Some("rst"), Some("reset,200")))
        .await
        .unwrap_err();
    assert!(has_h2_reason(&err, h2::Reason::REFUSED_STREAM), "{err:?}");
    assert_eq!(server.stats().requests_for_id("rst"), 1);

    // Only the stream was reset: the next request uses the same connection.
    assert_eq!(status(&client, &server, "rst", "reset,200").await, 200);
    let stats = server.stats();
    assert_eq!((stats.http2_requests, stats.connections_accepted), (2, 1));
}

#[tokio::test]
async fn drop_over_h2_closes_the_whole_connection() {
    let server = TestServer::builder().h2c().start().await.unwrap();
    let client = h2c_client();
    assert_eq!(status(&client, &server, "warm", "200").await, 200);
    let err = send(&client, get(&server, "/", Some("d"), Some("drop")))
        .await
        .unwrap_err();
    assert!(!has_h2_reason(&err, h2::Reason::REFUSED_STREAM), "{err:?}");
    eventually("the connection to close", || {
        server.stats().connections_open == 0
    })
    .await;
    assert_eq!(server.stats().requests_for_id("d"), 1);
}

#[tokio::test]
async fn goaway_moves_the_next_request_to_a_new_connection() {
    let server = TestServer::builder().h2c().start().await.unwrap();
    let client = h2c_client();
    let res = send(&client, get(&server, "/", Some("ga"), Some("goaway")))
        .await
        .unwrap();
    assert_eq!(
        (res.status().as_u16(), res.version()),
        (200, Version::HTTP_2)
    );
    // The server closes the connection once the stream is done.
    eventually("the connection to close", || {
        server.stats().connections_open == 0
    })
    .await;

    assert_eq!(status(&client, &server, "next", "200").await, 200);
    assert_eq!(server.stats().connections_accepted, 2);
}

#[tokio::test]
async fn max_requests_per_connection_over_h2_sends_goaway() {
    let server = TestServer::builder()
        .h2c()
        .max_requests_per_connection(2)
        .start()
        .await
        .unwrap();
    let client = h2c_client();
    for _ in 0..2 {
        assert_eq!(status(&client, &server, "m", "200").await, 200);
    }
    eventually("the connection to close", || {
        server.stats().connections_open == 0
    })
    .await;
    assert_eq!(status(&client, &server, "m", "200").await, 200);
    let stats = server.stats();
    assert_eq!((stats.requests, stats.connections_accepted), (3, 2));
}

#[tokio::test(start_paused = true)]
async fn max_concurrent_streams_limits_one_connection() {
    let server = TestServer::builder()
        .h2c()
        .max_concurrent_streams(2)
        .start()
        .await
        .unwrap();
    let client = h2c_client();
    // One request first, so the client has the server's SETTINGS before it opens streams.
    assert_eq!(status(&client, &server, "warm", "200").await, 200);

    let start = Instant::now();
    let requests = (0..6).map(|i| {
        let req = get(
            &server,
            "/",
            Some(&format!("s{i}")),
            Some("200;delay=100ms"),
        );
        let client = client.clone();
        tokio::spawn(async move { send(&client, req).await.map(|res| res.status()) })
    });
    for request in requests.collect::<Vec<_>>() {
        assert_eq!(request.await.unwrap().unwrap(), 200);
    }
    // Two streams at a time: three rounds of 100 ms on the paused clock.
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    let stats = server.stats();
    assert_eq!((stats.http2_requests, stats.connections_accepted), (7, 1));
}
