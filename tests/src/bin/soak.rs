//! The full-size reliability run of issue 11: every scenario of `flext_tests::scenario` at
//! full size, printed as markdown tables for `docs/reliability.md`.
//!
//! Run it with `cargo xtask soak [ARGS]` (release mode, with the reqwest-retry comparison);
//! `--help` lists the arguments.

use std::process::ExitCode;
use std::time::Duration;

use flext_tests::load::Limit;
use flext_tests::report::{Figure, table};
use flext_tests::scenario::Protocol;
use flext_tests::scenario::goaway::{GoawayParams, goaway};
use flext_tests::scenario::memory::{BREAKER_MAX_KEYS, MemoryParams, memory};
use flext_tests::scenario::recovery::{RecoveryClock, RecoveryParams, recovery};
use flext_tests::scenario::slow::{SlowParams, slow};
use flext_tests::scenario::soak::{Placement, SoakParams, soak};
use flext_tests::scenario::storm::{StormParams, StormReport, storm};

const USAGE: &str = "usage: soak [OPTIONS]

Runs the reliability scenarios of issue 11 at full size and prints markdown tables.

options:
  --requests N       soak requests (default 100000)
  --concurrency N    callers for soak, storm and memory (default 64)
  --seed N           the soak's fault plan seed (default 11)
  --independent      also run the soak with independent (not stratified) fault placement
  --storm SECS       storm length (default 10)
  --open-for MS      the real-clock recovery's open time (default 1000)
  --memory SECS      memory run length (default 60); its warm-up is a quarter of it
  --only LIST        comma-separated scenarios: soak,storm,recovery,goaway,slow,memory
  --quick            small sizes everywhere (a smoke run of the runner itself)
  -h, --help         this text";

#[derive(Debug)]
struct Args {
    requests: u64,
    concurrency: usize,
    seed: u64,
    independent: bool,
    storm: Duration,
    open_for: Duration,
    memory: Duration,
    only: Vec<String>,
}

impl Args {
    fn wants(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == scenario)
    }
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        requests: 100_000,
        concurrency: 64,
        seed: 11,
        independent: false,
        storm: Duration::from_secs(10),
        open_for: Duration::from_millis(1_000),
        memory: Duration::from_secs(60),
        only: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let number = |name: &str, v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{name}: `{v}` is not a number"))
        };
        match arg.as_str() {
            "--requests" => args.requests = number("--requests", value("--requests")?)?,
            "--concurrency" => {
                args.concurrency =
                    number("--concurrency", value("--concurrency")?)?.max(1) as usize;
            }
            "--seed" => args.seed = number("--seed", value("--seed")?)?,
            "--independent" => args.independent = true,
            "--storm" => args.storm = Duration::from_secs(number("--storm", value("--storm")?)?),
            "--open-for" => {
                args.open_for = Duration::from_millis(number("--open-for", value("--open-for")?)?);
            }
            "--memory" => {
                args.memory = Duration::from_secs(number("--memory", value("--memory")?)?);
            }
            "--only" => {
                args.only = value("--only")?
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .collect();
            }
            "--quick" => {
                args.requests = 5_000;
                args.storm = Duration::from_secs(2);
                args.open_for = Duration::from_millis(300);
                args.memory = Duration::from_secs(6);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => return Err(format!("unknown argument `{other}`\n\n{USAGE}")),
        }
    }
    Ok(Some(args))
}

fn section(title: &str, figures: &[Figure]) {
    println!("### {title}\n\n{}", table(figures));
}

fn storm_side_by_side(reports: &[StormReport]) {
    println!("### Retry storm side by side\n");
    println!("| client | requests | attempts the server counted | attempts per request |");
    println!("|---|---|---|---|");
    for r in reports {
        println!(
            "| {} | {} | {} | {:.3} |",
            r.client, r.requests, r.server_attempts, r.attempts_per_request
        );
    }
    println!();
}

async fn run(args: Args) -> Result<(), flext_tests::Error> {
    let started = std::time::Instant::now();
    println!(
        "<!-- soak runner: {} -->\n",
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    // First, so that the resident memory it reads is its own, not what the other scenarios
    // left behind (the allocator keeps freed pages).
    let memory = if args.wants("memory") {
        eprintln!("memory: {} s...", args.memory.as_secs());
        let report = memory(MemoryParams {
            duration: args.memory,
            warmup: args.memory / 4,
            concurrency: args.concurrency,
            origin_callers: 4,
            warmup_origins: 2 * BREAKER_MAX_KEYS as u64,
            origins_per_second: 50.0,
            sample_every: Duration::from_secs(1),
            ..MemoryParams::default()
        })
        .await?;
        Some(format!(
            "### 6. Memory\n\n{}\nVmRSS samples (s: MiB): {}\n\n",
            table(&report.figures()),
            rss_series(&report.samples)
        ))
    } else {
        None
    };
    if args.wants("soak") {
        let mut placements = vec![Placement::Stratified];
        if args.independent {
            placements.push(Placement::Independent);
        }
        for placement in placements {
            eprintln!("soak: {} requests, {placement:?} faults...", args.requests);
            let report = soak(SoakParams {
                requests: args.requests,
                concurrency: args.concurrency,
                placement,
                seed: args.seed,
                ..SoakParams::default()
            })
            .await?;
            section(
                &format!("1. Soak ({placement:?} faults)"),
                &report.figures(),
            );
        }
    }
    if args.wants("storm") {
        let limit = Limit::For(args.storm);
        let mut reports = Vec::new();
        for breaker in [false, true] {
            eprintln!("storm: breaker {breaker}...");
            reports.push(
                storm(StormParams {
                    limit,
                    concurrency: args.concurrency,
                    breaker,
                })
                .await?,
            );
        }
        #[cfg(feature = "reqwest")]
        {
            eprintln!("storm: reqwest-retry...");
            reports.push(
                flext_tests::scenario::storm::storm_reqwest_retry(StormParams {
                    limit,
                    concurrency: args.concurrency,
                    breaker: false,
                })
                .await?,
            );
        }
        #[cfg(not(feature = "reqwest"))]
        eprintln!("storm: reqwest-retry skipped (build with `--features reqwest`)");
        for r in &reports {
            section(&format!("2. Retry storm: {}", r.client), &r.figures());
        }
        storm_side_by_side(&reports);
    }
    if args.wants("recovery") {
        eprintln!("recovery...");
        let manual = recovery(RecoveryParams::default()).await?;
        section(
            "3. Recovery (manual clock, default 30 s open time)",
            &manual.figures(),
        );
        let real = recovery(RecoveryParams {
            clock: RecoveryClock::Real,
            open_for: args.open_for,
            step: Duration::from_millis(10),
            probe_latency: Duration::from_millis(50),
            ..RecoveryParams::default()
        })
        .await?;
        section("3. Recovery (real clock)", &real.figures());
    }
    if args.wants("goaway") {
        eprintln!("goaway...");
        let report = goaway(GoawayParams {
            requests_per_caller: 200,
            ..GoawayParams::default()
        })
        .await?;
        section("4. Graceful restart under load (GOAWAY)", &report.figures());
    }
    if args.wants("slow") {
        for (protocol, breaker) in [
            (Protocol::Http1, false),
            (Protocol::H2c, false),
            (Protocol::Http1, true),
        ] {
            let stack = if breaker {
                "default stack"
            } else {
                "breaker off"
            };
            eprintln!("slow: {}, {stack}...", protocol.name());
            let report = slow(SlowParams {
                requests: 256,
                protocol,
                breaker,
                ..SlowParams::default()
            })
            .await?;
            section(
                &format!("5. Slow server ({}, {stack})", protocol.name()),
                &report.figures(),
            );
        }
    }
    if let Some(memory) = memory {
        print!("{memory}");
    }
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn rss_series(samples: &[flext_tests::scenario::memory::Sample]) -> String {
    samples
        .iter()
        .step_by((samples.len() / 20).max(1))
        .map(|s| {
            format!(
                "{:.0}: {:.1}",
                s.at.as_secs_f64(),
                s.rss_kib as f64 / 1024.0
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("soak: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("soak: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}
