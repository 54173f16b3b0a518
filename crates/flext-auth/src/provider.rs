//! [`CredentialProvider`]: where dynamic credentials come from, and the [`Token`] it returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use flext_core::BoxError;
use secrecy::SecretString;
use tokio::time::Instant;

use crate::credential::Redacted;

/// A boxed, `Send` future, as [`CredentialProvider::fetch`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A source of short-lived tokens: an OAuth 2.0 token endpoint, a cloud metadata service, a
/// file a sidecar rewrites, a vault.
///
/// A provider only fetches; [`CachedProvider`](crate::CachedProvider) decides when, keeps
/// one refresh in flight, bounds it by a timeout and backs off after failures. `fetch`
/// returns a boxed future so that the trait works as `Arc<dyn CredentialProvider>`; the
/// allocation happens once per refresh, not per request. For a closure, see
/// [`provider_fn`].
///
/// Errors should not contain the secret they failed to get (nor any other): they are
/// logged at `debug` and handed to callers.
///
/// ```
/// use std::time::Duration;
/// use flext_auth::{BoxFuture, CredentialProvider, Token};
/// use flext_core::BoxError;
///
/// #[derive(Debug)]
/// struct FromEnv;
///
/// impl CredentialProvider for FromEnv {
///     fn fetch(&self) -> BoxFuture<'_, Result<Token, BoxError>> {
///         Box::pin(async {
///             let token = std::env::var("API_TOKEN").map_err(|_| "API_TOKEN is not set")?;
///             Ok(Token::new(token).expires_in(Duration::from_secs(300)))
///         })
///     }
/// }
/// ```
pub trait CredentialProvider: Send + Sync + 'static {
    /// Fetches a new token. Called by the cache, at most one call in flight at a time.
    fn fetch(&self) -> BoxFuture<'_, Result<Token, BoxError>>;
}

impl<P: CredentialProvider + ?Sized> CredentialProvider for Arc<P> {
    fn fetch(&self) -> BoxFuture<'_, Result<Token, BoxError>> {
        (**self).fetch()
    }
}

impl<P: CredentialProvider + ?Sized> CredentialProvider for Box<P> {
    fn fetch(&self) -> BoxFuture<'_, Result<Token, BoxError>> {
        (**self).fetch()
    }
}

/// A token from a [`CredentialProvider`]: the secret, and when it stops being valid.
///
/// A lifetime ([`Token::expires_in`], OAuth's `expires_in`) is counted by the cache from the
/// instant it *sent* the request for the token, not from when the answer arrived, so a slow
/// token endpoint cannot make the cache believe a token lives longer than it does. A token
/// with neither is used until a 401 says otherwise.
#[derive(Clone)]
pub struct Token {
    secret: SecretString,
    expiry: Option<Expiry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    In(Duration),
    At(Instant),
}

impl Token {
    /// A token without an expiry.
    pub fn new(secret: impl Into<SecretString>) -> Token {
        Token {
            secret: secret.into(),
            expiry: None,
        }
    }

    /// The token is valid for `lifetime`, counted from when the cache asked for it.
    pub fn expires_in(mut self, lifetime: Duration) -> Token {
        self.expiry = Some(Expiry::In(lifetime));
        self
    }

    /// The token is valid until `instant` (on tokio's clock), for providers that are told an
    /// absolute expiry.
    pub fn expires_at(mut self, instant: Instant) -> Token {
        self.expiry = Some(Expiry::At(instant));
        self
    }

    /// The secret.
    pub fn secret(&self) -> &SecretString {
        &self.secret
    }

    /// The lifetime given with [`Token::expires_in`], if that is how its expiry was given.
    pub fn lifetime(&self) -> Option<Duration> {
        match self.expiry {
            Some(Expiry::In(d)) => Some(d),
            _ => None,
        }
    }

    pub(crate) fn expiry(&self) -> Option<Expiry> {
        self.expiry
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("secret", &Redacted)
            .field("expiry", &self.expiry)
            .finish()
    }
}

/// A [`CredentialProvider`] from an async closure; see [`provider_fn`].
#[derive(Clone)]
pub struct ProviderFn<F> {
    f: F,
}

/// A [`CredentialProvider`] that calls `f` for each refresh.
///
/// ```
/// use std::time::Duration;
/// use flext_auth::{provider_fn, CachedProvider, Token};
///
/// let provider = provider_fn(|| async {
///     // Ask a vault, a metadata service, a sidecar's file...
///     Ok::<_, std::io::Error>(Token::new("short-lived").expires_in(Duration::from_secs(900)))
/// });
/// let cache = CachedProvider::new(provider);
/// ```
pub fn provider_fn<F, Fut, E>(f: F) -> ProviderFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Token, E>> + Send + 'static,
    E: Into<BoxError>,
{
    ProviderFn { f }
}

impl<F, Fut, E> CredentialProvider for ProviderFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Token, E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn fetch(&self) -> BoxFuture<'_, Result<Token, BoxError>> {
        let fut = (self.f)();
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}

impl<F> fmt::Debug for ProviderFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderFn").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn debug_is_redacted() {
        let t = Token::new("hunter2").expires_in(Duration::from_secs(60));
        let s = format!("{t:?}");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("[REDACTED]"));
        assert_eq!(t.lifetime(), Some(Duration::from_secs(60)));
    }

    #[tokio::test]
    async fn closures_are_providers() {
        let p: Arc<dyn CredentialProvider> =
            Arc::new(provider_fn(|| async { Ok::<_, BoxError>(Token::new("t")) }));
        let t = p.fetch().await.unwrap();
        assert_eq!(t.secret().expose_secret(), "t");
        assert_eq!(t.expiry(), None);
    }
}
