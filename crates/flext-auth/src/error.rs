//! [`Error`]: everything flext-auth itself can fail with.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use http::StatusCode;

/// A shared error: a provider's failure is handed to every request that waited on the same
/// refresh, so it is reference-counted rather than boxed.
pub(crate) type SharedError = Arc<dyn StdError + Send + Sync>;

/// An error of flext-auth: a credential that cannot be built, a layer that cannot be
/// configured, a request refused because it would leak its credential, or a dynamic credential
/// that could not be obtained.
///
/// It never contains a secret: not in [`Display`](fmt::Display), not in [`Debug`], not in its
/// sources (the sources this crate creates; a user's [`CredentialProvider`] is responsible for
/// its own errors).
///
/// The service of [`AuthLayer`] returns it boxed in a `tower::BoxError`, beside the inner
/// service's own errors, which pass through unwrapped; find it with `downcast_ref::<Error>()`.
///
/// [`CredentialProvider`]: crate::CredentialProvider
/// [`AuthLayer`]: crate::AuthLayer
#[derive(Clone)]
pub struct Error {
    inner: Box<Inner>,
}

#[derive(Clone)]
struct Inner {
    kind: Kind,
    source: Option<SharedError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A credential's text cannot be used (reason).
    InvalidCredential(&'static str),
    /// The layer, cache or provider configuration is wrong (reason).
    Config(&'static str),
    /// A credential would go over plain http to a host that is not loopback (the origin).
    Insecure(String),
    /// The provider returned an error (in the source).
    Provider,
    /// The provider did not answer within the refresh timeout.
    RefreshTimeout,
    /// A recent refresh failed; the provider is not asked again before the backoff ends.
    Backoff,
    /// The provider returned a token that had already expired.
    Expired,
    /// The token endpoint answered with an error status.
    TokenEndpoint(Box<EndpointError>),
    /// The token endpoint's success response could not be read (reason).
    TokenResponse(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EndpointError {
    pub(crate) status: StatusCode,
    pub(crate) error: Option<String>,
    pub(crate) description: Option<String>,
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Error {
        Error {
            inner: Box::new(Inner { kind, source: None }),
        }
    }

    pub(crate) fn with_source(mut self, source: SharedError) -> Error {
        self.inner.source = Some(source);
        self
    }

    pub(crate) fn invalid(reason: &'static str) -> Error {
        Error::new(Kind::InvalidCredential(reason))
    }

    pub(crate) fn config(reason: &'static str) -> Error {
        Error::new(Kind::Config(reason))
    }

    pub(crate) fn shared_source(&self) -> Option<&SharedError> {
        self.inner.source.as_ref()
    }

    /// A credential's text cannot be used: a Basic user-id with `:`, a control character,
    /// a value that cannot be an HTTP header value, an invalid header or parameter name.
    pub fn is_invalid_credential(&self) -> bool {
        matches!(self.inner.kind, Kind::InvalidCredential(_))
    }

    /// A builder was given a configuration it cannot work with.
    pub fn is_config(&self) -> bool {
        matches!(self.inner.kind, Kind::Config(_))
    }

    /// The request (or the token request) was refused because it would send a credential over
    /// plain `http://` to a host that is not loopback.
    pub fn is_insecure(&self) -> bool {
        matches!(self.inner.kind, Kind::Insecure(_))
    }

    /// No dynamic credential could be obtained: the provider failed, timed out, is backing
    /// off after a failure, or gave an expired token, or the token endpoint refused.
    pub fn is_provider(&self) -> bool {
        matches!(
            self.inner.kind,
            Kind::Provider
                | Kind::RefreshTimeout
                | Kind::Backoff
                | Kind::Expired
                | Kind::TokenEndpoint(_)
                | Kind::TokenResponse(_)
        )
    }

    /// The provider did not answer within the refresh timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self.inner.kind, Kind::RefreshTimeout)
    }

    /// A refresh failed recently and the provider is not asked again before its backoff ends;
    /// the [`source`](StdError::source) is that failure.
    pub fn is_backoff(&self) -> bool {
        matches!(self.inner.kind, Kind::Backoff)
    }

    /// The OAuth 2.0 token endpoint answered with an error status; see [`Error::status`],
    /// [`Error::oauth_error`] and [`Error::oauth_error_description`].
    pub fn is_token_endpoint(&self) -> bool {
        matches!(self.inner.kind, Kind::TokenEndpoint(_))
    }

    /// The OAuth 2.0 token endpoint answered with a success status but a body that is not a
    /// usable token response (bad JSON, no `access_token`, a `token_type` other than
    /// `Bearer`, a bad `expires_in`), or a provider gave a token that had already expired or
    /// that cannot be sent in a header (empty, or with characters a header cannot carry).
    pub fn is_token_response(&self) -> bool {
        matches!(self.inner.kind, Kind::TokenResponse(_) | Kind::Expired)
    }

    /// The token endpoint's status, for [`Error::is_token_endpoint`].
    pub fn status(&self) -> Option<StatusCode> {
        match &self.inner.kind {
            Kind::TokenEndpoint(e) => Some(e.status),
            _ => None,
        }
    }

    /// The `error` code of an OAuth 2.0 error response (RFC 6749 §5.2), such as
    /// `invalid_client` or `invalid_scope`.
    pub fn oauth_error(&self) -> Option<&str> {
        match &self.inner.kind {
            Kind::TokenEndpoint(e) => e.error.as_deref(),
            _ => None,
        }
    }

    /// The `error_description` of an OAuth 2.0 error response, if the server sent one.
    pub fn oauth_error_description(&self) -> Option<&str> {
        match &self.inner.kind {
            Kind::TokenEndpoint(e) => e.description.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("flext_auth::Error");
        d.field("kind", &self.inner.kind);
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.kind {
            Kind::InvalidCredential(reason) => write!(f, "invalid credential: {reason}"),
            Kind::Config(reason) => write!(f, "invalid auth configuration: {reason}"),
            Kind::Insecure(origin) => write!(
                f,
                "credential refused over plain http to a non-loopback host ({origin})"
            ),
            Kind::Provider => f.write_str("credential provider failed"),
            Kind::RefreshTimeout => f.write_str("credential refresh timed out"),
            Kind::Backoff => f.write_str("credential provider failed recently; backing off"),
            Kind::Expired => f.write_str("credential provider returned an expired token"),
            Kind::TokenEndpoint(e) => {
                write!(f, "token endpoint answered {}", e.status)?;
                if let Some(code) = &e.error {
                    write!(f, ": {code}")?;
                }
                if let Some(description) = &e.description {
                    write!(f, " ({description})")?;
                }
                Ok(())
            }
            Kind::TokenResponse(reason) => write!(f, "bad token response: {reason}"),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_lower_case_without_trailing_punctuation() {
        let errors = [
            Error::invalid("basic user-id contains ':'"),
            Error::config("no origin to send the credential to"),
            Error::new(Kind::Insecure("http://example.com:80".into())),
            Error::new(Kind::Provider),
            Error::new(Kind::RefreshTimeout),
            Error::new(Kind::Backoff),
            Error::new(Kind::Expired),
            Error::new(Kind::TokenResponse("body is not json")),
            Error::new(Kind::TokenEndpoint(Box::new(EndpointError {
                status: StatusCode::UNAUTHORIZED,
                error: Some("invalid_client".into()),
                description: None,
            }))),
        ];
        for e in errors {
            let s = e.to_string();
            assert!(s.starts_with(|c: char| c.is_ascii_lowercase()), "{s}");
            assert!(!s.ends_with('.'), "{s}");
        }
    }

    #[test]
    fn token_endpoint_accessors() {
        let e = Error::new(Kind::TokenEndpoint(Box::new(EndpointError {
            status: StatusCode::BAD_REQUEST,
            error: Some("invalid_scope".into()),
            description: Some("unknown scope".into()),
        })));
        assert!(e.is_token_endpoint() && e.is_provider());
        assert_eq!(e.status(), Some(StatusCode::BAD_REQUEST));
        assert_eq!(e.oauth_error(), Some("invalid_scope"));
        assert_eq!(e.oauth_error_description(), Some("unknown scope"));
        assert_eq!(
            e.to_string(),
            "token endpoint answered 400 Bad Request: invalid_scope (unknown scope)"
        );
    }

    #[test]
    fn source_is_chained() {
        let cause: SharedError = Arc::new(std::io::Error::other("down"));
        let e = Error::new(Kind::Backoff).with_source(cause);
        assert!(e.is_backoff() && e.is_provider());
        assert_eq!(e.source().map(ToString::to_string).as_deref(), Some("down"));
    }
}
