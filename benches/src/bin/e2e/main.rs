//! The end-to-end peer comparison: one process, one plain hyper server on loopback, and every
//! client a user might pick instead of flext, measured in the same run for throughput and
//! p50/p99 latency. Prints a markdown table with each figure's ratio to hyper-util's legacy
//! client in the same cell, then the issue's targets, met or missed.
//!
//! ```text
//! cargo run --release -p flext-benches --bin e2e -- [--seconds 2] [--rounds 3] [--only h2c,tls]
//!     [--clients hyper-util,flext] [--threads 2] [--quick] [--list]
//! ```
//!
//! Each client gets a fresh server per cell and round, warms up for a quarter of the time
//! (at least 250 ms), then counts requests completed in the timed window. With several
//! rounds the clients run interleaved and the round with the best throughput is kept, so a
//! noisy neighbour hurts all of them alike. Progress, with the number of requests the server
//! answered (to divide a profiler's totals by), goes to stderr.
//!
//! Besides the five clients of the comparison, `--clients` takes diagnostic rows that turn
//! parts of flext's default stack off (`flext-no-trace`, `flext-bare`, ...; see `--list`), to
//! see what each part costs; `docs/benchmarks.md` shows how they were used with callgrind.

#![forbid(unsafe_code)]

mod clients;
mod measure;
mod server;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use clients::{ClientKind, Proto, Target};
use measure::{Measurement, Timing};
use server::{Identity, Server, ServerOptions};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The ring provider: every TLS config here is built with it, so no aws-lc-rs is linked.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// One load case.
#[derive(Clone, Copy, Debug)]
struct Cell {
    /// The name `--only` matches (by substring).
    key: &'static str,
    title: &'static str,
    proto: Proto,
    concurrency: usize,
    latency: Duration,
    max_streams: Option<u32>,
}

impl Cell {
    const fn new(key: &'static str, title: &'static str, proto: Proto, concurrency: usize) -> Cell {
        Cell {
            key,
            title,
            proto,
            concurrency,
            latency: Duration::ZERO,
            max_streams: None,
        }
    }

    const fn saturated(self) -> Cell {
        Cell {
            latency: Duration::from_millis(2),
            max_streams: Some(100),
            ..self
        }
    }
}

const CELLS: [Cell; 8] = [
    Cell::new("http1-c1", "HTTP/1.1, c=1", Proto::Http1, 1),
    Cell::new("http1-c64", "HTTP/1.1, c=64", Proto::Http1, 64),
    Cell::new("h2c-c1", "h2c, c=1", Proto::H2c, 1),
    Cell::new("h2c-c64", "h2c, c=64", Proto::H2c, 64),
    Cell::new("tls-h2-c1", "HTTP/2 over TLS, c=1", Proto::H2Tls, 1),
    Cell::new("tls-h2-c64", "HTTP/2 over TLS, c=64", Proto::H2Tls, 64),
    Cell::new(
        "saturation-h2c",
        "saturation h2c, c=800 (2 ms, 100 streams)",
        Proto::H2c,
        800,
    )
    .saturated(),
    Cell::new(
        "saturation-http1",
        "saturation HTTP/1.1, c=800 (2 ms), reference",
        Proto::Http1,
        800,
    )
    .saturated(),
];

const USAGE: &str = "\
usage: e2e [--seconds S] [--rounds N] [--only CELLS] [--clients CLIENTS] [--threads T] [--quick] [--list]

  --seconds S      timed window per client and cell, after a warm-up of S/4 (default 2)
  --rounds N       interleaved rounds; the best throughput of each client is kept (default 3)
  --only CELLS     comma-separated; a cell runs when its name contains one of them
                   (e.g. h2c, http1, tls, saturation, c64, h2c-c64)
  --clients LIST   comma-separated client names (default: the five of the comparison);
                   hyper-util is the baseline; flext-no-* and flext-bare turn parts of
                   the full stack off, to see what each costs
  --threads T      tokio worker threads, shared by the server and the clients (default 2;
                   1 keeps c=1 latencies free of cross-thread wake-ups, see docs/benchmarks.md)
  --quick          a smoke run: 0.5 s per cell, 1 round
  --list           print the cell and client names and exit";

#[derive(Debug)]
struct Args {
    seconds: f64,
    rounds: usize,
    only: Vec<String>,
    clients: Vec<ClientKind>,
    threads: usize,
    quick: bool,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        seconds: 2.0,
        rounds: 3,
        only: Vec::new(),
        clients: ClientKind::ALL.to_vec(),
        threads: 2,
        quick: false,
    };
    let mut seconds = None;
    let mut rounds = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--seconds" => {
                let v = value("--seconds")?;
                let s: f64 = v
                    .parse()
                    .map_err(|_| format!("--seconds: not a number: {v}"))?;
                if !(s > 0.0 && s <= 600.0) {
                    return Err(format!("--seconds: {s} is not in (0, 600]"));
                }
                seconds = Some(s);
            }
            "--rounds" => {
                let v = value("--rounds")?;
                let n: usize = v
                    .parse()
                    .map_err(|_| format!("--rounds: not a count: {v}"))?;
                if n == 0 || n > 20 {
                    return Err(format!("--rounds: {n} is not in 1..=20"));
                }
                rounds = Some(n);
            }
            "--only" => {
                args.only = value("--only")?
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            "--clients" => {
                args.clients = value("--clients")?
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|name| {
                        ClientKind::ALL
                            .into_iter()
                            .chain(ClientKind::ABLATIONS)
                            .find(|k| k.key() == name)
                            .ok_or_else(|| format!("--clients: unknown client {name:?}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--threads" => {
                let v = value("--threads")?;
                args.threads = v
                    .parse()
                    .ok()
                    .filter(|&t| t > 0)
                    .ok_or_else(|| format!("--threads: not a positive count: {v}"))?;
            }
            "--quick" => args.quick = true,
            "--list" => {
                println!("cells:");
                for c in CELLS {
                    println!("  {:<22} {}", c.key, c.title);
                }
                println!("clients:");
                for k in ClientKind::ALL {
                    println!("  {:<22} {}", k.key(), k.label());
                }
                println!("ablations of the full stack (only when named in --clients):");
                for k in ClientKind::ABLATIONS {
                    println!("  {:<22} {}", k.key(), k.label());
                }
                return Ok(None);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    if args.quick {
        args.seconds = 0.5;
        args.rounds = 1;
    }
    if let Some(s) = seconds {
        args.seconds = s;
    }
    if let Some(n) = rounds {
        args.rounds = n;
    }
    Ok(Some(args))
}

fn main() -> Result<(), BoxError> {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => return Ok(()),
        Err(message) => {
            eprintln!("e2e: {message}");
            std::process::exit(2);
        }
    };
    // reqwest (built without a provider of its own) looks up the process default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cells: Vec<Cell> = CELLS
        .into_iter()
        .filter(|c| args.only.is_empty() || args.only.iter().any(|o| c.key.contains(o.as_str())))
        .collect();
    if cells.is_empty() {
        return Err(format!("--only {:?} selects no cell (see --list)", args.only).into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    runtime.block_on(run(&args, &cells))
}

async fn run(args: &Args, cells: &[Cell]) -> Result<(), BoxError> {
    let warm_up = Duration::from_secs_f64((args.seconds / 4.0).max(0.25));
    let timing = Timing {
        warm_up,
        measure: Duration::from_secs_f64(args.seconds),
    };
    let identity = if cells.iter().any(|c| c.proto == Proto::H2Tls) {
        Some(Arc::new(Identity::generate()?))
    } else {
        None
    };
    println!("{}", preamble(args));
    println!(
        "| cell | client | req/s | × hyper-util | p50 µs | p99 µs | p50 − hyper-util µs | CPU µs/req | errors |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut results: HashMap<(&'static str, ClientKind), Measurement> = HashMap::new();
    for cell in cells {
        for round in 0..args.rounds {
            // Rotate who goes first, so no client always follows the same one.
            let n = args.clients.len();
            for i in 0..n {
                let kind = args.clients[(i + round) % n];
                eprint!("{} / {} / round {}: ", cell.key, kind.key(), round + 1);
                let server = Server::start(ServerOptions {
                    latency: cell.latency,
                    max_streams: cell.max_streams,
                    tls: (cell.proto == Proto::H2Tls)
                        .then(|| identity.clone())
                        .flatten(),
                })
                .await?;
                let target = Target {
                    url: server.url(),
                    proto: cell.proto,
                    concurrency: cell.concurrency,
                    timing,
                    tls: (cell.proto == Proto::H2Tls)
                        .then_some(identity.as_deref())
                        .flatten(),
                };
                let m = match clients::run(kind, &target).await {
                    Ok(m) => m,
                    Err(e) => Measurement {
                        errors: 1,
                        first_error: Some(format!("could not start: {e}")),
                        ..Measurement::default()
                    },
                };
                let served = server.served();
                drop(server);
                eprintln!(
                    "{:.0} req/s, p50 {:.1} µs, p99 {:.1} µs, {:.1} CPU µs/req, {served} served, {} errors{}",
                    m.rps,
                    m.p50_us,
                    m.p99_us,
                    m.cpu_us,
                    m.errors,
                    m.first_error
                        .as_deref()
                        .map(|e| format!(" (first: {e})"))
                        .unwrap_or_default()
                );
                let best = results.entry((cell.key, kind)).or_default();
                if m.rps > best.rps || best.rps == 0.0 {
                    let errors = best.errors + m.errors;
                    *best = Measurement { errors, ..m };
                } else {
                    best.errors += m.errors;
                }
                // Let the closed connections' tasks finish before the next client starts.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let base = results.get(&(cell.key, ClientKind::HyperUtil)).cloned();
        for &kind in &args.clients {
            if let Some(m) = results.get(&(cell.key, kind)) {
                println!("{}", row(cell, kind, m, base.as_ref()));
            }
        }
    }
    println!("{}", targets(&results));
    Ok(())
}

fn preamble(args: &Args) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown cpu".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned());
    format!(
        "flext e2e: {cores} cores ({cpu}), load {load} at start; {} s per cell after a {:.2} s \
         warm-up, best of {} round(s), {} tokio worker thread(s) shared by server and clients; \
         256-byte responses from a plain hyper server on 127.0.0.1; CPU µs/req is the whole \
         process's CPU time per completed request\n",
        args.seconds,
        (args.seconds / 4.0).max(0.25),
        args.rounds,
        args.threads,
    )
}

fn row(cell: &Cell, kind: ClientKind, m: &Measurement, base: Option<&Measurement>) -> String {
    let ratio = match base {
        Some(b) if b.rps > 0.0 => format!("{:.2}×", m.rps / b.rps),
        _ => "–".to_owned(),
    };
    let delta = match base {
        Some(b)
            if kind != ClientKind::HyperUtil && b.p50_us.is_finite() && m.p50_us.is_finite() =>
        {
            format!("{:+.1}", m.p50_us - b.p50_us)
        }
        _ => "–".to_owned(),
    };
    let errors = match &m.first_error {
        Some(e) => format!("{} ({})", m.errors, e.replace('|', "/")),
        None => m.errors.to_string(),
    };
    format!(
        "| {} | {} | {:.0} | {ratio} | {:.1} | {:.1} | {delta} | {:.1} | {errors} |",
        cell.title,
        kind.label(),
        m.rps,
        m.p50_us,
        m.p99_us,
        m.cpu_us,
    )
}

/// The issue's targets, each with the figures it compares; only those whose cells ran.
fn targets(results: &HashMap<(&'static str, ClientKind), Measurement>) -> String {
    let get = |cell: &str, kind| {
        results
            .iter()
            .find(|((c, k), m)| *c == cell && *k == kind && m.rps > 0.0)
            .map(|(_, m)| m)
    };
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let mut out = String::from("\nTargets (ratios within this run):\n");
    for (cell, what) in [
        ("http1-c64", "HTTP/1.1"),
        ("h2c-c64", "h2c"),
        ("tls-h2-c64", "HTTP/2 over TLS"),
    ] {
        if let (Some(f), Some(h)) = (
            get(cell, ClientKind::Flext),
            get(cell, ClientKind::HyperUtil),
        ) {
            let r = f.rps / h.rps;
            let _ = writeln!(
                out,
                "- full stack ≥ 0.90× hyper-util legacy, {what}, c=64: {r:.2}× — {}",
                verdict(r >= 0.90)
            );
        }
    }
    if let (Some(f), Some(m)) = (
        get("h2c-c64", ClientKind::Flext),
        get("h2c-c64", ClientKind::ReqwestRetry),
    ) {
        let r = f.rps / m.rps;
        let _ = writeln!(
            out,
            "- full stack ≥ 1.6× reqwest-middleware + reqwest-retry, h2c, c=64: {r:.2}× — {}",
            verdict(r >= 1.6)
        );
    }
    for (cell, what) in [
        ("http1-c1", "HTTP/1.1"),
        ("h2c-c1", "h2c"),
        ("tls-h2-c1", "HTTP/2 over TLS"),
    ] {
        if let (Some(f), Some(h)) = (
            get(cell, ClientKind::Flext),
            get(cell, ClientKind::HyperUtil),
        ) {
            let d = f.p50_us - h.p50_us;
            let _ = writeln!(
                out,
                "- full stack p50 ≤ hyper-util's + 5 µs, {what}, c=1: {:.1} vs {:.1} µs ({d:+.1}) — {}",
                f.p50_us,
                h.p50_us,
                verdict(d <= 5.0)
            );
        }
    }
    if let (Some(f), Some(h)) = (
        get("saturation-h2c", ClientKind::Flext),
        get("saturation-h2c", ClientKind::HyperUtil),
    ) {
        let r = f.rps / h.rps;
        let _ = writeln!(
            out,
            "- saturation: full stack over HTTP/2 ≥ 2.5× hyper-util legacy over HTTP/2: {r:.2}× — {}",
            verdict(r >= 2.5)
        );
    }
    out
}
