//! Edges of the server a test author runs into: clearing scripts, protocol and TLS choices,
//! invalid configurations and scripts, headers that are not text, request bodies that never
//! arrive, and what `Debug` shows.

#[allow(dead_code)]
#[path = "it/support.rs"]
mod support;

use std::io;
use std::sync::Arc;

use flext_testkit::{ID_HEADER, RandomFaults, SCRIPT_HEADER, Script, TestServer};
use http::{HeaderValue, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{eventually, get, h1_client, h2c_client, send};

#[tokio::test]
async fn clear_scripts_removes_installed_scripts_and_rewinds() {
    let server = TestServer::start().await.unwrap();
    let client = h1_client();
    server.script("job", "429,202").unwrap();
    server.script_path("/flaky", "503,200").unwrap();
    let by_id = || send(&client, get(&server, "/", Some("job"), None));
    let by_path = || send(&client, get(&server, "/flaky", None, None));
    assert_eq!(by_id().await.unwrap().status(), 429);
    assert_eq!(by_path().await.unwrap().status(), 503);

    server.clear_scripts();
    // Neither script plays any more: the plain `200 ok`.
    let res = by_id().await.unwrap();
    assert_eq!((res.status().as_u16(), &res.body()[..]), (200, &b"ok"[..]));
    assert_eq!(by_path().await.unwrap().status(), 200);

    // A script installed again, and a header script on a path, start from their first step.
    server.script("job", "429,202").unwrap();
    assert_eq!(by_id().await.unwrap().status(), 429);
    let anonymous = || send(&client, get(&server, "/anon", None, Some("500,201")));
    assert_eq!(anonymous().await.unwrap().status(), 500);
    server.clear_scripts();
    assert_eq!(anonymous().await.unwrap().status(), 500);
    // The counters are not scripts: they keep counting.
    assert_eq!(server.stats().requests_for_id("job"), 3);
}

#[tokio::test]
async fn auto_after_h2c_serves_both_protocols_again() {
    let server = TestServer::builder().h2c().auto().start().await.unwrap();
    let h1 = send(&h1_client(), get(&server, "/one", None, None))
        .await
        .unwrap();
    assert_eq!(h1.version(), Version::HTTP_11);
    let h2 = send(&h2c_client(), get(&server, "/two", None, None))
        .await
        .unwrap();
    assert_eq!(h2.version(), Version::HTTP_2);
    let stats = server.stats();
    assert_eq!((stats.http1_requests, stats.http2_requests), (1, 1));
}

fn tls_client_config(server: &TestServer, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut config = server.client_tls_config().unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

async fn tls_connect(
    server: &TestServer,
    alpn: &[&[u8]],
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(server.addr()).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(tls_client_config(server, alpn))
        .connect(name, tcp)
        .await
}

#[tokio::test]
async fn h2c_with_tls_offers_only_h2_in_alpn() {
    let server = TestServer::builder().h2c().tls().start().await.unwrap();
    assert!(server.is_tls());

    let tls = tls_connect(&server, &[b"h2", b"http/1.1"]).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

    // A client that speaks only HTTP/1.1 finds no common protocol: the handshake fails.
    let err = tls_connect(&server, &[b"http/1.1"]).await.unwrap_err();
    assert!(err.to_string().contains("NoApplicationProtocol"), "{err}");
    eventually("both connections counted", || {
        server.stats().connections_accepted == 2
    })
    .await;
    assert_eq!(server.stats().tls_handshakes, 1);
    assert_eq!(server.stats().requests, 0);
}

#[tokio::test]
async fn plain_http_to_a_tls_server_is_no_handshake_and_no_request() {
    let server = TestServer::builder().tls().start().await.unwrap();
    let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    // The server gives up on the handshake and closes; it never answers in HTTP.
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out).await;
    assert!(!out.starts_with(b"HTTP/"), "{out:?}");
    let stats = server.stats();
    assert_eq!(
        (
            stats.connections_accepted,
            stats.tls_handshakes,
            stats.requests
        ),
        (1, 0, 0)
    );
    eventually("the connection to close", || {
        server.stats().connections_open == 0
    })
    .await;
    // It keeps serving TLS clients.
    assert!(tls_connect(&server, &[b"h2"]).await.is_ok());
}

#[tokio::test]
async fn debug_shows_the_setup_but_no_key_material() {
    let tls = TestServer::builder().tls().start().await.unwrap();
    let plain = TestServer::start().await.unwrap();
    assert!(tls.is_tls() && !plain.is_tls());
    let text = format!("{tls:?}");
    // The ALPN protocols, as bytes: h2 and http/1.1.
    assert!(text.contains("alpn: [[104, 50]"), "{text}");
    assert!(
        !text.contains("PRIVATE") && !text.contains("BEGIN"),
        "{text}"
    );
    let ca = tls.ca_pem().unwrap();
    let ca_body = ca.lines().nth(1).unwrap();
    assert!(!text.contains(ca_body), "{text}");
}

#[tokio::test]
async fn a_probability_outside_zero_to_one_is_refused() {
    let faults = RandomFaults {
        p_drop: 1.5,
        ..RandomFaults::default()
    };
    let err = TestServer::builder()
        .random_faults(faults)
        .start()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(
        err.to_string(),
        "random faults: p_drop = 1.5 is not in 0..=1"
    );
    let negative = RandomFaults {
        p_delay: -0.1,
        ..RandomFaults::default()
    };
    let err = TestServer::builder()
        .random_faults(negative)
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("p_delay = -0.1"), "{err}");
}

#[test]
fn script_errors_name_the_step_and_the_option() {
    let err = Script::parse("200,503;retry-after-date=4000000000").unwrap_err();
    assert_eq!(err.step(), Some(2));
    assert_eq!(
        err.to_string(),
        "invalid script step 2 `503;retry-after-date=4000000000`: \
         option `retry-after-date` is larger than 3153600000"
    );
    let err = Script::parse("200;header=x-a:caf\u{e9}").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid script step 1 `200;header=x-a:caf\u{e9}`: \
         option `header`: invalid header value `caf\u{e9}`"
    );
    let err = Script::parse("200;close;close").unwrap_err();
    assert!(
        err.to_string().ends_with("option `close` given twice"),
        "{err}"
    );
    let script = Script::parse("503,200;close").unwrap();
    assert!(!script.is_empty());
    assert_eq!(script.len(), 2);
}

#[tokio::test]
async fn ids_and_scripts_that_are_not_visible_ascii_get_400() {
    let server = TestServer::start().await.unwrap();
    let client = h1_client();
    let mut req = get(&server, "/", None, Some("503"));
    req.headers_mut()
        .insert(ID_HEADER, HeaderValue::from_bytes(b"caf\xe9").unwrap());
    let res = send(&client, req).await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(&res.body()[..], b"x-testkit-id is not visible ASCII");

    let mut req = get(&server, "/", Some("bin"), None);
    req.headers_mut()
        .insert(SCRIPT_HEADER, HeaderValue::from_bytes(b"50\xe93").unwrap());
    let res = send(&client, req).await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(&res.body()[..], b"x-testkit-script is not visible ASCII");
    // Both were counted, the second under its id.
    let stats = server.stats();
    assert_eq!((stats.requests, stats.requests_for_id("bin")), (2, 1));
}

#[tokio::test]
async fn a_request_body_cut_short_gets_400_with_the_reason() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nhost: {}\r\ncontent-length: 100\r\n\r\nonly ten b",
        server.addr()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    // The client stops sending: 90 bytes of the body never come.
    tcp.shutdown().await.unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(text.contains("could not read the request body"), "{text}");
    assert_eq!(server.stats().requests_for_path("/upload"), 1);
}
