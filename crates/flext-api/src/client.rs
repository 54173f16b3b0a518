//! [`Client`] and [`ClientBuilder`].

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use flext_auth::{
    AuthLayer, CachedProvider, ClientCredentials, Credential, CredentialProvider, CredentialSource,
};
use flext_core::{BoxError, Origin};
use flext_pool::{Connector, Pool, TlsConfig};
use http::header::{HeaderName, HeaderValue, USER_AGENT};
use http::{HeaderMap, Method, Request};
use tower::{Layer, Service, ServiceExt};

use crate::body::Body;
use crate::config::{
    BreakerSettings, ClientConfig, HttpVersionPref, PoolSettings, RetrySettings, TraceSettings,
};
use crate::error::{Error, Redacted};
use crate::pending::{CallCloned, Pending, decoded, decoded_kept};
use crate::request::RequestBuilder;
use crate::response::{Response, ResponseBody};
use crate::stack::{AttemptBody, AttemptService, Stack};
use crate::url::{self, BaseUrl, IntoUrl};

/// The default `User-Agent`: `flext/<version>`.
pub const DEFAULT_USER_AGENT: &str = concat!("flext/", env!("CARGO_PKG_VERSION"));

/// An HTTP client with the whole flext stack and production defaults: retries with a budget,
/// per-origin circuit breakers, refreshable credentials, OpenTelemetry spans and metrics,
/// timeouts, redirects, and a pooled HTTP/1.1 + HTTP/2 connection pool.
///
/// `Client` is `Clone + Send + Sync` and cheap to clone: clones share one stack, one pool,
/// one retry budget and one set of breakers. Make one and reuse it.
///
/// ```no_run
/// # async fn run() -> Result<(), flext_api::Error> {
/// let client = flext_api::Client::builder()
///     .base_url("https://api.example.com/v1/")
///     .bearer_auth("s3cr3t")
///     .build()?;
/// let user: serde_json::Value = client.get("users/42").send().await?.error_for_status()?.json().await?;
/// # let _ = user; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    service: Box<dyn CallCloned>,
    stack: Stack,
    pool: Pool<Connector, AttemptBody>,
    base: Option<BaseUrl>,
    headers: HeaderMap,
    max_response_body: u64,
}

impl Client {
    /// A client with every default: no base URL, 30 s total and 10 s attempt timeouts, 3
    /// retries, breakers, tracing, bundled web PKI roots.
    ///
    /// # Panics
    ///
    /// Never for the defaults, which are valid; use [`Client::builder`] to handle errors of
    /// other settings.
    pub fn new() -> Client {
        match ClientBuilder::new().build() {
            Ok(client) => client,
            // The default configuration is checked by a test; this arm is unreachable.
            Err(e) => unreachable!("the default client configuration is invalid: {e}"),
        }
    }

    /// A builder for a client with other settings.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// A `GET` request to `url`: absolute, or a path joined to the base URL; text, or an
    /// [`http::Uri`] parsed once and reused (see [`IntoUrl`]).
    pub fn get(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::GET, url)
    }

    /// A `POST` request.
    pub fn post(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::POST, url)
    }

    /// A `PUT` request.
    pub fn put(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::PUT, url)
    }

    /// A `PATCH` request.
    pub fn patch(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::PATCH, url)
    }

    /// A `DELETE` request.
    pub fn delete(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::DELETE, url)
    }

    /// A `HEAD` request.
    pub fn head(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::HEAD, url)
    }

    /// A request with any method.
    // By value, as the other request methods take it: `Uri`, `&Uri`, `&str` and `String`
    // all read the same at the call site.
    #[allow(clippy::needless_pass_by_value)]
    pub fn request(&self, method: Method, url: impl IntoUrl) -> RequestBuilder {
        let uri = url::resolve(self.inner.base.as_ref(), &url);
        RequestBuilder::new(self.clone(), method, uri)
    }

    /// Sends a request built elsewhere (relative URIs join the base URL). The request goes
    /// out when the returned [`Pending`] is awaited.
    ///
    /// # Errors
    ///
    /// The future resolves to an error as described in [`Error`].
    pub fn execute(&self, request: Request<Body>) -> Pending {
        self.clone().execute_owned(request, None)
    }

    /// [`execute`](Self::execute) with a clone of the client the caller already holds (a
    /// [`RequestBuilder`]'s), which the [`Pending`] keeps until it hands the request over,
    /// and a timeout for the call counted from then.
    pub(crate) fn execute_owned(
        self,
        mut request: Request<Body>,
        timeout: Option<Duration>,
    ) -> Pending {
        if request.uri().scheme().is_none() {
            let target = request
                .uri()
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_string();
            match url::join(self.inner.base.as_ref(), &target) {
                Ok(uri) => *request.uri_mut() = uri,
                Err(e) => return Pending::failed(e),
            }
        }
        for (name, value) in &self.inner.headers {
            if !request.headers().contains_key(name) {
                request.headers_mut().insert(name, value.clone());
            }
        }
        Pending::unsent(self, request, timeout)
    }

    /// The type-erased stack calls go through.
    pub(crate) fn inner_service(&self) -> &dyn CallCloned {
        &*self.inner.service
    }

    /// The largest response body the client reads whole.
    pub(crate) fn max_response_body(&self) -> u64 {
        self.inner.max_response_body
    }

    /// The stack's layers and shared state (retry budget, breakers, metrics).
    pub fn stack(&self) -> &Stack {
        &self.inner.stack
    }

    /// The connection pool's metrics.
    pub fn pool_metrics(&self) -> flext_pool::PoolSnapshot {
        self.inner.pool.metrics()
    }

    /// A health report: each origin's breaker and pool figures, the retry budget and request
    /// counters. Serializable with serde.
    pub fn health(&self) -> crate::health::Health {
        crate::health::Health::collect(self)
    }

    /// Prometheus text exposition of request metrics plus pool, breaker and retry gauges.
    pub fn metrics_text(&self) -> String {
        crate::health::metrics_text(self)
    }
}

impl Default for Client {
    fn default() -> Client {
        Client::new()
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The base URL may hold user-info: show it as errors do, without.
        let base = self.inner.base.as_ref().map(|b| Redacted(b.uri()));
        f.debug_struct("Client")
            .field("base_url", &base)
            .field("stack", &self.inner.stack)
            .finish_non_exhaustive()
    }
}

/// `Client` as a tower service, for code that composes services.
impl Service<Request<Body>> for Client {
    type Response = Response;
    type Error = Error;
    type Future = Pending;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // Readiness is checked per call inside, on the stack the call is made on.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Pending {
        self.execute(req)
    }
}

/// Builds a [`Client`]. Every setting is validated by [`build`](Self::build), which names the
/// setting in its error.
pub struct ClientBuilder {
    config: ClientConfig,
    extra_roots: Vec<Vec<u8>>,
    credential: Option<CredentialSource>,
    auth_origins: Vec<Origin>,
    allow_plain_http_credentials: bool,
    layers: Vec<crate::stack::BoxedLayerFn<ResponseBody>>,
    error: Option<Error>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("config", &self.config)
            .field("credential", &self.credential.is_some())
            .field("custom_layers", &self.layers.len())
            .finish_non_exhaustive()
    }
}

impl Default for ClientBuilder {
    fn default() -> ClientBuilder {
        ClientBuilder::new()
    }
}

impl ClientBuilder {
    /// A builder with the defaults of [`ClientConfig`].
    pub fn new() -> ClientBuilder {
        ClientBuilder::from_config(ClientConfig::default())
    }

    /// A builder starting from a configuration (read from a file, say).
    pub fn from_config(config: ClientConfig) -> ClientBuilder {
        ClientBuilder {
            config,
            extra_roots: Vec::new(),
            credential: None,
            auth_origins: Vec::new(),
            allow_plain_http_credentials: false,
            layers: Vec::new(),
            error: None,
        }
    }

    fn fail(mut self, e: Error) -> Self {
        self.error.get_or_insert(e);
        self
    }

    /// Relative request paths are joined to this URL; credentials are scoped to its origin.
    pub fn base_url(mut self, url: &str) -> Self {
        self.config.base_url = Some(url.to_string());
        self
    }

    /// A header sent with every request that does not set it.
    pub fn default_header(mut self, name: &str, value: &str) -> Self {
        self.config
            .default_headers
            .insert(name.to_string(), value.to_string());
        self
    }

    /// The `User-Agent` (default `flext/<version>`).
    pub fn user_agent(mut self, agent: &str) -> Self {
        self.config.user_agent = Some(agent.to_string());
        self
    }

    /// Total time for a call, retries and backoff included (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Time for one attempt (default 10 s); at most the total timeout.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.config.attempt_timeout = timeout;
        self
    }

    /// Time to open a TCP connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Retry settings.
    pub fn retry(mut self, settings: RetrySettings) -> Self {
        self.config.retry = settings;
        self
    }

    /// Retries after the first attempt (0 turns retrying off).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.config.retry.max_retries = n;
        self
    }

    /// No retries.
    pub fn no_retry(mut self) -> Self {
        self.config.retry.enabled = false;
        self
    }

    /// Circuit breaker settings.
    pub fn breaker(mut self, settings: BreakerSettings) -> Self {
        self.config.breaker = settings;
        self
    }

    /// No circuit breakers.
    pub fn no_breaker(mut self) -> Self {
        self.config.breaker.enabled = false;
        self
    }

    /// Connection pool settings.
    pub fn pool(mut self, settings: PoolSettings) -> Self {
        self.config.pool = settings;
        self
    }

    /// Tracing settings.
    pub fn trace(mut self, settings: TraceSettings) -> Self {
        self.config.trace = settings;
        self
    }

    /// HTTP/1.1 only.
    pub fn http1_only(mut self) -> Self {
        self.config.protocol = HttpVersionPref::Http1;
        self
    }

    /// HTTP/2 without negotiation, also on plain http (h2c).
    pub fn http2_prior_knowledge(mut self) -> Self {
        self.config.protocol = HttpVersionPref::Http2PriorKnowledge;
        self
    }

    /// Trusts an extra CA certificate (PEM), for private PKI and tests.
    pub fn add_root_certificate_pem(mut self, pem: &[u8]) -> Self {
        self.extra_roots.push(pem.to_vec());
        self
    }

    /// Accepts any server certificate. For development only.
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.config.danger_accept_invalid_certs = accept;
        self
    }

    /// Largest body `bytes()`, `text()` and `json()` read (default 64 MiB).
    pub fn max_response_body(mut self, bytes: u64) -> Self {
        self.config.max_response_body = bytes;
        self
    }

    /// Redirects followed per call (default 10; 0 turns following off).
    pub fn max_redirects(mut self, max: usize) -> Self {
        self.config.max_redirects = max;
        self
    }

    /// A bearer token for the base URL's origin (and [`auth_origin`](Self::auth_origin)s).
    pub fn bearer_auth(self, token: &str) -> Self {
        match Credential::bearer(token.to_string()) {
            Ok(c) => self.credential(c),
            Err(e) => self.fail(Error::builder_source("bearer_auth", e)),
        }
    }

    /// HTTP Basic credentials (RFC 7617).
    pub fn basic_auth(self, user: &str, password: &str) -> Self {
        match Credential::basic(user.to_string(), password.to_string()) {
            Ok(c) => self.credential(c),
            Err(e) => self.fail(Error::builder_source("basic_auth", e)),
        }
    }

    /// An API key in a header.
    pub fn api_key(self, header: &str, key: &str) -> Self {
        match Credential::api_key_header(header, key.to_string()) {
            Ok(c) => self.credential(c),
            Err(e) => self.fail(Error::builder_source("api_key", e)),
        }
    }

    /// A static credential.
    pub fn credential(mut self, credential: Credential) -> Self {
        self.credential = Some(credential.into());
        self
    }

    /// Tokens from a provider, cached and refreshed ahead of expiry.
    pub fn credential_provider(mut self, provider: impl CredentialProvider) -> Self {
        self.credential = Some(CachedProvider::new(provider).into());
        self
    }

    /// OAuth 2.0 client credentials (RFC 6749 §4.4), cached and refreshed.
    pub fn oauth2_client_credentials(self, credentials: ClientCredentials) -> Self {
        self.credential_provider(credentials)
    }

    /// Another origin credentials may be sent to (the base URL's origin always may).
    pub fn auth_origin(mut self, origin: Origin) -> Self {
        self.auth_origins.push(origin);
        self
    }

    /// Lets credentials go over plain `http` to hosts that are not loopback. Off by default.
    pub fn allow_plain_http_credentials(mut self, allow: bool) -> Self {
        self.allow_plain_http_credentials = allow;
        self
    }

    /// Adds a custom tower layer, the plugin point of the client. It wraps every attempt,
    /// below retry and auth (so it sees credentials and each retry) and above the breaker,
    /// the attempt span, the attempt timeout and the pool. Layers added first are outermost.
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<AttemptService<ResponseBody>> + Send + Sync + 'static,
        L::Service: Service<Request<AttemptBody>, Response = http::Response<ResponseBody>>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as Service<Request<AttemptBody>>>::Error: Into<BoxError>,
        <L::Service as Service<Request<AttemptBody>>>::Future: Send + 'static,
    {
        self.layers.push(Arc::new(move |inner| {
            AttemptService::new(layer.layer(inner).map_err(Into::into))
        }));
        self
    }

    /// The settings as they stand, as a [`ClientConfig`].
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Builds the client.
    ///
    /// # Errors
    ///
    /// A builder error naming the first invalid setting.
    pub fn build(self) -> Result<Client, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let c = &self.config;
        c.validate()?;
        let base = c.base_url.as_deref().map(BaseUrl::parse).transpose()?;

        let mut headers = HeaderMap::new();
        for (name, value) in &c.default_headers {
            let n = HeaderName::try_from(name.as_str())
                .map_err(|e| Error::builder("default_headers", format!("{name:?}: {e}")))?;
            let v = HeaderValue::try_from(value.as_str()).map_err(|e| {
                Error::builder("default_headers", format!("value of {name:?}: {e}"))
            })?;
            headers.insert(n, v);
        }
        // The default as a static value: cloning it into each request copies a pointer,
        // where a value made from a string shares one reference count that every thread
        // sending through the client writes twice per request (clone and drop).
        let agent = match c.user_agent.as_deref() {
            None => HeaderValue::from_static(DEFAULT_USER_AGENT),
            Some(agent) => HeaderValue::try_from(agent)
                .map_err(|e| Error::builder("user_agent", e.to_string()))?,
        };
        headers.entry(USER_AGENT).or_insert(agent);

        let auth = match self.credential {
            None => None,
            Some(source) => {
                let mut origins = self.auth_origins.clone();
                if let Some(base) = &c.base_url {
                    let uri: http::Uri = base
                        .parse()
                        .map_err(|_| Error::builder("base_url", "not a valid url"))?;
                    origins.push(
                        Origin::from_uri(&uri).map_err(|e| Error::builder_source("base_url", e))?,
                    );
                }
                if origins.is_empty() {
                    return Err(Error::builder(
                        "credentials",
                        "need a base_url or an auth_origin to scope them to",
                    ));
                }
                let layer = AuthLayer::builder(source)
                    .origins(origins)
                    .allow_plain_http(self.allow_plain_http_credentials)
                    .replay_limits(flext_core::ReplayLimits::new(c.retry.max_replay_bytes))
                    .build()
                    .map_err(|e| Error::builder_source("credentials", e))?;
                Some(layer)
            }
        };

        let pool = build_pool(c, &self.extra_roots)?;
        let mut stack = Stack::new(c, auth)?;
        for f in self.layers {
            stack.push_layer(f);
        }
        let service = match stack.build_all_on(pool.clone()) {
            Ok(all_on) => decoded_kept(all_on),
            Err(pool) => decoded(stack.build(pool)),
        };
        Ok(Client {
            inner: Arc::new(Inner {
                service,
                stack,
                pool,
                base,
                headers,
                max_response_body: c.max_response_body,
            }),
        })
    }
}

fn build_pool(
    c: &ClientConfig,
    extra_roots: &[Vec<u8>],
) -> Result<Pool<Connector, AttemptBody>, Error> {
    let p = &c.pool;
    let config = flext_pool::Config::builder()
        .max_connections_per_origin(p.max_connections_per_origin)
        .max_idle_per_origin(p.max_idle_per_origin)
        .idle_timeout(p.idle_timeout)
        .max_lifetime(p.max_lifetime)
        .max_waiters_per_origin(p.max_waiters_per_origin)
        .acquire_timeout(p.acquire_timeout)
        .connect_timeout(c.connect_timeout)
        .http2_max_connections_per_origin(p.http2_max_connections_per_origin)
        .http1_only(c.protocol == HttpVersionPref::Http1)
        .http2_prior_knowledge(c.protocol == HttpVersionPref::Http2PriorKnowledge)
        .build()
        .map_err(|e| Error::builder_source("pool", e))?;
    let mut tls = TlsConfig::new().danger_accept_invalid_certs(c.danger_accept_invalid_certs);
    for pem in extra_roots {
        tls = tls
            .add_root_pem(pem)
            .map_err(|e| Error::builder_source("root_certificate", e))?;
    }
    for path in &c.ca_certs {
        let pem = std::fs::read(path).map_err(|e| {
            Error::builder("ca_certs", format!("cannot read {}: {e}", path.display()))
        })?;
        tls = tls
            .add_root_pem(&pem)
            .map_err(|e| Error::builder_source("ca_certs", e))?;
    }
    Pool::https_with(config, tls).map_err(|e| Error::builder_source("tls", e))
}
