//! `flext bench`: a load generator through the real stack.
//!
//! One shared [`Client`] (one pool, one retry budget, one breaker per origin), `c` worker
//! tasks taking request numbers from one atomic counter, until `-n` requests were started or
//! `--duration` is over, whichever comes first. Each worker records into its own
//! [`Recorder`]; they are merged at the end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use flext_api::{Body, Client};
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Version};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::args::BenchArgs;
use crate::client;
use crate::duration::millis;
use crate::error::CliError;
use crate::progress;
use crate::report;
use crate::stats::{Latency, Live, Recorder};

/// Requests when neither `-n` nor `--duration` is given (oha's default too).
const DEFAULT_REQUESTS: u64 = 200;

/// The report, printed as a table or, with `--json`, as one object.
#[derive(Debug, Serialize)]
pub(crate) struct BenchReport {
    /// The URL.
    pub(crate) url: String,
    /// The method.
    pub(crate) method: String,
    /// Worker tasks.
    pub(crate) concurrency: u32,
    /// Calls made.
    pub(crate) requests: u64,
    /// Calls that got a response, whatever its status.
    pub(crate) responses: u64,
    /// Calls whose final status was below 400.
    pub(crate) succeeded: u64,
    /// Calls that got no response (see `error_kinds`).
    pub(crate) errors: u64,
    /// Errors by kind: `connect`, `timeout`, `circuit_open`, ...
    pub(crate) error_kinds: BTreeMap<&'static str, u64>,
    /// Wall time of the run.
    pub(crate) elapsed_ms: f64,
    /// Calls per second.
    pub(crate) throughput_rps: f64,
    /// Latency of the calls that got a response.
    pub(crate) latency_ms: Latency,
    /// Latency of the calls that got no response.
    pub(crate) error_latency_ms: Latency,
    /// Final statuses.
    pub(crate) status_counts: BTreeMap<String, u64>,
    /// The protocol most responses came over.
    pub(crate) protocol: Option<&'static str>,
    /// Retries made (attempts beyond the first).
    pub(crate) retries: u64,
    /// Calls an open circuit refused.
    pub(crate) circuit_open_rejections: u64,
    /// Connections the pool opened.
    pub(crate) connections_opened: u64,
    /// Requests sent on a connection that had served one before.
    pub(crate) connections_reused: u64,
    /// Whether Ctrl-C ended the run early (the calls then in flight are not counted).
    pub(crate) interrupted: bool,
}

/// What every worker shares.
struct Shared {
    client: Client,
    method: Method,
    url: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    next: AtomicU64,
    limit: Option<u64>,
    deadline: Option<Instant>,
    stop: AtomicBool,
    /// Set by Ctrl-C: calls in flight are dropped.
    cancel: watch::Sender<bool>,
    live: Live,
    started: Instant,
}

impl Shared {
    fn request(&self) -> Result<Request<Body>, flext_api::Error> {
        let mut request = self
            .client
            .request(self.method.clone(), &self.url)
            .build()?;
        for (name, value) in &self.headers {
            request.headers_mut().append(name.clone(), value.clone());
        }
        Ok(request)
    }

    /// Takes the next request number, or `None` when the run is over.
    fn take(&self) -> Option<u64> {
        if self.stop.load(Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let n = self.next.fetch_add(1, Relaxed);
        self.limit.is_none_or(|limit| n < limit).then_some(n)
    }
}

/// Runs `flext bench`.
///
/// # Errors
///
/// A setup error (invalid settings or request); failed calls are counted, not returned.
pub(crate) async fn run(args: BenchArgs) -> Result<(), CliError> {
    let limit = match (args.requests, args.duration) {
        (None, None) => Some(DEFAULT_REQUESTS),
        (n, _) => n,
    };
    let concurrency = usize::try_from(args.concurrency).unwrap_or(usize::MAX);
    let mut config = client::config(&args.conn);
    if args.no_retry {
        config.retry.enabled = false;
    }
    if args.no_breaker {
        config.breaker.enabled = false;
    }
    // Enough connections and idle slots for every worker, so HTTP/1.1 runs reuse them.
    let pool = &mut config.pool;
    pool.max_connections_per_origin = pool.max_connections_per_origin.max(concurrency);
    pool.max_idle_per_origin = pool.max_idle_per_origin.max(concurrency);
    pool.max_waiters_per_origin = pool.max_waiters_per_origin.max(concurrency);
    let client = client::build(&args.conn, config)?;

    let started = Instant::now();
    let shared = Arc::new(Shared {
        client,
        method: args.method.clone(),
        url: args.url.clone(),
        headers: args.headers.clone(),
        next: AtomicU64::new(0),
        limit,
        deadline: args.duration.map(|d| started + d),
        stop: AtomicBool::new(false),
        cancel: watch::Sender::new(false),
        live: Live::default(),
        started,
    });
    // An invalid request is an argument error, before any load.
    shared.request().map_err(CliError::Request)?;

    let bar_len = limit.unwrap_or_else(|| args.duration.map_or(0, |d| d.as_millis() as u64));
    let bar = progress::bar(bar_len, !args.json, "bench");
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        let shared = Arc::clone(&shared);
        workers.spawn(worker(shared));
    }
    let watcher = {
        let shared = Arc::clone(&shared);
        let bar = bar.clone();
        tokio::spawn(async move {
            let ctrl_c = tokio::signal::ctrl_c();
            tokio::pin!(ctrl_c);
            loop {
                tokio::select! {
                    _ = &mut ctrl_c => {
                        shared.stop.store(true, Relaxed);
                        shared.cancel.send_replace(true);
                        break;
                    }
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                let [done, ok, failed, retries, open] = shared.live.read();
                let pos = match limit {
                    Some(_) => done,
                    None => shared.started.elapsed().as_millis() as u64,
                };
                bar.set_position(pos.min(bar_len));
                bar.set_message(format!(
                    "ok {ok}  failed {failed}  retries {retries}  circuit open {open}"
                ));
            }
        })
    };

    let mut total = Recorder::default();
    while let Some(joined) = workers.join_next().await {
        // A worker only ends by returning its recorder; a panic would be a bug to surface.
        match joined {
            Ok(recorder) => total.merge(recorder),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {}
        }
    }
    let elapsed = started.elapsed();
    let interrupted = shared.stop.load(Relaxed);
    watcher.abort();
    bar.finish_and_clear();

    let (opened, reused) = client::pool_counts(&shared.client);
    let requests = total.calls();
    let report = BenchReport {
        url: args.url,
        method: args.method.to_string(),
        concurrency: args.concurrency,
        requests,
        responses: total.responses(),
        succeeded: total.succeeded,
        errors: total.errors(),
        error_kinds: total.error_kinds.clone(),
        elapsed_ms: millis(elapsed),
        throughput_rps: requests as f64 / elapsed.as_secs_f64().max(1e-9),
        latency_ms: total.response_latency(),
        error_latency_ms: total.error_latency(),
        status_counts: total.status_counts(),
        protocol: total.protocol(),
        retries: total.retries,
        circuit_open_rejections: total.circuit_open,
        connections_opened: opened,
        connections_reused: reused,
        interrupted,
    };
    if args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::io("encoding the report", e.into()))?;
        println!("{text}");
    } else {
        print!("{}", report::bench(&report));
    }
    Ok(())
}

async fn worker(shared: Arc<Shared>) -> Recorder {
    let mut recorder = Recorder::default();
    let mut cancel = shared.cancel.subscribe();
    while shared.take().is_some() {
        let begun = Instant::now();
        let result = tokio::select! {
            result = call(&shared) => result,
            // Ctrl-C: the call in flight is dropped and not counted.
            _ = cancel.wait_for(|c| *c) => break,
        };
        match result {
            Ok((status, version, attempts)) => {
                let at = shared.started.elapsed();
                recorder.response(status, version, attempts, begun.elapsed(), at);
                shared.live.response(status, attempts);
            }
            Err(e) => {
                recorder.error(&e, begun.elapsed());
                shared.live.error(&e);
            }
        }
    }
    recorder
}

/// One call, its body read to the end (which also hands the connection back).
async fn call(shared: &Shared) -> Result<(StatusCode, Version, u32), flext_api::Error> {
    let mut response = shared.client.execute(shared.request()?).await?;
    let head = (response.status(), response.version(), response.attempts());
    while response.chunk().await?.is_some() {}
    Ok(head)
}
