//! The default stack: every flext layer, in the order of `docs/architecture.md`, over any
//! inner HTTP service.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use flext_auth::AuthLayer;
use flext_breaker::{BreakerConfig, BreakerHandle, BreakerLayer};
use flext_core::{BoxError, Origin, ReplayBody};
use flext_retry::{Backoff, Budget, Jitter, RetryLayer};
use flext_trace::{HttpClientMetrics, TraceContext, TraceLayer};
use http::{Request, Response};
use tower::util::{BoxCloneSyncService, Either};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

use crate::body::Body;
use crate::config::{BreakerClock, ClientConfig, Propagate};
use crate::error::Error;
use crate::pending::TopStack;
use crate::redirect::RedirectLayer;
use crate::timeout::{AttemptTimeoutLayer, DeadlineLayer, TotalTimeoutLayer};

/// The request body an attempt carries below the retry and auth layers: the caller's
/// [`Body`], kept for replay by retry, then by auth's 401 replay.
pub type AttemptBody = ReplayBody<ReplayBody<Body>>;

/// A type-erased attempt-level service, the type custom layers wrap (see
/// [`ClientBuilder::layer`](crate::ClientBuilder::layer)).
pub type AttemptService<ResB> = BoxCloneSyncService<Request<AttemptBody>, Response<ResB>, BoxError>;

/// The whole stack as one service from caller requests to responses.
pub type StackService<ResB> = BoxCloneSyncService<Request<Body>, Response<ResB>, BoxError>;

pub(crate) type BoxedLayerFn<ResB> =
    Arc<dyn Fn(AttemptService<ResB>) -> AttemptService<ResB> + Send + Sync>;

/// The layers of the default stack, built from a [`ClientConfig`], with their shared state
/// (retry budget, breakers, metrics). Put them over any inner service with
/// [`Stack::layer`]; every service made from one `Stack` shares that state.
///
/// Outermost first: redirects, logical trace span, total timeout, retry, auth, custom
/// layers, breaker, attempt trace span, attempt timeout, then the inner service.
///
/// ```
/// use flext_api::{ClientConfig, stack};
/// use bytes::Bytes;
/// use tower::{ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let layers = stack(&ClientConfig::default())?;
/// let inner = service_fn(|_req: http::Request<flext_api::AttemptBody>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(Bytes::from("hi"))))
/// });
/// let svc = layers.layer(inner);
/// let res = svc.oneshot(http::Request::get("http://example.test/").body(flext_api::Body::empty())?).await?;
/// assert_eq!(res.status(), 200);
/// # Ok(())
/// # }
/// ```
pub struct Stack<ResB = crate::response::ResponseBody> {
    config: ClientConfig,
    retry: Option<RetryLayer>,
    breaker: Option<BreakerLayer>,
    auth: Option<AuthLayer>,
    metrics: Option<HttpClientMetrics>,
    custom: Vec<BoxedLayerFn<ResB>>,
}

impl<ResB> Clone for Stack<ResB> {
    fn clone(&self) -> Self {
        Stack {
            config: self.config.clone(),
            retry: self.retry.clone(),
            breaker: self.breaker.clone(),
            auth: self.auth.clone(),
            metrics: self.metrics.clone(),
            custom: self.custom.clone(),
        }
    }
}

impl<ResB> fmt::Debug for Stack<ResB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack")
            .field("retry", &self.retry.is_some())
            .field("breaker", &self.breaker.is_some())
            .field("auth", &self.auth.is_some())
            .field("trace", &self.metrics.is_some())
            .field("custom_layers", &self.custom.len())
            .finish()
    }
}

/// The default stack's layers for `config`, to put over another inner service (hyper-util's
/// client, a tonic channel, a test double).
///
/// # Errors
///
/// A builder error naming the first invalid setting.
pub fn stack<ResB>(config: &ClientConfig) -> Result<Stack<ResB>, Error>
where
    ResB: http_body::Body + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    Stack::new(config, None)
}

impl<ResB> Stack<ResB>
where
    ResB: http_body::Body + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    pub(crate) fn new(
        config: &ClientConfig,
        auth: Option<AuthLayer>,
    ) -> Result<Stack<ResB>, Error> {
        config.validate()?;
        let retry = if config.retry.enabled && config.retry.max_retries > 0 {
            Some(retry_layer(config)?)
        } else {
            None
        };
        let breaker = if config.breaker.enabled {
            Some(breaker_layer(config)?)
        } else {
            None
        };
        let metrics = config.trace.enabled.then(HttpClientMetrics::new);
        Ok(Stack {
            config: config.clone(),
            retry,
            breaker,
            auth,
            metrics,
            custom: Vec::new(),
        })
    }

    pub(crate) fn push_layer(&mut self, f: BoxedLayerFn<ResB>) {
        self.custom.push(f);
    }

    /// The retry layer, when retries are on (its metrics hold the budget balance).
    pub fn retry(&self) -> Option<&RetryLayer> {
        self.retry.as_ref()
    }

    /// The breakers' control handle, when breakers are on.
    pub fn breakers(&self) -> Option<BreakerHandle<Origin>> {
        self.breaker.as_ref().map(BreakerLayer::handle)
    }

    /// The request metrics recorder, when tracing is on.
    pub fn metrics(&self) -> Option<&HttpClientMetrics> {
        self.metrics.as_ref()
    }

    /// Puts the stack over `inner`, an HTTP service taking attempt requests.
    pub fn layer<S>(&self, inner: S) -> StackService<ResB>
    where
        S: Service<Request<AttemptBody>, Response = Response<ResB>> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        match self.build_all_on(inner) {
            Ok(all_on) => BoxCloneSyncService::new(all_on),
            Err(inner) => BoxCloneSyncService::new(self.build(inner)),
        }
    }

    /// The stack over `inner`, unboxed: the layers are combined with `Either` rather than
    /// type-erased, so a call allocates no boxed future per layer and cloning the stack (retry
    /// and redirects clone their inner service per call) is reference counting, not boxing.
    /// Only custom layers, when there are any, are boxed.
    pub(crate) fn build<S>(&self, inner: S) -> impl TopStack<ResB>
    where
        S: Service<Request<AttemptBody>, Response = Response<ResB>> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        let c = &self.config;
        // Below the breaker: the attempt span and the attempt timeout.
        let trace_attempt = self.metrics.as_ref().map(|m| attempt_trace(c, m));
        // Every service here already fails with a `BoxError` (the attempt timeout converts
        // the inner service's error): no `map_err` wrapper, whose future would be one more
        // move of everything below it per call.
        let attempt = ServiceBuilder::new()
            .option_layer(self.breaker.clone())
            .option_layer(trace_attempt)
            .layer(AttemptTimeoutLayer::new(c.attempt_timeout))
            .service(inner);
        // Custom layers see every attempt, with credentials, above the breaker (so they see
        // its rejections too). They take a boxed service, so box only when there are some.
        let attempt = if self.custom.is_empty() {
            Either::Left(attempt)
        } else {
            let mut boxed: AttemptService<ResB> = BoxCloneSyncService::new(attempt);
            for f in self.custom.iter().rev() {
                boxed = f(boxed);
            }
            Either::Right(boxed)
        };
        // Auth (or a pass-through that keeps the body type the same).
        let authed = match &self.auth {
            // Boxed: the 401 replay's state would otherwise grow every request's future,
            // credentials or not, and each outer layer moves that future.
            Some(auth) => Either::Left(auth.layer(attempt).map_future(Box::pin)),
            None => Either::Right(attempt.map_request(replay_once::<ReplayBody<Body>>)),
        };
        // The total timeout goes in each arm: it turns retry's error into a `BoxError` itself,
        // so no `map_err` wrapper is needed to make the arms' errors agree.
        let total = TotalTimeoutLayer::new(c.timeout);
        let retried = match &self.retry {
            Some(retry) => Either::Left(total.layer(retry.layer(authed))),
            None => Either::Right(total.layer(authed.map_request(replay_once::<Body>))),
        };
        let trace_logical = self.metrics.as_ref().map(|_| logical_trace(c));
        let outer = ServiceBuilder::new()
            .option_layer(trace_logical)
            .service(retried);
        let redirects = (c.max_redirects > 0).then(|| RedirectLayer::new(c.max_redirects));
        ServiceBuilder::new().option_layer(redirects).service(outer)
    }
}

impl<ResB> Stack<ResB>
where
    ResB: http_body::Body + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    /// The stack over `inner` when every layer of the default configuration is on and there
    /// are no credentials nor custom layers, as one concrete type: the same layers in the
    /// same order as [`build`](Self::build), without its `Either`s (each of which is one more
    /// move of the future below it on every call). For any other shape, `inner` back.
    pub(crate) fn build_all_on<S>(&self, inner: S) -> Result<impl TopStack<ResB>, S>
    where
        S: Service<Request<AttemptBody>, Response = Response<ResB>> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        let c = &self.config;
        let (Some(retry), Some(breaker), Some(metrics), None, true, true) = (
            &self.retry,
            &self.breaker,
            &self.metrics,
            &self.auth,
            self.custom.is_empty(),
            c.max_redirects > 0,
        ) else {
            return Err(inner);
        };
        let attempt = ServiceBuilder::new()
            .layer(breaker.clone())
            .layer(attempt_trace(c, metrics))
            .layer(AttemptTimeoutLayer::new(c.attempt_timeout))
            .service(inner)
            .map_request(replay_once::<ReplayBody<Body>>);
        Ok(ServiceBuilder::new()
            .layer(RedirectLayer::new(c.max_redirects))
            .layer(logical_trace(c))
            // The total timeout without a timer of its own: every layer below is bounded by
            // the deadline in this shape (see `DeadlineLayer`).
            .layer(DeadlineLayer::new(c.timeout))
            .layer(retry.clone())
            .service(attempt))
    }
}

/// The attempt span, with the client's metrics and `traceparent` setting; both shapes use it.
fn attempt_trace(c: &ClientConfig, metrics: &HttpClientMetrics) -> TraceLayer {
    TraceLayer::attempt()
        .metrics(metrics.clone())
        .trace_context(c.trace.propagate.trace_context())
}

/// The logical span: it shares one trace among a call's attempts. It injects nothing itself
/// (each attempt does), except with `Propagate::Always`, where it starts the call's trace
/// even when nothing records it, so that every attempt carries the same one.
fn logical_trace(c: &ClientConfig) -> TraceLayer {
    TraceLayer::logical().trace_context(match c.trace.propagate {
        Propagate::Always => TraceContext::Always,
        _ => TraceContext::Off,
    })
}

/// A request whose body is sent once, kept by no layer (where retry or auth is off).
fn replay_once<B>(req: Request<B>) -> Request<ReplayBody<B>> {
    req.map(ReplayBody::once)
}

fn retry_layer(c: &ClientConfig) -> Result<RetryLayer, Error> {
    let r = &c.retry;
    let backoff = Backoff::exponential(r.backoff_base, r.backoff_max).with_jitter(Jitter::Full);
    let budget = Budget::new(
        r.budget_ratio,
        r.budget_min_per_second,
        Duration::from_secs(10),
    );
    RetryLayer::builder()
        .max_retries(r.max_retries)
        .backoff(backoff)
        .budget(budget)
        .max_retry_after(r.max_retry_after)
        .max_replay_bytes(r.max_replay_bytes)
        .build()
        .map_err(|e| Error::builder_source("retry", e))
}

fn breaker_layer(c: &ClientConfig) -> Result<BreakerLayer, Error> {
    let b = &c.breaker;
    // One-second buckets, as many as the breaker allows (64): a longer window gets longer
    // buckets rather than an error at build time.
    let buckets = u32::try_from(b.window.as_secs().clamp(1, 64)).unwrap_or(64);
    let config = BreakerConfig::default()
        .consecutive_failures(b.consecutive_failures)
        .failure_rate(b.failure_rate, b.minimum_calls)
        .window(b.window, buckets)
        .open_duration(b.open_for)
        .max_open_duration(b.max_open_for)
        .half_open_probes(b.half_open_probes);
    let builder = BreakerLayer::builder().config(config);
    let builder = match b.clock {
        BreakerClock::Coarse => builder,
        BreakerClock::Tokio => builder.clock(flext_breaker::TokioClock),
    };
    builder
        .build()
        .map_err(|e| Error::builder_source("breaker", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use bytes::Bytes;
    use flext_core::{Attempt, Deadline};
    use http::StatusCode;
    use http_body_util::Full;
    use tower::service_fn;

    /// What the inner service saw of one attempt.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Seen {
        path: String,
        attempt: u32,
        /// The trace id of the `traceparent` it carried.
        trace: Option<String>,
        deadline: bool,
    }

    /// The default stack over `inner`, unboxed (`all_on`) or as the general shape builds it.
    fn shaped<S>(stack: &Stack<Full<Bytes>>, inner: S, all_on: bool) -> StackService<Full<Bytes>>
    where
        S: Service<Request<AttemptBody>, Response = Response<Full<Bytes>>, Error = BoxError>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        if !all_on {
            return BoxCloneSyncService::new(stack.build(inner));
        }
        match stack.build_all_on(inner) {
            Ok(svc) => BoxCloneSyncService::new(svc),
            Err(_) => panic!("the default configuration has every layer on"),
        }
    }

    /// 503, then a 302 to `/next`, then 200; every attempt recorded.
    async fn run(all_on: bool, config: &ClientConfig) -> (StatusCode, Vec<Seen>) {
        let stack: Stack<Full<Bytes>> = stack(config).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let inner = service_fn({
            let seen = Arc::clone(&seen);
            move |req: Request<AttemptBody>| {
                let mut seen = seen.lock().unwrap();
                seen.push(Seen {
                    path: req.uri().path().to_owned(),
                    attempt: Attempt::of(&req).number(),
                    trace: flext_trace::TraceParent::from_headers(req.headers())
                        .map(|tp| tp.trace_id().to_string()),
                    deadline: Deadline::of(&req).is_some(),
                });
                let mut res = Response::new(Full::new(Bytes::new()));
                match seen.len() {
                    1 => *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE,
                    2 => {
                        *res.status_mut() = StatusCode::FOUND;
                        res.headers_mut()
                            .insert(http::header::LOCATION, "/next".parse().unwrap());
                    }
                    _ => {}
                }
                std::future::ready(Ok::<_, BoxError>(res))
            }
        });
        let svc = shaped(&stack, inner, all_on);
        let req = Request::get("http://a.test/first")
            .body(Body::empty())
            .unwrap();
        let status = svc.oneshot(req).await.unwrap().status();
        let seen = std::mem::take(&mut *seen.lock().unwrap());
        (status, seen)
    }

    #[tokio::test(start_paused = true)]
    async fn the_unboxed_default_stack_and_the_general_one_behave_alike() {
        let seen = |path: &str, attempt| Seen {
            path: path.to_owned(),
            attempt,
            trace: None,
            deadline: true,
        };
        // No subscriber records the spans: no trace is made up.
        let expected = vec![seen("/first", 0), seen("/first", 1), seen("/next", 0)];
        let mut always = ClientConfig::default();
        always.trace.propagate = Propagate::Always;
        for all_on in [true, false] {
            let default = run(all_on, &ClientConfig::default()).await;
            assert_eq!(
                default,
                (StatusCode::OK, expected.clone()),
                "all_on: {all_on}"
            );

            // A trace on every call: a call's attempts share one; a redirect is a new call.
            let (status, mut seen) = run(all_on, &always).await;
            let traces: Vec<_> = seen.iter_mut().map(|s| s.trace.take()).collect();
            assert_eq!((status, seen), (StatusCode::OK, expected.clone()));
            assert!(traces[0].is_some(), "all_on: {all_on}");
            assert_eq!(traces[0], traces[1], "all_on: {all_on}");
            assert_ne!(traces[1], traces[2], "all_on: {all_on}");
        }
    }

    /// A server that never answers: both shapes give up at the total timeout, to the
    /// instant, with a timeout error (the unboxed one has no total-timeout timer of its own).
    #[tokio::test(start_paused = true)]
    async fn both_shapes_end_a_hung_call_at_the_total_timeout() {
        let config = ClientConfig::default();
        for all_on in [true, false] {
            // A stack each: they would share a retry budget and breakers otherwise.
            let stack: Stack<Full<Bytes>> = stack(&config).unwrap();
            let inner = service_fn(|_req: Request<AttemptBody>| {
                std::future::pending::<Result<Response<Full<Bytes>>, BoxError>>()
            });
            let svc = shaped(&stack, inner, all_on);
            let start = tokio::time::Instant::now();
            let req = Request::get("http://a.test/").body(Body::empty()).unwrap();
            let err = svc.oneshot(req).await.unwrap_err();
            assert_eq!(start.elapsed(), config.timeout, "all_on: {all_on}");
            let timed_out = err
                .downcast_ref::<crate::timeout::TotalTimeoutElapsed>()
                .is_some()
                || flext_core::TransportError::find(&*err)
                    .is_some_and(flext_core::TransportError::is_timeout);
            assert!(timed_out, "all_on: {all_on}: {err:?}");
        }
    }

    #[test]
    fn only_the_default_shape_is_built_unboxed() {
        let inner = service_fn(|_req: Request<AttemptBody>| {
            std::future::ready(Ok::<_, BoxError>(Response::new(Full::new(Bytes::new()))))
        });
        let off = ClientConfig {
            max_redirects: 0,
            ..ClientConfig::default()
        };
        let stack: Stack<Full<Bytes>> = stack(&off).unwrap();
        assert!(stack.build_all_on(inner).is_err());
    }
}
