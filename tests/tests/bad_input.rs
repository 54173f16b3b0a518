//! Bad input (issue 11): malformed HTTP/1.1 responses from flext-testkit must reach the
//! caller of `flext_api::Client` as typed errors, never a panic, and leave the client usable.

use std::time::Duration;

use flext_api::{Client, RetrySettings};
use flext_testkit::{CONNECTION_ID_HEADER, ID_HEADER, SCRIPT_HEADER, TestServer};

/// The error kinds a malformed response may surface as.
const EXPECTED_KINDS: [&str; 4] = ["protocol", "reset", "body", "other"];

fn client(server: &TestServer, retry: bool) -> Client {
    let builder = Client::builder()
        .base_url(&server.url("/"))
        .http1_only()
        .no_breaker()
        .timeout(Duration::from_secs(10));
    let builder = if retry {
        builder.retry(RetrySettings {
            backoff_base: Duration::from_millis(1),
            backoff_max: Duration::from_millis(10),
            ..RetrySettings::default()
        })
    } else {
        builder.no_retry()
    };
    builder.build().unwrap()
}

async fn http1_server() -> TestServer {
    TestServer::builder().http1().start().await.unwrap()
}

/// A GET whose every attempt plays `action`, read to its end: the error kind, or the body.
async fn get(client: &Client, id: &str, action: &str) -> Result<Vec<u8>, &'static str> {
    let res = client
        .get("bad")
        .header(ID_HEADER, id)
        .header(SCRIPT_HEADER, action)
        .send()
        .await
        .map_err(|e| {
            println!("{id}: send error {}: {e:?}", e.kind_label());
            e.kind_label()
        })?;
    let body = res.bytes().await.map_err(|e| {
        println!("{id}: body error {}: {e:?}", e.kind_label());
        e.kind_label()
    })?;
    Ok(body.to_vec())
}

/// A normal request on the same client succeeds after the fault; the server's number for
/// the connection that served it.
async fn then_ok(client: &Client) -> u64 {
    let res = client.get("ok").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let connection = res
        .headers()
        .get(CONNECTION_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("the testkit numbers its connections");
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"ok");
    connection
}

/// Plays `action` and checks the error kind: one of [`EXPECTED_KINDS`], and exactly `kind`,
/// the kind observed when these tests were written. Then checks that no connection that
/// carried a malformed response was used again: each attempt came on a connection of its
/// own, and the next request on a new one.
async fn fails_with_a_typed_error(action: &str, retry: bool, expected: &str) {
    let server = http1_server().await;
    let client = client(&server, retry);
    let id = format!("{action}-retry-{retry}");
    let kind = get(&client, &id, action).await.unwrap_err();
    println!("{action} (retry: {retry}) -> {kind}");
    assert!(EXPECTED_KINDS.contains(&kind), "{action}: {kind}");
    assert_eq!(kind, expected, "{action} (retry: {retry})");
    let attempts = server.stats().requests_for_id(&id);
    assert!(attempts >= 1);
    assert_eq!(
        server.stats().connections_accepted,
        attempts,
        "{action} (retry: {retry}): one connection per malformed response"
    );
    let connection = then_ok(&client).await;
    let stats = server.stats();
    assert_eq!(
        stats.connections_accepted,
        attempts + 1,
        "{action} (retry: {retry}): the next request opened a new connection"
    );
    assert_eq!(connection, attempts + 1, "{action} (retry: {retry})");
}

#[tokio::test]
async fn garbage_is_a_typed_error() {
    fails_with_a_typed_error("garbage", false, "protocol").await;
    fails_with_a_typed_error("garbage", true, "protocol").await;
}

#[tokio::test]
async fn bad_status_is_a_typed_error() {
    fails_with_a_typed_error("bad-status", false, "protocol").await;
    fails_with_a_typed_error("bad-status", true, "protocol").await;
}

#[tokio::test]
async fn huge_headers_is_a_typed_error() {
    fails_with_a_typed_error("huge-headers", false, "protocol").await;
    fails_with_a_typed_error("huge-headers", true, "protocol").await;
}

#[tokio::test]
async fn truncated_body_is_a_typed_error() {
    fails_with_a_typed_error("truncated", false, "body").await;
    fails_with_a_typed_error("truncated", true, "body").await;
}

/// `content-length: 5` then 50 bytes: the body is the first 5 bytes, and the connection
/// with 45 stray bytes on it is not used again.
#[tokio::test]
async fn wrong_length_reads_five_bytes_and_drops_the_connection() {
    for retry in [false, true] {
        let server = http1_server().await;
        let client = client(&server, retry);
        let body = get(&client, &format!("wrong-length-{retry}"), "wrong-length")
            .await
            .unwrap();
        assert_eq!(body, b"abcde");
        assert_eq!(server.stats().connections_accepted, 1);
        assert_eq!(then_ok(&client).await, 2, "retry: {retry}");
        assert_eq!(server.stats().connections_accepted, 2, "retry: {retry}");
    }
}
