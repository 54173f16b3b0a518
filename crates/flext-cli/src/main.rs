//! The `flext` command: a resilient curl (`flext request`), a load generator (`flext bench`)
//! and a demo of the whole stack against an embedded flaky server (`flext demo`).
//!
//! Every request goes through [`flext_api::Client`] and so through the default stack:
//! redirects, tracing, a total timeout, retries with a budget, a circuit breaker per origin,
//! an attempt timeout and the HTTP/1.1 + HTTP/2 pool. `docs/cli.md` describes each command.
//!
//! Exit status: 0 on a response, 1 when a request fails (the one-line error names its kind),
//! 2 for invalid arguments or settings, 22 with `--fail` on an HTTP status of 400 or more.

#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]

mod args;
mod bench;
mod client;
mod demo;
mod duration;
mod error;
mod progress;
mod report;
mod request;
mod stats;

use std::process::ExitCode;

use tracing_subscriber::filter::LevelFilter;

use crate::args::{Cli, Command, LogLevel};
use crate::error::{CliError, EXIT_FAILURE};

fn main() -> ExitCode {
    // Invalid arguments end here with clap's message, the usage and status 2.
    let cli = Cli::parse_or_exit();
    if let Some(level) = cli.log {
        init_tracing(level);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("flext: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result: Result<(), CliError> = runtime.block_on(async move {
        match cli.command {
            Command::Request(args) => request::run(*args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Demo(args) => demo::run(args).await,
        }
    });
    // Connection tasks of the pool may still run; they are not worth waiting for.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flext: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Prints the stack's tracing events on stderr.
fn init_tracing(level: LogLevel) {
    let filter = match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(filter)
        .with_target(false)
        .init();
}
