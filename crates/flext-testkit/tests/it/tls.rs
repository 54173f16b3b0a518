//! TLS with ALPN, verified against the server's own CA.

use std::sync::Arc;

use bytes::Bytes;
use flext_testkit::TestServer;
use http::Version;
use http_body_util::Full;
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::support::get;

/// A client that trusts the PEM the server hands out and offers `h2` and `http/1.1`.
fn client(
    server: &TestServer,
) -> Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
> {
    let pem = server.ca_pem().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_all_versions()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

#[tokio::test]
async fn tls_negotiates_h2_by_alpn() {
    let server = TestServer::builder().tls().start().await.unwrap();
    assert!(server.url("/a").starts_with("https://localhost:"));
    assert_eq!(server.ca_der().map(<[u8]>::is_empty), Some(false));
    let res = client(&server)
        .request(get(&server, "/a", Some("t"), Some("201")))
        .await
        .unwrap();
    assert_eq!(
        (res.status().as_u16(), res.version()),
        (201, Version::HTTP_2)
    );
    let stats = server.stats();
    assert_eq!((stats.tls_handshakes, stats.http2_requests), (1, 1));
}

#[tokio::test]
async fn tls_with_alpn_http1_only_speaks_http1() {
    let server = TestServer::builder()
        .alpn(["http/1.1"])
        .start()
        .await
        .unwrap();
    let res = client(&server)
        .request(get(&server, "/", None, None))
        .await
        .unwrap();
    assert_eq!(
        (res.status().as_u16(), res.version()),
        (200, Version::HTTP_11)
    );
    let stats = server.stats();
    assert_eq!((stats.tls_handshakes, stats.http1_requests), (1, 1));
}

#[tokio::test]
async fn the_client_config_helper_trusts_the_server() {
    let server = TestServer::builder().tls().http1().start().await.unwrap();
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(server.client_tls_config().unwrap())
        .https_only()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let res = client.request(get(&server, "/", None, None)).await.unwrap();
    assert_eq!(
        (res.status().as_u16(), res.version()),
        (200, Version::HTTP_11)
    );
    // Without TLS there is nothing to trust.
    let plain = TestServer::start().await.unwrap();
    assert!(plain.ca_pem().is_none() && plain.client_tls_config().is_none());
}

#[tokio::test]
async fn malformed_responses_are_written_inside_tls() {
    let server = TestServer::builder().tls().http1().start().await.unwrap();
    let client = client(&server);
    let err = client
        .request(get(&server, "/", Some("b"), Some("bad-status")))
        .await
        .unwrap_err();
    let parse_error = std::error::Error::source(&err)
        .and_then(|e| e.downcast_ref::<hyper::Error>())
        .is_some_and(hyper::Error::is_parse_status);
    assert!(parse_error, "{err:?}");
    let res = client
        .request(get(&server, "/", Some("ok"), Some("200")))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
