//! [`AuthLayer`] and its builder.

use std::fmt;
use std::sync::Arc;

use flext_core::{Origin, ReplayLimits};
use secrecy::SecretString;
use tower_layer::Layer;

use crate::cache::CachedProvider;
use crate::credential::Credential;
use crate::error::Error;
use crate::scope::Scope;
use crate::service::Auth;

/// Where an [`AuthLayer`]'s credential comes from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CredentialSource {
    /// A credential that never changes; a 401 is handed back as it is.
    Static(Credential),
    /// Tokens from a [`CachedProvider`], refreshed ahead of expiry and after a 401.
    Cached(CachedProvider),
}

impl From<Credential> for CredentialSource {
    fn from(credential: Credential) -> Self {
        CredentialSource::Static(credential)
    }
}

impl From<CachedProvider> for CredentialSource {
    fn from(cache: CachedProvider) -> Self {
        CredentialSource::Cached(cache)
    }
}

/// What every [`Auth`] service of a layer shares.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) source: CredentialSource,
    pub(crate) scope: Scope,
    pub(crate) allow_plain_http: bool,
    pub(crate) replace_existing: bool,
    pub(crate) replay: bool,
    pub(crate) limits: ReplayLimits,
}

/// Adds credentials to the requests bound for the origins they are meant for.
///
/// Built with [`AuthLayer::builder`] from a static [`Credential`] or a [`CachedProvider`],
/// and at least one [`Origin`]. For each request:
///
/// - to an origin not in the allow-list (or with a relative URI): sent untouched;
/// - to an allowed origin over plain `http://` to a host that is not loopback: refused with
///   [`Error::is_insecure`], unless [`allow_plain_http`](AuthLayerBuilder::allow_plain_http);
/// - carrying the credential's header already (an `Authorization` the caller set): sent as the
///   caller made it, unless [`replace_existing`](AuthLayerBuilder::replace_existing);
/// - else the credential is attached. With a cached provider, a 401 answer invalidates the
///   token the request carried (if still cached), fetches a new one and replays the request
///   once, with the [`Attempt`](flext_core::Attempt) extension advanced, when its body fits
///   the [replay limits](AuthLayerBuilder::replay_limits).
///
/// The service's error is a `tower::BoxError`: the inner service's errors unchanged, or an
/// [`Error`] of this crate.
///
/// ```
/// use flext_auth::{AuthLayer, Credential};
///
/// let layer = AuthLayer::builder(Credential::bearer("t0k3n")?)
///     .origin("https://api.example.com".parse().unwrap())
///     .build()?;
/// # Ok::<(), flext_auth::Error>(())
/// ```
#[derive(Clone)]
pub struct AuthLayer {
    config: Arc<Config>,
}

impl AuthLayer {
    /// A builder for a layer attaching `source`'s credential.
    pub fn builder(source: impl Into<CredentialSource>) -> AuthLayerBuilder {
        AuthLayerBuilder {
            source: source.into(),
            scope: Scope::default(),
            allow_plain_http: false,
            allow_query: false,
            replace_existing: false,
            replay: true,
            limits: ReplayLimits::default(),
        }
    }

    /// A layer sending `Authorization: Bearer <token>` to `origin`, with the defaults.
    ///
    /// # Errors
    ///
    /// As [`Credential::bearer`] and [`AuthLayerBuilder::build`].
    pub fn bearer(token: impl Into<SecretString>, origin: Origin) -> Result<AuthLayer, Error> {
        AuthLayer::builder(Credential::bearer(token)?)
            .origin(origin)
            .build()
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth::from_config(inner, Arc::clone(&self.config))
    }
}

impl fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("config", &self.config)
            .finish()
    }
}

/// Builds an [`AuthLayer`]; from [`AuthLayer::builder`].
#[derive(Debug)]
pub struct AuthLayerBuilder {
    source: CredentialSource,
    scope: Scope,
    allow_plain_http: bool,
    allow_query: bool,
    replace_existing: bool,
    replay: bool,
    limits: ReplayLimits,
}

impl AuthLayerBuilder {
    /// Allows the credential to go to `origin` (scheme, host and port; `https://a.com` is
    /// not `http://a.com` nor `https://a.com:8443`). At least one is needed.
    pub fn origin(mut self, origin: Origin) -> Self {
        self.scope.push(origin);
        self
    }

    /// Allows the credential to go to each of `origins`.
    pub fn origins(mut self, origins: impl IntoIterator<Item = Origin>) -> Self {
        for origin in origins {
            self.scope.push(origin);
        }
        self
    }

    /// Sends the credential over plain `http://` to allowed origins whose host is not
    /// loopback, in clear text for anyone on the path to read. Off by default: such a request
    /// fails with [`Error::is_insecure`]. Loopback hosts (`localhost`, `127.0.0.0/8`, `[::1]`)
    /// never need it.
    pub fn allow_plain_http(mut self, allow: bool) -> Self {
        self.allow_plain_http = allow;
        self
    }

    /// Accepts a [`Credential::api_key_query`], which puts the secret in the URL (see its
    /// warning). Off by default: building with one fails with [`Error::is_config`].
    pub fn allow_query_credential(mut self, allow: bool) -> Self {
        self.allow_query = allow;
        self
    }

    /// Replaces a header (or query parameter) of the credential's name that the caller set
    /// on the request. Off by default: the caller's own `Authorization` wins, and the request
    /// goes out as the caller made it.
    pub fn replace_existing(mut self, replace: bool) -> Self {
        self.replace_existing = replace;
        self
    }

    /// Whether a 401 to a request carrying a cached token refreshes the token and replays
    /// the request once (on by default). Off, the 401 still invalidates the token, so that the
    /// next request (or a retry) gets a new one, and is handed back as it is.
    pub fn replay_on_unauthorized(mut self, replay: bool) -> Self {
        self.replay = replay;
        self
    }

    /// How much of a request body is kept to replay it after a 401 (by default 64 KiB per
    /// body, see [`ReplayLimits`]). A larger body is sent once and its 401 handed back.
    pub fn replay_limits(mut self, limits: ReplayLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The layer.
    ///
    /// # Errors
    ///
    /// [`Error::is_config`] without any origin, or with a query credential and no
    /// [`allow_query_credential`](Self::allow_query_credential).
    pub fn build(self) -> Result<AuthLayer, Error> {
        if self.scope.is_empty() {
            return Err(Error::config("no origin to send the credential to"));
        }
        if let CredentialSource::Static(c) = &self.source
            && c.is_query()
            && !self.allow_query
        {
            return Err(Error::config(
                "a query credential needs allow_query_credential(true)",
            ));
        }
        Ok(AuthLayer {
            config: Arc::new(Config {
                source: self.source,
                scope: self.scope,
                allow_plain_http: self.allow_plain_http,
                replace_existing: self.replace_existing,
                replay: self.replay,
                limits: self.limits,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_validates() {
        let bearer = || Credential::bearer("t").unwrap();
        assert!(
            AuthLayer::builder(bearer())
                .build()
                .unwrap_err()
                .is_config()
        );
        let origin: Origin = "https://api.example.com".parse().unwrap();
        assert!(
            AuthLayer::builder(bearer())
                .origin(origin.clone())
                .build()
                .is_ok()
        );
        let query = Credential::api_key_query("key", "v").unwrap();
        assert!(
            AuthLayer::builder(query.clone())
                .origin(origin.clone())
                .build()
                .unwrap_err()
                .is_config()
        );
        assert!(
            AuthLayer::builder(query)
                .origin(origin)
                .allow_query_credential(true)
                .build()
                .is_ok()
        );
    }

    #[test]
    fn debug_is_redacted() {
        let layer =
            AuthLayer::bearer("s3cr3t-t0k3n", "https://api.example.com".parse().unwrap()).unwrap();
        let s = format!("{layer:?}");
        assert!(!s.contains("s3cr3t"), "{s}");
        assert!(s.contains("[REDACTED]") && s.contains("api.example.com"));
    }
}
