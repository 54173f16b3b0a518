//! Scenario 5, slow server: every response head comes long after the attempt timeout.
//!
//! The client (default stack, with a short attempt timeout and total timeout; the breaker off
//! unless asked for, so that the timeouts and not the breaker end the calls) sends a burst of
//! concurrent GETs. What is measured: attempt timeouts fire (the server counts more than one
//! attempt per request: each timed-out attempt is retried while time is left), every call
//! ends with a timeout error no later than the total timeout plus 50 ms (with the breaker on,
//! the timeouts open it and later attempts fail fast with `circuit_open`), and afterwards
//! nothing is left behind: the pool has no request in use or waiting, no connect and no
//! HTTP/2 stream in flight, every open connection is idle, and once the client is dropped the
//! runtime is back to the tasks it had before the client was made. The server runs on a
//! runtime of its own ([`ServerThread`]) so that its held requests are not counted as the
//! client's tasks. The pool's idle timeout is 1 s here (30 s by default) so that its reaper,
//! which ends at its first tick after the pool is gone, ticks every 250 ms.

use std::time::{Duration, Instant};

use flext_testkit::{ID_HEADER, SCRIPT_HEADER, TestServer};

use super::{Protocol, ratio};
use crate::load::{Outcome, settle, workers};
use crate::report::{Counts, Figure, Histogram, duration};
use crate::server::ServerThread;

/// The slow-server run's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SlowParams {
    /// Concurrent GETs.
    pub requests: usize,
    /// The protocol.
    pub protocol: Protocol,
    /// The client's attempt timeout.
    pub attempt_timeout: Duration,
    /// The client's total timeout.
    pub timeout: Duration,
    /// How long the server holds every response head.
    pub server_delay: Duration,
    /// Whether the client keeps its breaker.
    pub breaker: bool,
}

impl Default for SlowParams {
    /// The tests' settings: 32 GETs over HTTP/1.1, attempts of 100 ms, 450 ms in all, heads
    /// held 5 s, breaker off.
    fn default() -> SlowParams {
        SlowParams {
            requests: 32,
            protocol: Protocol::Http1,
            attempt_timeout: Duration::from_millis(100),
            timeout: Duration::from_millis(450),
            server_delay: Duration::from_secs(5),
            breaker: false,
        }
    }
}

/// The pool's state for the server's origin after the burst.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolAfter {
    /// Connections with a request in flight.
    pub in_use: usize,
    /// Requests waiting for a connection.
    pub waiters: usize,
    /// Connects in progress.
    pub connecting: usize,
    /// HTTP/2 streams in flight.
    pub http2_streams: usize,
    /// Open connections (HTTP/1.1 and HTTP/2).
    pub connections: usize,
    /// Idle connections.
    pub idle: usize,
}

impl PoolAfter {
    /// Nothing in flight: every open connection is idle.
    pub fn is_idle(&self) -> bool {
        self.in_use == 0
            && self.waiters == 0
            && self.connecting == 0
            && self.http2_streams == 0
            && self.connections <= self.idle
    }
}

/// The slow-server run's figures.
#[derive(Debug, Clone)]
pub struct SlowReport {
    /// The parameters it ran with.
    pub params: SlowParams,
    /// GETs sent.
    pub requests: u64,
    /// Outcomes (`timeout` expected for all).
    pub outcomes: Counts,
    /// Attempts the server counted for them.
    pub server_attempts: u64,
    /// `server_attempts / requests`: above 1 when attempt timeouts fired and were retried.
    pub attempts_per_request: f64,
    /// Time from sending to the error.
    pub elapsed: Histogram,
    /// The largest time past the total timeout a call took to fail (zero if none was late).
    pub max_overshoot: Duration,
    /// The pool right after the last call returned.
    pub pool_at_end: PoolAfter,
    /// The pool once settled.
    pub pool_settled: PoolAfter,
    /// How long the pool took to settle (`None`: it did not within 2 s).
    pub settled_in: Option<Duration>,
    /// Tasks alive on the runtime before the client was made.
    pub tasks_before: usize,
    /// Tasks alive once the pool settled, the client still alive (its connections' tasks
    /// and the pool's reaper).
    pub tasks_with_client: usize,
    /// Tasks alive once the client was dropped and its tasks ended.
    pub tasks_after: usize,
    /// How long the client's tasks took to end after it was dropped (`None`: not within 2 s).
    pub tasks_ended_in: Option<Duration>,
}

impl SlowReport {
    /// The figures, for a table.
    pub fn figures(&self) -> Vec<Figure> {
        let p = &self.params;
        vec![
            Figure::new(
                "settings",
                format!(
                    "{} GETs over {}, breaker {}, attempt timeout {}, total timeout {}, heads held {}",
                    p.requests,
                    p.protocol.name(),
                    if p.breaker { "on" } else { "off" },
                    duration(p.attempt_timeout),
                    duration(p.timeout),
                    duration(p.server_delay)
                ),
            ),
            Figure::new("outcomes", &self.outcomes),
            Figure::new(
                "attempts per request (server count)",
                format!("{:.2}", self.attempts_per_request),
            ),
            Figure::new("time to the error p50 / p99 / max", self.elapsed.summary()),
            Figure::new("most past the total timeout", duration(self.max_overshoot)),
            Figure::new("pool at the end", format!("{:?}", self.pool_at_end)),
            Figure::new(
                "pool settled (in)",
                format!(
                    "{:?} ({})",
                    self.pool_settled,
                    self.settled_in
                        .map_or_else(|| "not within 2 s".into(), duration)
                ),
            ),
            Figure::new(
                "runtime tasks: before the client / settled / client dropped (in)",
                format!(
                    "{} / {} / {} ({})",
                    self.tasks_before,
                    self.tasks_with_client,
                    self.tasks_after,
                    self.tasks_ended_in
                        .map_or_else(|| "not within 2 s".into(), duration)
                ),
            ),
        ]
    }
}

fn pool_after(client: &flext_api::Client, server: &TestServer) -> PoolAfter {
    let metrics = client.pool_metrics();
    let origin = flext_api::core::Origin::from_uri(&server.uri("/")).ok();
    let Some(o) = origin.as_ref().and_then(|o| metrics.origin(o)) else {
        return PoolAfter::default();
    };
    PoolAfter {
        in_use: o.in_use,
        waiters: o.waiters,
        connecting: o.connecting,
        http2_streams: o.http2_streams_in_flight,
        connections: o.http1_connections + o.http2_connections,
        idle: o.idle,
    }
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Runs the slow-server scenario; see the [module docs](self).
///
/// # Errors
///
/// If the server does not start or the client does not build.
pub async fn slow(params: SlowParams) -> Result<SlowReport, crate::Error> {
    let builder = match params.protocol {
        Protocol::Http1 => TestServer::builder().http1(),
        Protocol::H2c => TestServer::builder().h2c(),
    };
    let remote = ServerThread::start(builder, 1).await?;
    let server = remote.server();
    let tasks_before = alive_tasks();
    let mut client = params
        .protocol
        .client(server)
        .attempt_timeout(params.attempt_timeout)
        .timeout(params.timeout)
        .pool(flext_api::PoolSettings {
            idle_timeout: Some(Duration::from_secs(1)),
            ..flext_api::PoolSettings::default()
        });
    if !params.breaker {
        client = client.no_breaker();
    }
    let client = client.build()?;
    let (warm, _) = Outcome::of(client.get("slow/warm").send().await).await;
    let mut outcomes = Counts::default();
    if !warm.is_ok() {
        outcomes.add(&format!("warm-up {}", warm.label()));
    }

    let held = format!("200;delay={}ms", params.server_delay.as_millis());
    let results = workers(params.requests, |i| {
        let request = client
            .get("slow/held")
            .header(ID_HEADER, &format!("slow-{i}"))
            .header(SCRIPT_HEADER, &held);
        async move {
            let start = Instant::now();
            let (outcome, _) = Outcome::of(request.send().await).await;
            (outcome, start.elapsed())
        }
    })
    .await;
    let pool_at_end = pool_after(&client, server);
    let settled_in = settle(Duration::from_secs(2), || {
        pool_after(&client, server).is_idle()
    })
    .await;
    let pool_settled = pool_after(&client, server);
    let tasks_with_client = alive_tasks();
    drop(client);
    let mut tasks_after = alive_tasks();
    let tasks_ended_in = settle(Duration::from_secs(2), || {
        tasks_after = alive_tasks();
        tasks_after <= tasks_before
    })
    .await;

    let stats = server.stats();
    let mut elapsed = Histogram::default();
    let mut max_overshoot = Duration::ZERO;
    let mut server_attempts = 0;
    for (i, (outcome, took)) in results.iter().enumerate() {
        outcomes.add(&outcome.label());
        elapsed.record(*took);
        max_overshoot = max_overshoot.max(took.saturating_sub(params.timeout));
        server_attempts += stats.requests_for_id(&format!("slow-{i}"));
    }
    let requests = params.requests as u64;
    Ok(SlowReport {
        pool_at_end,
        pool_settled,
        params,
        requests,
        outcomes,
        server_attempts,
        attempts_per_request: ratio(server_attempts, requests),
        elapsed,
        max_overshoot,
        settled_in,
        tasks_before,
        tasks_with_client,
        tasks_after,
        tasks_ended_in,
    })
}
