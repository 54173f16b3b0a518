//! The clients measured, each built the way its documentation shows and used the way a user
//! would: one client shared by every task, one request after another, the body read whole.

use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::header::{HeaderName, HeaderValue, USER_AGENT};
use http::{Request, Uri, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as Legacy;
use hyper_util::client::legacy::connect::Connect;
use hyper_util::rt::TokioExecutor;
use reqwest_retry::RetryTransientMiddleware;
use reqwest_retry::policies::ExponentialBackoff;
use tower::ServiceExt;

use crate::BoxError;
use crate::measure::{Measurement, Timing, drive};
use crate::server::Identity;

/// The protocol of a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Proto {
    /// HTTP/1.1 over TCP.
    Http1,
    /// HTTP/2 with prior knowledge over TCP.
    H2c,
    /// HTTP/2 over TLS, chosen by ALPN (every client offers `h2` and `http/1.1`).
    H2Tls,
}

impl Proto {
    pub(crate) fn version(self) -> Version {
        match self {
            Proto::Http1 => Version::HTTP_11,
            Proto::H2c | Proto::H2Tls => Version::HTTP_2,
        }
    }
}

/// A client under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ClientKind {
    /// hyper-util's legacy client: the baseline every ratio is taken against.
    HyperUtil,
    /// reqwest 0.13.
    Reqwest,
    /// reqwest-middleware with reqwest-retry's `RetryTransientMiddleware` (exponential
    /// backoff, 3 retries: its README's policy).
    ReqwestRetry,
    /// flext-pool alone, default limits.
    FlextPool,
    /// `flext_api::Client` with its whole default stack.
    Flext,
    /// `flext_api::Client` with one part of the stack off, to see what that part costs
    /// end to end. Not in the default set: `--clients flext-no-trace,...` picks them.
    FlextWithout(Part),
    /// `flext_api::stack(&ClientConfig::default())` over flext-pool, called the way
    /// `Client::execute` calls it but without the facade (URL joining, response wrapper).
    /// A diagnostic row, like the ablations.
    StackOverPool,
    /// `flext_api::Client` with its default stack but `Propagate::Always`: a new
    /// `traceparent` on every request, as when a subscriber records the spans (what the
    /// default was before a trace was started only for a recorded span). A diagnostic row.
    FlextTraceparentAlways,
    /// flext-pool alone sending headers the default stack adds, made before the run. No layer
    /// runs: this is what those headers cost on the wire and in both ends' HTTP code, the
    /// floor under any implementation of the stack. A diagnostic row.
    PoolWithHeaders(Headers),
    /// The h2 crate alone over one TCP connection, each task on a clone of its
    /// `SendRequest`: no pool, no limits. The floor under flext-pool's HTTP/2 (which drives
    /// h2 the same way). A diagnostic row, h2c cells only.
    RawH2,
}

/// The headers a `PoolWithHeaders` row sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Headers {
    /// The default `User-Agent`: what the default stack sends when nothing records its spans.
    Agent,
    /// The default `User-Agent` and a new `traceparent` (sensitive, as flext-trace makes it):
    /// what it sends for a recorded call, or with `Propagate::Always`.
    AgentAndTraceparent,
}

/// A part of the default stack that an ablation row turns off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Part {
    /// Both spans, the metrics and `traceparent`.
    Trace,
    /// The retry layer.
    Retry,
    /// The breakers.
    Breaker,
    /// Redirect following.
    Redirects,
    /// All of the above: what is left is the timeouts, auth pass-through and boxing.
    All,
}

impl ClientKind {
    /// The clients of the comparison, in table order.
    pub(crate) const ALL: [ClientKind; 5] = [
        ClientKind::HyperUtil,
        ClientKind::Reqwest,
        ClientKind::ReqwestRetry,
        ClientKind::FlextPool,
        ClientKind::Flext,
    ];

    /// The ablation rows, for profiling the full stack's cost.
    pub(crate) const ABLATIONS: [ClientKind; 10] = [
        ClientKind::RawH2,
        ClientKind::FlextTraceparentAlways,
        ClientKind::FlextWithout(Part::Trace),
        ClientKind::FlextWithout(Part::Retry),
        ClientKind::FlextWithout(Part::Breaker),
        ClientKind::FlextWithout(Part::Redirects),
        ClientKind::FlextWithout(Part::All),
        ClientKind::StackOverPool,
        ClientKind::PoolWithHeaders(Headers::Agent),
        ClientKind::PoolWithHeaders(Headers::AgentAndTraceparent),
    ];

    /// The name `--clients` takes.
    pub(crate) fn key(self) -> &'static str {
        match self {
            ClientKind::HyperUtil => "hyper-util",
            ClientKind::Reqwest => "reqwest",
            ClientKind::ReqwestRetry => "reqwest-retry",
            ClientKind::FlextPool => "flext-pool",
            ClientKind::Flext => "flext",
            ClientKind::FlextTraceparentAlways => "flext-traceparent-always",
            ClientKind::FlextWithout(Part::Trace) => "flext-no-trace",
            ClientKind::FlextWithout(Part::Retry) => "flext-no-retry",
            ClientKind::FlextWithout(Part::Breaker) => "flext-no-breaker",
            ClientKind::FlextWithout(Part::Redirects) => "flext-no-redirects",
            ClientKind::FlextWithout(Part::All) => "flext-bare",
            ClientKind::StackOverPool => "flext-stack",
            ClientKind::PoolWithHeaders(Headers::Agent) => "flext-pool-ua",
            ClientKind::PoolWithHeaders(Headers::AgentAndTraceparent) => "flext-pool-headers",
            ClientKind::RawH2 => "raw-h2",
        }
    }

    /// The name in the table.
    pub(crate) fn label(self) -> &'static str {
        match self {
            ClientKind::HyperUtil => "hyper-util legacy",
            ClientKind::Reqwest => "reqwest 0.13",
            ClientKind::ReqwestRetry => "reqwest-middleware + reqwest-retry",
            ClientKind::FlextPool => "flext-pool alone",
            ClientKind::Flext => "flext_api::Client (full stack)",
            ClientKind::FlextTraceparentAlways => "flext_api::Client, traceparent always",
            ClientKind::FlextWithout(Part::Trace) => "flext_api::Client, trace off",
            ClientKind::FlextWithout(Part::Retry) => "flext_api::Client, retry off",
            ClientKind::FlextWithout(Part::Breaker) => "flext_api::Client, breaker off",
            ClientKind::FlextWithout(Part::Redirects) => "flext_api::Client, redirects off",
            ClientKind::FlextWithout(Part::All) => {
                "flext_api::Client, trace/retry/breaker/redirects off"
            }
            ClientKind::StackOverPool => "flext_api::stack over flext-pool, no facade",
            ClientKind::PoolWithHeaders(Headers::Agent) => "flext-pool alone + User-Agent",
            ClientKind::PoolWithHeaders(Headers::AgentAndTraceparent) => {
                "flext-pool alone + User-Agent + traceparent"
            }
            ClientKind::RawH2 => "h2 crate alone (the floor under flext-pool's HTTP/2)",
        }
    }
}

/// Where to send, and how.
pub(crate) struct Target<'a> {
    pub(crate) url: String,
    pub(crate) proto: Proto,
    pub(crate) concurrency: usize,
    pub(crate) timing: Timing,
    pub(crate) tls: Option<&'a Identity>,
}

/// Builds `kind` for `target` and loads the server with it.
pub(crate) async fn run(kind: ClientKind, target: &Target<'_>) -> Result<Measurement, BoxError> {
    match kind {
        ClientKind::HyperUtil => hyper_util_legacy(target).await,
        ClientKind::Reqwest => reqwest_plain(target).await,
        ClientKind::ReqwestRetry => reqwest_retry(target).await,
        ClientKind::FlextPool => flext_pool(target, None).await,
        ClientKind::Flext => flext_client(target, Variant::Default).await,
        ClientKind::FlextWithout(part) => flext_client(target, Variant::Without(part)).await,
        ClientKind::FlextTraceparentAlways => flext_client(target, Variant::Always).await,
        ClientKind::StackOverPool => stack_over_pool(target).await,
        ClientKind::PoolWithHeaders(headers) => flext_pool(target, Some(headers)).await,
        ClientKind::RawH2 => raw_h2(target).await,
    }
}

async fn hyper_util_legacy(t: &Target<'_>) -> Result<Measurement, BoxError> {
    let mut builder = Legacy::builder(TokioExecutor::new());
    builder.http2_only(t.proto == Proto::H2c);
    match t.tls {
        None => load_legacy(builder.build_http(), t).await,
        Some(identity) => {
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(identity.client_config()?)
                .https_only()
                .enable_http1()
                .enable_http2()
                .build();
            load_legacy(builder.build(https), t).await
        }
    }
}

async fn load_legacy<C>(
    client: Legacy<C, Empty<Bytes>>,
    t: &Target<'_>,
) -> Result<Measurement, BoxError>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let uri: Uri = t.url.parse()?;
    Ok(drive(t.concurrency, t.timing, t.proto.version(), move || {
        let request = Request::get(uri.clone()).body(Empty::new());
        let client = client.clone();
        async move {
            let response = client.request(request?).await?;
            let version = response.version();
            let body = response.into_body().collect().await?.to_bytes();
            Ok((body.len(), version))
        }
    })
    .await)
}

fn reqwest_builder(t: &Target<'_>) -> Result<reqwest::ClientBuilder, BoxError> {
    let mut builder = reqwest::Client::builder().no_proxy();
    builder = match t.proto {
        Proto::Http1 => builder.http1_only(),
        Proto::H2c => builder.http2_prior_knowledge(),
        Proto::H2Tls => builder,
    };
    if let Some(identity) = t.tls {
        // reqwest sets no ALPN on a preconfigured rustls config: offer what the others do.
        let mut config = identity.client_config()?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        builder = builder.tls_backend_preconfigured(config);
    }
    Ok(builder)
}

async fn reqwest_plain(t: &Target<'_>) -> Result<Measurement, BoxError> {
    let client = reqwest_builder(t)?.build()?;
    // Parsed once, as hyper-util's client needs it to be: no caller parses URL text per request.
    let url = reqwest::Url::parse(&t.url)?;
    Ok(drive(t.concurrency, t.timing, t.proto.version(), move || {
        let request = client.get(url.clone());
        async move {
            let response = request.send().await?;
            let version = response.version();
            Ok((response.bytes().await?.len(), version))
        }
    })
    .await)
}

async fn reqwest_retry(t: &Target<'_>) -> Result<Measurement, BoxError> {
    let policy = ExponentialBackoff::builder().build_with_max_retries(3);
    let client = reqwest_middleware::ClientBuilder::new(reqwest_builder(t)?.build()?)
        .with(RetryTransientMiddleware::new_with_policy(policy))
        .build();
    let url = reqwest::Url::parse(&t.url)?;
    Ok(drive(t.concurrency, t.timing, t.proto.version(), move || {
        let request = client.get(url.clone());
        async move {
            let response = request.send().await?;
            let version = response.version();
            Ok((response.bytes().await?.len(), version))
        }
    })
    .await)
}

async fn flext_pool(t: &Target<'_>, headers: Option<Headers>) -> Result<Measurement, BoxError> {
    let config = flext_pool::Config::builder()
        .http1_only(t.proto == Proto::Http1)
        .http2_prior_knowledge(t.proto == Proto::H2c)
        .build()?;
    match t.tls {
        None => {
            load_pool(
                flext_pool::Pool::<_, Empty<Bytes>>::http_with(config),
                t,
                headers,
            )
            .await
        }
        Some(identity) => {
            let tls = flext_pool::TlsConfig::new()
                .webpki_roots(false)
                .add_root_pem(identity.ca_pem.as_bytes())?;
            load_pool(flext_pool::Pool::https_with(config, tls)?, t, headers).await
        }
    }
}

async fn load_pool(
    pool: flext_pool::Pool<flext_pool::Connector, Empty<Bytes>>,
    t: &Target<'_>,
    headers: Option<Headers>,
) -> Result<Measurement, BoxError> {
    let uri: Uri = t.url.parse()?;
    let agent = HeaderValue::from_static(flext_api::DEFAULT_USER_AGENT);
    // Made before the run, so that the row measures what the headers cost on the wire, not
    // what making them costs (flext-trace's share, counted in the full stack's rows).
    let traceparents: Vec<HeaderValue> = (0..TRACEPARENTS).map(traceparent).collect();
    let next = AtomicUsize::new(0);
    Ok(drive(t.concurrency, t.timing, t.proto.version(), move || {
        let mut request = Request::get(uri.clone()).body(Empty::new());
        if let (Some(headers), Ok(request)) = (headers, &mut request) {
            let h = request.headers_mut();
            h.insert(USER_AGENT, agent.clone());
            if headers == Headers::AgentAndTraceparent {
                let n = next.fetch_add(1, Ordering::Relaxed) % traceparents.len();
                h.insert(TRACEPARENT, traceparents[n].clone());
            }
        }
        let pool = pool.clone();
        async move {
            let response = pool.oneshot(request?).await?;
            let version = response.version();
            let body = response.into_body().collect().await?.to_bytes();
            Ok((body.len(), version))
        }
    })
    .await)
}

/// Distinct `traceparent` values the floor row cycles through.
const TRACEPARENTS: u64 = 256;

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// A W3C `traceparent` as flext-trace sends one: version 00, 32 and 16 hex digits of ids
/// (here mixed from `n`, `splitmix64`), flags 01, marked sensitive so that HPACK never
/// indexes it.
fn traceparent(n: u64) -> HeaderValue {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-01";
    let words = [mix(3 * n), mix(3 * n + 1), mix(3 * n + 2)];
    let (ids, rest) = buf.split_at_mut(36);
    let digits = ids[3..35].iter_mut().chain(rest[..16].iter_mut());
    for (i, d) in digits.enumerate() {
        let word = words[i / 16];
        *d = HEX[usize::try_from((word >> (60 - 4 * (i % 16))) & 0xf).unwrap_or(0)];
    }
    let mut value = HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("00"));
    value.set_sensitive(true);
    value
}

/// How a `flext_api::Client` row differs from the default.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Default,
    Without(Part),
    Always,
}

async fn flext_client(t: &Target<'_>, variant: Variant) -> Result<Measurement, BoxError> {
    let mut builder = flext_api::Client::builder();
    if variant == Variant::Always {
        let mut trace = builder.config().trace.clone();
        trace.propagate = flext_api::Propagate::Always;
        builder = builder.trace(trace);
    }
    if let Variant::Without(part) = variant {
        let all = part == Part::All;
        let mut trace = builder.config().trace.clone();
        if part == Part::Trace || all {
            trace.enabled = false;
            trace.propagate = flext_api::Propagate::Off;
        }
        builder = builder.trace(trace);
        if part == Part::Retry || all {
            builder = builder.no_retry();
        }
        if part == Part::Breaker || all {
            builder = builder.no_breaker();
        }
        if part == Part::Redirects || all {
            builder = builder.max_redirects(0);
        }
    }
    builder = match t.proto {
        Proto::Http1 => builder.http1_only(),
        Proto::H2c => builder.http2_prior_knowledge(),
        Proto::H2Tls => builder,
    };
    if let Some(identity) = t.tls {
        builder = builder.add_root_certificate_pem(identity.ca_pem.as_bytes());
    }
    let client = builder.build()?;
    let url: Uri = t.url.parse()?;
    Ok(drive(t.concurrency, t.timing, t.proto.version(), move || {
        let request = client.get(&url);
        async move {
            let response = request.send().await?;
            let version = response.version();
            Ok((response.bytes().await?.len(), version))
        }
    })
    .await)
}

async fn stack_over_pool(t: &Target<'_>) -> Result<Measurement, BoxError> {
    if t.tls.is_some() {
        return Err("the stack-over-pool rows run over plain TCP only".into());
    }
    let config = flext_api::ClientConfig {
        protocol: match t.proto {
            Proto::Http1 => flext_api::HttpVersionPref::Http1,
            Proto::H2c | Proto::H2Tls => flext_api::HttpVersionPref::Http2PriorKnowledge,
        },
        ..flext_api::ClientConfig::default()
    };
    let pool_config = flext_pool::Config::builder()
        .http1_only(t.proto == Proto::Http1)
        .http2_prior_knowledge(t.proto == Proto::H2c)
        .build()?;
    let pool = flext_pool::Pool::<_, flext_api::AttemptBody>::http_with(pool_config);
    let layers = flext_api::stack(&config)?;
    let service = layers.layer(pool);
    let uri: Uri = t.url.parse()?;
    let agent = HeaderValue::from_static(flext_api::DEFAULT_USER_AGENT);
    Ok(drive(t.concurrency, t.timing, t.proto.version(), move || {
        // What `Client::execute` sends: the default User-Agent, on a clone of the service.
        let mut request = Request::new(flext_api::Body::empty());
        *request.uri_mut() = uri.clone();
        request.headers_mut().insert(USER_AGENT, agent.clone());
        let service = service.clone();
        async move {
            let response = service.oneshot(request).await?;
            let version = response.version();
            let body = response.into_body().collect().await?.to_bytes();
            Ok((body.len(), version))
        }
    })
    .await)
}

async fn raw_h2(t: &Target<'_>) -> Result<Measurement, BoxError> {
    if t.proto != Proto::H2c {
        return Err("the raw-h2 row runs in h2c cells only".into());
    }
    let uri: Uri = t.url.parse()?;
    let authority = uri
        .authority()
        .ok_or("the target has no authority")?
        .as_str();
    let tcp = tokio::net::TcpStream::connect(authority).await?;
    tcp.set_nodelay(true)?;
    let (tx, connection) = h2::client::handshake(tcp).await?;
    tokio::spawn(connection);
    Ok(drive(t.concurrency, t.timing, t.proto.version(), move || {
        let request = Request::get(uri.clone()).body(());
        let tx = tx.clone();
        async move {
            let mut tx = tx.ready().await?;
            let (response, _) = tx.send_request(request?, true)?;
            let response = response.await?;
            let version = response.version();
            let mut body = response.into_body();
            let mut len = 0;
            while let Some(chunk) = body.data().await {
                let chunk = chunk?;
                len += chunk.len();
                body.flow_control().release_capacity(chunk.len())?;
            }
            Ok((len, version))
        }
    })
    .await)
}

#[cfg(test)]
mod tests {
    use super::traceparent;

    #[test]
    fn the_floor_rows_traceparent_is_well_formed_and_new_each_time() {
        let values: Vec<String> = (0..64)
            .map(|n| traceparent(n).to_str().map(str::to_owned))
            .collect::<Result<_, _>>()
            .expect("ascii");
        for v in &values {
            let parts: Vec<&str> = v.split('-').collect();
            assert_eq!(parts.len(), 4, "{v}");
            assert_eq!((parts[0], parts[3]), ("00", "01"), "{v}");
            assert_eq!((parts[1].len(), parts[2].len()), (32, 16), "{v}");
            assert!(
                parts[1..3].iter().all(|p| p
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())),
                "{v}"
            );
        }
        let distinct: std::collections::HashSet<_> = values.iter().collect();
        assert_eq!(distinct.len(), values.len());
        assert!(traceparent(1).is_sensitive());
    }
}
