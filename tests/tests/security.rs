//! Security (issue 11): no secret in any log line at TRACE, in any span attribute, nor in the
//! `Debug` or `Display` output of anything a user can print; credentials only to the origins
//! they are scoped to, across redirects too.
//!
//! Every scenario runs real requests through `flext_api::Client` against flext-testkit
//! servers on loopback. All `tracing` output of the test binary goes, at TRACE, to a `fmt`
//! layer writing into a buffer and to a layer that records every span attribute and event
//! field. Each test ends by scanning everything captured so far (plus the `Debug` and
//! `Display` text it made) for every secret of the file, and by checking that the capture
//! holds what the scenario should have logged, so that an empty capture cannot pass.

use std::fmt::{self, Write as _};
use std::path::Path;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use flext_api::auth::{
    AuthLayer, CachedProvider, ClientAuth, ClientCredentials, Credential, Token,
};
use flext_api::trace::TraceLayer;
use flext_api::{Body, Client, ClientBuilder, RetrySettings};
use flext_testkit::{SCRIPT_HEADER, TestServer};
use http::header::{AUTHORIZATION, COOKIE, HeaderName};
use http_body_util::Full;
use serde_json::Value;
use tower::ServiceBuilder;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

// ---- the secrets -------------------------------------------------------------------------

/// Every secret contains this, so a leak of any of them is easy to spot in a failure.
const MARK: &str = "S3CRET";
const BEARER: &str = "bearer-S3CRET-1";
const BASIC_USER: &str = "ann";
const BASIC_PASSWORD: &str = "basic-S3CRET-2";
const API_KEY: &str = "apikey-S3CRET-3";
const QUERY_KEY: &str = "querykey-S3CRET-4";
const CLIENT_ID: &str = "flext-client";
const CLIENT_SECRET: &str = "client-S3CRET-5";
const ACCESS_TOKEN: &str = "access-S3CRET-6";
const USERINFO_PASSWORD: &str = "userinfo-S3CRET-7";
const AMZ_SIGNATURE: &str = "amzsig-S3CRET-8";
const SIG: &str = "sig-S3CRET-9";
const PER_REQUEST_BEARER: &str = "perrequest-S3CRET-10";
const COOKIE_VALUE: &str = "session=cookie-S3CRET-11";
const API_KEY_HEADER: &str = "x-api-key";

/// Every secret, with the encodings that hide [`MARK`] (Basic credentials are base64).
fn secrets() -> Vec<String> {
    let mut all: Vec<String> = [
        MARK,
        BEARER,
        BASIC_PASSWORD,
        API_KEY,
        QUERY_KEY,
        CLIENT_SECRET,
        ACCESS_TOKEN,
        USERINFO_PASSWORD,
        AMZ_SIGNATURE,
        SIG,
        PER_REQUEST_BEARER,
        COOKIE_VALUE,
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    all.push(STANDARD.encode(format!("{BASIC_USER}:{BASIC_PASSWORD}")));
    all.push(STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}")));
    all.push(STANDARD.encode(format!("{BASIC_USER}:{USERINFO_PASSWORD}")));
    all
}

// ---- the capture ---------------------------------------------------------------------------

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The `fmt` layer's output: log lines as a user's subscriber would write them.
static LOG_LINES: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// Every span attribute (at creation and recorded later) and every event field, raw.
static FIELDS: Mutex<String> = Mutex::new(String::new());

/// Writes each field as `name=value`, strings raw (not escaped), everything else as `Debug`.
struct FieldWriter<'a>(&'a mut String);

impl Visit for FieldWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = writeln!(self.0, "{}={value}", field.name());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let _ = writeln!(self.0, "{}={value:?}", field.name());
    }
}

/// Records every span attribute and event field, whatever a formatter would show of them.
struct FieldCapture;

impl<S> Layer<S> for FieldCapture
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        let mut out = lock(&FIELDS);
        let _ = writeln!(out, "span {}", attrs.metadata().name());
        attrs.record(&mut FieldWriter(&mut out));
    }

    fn on_record(&self, _span: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        values.record(&mut FieldWriter(&mut lock(&FIELDS)));
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut out = lock(&FIELDS);
        let _ = writeln!(out, "event {}", event.metadata().target());
        event.record(&mut FieldWriter(&mut out));
    }
}

/// Installs the capture for the whole test binary, once, at TRACE.
fn capture() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(support::Capture(&LOG_LINES))
                    .with_ansi(false)
                    .with_span_events(FmtSpan::NEW | FmtSpan::CLOSE),
            )
            .with(FieldCapture)
            .with(tracing_subscriber::filter::LevelFilter::TRACE);
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
}

fn log_lines() -> String {
    String::from_utf8_lossy(&lock(&LOG_LINES)).into_owned()
}

fn fields() -> String {
    lock(&FIELDS).clone()
}

/// What a test printed with `Debug` and `Display`, scanned with the logs.
#[derive(Default)]
struct Printed(String);

impl Printed {
    fn debug(&mut self, what: &str, value: &dyn fmt::Debug) {
        let _ = writeln!(self.0, "{what}: {value:?}");
    }

    fn error(&mut self, what: &str, e: &(dyn std::error::Error + 'static)) {
        let _ = writeln!(self.0, "{what}: {e} / {e:?}");
        let mut source = e.source();
        while let Some(s) = source {
            let _ = writeln!(self.0, "  caused by: {s} / {s:?}");
            source = s.source();
        }
    }
}

/// Fails when any secret shows in the logs, the recorded fields, or `printed`; and when the
/// capture lacks any of `markers` (what the test's requests must have logged).
fn assert_no_secret(printed: &Printed, markers: &[&str]) {
    let logs = log_lines();
    let fields = fields();
    for (name, text) in [
        ("log lines", &logs),
        ("span and event fields", &fields),
        ("Debug/Display output", &printed.0),
    ] {
        for secret in secrets() {
            if let Some(at) = text.find(&secret) {
                let from = text[..at].rfind('\n').map_or(0, |i| i + 1);
                let to = text[at..].find('\n').map_or(text.len(), |i| at + i);
                panic!("a secret ({secret}) is in the {name}: {}", &text[from..to]);
            }
        }
    }
    assert!(!printed.0.is_empty(), "nothing was printed");
    for marker in markers {
        assert!(
            logs.contains(marker) && fields.contains(marker),
            "the capture lacks {marker:?}: the scan saw nothing of the scenario"
        );
    }
}

// ---- the scenarios' pieces -------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Proto {
    Http1,
    H2c,
}

async fn server(proto: Proto) -> TestServer {
    let builder = TestServer::builder();
    let builder = match proto {
        Proto::Http1 => builder.http1(),
        Proto::H2c => builder.h2c(),
    };
    builder.start().await.unwrap()
}

fn fast_retries() -> RetrySettings {
    RetrySettings {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        ..RetrySettings::default()
    }
}

/// A builder for `server`'s origin in `proto`, with an attempt span that records the
/// credential headers (so that their redaction is checked too).
fn builder(server: &TestServer, proto: Proto) -> ClientBuilder {
    let builder = Client::builder()
        .base_url(&server.url("/"))
        .retry(fast_retries())
        .layer(TraceLayer::attempt().record_request_headers([
            AUTHORIZATION,
            COOKIE,
            HeaderName::from_static(API_KEY_HEADER),
        ]));
    match proto {
        Proto::Http1 => builder.http1_only(),
        Proto::H2c => builder.http2_prior_knowledge(),
    }
}

/// The echo of `path` (relative to the client's base, or absolute): the JSON the testkit
/// returned, which describes the request as it arrived.
async fn echo(client: &Client, path: &str) -> Value {
    let res = client
        .get(path)
        .header(SCRIPT_HEADER, "echo")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

/// Every value of header `name` in an echo.
fn echoed(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pair| {
            pair[0]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .map(|pair| pair[1].as_str().unwrap().to_owned())
        .collect()
}

/// An echo that arrived at an origin the credentials are not scoped to: no secret at all.
fn assert_clean(echo: &Value, where_: &str) {
    let text = echo.to_string();
    for secret in secrets() {
        assert!(
            !text.contains(&secret),
            "{where_} received {secret}: {text}"
        );
    }
    assert!(echoed(echo, "authorization").is_empty(), "{where_}: {text}");
    assert!(echoed(echo, API_KEY_HEADER).is_empty(), "{where_}: {text}");
    assert!(echoed(echo, "cookie").is_empty(), "{where_}: {text}");
}

/// Installs on `from` a redirect `path` to `to_url`, for every method.
fn redirect(from: &TestServer, path: &str, to_url: &str) {
    from.script_path(path, &format!("302;header=location:{to_url}"))
        .unwrap();
}

/// A credential kind: its name, how the builder sets it, the header it arrives in at the
/// scoped origin, and that header's value.
type StaticCredential = (
    &'static str,
    fn(ClientBuilder) -> ClientBuilder,
    &'static str,
    String,
);

/// The credential kinds set on the client.
fn static_credentials() -> Vec<StaticCredential> {
    vec![
        (
            "bearer",
            |b| b.bearer_auth(BEARER),
            "authorization",
            format!("Bearer {BEARER}"),
        ),
        (
            "basic",
            |b| b.basic_auth(BASIC_USER, BASIC_PASSWORD),
            "authorization",
            format!(
                "Basic {}",
                STANDARD.encode(format!("{BASIC_USER}:{BASIC_PASSWORD}"))
            ),
        ),
        (
            "api key header",
            |b| b.api_key(API_KEY_HEADER, API_KEY),
            API_KEY_HEADER,
            API_KEY.to_string(),
        ),
    ]
}

/// `Debug` of everything a user can print about a client and its last response.
fn print_client(printed: &mut Printed, client: &Client) {
    printed.debug("client", client);
    printed.debug("stack", client.stack());
    printed.debug("health", &client.health());
    printed.debug("pool metrics", &client.pool_metrics());
    if let Some(m) = client.stack().metrics() {
        printed.debug("request metrics", &m.snapshot());
    }
    let _ = writeln!(printed.0, "{}", client.metrics_text());
}

// ---- the tests -------------------------------------------------------------------------------

/// Static credentials (bearer, Basic, API key header), over HTTP/1.1 and h2c: they reach the
/// scoped origin, not another origin asked directly, nor one reached by a redirect; a
/// redirect within the origin keeps them. Nothing of them is logged or printed.
#[tokio::test]
async fn static_credentials_go_only_to_their_origin_and_are_never_logged() {
    capture();
    let mut printed = Printed::default();
    for proto in [Proto::Http1, Proto::H2c] {
        for (kind, set, header, want) in static_credentials() {
            let api = server(proto).await;
            let other = server(proto).await;
            let base = builder(&api, proto);
            printed.debug("builder", &base);
            let builder = set(base);
            printed.debug("builder with credentials", &builder);
            printed.debug("config", builder.config());
            let client = builder.build().unwrap();

            // The scoped origin gets the credential, marked sensitive on the way.
            let at_api = echo(&client, "me").await;
            assert_eq!(
                echoed(&at_api, header),
                vec![want.clone()],
                "{kind} {proto:?}"
            );

            // Another origin, asked directly: nothing.
            assert_clean(&echo(&client, &other.url("/direct")).await, "direct");

            // A redirect to another origin: followed, without the credential.
            redirect(&api, "/hop", &other.url("/landing"));
            other.script_path("/landing", "echo").unwrap();
            let res = client.get("hop").send().await.unwrap();
            printed.debug("response", &res);
            assert_eq!(res.status(), 200);
            assert_clean(&res.json::<Value>().await.unwrap(), "redirect target");
            assert_eq!(other.stats().requests_for_path("/landing"), 1);

            // A redirect within the origin keeps it: the check above can see a credential.
            redirect(&api, "/hop-home", &api.url("/home"));
            api.script_path("/home", "echo").unwrap();
            let home: Value = client
                .get("hop-home")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(echoed(&home, header), vec![want], "{kind} {proto:?}");

            // A status error and a request error print no secret either.
            api.script_path("/fail", "500").unwrap();
            let res = client.get("fail").no_retry().send().await.unwrap();
            let err = res.error_for_status().unwrap_err();
            printed.error("status error", &err);
            let err = client
                .get("x")
                .header("bad name", "v")
                .send()
                .await
                .unwrap_err();
            printed.error("request error", &err);
            printed.debug("request builder", &client.get("me"));
            print_client(&mut printed, &client);
        }
    }
    assert_no_secret(
        &printed,
        &[
            "url.full",
            "http.request.headers",
            "REDACTED",
            "/landing",
            "/home",
        ],
    );
}

/// Credentials the caller sets on a request (`bearer_auth`, `basic_auth`, a `Cookie`) go
/// where the request goes, but a redirect to another origin drops them.
#[tokio::test]
async fn caller_set_credentials_are_dropped_by_a_cross_origin_redirect() {
    capture();
    let mut printed = Printed::default();
    for proto in [Proto::Http1, Proto::H2c] {
        let api = server(proto).await;
        let other = server(proto).await;
        let client = builder(&api, proto).build().unwrap();
        redirect(&api, "/hop", &other.url("/landing-caller"));
        other.script_path("/landing-caller", "echo").unwrap();
        // Two hops: to the other origin, then within it (where a filter that compares each
        // hop with the one before would let the caller's headers through again).
        redirect(&api, "/hop2", &other.url("/again"));
        redirect(&other, "/again", &other.url("/landing-caller"));
        for path in ["hop", "hop2"] {
            for request in [
                client.get(path).bearer_auth(PER_REQUEST_BEARER),
                client.get(path).basic_auth(BASIC_USER, BASIC_PASSWORD),
                client.get(path).header("cookie", COOKIE_VALUE),
            ] {
                printed.debug("request builder", &request);
                let res = request.send().await.unwrap();
                assert_clean(&res.json::<Value>().await.unwrap(), path);
            }
        }
        assert_eq!(other.stats().requests_for_path("/landing-caller"), 6);
        assert_eq!(other.stats().requests_for_path("/again"), 3);
        // Without a redirect the caller's credential arrives (the check above can fail).
        let echo: Value = client
            .get("me")
            .bearer_auth(PER_REQUEST_BEARER)
            .header(SCRIPT_HEADER, "echo")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            echoed(&echo, "authorization"),
            vec![format!("Bearer {PER_REQUEST_BEARER}")]
        );
    }
    assert_no_secret(&printed, &["url.full", "/landing-caller"]);
}

/// OAuth 2.0 client credentials: the client secret goes only to the token endpoint (here a
/// testkit echo behind a small adapter that plays the authorization server), the access
/// token only to the API's origin, never across a redirect, never to the token endpoint;
/// neither is logged, recorded in a span, or printed.
#[tokio::test]
async fn oauth2_secret_and_token_stay_scoped_and_unlogged() {
    capture();
    let mut printed = Printed::default();
    for client_auth in [ClientAuth::Basic, ClientAuth::Post] {
        let auth_server = server(Proto::Http1).await;
        auth_server.script_path("/oauth2/token", "echo").unwrap();
        let api = server(Proto::Http1).await;
        let other = server(Proto::Http1).await;

        // The token requests go through a flext client of their own (traced like any).
        let token_client = Client::builder().no_retry().build().unwrap();
        let token_http = ServiceBuilder::new()
            .map_request(|req: http::Request<Full<Bytes>>| req.map(Body::wrap))
            .and_then(move |res: flext_api::Response| async move {
                let echo: Value = res.json().await?;
                let basic = format!(
                    "Basic {}",
                    STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
                );
                let body = echo["body"].as_str().unwrap_or_default();
                let authenticated = match client_auth {
                    ClientAuth::Basic => echoed(&echo, "authorization") == vec![basic],
                    _ => body.contains(&format!("client_secret={CLIENT_SECRET}")),
                };
                let answer = if authenticated && body.contains("grant_type=client_credentials") {
                    format!(
                        r#"{{"access_token":"{ACCESS_TOKEN}","token_type":"Bearer","expires_in":3600}}"#
                    )
                } else {
                    r#"{"error":"invalid_client"}"#.to_string()
                };
                let mut res = http::Response::new(Full::new(Bytes::from(answer)));
                if !authenticated {
                    *res.status_mut() = http::StatusCode::UNAUTHORIZED;
                }
                Ok::<_, flext_api::Error>(res)
            })
            .service(token_client);
        let provider =
            ClientCredentials::builder(auth_server.url("/oauth2/token"), CLIENT_ID, CLIENT_SECRET)
                .client_auth(client_auth)
                .scope("orders:read")
                .build(token_http)
                .unwrap();
        printed.debug("oauth2 provider", &provider);

        let client = builder(&api, Proto::Http1)
            .oauth2_client_credentials(provider)
            .build()
            .unwrap();
        let at_api = echo(&client, "orders").await;
        assert_eq!(
            echoed(&at_api, "authorization"),
            vec![format!("Bearer {ACCESS_TOKEN}")]
        );
        assert!(!at_api.to_string().contains(CLIENT_SECRET));
        assert_clean(&echo(&client, &other.url("/direct")).await, "direct");
        redirect(&api, "/hop", &other.url("/landing-oauth"));
        other.script_path("/landing-oauth", "echo").unwrap();
        let res = client.get("hop").send().await.unwrap();
        assert_clean(&res.json::<Value>().await.unwrap(), "redirect target");
        // One token request, and the token endpoint never saw the access token.
        assert_eq!(auth_server.stats().requests_for_path("/oauth2/token"), 1);
        print_client(&mut printed, &client);

        // A token endpoint refusing the client: an auth error that prints no secret.
        let refusing =
            ClientCredentials::builder(auth_server.url("/refuse"), CLIENT_ID, CLIENT_SECRET)
                .build(
                    ServiceBuilder::new()
                        .map_request(|req: http::Request<Full<Bytes>>| req.map(Body::wrap))
                        .and_then(|_res: flext_api::Response| async {
                            let mut res = http::Response::new(Full::new(Bytes::from_static(
                                br#"{"error":"invalid_client","error_description":"bad secret"}"#,
                            )));
                            *res.status_mut() = http::StatusCode::UNAUTHORIZED;
                            Ok::<_, flext_api::Error>(res)
                        })
                        .service(Client::new()),
                )
                .unwrap();
        let client = builder(&api, Proto::Http1)
            .no_retry()
            .credential_provider(refusing)
            .build()
            .unwrap();
        let err = client.get("orders").send().await.unwrap_err();
        assert!(err.is_auth(), "{err:?}");
        printed.error("token endpoint error", &err);
    }
    assert_no_secret(
        &printed,
        &[
            "requesting an oauth2 token",
            "/oauth2/token",
            "/landing-oauth",
        ],
    );
}

/// Over TLS: a bearer scoped to `https://localhost:<port>` does not follow a redirect that
/// changes scheme, host and port (to `http://127.0.0.1:<other>`), nor one to another TLS
/// port; and plain http to a remote host is refused before anything is sent.
#[tokio::test]
async fn credentials_do_not_cross_scheme_or_host_changes() {
    capture();
    let mut printed = Printed::default();
    let api = TestServer::builder().tls().start().await.unwrap();
    let other_tls = TestServer::builder().tls().start().await.unwrap();
    let plain = server(Proto::Http1).await;
    let plain_url = format!("http://127.0.0.1:{}/landing-plain", plain.addr().port());
    let client = Client::builder()
        .base_url(&api.url("/"))
        .add_root_certificate_pem(api.ca_pem().unwrap().as_bytes())
        .add_root_certificate_pem(other_tls.ca_pem().unwrap().as_bytes())
        .bearer_auth(BEARER)
        .retry(fast_retries())
        .build()
        .unwrap();
    let at_api = echo(&client, "me").await;
    assert_eq!(
        echoed(&at_api, "authorization"),
        vec![format!("Bearer {BEARER}")]
    );

    redirect(&api, "/to-plain", &plain_url);
    plain.script_path("/landing-plain", "echo").unwrap();
    let res = client.get("to-plain").send().await.unwrap();
    assert_clean(&res.json::<Value>().await.unwrap(), "http://127.0.0.1");
    assert_eq!(plain.stats().requests_for_path("/landing-plain"), 1);

    redirect(&api, "/to-tls", &other_tls.url("/landing-tls"));
    other_tls.script_path("/landing-tls", "echo").unwrap();
    let res = client.get("to-tls").send().await.unwrap();
    assert_clean(&res.json::<Value>().await.unwrap(), "another https port");
    print_client(&mut printed, &client);

    // Plain http to a host that is not loopback: refused by the auth layer, nothing sent
    // (the host does not even resolve).
    let remote = Client::builder()
        .base_url("http://api.example.invalid/")
        .bearer_auth(BEARER)
        .no_retry()
        .build()
        .unwrap();
    let err = remote.get("me").send().await.unwrap_err();
    assert!(err.is_auth(), "{err:?}");
    printed.error("plain http refusal", &err);
    assert_no_secret(
        &printed,
        &["/landing-plain", "/landing-tls", "example.invalid"],
    );
}

/// Secrets the caller put in a URL (user-info, `X-Amz-Signature`, `sig`): the server gets
/// the URL it was given, but spans, logs and errors show them redacted.
#[tokio::test]
async fn secrets_in_urls_are_redacted_everywhere() {
    capture();
    let mut printed = Printed::default();
    let api = server(Proto::Http1).await;
    let client = builder(&api, Proto::Http1).build().unwrap();
    let url = format!(
        "http://{BASIC_USER}:{USERINFO_PASSWORD}@127.0.0.1:{}/signed?X-Amz-Signature={AMZ_SIGNATURE}&sig={SIG}&page=2",
        api.addr().port()
    );
    let echo = echo(&client, &url).await;
    // The URL reached its own origin as asked: the query is the server's to read.
    assert!(echo["query"].as_str().unwrap().contains(AMZ_SIGNATURE));

    // An error for such a URL: the server is gone.
    api.stop().await;
    let request = client.get(&url).no_retry();
    printed.debug("request builder", &request);
    let err = request.send().await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    printed.error("connect error", &err);
    // An invalid URL holding the same secrets.
    let err = client
        .get(format!(
            "ftp://{BASIC_USER}:{USERINFO_PASSWORD}@host/x?sig={SIG}"
        ))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_request());
    printed.error("invalid url error", &err);
    // A base URL holding them: the builder's error, and the client's Debug.
    let err = Client::builder()
        .base_url(&format!(
            "https://{BASIC_USER}:{USERINFO_PASSWORD}@api.example.com/?sig={SIG}"
        ))
        .build()
        .unwrap_err();
    printed.error("base url error", &err);
    let with_userinfo = Client::builder()
        .base_url(&format!(
            "https://{BASIC_USER}:{USERINFO_PASSWORD}@api.example.com/v1/"
        ))
        .build()
        .unwrap();
    printed.debug("client with user-info in its base url", &with_userinfo);
    print_client(&mut printed, &client);
    assert_no_secret(
        &printed,
        &["/signed", "X-Amz-Signature=REDACTED", "REDACTED:REDACTED@"],
    );
}

/// A query-parameter credential is refused by the client's builder (it would end up in every
/// URL), with an error that does not repeat the key.
#[tokio::test]
async fn query_credentials_are_refused_without_repeating_the_key() {
    capture();
    let mut printed = Printed::default();
    let credential = Credential::api_key_query("api_key", QUERY_KEY).unwrap();
    printed.debug("query credential", &credential);
    let err = Client::builder()
        .base_url("https://api.example.com/")
        .credential(credential)
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), Some("credentials"), "{err}");
    printed.error("builder error", &err);
    for bad in [
        Credential::bearer(format!("{BEARER} with spaces")),
        Credential::basic(format!("{BASIC_USER}:x"), BASIC_PASSWORD),
        Credential::api_key_header("bad header", API_KEY),
    ] {
        printed.error("credential error", &bad.unwrap_err());
    }
    let provider = CachedProvider::new(
        ClientCredentials::builder("https://auth.example.com/token", CLIENT_ID, CLIENT_SECRET)
            .build(tower::service_fn(
                |_req: http::Request<Full<Bytes>>| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
                },
            ))
            .unwrap(),
    );
    printed.debug("cached provider", &provider);
    let layer = AuthLayer::builder(Credential::bearer(BEARER).unwrap())
        .origin("https://api.example.com".parse().unwrap())
        .build()
        .unwrap();
    printed.debug("auth layer", &layer);
    printed.debug(
        "token",
        &Token::new(ACCESS_TOKEN).expires_in(Duration::from_secs(60)),
    );
    assert_no_secret(&printed, &[]);
}

/// No crate of the workspace may use `unsafe`: each crate root forbids it, and the
/// workspace lints (which every member inherits) forbid it for every target.
#[test]
fn every_crate_forbids_unsafe_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("unsafe_code = \"forbid\""),
        "workspace lints"
    );
    let mut roots = 0;
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let member = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(
            member.contains("[lints]\nworkspace = true"),
            "{} does not inherit the workspace lints",
            dir.display()
        );
        for file in ["lib.rs", "main.rs"] {
            let path = dir.join("src").join(file);
            if let Ok(text) = std::fs::read_to_string(&path) {
                assert!(
                    text.contains("#![forbid(unsafe_code)]"),
                    "{} does not forbid unsafe code",
                    path.display()
                );
                roots += 1;
            }
        }
    }
    assert!(roots >= 9, "found only {roots} crate roots");
    for member in ["xtask", "tests", "benches"] {
        let text = std::fs::read_to_string(root.join(member).join("Cargo.toml")).unwrap();
        assert!(text.contains("[lints]\nworkspace = true"), "{member}");
    }
}
