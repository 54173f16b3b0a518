//! Malformed HTTP/1.1 responses written on the raw socket.

use flext_testkit::{ID_HEADER, SCRIPT_HEADER, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{get, h1_client, h2c_client, has_h2_reason, send, status};

/// Sends a scripted GET on a fresh socket and reads everything until the server closes.
async fn raw_get(server: &TestServer, id: &str, script: &str) -> Vec<u8> {
    let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nhost: {}\r\n{ID_HEADER}: {id}\r\n{SCRIPT_HEADER}: {script}\r\n\r\n",
        server.addr()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn garbage_is_non_http_bytes() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let bytes = raw_get(&server, "g", "garbage").await;
    assert_eq!(bytes.len(), 256);
    assert!(bytes.iter().all(|b| *b >= 0x80), "{bytes:?}");
    // The same bytes every time.
    assert_eq!(raw_get(&server, "g", "garbage").await, bytes);
}

#[tokio::test]
async fn bad_status_is_a_non_numeric_status() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let bytes = raw_get(&server, "b", "bad-status").await;
    assert_eq!(bytes, b"HTTP/1.1 abc OK\r\n\r\n");
}

#[tokio::test]
async fn huge_headers_is_a_header_block_over_one_mib() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let bytes = raw_get(&server, "h", "huge-headers").await;
    assert!(bytes.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(bytes.ends_with(b"\r\ncontent-length: 0\r\n\r\n"));
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert_eq!(head_end + 4, bytes.len());
    assert!(head_end > 1024 * 1024, "{head_end}");
}

#[tokio::test]
async fn truncated_sends_ten_of_a_hundred_bytes() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let bytes = raw_get(&server, "t", "truncated").await;
    assert_eq!(
        bytes,
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabcdefghij"
    );
}

#[tokio::test]
async fn wrong_length_sends_fifty_bytes_for_five() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let bytes = raw_get(&server, "w", "wrong-length").await;
    let (head, body) = bytes.split_at(bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4);
    assert_eq!(head, b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n");
    assert_eq!(body.len(), 50);
}

#[tokio::test]
async fn delay_applies_before_the_bytes() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let started = std::time::Instant::now();
    let bytes = raw_get(&server, "d", "bad-status;delay=100ms").await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(100));
    assert_eq!(bytes, b"HTTP/1.1 abc OK\r\n\r\n");
}

#[tokio::test]
async fn hyper_clients_fail_on_the_malformed_heads() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let client = h1_client();
    for action in ["garbage", "bad-status", "huge-headers", "truncated"] {
        let result = match client
            .request(get(&server, "/", Some(action), Some(action)))
            .await
        {
            Err(e) => Err(format!("{e:?}")),
            // A head that parsed: the body must fail.
            Ok(res) => {
                use http_body_util::BodyExt;
                res.into_body()
                    .collect()
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("{e:?}"))
            }
        };
        assert!(result.is_err(), "{action}: {result:?}");
        // The server keeps serving.
        assert_eq!(
            status(&client, &server, &format!("{action}-ok"), "200").await,
            200
        );
    }
}

#[tokio::test]
async fn hyper_client_reads_five_bytes_of_wrong_length() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let client = h1_client();
    let res = send(&client, get(&server, "/", Some("w"), Some("wrong-length")))
        .await
        .unwrap();
    assert_eq!(res.body().as_ref(), b"abcde");
}

#[tokio::test]
async fn over_http2_malformed_actions_reset_the_stream() {
    let server = TestServer::builder().h2c().start().await.unwrap();
    let client = h2c_client();
    let err = send(&client, get(&server, "/", Some("g"), Some("garbage")))
        .await
        .unwrap_err();
    assert!(has_h2_reason(&err, h2::Reason::REFUSED_STREAM), "{err:?}");
    assert_eq!(status(&client, &server, "ok", "200").await, 200);
    assert_eq!(server.stats().connections_accepted, 1);
}
