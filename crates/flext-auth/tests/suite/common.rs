//! What every test of the suite shares: a real HTTP client, a recorder of what the auth layer
//! sent, the testkit's echo read back, and the capture of all `tracing` output.

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use flext_core::{Attempt, ReplayBody};
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::time::Instant;

/// The body the auth layer hands to its inner service in these tests with a cached provider
/// (a static credential's layer hands on the caller's `Full<Bytes>`).
pub type AuthBody = ReplayBody<Full<Bytes>>;

/// hyper-util's legacy client: the real HTTP inner service, for requests with body `B`.
pub type HttpClient<B = AuthBody> = Client<HttpConnector, B>;

/// Every secret of the suite contains this, so that a leak of any of them is easy to spot.
pub const MARK: &str = "s3cr3t";

/// Basic credentials used in the suite (their base64 forms do not show [`MARK`]).
pub const BASIC_PAIRS: [(&str, &str); 3] = [
    ("Aladdin", "open sesame"),
    ("test", "123\u{a3}"),
    ("client-id", "client-s3cr3t"),
];

/// The client under a cached provider's layer.
pub fn client() -> HttpClient {
    any_client()
}

/// The client under a static credential's layer, or any other body type.
pub fn any_client<B>() -> HttpClient<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn request(uri: impl AsRef<str>) -> Request<Full<Bytes>> {
    Request::get(uri.as_ref())
        .header(flext_testkit::SCRIPT_HEADER, "echo")
        .body(Full::default())
        .unwrap()
}

/// The head of a request as it left the auth layer.
#[derive(Debug, Clone)]
pub struct Sent {
    pub at: Instant,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub attempt: Attempt,
}

impl Sent {
    pub fn authorization(&self) -> Option<&HeaderValue> {
        self.headers.get(http::header::AUTHORIZATION)
    }
}

/// Records every request the auth layer sends to its inner service.
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Sent>>>);

impl Recorder {
    /// `inner`, recording each request on the way.
    pub fn wrap<S, B>(
        &self,
        inner: S,
    ) -> tower::util::MapRequest<S, impl Fn(Request<B>) -> Request<B> + Clone> {
        let log = self.clone();
        tower::util::MapRequest::new(inner, move |req: Request<B>| {
            lock(&log.0).push(Sent {
                at: Instant::now(),
                uri: req.uri().clone(),
                headers: req.headers().clone(),
                attempt: Attempt::of(&req),
            });
            req
        })
    }

    pub fn sent(&self) -> Vec<Sent> {
        lock(&self.0).clone()
    }
}

/// What the testkit's `echo` saw.
#[derive(Debug)]
pub struct Echo {
    pub json: Value,
}

impl Echo {
    pub async fn read<B>(res: Response<B>) -> Echo
    where
        B: Body,
        B::Error: std::fmt::Debug,
    {
        assert_eq!(res.status(), 200, "expected the echo");
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Echo {
            json: serde_json::from_slice(&bytes).unwrap(),
        }
    }

    /// Every value of header `name` the server received.
    pub fn headers(&self, name: &str) -> Vec<String> {
        self.json["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|pair| pair[0].as_str().unwrap().eq_ignore_ascii_case(name))
            .map(|pair| pair[1].as_str().unwrap().to_owned())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        let mut all = self.headers(name);
        assert!(all.len() <= 1, "{name} sent {} times", all.len());
        all.pop()
    }

    pub fn query(&self) -> Option<&str> {
        self.json["query"].as_str()
    }

    pub fn body(&self) -> &str {
        self.json["body"].as_str().unwrap()
    }
}

/// Sends `req` through a static credential's `layer` over the recorder and a real client; the
/// echo and what went out.
pub async fn echo_through(
    layer: &flext_auth::AuthLayer<flext_auth::Credential>,
    req: Request<Full<Bytes>>,
) -> (Echo, Vec<Sent>) {
    use tower::{Layer, ServiceExt};
    let recorder = Recorder::default();
    let svc = layer.layer(recorder.wrap(any_client::<Full<Bytes>>()));
    let res = svc.oneshot(req).await.unwrap();
    (Echo::read(res).await, recorder.sent())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        lock(&LOGS).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends every `tracing` event of the process, at TRACE, to the capture. Each test calls it
/// first.
pub fn capture_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(|| Capture)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
}

/// All captured output so far.
pub fn logs() -> String {
    String::from_utf8_lossy(&lock(&LOGS)).into_owned()
}

/// Each test ends with it: nothing logged so far by any test shows a secret of the suite.
pub fn assert_no_secret_logged() {
    let logs = logs();
    let mut secrets = vec![MARK.to_owned()];
    for (user, password) in BASIC_PAIRS {
        secrets.push(password.to_owned());
        secrets.push(STANDARD.encode(format!("{user}:{password}")));
    }
    for secret in secrets {
        assert!(
            !logs.contains(&secret),
            "a secret ({secret}) was logged:\n{logs}"
        );
    }
}
