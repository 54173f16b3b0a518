//! End-to-end throughput: flext-pool against hyper-util's legacy client, in one process,
//! against a flext-testkit server on loopback (256-byte responses).
//!
//! ```text
//! cargo run --release -p flext-pool --example pool_bench -- [seconds-per-cell] [filter]
//! ```
//!
//! Cells: HTTP/1.1 and h2c at 1 and 64 concurrent requests, and the saturation case
//! (server latency 2 ms, `max_concurrent_streams` 100, 800 concurrent requests over h2c).
//! Each cell warms up for a quarter of its time, then counts completed requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flext_pool::{Config, Pool};
use flext_testkit::TestServer;
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone, Copy, PartialEq)]
enum Proto {
    H1,
    H2c,
}

#[derive(Clone, Copy)]
struct Cell {
    name: &'static str,
    proto: Proto,
    concurrency: usize,
    latency: Duration,
    max_streams: Option<u32>,
}

const CELLS: [Cell; 5] = [
    Cell {
        name: "http1 c=1",
        proto: Proto::H1,
        concurrency: 1,
        latency: Duration::ZERO,
        max_streams: None,
    },
    Cell {
        name: "http1 c=64",
        proto: Proto::H1,
        concurrency: 64,
        latency: Duration::ZERO,
        max_streams: None,
    },
    Cell {
        name: "h2c c=1",
        proto: Proto::H2c,
        concurrency: 1,
        latency: Duration::ZERO,
        max_streams: None,
    },
    Cell {
        name: "h2c c=64",
        proto: Proto::H2c,
        concurrency: 64,
        latency: Duration::ZERO,
        max_streams: None,
    },
    Cell {
        name: "h2c saturation c=800 (2 ms, 100 streams)",
        proto: Proto::H2c,
        concurrency: 800,
        latency: Duration::from_millis(2),
        max_streams: Some(100),
    },
];

fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().map_or(Ok(3.0), |s| s.parse())?;
    let filter = args.next().unwrap_or_default();
    let which = args.next().unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    runtime.block_on(async move {
        println!(
            "| cell | hyper-util legacy | flext-pool | ratio | flext-pool, no h2 pings | ratio |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        for cell in CELLS {
            if !cell.name.contains(filter.as_str()) {
                continue;
            }
            let time = Duration::from_secs_f64(seconds);
            // Best of `rounds`, interleaved, so that a noisy neighbour hurts all alike.
            let (mut legacy, mut flext, mut lean) = (0f64, 0f64, 0f64);
            for _ in 0..rounds {
                if which != "flext" {
                    legacy = legacy.max(run_legacy(cell, time).await?);
                }
                if which != "legacy" {
                    flext = flext.max(run_flext(cell, time, false).await?);
                    if cell.proto == Proto::H2c {
                        lean = lean.max(run_flext(cell, time, true).await?);
                    }
                }
            }
            let lean = if lean > 0.0 {
                format!("{lean:.0} | {:.2}x", lean / legacy)
            } else {
                "n/a | ".to_owned()
            };
            println!(
                "| {} | {:.0} | {:.0} | {:.2}x | {lean} |",
                cell.name,
                legacy,
                flext,
                flext / legacy
            );
        }
        Ok(())
    })
}

async fn server(cell: Cell) -> std::io::Result<TestServer> {
    let mut b = TestServer::builder();
    b = match cell.proto {
        Proto::H1 => b.http1(),
        Proto::H2c => b.h2c(),
    };
    if !cell.latency.is_zero() {
        b = b.latency(cell.latency);
    }
    if let Some(m) = cell.max_streams {
        b = b.max_concurrent_streams(m);
    }
    let server = b.start().await?;
    server
        .script_path("/bench", "200;body=256")
        .map_err(std::io::Error::other)?;
    Ok(server)
}

async fn run_flext(cell: Cell, time: Duration, lean: bool) -> Result<f64, BoxError> {
    let server = server(cell).await?;
    let config = Config::builder()
        .http2_prior_knowledge(cell.proto == Proto::H2c)
        .max_connections_per_origin(1000)
        .max_waiters_per_origin(4096)
        .ready_limit(None)
        .http2_adaptive_window(!lean)
        .http2_keep_alive_interval((!lean).then_some(Duration::from_secs(30)))
        .build()?;
    let pool: Pool<_, Empty<Bytes>> = Pool::http_with(config);
    let uri = server.uri("/bench");
    let rate = drive(cell.concurrency, time, move || {
        let pool = pool.clone();
        let uri = uri.clone();
        async move {
            let resp = pool.oneshot(get(uri)).await?;
            let body = resp.into_body().collect().await?.to_bytes();
            Ok(body.len())
        }
    })
    .await;
    Ok(rate)
}

async fn run_legacy(cell: Cell, time: Duration) -> Result<f64, BoxError> {
    let server = server(cell).await?;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(cell.proto == Proto::H2c)
        .build_http();
    let uri = server.uri("/bench");
    let rate = drive(cell.concurrency, time, move || {
        let mut client = client.clone();
        let uri = uri.clone();
        async move {
            let resp = client.call(get(uri)).await?;
            let body = resp.into_body().collect().await?.to_bytes();
            Ok(body.len())
        }
    })
    .await;
    Ok(rate)
}

fn get(uri: Uri) -> Request<Empty<Bytes>> {
    Request::get(uri).body(Empty::new()).unwrap_or_default()
}

/// Runs `concurrency` loops of `one` for a warm-up then `time`; returns completed
/// requests per second over `time`.
async fn drive<F, Fut>(concurrency: usize, time: Duration, one: F) -> f64
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<usize, BoxError>> + Send + 'static,
{
    let one = Arc::new(one);
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (one, counting, stop, done, errors) = (
            one.clone(),
            counting.clone(),
            stop.clone(),
            done.clone(),
            errors.clone(),
        );
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match one().await {
                    Ok(256) => {
                        if counting.load(Ordering::Relaxed) {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    tokio::time::sleep(time / 4).await;
    counting.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(time).await;
    let n = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    let e = errors.load(Ordering::Relaxed);
    if e > 0 {
        eprintln!("  ({e} errors)");
    }
    n as f64 / elapsed.as_secs_f64()
}
