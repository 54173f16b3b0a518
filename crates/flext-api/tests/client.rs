//! End-to-end tests of the facade against flext-testkit, over real sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flext_api::{
    AttemptBody, Body, BreakerClock, BreakerSettings, Client, ClientConfig, Error, RetrySettings,
    stack,
};
use flext_testkit::{Echoed, ID_HEADER, SCRIPT_HEADER, TestServer};
use http::{StatusCode, Version};
use tower::ServiceExt;

fn fast_retries() -> RetrySettings {
    RetrySettings {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        ..RetrySettings::default()
    }
}

async fn client_for(server: &TestServer) -> Client {
    Client::builder()
        .base_url(&server.url("/"))
        .retry(fast_retries())
        .build()
        .unwrap()
}

#[test]
fn client_is_send_sync_clone() {
    fn assert<T: Send + Sync + Clone + 'static>() {}
    fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}
    assert::<Client>();
    assert_error::<Error>();
}

/// Every future of the client can be spawned on a multi-threaded runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_are_send() {
    let server = TestServer::start().await.unwrap();
    let client = client_for(&server).await;
    let task = tokio::spawn(async move {
        let text = client.get("a").send().await?.text().await?;
        let bytes = client.get("b").send().await?.bytes().await?;
        let json = client.get("c").header(SCRIPT_HEADER, "echo").send().await?;
        let echo: serde_json::Value = json.json().await?;
        let mut res = client.get("d").send().await?;
        let chunk = res.chunk().await?;
        Ok::<_, Error>((text, bytes, echo, chunk))
    });
    let (text, bytes, echo, chunk) = task.await.unwrap().unwrap();
    assert_eq!((text.as_str(), &bytes[..]), ("ok", &b"ok"[..]));
    assert_eq!(echo["path"], "/c");
    assert_eq!(chunk.as_deref(), Some(&b"ok"[..]));
}

#[test]
fn default_client_builds() {
    let _ = Client::new();
}

/// A parsed `http::Uri` is sent as its text would be: absolute, or joined to the base URL.
#[tokio::test]
async fn a_parsed_uri_is_sent_like_its_text() {
    let server = TestServer::builder().start().await.unwrap();
    let client = client_for(&server).await;
    let absolute: http::Uri = server.uri("/parsed");
    for _ in 0..2 {
        let res = client.get(&absolute).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = client.get(absolute).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let relative: http::Uri = "/parsed?page=2".parse().unwrap();
    let res = client.post(relative).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(server.stats().requests_for_path("/parsed"), 4);
    // The other ways to hold text work as `&str` does.
    let owned = String::from("/text");
    let boxed: Box<str> = "/text".into();
    let cow = std::borrow::Cow::Borrowed("/text");
    let texts = ["/text"];
    for t in &texts {
        client.get(t).send().await.unwrap();
    }
    client.get(&owned).send().await.unwrap();
    client.get(owned).send().await.unwrap();
    client.get(&boxed).send().await.unwrap();
    client.get(&cow).send().await.unwrap();
    assert_eq!(server.stats().requests_for_path("/text"), 5);
}

#[tokio::test]
async fn get_is_retried_through_503s() {
    let server = TestServer::start().await.unwrap();
    let client = client_for(&server).await;
    let res = client
        .get("a")
        .header(ID_HEADER, "get")
        .header(SCRIPT_HEADER, "503,503,200")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.attempts(), 3);
    assert_eq!(server.stats().requests_for_id("get"), 3);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let server = TestServer::start().await.unwrap();
    let client = client_for(&server).await;
    let start = Instant::now();
    let res = client
        .get("a")
        .header(ID_HEADER, "ra")
        .header(SCRIPT_HEADER, "503;retry-after=1,200")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // The retry waited what the server asked, not the 1-5 ms backoff.
    assert_eq!(res.backoff(), Duration::from_secs(1));
    assert!(start.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn post_is_not_retried_on_503_but_is_with_an_idempotency_key() {
    let server = TestServer::start().await.unwrap();
    let client = client_for(&server).await;
    let res = client
        .post("orders")
        .header(ID_HEADER, "post")
        .header(SCRIPT_HEADER, "503,200")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.stats().requests_for_id("post"), 1);
    let info = res.retry_info().expect("the stop reason is recorded");
    assert_eq!(
        info.stop_reason().map(|r| r.as_str()),
        Some("not_idempotent")
    );

    let res = client
        .post("orders")
        .header(ID_HEADER, "post-key")
        .header(SCRIPT_HEADER, "503,200")
        .idempotency_key("k-1")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(server.stats().requests_for_id("post-key"), 2);
}

#[tokio::test]
async fn an_outage_opens_the_breaker_and_calls_fail_fast() {
    let server = TestServer::start().await.unwrap();
    let client = Client::builder()
        .base_url(&server.url("/"))
        .no_retry()
        .build()
        .unwrap();
    assert_eq!(client.get("up").send().await.unwrap().status(), 200);
    server.stop().await;
    for _ in 0..5 {
        let err = client.get("down").send().await.unwrap_err();
        assert!(err.is_connect(), "{err:?}");
    }
    let start = Instant::now();
    let err = client.get("down").send().await.unwrap_err();
    assert!(err.is_circuit_open(), "{err:?}");
    assert_eq!(err.kind_label(), "circuit_open");
    let left = err.circuit_retry_after().unwrap();
    assert!(
        left > Duration::from_secs(20) && left <= Duration::from_secs(33),
        "{left:?}"
    );
    assert!(start.elapsed() < Duration::from_millis(100));

    let health = client.health();
    let origin = health
        .origins
        .iter()
        .find(|o| o.breaker_state.is_some())
        .unwrap();
    assert_eq!(origin.breaker_state, Some("open"));
    let json = serde_json::to_string(&health).unwrap();
    assert!(json.contains("\"breaker_state\":\"open\""), "{json}");
    let text = client.metrics_text();
    assert!(text.contains("flext_breaker_state{origin=\""), "{text}");
    assert!(text.contains("http_client_request_duration"), "{text}");
}

/// With `breaker.clock = "tokio"`, the breaker follows tokio's paused clock: a test advances
/// past the open time and the next call is the probe that reaches the server.
#[tokio::test(start_paused = true)]
async fn a_breaker_on_the_tokio_clock_moves_with_paused_time() {
    let config = ClientConfig::from_toml("[breaker]\nclock = \"tokio\"\n").unwrap();
    assert_eq!(config.breaker.clock, BreakerClock::Tokio);
    let server = TestServer::builder().http1().start().await.unwrap();
    server
        .script_path("/flaky", "503,503,503,503,503,200")
        .unwrap();
    let client = flext_api::ClientBuilder::from_config(config)
        .base_url(&server.url("/"))
        .no_retry()
        .build()
        .unwrap();
    for _ in 0..5 {
        assert_eq!(client.get("flaky").send().await.unwrap().status(), 503);
    }
    let err = client.get("flaky").send().await.unwrap_err();
    assert!(err.is_circuit_open(), "{err:?}");
    assert_eq!(server.stats().requests_for_path("/flaky"), 5);
    tokio::time::advance(Duration::from_secs(34)).await;
    // Past the open time (30 s, ±10%) in paused time: the probe goes through and closes it.
    assert_eq!(client.get("flaky").send().await.unwrap().status(), 200);
    assert_eq!(server.stats().requests_for_path("/flaky"), 6);
}

#[tokio::test]
async fn tls_with_a_custom_ca_negotiates_http2() {
    let server = TestServer::builder().tls().start().await.unwrap();
    let pem = server.ca_pem().unwrap().as_bytes().to_vec();
    let client = Client::builder()
        .add_root_certificate_pem(&pem)
        .build()
        .unwrap();
    let res = client.get(server.url("/tls")).send().await.unwrap();
    assert_eq!(res.version(), Version::HTTP_2);
    assert_eq!(res.text().await.unwrap(), "ok");

    // Without the CA: a TLS error, which is also a connect error.
    let untrusting = Client::builder().no_retry().build().unwrap();
    let err = untrusting.get(server.url("/tls")).send().await.unwrap_err();
    assert!(err.is_tls() && err.is_connect(), "{err:?}");
}

#[tokio::test]
async fn json_round_trip() {
    #[derive(serde::Serialize)]
    struct Order {
        sku: &'static str,
        qty: u32,
    }
    let server = TestServer::start().await.unwrap();
    let client = client_for(&server).await;
    let echo: Echoed = client
        .put("orders/1")
        .header(SCRIPT_HEADER, "echo")
        .json(&Order { sku: "A-1", qty: 2 })
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo.method, "PUT");
    assert_eq!(echo.body, r#"{"sku":"A-1","qty":2}"#);
    assert_eq!(echo.header("content-type"), Some("application/json"));
    assert_eq!(
        echo.header("user-agent"),
        Some(flext_api::DEFAULT_USER_AGENT)
    );
    // No subscriber in this test binary records the call's spans: no trace is made up.
    assert_eq!(echo.header("traceparent"), None);
}

#[tokio::test]
async fn per_request_timeout() {
    let server = TestServer::start().await.unwrap();
    let client = client_for(&server).await;
    let start = Instant::now();
    let err = client
        .get("slow")
        .header(SCRIPT_HEADER, "200;delay=3s")
        .timeout(Duration::from_millis(200))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.kind_label(), "timeout");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn attempt_timeouts_are_retried_within_the_total() {
    let server = TestServer::start().await.unwrap();
    let client = Client::builder()
        .base_url(&server.url("/"))
        .retry(fast_retries())
        .timeout(Duration::from_secs(5))
        .attempt_timeout(Duration::from_millis(200))
        .no_breaker()
        .build()
        .unwrap();
    let res = client
        .get("slow")
        .header(ID_HEADER, "attempt-timeout")
        .header(SCRIPT_HEADER, "200;delay=3s,200")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.attempts(), 2);
    assert_eq!(
        res.retry_info().unwrap().retries()[0].failure().label(),
        "timeout"
    );
}

#[tokio::test]
async fn each_error_kind_from_its_real_cause() {
    let server = TestServer::start().await.unwrap();
    let client = Client::builder()
        .base_url(&server.url("/"))
        .retry(fast_retries())
        .max_response_body(10)
        .build()
        .unwrap();

    let res = client
        .get("missing")
        .header(SCRIPT_HEADER, "404")
        .send()
        .await
        .unwrap();
    let err = res.error_for_status().unwrap_err();
    assert_eq!(
        (err.is_status(), err.status()),
        (true, Some(StatusCode::NOT_FOUND))
    );

    let res = client.get("text").send().await.unwrap();
    let err = res.json::<serde_json::Value>().await.unwrap_err();
    assert!(err.is_decode(), "{err:?}");

    let res = client
        .get("big")
        .header(SCRIPT_HEADER, "200;body=100")
        .send()
        .await
        .unwrap();
    let err = res.bytes().await.unwrap_err();
    assert!(err.is_body(), "{err:?}");

    let err = client
        .get("x")
        .header("bad header", "v")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_request(), "{err:?}");

    let err = Client::builder()
        .base_url("ftp://nope")
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), Some("base_url"));

    // A closed port: connect refused, never sent, retried then reported as connect.
    let closed = TestServer::start().await.unwrap();
    let url = closed.url("/gone");
    closed.stop().await;
    let err = client.get(&url).send().await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert!(
        err.retry_info().is_some_and(|i| i.attempts() == 4),
        "{:?}",
        err.retry_info()
    );

    // An empty budget: the first retry is refused and the error says so.
    let stingy = Client::builder()
        .retry(RetrySettings {
            budget_ratio: 0.0,
            budget_min_per_second: 0,
            ..fast_retries()
        })
        .build()
        .unwrap();
    let err = stingy.get(&url).send().await.unwrap_err();
    assert!(err.is_budget_exhausted() && err.is_connect(), "{err:?}");
}

#[tokio::test]
async fn a_custom_layer_sees_every_attempt() {
    let server = TestServer::start().await.unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let client = Client::builder()
        .base_url(&server.url("/"))
        .retry(fast_retries())
        .layer(tower::layer::layer_fn(
            move |inner: flext_api::AttemptService<flext_api::ResponseBody>| {
                let counter = counter.clone();
                inner.map_request(move |req: http::Request<AttemptBody>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    req
                })
            },
        ))
        .build()
        .unwrap();
    let res = client
        .get("p")
        .header(ID_HEADER, "plugin")
        .header(SCRIPT_HEADER, "503,503,200")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(seen.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn config_file_round_trip_builds_a_working_client() {
    let server = TestServer::start().await.unwrap();
    let text = format!(
        "base_url = \"{}\"\ntimeout = \"5s\"\nattempt_timeout = \"1s\"\n[retry]\nbackoff_base = \"1ms\"\nbackoff_max = \"2ms\"\n[breaker]\nwindow = \"2s\"\n",
        server.url("/")
    );
    let config = ClientConfig::from_toml(&text).unwrap();
    let again = ClientConfig::from_toml(&config.to_toml().unwrap()).unwrap();
    assert_eq!(again, config);
    let client = flext_api::ClientBuilder::from_config(config)
        .build()
        .unwrap();
    let res = client
        .get("c")
        .header(ID_HEADER, "config")
        .header(SCRIPT_HEADER, "503,200")
        .send()
        .await
        .unwrap();
    assert_eq!(res.attempts(), 2);
}

#[tokio::test]
async fn builder_validates_like_the_standard_handler() {
    let err = Client::builder()
        .timeout(Duration::from_secs(1))
        .attempt_timeout(Duration::from_secs(2))
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), Some("attempt_timeout"));
    let err = Client::builder()
        .breaker(BreakerSettings {
            window: Duration::from_secs(5),
            ..BreakerSettings::default()
        })
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), Some("breaker.window"));
    let err = Client::builder().max_retries(11).build().unwrap_err();
    assert_eq!(err.setting(), Some("retry.max_retries"));
    let err = Client::builder().bearer_auth("t").build().unwrap_err();
    assert_eq!(err.setting(), Some("credentials"));
}

#[tokio::test]
async fn credentials_go_to_the_base_origin_only_and_redirects_strip_them() {
    let server = TestServer::start().await.unwrap();
    let other = TestServer::start().await.unwrap();
    let client = Client::builder()
        .base_url(&server.url("/"))
        .bearer_auth("s3cr3t-token")
        .retry(fast_retries())
        .build()
        .unwrap();
    let echo: serde_json::Value = client
        .get("me")
        .header(SCRIPT_HEADER, "echo")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(echo.to_string().contains("Bearer s3cr3t-token"));

    let echo: serde_json::Value = client
        .get(other.url("/elsewhere"))
        .header(SCRIPT_HEADER, "echo")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!echo.to_string().contains("s3cr3t"), "{echo}");

    // A redirect from the base origin to another: followed, without the credential.
    let location = other.url("/landing");
    server
        .script_path("/hop", &format!("302;header=location:{location}"))
        .unwrap();
    other.script_path("/landing", "echo").unwrap();
    let res = client.get("hop").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let echo: serde_json::Value = res.json().await.unwrap();
    assert_eq!(echo["path"], "/landing");
    assert!(!echo.to_string().contains("s3cr3t"), "{echo}");
    assert_eq!(other.stats().requests_for_path("/landing"), 1);
}

#[tokio::test]
async fn the_stack_works_over_hyper_utils_legacy_client() {
    use hyper_util::client::legacy::Client as Legacy;
    use hyper_util::rt::TokioExecutor;

    let server = TestServer::start().await.unwrap();
    let legacy = Legacy::builder(TokioExecutor::new()).build_http::<AttemptBody>();
    let config = ClientConfig {
        retry: fast_retries(),
        ..ClientConfig::default()
    };
    let svc = stack(&config).unwrap().layer(legacy);
    let req = http::Request::get(server.uri("/legacy"))
        .header(ID_HEADER, "legacy")
        .header(SCRIPT_HEADER, "503,503,200")
        .body(Body::empty())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(server.stats().requests_for_id("legacy"), 3);
}

#[tokio::test]
async fn client_is_a_tower_service() {
    let server = TestServer::start().await.unwrap();
    let client = client_for(&server).await;
    let req = http::Request::get("/via-tower")
        .body(Body::empty())
        .unwrap();
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn redirects_resolve_relative_locations_and_stop_at_the_limit() {
    let server = TestServer::start().await.unwrap();
    server.script_path("/dir/target", "echo").unwrap();
    // /a -> /dir/b (absolute path) -> /dir/c (relative to /dir/) -> /dir/target (relative).
    server
        .script_path("/a", "302;header=location:/dir/b")
        .unwrap();
    server
        .script_path("/dir/b", "301;header=location:c?x=1")
        .unwrap();
    server
        .script_path("/dir/c", "308;header=location:target")
        .unwrap();

    let client = client_for(&server).await;
    let echo: serde_json::Value = client.get("a").send().await.unwrap().json().await.unwrap();
    assert_eq!(echo["path"], "/dir/target");
    assert_eq!(echo["method"], "GET");
    let hits = |path: &str| server.stats().requests_for_path(path);
    assert_eq!(hits("/a") + hits("/dir/b") + hits("/dir/c"), 3);

    // Two redirects allowed: the third is returned as it is, with its Location.
    let limited = Client::builder()
        .base_url(&server.url("/"))
        .max_redirects(2)
        .build()
        .unwrap();
    let res = limited.get("a").send().await.unwrap();
    assert_eq!(res.status(), 308);
    assert_eq!(res.headers()["location"], "target");
    assert_eq!(
        hits("/dir/target"),
        1,
        "the limited client never reached it"
    );

    // A streamed body cannot be sent again: the 307 comes back instead of a second send.
    server
        .script_path("/keep", "307;header=location:/dir/target")
        .unwrap();
    let stream = Body::wrap(http_body_util::Full::new(bytes::Bytes::from_static(
        b"streamed",
    )));
    let res = client.post("keep").body(stream).send().await.unwrap();
    assert_eq!(res.status(), 307);
    assert_eq!(hits("/keep"), 1);
    assert_eq!(hits("/dir/target"), 1);
}

#[tokio::test]
async fn redirects_keep_or_change_the_method_as_rfc_9110_says() {
    let server = TestServer::start().await.unwrap();
    let client = client_for(&server).await;
    let target = server.url("/target");
    server.script_path("/target", "echo").unwrap();
    server
        .script_path("/r307", &format!("307;header=location:{target}"))
        .unwrap();
    server
        .script_path("/r303", &format!("303;header=location:{target}"))
        .unwrap();

    // The method and body the echo target saw after following the redirect at `path`.
    let followed = |path: &'static str, body: &'static str| {
        let client = client.clone();
        async move {
            let echo: serde_json::Value = client
                .post(path)
                .body(body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (
                echo["method"].as_str().map(str::to_owned),
                echo["body"].as_str().map(str::to_owned),
            )
        }
    };
    // 307 keeps the method and replays the in-memory body.
    assert_eq!(
        followed("r307", "payload-307").await,
        (Some("POST".to_owned()), Some("payload-307".to_owned()))
    );
    // 303 turns it into a GET without a body.
    assert_eq!(
        followed("r303", "payload-303").await,
        (Some("GET".to_owned()), Some(String::new()))
    );

    // Following can be turned off.
    let no_follow = Client::builder()
        .base_url(&server.url("/"))
        .max_redirects(0)
        .build()
        .unwrap();
    assert_eq!(no_follow.get("r303").send().await.unwrap().status(), 303);
}
