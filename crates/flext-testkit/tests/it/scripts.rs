//! The step language, played over real connections.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use flext_testkit::{CONNECTION_ID_HEADER, ID_HEADER, SCRIPT_HEADER, TestServer};
use http::header::{CONNECTION, RETRY_AFTER};
use http::{HeaderMap, Request, Version};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tokio::time::Instant;

use crate::support::{get, h1_client, send, status};

#[tokio::test]
async fn plays_a_status_sequence_per_id() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let client = h1_client();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(status(&client, &server, "seq", "503,503,200").await);
    }
    assert_eq!(statuses, [503, 503, 200]);
    // Another id has its own count; the last step repeats.
    assert_eq!(status(&client, &server, "other", "503,503,200").await, 503);
    assert_eq!(status(&client, &server, "seq", "503,503,200").await, 200);

    let stats = server.stats();
    assert_eq!(stats.requests_for_id("seq"), 4);
    assert_eq!(stats.requests_for_id("other"), 1);
    assert_eq!(stats.requests_for_path("/"), 5);
    assert_eq!(stats.requests, 5);
}

#[tokio::test]
async fn scripts_by_id_and_by_path() {
    let server = TestServer::start().await.unwrap();
    let client = h1_client();
    server.script("job", "429,202").unwrap();
    server.script_path("/flaky", "503,200").unwrap();

    let plain = |path: &'static str| send(&client, get(&server, path, None, None));
    assert_eq!(plain("/flaky").await.unwrap().status(), 503);
    assert_eq!(plain("/flaky").await.unwrap().status(), 200);
    assert_eq!(plain("/flaky").await.unwrap().status(), 200);
    let ok = plain("/other").await.unwrap();
    assert_eq!(
        (ok.status().as_u16(), ok.body().as_ref()),
        (200, &b"ok"[..])
    );

    let with_id = || send(&client, get(&server, "/flaky", Some("job"), None));
    assert_eq!(with_id().await.unwrap().status(), 429);
    assert_eq!(with_id().await.unwrap().status(), 202);
    // A script header wins over the id's script.
    let res = send(&client, get(&server, "/", Some("job"), Some("418")))
        .await
        .unwrap();
    assert_eq!(res.status(), 418);

    // Installing again starts from the first step.
    server.script_path("/flaky", "503,200").unwrap();
    assert_eq!(plain("/flaky").await.unwrap().status(), 503);
    assert!(server.script("bad", "200,,200").is_err());
}

#[tokio::test]
async fn a_malformed_script_gets_400_with_the_reason() {
    let server = TestServer::start().await.unwrap();
    let client = h1_client();
    let res = send(&client, get(&server, "/", Some("bad"), Some("503,,200")))
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body = String::from_utf8_lossy(res.body());
    assert!(
        body.contains("step 2") && body.contains("empty step"),
        "{body}"
    );

    let res = send(&client, get(&server, "/", Some("bad"), Some("200;delay=5")))
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(String::from_utf8_lossy(res.body()).contains("needs a unit"));
    // Counted all the same.
    assert_eq!(server.stats().requests_for_id("bad"), 2);
}

#[tokio::test]
async fn retry_after_in_seconds_and_as_a_date() {
    let server = TestServer::start().await.unwrap();
    let client = h1_client();
    let res = send(
        &client,
        get(&server, "/", Some("ra"), Some("503;retry-after=5")),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()[RETRY_AFTER], "5");

    let before = SystemTime::now();
    let res = send(
        &client,
        get(&server, "/", Some("rad"), Some("503;retry-after-date=5")),
    )
    .await
    .unwrap();
    let value = res.headers()[RETRY_AFTER].to_str().unwrap();
    let date = httpdate::parse_http_date(value).unwrap();
    assert!(value.ends_with(" GMT"), "{value}");
    // HTTP-dates have whole seconds: at least 4 s after the request was sent.
    assert!(date >= before + Duration::from_secs(4), "{value}");
    assert!(
        date <= SystemTime::now() + Duration::from_secs(60),
        "{value}"
    );
}

#[tokio::test(start_paused = true)]
async fn delay_comes_before_the_head() {
    let server = TestServer::start().await.unwrap();
    let client = h1_client();
    let start = Instant::now();
    let res = send(
        &client,
        get(&server, "/", Some("d"), Some("200;delay=150ms")),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    assert!(start.elapsed() >= Duration::from_millis(150));

    let start = Instant::now();
    let res = send(&client, get(&server, "/", Some("d2"), Some("204;delay=2s")))
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert!(start.elapsed() >= Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn latency_delays_every_response() {
    let server = TestServer::builder()
        .latency(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    let client = h1_client();
    let start = Instant::now();
    for _ in 0..2 {
        let res = send(&client, get(&server, "/", None, None)).await.unwrap();
        assert_eq!(res.status(), 200);
    }
    assert!(start.elapsed() >= Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn streams_a_slow_body_in_chunks() {
    let server = TestServer::start().await.unwrap();
    let client = h1_client();
    let req = get(
        &server,
        "/",
        Some("c"),
        Some("200;body=40;chunks=4;chunk-delay=20ms"),
    );
    let start = Instant::now();
    let res = client.request(req).await.unwrap();
    assert!(!res.headers().contains_key(http::header::CONTENT_LENGTH));
    let mut body = res.into_body();
    let mut chunks = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            chunks.push(data);
        }
    }
    assert_eq!(chunks.iter().map(Bytes::len).collect::<Vec<_>>(), [10; 4]);
    assert_eq!(&chunks[0][..], b"abcdefghij");
    assert!(start.elapsed() >= Duration::from_millis(60));
}

#[tokio::test]
async fn extra_headers_and_close() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let client = h1_client();
    let script = "503;header=x-a:1;header=x-a:2;header=content-type:application/problem+json;close";
    let res = send(&client, get(&server, "/", Some("h"), Some(script)))
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let values: Vec<_> = res.headers().get_all("x-a").iter().collect();
    assert_eq!(values, ["1", "2"]);
    let types: Vec<_> = res.headers().get_all("content-type").iter().collect();
    assert_eq!(types, ["application/problem+json"]);
    assert_eq!(res.headers()[CONNECTION], "close");
    assert_eq!(res.headers()[CONNECTION_ID_HEADER], "1");

    let res = send(&client, get(&server, "/", None, None)).await.unwrap();
    assert_eq!(res.headers()[CONNECTION_ID_HEADER], "2");
    assert_eq!(server.stats().connections_accepted, 2);
}

fn echo_request(uri: http::Uri, body: &'static str) -> Request<Full<Bytes>> {
    Request::post(uri)
        .header(ID_HEADER, "echo")
        .header(SCRIPT_HEADER, "echo")
        .header("x-rep", "one")
        .header("x-rep", "two")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

fn header_values<'a>(echo: &'a Value, name: &str) -> Vec<&'a str> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pair| pair[0] == name)
        .map(|pair| pair[1].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn echo_describes_the_request_over_http1() {
    let server = TestServer::start().await.unwrap();
    let res = send(
        &h1_client(),
        echo_request(server.uri("/echo/me?a=1&b"), "hello"),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let echo: Value = serde_json::from_slice(res.body()).unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/echo/me");
    assert_eq!(echo["query"], "a=1&b");
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(echo["body"], "hello");
    assert_eq!(echo["body_len"], 5);
    assert_eq!(header_values(&echo, "x-rep"), ["one", "two"]);
    assert_eq!(header_values(&echo, "x-testkit-script"), ["echo"]);
    assert!(echo.get("trailers").is_none());
}

#[tokio::test]
async fn echo_describes_the_request_and_trailers_over_h2c() {
    let server = TestServer::builder().h2c().start().await.unwrap();
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "42".parse().unwrap());
    let req = echo_request(server.uri("/t"), "with trailers").map(|body| {
        body.with_trailers(async move { Some(Ok(trailers)) })
            .boxed()
    });
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.version(), Version::HTTP_2);
    let echo: Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(echo["version"], "HTTP/2.0");
    assert_eq!(echo["body"], "with trailers");
    assert_eq!(echo["trailers"], serde_json::json!([["x-checksum", "42"]]));
    assert_eq!(server.stats().http2_requests, 1);
}
