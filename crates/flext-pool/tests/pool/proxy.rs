use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use flext_pool::{Config, Connector, Pool, Proxy, TlsConfig};
use flext_testkit::TestServer;
use http::{StatusCode, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{Client, fetch, get};

/// A tiny HTTP CONNECT proxy: reads the request head, connects, answers 200 and copies
/// bytes both ways. Counts the tunnels it opened.
async fn connect_proxy() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tunnels = Arc::new(AtomicUsize::new(0));
    let count = tunnels.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 || head.len() > 8192 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head);
                let mut words = head.split_whitespace();
                if words.next() != Some("CONNECT") {
                    let _ = client
                        .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                        .await;
                    return;
                }
                let Some(target) = words.next() else { return };
                let Ok(mut upstream) = TcpStream::connect(target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                if client
                    .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (format!("http://{addr}"), tunnels)
}

#[tokio::test]
async fn http_through_a_connect_tunnel() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let (proxy, tunnels) = connect_proxy().await;
    let connector = Connector::builder()
        .proxy(Proxy::all(&proxy).unwrap())
        .build()
        .unwrap();
    let pool: Client = Pool::new(connector, Config::default());
    for _ in 0..3 {
        let (resp, body) = fetch(&pool, get(server.uri("/via-proxy"))).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(body, "ok");
    }
    assert_eq!(tunnels.load(Ordering::SeqCst), 1);
    assert_eq!(server.stats().requests_for_path("/via-proxy"), 3);
    assert_eq!(server.stats().connections_accepted, 1);
}

#[tokio::test]
async fn tls_and_h2_inside_a_connect_tunnel() {
    let server = TestServer::builder().tls().start().await.unwrap();
    let (proxy, tunnels) = connect_proxy().await;
    let tls = TlsConfig::new()
        .webpki_roots(false)
        .add_root_pem(server.ca_pem().unwrap().as_bytes())
        .unwrap();
    let connector = Connector::builder()
        .proxy(Proxy::all(&proxy).unwrap())
        .tls(tls)
        .build()
        .unwrap();
    let pool: Client = Pool::new(connector, Config::default());
    let (resp, _) = fetch(&pool, get(server.uri("/secure"))).await.unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(tunnels.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn no_proxy_hosts_go_direct() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let (proxy, tunnels) = connect_proxy().await;
    let connector = Connector::builder()
        .proxy(Proxy::all(&proxy).unwrap().no_proxy("127.0.0.1"))
        .build()
        .unwrap();
    let pool: Client = Pool::new(connector, Config::default());
    fetch(&pool, get(server.uri("/direct"))).await.unwrap();
    assert_eq!(tunnels.load(Ordering::SeqCst), 0);
}

/// A tiny SOCKS5 proxy (no authentication, CONNECT only). Counts the tunnels it opened.
async fn socks5_proxy() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tunnels = Arc::new(AtomicUsize::new(0));
    let count = tunnels.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 2];
                if client.read_exact(&mut head).await.is_err() || head[0] != 5 {
                    return;
                }
                let mut methods = vec![0u8; usize::from(head[1])];
                if client.read_exact(&mut methods).await.is_err() || !methods.contains(&0) {
                    return;
                }
                if client.write_all(&[5, 0]).await.is_err() {
                    return;
                }
                let mut req = [0u8; 4];
                if client.read_exact(&mut req).await.is_err() || req[1] != 1 {
                    return;
                }
                let target = match req[3] {
                    1 => {
                        let mut a = [0u8; 6];
                        if client.read_exact(&mut a).await.is_err() {
                            return;
                        }
                        let port = u16::from_be_bytes([a[4], a[5]]);
                        format!("{}.{}.{}.{}:{port}", a[0], a[1], a[2], a[3])
                    }
                    3 => {
                        let mut len = [0u8; 1];
                        if client.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let mut name = vec![0u8; usize::from(len[0]) + 2];
                        if client.read_exact(&mut name).await.is_err() {
                            return;
                        }
                        let n = name.len();
                        let port = u16::from_be_bytes([name[n - 2], name[n - 1]]);
                        format!("{}:{port}", String::from_utf8_lossy(&name[..n - 2]))
                    }
                    _ => return,
                };
                let Ok(mut upstream) = TcpStream::connect(target).await else {
                    let _ = client.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await;
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                if client
                    .write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0])
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (format!("socks5h://{addr}"), tunnels)
}

#[tokio::test]
async fn http_through_a_socks5_proxy() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let (proxy, tunnels) = socks5_proxy().await;
    let connector = Connector::builder()
        .proxy(Proxy::all(&proxy).unwrap())
        .build()
        .unwrap();
    let pool: Client = Pool::new(connector, Config::default());
    for _ in 0..2 {
        let (resp, _) = fetch(&pool, get(server.uri("/socks"))).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(tunnels.load(Ordering::SeqCst), 1);
    assert_eq!(server.stats().requests_for_path("/socks"), 2);
}

#[tokio::test]
async fn a_failing_proxy_is_a_connect_error() {
    let server = TestServer::builder().http1().start().await.unwrap();
    // A listener that is not a proxy: it closes every connection at once.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((c, _)) = listener.accept().await {
            drop(c);
        }
    });
    let connector = Connector::builder()
        .proxy(Proxy::all(&format!("http://{addr}")).unwrap())
        .build()
        .unwrap();
    let pool: Client = Pool::new(connector, Config::default());
    let err = fetch(&pool, get(server.uri("/x"))).await.unwrap_err();
    assert!(err.is_connect() && err.is_never_sent(), "{err:?}");
    assert_eq!(server.stats().requests, 0);
}
