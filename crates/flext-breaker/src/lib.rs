//! # flext-breaker
//!
//! Per-origin circuit breakers for HTTP clients, as a [`tower`](https://docs.rs/tower) layer
//! over any `Service<http::Request<B>>`.
//!
//! [`BreakerLayer`] keeps one breaker per [`Origin`](flext_core::Origin) (or per key of a
//! [`key_fn`]), in a bounded map (1,024 keys by default; idle breakers are evicted). Each
//! breaker is a state machine over atomics:
//!
//! ```text
//!            5 failures in a row, or >= 50% failures
//!            over 10 s once 20 calls were seen
//!   Closed ─────────────────────────────────────────▶ Open ◀──────────────┐
//!     ▲                                                │ 30 s ±10%,       │ probe failed or
//!     │ every probe succeeded                          │ x2 per failed    │ no verdict in time
//!     │ (open time back to 30 s)                       ▼ probe, <= 5 min  │ (open time doubles)
//!     └──────────────────────────────────────────── HalfOpen ─────────────┘
//!                                                  1 probe admitted,
//!                                                  the rest fail fast
//!
//!   ForcedOpen, Disabled: set by an operator through the BreakerHandle, until a reset
//! ```
//!
//! - **Closed path without locks or allocation**: admitting a call is one atomic load;
//!   recording its result is one CAS on a time-stamped bucket of the sliding window (and a
//!   clock read). The map is read with one atomic load and probed with a borrowed
//!   [`OriginRef`](flext_core::OriginRef); each service also remembers the last breaker it
//!   used, and the map the last one any service found, so a service cloned for every call
//!   (as a client facade does) skips the parse and hash of an origin it saw before.
//! - **Fail fast with the time left**: a refused call fails in `call` (not `poll_ready`) with
//!   [`CircuitOpen`], which says which origin and how long until the next probe
//!   ([`CircuitOpen::retry_after`]), so a retry layer above never retries before its time.
//! - **Probes that cannot leak**: a half-open breaker admits a fixed number of probes; a
//!   probe whose future is dropped gives its place back; results of calls made before a
//!   state change are ignored (a generation counter); a half-open breaker without a verdict
//!   in time opens again.
//! - **What counts**: [`BreakerClassifier`]: 500, 502, 503, 504 and transport errors are
//!   failures, 4xx (429 included) are not; a `Retry-After` on a 429 or 503 makes the next
//!   open time at least that long. Optional slow-call rule.
//! - **Observability**: `tracing` events (WARN on open, INFO on close), callbacks
//!   ([`Builder::on_transition`]), and a [`Snapshot`] per breaker from the [`BreakerHandle`],
//!   which can also force a breaker open, disable it or reset it.
//! - **Testable time**: [`Clock`]: the kernel's coarse monotonic clock by default (cheap
//!   enough to read on every call), [`TokioClock`] to follow tokio's paused clock, and a
//!   [`ManualClock`].
//!
//! ```
//! use std::time::Duration;
//! use flext_breaker::{BreakerConfig, BreakerLayer, CircuitOpen, ManualClock, State};
//! use flext_core::Origin;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let clock = ManualClock::new();
//! let layer = BreakerLayer::builder()
//!     .config(BreakerConfig::default().consecutive_failures(3).jitter(0.0))
//!     .clock(clock.clone())
//!     .build()
//!     .unwrap();
//!
//! // A server that always answers 503.
//! let svc = layer.layer(service_fn(|_req: http::Request<()>| async {
//!     let mut res = http::Response::new(());
//!     *res.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
//!     Ok::<_, std::convert::Infallible>(res)
//! }));
//! let req = || http::Request::get("http://backend.internal/health").body(()).unwrap();
//!
//! for _ in 0..3 {
//!     let res = svc.clone().oneshot(req()).await.unwrap();
//!     assert_eq!(res.status(), 503);
//! }
//!
//! // Three failures in a row: open, and calls fail fast without reaching the server.
//! let err = svc.clone().oneshot(req()).await.unwrap_err();
//! let open = err.downcast_ref::<CircuitOpen>().unwrap();
//! assert_eq!(open.retry_after(), Some(Duration::from_secs(30)));
//! assert_eq!(
//!     open.to_string(),
//!     "circuit open for http://backend.internal:80; next probe in 30.0s"
//! );
//!
//! let origin: Origin = "http://backend.internal".parse().unwrap();
//! let snapshot = layer.handle().snapshot(&origin).unwrap();
//! assert_eq!(snapshot.state, State::Open);
//! assert_eq!((snapshot.permitted, snapshot.rejected), (3, 1));
//!
//! // After the open time, one probe goes through; it fails, so the open time doubles.
//! clock.advance(Duration::from_secs(30));
//! assert_eq!(svc.clone().oneshot(req()).await.unwrap().status(), 503);
//! let err = svc.clone().oneshot(req()).await.unwrap_err();
//! assert_eq!(
//!     CircuitOpen::find(&*err).unwrap().retry_after(),
//!     Some(Duration::from_secs(60))
//! );
//! # }
//! ```
//!
//! See `docs/breaker.md` in the repository for tuning advice and how the breaker works with
//! retry.

#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]

mod classify;
mod clock;
mod config;
mod error;
pub mod future;
mod handle;
mod key;
mod layer;
mod observe;
mod registry;
mod service;
mod state;
mod window;

pub use classify::BreakerClassifier;
pub use clock::{Clock, ManualClock, TokioClock};
pub use config::{BreakerConfig, ConfigError};
pub use error::CircuitOpen;
pub use handle::BreakerHandle;
pub use key::{ByOrigin, Key, KeyFn, KeyProbe, Partition, PartitionFor, key_fn};
pub use layer::{BreakerLayer, Builder};
pub use observe::{Cause, Snapshot, State, Transition};
pub use service::Breaker;
