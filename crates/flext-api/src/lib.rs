//! # flext-api
//!
//! The flext HTTP client: a [`Client`] that stacks every flext layer, with production
//! defaults, over a pooled hyper HTTP/1.1 + HTTP/2 client, the way Microsoft's standard
//! resilience handler does for .NET, with reqwest's ergonomics.
//!
//! ```
//! use flext_api::Client;
//! use flext_testkit::{ID_HEADER, SCRIPT_HEADER, TestServer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let server = TestServer::start().await?;
//! let client = Client::builder().base_url(&server.url("/")).build()?;
//!
//! // The server fails twice; the defaults retry a GET through it.
//! let response = client
//!     .get("items/1")
//!     .header(ID_HEADER, "quick-start")
//!     .header(SCRIPT_HEADER, "503,503,200")
//!     .send()
//!     .await?;
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.attempts(), 3);
//! assert_eq!(response.text().await?, "ok");
//! assert_eq!(server.stats().requests_for_id("quick-start"), 3);
//! # Ok(())
//! # }
//! ```
//!
//! # The stack
//!
//! Outermost first (`docs/architecture.md` says why in this order):
//!
//! ```text
//! redirects             up to 10; credentials stripped when leaving the origin
//! TraceLayer (logical)  one span around the whole call, backoff included
//! total timeout         30 s; sets the Deadline every layer below respects
//! RetryLayer            3 retries, budget, Retry-After, idempotency, body replay
//! AuthLayer             credentials for the base URL's origin; 401 -> refresh -> replay
//! custom layers         ClientBuilder::layer: the plugin point, sees every attempt
//! BreakerLayer          one breaker per origin; open -> fail fast
//! TraceLayer (attempt)  one CLIENT span per attempt, metrics
//! attempt timeout       10 s
//! flext-pool            HTTP/1.1 + HTTP/2 over TCP or TLS (rustls)
//! ```
//!
//! [`stack`] gives the same layers to put over another inner service.
//!
//! # Features
//!
//! - `gzip`, `brotli`, `zstd`: response decompression (through tower-http): the client sends
//!   `Accept-Encoding` and decodes the bodies the server compressed.
//!
//! # Errors
//!
//! Every failure is one [`Error`] that keeps what happened: `is_timeout()`, `is_connect()`,
//! `is_circuit_open()`, `is_budget_exhausted()`, `status()`, `retry_info()`, and the
//! original cause in `source()`. `docs/troubleshooting.md` explains each.

#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]

mod body;
mod client;
mod config;
mod duration;
mod error;
mod health;
mod pending;
mod redirect;
mod request;
mod response;
mod stack;
mod timeout;
mod url;

pub use body::Body;
pub use client::{Client, ClientBuilder, DEFAULT_USER_AGENT};
pub use config::{
    BreakerClock, BreakerSettings, ClientConfig, HttpVersionPref, PoolSettings, Propagate,
    RetrySettings, TraceSettings,
};
pub use duration::{DurationError, parse as parse_duration};
pub use error::Error;
pub use health::{Health, OriginHealth, RequestCounts, RetryHealth};
pub use pending::Pending;
pub use request::RequestBuilder;
pub use response::{DecodedBody, Response, ResponseBody};
pub use stack::{AttemptBody, AttemptService, Stack, StackService, stack};
pub use url::IntoUrl;

// The layer crates, for settings that go beyond the facade.
pub use flext_auth as auth;
pub use flext_breaker as breaker;
pub use flext_core as core;
pub use flext_pool as pool;
pub use flext_retry as retry;
pub use flext_trace as trace;
