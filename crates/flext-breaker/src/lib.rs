//! # flext-breaker
//!
//! `BreakerLayer` will keep one circuit breaker per [`Origin`](https://docs.rs/flext-core) (or per
//! user key): consecutive-failure and failure-rate rules over a sliding window, limited
//! half-open probes, growing open times, and a lock-free closed path.
//!
//! **Status:** this crate is a placeholder. It holds no code yet; its issue comes after the
//! workspace foundation, and nothing here pretends to work until then.

#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]
