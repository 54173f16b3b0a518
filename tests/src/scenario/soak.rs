//! Scenario 1, soak: many requests at 64 concurrent with 10% seeded faults (503, 503 with
//! `Retry-After: 0`, connection drops, refused streams, delays).
//!
//! Half the requests go over HTTP/1.1 (the default client on plain `http`), half over h2c,
//! because a refused stream exists only in HTTP/2 and a dropped connection belongs to one
//! request only in HTTP/1.1 (dropping an HTTP/2 connection fails every stream on it, which
//! is the GOAWAY scenario's business). Request `n` is planned from `(seed, n)` alone: its
//! protocol, its method (GET, POST, or POST with an `Idempotency-Key`) and its fault, played
//! by the server from the `x-testkit-script` header and counted per `x-testkit-id`.
//!
//! What is checked, per request, against the server's counts: every GET and every keyed POST
//! ends in `200`; a POST without a key was executed at most once (the server counted it once,
//! or twice when its first stream was refused, which the server never executes); a POST that
//! failed reports a status or a typed error kind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flext_api::Client;
use flext_testkit::{ID_HEADER, SCRIPT_HEADER, TestServer};

use super::{Protocol, breaker_rejections, budget_exhausted, mix, ratio};
use crate::load::{Limit, Limiter, Outcome, workers};
use crate::report::{Counts, Figure, Histogram, duration};

/// Where the faulty requests fall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Exactly one faulty request in each block of `1 / fault_rate` requests, at a seeded
    /// position: the rate holds in every window, as a steadily flaky server's would.
    Stratified,
    /// Each request is faulty with probability `fault_rate`, independently: runs of faults
    /// happen, and five failures in a row open the default breaker (see `docs/reliability.md`).
    Independent,
}

/// The soak's size and mix.
#[derive(Debug, Clone, PartialEq)]
pub struct SoakParams {
    /// Requests in all (100,000 at full size).
    pub requests: u64,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Share of requests the server fails once (then answers 200).
    pub fault_rate: f64,
    /// Where the faults fall.
    pub placement: Placement,
    /// The delay of a delayed response.
    pub delay: Duration,
    /// Share of requests that are POSTs.
    pub post_share: f64,
    /// Share of POSTs that carry an `Idempotency-Key`.
    pub keyed_post_share: f64,
    /// Seed of the plan.
    pub seed: u64,
}

impl Default for SoakParams {
    /// The small size the tests use: 2,000 requests at 64 concurrent, 10% faults.
    fn default() -> SoakParams {
        SoakParams {
            requests: 2_000,
            concurrency: 64,
            fault_rate: 0.10,
            placement: Placement::Stratified,
            delay: Duration::from_millis(20),
            post_share: 0.25,
            keyed_post_share: 0.2,
            seed: 11,
        }
    }
}

/// The method of a planned request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`: idempotent, always retried.
    Get,
    /// `POST` without an `Idempotency-Key`: resent only when it certainly was not sent.
    Post,
    /// `POST` with an `Idempotency-Key`: retried like a GET.
    KeyedPost,
}

/// The fault the server plays on a request's first attempt (later attempts get `200`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// None: `200`.
    None,
    /// `503 Service Unavailable`.
    Unavailable,
    /// `503` with `Retry-After: 0`.
    UnavailableRetryAfter0,
    /// The connection is closed without a response (HTTP/1.1 requests only).
    Drop,
    /// `RST_STREAM(REFUSED_STREAM)`: never processed (h2c requests only).
    RefusedStream,
    /// `200` after [`SoakParams::delay`].
    Delay,
}

impl Fault {
    /// A short name for the report.
    pub fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Unavailable => "503",
            Fault::UnavailableRetryAfter0 => "503 retry-after=0",
            Fault::Drop => "drop",
            Fault::RefusedStream => "refused stream",
            Fault::Delay => "delay",
        }
    }

    fn script(self, delay: Duration) -> Option<String> {
        Some(match self {
            Fault::None => return None,
            Fault::Unavailable => "503,200".into(),
            Fault::UnavailableRetryAfter0 => "503;retry-after=0,200".into(),
            Fault::Drop => "drop,200".into(),
            Fault::RefusedStream => "reset,200".into(),
            Fault::Delay => format!("200;delay={}ms", delay.as_millis()),
        })
    }

    /// How many of the first `seen` requests the server counted for this plan it did not
    /// execute: a refused stream is rejected before the handler runs.
    fn not_executed(self, seen: u64) -> u64 {
        u64::from(self == Fault::RefusedStream && seen > 0)
    }
}

/// What request `n` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The protocol (even requests HTTP/1.1, odd ones h2c).
    pub protocol: Protocol,
    /// The method.
    pub method: Method,
    /// The fault of its first attempt.
    pub fault: Fault,
}

impl SoakParams {
    /// The plan of request `n`, from the seed alone.
    pub fn plan(&self, n: u64) -> Plan {
        let protocol = if n.is_multiple_of(2) {
            Protocol::Http1
        } else {
            Protocol::H2c
        };
        let mut rng = fastrand::Rng::with_seed(mix(self.seed, n));
        let method = if rng.f64() >= self.post_share {
            Method::Get
        } else if rng.f64() < self.keyed_post_share {
            Method::KeyedPost
        } else {
            Method::Post
        };
        let faulty = match self.placement {
            Placement::Independent => rng.f64() < self.fault_rate,
            Placement::Stratified if self.fault_rate <= 0.0 => false,
            Placement::Stratified => {
                let block = (1.0 / self.fault_rate).round().max(1.0) as u64;
                let mut block_rng = fastrand::Rng::with_seed(mix(!self.seed, n / block));
                n % block == block_rng.u64(0..block)
            }
        };
        let fault = if !faulty {
            Fault::None
        } else {
            match (rng.u8(0..4), protocol) {
                (0, _) => Fault::Unavailable,
                (1, _) => Fault::UnavailableRetryAfter0,
                (2, Protocol::Http1) => Fault::Drop,
                (2, Protocol::H2c) => Fault::RefusedStream,
                _ => Fault::Delay,
            }
        };
        Plan {
            protocol,
            method,
            fault,
        }
    }
}

/// The soak's figures.
#[derive(Debug, Clone)]
pub struct SoakReport {
    /// The parameters it ran with.
    pub params: SoakParams,
    /// Requests sent.
    pub requests: u64,
    /// GETs among them.
    pub gets: u64,
    /// POSTs without an `Idempotency-Key`.
    pub posts: u64,
    /// POSTs with an `Idempotency-Key`.
    pub keyed_posts: u64,
    /// Faults injected, by kind.
    pub faults: Counts,
    /// Requests the server received (every attempt, refused streams and drops included).
    pub server_attempts: u64,
    /// `server_attempts / requests`.
    pub attempts_per_request: f64,
    /// Outcomes of every request: status or error kind.
    pub outcomes: Counts,
    /// GETs that did not end in `200`, by outcome.
    pub get_failures: Counts,
    /// Keyed POSTs that did not end in `200`, by outcome.
    pub keyed_post_failures: Counts,
    /// POSTs without a key that did not end in `200`, by outcome.
    pub post_failures: Counts,
    /// Of those, the ones with no status and no named error kind (`other`).
    pub post_failures_untyped: u64,
    /// POSTs without a key the server executed more than once.
    pub posts_executed_twice: u64,
    /// The most times the server executed one POST without a key.
    pub max_post_executions: u64,
    /// Calls refused by an open circuit.
    pub breaker_rejections: u64,
    /// Retries the budget refused.
    pub budget_exhausted: u64,
    /// Time per request, retries included.
    pub latency: Histogram,
    /// Time for the whole run.
    pub elapsed: Duration,
}

impl SoakReport {
    /// The figures, for a table.
    pub fn figures(&self) -> Vec<Figure> {
        let p = &self.params;
        vec![
            Figure::new(
                "requests (GET / POST / POST with key)",
                format!(
                    "{} ({} / {} / {})",
                    self.requests, self.gets, self.posts, self.keyed_posts
                ),
            ),
            Figure::new("concurrency", p.concurrency),
            Figure::new(
                "faults injected",
                format!(
                    "{} ({:.1}%, {:?}): {}",
                    self.faults.total(),
                    100.0 * ratio(self.faults.total(), self.requests),
                    p.placement,
                    self.faults
                ),
            ),
            Figure::new("attempts the server counted", self.server_attempts),
            Figure::new(
                "attempts per request",
                format!("{:.3}", self.attempts_per_request),
            ),
            Figure::new("GETs failed", self.get_failures.total()),
            Figure::new("POSTs with key failed", self.keyed_post_failures.total()),
            Figure::new(
                "POSTs without key executed more than once",
                self.posts_executed_twice,
            ),
            Figure::new(
                "POSTs without key failed (typed)",
                format!("{} ({})", self.post_failures.total(), self.post_failures),
            ),
            Figure::new("failures without a typed kind", self.post_failures_untyped),
            Figure::new("breaker rejections", self.breaker_rejections),
            Figure::new("retries refused by the budget", self.budget_exhausted),
            Figure::new("latency p50 / p99 / max", self.latency.summary()),
            Figure::new(
                "elapsed (throughput)",
                format!(
                    "{} ({:.0} req/s)",
                    duration(self.elapsed),
                    self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
                ),
            ),
        ]
    }
}

/// One finished request.
#[derive(Debug, Clone, Copy)]
struct Done {
    n: u64,
    outcome: Outcome,
}

/// Runs the soak; see the [module docs](self).
///
/// # Errors
///
/// If the server does not start or a client does not build.
pub async fn soak(params: SoakParams) -> Result<SoakReport, crate::Error> {
    let server = TestServer::builder().auto().start().await?;
    let h1 = Protocol::Http1.client(&server).build()?;
    let h2 = Protocol::H2c.client(&server).build()?;
    let limiter = Limiter::new(Limit::Requests(params.requests));
    let ctx = Arc::new((params.clone(), h1.clone(), h2.clone(), limiter));

    let started = Instant::now();
    let results = workers(params.concurrency, |_| {
        let ctx = Arc::clone(&ctx);
        async move {
            let (params, h1, h2, limiter) = &*ctx;
            let mut latency = Histogram::default();
            let mut done = Vec::new();
            while let Some(n) = limiter.take() {
                let plan = params.plan(n);
                let outcome = send(params, plan, n, h1, h2, &mut latency).await;
                done.push(Done { n, outcome });
            }
            (latency, done)
        }
    })
    .await;
    let elapsed = started.elapsed();

    let stats = server.stats();
    let mut report = SoakReport {
        params: params.clone(),
        requests: 0,
        gets: 0,
        posts: 0,
        keyed_posts: 0,
        faults: Counts::default(),
        server_attempts: stats.requests,
        attempts_per_request: 0.0,
        outcomes: Counts::default(),
        get_failures: Counts::default(),
        keyed_post_failures: Counts::default(),
        post_failures: Counts::default(),
        post_failures_untyped: 0,
        posts_executed_twice: 0,
        max_post_executions: 0,
        breaker_rejections: breaker_rejections(&h1) + breaker_rejections(&h2),
        budget_exhausted: budget_exhausted(&h1) + budget_exhausted(&h2),
        latency: Histogram::default(),
        elapsed,
    };
    for (latency, done) in &results {
        report.latency.merge(latency);
        for d in done {
            let plan = params.plan(d.n);
            report.requests += 1;
            if plan.fault != Fault::None {
                report.faults.add(plan.fault.name());
            }
            report.outcomes.add(&d.outcome.label());
            let ok = d.outcome.is_ok();
            match plan.method {
                Method::Get => {
                    report.gets += 1;
                    if !ok {
                        report.get_failures.add(&d.outcome.label());
                    }
                }
                Method::KeyedPost => {
                    report.keyed_posts += 1;
                    if !ok {
                        report.keyed_post_failures.add(&d.outcome.label());
                    }
                }
                Method::Post => {
                    report.posts += 1;
                    let seen = stats.requests_for_id(&id(d.n));
                    let executed = seen - plan.fault.not_executed(seen);
                    report.max_post_executions = report.max_post_executions.max(executed);
                    if executed > 1 {
                        report.posts_executed_twice += 1;
                    }
                    if !ok {
                        report.post_failures.add(&d.outcome.label());
                        if !d.outcome.is_typed() {
                            report.post_failures_untyped += 1;
                        }
                    }
                }
            }
        }
    }
    report.attempts_per_request = ratio(report.server_attempts, report.requests);
    Ok(report)
}

fn id(n: u64) -> String {
    format!("soak-{n}")
}

async fn send(
    params: &SoakParams,
    plan: Plan,
    n: u64,
    h1: &Client,
    h2: &Client,
    latency: &mut Histogram,
) -> Outcome {
    let client = match plan.protocol {
        Protocol::Http1 => h1,
        Protocol::H2c => h2,
    };
    let id = id(n);
    let mut request = match plan.method {
        Method::Get => client.get("soak/items"),
        Method::Post => client.post("soak/orders").body(format!("order {n}")),
        Method::KeyedPost => client
            .post("soak/orders")
            .idempotency_key(&id)
            .body(format!("order {n}")),
    }
    .header(ID_HEADER, &id);
    if let Some(script) = plan.fault.script(params.delay) {
        request = request.header(SCRIPT_HEADER, &script);
    }
    let start = Instant::now();
    let (outcome, _attempts) = Outcome::of(request.send().await).await;
    latency.record(start.elapsed());
    outcome
}
