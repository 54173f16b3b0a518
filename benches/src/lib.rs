//! Criterion micro benchmarks (`benches/benches/`) and the end-to-end peer comparison
//! (`src/bin/e2e/`, run by `cargo xtask bench`) for flext; `docs/benchmarks.md` has the figures
//! and the commands.
//!
//! This library holds what every bench shares: [`measure_allocations`], which counts the heap
//! allocations a closure makes through the [`GLOBAL`] counting allocator. A bench target that
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
