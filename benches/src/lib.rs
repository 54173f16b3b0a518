//! Criterion micro benchmarks (`benches/benches/`) and the end-to-end peer comparison
//! (`src/bin/e2e/`, run by `cargo xtask bench`) for flext; `docs/benchmarks.md` has the figures
//! and the commands.
//!
//! This library holds what every bench shares: [`measure_allocations`], which counts the heap
//! allocations a closure makes through the [`GLOBAL`] counting allocator, and
//! [`cpu_ns_per_call`], which times a closure by the CPU time of the calling thread (what the
//! scheduler charged it), a figure that moves less than wall time on a shared machine. A bench target that
//! wants allocation figures installs it with
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: &stats_alloc::StatsAlloc<std::alloc::System> = &flext_benches::GLOBAL;
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::alloc::System;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

/// The counting allocator a bench installs as its `#[global_allocator]`.
pub static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations and bytes per call of `f`, averaged over `iters` calls.
///
/// Only meaningful in a bench whose global allocator is [`GLOBAL`]; elsewhere it reports zero.
pub fn measure_allocations(iters: u64, mut f: impl FnMut()) -> (f64, f64) {
    let region = Region::new(GLOBAL);
    for _ in 0..iters {
        f();
    }
    let stats = region.change();
    let n = iters.max(1) as f64;
    (
        stats.allocations as f64 / n,
        stats.bytes_allocated as f64 / n,
    )
}

/// The CPU time this thread has run, in nanoseconds (Linux `/proc/thread-self/schedstat`);
/// `None` where that file is missing.
pub fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU nanoseconds per call of `f`: the best of `runs` runs of `calls` calls each, by this
/// thread's CPU time. Time the thread spent descheduled (other processes on a busy machine)
/// is not counted; time lost to a busy sibling core or a cold cache still is, which the best
/// of several runs mostly removes. `None` where the CPU time cannot be read.
pub fn cpu_ns_per_call(runs: u32, calls: u64, mut f: impl FnMut()) -> Option<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..runs.max(1) {
        let start = thread_cpu_ns()?;
        for _ in 0..calls {
            f();
        }
        let spent = thread_cpu_ns()?.saturating_sub(start);
        best = best.min(spent as f64 / calls.max(1) as f64);
    }
    Some(best)
}
