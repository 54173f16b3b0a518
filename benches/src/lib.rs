//! Criterion micro benchmarks (`benches/benches/`) and the end-to-end peer comparison for flext.
//! This library is empty on purpose; the benchmarks are separate targets.
