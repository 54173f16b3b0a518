//! Scenario 4, graceful restart under load: the server sends GOAWAY on every HTTP/2
//! connection again and again while 64 callers send GETs over h2c; no idempotent request
//! may fail. `tests/tests/stack.rs` has the same check with fast backoffs and no breaker;
//! this one keeps the default stack (retry, breaker) and counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flext_testkit::TestServer;

use super::{Protocol, breaker_rejections, ratio};
use crate::load::{Outcome, workers};
use crate::report::{Counts, Figure, Histogram, duration};

/// The graceful-restart run's size.
#[derive(Debug, Clone, PartialEq)]
pub struct GoawayParams {
    /// Concurrent callers.
    pub callers: usize,
    /// GETs each caller sends, one after the other.
    pub requests_per_caller: usize,
    /// Time between two GOAWAYs.
    pub goaway_every: Duration,
    /// The server's latency per response, so that streams are in flight when a GOAWAY goes.
    pub server_latency: Duration,
}

impl Default for GoawayParams {
    /// The small size the tests use: 64 callers × 10 GETs, a GOAWAY every 20 ms, 2 ms latency.
    fn default() -> GoawayParams {
        GoawayParams {
            callers: 64,
            requests_per_caller: 10,
            goaway_every: Duration::from_millis(20),
            server_latency: Duration::from_millis(2),
        }
    }
}

/// The graceful-restart run's figures.
#[derive(Debug, Clone)]
pub struct GoawayReport {
    /// The parameters it ran with.
    pub params: GoawayParams,
    /// GETs sent.
    pub requests: u64,
    /// GETs that did not end in `200`, by outcome.
    pub failures: Counts,
    /// GOAWAYs the server sent (to every open connection each time).
    pub goaways: u64,
    /// Connections the server accepted.
    pub connections: u64,
    /// Requests the server received.
    pub server_attempts: u64,
    /// `server_attempts / requests`.
    pub attempts_per_request: f64,
    /// Connections the pool closed after a GOAWAY.
    pub pool_closed_goaway: u64,
    /// Calls refused by an open circuit.
    pub breaker_rejections: u64,
    /// Time per request.
    pub latency: Histogram,
    /// Time for the whole run.
    pub elapsed: Duration,
}

impl GoawayReport {
    /// The figures, for a table.
    pub fn figures(&self) -> Vec<Figure> {
        vec![
            Figure::new(
                "load",
                format!(
                    "{} callers × {} GETs over h2c, GOAWAY every {}, server latency {}",
                    self.params.callers,
                    self.params.requests_per_caller,
                    duration(self.params.goaway_every),
                    duration(self.params.server_latency)
                ),
            ),
            Figure::new("requests", self.requests),
            Figure::new(
                "failed",
                format!("{} ({})", self.failures.total(), self.failures),
            ),
            Figure::new("GOAWAY rounds", self.goaways),
            Figure::new("connections accepted by the server", self.connections),
            Figure::new(
                "pool connections closed after GOAWAY",
                self.pool_closed_goaway,
            ),
            Figure::new(
                "attempts per request",
                format!("{:.3}", self.attempts_per_request),
            ),
            Figure::new("breaker rejections", self.breaker_rejections),
            Figure::new("latency p50 / p99 / max", self.latency.summary()),
            Figure::new("elapsed", duration(self.elapsed)),
        ]
    }
}

/// Runs the graceful-restart scenario; see the [module docs](self).
///
/// # Errors
///
/// If the server does not start or the client does not build.
pub async fn goaway(params: GoawayParams) -> Result<GoawayReport, crate::Error> {
    let server = Arc::new(
        TestServer::builder()
            .h2c()
            .latency(params.server_latency)
            .start()
            .await?,
    );
    let client = Protocol::H2c.client(&server).build()?;
    let done = Arc::new(AtomicBool::new(false));
    let goaways = Arc::new(AtomicU64::new(0));
    let sender = {
        let (server, done, goaways) =
            (Arc::clone(&server), Arc::clone(&done), Arc::clone(&goaways));
        let every = params.goaway_every;
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                tokio::time::sleep(every).await;
                server.goaway();
                goaways.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let started = Instant::now();
    let per_caller = params.requests_per_caller;
    let results = workers(params.callers, |w| {
        let client = client.clone();
        async move {
            let mut failures = Counts::default();
            let mut latency = Histogram::default();
            for i in 0..per_caller {
                let start = Instant::now();
                let (outcome, _) =
                    Outcome::of(client.get(format!("goaway/{w}/{i}")).send().await).await;
                latency.record(start.elapsed());
                if !outcome.is_ok() {
                    failures.add(&outcome.label());
                }
            }
            (failures, latency)
        }
    })
    .await;
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    if let Err(e) = sender.await {
        std::panic::resume_unwind(e.into_panic());
    }

    let mut failures = Counts::default();
    let mut latency = Histogram::default();
    for (f, l) in &results {
        failures.merge(f);
        latency.merge(l);
    }
    let stats = server.stats();
    let requests = (params.callers * per_caller) as u64;
    Ok(GoawayReport {
        params,
        requests,
        failures,
        goaways: goaways.load(Ordering::Relaxed),
        connections: stats.connections_accepted,
        server_attempts: stats.requests,
        attempts_per_request: ratio(stats.requests, requests),
        pool_closed_goaway: client
            .pool_metrics()
            .origins
            .iter()
            .map(|o| o.counters.closed_goaway)
            .sum(),
        breaker_rejections: breaker_rejections(&client),
        latency,
        elapsed,
    })
}
