//! `cargo xtask soak [ARGS]`: the full-size reliability run of issue 11.
//!
//! Builds `flext-tests`' `soak` binary in release mode with the `reqwest` feature (for the
//! reqwest-retry side of the retry-storm comparison) and runs it with ARGS. The figures go to
//! stdout as markdown, progress to stderr: `cargo xtask soak > soak.md`. `--help` lists ARGS
//! (`--requests`, `--storm`, `--memory`, `--only`, `--quick`, ...).

use crate::step;

/// Runs the soak binary in release mode with `args`.
pub(crate) fn soak(args: &[String]) -> Result<(), String> {
    let mut cargo_args = vec![
        "run",
        "--release",
        "-p",
        "flext-tests",
        "--features",
        "reqwest",
        "--bin",
        "soak",
        "--",
    ];
    cargo_args.extend(args.iter().map(String::as_str));
    step("soak", &cargo_args, &[])
}
