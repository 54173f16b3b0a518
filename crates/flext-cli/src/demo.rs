//! `flext demo`: the default stack against an embedded flaky server, in four phases.
//!
//! The server is flext-testkit over TLS with HTTP/2, in this process. Requests go out at a
//! steady rate from a few worker tasks through one [`Client`]:
//!
//! 1. healthy: every request succeeds, on one pooled HTTP/2 connection;
//! 2. transient faults: one request in five (a seeded choice) carries the script `503,200`,
//!    so the server really answers 503 and then 200, and the retry layer absorbs it;
//! 3. outage: the server is stopped; the breaker opens after a few failures and calls fail
//!    fast instead of waiting on a dead server;
//! 4. recovery: the server is back; after the open time a half-open probe goes through and
//!    the circuit closes.
//!
//! Two settings differ from the defaults so that the story fits in `--duration`: the
//! breaker's open time (30% of the run) and the total timeout (10% of the run, at most 2 s,
//! which is also the attempt timeout). The retry layer waits out an open circuit when the
//! remaining open time fits in the call's deadline; a total timeout shorter than what is left
//! of the open time is what makes refused calls fail at once.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use flext_api::{Client, ClientBuilder, ClientConfig};
use flext_testkit::{ID_HEADER, SCRIPT_HEADER, TestServer};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::args::DemoArgs;
use crate::client;
use crate::duration::{format as fmt_duration, millis};
use crate::error::CliError;
use crate::progress;
use crate::report::{self, DemoReport, PhaseReport, Settings, Totals, Transition};
use crate::stats::{Live, Recorder, percent};

/// Requests started per second, in every phase.
const RATE: u32 = 200;
/// Worker tasks: the most requests in flight at once.
const CONCURRENCY: usize = 16;
/// One request in this many meets a fault in the fault phase.
const FAULT_EVERY: u64 = 5;
/// How often the breaker's state is sampled for the timeline.
const BREAKER_SAMPLE: Duration = Duration::from_millis(5);

/// The four phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Healthy,
    Faults,
    Outage,
    Recovery,
}

impl Phase {
    const ALL: [Phase; 4] = [
        Phase::Healthy,
        Phase::Faults,
        Phase::Outage,
        Phase::Recovery,
    ];

    /// The key in the JSON report.
    fn name(self) -> &'static str {
        match self {
            Phase::Healthy => "healthy",
            Phase::Faults => "faults",
            Phase::Outage => "outage",
            Phase::Recovery => "recovery",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Phase::Healthy => "healthy",
            Phase::Faults => "transient faults",
            Phase::Outage => "outage",
            Phase::Recovery => "recovery",
        }
    }

    /// The phase's share of the run. The outage is shorter than the breaker's open time (30%
    /// of the run, less 10% jitter, less the total timeout), so the circuit stays open
    /// through it and the probe comes early in the recovery.
    fn share(self) -> f64 {
        match self {
            Phase::Healthy => 0.15,
            Phase::Faults => 0.30,
            Phase::Outage => 0.15,
            Phase::Recovery => 0.40,
        }
    }

    fn story(self) -> &'static str {
        match self {
            Phase::Healthy => "steady traffic on pooled HTTP/2 connections",
            Phase::Faults => "1 request in 5 gets a 503 before its 200; retries should absorb them",
            Phase::Outage => "the server is down; the breaker should open and calls fail fast",
            Phase::Recovery => {
                "the server is back; after the open time a half-open probe should close the circuit"
            }
        }
    }
}

/// The settings that scale with `--duration`.
#[derive(Debug, Clone, Copy)]
struct Timing {
    total: Duration,
    open_for: Duration,
    timeout: Duration,
    attempt_timeout: Duration,
}

impl Timing {
    fn new(total: Duration) -> Timing {
        let timeout = total.mul_f64(0.10).min(Duration::from_secs(2));
        Timing {
            total,
            open_for: total.mul_f64(0.30),
            timeout,
            // One attempt may take the whole deadline: the probe after the outage opens a new
            // TLS connection, which must not time out on a busy machine.
            attempt_timeout: timeout,
        }
    }

    fn phase(&self, phase: Phase) -> Duration {
        self.total.mul_f64(phase.share())
    }
}

/// What every worker of a phase shares.
struct PhaseRun {
    client: Client,
    phase: Phase,
    seed: u64,
    start: Instant,
    planned: u64,
    next: AtomicU64,
    live: Live,
}

impl PhaseRun {
    /// When request `i` is due: requests go out at [`RATE`] per second.
    fn due(&self, i: u64) -> Instant {
        self.start + Duration::from_secs_f64(i as f64 / f64::from(RATE))
    }

    fn faulty(&self, i: u64) -> bool {
        self.phase == Phase::Faults && is_faulty(self.seed, i)
    }
}

/// Exactly one request in each block of [`FAULT_EVERY`], at a seeded position: 20% of the
/// requests, never more than two in a row (so the breaker, which opens after five failures
/// in a row, is not tripped by the faults that retries absorb).
fn is_faulty(seed: u64, i: u64) -> bool {
    let block = i / FAULT_EVERY;
    splitmix64(seed ^ block.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % FAULT_EVERY == i % FAULT_EVERY
}

/// SplitMix64, a small seeded mixer: the same seed always picks the same requests.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Runs `flext demo`.
///
/// # Errors
///
/// When the embedded server cannot start or restart, or the client cannot be built.
pub(crate) async fn run(args: DemoArgs) -> Result<(), CliError> {
    let timing = Timing::new(args.duration);
    let server = TestServer::builder()
        .tls()
        .start()
        .await
        .map_err(CliError::Demo)?;
    let ca = server
        .ca_pem()
        .ok_or_else(|| CliError::Demo(std::io::Error::other("the TLS server has no CA")))?;

    let mut config = ClientConfig {
        base_url: Some(server.url("/")),
        timeout: timing.timeout,
        attempt_timeout: timing.attempt_timeout,
        connect_timeout: timing.timeout,
        ..ClientConfig::default()
    };
    config.breaker.open_for = timing.open_for;
    let client = ClientBuilder::from_config(config.clone())
        .add_root_certificate_pem(ca.as_bytes())
        .build()
        .map_err(CliError::Setup)?;

    let narrate = !args.json;
    if narrate {
        eprintln!(
            "flext demo: {} requests/s from {} tasks for {} against {} (TLS, HTTP/2)",
            RATE,
            CONCURRENCY,
            fmt_duration(timing.total),
            server.url("/")
        );
        eprintln!(
            "  breaker opens after {} failures in a row, for {}; total timeout {}, attempt timeout {}, {} retries",
            config.breaker.consecutive_failures,
            fmt_duration(timing.open_for),
            fmt_duration(timing.timeout),
            fmt_duration(timing.attempt_timeout),
            config.retry.max_retries
        );
    }

    let run_start = Instant::now();
    let timeline = Arc::new(Mutex::new(Vec::<(Instant, &'static str)>::new()));
    let monitor = tokio::spawn(watch_breaker(client.clone(), Arc::clone(&timeline)));

    let mut phases = Vec::new();
    let mut all = Recorder::default();
    for (index, phase) in Phase::ALL.into_iter().enumerate() {
        match phase {
            Phase::Outage => server.stop().await,
            Phase::Recovery => server.restart().await.map_err(CliError::Demo)?,
            Phase::Healthy | Phase::Faults => {}
        }
        let planned = timing.phase(phase);
        let label = format!("{}/4 {}", index + 1, phase.title());
        if narrate {
            eprintln!("phase {label}: {}", phase.story());
        }
        let before = client::pool_counts(&client);
        let (recorder, start, elapsed, faults) =
            run_phase(&client, phase, planned, args.seed, &label, narrate).await;
        let after = client::pool_counts(&client);
        let end = start + elapsed;
        let transitions = {
            let timeline = timeline.lock().unwrap_or_else(PoisonError::into_inner);
            timeline
                .iter()
                .filter(|(at, _)| *at >= start && *at < end)
                .map(|(at, state)| Transition {
                    at_ms: millis(*at - start),
                    state,
                })
                .collect()
        };
        let calls = recorder.calls();
        let report = PhaseReport {
            name: phase.name(),
            title: phase.title(),
            planned_ms: millis(planned),
            elapsed_ms: millis(elapsed),
            requests: calls,
            succeeded: recorder.succeeded,
            failed: calls - recorder.succeeded,
            success_pct: percent(recorder.succeeded, calls),
            retries: recorder.retries,
            circuit_open_rejections: recorder.circuit_open,
            faults_injected: faults,
            latency_ms: recorder.call_latency(),
            fail_fast_latency_ms: recorder.fail_fast_latency(),
            status_counts: recorder.status_counts(),
            error_kinds: recorder.error_kinds.clone(),
            first_success_ms: recorder.first_success.map(millis),
            connections_opened: after.0 - before.0,
            connections_reused: after.1 - before.1,
            breaker_state: client::breaker_state(&client),
            breaker_transitions: transitions,
        };
        if narrate && !progress::stderr_is_terminal() {
            eprintln!("  {}", report::phase_line(&report));
        }
        phases.push(report);
        all.merge(recorder);
    }
    monitor.abort();

    let (opened, reused) = client::pool_counts(&client);
    let stats = server.stats();
    let health = client.health();
    let retry = health.retry.as_ref();
    let totals = Totals {
        requests: all.calls(),
        succeeded: all.succeeded,
        retries: all.retries,
        circuit_open_rejections: all.circuit_open,
        retry_budget_exhausted: retry.map_or(0, |r| r.budget_exhausted),
        connections_opened: opened,
        connections_reused: reused,
        server_requests: stats.requests,
        server_connections: stats.connections_accepted,
        tls_handshakes: stats.tls_handshakes,
        traced_attempts_by_status_class: health
            .requests
            .as_ref()
            .map(|r| r.by_status_class.clone())
            .unwrap_or_default(),
        traced_attempts_by_error_type: health
            .requests
            .as_ref()
            .map(|r| r.by_error_type.clone())
            .unwrap_or_default(),
    };
    let report = DemoReport {
        server: server.url("/"),
        protocol: all.protocol(),
        duration_ms: millis(run_start.elapsed()),
        rate_rps: RATE,
        concurrency: CONCURRENCY,
        seed: args.seed,
        settings: Settings {
            timeout_ms: millis(timing.timeout),
            attempt_timeout_ms: millis(timing.attempt_timeout),
            max_retries: config.retry.max_retries,
            breaker_consecutive_failures: config.breaker.consecutive_failures,
            breaker_open_for_ms: millis(timing.open_for),
        },
        phases,
        totals,
    };
    server.stop().await;
    if args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::io("encoding the report", e.into()))?;
        println!("{text}");
    } else {
        print!("{}", report::demo(&report));
    }
    Ok(())
}

/// Runs one phase to its end: every request due within `planned` is sent and finished.
/// Returns what was recorded, when it started, how long it took and the faults injected.
async fn run_phase(
    client: &Client,
    phase: Phase,
    planned: Duration,
    seed: u64,
    label: &str,
    show: bool,
) -> (Recorder, Instant, Duration, u64) {
    let count = (planned.as_secs_f64() * f64::from(RATE)).round() as u64;
    let run = Arc::new(PhaseRun {
        client: client.clone(),
        phase,
        seed,
        start: Instant::now(),
        planned: count,
        next: AtomicU64::new(0),
        live: Live::default(),
    });
    let bar = progress::bar(count, show, label);
    let mut workers = JoinSet::new();
    for _ in 0..CONCURRENCY {
        workers.spawn(worker(Arc::clone(&run)));
    }
    let ticker = {
        let (run, bar, client) = (Arc::clone(&run), bar.clone(), client.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let [done, ok, _, retries, open] = run.live.read();
                bar.set_position(done);
                bar.set_message(format!(
                    "ok {:.1}%  retries {retries}  refused {open}  breaker {}",
                    percent(ok, done),
                    client::breaker_state(&client).unwrap_or("-")
                ));
            }
        })
    };
    let mut recorder = Recorder::default();
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(r) => recorder.merge(r),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {}
        }
    }
    ticker.abort();
    let [done, ok, _, retries, open] = run.live.read();
    bar.set_position(done);
    bar.finish_with_message(format!(
        "ok {:.1}%  retries {retries}  refused {open}  breaker {}",
        percent(ok, done),
        client::breaker_state(client).unwrap_or("-")
    ));
    let faults = (0..count).filter(|i| run.faulty(*i)).count() as u64;
    (recorder, run.start, run.start.elapsed(), faults)
}

async fn worker(run: Arc<PhaseRun>) -> Recorder {
    let mut recorder = Recorder::default();
    loop {
        let i = run.next.fetch_add(1, Relaxed);
        if i >= run.planned {
            return recorder;
        }
        tokio::time::sleep_until(run.due(i)).await;
        let begun = Instant::now();
        let mut request = run.client.get(format!("demo/{}", run.phase.name()));
        if run.faulty(i) {
            request = request
                .header(ID_HEADER, &format!("demo-{}-{i}", run.seed))
                .header(SCRIPT_HEADER, "503,200");
        }
        let result = match request.send().await {
            Ok(response) => {
                let (status, version, attempts) =
                    (response.status(), response.version(), response.attempts());
                response.bytes().await.map(|_| (status, version, attempts))
            }
            Err(e) => Err(e),
        };
        match result {
            Ok((status, version, attempts)) => {
                let latency = begun.elapsed();
                let at = (begun + latency) - run.start;
                recorder.response(status, version, attempts, latency, at);
                run.live.response(status, attempts);
            }
            Err(e) => {
                recorder.error(&e, begun.elapsed());
                run.live.error(&e);
            }
        }
    }
}

/// Samples the breaker's state and keeps each change with its time (its first state, when
/// the first call creates it, is not a change).
async fn watch_breaker(client: Client, timeline: Arc<Mutex<Vec<(Instant, &'static str)>>>) {
    let mut last = None;
    loop {
        if let Some(state) = client::breaker_state(&client) {
            if last.is_some_and(|l| l != state) {
                let mut t = timeline.lock().unwrap_or_else(PoisonError::into_inner);
                t.push((Instant::now(), state));
            }
            last = Some(state);
        }
        tokio::time::sleep(BREAKER_SAMPLE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_request_in_five_is_faulty_and_never_more_than_two_in_a_row() {
        for seed in 0..20 {
            let picks: Vec<bool> = (0..1000).map(|i| is_faulty(seed, i)).collect();
            assert_eq!(picks.iter().filter(|f| **f).count(), 200);
            let longest = picks.split(|f| !*f).map(<[bool]>::len).max().unwrap_or(0);
            assert!(longest <= 2, "seed {seed}: {longest} in a row");
        }
    }

    #[test]
    fn the_outage_fits_in_the_open_time_and_calls_fail_fast_through_it() {
        for secs in [4, 6, 20, 60, 600] {
            let t = Timing::new(Duration::from_secs(secs));
            let outage = t.phase(Phase::Outage);
            // A call refused at the end of the outage still has more open time ahead than
            // its whole deadline, even with the breaker's 10% jitter.
            assert!(t.open_for.mul_f64(0.9) > outage + t.timeout, "{secs}s");
            assert!(t.attempt_timeout <= t.timeout);
            let sum: f64 = Phase::ALL.iter().map(|p| p.share()).sum();
            assert!((sum - 1.0).abs() < 1e-9);
        }
    }
}
