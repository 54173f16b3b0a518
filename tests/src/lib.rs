//! Cross-crate integration and chaos tests for flext, and the reliability scenarios of
//! issue 11.
//!
//! The tests live in `tests/tests/`. This library holds the scenarios they share with the
//! full-size runner (`src/bin/soak.rs`, run by `cargo xtask soak`): each one drives a default
//! [`flext_api::Client`] against a [`flext_testkit::TestServer`] on loopback, takes a size or a
//! duration, and returns a report of figures a user would notice (requests, attempts the server
//! counted, failures by typed kind, latencies, resident memory). The tests assert on the
//! figures at a small size; the runner prints them at full size for `docs/reliability.md`.
//!
//! | scenario | module |
//! |---|---|
//! | 1. soak with 10% seeded faults | [`scenario::soak`] |
//! | 2. retry storm (budget, breaker, reqwest-retry) | [`scenario::storm`] |
//! | 3. recovery after a restart (open time, probes) | [`scenario::recovery`] |
//! | 4. graceful restart under load (GOAWAY) | [`scenario::goaway`] |
//! | 5. slow server (attempt timeouts, deadline, leaks) | [`scenario::slow`] |
//! | 6. memory over a long run, bounded breaker map | [`scenario::memory`] |
//!
//! ```no_run
//! use flext_tests::scenario::soak::{SoakParams, soak};
//!
//! # #[tokio::main]
//! # async fn main() {
//! let report = soak(SoakParams { requests: 2_000, ..SoakParams::default() }).await.unwrap();
//! assert!(report.attempts_per_request <= 1.15);
//! println!("{}", flext_tests::report::table(&report.figures()));
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod load;
pub mod report;
pub mod rss;
pub mod scenario;
pub mod server;

/// The error of a scenario that could not run (a server that did not start, a client that
/// did not build); what a scenario measured is in its report, never in this error.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
