//! `cargo xtask coverage`: line coverage per crate, as a markdown table.
//!
//! The tool is cargo-llvm-cov when it is installed and the toolchain has the LLVM tools
//! (`rustup component add llvm-tools-preview`), else cargo-tarpaulin (installed, pinned,
//! when missing), whose LLVM engine reads the profiles itself and so needs no extra toolchain
//! component. Either runs every test of the workspace but xtask and the benches, in its own
//! target dir (`target/coverage`, or cargo-llvm-cov's `target/llvm-cov-target`) so that the
//! normal build is not invalidated, and writes an LCOV file that this task sums per crate.
//!
//! Lines are counted in each crate's `src/`, test modules (`tests.rs`, `tests/`,
//! `proptests.rs`) left out. The table goes to stdout and, with the command, the date and
//! the run time, to `target/coverage-summary.md`. Coverage is reported, not enforced.

use std::collections::BTreeMap;
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::{has_cargo_subcommand, step};

/// cargo-tarpaulin's version, pinned so that figures are comparable between runs.
const CARGO_TARPAULIN_VERSION: &str = "0.37.5";

/// The line coverage the library crates aim at.
const TARGET_PERCENT: f64 = 95.0;

/// Crates that are not libraries: reported, but not held to the target.
const NOT_LIBRARIES: [&str; 2] = ["flext-cli", "flext-tests"];

/// Files listed under each crate below the target.
const WORST_FILES: usize = 6;

pub(crate) fn coverage(args: &[String]) -> Result<(), String> {
    let root = workspace_root();
    let out_dir = root.join("target").join("coverage");
    fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let lcov = out_dir.join("lcov.info");
    // A stale report must not pass for this run's.
    let _ = fs::remove_file(&lcov);

    let started = Instant::now();
    let command = if has_llvm_cov() {
        run_llvm_cov(&lcov, args)?
    } else {
        run_tarpaulin(&out_dir, args)?
    };
    let elapsed = started.elapsed();

    let text = fs::read_to_string(&lcov)
        .map_err(|e| format!("no coverage report at {}: {e}", lcov.display()))?;
    let crates = per_crate(&text, &root);
    if crates.is_empty() {
        return Err(format!("{} has no line of the workspace", lcov.display()));
    }
    let table = render(&crates);
    let summary = format!(
        "# Line coverage per crate\n\n\
         - command: `{command}` (through `cargo xtask coverage`)\n\
         - date: {} (UTC)\n\
         - run time: {:.0} s (build included)\n\
         - lines: each crate's `src/`, test modules excluded; target {TARGET_PERCENT}% for the \
         library crates\n\n{table}",
        utc_date(),
        elapsed.as_secs_f64(),
    );
    let summary_path = root.join("target").join("coverage-summary.md");
    fs::write(&summary_path, &summary)
        .map_err(|e| format!("cannot write {}: {e}", summary_path.display()))?;
    println!("{summary}");
    eprintln!("==> xtask: coverage summary in {}", summary_path.display());
    Ok(())
}

fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

/// cargo-llvm-cov is installed and the toolchain has `llvm-profdata` and `llvm-cov`.
fn has_llvm_cov() -> bool {
    if !has_cargo_subcommand("llvm-cov") {
        return false;
    }
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let host = Command::new("rustc")
        .arg("-vV")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        });
    match (sysroot, host) {
        (Some(sysroot), Some(host)) => {
            let bin = Path::new(&sysroot)
                .join("lib")
                .join("rustlib")
                .join(host)
                .join("bin");
            bin.join("llvm-profdata").exists() && bin.join("llvm-cov").exists()
        }
        _ => false,
    }
}

const EXCLUDED: [&str; 4] = ["--exclude", "xtask", "--exclude", "flext-benches"];

fn run_llvm_cov(lcov: &Path, extra: &[String]) -> Result<String, String> {
    let lcov = lcov.to_string_lossy().into_owned();
    let mut args = vec!["llvm-cov", "--workspace"];
    args.extend(EXCLUDED);
    args.extend(["--no-fail-fast", "--lcov", "--output-path", &lcov]);
    args.extend(extra.iter().map(String::as_str));
    step("coverage (cargo-llvm-cov)", &args, &[])?;
    Ok(format!("cargo {}", args.join(" ")))
}

fn run_tarpaulin(out_dir: &Path, extra: &[String]) -> Result<String, String> {
    if !has_cargo_subcommand("tarpaulin") {
        step(
            "install cargo-tarpaulin",
            &[
                "install",
                "--locked",
                "cargo-tarpaulin",
                "--version",
                CARGO_TARPAULIN_VERSION,
            ],
            &[],
        )?;
    }
    let dir = out_dir.to_string_lossy().into_owned();
    let mut args = vec!["tarpaulin", "--workspace"];
    args.extend(EXCLUDED);
    args.extend([
        // LLVM's instrumentation, read by tarpaulin itself: no llvm-tools component, and
        // tests run at full speed, threads and child processes (the CLI's) included.
        "--engine",
        "llvm",
        "--out",
        "Lcov",
        "--output-dir",
        &dir,
        "--target-dir",
        &dir,
        "--skip-clean",
        "--no-fail-fast",
        "--timeout",
        "600",
    ]);
    args.extend(extra.iter().map(String::as_str));
    // A failing test still leaves the report; the table says what was measured.
    if let Err(e) = step("coverage (cargo-tarpaulin)", &args, &[]) {
        eprintln!("==> xtask: {e}; summing the report it wrote");
    }
    // The instrumented build scripts leave their profile in the working directory.
    let _ = fs::remove_file(workspace_root().join("build_rs_cov.profraw"));
    Ok(format!("cargo {}", args.join(" ")))
}

/// Lines found and hit in one crate, and per file.
#[derive(Default)]
struct Counts {
    found: u64,
    hit: u64,
    files: BTreeMap<String, (u64, u64)>,
}

impl Counts {
    fn percent(&self) -> f64 {
        if self.found == 0 {
            100.0
        } else {
            self.hit as f64 * 100.0 / self.found as f64
        }
    }
}

/// Sums an LCOV report's `DA:` records per crate of the workspace.
fn per_crate(lcov: &str, root: &Path) -> BTreeMap<String, Counts> {
    let mut crates: BTreeMap<String, Counts> = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in lcov.lines() {
        if let Some(path) = line.strip_prefix("SF:") {
            current = crate_of(Path::new(path), root);
        } else if line == "end_of_record" {
            current = None;
        } else if let (Some(record), Some((krate, file))) = (line.strip_prefix("DA:"), &current) {
            let hits = record
                .split(',')
                .nth(1)
                .and_then(|n| n.trim().parse::<u64>().ok());
            let Some(hits) = hits else { continue };
            let counts = crates.entry(krate.clone()).or_default();
            let per_file = counts.files.entry(file.clone()).or_default();
            counts.found += 1;
            per_file.0 += 1;
            if hits > 0 {
                counts.hit += 1;
                per_file.1 += 1;
            }
        }
    }
    crates
}

/// `crates/<name>/src/...` is crate `<name>`, `tests/src/...` is `flext-tests`; test
/// modules and anything else are not counted.
fn crate_of(path: &Path, root: &Path) -> Option<(String, String)> {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let parts: Vec<&str> = rel.iter().filter_map(|p| p.to_str()).collect();
    let (krate, rest) = match parts.as_slice() {
        ["crates", name, "src", rest @ ..] => ((*name).to_string(), rest),
        ["tests", "src", rest @ ..] => ("flext-tests".to_string(), rest),
        _ => return None,
    };
    let test_module = rest
        .iter()
        .any(|p| matches!(*p, "tests" | "tests.rs" | "proptests.rs"))
        || rest.first() == Some(&"bin");
    if test_module || rest.is_empty() {
        return None;
    }
    Some((krate, rest.join("/")))
}

fn render(crates: &BTreeMap<String, Counts>) -> String {
    let mut out =
        String::from("| crate | lines | covered | line coverage |\n|---|---:|---:|---:|\n");
    let (mut found, mut hit) = (0, 0);
    for (name, c) in crates {
        let library = !NOT_LIBRARIES.contains(&name.as_str());
        if library {
            found += c.found;
            hit += c.hit;
        }
        let mark = if library && c.percent() < TARGET_PERCENT {
            " (below target)"
        } else if !library {
            " (not a library)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {:.1}%{mark} |",
            c.found,
            c.hit,
            c.percent()
        );
    }
    let total = Counts {
        found,
        hit,
        files: BTreeMap::new(),
    };
    let _ = writeln!(
        out,
        "| **library crates** | {found} | {hit} | **{:.1}%** |",
        total.percent()
    );
    for (name, c) in crates {
        if NOT_LIBRARIES.contains(&name.as_str()) || c.percent() >= TARGET_PERCENT {
            continue;
        }
        let mut files: Vec<_> = c
            .files
            .iter()
            .map(|(file, (f, h))| (f - h, file, *f))
            .filter(|(missed, _, _)| *missed > 0)
            .collect();
        files.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        let _ = write!(out, "\n{name}, most lines not covered:");
        for (missed, file, f) in files.iter().take(WORST_FILES) {
            let _ = write!(out, " `{file}` {missed}/{f};");
        }
        out.push('\n');
    }
    out
}

/// Today's date, `YYYY-MM-DD`, from the system clock (Howard Hinnant's civil-from-days).
fn utc_date() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0) + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcov_is_summed_per_crate_without_test_modules() {
        let root = Path::new("/w");
        let lcov = "SF:/w/crates/flext-core/src/origin.rs\nDA:1,3\nDA:2,0\nend_of_record\n\
                    SF:/w/crates/flext-core/src/body/tests.rs\nDA:1,0\nend_of_record\n\
                    SF:/w/crates/flext-api/tests/client.rs\nDA:1,0\nend_of_record\n\
                    SF:crates/flext-api/src/url.rs\nDA:7,1\nend_of_record\n\
                    SF:/w/tests/src/lib.rs\nDA:1,1\nend_of_record\n";
        let crates = per_crate(lcov, root);
        let core = &crates["flext-core"];
        assert_eq!((core.found, core.hit), (2, 1));
        assert_eq!(crates["flext-api"].found, 1);
        assert_eq!(crates["flext-tests"].hit, 1);
        assert_eq!(crates.len(), 3);
        let table = render(&crates);
        assert!(
            table.contains("| flext-core | 2 | 1 | 50.0% (below target) |"),
            "{table}"
        );
        assert!(table.contains("`origin.rs` 1/2;"), "{table}");
    }

    #[test]
    fn dates_are_civil() {
        let date = utc_date();
        assert_eq!(date.len(), 10);
        assert!(date.starts_with("20"), "{date}");
    }
}
