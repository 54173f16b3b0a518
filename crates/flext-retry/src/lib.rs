//! # flext-retry
//!
//! [`RetryLayer`] wraps any `tower::Service<http::Request<B>>` and retries what is safe to
//! retry, with defaults that need no tuning:
//!
//! - **What**: the [`Classify`](flext_core::Classify) of flext-core decides what failed
//!   ([`HttpClassifier`](flext_core::HttpClassifier) by default). A request that certainly
//!   never reached the server (connect refused, HTTP/2 `REFUSED_STREAM`, GOAWAY) is retried
//!   whatever its method, at most twice; a transient failure (408, 429, 500, 502, 503, 504,
//!   resets, timeouts) only for an idempotent request: RFC 9110's idempotent methods, a
//!   request with an [`Idempotency-Key`](IDEMPOTENCY_KEY) header, or one marked with a
//!   [`RetryOverride`] extension. Anything else comes back as it is.
//! - **How often**: 3 retries (4 attempts), never more than 10, and a [`Budget`] shared by
//!   every clone of the layer: retries stay under 20% of requests plus 10 per second.
//! - **When**: exponential [`Backoff`] with full [`Jitter`] (100 ms doubling to 10 s); a
//!   `Retry-After` on a 429 or 503 is honoured up to a minute; the request's
//!   [`Deadline`](flext_core::Deadline) is never slept past.
//! - **Bodies**: a request body is kept while the first attempt sends it
//!   ([`Replayable`](flext_core::Replayable)), up to 64 KiB per request and 16 MiB in
//!   flight, and replayed byte for byte, trailers included. A body over the cap is sent once
//!   and the request is not retried; the response says so.
//! - **Visible**: a [`RetryInfo`] on the response (or in the [`RetryError`]) tells the
//!   attempts, the waits, each retry's reason and why retrying stopped; a `tracing` event
//!   marks each retry; [`RetryLayer::metrics`] counts them.
//!
//! Every attempt gets its own copy of the request's extensions with
//! [`Attempt`](flext_core::Attempt) set, and `poll_ready` is called on the inner service
//! before each. Backoff sleeps use tokio's timer, so the layer runs on a tokio runtime with
//! time enabled (and follows its paused clock in tests).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//!
//! use bytes::Bytes;
//! use flext_core::{BoxError, ReplayBody};
//! use flext_retry::{Backoff, RetryInfo, RetryLayer};
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! // A server that fails twice with 503, then echoes the request body.
//! let calls = Arc::new(AtomicU32::new(0));
//! let counter = calls.clone();
//! let inner = tower::service_fn(move |req: Request<ReplayBody<Full<Bytes>>>| {
//!     let n = counter.fetch_add(1, Ordering::SeqCst);
//!     async move {
//!         let body = req.into_body().collect().await?.to_bytes();
//!         let status = if n < 2 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
//!         let mut res = Response::new(Full::new(body));
//!         *res.status_mut() = status;
//!         Ok::<_, BoxError>(res)
//!     }
//! });
//!
//! let layer = RetryLayer::builder().backoff(Backoff::default()).build()?;
//! let mut client = ServiceBuilder::new().layer(layer.clone()).service(inner);
//!
//! let request = Request::put("http://api.example/items/1").body(Full::new(Bytes::from("v2")))?;
//! let response = client.ready().await?.call(request).await?;
//!
//! assert_eq!(response.status(), StatusCode::OK);
//! let info = RetryInfo::of(&response).expect("it was retried");
//! assert_eq!(info.attempts(), 3);
//! assert_eq!(info.retries()[0].failure().status(), Some(StatusCode::SERVICE_UNAVAILABLE));
//! assert_eq!(response.into_body().collect().await?.to_bytes(), "v2");
//! assert_eq!(layer.metrics().retries, 2);
//! # Ok(())
//! # }
//! ```
//!
//! See `docs/retry.md` for the defaults and where they come from, and how to tune them.

#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]

mod backoff;
mod budget;
mod config;
mod error;
pub mod future;
mod info;
mod layer;
mod metrics;
mod policy;
mod service;
#[cfg(test)]
mod tests;

pub use backoff::{Backoff, Jitter, Random};
pub use budget::Budget;
pub use config::{MAX_RETRIES, RetryBuilder};
pub use error::{ConfigError, RetryError};
pub use info::{RetryInfo, RetryRecord, StopReason};
pub use layer::RetryLayer;
pub use metrics::RetryMetrics;
pub use policy::{IDEMPOTENCY_KEY, RetryOverride, is_idempotent_method};
pub use service::Retry;
