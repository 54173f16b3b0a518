//! Scenario 2, retry storm: the server answers `503` to everything while 64 callers keep
//! sending GETs.
//!
//! - With the breaker turned off, what keeps the load on the server near one attempt per
//!   request is the retry budget (20% of requests plus 10 retries a second): the figure is the
//!   attempts the server counted per request, at most 1.25 (1.2 plus the floor of 100
//!   retries spread over the run).
//! - With the default stack, the breaker opens after five failures in a row and its
//!   rejections come back at once: the server sees none of the requests sent once it is open
//!   (it stays open 30 s, longer than the storm; each request carries its start time in its
//!   `x-testkit-id`, so the server's counts say when what it saw was sent), and the figure is
//!   the time a rejected call takes.
//! - [`storm_reqwest_retry`] (feature `reqwest`) runs reqwest-middleware with reqwest-retry's
//!   README policy, `ExponentialBackoff::builder().build_with_max_retries(3)`, the same way:
//!   nothing bounds its retries, so every request costs four attempts.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use flext_api::Client;
use flext_api::breaker::State;
use flext_testkit::{ID_HEADER, RandomFaults, TestServer};

use super::{budget_exhausted, ratio};
use crate::load::{Limit, Limiter, Outcome, workers};
use crate::report::{Counts, Figure, Histogram, duration};

/// The storm's size.
#[derive(Debug, Clone, PartialEq)]
pub struct StormParams {
    /// How long the storm lasts (10 s at full size).
    pub limit: Limit,
    /// Callers sending at once.
    pub concurrency: usize,
    /// Whether the client keeps its breaker (the default stack) or turns it off.
    pub breaker: bool,
}

impl Default for StormParams {
    /// The small size the tests use: 3,000 requests at 64 concurrent, breaker off.
    fn default() -> StormParams {
        StormParams {
            limit: Limit::Requests(3_000),
            concurrency: 64,
            breaker: false,
        }
    }
}

/// What the breaker did during a storm with the default stack.
#[derive(Debug, Clone)]
pub struct BreakerFigures {
    /// The breaker's state at the end.
    pub state_at_end: Option<State>,
    /// The breaker's state halfway through.
    pub state_halfway: Option<State>,
    /// Calls refused by the open circuit.
    pub rejections: u64,
    /// When the first refused call returned, since the storm began: the breaker was open
    /// from then on.
    pub opened_after: Option<Duration>,
    /// Requests the server saw that were sent after the breaker was open (0: none).
    pub server_requests_sent_while_open: u64,
    /// Time a call refused on its first attempt took, the whole stack included (the calls in
    /// flight when the breaker opened are refused on their retry, after a backoff; they are
    /// counted in `rejections` but not timed here).
    pub rejection_latency: Histogram,
}

/// A storm's figures.
#[derive(Debug, Clone)]
pub struct StormReport {
    /// Which client ran it.
    pub client: String,
    /// The parameters it ran with.
    pub params: StormParams,
    /// Requests sent.
    pub requests: u64,
    /// Requests the server received.
    pub server_attempts: u64,
    /// `server_attempts / requests`.
    pub attempts_per_request: f64,
    /// Outcomes: status or error kind.
    pub outcomes: Counts,
    /// Retries the budget refused (flext only).
    pub budget_exhausted: u64,
    /// Time per request, retries and backoff included.
    pub latency: Histogram,
    /// Time from the first request to the last response.
    pub elapsed: Duration,
    /// With the breaker on: what it did.
    pub breaker: Option<BreakerFigures>,
}

impl StormReport {
    /// The figures, for a table.
    pub fn figures(&self) -> Vec<Figure> {
        let mut figures = vec![
            Figure::new("client", &self.client),
            Figure::new(
                "storm",
                match self.params.limit {
                    Limit::Requests(n) => format!("{n} requests"),
                    Limit::For(d) => format!("{} of requests", duration(d)),
                },
            ),
            Figure::new("concurrency", self.params.concurrency),
            Figure::new("requests", self.requests),
            Figure::new("attempts the server counted", self.server_attempts),
            Figure::new(
                "attempts per request",
                format!("{:.3}", self.attempts_per_request),
            ),
            Figure::new("outcomes", &self.outcomes),
            Figure::new("retries refused by the budget", self.budget_exhausted),
            Figure::new("latency p50 / p99 / max", self.latency.summary()),
            Figure::new("elapsed", duration(self.elapsed)),
        ];
        if let Some(b) = &self.breaker {
            figures.extend([
                Figure::new(
                    "breaker state halfway / at the end",
                    format!("{:?} / {:?}", b.state_halfway, b.state_at_end),
                ),
                Figure::new("rejections (circuit open)", b.rejections),
                Figure::new(
                    "first rejection after",
                    b.opened_after.map_or_else(|| "never".into(), duration),
                ),
                Figure::new(
                    "server requests sent while open",
                    b.server_requests_sent_while_open,
                ),
                Figure::new(
                    "rejection latency p50 / p99 / max",
                    b.rejection_latency.summary(),
                ),
                Figure::new(
                    "rejections over 1 ms",
                    format!(
                        "{:.3}%",
                        100.0
                            * (1.0
                                - b.rejection_latency
                                    .fraction_within(Duration::from_millis(1)))
                    ),
                ),
            ]);
        }
        figures
    }
}

/// A server that answers `503` to everything.
async fn unavailable_server() -> Result<TestServer, crate::Error> {
    Ok(TestServer::builder()
        .http1()
        .random_faults(RandomFaults {
            seed: 2,
            p_503: 1.0,
            ..RandomFaults::default()
        })
        .start()
        .await?)
}

/// What every worker of a storm collects.
#[derive(Debug, Default)]
struct Tally {
    outcomes: Counts,
    latency: Histogram,
    rejections: Histogram,
    /// The earliest end of a refused call, since the storm began.
    first_rejection: Option<Duration>,
}

/// Runs `call` from `concurrency` workers until the limit, passing each call the time since
/// the storm began; `halfway` runs once, when half the storm has passed.
async fn drive<F, Fut>(
    params: &StormParams,
    call: F,
    halfway: impl Fn() + Send + Sync + 'static,
) -> (Tally, u64, Duration)
where
    F: Fn(Duration) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = (Outcome, u32)> + Send,
{
    let limiter = Limiter::new(params.limit);
    let started = Instant::now();
    let half = match params.limit {
        Limit::Requests(n) => Half::Request(n / 2),
        Limit::For(d) => Half::Time(started + d / 2),
    };
    let ctx = Arc::new((limiter, call, halfway, OnceLock::new()));
    let tallies = workers(params.concurrency, |_| {
        let ctx = Arc::clone(&ctx);
        async move {
            let (limiter, call, halfway, once) = &*ctx;
            let mut tally = Tally::default();
            while let Some(n) = limiter.take() {
                if half.reached(n) {
                    once.get_or_init(halfway);
                }
                let start = Instant::now();
                let (outcome, attempts) = call(start - started).await;
                let took = start.elapsed();
                tally.latency.record(took);
                if outcome == Outcome::Error("circuit_open") {
                    if attempts <= 1 {
                        tally.rejections.record(took);
                    }
                    let end = start - started + took;
                    tally.first_rejection = Some(tally.first_rejection.map_or(end, |f| f.min(end)));
                }
                tally.outcomes.add(&outcome.label());
                // A refused call completes without waiting on anything, so a caller looping on
                // them would never give its thread back: yield, as any real caller's next
                // await would.
                tokio::task::yield_now().await;
            }
            tally
        }
    })
    .await;
    let elapsed = started.elapsed();
    let mut all = Tally::default();
    for t in &tallies {
        all.outcomes.merge(&t.outcomes);
        all.latency.merge(&t.latency);
        all.rejections.merge(&t.rejections);
        all.first_rejection = match (all.first_rejection, t.first_rejection) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    (all, ctx.0.taken(), elapsed)
}

#[derive(Debug, Clone, Copy)]
enum Half {
    Request(u64),
    Time(Instant),
}

impl Half {
    fn reached(self, n: u64) -> bool {
        match self {
            Half::Request(half) => n >= half,
            Half::Time(at) => Instant::now() >= at,
        }
    }
}

/// Runs the storm against a default [`Client`] (breaker on or off); see the
/// [module docs](self).
///
/// # Errors
///
/// If the server does not start or the client does not build.
pub async fn storm(params: StormParams) -> Result<StormReport, crate::Error> {
    let server = unavailable_server().await?;
    let mut builder = Client::builder().base_url(&server.url("/"));
    if !params.breaker {
        builder = builder.no_breaker();
    }
    let client = builder.build()?;
    let origin = flext_api::core::Origin::from_uri(&server.uri("/"))?;

    let halfway_figures = Arc::new(OnceLock::new());
    let halfway = {
        let (client, origin) = (client.clone(), origin.clone());
        let figures = Arc::clone(&halfway_figures);
        move || {
            let _ = figures.set(client.stack().breakers().and_then(|h| h.state(&origin)));
        }
    };
    let with_ids = params.breaker;
    let call = {
        let client = client.clone();
        move |since_start: Duration| {
            let mut request = client.get("storm");
            if with_ids {
                // Only for the breaker run, whose server sees few requests: the server keeps
                // a counter per id.
                let id = format!("storm-{}", since_start.as_micros());
                request = request.header(ID_HEADER, &id);
            }
            async move { Outcome::of(request.send().await).await }
        }
    };
    let (tally, requests, elapsed) = drive(&params, call, halfway).await;

    let stats = server.stats();
    let server_attempts = stats.requests;
    let breaker = client.stack().breakers().map(|handle| {
        let state_halfway = halfway_figures.get().copied().flatten();
        let opened_us = tally.first_rejection.map_or(u128::MAX, |d| d.as_micros());
        let sent_while_open = stats
            .requests_by_id
            .iter()
            .filter(|(id, _)| {
                id.strip_prefix("storm-")
                    .and_then(|us| us.parse::<u128>().ok())
                    .is_some_and(|us| us > opened_us)
            })
            .map(|(_, n)| n)
            .sum();
        BreakerFigures {
            state_at_end: handle.state(&origin),
            state_halfway,
            rejections: tally.outcomes.get("circuit_open"),
            opened_after: tally.first_rejection,
            server_requests_sent_while_open: sent_while_open,
            rejection_latency: tally.rejections.clone(),
        }
    });
    Ok(StormReport {
        client: if params.breaker {
            "flext, default stack".into()
        } else {
            "flext, breaker off".into()
        },
        params,
        requests,
        server_attempts,
        attempts_per_request: ratio(server_attempts, requests),
        outcomes: tally.outcomes,
        budget_exhausted: budget_exhausted(&client),
        latency: tally.latency,
        elapsed,
        breaker,
    })
}

/// Runs the storm against reqwest-middleware with reqwest-retry's README policy,
/// `ExponentialBackoff::builder().build_with_max_retries(3)`, over HTTP/1.1 like the flext
/// client; `params.breaker` is ignored (it has none).
///
/// # Errors
///
/// If the server does not start or the client does not build.
#[cfg(feature = "reqwest")]
pub async fn storm_reqwest_retry(params: StormParams) -> Result<StormReport, crate::Error> {
    use reqwest_retry::RetryTransientMiddleware;
    use reqwest_retry::policies::ExponentialBackoff;

    // reqwest is built without a TLS provider of its own; it looks up the process default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = unavailable_server().await?;
    let policy = ExponentialBackoff::builder().build_with_max_retries(3);
    let client = reqwest_middleware::ClientBuilder::new(
        reqwest::Client::builder().no_proxy().http1_only().build()?,
    )
    .with(RetryTransientMiddleware::new_with_policy(policy))
    .build();
    let url = server.url("/storm");
    let call = move |_: Duration| {
        let request = client.get(&url);
        async move {
            match request.send().await {
                Ok(res) => {
                    let status = res.status().as_u16();
                    match res.bytes().await {
                        Ok(_) => (Outcome::Status(status), 0),
                        Err(_) => (Outcome::Error("body"), 0),
                    }
                }
                Err(_) => (Outcome::Error("error"), 0),
            }
        }
    };
    let (tally, requests, elapsed) = drive(&params, call, || {}).await;
    let server_attempts = server.stats().requests;
    Ok(StormReport {
        client: "reqwest-middleware 0.5 + reqwest-retry 0.9, build_with_max_retries(3)".into(),
        params,
        requests,
        server_attempts,
        attempts_per_request: ratio(server_attempts, requests),
        outcomes: tally.outcomes,
        budget_exhausted: 0,
        latency: tally.latency,
        elapsed,
        breaker: None,
    })
}
