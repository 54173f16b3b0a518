//! # flext-pool
//!
//! A pooled HTTP/1.1 and HTTP/2 client as a `tower::Service<http::Request<B>>`: HTTP/1.1 on
//! hyper's `client::conn` connections, HTTP/2 on the `h2` crate directly (the caller's task
//! opens its stream; no task or channel per request). [`PoolLayer`] wraps any connector (a
//! `Service<Uri>` yielding an IO) into a [`Pool`]; [`Pool::http`] and [`Pool::https`] come
//! with hyper-util's TCP connector and rustls.
//!
//! What it does that hyper-util's legacy client does not:
//!
//! - **Limits per origin**: at most 100 connections, 20 idle, idle ones closed after 30 s,
//!   each retired after a jittered 5 min lifetime. Requests beyond the limit wait in a FIFO
//!   queue (1,024 deep) for at most 30 s, then fail with a typed, never-sent acquire error.
//! - **Real back-pressure**: `poll_ready` is `Pending` while the pool's queue is full (see
//!   [`Pool`]'s readiness notes), instead of always `Ready`.
//! - **HTTP/2 that scales out**: streams go to the least loaded connection until each
//!   carries as many as the server's `SETTINGS_MAX_CONCURRENT_STREAMS` allows, then another
//!   connection is opened, up to `http2_max_connections_per_origin` (default 100, and never
//!   past `max_connections_per_origin`). The server's limit is read off the wire by a
//!   frame sniffer under h2, which also sees GOAWAY before h2 reports it.
//! - **HTTP/2 at the cost of h2 alone**: hyper's HTTP/2 client spawns a task per request and
//!   passes each request and response through channels; here the caller's task drives its
//!   stream. About 1.2× hyper-util's throughput over h2c at 64 concurrent requests, and a
//!   third of its latency one request at a time (`docs/benchmarks.md`).
//! - **One handshake on a cold start**: concurrent first requests to a TLS origin wait for
//!   one connect; once ALPN says HTTP/1.1, more connects start for those still waiting.
//! - **"Never sent" made explicit**: every error carries a [`flext_core::TransportError`]
//!   with a kind and a sent flag. A request refused by `REFUSED_STREAM` or a GOAWAY, or given
//!   back unsent by a connection that closed, says `Sent::No`, so a retry layer may resend
//!   even a `POST`; a request handed back unsent by a reused connection is resent once here.
//! - **Metrics**: per-origin snapshots ([`Pool::metrics`]) with connection, stream and
//!   waiter counts, close reasons, and connect and acquire time histograms.
//!
//! ```
//! use bytes::Bytes;
//! use flext_pool::{Config, Pool};
//! use flext_testkit::TestServer;
//! use http_body_util::{BodyExt, Empty};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let server = TestServer::builder().http1().start().await?;
//! let config = Config::builder().max_connections_per_origin(8).build()?;
//! let pool = Pool::<_, Empty<Bytes>>::http_with(config);
//!
//! for _ in 0..3 {
//!     let request = http::Request::get(server.uri("/hello")).body(Empty::new())?;
//!     let response = pool.clone().oneshot(request).await?;
//!     assert_eq!(response.status(), 200);
//!     let body = response.into_body().collect().await?.to_bytes();
//!     assert_eq!(body, "ok");
//! }
//!
//! // One connection served all three requests.
//! assert_eq!(server.stats().connections_accepted, 1);
//! let origin = flext_core::Origin::from_uri(&server.uri("/"))?;
//! let snapshot = pool.origin_metrics(&origin).expect("the pool knows the origin");
//! assert_eq!(snapshot.counters.opened_http1, 1);
//! assert_eq!(snapshot.counters.reused, 2);
//! # Ok(())
//! # }
//! ```
//!
//! `docs/pool-tuning.md` in the repository explains every setting and the metrics.
//!
//! # Features
//!
//! - `webpki-roots` (default): trust Mozilla's roots, bundled.
//! - `system-roots`: `TlsConfig::system_roots` trusts the operating system's roots.
//! - `hickory-dns`: `HickoryResolver`, an async resolver with a TTL cache (hickory-dns,
//!   reading `/etc/resolv.conf` and the hosts file), for `ConnectorBuilder::resolver`.
//!   Without it names are resolved by the system resolver (`getaddrinfo`, on tokio's
//!   blocking pool).

#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod config;
mod conn;
mod connect;
mod dial;
mod dns;
mod error;
mod future;
mod http2;
mod layer;
mod metrics;
mod origin_pool;
mod proxy;
mod ready;
mod service;
mod sniff;
mod tls;

pub use body::Body;
pub use config::{Config, ConfigBuilder, ConfigError};
pub use connect::{Connector, ConnectorBuilder, Io};
#[cfg(feature = "hickory-dns")]
pub use dns::{HickoryResolver, HickoryResolverBuilder};
pub use error::Error;
pub use future::ResponseFuture;
pub use layer::PoolLayer;
pub use metrics::{Counters, HistogramSnapshot, OriginSnapshot, PoolSnapshot, Protocol};
pub use proxy::Proxy;
pub use service::Pool;
pub use tls::TlsConfig;
