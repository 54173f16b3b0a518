//! Starting, stopping, restarting and counting.

use flext_testkit::TestServer;
use tokio::net::TcpStream;

use crate::support::{eventually, get, h1_client, h2c_client, send, status};

#[tokio::test]
async fn stop_then_restart_on_the_same_port() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let addr = server.addr();
    assert!(addr.ip().is_loopback());
    assert_eq!(
        server.url("/x"),
        format!("http://127.0.0.1:{}/x", addr.port())
    );
    assert_eq!(status(&h1_client(), &server, "a", "200").await, 200);

    server.stop().await;
    let err = send(&h1_client(), get(&server, "/", None, None))
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert_eq!(server.stats().connections_open, 0);
    server.stop().await; // twice is fine

    server.restart().await.unwrap();
    assert_eq!(server.addr(), addr);
    assert_eq!(status(&h1_client(), &server, "a", "200").await, 200);
    let stats = server.stats();
    assert_eq!((stats.requests, stats.connections_accepted), (2, 2));
}

#[tokio::test]
async fn stop_aborts_open_connections() {
    let server = TestServer::builder().h2c().start().await.unwrap();
    let client = h2c_client();
    let pending = {
        let req = get(&server, "/", Some("slow"), Some("200;delay=10s"));
        let client = client.clone();
        tokio::spawn(async move { send(&client, req).await })
    };
    eventually("the request to arrive", || server.stats().requests == 1).await;
    server.stop().await;
    assert_eq!(server.stats().connections_open, 0);
    assert!(pending.await.unwrap().is_err());
}

#[tokio::test]
async fn goaway_closes_every_connection_and_keeps_listening() {
    let server = TestServer::start().await.unwrap();
    let (h1, h2) = (h1_client(), h2c_client());
    assert_eq!(status(&h1, &server, "a", "200").await, 200);
    assert_eq!(status(&h2, &server, "b", "200").await, 200);
    assert_eq!(server.stats().connections_open, 2);

    server.goaway();
    eventually("both connections to close", || {
        server.stats().connections_open == 0
    })
    .await;

    let res = send(&h1_client(), get(&server, "/", None, None))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(server.stats().connections_accepted, 3);
}

#[tokio::test]
async fn counts_http1_and_http2_requests_on_an_auto_server() {
    let server = TestServer::start().await.unwrap();
    let (h1, h2) = (h1_client(), h2c_client());
    assert_eq!(status(&h1, &server, "a", "200").await, 200);
    for _ in 0..2 {
        assert_eq!(status(&h2, &server, "b", "200").await, 200);
    }
    let stats = server.stats();
    assert_eq!(stats.requests, 3);
    assert_eq!((stats.http1_requests, stats.http2_requests), (1, 2));
    assert_eq!(stats.connections_accepted, 2);
    assert_eq!(stats.tls_handshakes, 0);

    server.reset_stats();
    let stats = server.stats();
    assert_eq!((stats.requests, stats.connections_accepted), (0, 0));
    assert!(stats.requests_by_id.is_empty());
    // The gauge stays; the high-water mark restarts from it.
    assert_eq!((stats.connections_open, stats.max_connections_open), (2, 2));
}

#[tokio::test]
async fn tracks_the_high_water_mark_of_open_connections() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let client = h1_client();
    let requests: Vec<_> = (0..3)
        .map(|i| {
            let req = get(
                &server,
                "/",
                Some(&format!("c{i}")),
                Some("200;delay=200ms"),
            );
            let client = client.clone();
            tokio::spawn(async move { send(&client, req).await.map(|res| res.status()) })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap().unwrap(), 200);
    }
    drop(client);
    eventually("the connections to close", || {
        server.stats().connections_open == 0
    })
    .await;
    let stats = server.stats();
    assert_eq!(stats.connections_accepted, 3);
    assert_eq!(stats.max_connections_open, 3);
}

#[tokio::test]
async fn dropping_the_server_frees_the_port() {
    let server = TestServer::start().await.unwrap();
    let addr = server.addr();
    TcpStream::connect(addr).await.unwrap();
    drop(server);
    let mut refused = false;
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(refused, "the listener outlived the server");
}

#[tokio::test]
async fn refuses_an_invalid_configuration() {
    let err = TestServer::builder()
        .max_requests_per_connection(0)
        .start()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let err = TestServer::builder().alpn([""]).start().await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn the_server_can_be_shared_across_tasks() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<TestServer>();
    send_sync::<flext_testkit::Stats>();
    send_sync::<flext_testkit::ScriptError>();
}
