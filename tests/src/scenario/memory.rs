//! Scenario 6, memory: a time-bounded run whose resident memory must stay flat after a
//! warm-up, while other callers send requests to ever new origins, which the breaker map must
//! hold within its bound (1,024 breakers by default).
//!
//! Load: `concurrency` callers send GETs and POSTs over HTTP/1.1 and h2c (two default
//! clients) to a server with a few seeded faults (503, drop or refused stream, delay), at fixed
//! paths and with no per-request id, so that the server's own counters do not grow. Meanwhile
//! `origin_callers` callers send, through the HTTP/1.1 client, one GET (no retry) to each of
//! `127.a.b.c:PORT`, a new loopback address every time, where nothing listens: each one is a
//! new origin for the breaker map, the pool and the request metrics, and fails at once with a
//! connect error.
//! They go as fast as they can until `warmup_origins` origins were seen (more than the
//! breaker map holds, so it is full before the warm-up ends), then at `origins_per_second`.
//!
//! Every `sample_every` the run reads `VmRSS` from `/proc/self/status` (the whole process:
//! client, server and the test harness), the live heap when the binary counts it
//! ([`MemoryParams::live_heap`]), the number of breakers and the number of origins in the
//! pool. Resident memory keeps what the allocator once took, so it says the most in a fresh
//! process (the soak runner does this scenario first); the live heap says the same thing
//! whatever ran before. The figure is the growth after warm-up (which ends at `warmup` or when the burst
//! of origins is over, whichever is later): the largest sample after it minus the sample at
//! its end, and the slope of a least-squares line through the samples after it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use flext_api::Client;
use flext_testkit::{RandomFaults, TestServer};

use super::Protocol;
use crate::load::{Limit, Limiter, Outcome, workers};
use crate::report::{Counts, Figure, Histogram, duration};
use crate::rss::vm_rss_kib;

/// The breaker map's default bound (`flext_breaker::Builder::max_keys`), which the default
/// client keeps.
pub const BREAKER_MAX_KEYS: usize = 1_024;

/// The memory run's settings.
#[derive(Debug, Clone)]
pub struct MemoryParams {
    /// How long the run lasts (60 s at full size).
    pub duration: Duration,
    /// How much of it is warm-up (not judged).
    pub warmup: Duration,
    /// Callers sending to the test server.
    pub concurrency: usize,
    /// Callers sending to a new unreachable origin each time.
    pub origin_callers: usize,
    /// Origins sent to as fast as possible first.
    pub warmup_origins: u64,
    /// New origins per second after those.
    pub origins_per_second: f64,
    /// Time between two samples.
    pub sample_every: Duration,
    /// Share of server requests that meet a fault (a third each: 503, drop or refused
    /// stream, 10 ms delay).
    pub fault_rate: f64,
    /// Reads the bytes live on the heap, for a binary whose global allocator counts them
    /// (like `stats_alloc`'s); `None` to sample resident memory only.
    pub live_heap: Option<fn() -> u64>,
}

impl Default for MemoryParams {
    /// The tests' settings: 5 s with 1.5 s of warm-up, 32 + 8 callers, 1,280 origins at once
    /// then 50 a second, a sample every 100 ms, 3% faults.
    fn default() -> MemoryParams {
        MemoryParams {
            duration: Duration::from_secs(5),
            warmup: Duration::from_millis(1_500),
            concurrency: 32,
            origin_callers: 8,
            warmup_origins: BREAKER_MAX_KEYS as u64 + 256,
            origins_per_second: 50.0,
            sample_every: Duration::from_millis(100),
            fault_rate: 0.03,
            live_heap: None,
        }
    }
}

/// One sample of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Since the run began.
    pub at: Duration,
    /// `VmRSS` in KiB (0 where `/proc` is missing).
    pub rss_kib: u64,
    /// Live heap in KiB (0 without [`MemoryParams::live_heap`]).
    pub heap_kib: u64,
    /// Breakers in the larger of the two clients' maps.
    pub breakers: usize,
    /// Origins in the larger of the two clients' pools.
    pub pool_origins: usize,
}

/// The memory run's figures.
#[derive(Debug, Clone)]
pub struct MemoryReport {
    /// The parameters it ran with.
    pub params: MemoryParams,
    /// Requests sent to the test server.
    pub requests: u64,
    /// Their outcomes.
    pub outcomes: Counts,
    /// Requests sent to distinct unreachable origins.
    pub distinct_origins: u64,
    /// When the burst of `warmup_origins` was over.
    pub origin_burst_took: Option<Duration>,
    /// When the warm-up ended: `warmup`, or the end of the burst if later.
    pub warmup_ended: Duration,
    /// Their outcomes.
    pub origin_outcomes: Counts,
    /// Time per request to the test server.
    pub latency: Histogram,
    /// Every sample.
    pub samples: Vec<Sample>,
    /// `VmRSS` at the end of the warm-up, KiB.
    pub rss_at_warmup_kib: u64,
    /// The largest `VmRSS` after the warm-up, KiB.
    pub rss_max_after_warmup_kib: u64,
    /// `VmRSS` at the end, KiB.
    pub rss_end_kib: u64,
    /// Least-squares slope of `VmRSS` after the warm-up, KiB per minute.
    pub rss_slope_kib_per_min: f64,
    /// Live heap at the end of the warm-up, the largest after it and at the end, KiB (0
    /// without [`MemoryParams::live_heap`]).
    pub heap_kib: (u64, u64, u64),
    /// The most breakers a client held at once.
    pub breakers_max: usize,
    /// The most origins a client's pool held at once.
    pub pool_origins_max: usize,
}

impl MemoryReport {
    /// The largest sample after the warm-up minus the sample at its end, KiB (0 if it fell).
    pub fn growth_kib(&self) -> u64 {
        self.rss_max_after_warmup_kib
            .saturating_sub(self.rss_at_warmup_kib)
    }

    /// The live heap's largest sample after the warm-up minus its sample at the end of it,
    /// KiB (0 if it fell, or without [`MemoryParams::live_heap`]).
    pub fn heap_growth_kib(&self) -> u64 {
        self.heap_kib.1.saturating_sub(self.heap_kib.0)
    }

    /// The figures, for a table.
    pub fn figures(&self) -> Vec<Figure> {
        let p = &self.params;
        let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
        let mut figures = vec![
            Figure::new(
                "run",
                format!(
                    "{} ({} warm-up), {} + {} callers, {:.0}% faults",
                    duration(p.duration),
                    duration(p.warmup),
                    p.concurrency,
                    p.origin_callers,
                    p.fault_rate * 100.0
                ),
            ),
            Figure::new(
                "new origins",
                format!(
                    "{} at once (took {}), then {}/s",
                    p.warmup_origins,
                    self.origin_burst_took
                        .map_or_else(|| "the whole run".into(), duration),
                    p.origins_per_second
                ),
            ),
            Figure::new("warm-up ended at", duration(self.warmup_ended)),
            Figure::new("requests to the server", self.requests),
            Figure::new("their outcomes", &self.outcomes),
            Figure::new("distinct unreachable origins", self.distinct_origins),
            Figure::new("their outcomes", &self.origin_outcomes),
            Figure::new("latency p50 / p99 / max", self.latency.summary()),
            Figure::new(
                "VmRSS after warm-up / max after / end",
                format!(
                    "{} / {} / {}",
                    mib(self.rss_at_warmup_kib),
                    mib(self.rss_max_after_warmup_kib),
                    mib(self.rss_end_kib)
                ),
            ),
            Figure::new("growth after warm-up", mib(self.growth_kib())),
            Figure::new(
                "VmRSS slope after warm-up",
                format!("{:.0} KiB/min", self.rss_slope_kib_per_min),
            ),
            Figure::new(
                "breakers at most (bound)",
                format!("{} ({BREAKER_MAX_KEYS})", self.breakers_max),
            ),
            Figure::new("pool origins at most", self.pool_origins_max),
        ];
        if p.live_heap.is_some() {
            let (warm, max, end) = self.heap_kib;
            figures.insert(
                11,
                Figure::new(
                    "live heap after warm-up / max after / end (growth)",
                    format!(
                        "{} / {} / {} ({})",
                        mib(warm),
                        mib(max),
                        mib(end),
                        mib(self.heap_growth_kib())
                    ),
                ),
            );
        }
        figures
    }
}

/// The `n`-th loopback address other than 127.0.0.1, skipping `.0` and `.255`.
fn loopback(n: u64) -> String {
    let n = n + 1;
    let (c, rest) = (n % 254 + 1, n / 254);
    format!("127.{}.{}.{c}", (rest / 256) % 256, rest % 256)
}

/// Least-squares slope of `(x, y)` points.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    if den == 0.0 { 0.0 } else { num / den }
}

fn sample(at: Duration, clients: &[Client], heap: Option<fn() -> u64>) -> Sample {
    Sample {
        at,
        rss_kib: vm_rss_kib().unwrap_or(0),
        heap_kib: heap.map_or(0, |live| live() / 1024),
        breakers: clients
            .iter()
            .filter_map(|c| c.stack().breakers().map(|h| h.len()))
            .max()
            .unwrap_or(0),
        pool_origins: clients
            .iter()
            .map(|c| c.pool_metrics().origins.len())
            .max()
            .unwrap_or(0),
    }
}

/// Runs the memory scenario; see the [module docs](self).
///
/// # Errors
///
/// If the server does not start or a client does not build.
pub async fn memory(params: MemoryParams) -> Result<MemoryReport, crate::Error> {
    let f = params.fault_rate / 3.0;
    let server = TestServer::builder()
        .auto()
        .random_faults(RandomFaults {
            seed: 6,
            p_503: f,
            p_reset: f,
            p_delay: f,
            delay: Duration::from_millis(10),
            ..RandomFaults::default()
        })
        .start()
        .await?;
    let port = server.addr().port();
    let clients = Arc::new([
        Protocol::Http1.client(&server).build()?,
        Protocol::H2c.client(&server).build()?,
    ]);
    let started = Instant::now();
    let limiter = Arc::new(Limiter::new(Limit::For(params.duration)));

    let sampler = {
        let (clients, limiter) = (Arc::clone(&clients), Arc::clone(&limiter));
        let (every, heap) = (params.sample_every, params.live_heap);
        tokio::spawn(async move {
            let mut samples = vec![sample(started.elapsed(), &clients[..], heap)];
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                samples.push(sample(started.elapsed(), &clients[..], heap));
                if limiter.take().is_none() {
                    return samples;
                }
            }
        })
    };
    let next_origin = Arc::new(AtomicU64::new(0));
    let burst_done = Arc::new(OnceLock::new());
    let callers = params.concurrency + params.origin_callers;
    let load = params.concurrency;
    let (burst, pace) = (
        params.warmup_origins,
        Duration::from_secs_f64(params.origin_callers as f64 / params.origins_per_second.max(1e-3)),
    );
    let results = workers(callers, |w| {
        let (clients, limiter) = (Arc::clone(&clients), Arc::clone(&limiter));
        let (next_origin, burst_done) = (Arc::clone(&next_origin), Arc::clone(&burst_done));
        async move {
            // The server's callers alternate the two clients; the origins all go through the
            // HTTP/1.1 one, so that its breaker map meets them all.
            let client = if w >= load {
                &clients[0]
            } else {
                &clients[w % 2]
            };
            let mut outcomes = Counts::default();
            let mut latency = Histogram::default();
            let mut sent = 0u64;
            while let Some(n) = limiter.take() {
                sent += 1;
                let start = Instant::now();
                let request = if w >= load {
                    let k = next_origin.fetch_add(1, Ordering::Relaxed);
                    if k >= burst {
                        burst_done.get_or_init(|| started.elapsed());
                        tokio::time::sleep(pace).await;
                    }
                    client
                        .get(format!("http://{}:{port}/memory", loopback(k)))
                        .no_retry()
                } else if n % 4 == 0 {
                    client.post("memory/orders").body("order")
                } else {
                    client.get("memory/items")
                };
                let (outcome, _) = Outcome::of(request.send().await).await;
                if w < load {
                    latency.record(start.elapsed());
                }
                outcomes.add(&outcome.label());
            }
            (w >= load, sent, outcomes, latency)
        }
    })
    .await;
    let samples = match sampler.await {
        Ok(samples) => samples,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };

    let mut report = MemoryReport {
        params: params.clone(),
        requests: 0,
        outcomes: Counts::default(),
        distinct_origins: next_origin.load(Ordering::Relaxed),
        origin_burst_took: burst_done.get().copied(),
        warmup_ended: params
            .warmup
            .max(burst_done.get().copied().unwrap_or(params.duration)),
        origin_outcomes: Counts::default(),
        latency: Histogram::default(),
        rss_at_warmup_kib: 0,
        rss_max_after_warmup_kib: 0,
        rss_end_kib: samples.last().map_or(0, |s| s.rss_kib),
        rss_slope_kib_per_min: 0.0,
        heap_kib: (0, 0, samples.last().map_or(0, |s| s.heap_kib)),
        breakers_max: samples.iter().map(|s| s.breakers).max().unwrap_or(0),
        pool_origins_max: samples.iter().map(|s| s.pool_origins).max().unwrap_or(0),
        samples: samples.clone(),
    };
    for (origins, sent, outcomes, latency) in &results {
        if *origins {
            report.origin_outcomes.merge(outcomes);
        } else {
            report.requests += sent;
            report.outcomes.merge(outcomes);
            report.latency.merge(latency);
        }
    }
    let after: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= report.warmup_ended)
        .collect();
    report.rss_at_warmup_kib = after.first().map_or(0, |s| s.rss_kib);
    report.rss_max_after_warmup_kib = after.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    report.heap_kib.0 = after.first().map_or(0, |s| s.heap_kib);
    report.heap_kib.1 = after.iter().map(|s| s.heap_kib).max().unwrap_or(0);
    let points: Vec<(f64, f64)> = after
        .iter()
        .map(|s| (s.at.as_secs_f64() / 60.0, s.rss_kib as f64))
        .collect();
    report.rss_slope_kib_per_min = slope(&points);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_are_distinct_and_never_the_server() {
        let mut seen = std::collections::HashSet::new();
        for n in 0..100_000 {
            let host = loopback(n);
            assert_ne!(host, "127.0.0.1");
            assert!(!host.ends_with(".0") && !host.ends_with(".255"), "{host}");
            assert!(seen.insert(host));
        }
    }

    #[test]
    fn slope_of_a_line() {
        let points: Vec<(f64, f64)> = (0..10)
            .map(|x| (f64::from(x), 3.0 * f64::from(x) + 1.0))
            .collect();
        assert!((slope(&points) - 3.0).abs() < 1e-9);
        assert_eq!(slope(&points[..1]), 0.0);
    }
}
