//! [`AuthLayer`], its builder, and the [`Source`]s it takes a credential from.

use std::fmt;
use std::sync::Arc;

use flext_core::{Origin, ReplayLimits};
use secrecy::SecretString;
use tower_layer::Layer;

use crate::cache::{CachedProvider, LocalView};
use crate::credential::Credential;
use crate::error::Error;
use crate::scope::Scope;
use crate::service::Auth;

/// A static [`Credential`] or a [`CachedProvider`], chosen at run time (from a configuration
/// file, say): the source of an `AuthLayer<CredentialSource>`.
///
/// When the kind of credential is known where the layer is built, give the [`Credential`] or
/// the [`CachedProvider`] itself to [`AuthLayer::builder`]: a static credential's layer then
/// passes the request through as it is (see [`AuthLayer`]).
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

/// What an [`AuthLayer`] takes its credential from: a static [`Credential`], a
/// [`CachedProvider`], or a [`CredentialSource`] (either, chosen at run time).
///
/// The source decides the service's request type (see [`AuthLayer`]). This trait is sealed:
/// it cannot be implemented outside this crate.
// Sealed by a crate-private supertrait, which is what `private_bounds` points out.
#[allow(private_bounds)]
pub trait Source: sealed::Sealed {}

impl Source for Credential {}
impl Source for CachedProvider {}
impl Source for CredentialSource {}

pub(crate) mod sealed {
    use super::{CachedProvider, CredentialSource, Error, LocalView};
    use crate::credential::Credential;

    /// What the layer and its services need from a source.
    pub(crate) trait Sealed: Clone + std::fmt::Debug + Send + Sync + 'static {
        /// Each service's own state: a view of the token cache for a dynamic credential.
        type Local: Clone + Send + Sync + 'static;

        fn local(&self) -> Self::Local;

        /// Whether the source may be used with these settings.
        fn check(&self, allow_query: bool) -> Result<(), Error>;
    }

    fn check_static(credential: &Credential, allow_query: bool) -> Result<(), Error> {
        if credential.is_query() && !allow_query {
            return Err(Error::config(
                "a query credential needs allow_query_credential(true)",
            ));
        }
        Ok(())
    }

    impl Sealed for Credential {
        type Local = ();

        fn local(&self) {}

        fn check(&self, allow_query: bool) -> Result<(), Error> {
            check_static(self, allow_query)
        }
    }

    impl Sealed for CachedProvider {
        type Local = LocalView;

        fn local(&self) -> LocalView {
            CachedProvider::local(self)
        }

        fn check(&self, _: bool) -> Result<(), Error> {
            Ok(())
        }
    }

    impl Sealed for CredentialSource {
        type Local = Option<LocalView>;

        fn local(&self) -> Option<LocalView> {
            match self {
                CredentialSource::Static(_) => None,
                CredentialSource::Cached(cache) => Some(cache.local()),
            }
        }

        fn check(&self, allow_query: bool) -> Result<(), Error> {
            match self {
                CredentialSource::Static(credential) => check_static(credential, allow_query),
                CredentialSource::Cached(_) => Ok(()),
            }
        }
    }
}

/// What every [`Auth`] service of a layer shares.
#[derive(Debug)]
pub(crate) struct Config<C> {
    pub(crate) source: C,
    pub(crate) scope: Scope,
    pub(crate) allow_plain_http: bool,
    pub(crate) replace_existing: bool,
    pub(crate) replay: bool,
    pub(crate) limits: ReplayLimits,
}

/// Adds credentials to the requests bound for the origins they are meant for.
///
/// Built with [`AuthLayer::builder`] from a [`Source`] and at least one [`Origin`]. For each
/// request:
///
/// - to an origin not in the allow-list (or with a relative URI): sent untouched;
/// - to an allowed origin over plain `http://` to a host that is not loopback: refused with
///   [`Error::is_insecure`], unless [`allow_plain_http`](AuthLayerBuilder::allow_plain_http);
/// - carrying the credential's header already (an `Authorization` the caller set): sent as the
///   caller made it, unless [`replace_existing`](AuthLayerBuilder::replace_existing);
/// - else the credential is attached. With a cached provider, a 401 answer invalidates the
///   token the request carried (if still cached), fetches a new one and replays the request
///   once, with the [`Attempt`](flext_core::Attempt) extension advanced, when its body fits
///   the replay limits (`replay_limits`).
///
/// The source sets what the service hands its inner service:
///
/// | layer | the inner service gets | |
/// |---|---|---|
/// | `AuthLayer<Credential>` | the request as it came, `Request<B>` | like tower-http's `AddAuthorization` |
/// | `AuthLayer<CachedProvider>` | `Request<ReplayBody<B>>` | flext-core's [`ReplayBody`](flext_core::ReplayBody), kept to replay after a 401 |
/// | `AuthLayer<CredentialSource>` | `Request<ReplayBody<B>>` | one type for either kind, for a choice made at run time |
///
/// The service's error is a `tower::BoxError`: the inner service's errors unchanged, or an
/// [`Error`] of this crate.
///
/// ```
/// use flext_auth::{AuthLayer, Credential};
///
/// let layer: AuthLayer<Credential> = AuthLayer::builder(Credential::bearer("t0k3n")?)
///     .origin("https://api.example.com".parse().unwrap())
///     .build()?;
/// # Ok::<(), flext_auth::Error>(())
/// ```
pub struct AuthLayer<C = CredentialSource> {
    config: Arc<Config<C>>,
}

impl<C: Source> AuthLayer<C> {
    /// A builder for a layer attaching `source`'s credential: a [`Credential`], a
    /// [`CachedProvider`] or a [`CredentialSource`].
    pub fn builder(source: C) -> AuthLayerBuilder<C> {
        AuthLayerBuilder {
            source,
            scope: Scope::default(),
            allow_plain_http: false,
            allow_query: false,
            replace_existing: false,
            replay: true,
            limits: ReplayLimits::default(),
        }
    }
}

impl AuthLayer<Credential> {
    /// A layer sending `Authorization: Bearer <token>` to `origin`, with the defaults.
    ///
    /// # Errors
    ///
    /// As [`Credential::bearer`] and [`AuthLayerBuilder::build`].
    pub fn bearer(
        token: impl Into<SecretString>,
        origin: Origin,
    ) -> Result<AuthLayer<Credential>, Error> {
        AuthLayer::builder(Credential::bearer(token)?)
            .origin(origin)
            .build()
    }
}

impl<C: Source> Clone for AuthLayer<C> {
    fn clone(&self) -> Self {
        AuthLayer {
            config: Arc::clone(&self.config),
        }
    }
}

impl<S, C: Source> Layer<S> for AuthLayer<C> {
    type Service = Auth<S, C>;

    fn layer(&self, inner: S) -> Auth<S, C> {
        Auth::from_config(inner, Arc::clone(&self.config))
    }
}

impl<C: Source> fmt::Debug for AuthLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("config", &self.config)
            .finish()
    }
}

/// Builds an [`AuthLayer`]; from [`AuthLayer::builder`].
///
/// The settings that apply to one kind of credential only are offered for it only:
/// `allow_query_credential` for a static [`Credential`], `replay_on_unauthorized` and
/// `replay_limits` for a [`CachedProvider`], all three for a [`CredentialSource`].
#[derive(Debug)]
pub struct AuthLayerBuilder<C = CredentialSource> {
    source: C,
    scope: Scope,
    allow_plain_http: bool,
    allow_query: bool,
    replace_existing: bool,
    replay: bool,
    limits: ReplayLimits,
}

impl<C: Source> AuthLayerBuilder<C> {
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

    /// Replaces a header (or query parameter) of the credential's name that the caller set
    /// on the request. Off by default: the caller's own `Authorization` wins, and the request
    /// goes out as the caller made it.
    pub fn replace_existing(mut self, replace: bool) -> Self {
        self.replace_existing = replace;
        self
    }

    /// The layer.
    ///
    /// # Errors
    ///
    /// [`Error::is_config`] without any origin, or with a query credential and no
    /// `allow_query_credential(true)`.
    pub fn build(self) -> Result<AuthLayer<C>, Error> {
        if self.scope.is_empty() {
            return Err(Error::config("no origin to send the credential to"));
        }
        self.source.check(self.allow_query)?;
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

    fn set_allow_query(mut self, allow: bool) -> Self {
        self.allow_query = allow;
        self
    }

    fn set_replay(mut self, replay: bool) -> Self {
        self.replay = replay;
        self
    }

    fn set_limits(mut self, limits: ReplayLimits) -> Self {
        self.limits = limits;
        self
    }
}

impl AuthLayerBuilder<Credential> {
    /// Accepts a [`Credential::api_key_query`], which puts the secret in the URL (see its
    /// warning). Off by default: building with one fails with [`Error::is_config`].
    pub fn allow_query_credential(self, allow: bool) -> Self {
        self.set_allow_query(allow)
    }
}

impl AuthLayerBuilder<CachedProvider> {
    /// Whether a 401 to a request carrying a cached token refreshes the token and replays
    /// the request once (on by default). Off, the 401 still invalidates the token, so that the
    /// next request (or a retry) gets a new one, and is handed back as it is.
    pub fn replay_on_unauthorized(self, replay: bool) -> Self {
        self.set_replay(replay)
    }

    /// How much of a request body is kept to replay it after a 401 (by default 64 KiB per
    /// body, see [`ReplayLimits`]). A larger body is sent once and its 401 handed back.
    pub fn replay_limits(self, limits: ReplayLimits) -> Self {
        self.set_limits(limits)
    }
}

impl AuthLayerBuilder<CredentialSource> {
    /// When the source is a static credential: accepts a [`Credential::api_key_query`], which
    /// puts the secret in the URL (see its warning). Off by default: building with one fails
    /// with [`Error::is_config`].
    pub fn allow_query_credential(self, allow: bool) -> Self {
        self.set_allow_query(allow)
    }

    /// When the source is a cached provider: whether a 401 to a request carrying a cached
    /// token refreshes the token and replays the request once (on by default). Off, the 401
    /// still invalidates the token, and is handed back as it is.
    pub fn replay_on_unauthorized(self, replay: bool) -> Self {
        self.set_replay(replay)
    }

    /// When the source is a cached provider: how much of a request body is kept to replay it
    /// after a 401 (by default 64 KiB per body, see [`ReplayLimits`]).
    pub fn replay_limits(self, limits: ReplayLimits) -> Self {
        self.set_limits(limits)
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
            AuthLayer::builder(CredentialSource::from(query.clone()))
                .origin(origin.clone())
                .build()
                .unwrap_err()
                .is_config()
        );
        assert!(
            AuthLayer::builder(CredentialSource::from(query.clone()))
                .origin(origin.clone())
                .allow_query_credential(true)
                .build()
                .is_ok()
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
