//! A real HTTP server on loopback with scripted faults, for the tests, benches and demos of
//! an HTTP client stack.
//!
//! [`TestServer`] is a [hyper] 1.x server started in-process on `127.0.0.1:0`. It speaks
//! HTTP/1.1, HTTP/2 with prior knowledge (h2c) or both, optionally over TLS with ALPN, and
//! every fault it injects is real network behaviour: status codes, `Retry-After`, delays,
//! slow chunked bodies, dropped connections, HTTP/2 stream resets and GOAWAY, idle
//! timeouts, outages (`stop` / `restart`), and malformed HTTP/1.1 responses written on the
//! raw socket (`garbage`, `bad-status`, `huge-headers`, `truncated`, `wrong-length`; see
//! [`Script`]).
//!
//! # Scripts
//!
//! A request picks its own faults, so that concurrent tests never interfere: it carries an
//! id in [`ID_HEADER`] and a [`Script`] in [`SCRIPT_HEADER`]. The server counts requests per
//! id, and the n-th request with that id plays step n (the last step repeats). Scripts can
//! also be installed per id ([`TestServer::script`]) or per path
//! ([`TestServer::script_path`]). A request with no script gets seeded
//! [random faults](RandomFaults) if configured, else `200 ok`. A malformed script header gets
//! `400 Bad Request` with the parse error as its body.
//!
//! Every response carries [`CONNECTION_ID_HEADER`], the server's number for the connection
//! it was served on, so a test can see connection reuse.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use flext_testkit::{ID_HEADER, SCRIPT_HEADER, TestServer};
//! use http_body_util::Empty;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = TestServer::builder().http1().start().await?;
//! let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
//!
//! let mut statuses = Vec::new();
//! for _ in 0..3 {
//!     let request = http::Request::get(server.uri("/items"))
//!         .header(ID_HEADER, "example")
//!         .header(SCRIPT_HEADER, "503;retry-after=1,503,200")
//!         .body(Empty::new())?;
//!     statuses.push(client.request(request).await?.status().as_u16());
//! }
//! assert_eq!(statuses, [503, 503, 200]);
//!
//! let stats = server.stats();
//! assert_eq!(stats.requests_for_id("example"), 3);
//! assert_eq!(stats.connections_accepted, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # TLS
//!
//! With [`Builder::tls`] the server makes a CA and a certificate for `localhost`,
//! `127.0.0.1` and `::1` at start. Trust [`TestServer::ca_pem`] (or use
//! [`TestServer::client_tls_config`]) and connect to [`TestServer::url`], which names
//! `localhost`.
#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]

mod body;
mod config;
mod conn;
mod echoed;
mod raw;
mod script;
mod server;
mod service;
mod stats;
mod tls;

use std::sync::{Mutex, MutexGuard, PoisonError};

pub use config::{Builder, RandomFaults};
pub use echoed::Echoed;
pub use script::{Script, ScriptError};
pub use server::TestServer;
pub use stats::Stats;

/// The request header naming the script's id, `x-testkit-id`; any visible ASCII value.
pub const ID_HEADER: &str = "x-testkit-id";

/// The request header carrying a [`Script`], `x-testkit-script`.
pub const SCRIPT_HEADER: &str = "x-testkit-script";

/// The response header with the server's number for the connection, `x-testkit-connection`;
/// the first connection is 1.
pub const CONNECTION_ID_HEADER: &str = "x-testkit-connection";

/// Locks a mutex whose data stays consistent even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
