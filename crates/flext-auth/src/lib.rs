//! # flext-auth
//!
//! Credentials for HTTP clients as a [`tower`](https://docs.rs/tower) layer over plain
//! `http::Request<B>`: static or refreshable, attached only where they belong, never leaked.
//!
//! - **Static credentials** ([`Credential`]): bearer tokens (RFC 6750), HTTP Basic (RFC 7617,
//!   with a typed error for a user-id containing `:` or control characters), an API key in a
//!   header or (opt-in) in the query, any custom header. The header value is built once,
//!   marked sensitive, and shared: attaching it does not allocate. An `AuthLayer<Credential>`
//!   hands the request on as it came, with the credential added, like tower-http's
//!   `AddAuthorization`.
//! - **Dynamic credentials**: a [`CredentialProvider`] (yours, [`provider_fn`], or OAuth 2.0
//!   [`ClientCredentials`]) behind a [`CachedProvider`] that refreshes ahead of expiry, runs a
//!   single refresh for any number of concurrent requests, bounds it by a timeout, and backs
//!   off when the provider fails. The warm path is a relaxed atomic load and a read of the
//!   kernel's coarse clock: the refresh point is watched by tokio's timer, so tokio's
//!   (pausable) clock is only read near it.
//! - **401**: a request rejected with a cached token invalidates that token (if it is still
//!   the cached one), gets a new one and is replayed once, its body kept by flext-core's
//!   [`ReplayBody`](flext_core::ReplayBody) and its [`Attempt`](flext_core::Attempt)
//!   advanced. The inner service of an `AuthLayer<CachedProvider>` therefore gets a
//!   `Request<ReplayBody<B>>`.
//! - **Never leaked**: credentials only go to an allow-list of [`Origin`](flext_core::Origin)s;
//!   plain `http://` to a host that is not loopback is refused ([`Error::is_insecure`]) unless
//!   allowed; an `Authorization` the caller set is kept; secrets are held in
//!   [`secrecy`](https://docs.rs/secrecy) types, every `Debug` shows `[REDACTED]`, and
//!   nothing in this crate logs them.
//!
//! The layer's type says where its credential comes from ([`Source`]): `AuthLayer<Credential>`,
//! `AuthLayer<CachedProvider>`, or `AuthLayer<CredentialSource>` for a choice made at run time
//! (which hands a `ReplayBody` to its inner service for either kind).
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//!
//! use flext_auth::{AuthLayer, CachedProvider, Credential, Token, provider_fn};
//! use flext_core::ReplayBody;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use bytes::Bytes;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), flext_core::BoxError> {
//! // Stand-ins for an HTTP client: answer with the Authorization header they got.
//! let client = service_fn(|req: Request<Full<Bytes>>| async move {
//!     let auth = req.headers().get("authorization").cloned();
//!     Ok::<_, Infallible>(Response::new(auth))
//! });
//! let replaying_client = service_fn(|req: Request<ReplayBody<Full<Bytes>>>| async move {
//!     let auth = req.headers().get("authorization").cloned();
//!     Ok::<_, Infallible>(Response::new(auth))
//! });
//!
//! // Static: a bearer token for one origin, the request otherwise untouched.
//! let bearer = ServiceBuilder::new()
//!     .layer(AuthLayer::builder(Credential::bearer("static-t0k3n")?)
//!         .origin("https://api.example.com".parse()?)
//!         .build()?)
//!     .service(client);
//! let res = bearer.clone().oneshot(Request::get("https://api.example.com/v1/items").body(Full::default())?).await?;
//! assert_eq!(res.body().as_ref().unwrap(), "Bearer static-t0k3n");
//! assert!(res.body().as_ref().unwrap().is_sensitive());
//!
//! // Another origin gets nothing.
//! let res = bearer.oneshot(Request::get("https://elsewhere.example.net/").body(Full::default())?).await?;
//! assert!(res.body().is_none());
//!
//! // Dynamic: tokens from a provider, cached, refreshed ahead of expiry, and a 401 replayed.
//! let cache = CachedProvider::new(provider_fn(|| async {
//!     Ok::<_, Infallible>(Token::new("fresh-t0k3n").expires_in(Duration::from_secs(3600)))
//! }));
//! let dynamic = ServiceBuilder::new()
//!     .layer(AuthLayer::builder(cache).origin("https://api.example.com".parse()?).build()?)
//!     .service(replaying_client);
//! let res = dynamic.oneshot(Request::get("https://api.example.com/v1/items").body(Full::default())?).await?;
//! assert_eq!(res.body().as_ref().unwrap(), "Bearer fresh-t0k3n");
//! # Ok(())
//! # }
//! ```
//!
//! See `docs/auth.md` in the repository for refresh timing, the 401 behaviour and the
//! security guarantees in detail.

#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]

mod cache;
mod credential;
mod error;
pub mod future;
mod layer;
mod oauth2;
mod provider;
mod scope;
mod service;
mod watch;

pub use cache::{CachedProvider, CachedProviderBuilder};
pub use credential::Credential;
pub use error::Error;
pub use layer::{AuthLayer, AuthLayerBuilder, CredentialSource, Source};
pub use oauth2::{ClientAuth, ClientCredentials, ClientCredentialsBuilder};
pub use provider::{BoxFuture, CredentialProvider, ProviderFn, Token, provider_fn};
pub use secrecy::{ExposeSecret, SecretString};
pub use service::Auth;
