//! The facade's less travelled paths over real sockets: every credential and protocol
//! setting, streamed bodies, request and response helpers, each error kind's label and
//! message, health and metrics with retries and breakers, and what `Debug` shows.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use flext_api::auth::{ClientCredentials, Token, provider_fn};
use flext_api::core::{BoxError, Origin};
use flext_api::{
    AttemptBody, AttemptService, Body, Client, ClientBuilder, ClientConfig, PoolSettings,
    ResponseBody, RetrySettings, TraceSettings, stack,
};
use flext_testkit::{ID_HEADER, SCRIPT_HEADER, TestServer};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use tower::{ServiceExt, service_fn};

const MARK: &str = "s3cr3t";

fn fast_retries() -> RetrySettings {
    RetrySettings {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(2),
        ..RetrySettings::default()
    }
}

fn builder_for(server: &TestServer) -> ClientBuilder {
    Client::builder()
        .base_url(&server.url("/"))
        .retry(fast_retries())
}

fn origin(server: &TestServer) -> Origin {
    Origin::from_uri(&server.uri("/")).unwrap()
}

/// The JSON the testkit's `echo` answered with.
async fn echo(res: flext_api::Response) -> serde_json::Value {
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

fn header(echo: &serde_json::Value, name: &str) -> Option<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pair| pair[0] == name)
        .map(|pair| pair[1].as_str().unwrap().to_owned())
}

#[test]
fn debug_of_builders_clients_and_requests_shows_no_secret() {
    let builder = Client::builder()
        .base_url(&format!("http://user:pw-{MARK}@127.0.0.1:9/v1/"))
        .bearer_auth(&format!("tok-{MARK}"))
        .default_header("x-team", "core");
    assert_eq!(
        builder.config().base_url.as_deref(),
        Some(&*format!("http://user:pw-{MARK}@127.0.0.1:9/v1/"))
    );
    let text = format!("{builder:?}");
    assert!(!text.contains(MARK), "{text}");
    assert!(
        text.contains("REDACTED@127.0.0.1:9/v1/") && text.contains("credential: true"),
        "{text}"
    );

    let client = builder.build().unwrap();
    let text = format!("{client:?}");
    assert!(!text.contains(MARK), "{text}");
    assert!(
        text.contains("base_url: Some(http://127.0.0.1:9/v1/)")
            && text.contains("Stack { retry: true, breaker: true, auth: true, trace: true"),
        "{text}"
    );

    let request = client.get(format!("items?token=q-{MARK}"));
    assert_eq!(
        format!("{request:?}"),
        r#"RequestBuilder { method: GET, path: "/v1/items", .. }"#
    );
    let bad = client.get("x").header("bad header", "v");
    assert!(
        format!("{bad:?}").starts_with("RequestBuilder(flext_api::Error { kind: Request("),
        "{bad:?}"
    );

    assert_eq!(
        format!("{:?}", Client::default()),
        format!("{:?}", ClientBuilder::default().build().unwrap())
    );
    assert!(format!("{:?}", Client::default()).contains("base_url: None"));
}

#[test]
fn invalid_credentials_are_builder_errors_naming_the_setting() {
    for (builder, setting) in [
        (Client::builder().bearer_auth("two words"), "bearer_auth"),
        (Client::builder().basic_auth("a:b", "pw"), "basic_auth"),
        (Client::builder().api_key("Host", "k"), "api_key"),
    ] {
        let err = builder
            .base_url("https://api.example.com/")
            .build()
            .unwrap_err();
        assert!(err.is_builder(), "{err:?}");
        assert_eq!(err.setting(), Some(setting));
        assert_eq!(err.kind_label(), "builder");
        // The cause is the auth crate's typed error.
        let source = std::error::Error::source(&err).expect("a source");
        let auth = source.downcast_ref::<flext_api::auth::Error>().unwrap();
        assert!(auth.is_invalid_credential(), "{auth:?}");
        assert!(
            err.to_string()
                .starts_with(&format!("invalid setting `{setting}`: "))
        );
    }
    // The first error wins.
    let err = Client::builder()
        .bearer_auth("")
        .basic_auth("a:b", "pw")
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), Some("bearer_auth"));
}

#[tokio::test]
async fn basic_and_api_key_credentials_reach_the_server() {
    let server = TestServer::start().await.unwrap();
    let basic = builder_for(&server)
        .basic_auth("Aladdin", "open sesame")
        .build()
        .unwrap();
    let seen = echo(
        basic
            .get("b")
            .header(SCRIPT_HEADER, "echo")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        header(&seen, "authorization").as_deref(),
        Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
    );

    let keyed = builder_for(&server)
        .api_key("X-Api-Key", &format!("k-{MARK}"))
        .build()
        .unwrap();
    let seen = echo(
        keyed
            .get("k")
            .header(SCRIPT_HEADER, "echo")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(header(&seen, "x-api-key"), Some(format!("k-{MARK}")));
    assert_eq!(header(&seen, "authorization"), None);
}

#[tokio::test]
async fn provider_tokens_go_to_the_base_and_the_extra_auth_origins_only() {
    let api = TestServer::start().await.unwrap();
    let extra = TestServer::start().await.unwrap();
    let other = TestServer::start().await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let client = builder_for(&api)
        .credential_provider(provider_fn(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                Ok::<_, BoxError>(
                    Token::new(format!("tok-{MARK}-{n}")).expires_in(Duration::from_secs(600)),
                )
            }
        }))
        .auth_origin(origin(&extra))
        .build()
        .unwrap();
    for (server, expected) in [
        (&api, Some(format!("Bearer tok-{MARK}-1"))),
        (&extra, Some(format!("Bearer tok-{MARK}-1"))),
        (&other, None),
    ] {
        let res = client
            .get(server.url("/who"))
            .header(SCRIPT_HEADER, "echo")
            .send()
            .await
            .unwrap();
        assert_eq!(header(&echo(res).await, "authorization"), expected);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn oauth2_client_credentials_tokens_are_attached() {
    let server = TestServer::start().await.unwrap();
    let token_requests = Arc::new(AtomicUsize::new(0));
    let counter = token_requests.clone();
    let endpoint = service_fn(move |_req: Request<Full<Bytes>>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            let body = format!(
                r#"{{"access_token":"at-{MARK}","token_type":"Bearer","expires_in":3600}}"#
            );
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
        }
    });
    let credentials =
        ClientCredentials::builder("https://auth.example.com/token", "cid", "client-secret")
            .build(endpoint)
            .unwrap();
    let client = builder_for(&server)
        .oauth2_client_credentials(credentials)
        .build()
        .unwrap();
    for _ in 0..2 {
        let res = client
            .get("o")
            .header(SCRIPT_HEADER, "echo")
            .send()
            .await
            .unwrap();
        assert_eq!(
            header(&echo(res).await, "authorization"),
            Some(format!("Bearer at-{MARK}"))
        );
    }
    assert_eq!(token_requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn credentials_over_plain_http_to_a_remote_host_need_the_opt_in() {
    let server = TestServer::start().await.unwrap();
    // 0.0.0.0 reaches the loopback listener on Linux, but is not a loopback name.
    let remote = format!("http://0.0.0.0:{}/", server.addr().port());
    let remote_origin: Origin = remote.parse().unwrap();
    let refusing = Client::builder()
        .bearer_auth(&format!("tok-{MARK}"))
        .auth_origin(remote_origin.clone())
        .no_retry()
        .build()
        .unwrap();
    let err = refusing
        .get(format!("{remote}refused"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_auth(), "{err:?}");
    assert_eq!(err.kind_label(), "auth");
    assert_eq!(
        err.url().map(ToString::to_string),
        Some(format!("{remote}refused"))
    );
    assert_eq!(server.stats().requests, 0);

    let allowing = Client::builder()
        .bearer_auth(&format!("tok-{MARK}"))
        .auth_origin(remote_origin)
        .allow_plain_http_credentials(true)
        .build()
        .unwrap();
    let res = allowing
        .get(format!("{remote}allowed"))
        .header(SCRIPT_HEADER, "echo")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&echo(res).await, "authorization"),
        Some(format!("Bearer tok-{MARK}"))
    );
}

#[tokio::test]
async fn protocol_choices_are_honoured() {
    let tls = TestServer::builder().tls().start().await.unwrap();
    let pem = tls.ca_pem().unwrap().as_bytes().to_vec();
    let h1 = Client::builder()
        .add_root_certificate_pem(&pem)
        .http1_only()
        .build()
        .unwrap();
    let res = h1.get(tls.url("/h1")).send().await.unwrap();
    assert_eq!(res.version(), Version::HTTP_11);

    let plain = TestServer::start().await.unwrap();
    let h2c = Client::builder().http2_prior_knowledge().build().unwrap();
    let res = h2c.get(plain.url("/h2c")).send().await.unwrap();
    assert_eq!(res.version(), Version::HTTP_2);
    assert_eq!(res.text().await.unwrap(), "ok");
    let health = h2c.health();
    let o = health
        .origins
        .iter()
        .find(|o| o.origin == origin(&plain).to_string())
        .unwrap();
    assert_eq!(
        (o.protocol, o.http2_connections, o.connections_opened),
        (Some("http2"), 1, 1)
    );

    // Any certificate, for development: no CA needed.
    let trusting = Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let res = trusting.get(tls.url("/any")).send().await.unwrap();
    assert_eq!(res.version(), Version::HTTP_2);

    // Without it, the handshake fails before ALPN: the origin's protocol is unknown.
    let strict = Client::builder().no_retry().build().unwrap();
    let err = strict.get(tls.url("/strict")).send().await.unwrap_err();
    assert!(err.is_tls(), "{err:?}");
    assert_eq!(err.kind_label(), "tls");
    let o = strict.health().origins.pop().unwrap();
    assert_eq!(o.protocol, Some("unknown"));
}

#[tokio::test]
async fn ca_certificate_files_are_read_at_build() {
    let tls = TestServer::builder().tls().start().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("flext-api-edges");
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join(format!("ca-{}.pem", tls.addr().port()));
    std::fs::write(&good, tls.ca_pem().unwrap()).unwrap();
    let bad = dir.join(format!("not-a-ca-{}.pem", tls.addr().port()));
    std::fs::write(
        &bad,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )
    .unwrap();

    let with = |path: &std::path::Path| {
        ClientBuilder::from_config(ClientConfig {
            ca_certs: vec![path.to_path_buf()],
            ..ClientConfig::default()
        })
        .build()
    };
    let client = with(&good).unwrap();
    let res = client.get(tls.url("/file-ca")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let err = with(&bad).unwrap_err();
    assert_eq!(err.setting(), Some("ca_certs"));
    let err = with(&dir.join("missing.pem")).unwrap_err();
    assert_eq!(err.setting(), Some("ca_certs"));
    assert!(err.to_string().contains("cannot read"), "{err}");
    let _ = std::fs::remove_file(good);
    let _ = std::fs::remove_file(bad);
}

#[tokio::test(start_paused = true)]
async fn pool_trace_and_timeout_settings_are_applied() {
    let server = TestServer::start().await.unwrap();
    let client = builder_for(&server)
        .pool(PoolSettings {
            max_connections_per_origin: 1,
            ..PoolSettings::default()
        })
        .trace(TraceSettings {
            enabled: false,
            ..TraceSettings::default()
        })
        .connect_timeout(Duration::from_secs(2))
        .http1_only()
        .build()
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let req = client
            .get("one-at-a-time")
            .header(SCRIPT_HEADER, "200;delay=100ms");
        tasks.spawn(async move { req.send().await?.text().await });
    }
    while let Some(done) = tasks.join_next().await {
        assert_eq!(done.unwrap().unwrap(), "ok");
    }
    let stats = server.stats();
    assert_eq!((stats.max_connections_open, stats.requests), (1, 3));
    // Tracing off: no request counts, no request metrics.
    assert!(client.health().requests.is_none());
    assert!(client.stack().metrics().is_none());
    assert!(
        !client
            .metrics_text()
            .contains("http_client_request_duration")
    );
    assert_eq!(client.pool_metrics().origins[0].counters.opened_http1, 1);
}

#[tokio::test]
async fn patch_delete_and_head_send_their_methods() {
    let server = TestServer::start().await.unwrap();
    let client = builder_for(&server).build().unwrap();
    for (req, method) in [
        (client.patch("r"), "PATCH"),
        (client.delete("r"), "DELETE"),
        (client.request(Method::OPTIONS, "r"), "OPTIONS"),
    ] {
        let seen = echo(req.header(SCRIPT_HEADER, "echo").send().await.unwrap()).await;
        assert_eq!(seen["method"], method);
    }
    let res = client.head("r").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap().len(), 0);
    assert_eq!(server.stats().requests, 4);
}

#[derive(Clone)]
struct Tag(&'static str);

#[tokio::test]
async fn streamed_bodies_retry_overrides_and_extensions() {
    let server = TestServer::start().await.unwrap();
    // A custom layer turns the request's `Tag` extension into a header the server sees.
    let client = builder_for(&server)
        .layer(tower::layer::layer_fn(
            |inner: AttemptService<ResponseBody>| {
                inner.map_request(|mut req: Request<AttemptBody>| {
                    if let Some(Tag(tag)) = req.extensions().get::<Tag>().cloned() {
                        req.headers_mut()
                            .insert("x-tag", HeaderValue::from_static(tag));
                    }
                    req
                })
            },
        ))
        .build()
        .unwrap();

    let streamed = Body::wrap(Full::new(Bytes::from_static(b"streamed payload")));
    assert_eq!(streamed.as_bytes(), None);
    assert_eq!(format!("{streamed:?}"), "Body(stream)");
    // A POST is retried when told it is safe, and its streamed body is sent again.
    let res = client
        .post("upload")
        .header(ID_HEADER, "stream")
        .header(SCRIPT_HEADER, "503,echo")
        .body_stream(streamed)
        .retry_non_idempotent()
        .extension(Tag("tagged"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.attempts(), 2);
    let seen = echo(res).await;
    assert_eq!(seen["body"], "streamed payload");
    assert_eq!(header(&seen, "x-tag").as_deref(), Some("tagged"));
    assert_eq!(server.stats().requests_for_id("stream"), 2);

    // A GET told not to retry is not.
    let res = client
        .get("once")
        .header(ID_HEADER, "no-retry")
        .header(SCRIPT_HEADER, "503,200")
        .no_retry()
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.stats().requests_for_id("no-retry"), 1);

    // In-memory bodies from a String and from static bytes.
    let text = Body::from(String::from("from a string"));
    assert_eq!(format!("{text:?}"), "Body(13 bytes)");
    for (body, expected) in [
        (text, "from a string"),
        (Body::from(&b"raw bytes"[..]), "raw bytes"),
    ] {
        let seen = echo(
            client
                .put("mem")
                .header(SCRIPT_HEADER, "echo")
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(seen["body"], expected);
    }
}

#[tokio::test]
async fn response_helpers() {
    let server = TestServer::start().await.unwrap();
    let client = builder_for(&server)
        .max_response_body(1000)
        .build()
        .unwrap();

    let res = client
        .get("retried?x=1")
        .header(ID_HEADER, "helpers")
        .header(SCRIPT_HEADER, "503,200")
        .send()
        .await
        .unwrap();
    assert_eq!(res.url().to_string(), server.url("/retried?x=1"));
    assert_eq!(
        res.extensions()
            .get::<flext_api::retry::RetryInfo>()
            .map(|i| i.attempts()),
        Some(2)
    );
    assert_eq!(
        format!("{res:?}"),
        "Response { status: 200, version: HTTP/1.1, attempts: 2, .. }"
    );
    let res = res.error_for_status().unwrap();
    let http = res.into_http();
    assert_eq!(http.status(), StatusCode::OK);
    let body = http.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "ok");

    // A body in several chunks, read whole; then the same streamed chunk by chunk.
    let res = client
        .get("chunks")
        .header(SCRIPT_HEADER, "200;body=1000;chunks=4")
        .send()
        .await
        .unwrap();
    let whole = res.bytes().await.unwrap();
    assert_eq!(whole.len(), 1000);
    assert!(whole.starts_with(b"abcdefghijklmnopqrstuvwxyzabc"));
    let mut res = client
        .get("chunks")
        .header(SCRIPT_HEADER, "200;body=1000;chunks=4")
        .send()
        .await
        .unwrap();
    let mut read = Vec::new();
    while let Some(chunk) = res.chunk().await.unwrap() {
        read.extend_from_slice(&chunk);
    }
    assert_eq!(read, whole);
    assert_eq!(res.chunk().await.unwrap(), None);

    let res = client.get("body").send().await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "ok");
}

#[tokio::test]
async fn body_errors_say_what_happened_and_where() {
    let server = TestServer::start().await.unwrap();
    let client = builder_for(&server).max_response_body(10).build().unwrap();

    // No content-length: the limit is found while reading.
    let res = client
        .get("streamed")
        .header(SCRIPT_HEADER, "200;body=100;chunks=4")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers().get(http::header::CONTENT_LENGTH), None);
    let err = res.bytes().await.unwrap_err();
    assert!(err.is_body(), "{err:?}");
    assert_eq!(err.kind_label(), "body");
    assert_eq!(
        err.to_string(),
        format!(
            "response body larger than the limit of 10 bytes for {}",
            server.url("/streamed")
        )
    );

    // A body the server cuts short.
    let mut res = client
        .get("cut")
        .header(SCRIPT_HEADER, "truncated")
        .send()
        .await
        .unwrap();
    let mut err = None;
    while err.is_none() {
        match res.chunk().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("a truncated body ended cleanly"),
            Err(e) => err = Some(e),
        }
    }
    let err = err.unwrap();
    assert!(err.is_body(), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("cannot read the response body for {}", server.url("/cut"))
    );
    assert!(std::error::Error::source(&err).is_some());

    // A body that is not the JSON asked for.
    let res = client.get("text").send().await.unwrap();
    let err = res.json::<serde_json::Value>().await.unwrap_err();
    assert_eq!(err.kind_label(), "decode");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot decode the response body: expected a json content type, got \"text/plain\" for {}",
            server.url("/text")
        )
    );

    // Status and request errors have their labels too.
    let res = client
        .get("missing")
        .header(SCRIPT_HEADER, "404")
        .send()
        .await
        .unwrap();
    let err = res.error_for_status().unwrap_err();
    assert_eq!((err.kind_label(), err.setting()), ("status", None));
    let err = client
        .get("x")
        .header("bad header", "v")
        .send()
        .await
        .unwrap_err();
    assert_eq!((err.kind_label(), err.status()), ("request", None));
    assert!(!err.is_connect() && !err.is_timeout());
}

#[tokio::test(start_paused = true)]
async fn a_total_timeout_while_waiting_for_a_token_says_so() {
    let server = TestServer::start().await.unwrap();
    let client = builder_for(&server)
        .timeout(Duration::from_secs(1))
        .attempt_timeout(Duration::from_millis(500))
        .credential_provider(provider_fn(|| async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok::<_, BoxError>(Token::new(format!("late-{MARK}")))
        }))
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let err = client.get("slow-token").send().await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.kind_label(), "timeout");
    assert_eq!(
        err.to_string(),
        format!(
            "request timed out after 1s for {}",
            server.url("/slow-token")
        )
    );
    let cause = std::error::Error::source(&err).unwrap();
    assert_eq!(cause.to_string(), "total timeout of 1s elapsed");
    assert_eq!(server.stats().requests, 0);
}

/// A custom layer that fails an attempt with the `io::Error` named by `x-fail`.
fn failing_client(server: &TestServer) -> Client {
    builder_for(server)
        .layer(tower::layer::layer_fn(
            |inner: AttemptService<ResponseBody>| {
                service_fn(move |req: Request<AttemptBody>| {
                    let inner = inner.clone();
                    async move {
                        let kind = match req.headers().get("x-fail").map(HeaderValue::as_bytes) {
                            None => return inner.oneshot(req).await,
                            Some(b"timeout") => io::ErrorKind::TimedOut,
                            Some(b"refused") => io::ErrorKind::ConnectionRefused,
                            Some(b"reset") => io::ErrorKind::ConnectionReset,
                            Some(_) => io::ErrorKind::PermissionDenied,
                        };
                        Err::<Response<ResponseBody>, BoxError>(Box::new(io::Error::from(kind)))
                    }
                })
            },
        ))
        .build()
        .unwrap()
}

#[tokio::test]
async fn errors_without_a_transport_error_are_labelled_by_their_io_kind() {
    let server = TestServer::start().await.unwrap();
    let client = failing_client(&server);
    for (fail, label) in [
        ("timeout", "timeout"),
        ("refused", "connect"),
        ("reset", "reset"),
        ("denied", "other"),
    ] {
        let err = client
            .get("plugin")
            .header("x-fail", fail)
            .no_retry()
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.kind_label(), label, "{err:?}");
        assert_eq!(err.is_timeout(), fail == "timeout");
        assert!(!err.is_connect(), "no transport error: {err:?}");
        assert_eq!(
            err.to_string(),
            format!("request failed ({label}) for {}", server.url("/plugin"))
        );
    }
    // Nothing reached the server, and a request without the header does.
    assert_eq!(server.stats().requests, 0);
    let res = client.get("plugin").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn health_and_metrics_report_retries_and_every_breaker_state() {
    let server = TestServer::start().await.unwrap();
    let client = builder_for(&server).build().unwrap();
    let res = client
        .get("flaky")
        .header(ID_HEADER, "health")
        .header(SCRIPT_HEADER, "503,503,200")
        .send()
        .await
        .unwrap();
    assert_eq!(res.attempts(), 3);

    let breakers = client.stack().breakers().unwrap();
    let forced: Origin = "http://forced.example:80".parse().unwrap();
    let disabled: Origin = "http://disabled.example:80".parse().unwrap();
    breakers.force_open(&forced);
    breakers.disable(&disabled);

    let health = client.health();
    let retry = health.retry.as_ref().unwrap();
    assert_eq!((retry.requests, retry.attempts, retry.retries), (1, 3, 2));
    let state = |o: &Origin| {
        health
            .origins
            .iter()
            .find(|h| h.origin == o.to_string())
            .map(|h| (h.breaker_state, h.protocol))
    };
    assert_eq!(
        state(&origin(&server)),
        Some((Some("closed"), Some("http1")))
    );
    // Origins only a breaker knows have no pool figures.
    assert_eq!(state(&forced), Some((Some("forced-open"), None)));
    assert_eq!(state(&disabled), Some((Some("disabled"), None)));

    let text = client.metrics_text();
    for line in [
        "# TYPE flext_retry_retries_total counter".to_owned(),
        "flext_retry_retries_total 2".to_owned(),
        "# TYPE flext_retry_budget_available gauge".to_owned(),
        "flext_retry_budget_exhausted_total 0".to_owned(),
        format!("flext_breaker_state{{origin=\"{}\"}} 0", origin(&server)),
        format!("flext_breaker_state{{origin=\"{forced}\"}} 3"),
        format!("flext_breaker_state{{origin=\"{disabled}\"}} 4"),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
    }

    // A forced-open breaker fails fast, with no time to wait for.
    let err = client
        .get("http://forced.example/x")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_circuit_open(), "{err:?}");
    assert_eq!(err.circuit_retry_after(), None);
}

#[tokio::test]
async fn a_cloned_stack_works_over_any_inner_service() {
    let config = ClientConfig {
        retry: fast_retries(),
        ..ClientConfig::default()
    };
    let layers = stack::<Full<Bytes>>(&config).unwrap();
    let copy = layers.clone();
    assert_eq!(
        format!("{copy:?}"),
        "Stack { retry: true, breaker: true, auth: false, trace: true, custom_layers: 0 }"
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let inner = service_fn(move |_req: Request<AttemptBody>| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut res = Response::new(Full::new(Bytes::from_static(b"inner")));
            if n == 0 {
                *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            }
            Ok::<_, Infallible>(res)
        }
    });
    let svc = copy.layer(inner);
    let req = Request::get("http://inner.test/x")
        .body(Body::empty())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // The clone shares the original's retry state.
    assert_eq!(layers.retry().unwrap().metrics().retries, 1);
}
