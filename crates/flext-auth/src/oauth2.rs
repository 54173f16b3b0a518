//! [`ClientCredentials`]: the OAuth 2.0 client credentials grant (RFC 6749 §4.4) as a
//! [`CredentialProvider`].

use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flext_core::{BoxError, Origin};
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use tower_service::Service;

use crate::credential::{self, Redacted};
use crate::error::{EndpointError, Error, Kind};
use crate::provider::{BoxFuture, CredentialProvider, Token};

/// The largest token response read: a token response is a few KiB at most.
const MAX_RESPONSE: usize = 64 * 1024;
/// The longest `error` / `error_description` kept from an error response.
const MAX_ERROR_TEXT: usize = 256;

/// How the client authenticates to the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with the form-encoded client id and secret. The
    /// method every server must support; the default.
    #[default]
    Basic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    Post,
}

type TokenCall = Arc<
    dyn Fn(Request<Full<Bytes>>) -> BoxFuture<'static, Result<Response<Bytes>, BoxError>>
        + Send
        + Sync,
>;

/// The OAuth 2.0 client credentials grant (RFC 6749 §4.4): a [`CredentialProvider`] that
/// asks a token endpoint for an access token with a client id and secret.
///
/// The token request is a `POST` of `grant_type=client_credentials` (plus `scope` and
/// `audience` when set) as `application/x-www-form-urlencoded`, sent through the HTTP
/// service you pass in, which lets it share your connection pool, TLS setup and proxies.
/// The response's `access_token`, `token_type` (which must be `Bearer`, in any case; a
/// response without one is taken as `Bearer`) and `expires_in` (seconds, as a number or a
/// string of digits) are read; an error response gives [`Error::is_token_endpoint`] with
/// the server's `error` code and `error_description`, a malformed one
/// [`Error::is_token_response`]. Responses over 64 KiB are refused.
///
/// Wrap it in a [`CachedProvider`](crate::CachedProvider): the provider itself fetches a new
/// token on every call.
///
/// ```
/// use bytes::Bytes;
/// use flext_auth::{CachedProvider, ClientAuth, ClientCredentials};
/// use http_body_util::Full;
///
/// # fn token_client() -> impl tower_service::Service<
/// #     http::Request<Full<Bytes>>,
/// #     Response = http::Response<Full<Bytes>>,
/// #     Error = std::convert::Infallible,
/// #     Future = std::future::Ready<Result<http::Response<Full<Bytes>>, std::convert::Infallible>>,
/// # > + Clone + Send + Sync + 'static {
/// #     #[derive(Clone)]
/// #     struct S;
/// #     impl tower_service::Service<http::Request<Full<Bytes>>> for S {
/// #         type Response = http::Response<Full<Bytes>>;
/// #         type Error = std::convert::Infallible;
/// #         type Future = std::future::Ready<Result<Self::Response, Self::Error>>;
/// #         fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> { std::task::Poll::Ready(Ok(())) }
/// #         fn call(&mut self, _: http::Request<Full<Bytes>>) -> Self::Future { std::future::ready(Ok(http::Response::new(Full::default()))) }
/// #     }
/// #     S
/// # }
/// // `token_client()` is any `Service<http::Request<Full<Bytes>>>` returning an
/// // `http::Response`: hyper-util's client, flext's pool, a test double.
/// let provider = ClientCredentials::builder("https://auth.example.com/oauth2/token", "my-client", "s3cr3t")
///     .scope("orders:read")
///     .audience("https://api.example.com")
///     .client_auth(ClientAuth::Basic)
///     .build(token_client())?;
/// let cache = CachedProvider::new(provider);
/// # Ok::<(), flext_auth::Error>(())
/// ```
#[derive(Clone)]
pub struct ClientCredentials {
    inner: Arc<Inner>,
}

struct Inner {
    call: TokenCall,
    token_url: Uri,
    origin: Origin,
    client_id: String,
    client_secret: SecretString,
    auth: ClientAuth,
    scopes: Vec<String>,
    audience: Option<String>,
    /// `Authorization: Basic ...` for `client_secret_basic`, built once.
    basic: Option<HeaderValue>,
}

/// Builds a [`ClientCredentials`] provider; from [`ClientCredentials::builder`].
pub struct ClientCredentialsBuilder {
    token_url: String,
    client_id: String,
    client_secret: SecretString,
    auth: ClientAuth,
    scopes: Vec<String>,
    audience: Option<String>,
    allow_plain_http: bool,
}

impl ClientCredentials {
    /// A builder for a client `client_id` with secret `client_secret` at the token endpoint
    /// `token_url`.
    pub fn builder(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<SecretString>,
    ) -> ClientCredentialsBuilder {
        ClientCredentialsBuilder {
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            auth: ClientAuth::default(),
            scopes: Vec::new(),
            audience: None,
            allow_plain_http: false,
        }
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let inner = &*self.inner;
        let mut body = Zeroizing::new(String::new());
        let mut form = form_urlencoded::Serializer::new(&mut *body);
        form.append_pair("grant_type", "client_credentials");
        if !inner.scopes.is_empty() {
            form.append_pair("scope", &inner.scopes.join(" "));
        }
        if let Some(audience) = &inner.audience {
            form.append_pair("audience", audience);
        }
        if inner.auth == ClientAuth::Post {
            form.append_pair("client_id", &inner.client_id);
            form.append_pair("client_secret", inner.client_secret.expose_secret());
        }
        form.finish();
        let mut req = Request::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = inner.token_url.clone();
        let headers = req.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(basic) = &inner.basic {
            headers.insert(AUTHORIZATION, basic.clone());
        }
        req
    }

    async fn fetch_token(&self) -> Result<Token, BoxError> {
        let req = self.request();
        tracing::debug!(target: "flext_auth", token_endpoint = %self.inner.origin, "requesting an oauth2 token");
        let res = (self.inner.call)(req).await?;
        Ok(parse_response(&res)?)
    }
}

impl CredentialProvider for ClientCredentials {
    fn fetch(&self) -> BoxFuture<'_, Result<Token, BoxError>> {
        Box::pin(self.fetch_token())
    }
}

impl ClientCredentialsBuilder {
    /// Adds a scope; scopes are sent space-separated in `scope`.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// Adds scopes.
    pub fn scopes<I>(mut self, scopes: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// The `audience` parameter, for servers that issue tokens per API (Auth0, Okta and
    /// others; RFC 8707 calls a similar one `resource`).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// How to authenticate the client; [`ClientAuth::Basic`] by default.
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Allows a token endpoint on plain `http://` to a host that is not loopback, which
    /// sends the client secret in clear text. Off by default.
    pub fn allow_plain_http(mut self, allow: bool) -> Self {
        self.allow_plain_http = allow;
        self
    }

    /// The provider, sending its token requests through `service`.
    ///
    /// # Errors
    ///
    /// [`Error::is_config`] for a token URL that is not an absolute `http`/`https` URL, or
    /// an empty client id; [`Error::is_insecure`] for a plain-`http` token endpoint on a host
    /// that is not loopback without [`allow_plain_http`](Self::allow_plain_http);
    /// [`Error::is_invalid_credential`] for a scope with a space or a character RFC 6749
    /// §3.3 does not allow.
    pub fn build<S, RB>(self, service: S) -> Result<ClientCredentials, Error>
    where
        S: Service<Request<Full<Bytes>>, Response = Response<RB>> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        RB: Body + Send + 'static,
        RB::Data: Send,
        RB::Error: Into<BoxError>,
    {
        let token_url: Uri = self
            .token_url
            .parse()
            .map_err(|_| Error::config("token url is not a valid uri"))?;
        let origin = Origin::from_uri(&token_url)
            .map_err(|_| Error::config("token url is not an absolute http or https url"))?;
        if origin.scheme() == flext_core::Scheme::Http
            && !origin.is_loopback()
            && !self.allow_plain_http
        {
            return Err(Error::new(Kind::Insecure(origin.to_string())));
        }
        if self.client_id.is_empty() {
            return Err(Error::config("client id is empty"));
        }
        // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
        let scope_char =
            |b: u8| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b);
        if self
            .scopes
            .iter()
            .any(|s| s.is_empty() || !s.bytes().all(scope_char))
        {
            return Err(Error::invalid(
                "scope is empty or has a character rfc 6749 does not allow",
            ));
        }
        let basic = match self.auth {
            ClientAuth::Basic => {
                // RFC 6749 §2.3.1: both form-encoded before Basic, so a ':' in the id is safe.
                let id = Zeroizing::new(form_encode(&self.client_id));
                let secret = Zeroizing::new(form_encode(self.client_secret.expose_secret()));
                Some(credential::basic_value(&id, &secret)?)
            }
            ClientAuth::Post => None,
        };
        let call: TokenCall = Arc::new(move |req| {
            let mut svc = service.clone();
            Box::pin(async move {
                poll_fn(|cx| svc.poll_ready(cx)).await.map_err(Into::into)?;
                let res = svc.call(req).await.map_err(Into::into)?;
                let (parts, body) = res.into_parts();
                let body = Limited::new(body, MAX_RESPONSE)
                    .collect()
                    .await
                    .map_err(|e| -> BoxError {
                        if e.is::<http_body_util::LengthLimitError>() {
                            Box::new(Error::new(Kind::TokenResponse(
                                "body is larger than 64 KiB",
                            )))
                        } else {
                            e
                        }
                    })?
                    .to_bytes();
                Ok(Response::from_parts(parts, body))
            })
        });
        Ok(ClientCredentials {
            inner: Arc::new(Inner {
                call,
                token_url,
                origin,
                client_id: self.client_id,
                client_secret: self.client_secret,
                auth: self.auth,
                scopes: self.scopes,
                audience: self.audience,
                basic,
            }),
        })
    }
}

fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Reads a token endpoint's response. Never puts the body in an error: it may hold a token.
fn parse_response(res: &Response<Bytes>) -> Result<Token, Error> {
    let status = res.status();
    let json: Option<Map<String, Value>> = serde_json::from_slice(res.body()).ok();
    if !status.is_success() {
        let text = |key: &str| {
            json.as_ref()
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .map(sanitize)
        };
        return Err(Error::new(Kind::TokenEndpoint(Box::new(EndpointError {
            status,
            error: text("error"),
            description: text("error_description"),
        }))));
    }
    let Some(mut json) = json else {
        return Err(Error::new(Kind::TokenResponse("body is not a json object")));
    };
    let token = match json.remove("access_token") {
        Some(Value::String(token)) if !token.is_empty() => SecretString::from(token),
        _ => {
            return Err(Error::new(Kind::TokenResponse(
                "access_token is missing or not a string",
            )));
        }
    };
    match json.get("token_type") {
        None => {}
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
        Some(_) => {
            return Err(Error::new(Kind::TokenResponse("token_type is not bearer")));
        }
    }
    let lifetime = match json.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(secs), _) => Some(Duration::from_secs(secs)),
            (None, Some(secs)) if secs.is_finite() && secs >= 0.0 => {
                Duration::try_from_secs_f64(secs).ok()
            }
            _ => return Err(Error::new(Kind::TokenResponse("expires_in is negative"))),
        },
        Some(Value::String(s)) => match s.trim().parse::<u64>() {
            Ok(secs) => Some(Duration::from_secs(secs)),
            Err(_) => {
                return Err(Error::new(Kind::TokenResponse(
                    "expires_in is not a number of seconds",
                )));
            }
        },
        Some(_) => {
            return Err(Error::new(Kind::TokenResponse(
                "expires_in is not a number of seconds",
            )));
        }
    };
    let token = Token::new(token);
    Ok(match lifetime {
        Some(lifetime) => token.expires_in(lifetime),
        None => token,
    })
}

/// Server text kept for an error message: printable, bounded.
fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR_TEXT)
        .collect()
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("ClientCredentials")
            .field("token_endpoint", &inner.origin)
            .field("client_id", &inner.client_id)
            .field("client_secret", &Redacted)
            .field("client_auth", &inner.auth)
            .field("scopes", &inner.scopes)
            .field("audience", &inner.audience)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ClientCredentialsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsBuilder")
            .field("client_id", &self.client_id)
            .field("client_secret", &Redacted)
            .field("client_auth", &self.auth)
            .field("scopes", &self.scopes)
            .field("audience", &self.audience)
            .field("allow_plain_http", &self.allow_plain_http)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn response(status: u16, body: &str) -> Response<Bytes> {
        let mut res = Response::new(Bytes::copy_from_slice(body.as_bytes()));
        *res.status_mut() = StatusCode::from_u16(status).unwrap();
        res
    }

    #[test]
    fn parses_rfc6749_success() {
        // RFC 6749 §4.4.3's example (with the type's case as sent there).
        let t = parse_response(&response(
            200,
            r#"{"access_token":"2YotnFZFEjr1zCsicMWpAA","token_type":"example","expires_in":3600}"#,
        ));
        assert!(t.unwrap_err().is_token_response());
        let t = parse_response(&response(
            200,
            r#"{"access_token":"2YotnFZFEjr1zCsicMWpAA","token_type":"Bearer","expires_in":3600,"scope":"a b"}"#,
        ))
        .unwrap();
        assert_eq!(t.secret().expose_secret(), "2YotnFZFEjr1zCsicMWpAA");
        assert_eq!(t.lifetime(), Some(Duration::from_secs(3600)));
        let t = parse_response(&response(
            200,
            r#"{"access_token":"x","token_type":"bearer","expires_in":"60"}"#,
        ))
        .unwrap();
        assert_eq!(t.lifetime(), Some(Duration::from_secs(60)));
        let t = parse_response(&response(200, r#"{"access_token":"x"}"#)).unwrap();
        assert_eq!(t.lifetime(), None);
        let t = parse_response(&response(200, r#"{"access_token":"x","expires_in":1.5}"#)).unwrap();
        assert_eq!(t.lifetime(), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn malformed_success_is_typed_and_leaks_nothing() {
        for body in [
            "not json",
            "[1,2]",
            r#"{"token_type":"Bearer"}"#,
            r#"{"access_token":42}"#,
            r#"{"access_token":""}"#,
            r#"{"access_token":"SECRET","expires_in":-5}"#,
            r#"{"access_token":"SECRET","expires_in":"soon"}"#,
            r#"{"access_token":"SECRET","expires_in":[1]}"#,
            r#"{"access_token":"SECRET","token_type":"mac"}"#,
        ] {
            let e = parse_response(&response(200, body)).unwrap_err();
            assert!(e.is_token_response() && e.is_provider(), "{body}");
            assert!(!format!("{e} {e:?}").contains("SECRET"), "{body}");
        }
    }

    #[test]
    fn error_responses_are_typed() {
        let e = parse_response(&response(
            400,
            r#"{"error":"invalid_client","error_description":"Client authentication failed\n"}"#,
        ))
        .unwrap_err();
        assert!(e.is_token_endpoint());
        assert_eq!(e.status(), Some(StatusCode::BAD_REQUEST));
        assert_eq!(e.oauth_error(), Some("invalid_client"));
        assert_eq!(
            e.oauth_error_description(),
            Some("Client authentication failed")
        );
        let e = parse_response(&response(503, "Service Unavailable")).unwrap_err();
        assert!(e.is_token_endpoint() && e.oauth_error().is_none());
        assert_eq!(
            e.to_string(),
            "token endpoint answered 503 Service Unavailable"
        );
    }
}
