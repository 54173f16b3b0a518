//! Project automation for flext (the cargo-xtask pattern): `cargo xtask <task>`.
//!
//! - `ci`: every check CI runs, in order: formatting, clippy (all targets and features,
//!   warnings denied; flext-api again with its default features), all tests, doc tests, rustdoc (warnings denied), `cargo deny`.
//! - `deny`: `cargo deny check licenses bans sources`, installing cargo-deny when missing.
//! - `demo [ARGS]`: builds the `flext` binary in release mode and runs `flext demo ARGS`.
//! - `bench [ARGS]`: runs the end-to-end peer comparison (`benches/src/bin/e2e`) in release
//!   mode with ARGS, then points at the criterion micro benches.
//!
//! It calls cargo through the `CARGO` environment variable that cargo sets for it, and has no
//! dependencies of its own.

mod coverage;
mod soak;

use std::env;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  ci     fmt check, clippy -D warnings, tests, doc tests, rustdoc -D warnings, cargo deny
  deny   cargo deny check licenses bans sources (installs cargo-deny --locked if missing)
  demo   cargo build --release -p flext-cli, then flext demo [ARGS] (e.g. --duration 10s, --json)
  bench  the end-to-end peer comparison in release mode [ARGS] (e.g. --quick)
  soak   the full-size reliability scenarios in release mode [ARGS] (e.g. --quick, --help)
  coverage  line coverage per crate (cargo-llvm-cov, else cargo-tarpaulin) [ARGS to the tool]";

/// cargo-deny's version, pinned so CI is reproducible.
const CARGO_DENY_VERSION: &str = "0.20.2";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("deny") => deny(),
        Some("demo") => demo(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("soak") => soak::soak(&args[1..]),
        Some("coverage") => coverage::coverage(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown task `{other}`\n\n{USAGE}")),
        None => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("xtask: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// Runs one step, printing its name and duration; a failing step ends the task.
fn step(name: &str, args: &[&str], envs: &[(&str, &str)]) -> Result<(), String> {
    eprintln!("\n==> xtask: {name}: cargo {}", args.join(" "));
    let started = Instant::now();
    let mut cmd = Command::new(cargo());
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("{name}: could not run cargo: {e}"))?;
    eprintln!(
        "==> xtask: {name}: {} in {:.1} s",
        if status.success() { "ok" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    if status.success() {
        Ok(())
    } else {
        Err(format!("{name} failed ({status})"))
    }
}

fn ci() -> Result<(), String> {
    let started = Instant::now();
    step("fmt", &["fmt", "--all", "--check"], &[])?;
    step(
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    // The facade's code differs with its decompression features, which are off by default:
    // check the default build too (the workspace run above turns every feature on).
    step(
        "clippy (flext-api, default features)",
        &[
            "clippy",
            "-p",
            "flext-api",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    // Benches are checked by clippy above and run by `cargo bench`, not here.
    step(
        "test",
        &[
            "test",
            "--workspace",
            "--all-features",
            "--lib",
            "--bins",
            "--tests",
            "--examples",
        ],
        &[],
    )?;
    step(
        "doc tests",
        &["test", "--workspace", "--all-features", "--doc"],
        &[],
    )?;
    step(
        "rustdoc",
        &["doc", "--workspace", "--no-deps", "--all-features"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    deny()?;
    eprintln!(
        "\n==> xtask: ci passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn deny() -> Result<(), String> {
    if !has_cargo_subcommand("deny") {
        step(
            "install cargo-deny",
            &[
                "install",
                "--locked",
                "cargo-deny",
                "--version",
                CARGO_DENY_VERSION,
            ],
            &[],
        )?;
    }
    // Advisories need a network database, which this environment cannot reach.
    step(
        "cargo deny",
        &[
            "deny",
            "--all-features",
            "check",
            "licenses",
            "bans",
            "sources",
        ],
        &[],
    )
}

/// Runs the end-to-end harness in release mode with `args`.
fn bench(args: &[String]) -> Result<(), String> {
    let mut cargo_args = vec![
        "run",
        "--release",
        "-p",
        "flext-benches",
        "--bin",
        "e2e",
        "--",
    ];
    cargo_args.extend(args.iter().map(String::as_str));
    step("e2e bench", &cargo_args, &[])?;
    eprintln!(
        "\n==> xtask: micro benches: cargo bench -p flext-benches (retry, breaker, auth, trace, stack)"
    );
    Ok(())
}

/// Builds `flext` in release mode and runs `flext demo` with `args`.
fn demo(args: &[String]) -> Result<(), String> {
    step("build", &["build", "--release", "-p", "flext-cli"], &[])?;
    let target = env::var_os("CARGO_TARGET_DIR").map_or_else(
        || {
            let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
            xtask.parent().unwrap_or(xtask).join("target")
        },
        PathBuf::from,
    );
    let flext = target
        .join("release")
        .join(format!("flext{}", env::consts::EXE_SUFFIX));
    eprintln!("\n==> xtask: {} demo {}", flext.display(), args.join(" "));
    let status = Command::new(&flext)
        .arg("demo")
        .args(args)
        .status()
        .map_err(|e| format!("could not run {}: {e}", flext.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("flext demo failed ({status})"))
    }
}

fn has_cargo_subcommand(name: &str) -> bool {
    Command::new(cargo())
        .args([OsStr::new(name), OsStr::new("--version")])
        .output()
        .is_ok_and(|o| o.status.success())
}
