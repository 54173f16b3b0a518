//! Response decompression (feature `gzip`): the client asks for gzip and decodes it.
#![cfg(feature = "gzip")]

use std::io::Write;

use bytes::Bytes;
use flext_api::Client;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A server that answers gzip when the request accepts it, and says what it was asked.
async fn gzip_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let accepts = req
                        .headers()
                        .get(http::header::ACCEPT_ENCODING)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.contains("gzip"));
                    let text = "hello, compressed world ".repeat(50);
                    if accepts {
                        http::Response::builder()
                            .header(http::header::CONTENT_ENCODING, "gzip")
                            .body(Full::new(Bytes::from(gzip(text.as_bytes()))))
                    } else {
                        http::Response::builder().body(Full::new(Bytes::from(text)))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}/")
}

#[tokio::test]
async fn gzip_bodies_are_decoded() {
    let url = gzip_server().await;
    let client = Client::new();
    let res = client.get(&url).send().await.unwrap();
    assert!(res.headers().get(http::header::CONTENT_ENCODING).is_none());
    let text = res.text().await.unwrap();
    assert_eq!(text, "hello, compressed world ".repeat(50));
}
