//! The load loop: `concurrency` tasks each sending one request after another, a warm-up,
//! then a timed window in which completed requests and their latencies are recorded.

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::Version;

use crate::BoxError;
use crate::server::BODY_LEN;

/// What one client did in one cell.
#[derive(Clone, Debug, Default)]
pub(crate) struct Measurement {
    /// Completed requests per second in the timed window.
    pub(crate) rps: f64,
    /// Median latency of one request, response body read, in µs.
    pub(crate) p50_us: f64,
    /// 99th percentile, in µs.
    pub(crate) p99_us: f64,
    /// CPU time the whole process (server, clients, runtime) spent per completed request in
    /// the timed window, in µs: unlike throughput, it does not move when other processes
    /// take the cores, so it compares well across a noisy run.
    pub(crate) cpu_us: f64,
    /// Requests that failed, gave a short body or spoke the wrong protocol, warm-up included.
    pub(crate) errors: u64,
    /// The first such failure, for the report.
    pub(crate) first_error: Option<String>,
}

/// How long to load.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub(crate) warm_up: Duration,
    pub(crate) measure: Duration,
}

const WARM_UP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// Runs `concurrency` loops of `one` (which sends a request, reads the body and returns its
/// length and the response's HTTP version) through a warm-up and then the timed window.
pub(crate) async fn drive<F, Fut>(
    concurrency: usize,
    timing: Timing,
    expect: Version,
    one: F,
) -> Measurement
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(usize, Version), BoxError>> + Send + 'static,
{
    let one = Arc::new(one);
    let phase = Arc::new(AtomicU8::new(WARM_UP));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (one, phase, first_error) = (one.clone(), phase.clone(), first_error.clone());
        tasks.push(tokio::spawn(async move {
            // Latencies in ns, recorded by this task alone: no shared counter on the hot path.
            let mut latencies: Vec<u64> = Vec::with_capacity(4096);
            let mut errors = 0u64;
            loop {
                let start = Instant::now();
                let result = one().await;
                let elapsed = start.elapsed();
                let now = phase.load(Ordering::Relaxed);
                let failure = match result {
                    Ok((BODY_LEN, v)) if v == expect => None,
                    Ok((BODY_LEN, v)) => Some(format!("spoke {v:?}, expected {expect:?}")),
                    Ok((n, _)) => Some(format!("body of {n} bytes, expected {BODY_LEN}")),
                    Err(e) => Some(error_chain(&*e)),
                };
                match failure {
                    None if now == MEASURE => {
                        latencies.push(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
                    }
                    None => {}
                    Some(message) => {
                        errors += 1;
                        first_error
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get_or_insert(message);
                        // A client that fails at once must not spin the CPU the others need.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                if now == STOP {
                    return (latencies, errors);
                }
            }
        }));
    }
    tokio::time::sleep(timing.warm_up).await;
    phase.store(MEASURE, Ordering::Relaxed);
    let start = Instant::now();
    let cpu_start = process_cpu_ns();
    tokio::time::sleep(timing.measure).await;
    phase.store(STOP, Ordering::Relaxed);
    let window = start.elapsed();
    let cpu = match (cpu_start, process_cpu_ns()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };

    let mut all = Vec::new();
    let mut errors = 0;
    // A client that hangs on a request must not hang the run.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for task in tasks {
        let abort = task.abort_handle();
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok((latencies, e))) => {
                all.extend_from_slice(&latencies);
                errors += e;
            }
            Ok(Err(join)) => {
                errors += 1;
                first_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert(format!("task failed: {join}"));
            }
            Err(_) => {
                abort.abort();
                errors += 1;
                first_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert("a request hung past the end of the cell".to_owned());
            }
        }
    }
    let first_error = first_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let cpu_us = match cpu {
        Some(ns) if !all.is_empty() => ns as f64 / 1_000.0 / all.len() as f64,
        _ => f64::NAN,
    };
    Measurement {
        cpu_us,
        rps: all.len() as f64 / window.as_secs_f64(),
        p50_us: percentile(&mut all, 0.50),
        p99_us: percentile(&mut all, 0.99),
        errors,
        first_error,
    }
}

/// The `q` quantile of `samples` (ns), in µs; NaN when there are none.
fn percentile(samples: &mut [u64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let rank = ((samples.len() - 1) as f64 * q).round() as usize;
    let (_, v, _) = samples.select_nth_unstable(rank);
    *v as f64 / 1_000.0
}

/// CPU time of every thread of this process so far, in ns, from the scheduler (Linux).
fn process_cpu_ns() -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// An error and its sources on one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).map(|i| i * 1_000).collect();
        assert_eq!(percentile(&mut v, 0.5), 51.0);
        assert_eq!(percentile(&mut v, 0.99), 99.0);
        assert!(percentile(&mut [], 0.5).is_nan());
    }
}
