//! Connection-level faults over HTTP/1.1: drops, limits, idle timeouts, random faults.

use std::time::Duration;

use flext_testkit::{RandomFaults, TestServer};
use http::header::CONNECTION;

use crate::support::{eventually, get, h1_client, send, status};

#[tokio::test]
async fn drop_closes_the_connection_without_a_response() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let client = h1_client();
    let err = send(&client, get(&server, "/", Some("drop"), Some("drop,200")))
        .await
        .unwrap_err();
    assert!(!err.is_connect(), "{err:?}");
    let stats = server.stats();
    assert_eq!(stats.requests_for_id("drop"), 1);

    // The next step answers, on a new connection.
    assert_eq!(status(&client, &server, "drop", "drop,200").await, 200);
    assert_eq!(server.stats().connections_accepted, 2);
}

#[tokio::test]
async fn reset_over_http1_drops_the_connection() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let err = send(&h1_client(), get(&server, "/", Some("r"), Some("reset")))
        .await
        .unwrap_err();
    assert!(!err.is_connect(), "{err:?}");
    assert_eq!(server.stats().requests_for_id("r"), 1);
}

#[tokio::test]
async fn max_requests_per_connection_over_http1() {
    let server = TestServer::builder()
        .http1()
        .max_requests_per_connection(2)
        .start()
        .await
        .unwrap();
    let client = h1_client();
    let mut closes = Vec::new();
    for _ in 0..5 {
        let res = send(&client, get(&server, "/", None, None)).await.unwrap();
        closes.push(res.headers().get(CONNECTION).is_some_and(|v| v == "close"));
    }
    assert_eq!(closes, [false, true, false, true, false]);
    let stats = server.stats();
    assert_eq!((stats.requests, stats.connections_accepted), (5, 3));
}

#[tokio::test]
async fn keep_alive_timeout_closes_idle_connections() {
    let server = TestServer::builder()
        .http1()
        .keep_alive_timeout(Duration::from_millis(150))
        .start()
        .await
        .unwrap();
    let client = h1_client();
    // A response that streams for longer than the timeout is not cut short.
    let res = send(
        &client,
        get(
            &server,
            "/",
            Some("k"),
            Some("200;body=8;chunks=4;chunk-delay=100ms"),
        ),
    )
    .await
    .unwrap();
    assert_eq!(res.body().as_ref(), b"abcdefgh");
    assert_eq!(server.stats().connections_open, 1);

    // The idle pooled connection is closed by the server.
    eventually("the idle connection to close", || {
        server.stats().connections_open == 0
    })
    .await;
    assert_eq!(server.stats().connections_accepted, 1);

    // The listener still accepts.
    let res = send(&h1_client(), get(&server, "/", None, None))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(server.stats().connections_accepted, 2);
}

/// Plays `n` requests without scripts and writes down what the client saw.
async fn outcomes(server: &TestServer, n: usize) -> Vec<String> {
    let client = h1_client();
    let mut seen = Vec::new();
    for _ in 0..n {
        seen.push(match send(&client, get(server, "/", None, None)).await {
            Ok(res) => res.status().as_str().to_owned(),
            Err(_) => "error".to_owned(),
        });
    }
    seen
}

#[tokio::test(start_paused = true)]
async fn random_faults_are_deterministic_for_a_seed() {
    let faults = |seed| RandomFaults {
        seed,
        p_503: 0.3,
        p_drop: 0.1,
        p_reset: 0.1,
        p_delay: 0.2,
        delay: Duration::from_millis(100),
    };
    let start = |seed| {
        TestServer::builder()
            .http1()
            .random_faults(faults(seed))
            .start()
    };
    let (a, b, c) = (
        start(7).await.unwrap(),
        start(7).await.unwrap(),
        start(8).await.unwrap(),
    );
    let (seen_a, seen_b, seen_c) = (
        outcomes(&a, 40).await,
        outcomes(&b, 40).await,
        outcomes(&c, 40).await,
    );
    assert_eq!(seen_a, seen_b);
    assert_ne!(seen_a, seen_c);
    for expected in ["200", "503", "error"] {
        assert!(
            seen_a.iter().any(|s| s == expected),
            "{expected} in {seen_a:?}"
        );
    }
    // A scripted request is exempt.
    let client = h1_client();
    for _ in 0..10 {
        assert_eq!(status(&client, &a, "exempt", "200").await, 200);
    }
    // Invalid probabilities are refused.
    let err = TestServer::builder()
        .random_faults(RandomFaults {
            p_503: 0.8,
            p_drop: 0.5,
            ..faults(1)
        })
        .start()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}
