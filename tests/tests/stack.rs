//! Cross-crate tests: the whole default stack (`flext_api::Client`, retry above the pool)
//! against flext-testkit faults that only the combination handles.

use std::sync::Arc;
use std::time::Duration;

use flext_api::{Client, RetrySettings};
use flext_testkit::{ID_HEADER, SCRIPT_HEADER, TestServer};

fn fast_retries() -> RetrySettings {
    RetrySettings {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(10),
        ..RetrySettings::default()
    }
}

/// GOAWAY during load (issue 5): the server gracefully closes its HTTP/2 connections again
/// and again while 64 callers send GETs; with retry above the pool, no request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_under_load_fails_no_idempotent_request() {
    let server = Arc::new(
        TestServer::builder()
            .h2c()
            .latency(Duration::from_millis(2))
            .start()
            .await
            .unwrap(),
    );
    let client = Client::builder()
        .base_url(&server.url("/"))
        .http2_prior_knowledge()
        .retry(fast_retries())
        .no_breaker()
        .build()
        .unwrap();

    let goaways = {
        let server = server.clone();
        tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(30)).await;
                server.goaway();
            }
        })
    };
    let mut tasks = Vec::new();
    for t in 0..64 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for i in 0..20 {
                match client.get(format!("load/{t}/{i}")).send().await {
                    Ok(res) if res.status() == 200 => {}
                    Ok(res) => failures.push(format!("status {}", res.status())),
                    Err(e) => failures.push(format!("{e:?}")),
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    goaways.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let stats = server.stats();
    assert!(
        stats.connections_accepted > 1,
        "the goaways closed connections: {stats:?}"
    );
    assert!(stats.requests >= 64 * 20);
}

/// HTTP/1.1 connections closed by the server after every 3 requests: keep-alive races do not
/// surface as errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_closing_http1_connections_fails_no_request() {
    let server = TestServer::builder()
        .http1()
        .max_requests_per_connection(3)
        .start()
        .await
        .unwrap();
    let client = Client::builder()
        .base_url(&server.url("/"))
        .retry(fast_retries())
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..16 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            for i in 0..25 {
                if let Ok(res) = client.get(format!("h1/{t}/{i}")).send().await
                    && res.status() == 200
                    && res.bytes().await.is_ok()
                {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    assert_eq!(ok, 16 * 25);
}

/// A POST whose HTTP/2 stream the server refuses (REFUSED_STREAM) was never processed, so it
/// is resent even though POST is not idempotent, and the server executes it once.
#[tokio::test]
async fn refused_stream_post_is_resent_and_executed_once() {
    let server = TestServer::builder().h2c().start().await.unwrap();
    let client = Client::builder()
        .base_url(&server.url("/"))
        .http2_prior_knowledge()
        .retry(fast_retries())
        .build()
        .unwrap();
    let res = client
        .post("orders")
        .header(ID_HEADER, "refused-post")
        .header(SCRIPT_HEADER, "reset,echo")
        .body("order-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.attempts(), 2);
    let echo: serde_json::Value = res.json().await.unwrap();
    assert_eq!(echo["body"], "order-1");
    // Two request heads arrived; only the second was processed (echoed).
    assert_eq!(server.stats().requests_for_id("refused-post"), 2);
}

/// A POST whose connection is dropped after it was sent may have been processed: it is not
/// resent, and the error says so.
#[tokio::test]
async fn dropped_post_is_not_resent() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let client = Client::builder()
        .base_url(&server.url("/"))
        .retry(fast_retries())
        .build()
        .unwrap();
    let err = client
        .post("orders")
        .header(ID_HEADER, "dropped-post")
        .header(SCRIPT_HEADER, "drop,200")
        .body("order-2")
        .send()
        .await
        .unwrap_err();
    assert_eq!(server.stats().requests_for_id("dropped-post"), 1);
    let info = err.retry_info().expect("retry info on the error");
    assert_eq!(
        info.stop_reason().map(|r| r.as_str()),
        Some("not_idempotent")
    );
}

/// With the whole default stack (retries on), an outage opens the breaker and its rejections
/// come back at once: retry does not wait behind an open circuit.
#[tokio::test]
async fn open_circuit_rejections_fail_fast_through_retry() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let client = Client::builder()
        .base_url(&server.url("/"))
        .retry(fast_retries())
        .build()
        .unwrap();
    assert_eq!(client.get("up").send().await.unwrap().status(), 200);
    server.stop().await;
    // Connect failures (each retried: never sent) open the circuit.
    let mut open = None;
    for _ in 0..10 {
        let err = client.get("down").send().await.unwrap_err();
        if err.is_circuit_open() {
            open = Some(err);
            break;
        }
        assert!(err.is_connect(), "{err:?}");
    }
    let err = open.expect("the breaker opened");
    assert!(
        err.circuit_retry_after()
            .is_some_and(|d| d > Duration::from_secs(20))
    );
    for _ in 0..20 {
        let start = std::time::Instant::now();
        let err = client.get("down").send().await.unwrap_err();
        assert!(err.is_circuit_open(), "{err:?}");
        assert_eq!(
            err.retry_info()
                .and_then(|i| i.stop_reason())
                .map(|r| r.as_str()),
            Some("rejected")
        );
        // Nowhere near the 27-33 s the circuit stays open: it did not wait.
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
    }
}
