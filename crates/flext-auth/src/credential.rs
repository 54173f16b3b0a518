//! [`Credential`]: a static credential, built once into the header value (or query pair) that
//! every request shares.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};

use crate::error::Error;

/// What a query credential encodes: everything but RFC 3986's unreserved characters.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Header names a credential may not take: they frame the message or route it, and a
/// credential in them would break the request rather than authenticate it.
const FORBIDDEN_HEADERS: [&str; 7] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
];

/// A static credential: a bearer token, HTTP Basic, an API key in a header or in the query,
/// or any header.
///
/// The header value is built and checked once, marked
/// [sensitive](HeaderValue::set_sensitive) (HTTP/2 and HTTP/3 encode it never-indexed), and
/// shared by every request: attaching it is a reference-count increment, not an allocation.
/// Secrets go in as [`SecretString`] (or anything that converts into one) and the
/// intermediate copies this crate makes are zeroized; [`Debug`](fmt::Debug) shows
/// `[REDACTED]`.
///
/// ```
/// use flext_auth::Credential;
///
/// let bearer = Credential::bearer("mF_9.B5f-4.1JqM")?;
/// assert_eq!(format!("{bearer:?}"), r#"Credential { kind: "bearer", header: "authorization", value: [REDACTED] }"#);
///
/// // RFC 7617: a user-id with a colon is refused with a typed error, not sent ambiguously.
/// let err = Credential::basic("a:b", "pw").unwrap_err();
/// assert!(err.is_invalid_credential());
/// # Ok::<(), flext_auth::Error>(())
/// ```
#[derive(Clone)]
pub struct Credential {
    pub(crate) kind: CredentialKind,
}

#[derive(Clone)]
pub(crate) enum CredentialKind {
    Header {
        label: &'static str,
        name: HeaderName,
        value: HeaderValue,
    },
    Query {
        /// The parameter name as given, to spot one the caller already set.
        param: Arc<str>,
        /// `name=value`, percent-encoded, ready to append.
        pair: Arc<SecretString>,
    },
}

impl Credential {
    /// `Authorization: Bearer <token>` (RFC 6750 §2.1).
    ///
    /// The token must be non-empty visible ASCII (`!` to `~`, no spaces): RFC 6750's
    /// `b64token` is a subset, and anything outside it would not survive as one header token.
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_credential`] for an empty token or one with other characters.
    pub fn bearer(token: impl Into<SecretString>) -> Result<Credential, Error> {
        let token = token.into();
        let value = bearer_value(token.expose_secret())?;
        Ok(Credential::from_header("bearer", AUTHORIZATION, value))
    }

    /// `Authorization: Basic <base64(user-id ":" password)>` (RFC 7617), UTF-8 encoded (the
    /// only `charset` RFC 7617 defines).
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_credential`] for a user-id containing `:` (the server could not
    /// tell where the password starts) or either part containing a control character
    /// (`char::is_control`: C0, DEL and C1), which RFC 7617 §2 forbids.
    pub fn basic(
        user_id: impl Into<SecretString>,
        password: impl Into<SecretString>,
    ) -> Result<Credential, Error> {
        let (user_id, password) = (user_id.into(), password.into());
        let value = basic_value(user_id.expose_secret(), password.expose_secret())?;
        Ok(Credential::from_header("basic", AUTHORIZATION, value))
    }

    /// The `Authorization` value of HTTP Basic credentials (RFC 7617), marked sensitive, for
    /// a caller that sets it on one request itself.
    ///
    /// # Errors
    ///
    /// As [`Credential::basic`].
    pub fn basic_header_value(user_id: &str, password: &str) -> Result<HeaderValue, Error> {
        basic_value(user_id, password)
    }

    /// An API key in a named header, such as `X-Api-Key: <key>`.
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_credential`] for a name that is not a valid header name (or one
    /// that frames the message: `Host`, `Content-Length`, `Transfer-Encoding`, `Connection`,
    /// `Upgrade`, `TE`, `Trailer`), and for a key that is empty, has leading or trailing
    /// whitespace, or has characters a header value cannot carry.
    pub fn api_key_header(
        header: impl AsRef<str>,
        key: impl Into<SecretString>,
    ) -> Result<Credential, Error> {
        let name = header_name(header.as_ref())?;
        let value = plain_value(key.into().expose_secret())?;
        Ok(Credential::from_header("api_key_header", name, value))
    }

    /// Any header carrying a secret, sent as given: `Authorization: Token abc`, a session
    /// cookie, a vendor's signature header.
    ///
    /// # Errors
    ///
    /// As [`Credential::api_key_header`].
    pub fn header(
        name: impl AsRef<str>,
        value: impl Into<SecretString>,
    ) -> Result<Credential, Error> {
        let name = header_name(name.as_ref())?;
        let value = plain_value(value.into().expose_secret())?;
        Ok(Credential::from_header("header", name, value))
    }

    /// An API key in a query parameter: `?api_key=<key>`, both percent-encoded.
    ///
    /// **Avoid it if the API offers anything else.** A URL is not treated as secret: it ends up
    /// in server and proxy access logs, in traces, in error messages and in browser history,
    /// and a query parameter cannot be marked sensitive. An [`AuthLayer`](crate::AuthLayer)
    /// only takes one after an explicit
    /// [`allow_query_credential`](crate::AuthLayerBuilder::allow_query_credential).
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_credential`] for an empty name or key, or a key with a control
    /// character.
    pub fn api_key_query(
        param: impl AsRef<str>,
        key: impl Into<SecretString>,
    ) -> Result<Credential, Error> {
        let param = param.as_ref();
        let key = key.into();
        if param.is_empty() {
            return Err(Error::invalid("query parameter name is empty"));
        }
        if param.chars().any(char::is_control) {
            return Err(Error::invalid(
                "query parameter name has a control character",
            ));
        }
        let key = key.expose_secret();
        if key.is_empty() {
            return Err(Error::invalid("api key is empty"));
        }
        if key.chars().any(char::is_control) {
            return Err(Error::invalid("api key has a control character"));
        }
        let name: String = percent_encoding::utf8_percent_encode(param, QUERY).collect();
        let mut pair = Zeroizing::new(String::with_capacity(name.len() + 1 + key.len() * 3));
        pair.push_str(&name);
        pair.push('=');
        pair.extend(percent_encoding::utf8_percent_encode(key, QUERY));
        Ok(Credential {
            kind: CredentialKind::Query {
                param: param.into(),
                pair: Arc::new(SecretString::from(pair.as_str())),
            },
        })
    }

    fn from_header(label: &'static str, name: HeaderName, mut value: HeaderValue) -> Credential {
        value.set_sensitive(true);
        Credential {
            kind: CredentialKind::Header { label, name, value },
        }
    }

    /// The header this credential goes in; `None` for a query credential.
    pub fn header_name(&self) -> Option<&HeaderName> {
        match &self.kind {
            CredentialKind::Header { name, .. } => Some(name),
            CredentialKind::Query { .. } => None,
        }
    }

    /// Whether this credential goes in the query string.
    pub fn is_query(&self) -> bool {
        matches!(self.kind, CredentialKind::Query { .. })
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Credential");
        match &self.kind {
            CredentialKind::Header { label, name, .. } => {
                d.field("kind", label).field("header", &name.as_str())
            }
            CredentialKind::Query { param, .. } => {
                d.field("kind", &"api_key_query").field("param", &&**param)
            }
        };
        d.field("value", &Redacted).finish()
    }
}

/// Prints `[REDACTED]` in place of a secret.
pub(crate) struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// `Bearer <token>`, sensitive. Used by static bearers and by the token cache.
pub(crate) fn bearer_value(token: &str) -> Result<HeaderValue, Error> {
    if token.is_empty() {
        return Err(Error::invalid("bearer token is empty"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            "bearer token has a character outside visible ascii",
        ));
    }
    let mut text = Zeroizing::new(String::with_capacity(7 + token.len()));
    text.push_str("Bearer ");
    text.push_str(token);
    sensitive(&text)
}

pub(crate) fn basic_value(user_id: &str, password: &str) -> Result<HeaderValue, Error> {
    if user_id.contains(':') {
        return Err(Error::invalid("basic user-id contains ':'"));
    }
    if user_id.chars().any(char::is_control) {
        return Err(Error::invalid("basic user-id has a control character"));
    }
    if password.chars().any(char::is_control) {
        return Err(Error::invalid("basic password has a control character"));
    }
    let mut pair = Zeroizing::new(String::with_capacity(user_id.len() + 1 + password.len()));
    pair.push_str(user_id);
    pair.push(':');
    pair.push_str(password);
    let mut text = Zeroizing::new(String::with_capacity(6 + pair.len().div_ceil(3) * 4));
    text.push_str("Basic ");
    STANDARD.encode_string(pair.as_bytes(), &mut text);
    sensitive(&text)
}

/// A secret header value as given: non-empty, no surrounding whitespace, no control
/// characters (the checks of `HeaderValue`, plus the first two).
pub(crate) fn plain_value(value: &str) -> Result<HeaderValue, Error> {
    if value.is_empty() {
        return Err(Error::invalid("header value is empty"));
    }
    if value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']) {
        return Err(Error::invalid(
            "header value has leading or trailing whitespace",
        ));
    }
    sensitive(value)
}

pub(crate) fn header_name(name: &str) -> Result<HeaderName, Error> {
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| Error::invalid("not a valid header name"))?;
    if FORBIDDEN_HEADERS.contains(&name.as_str()) {
        return Err(Error::invalid(
            "header frames or routes the message and cannot carry a credential",
        ));
    }
    Ok(name)
}

/// Copies `text` once into the shared bytes of a sensitive header value.
fn sensitive(text: &str) -> Result<HeaderValue, Error> {
    let mut value = HeaderValue::from_maybe_shared(Bytes::copy_from_slice(text.as_bytes()))
        .map_err(|_| Error::invalid("value has characters a header value cannot carry"))?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(c: &Credential) -> (&str, &HeaderValue) {
        match &c.kind {
            CredentialKind::Header { name, value, .. } => (name.as_str(), value),
            CredentialKind::Query { .. } => panic!("not a header credential"),
        }
    }

    #[test]
    fn bearer_is_rfc6750() {
        let c = Credential::bearer("mF_9.B5f-4.1JqM").unwrap();
        let (name, value) = header(&c);
        assert_eq!(name, "authorization");
        assert_eq!(value, "Bearer mF_9.B5f-4.1JqM");
        assert!(value.is_sensitive());
        for bad in ["", "a b", "tok\n", "tök"] {
            assert!(
                Credential::bearer(bad).unwrap_err().is_invalid_credential(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn basic_is_rfc7617() {
        // The example of RFC 7617 §2.
        let c = Credential::basic("Aladdin", "open sesame").unwrap();
        assert_eq!(header(&c).1, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        // §2.1: UTF-8, the example "test" / "123£".
        let c = Credential::basic("test", "123\u{a3}").unwrap();
        assert_eq!(header(&c).1, "Basic dGVzdDoxMjPCow==");
        // Colons are fine in the password, and empty parts are allowed.
        assert!(Credential::basic("u", "a:b").is_ok());
        assert!(Credential::basic("", "").is_ok());
        for (u, p) in [
            ("a:b", "x"),
            ("a\u{0}", "x"),
            ("a", "x\u{7f}"),
            ("a", "\u{85}"),
        ] {
            let e = Credential::basic(u, p).unwrap_err();
            assert!(e.is_invalid_credential());
            assert!(!e.to_string().contains('x'));
        }
    }

    #[test]
    fn api_key_header_and_custom_header() {
        let c = Credential::api_key_header("X-Api-Key", "k-123").unwrap();
        assert_eq!(
            header(&c),
            ("x-api-key", &HeaderValue::from_static("k-123"))
        );
        assert!(header(&c).1.is_sensitive());
        let c = Credential::header("Authorization", "Token abc").unwrap();
        assert_eq!(header(&c).1, "Token abc");
        assert!(
            Credential::header("bad name", "v")
                .unwrap_err()
                .is_invalid_credential()
        );
        assert!(
            Credential::header("Host", "v")
                .unwrap_err()
                .is_invalid_credential()
        );
        assert!(
            Credential::header("x", "")
                .unwrap_err()
                .is_invalid_credential()
        );
        assert!(
            Credential::header("x", " v")
                .unwrap_err()
                .is_invalid_credential()
        );
        assert!(
            Credential::header("x", "a\r\nb")
                .unwrap_err()
                .is_invalid_credential()
        );
    }

    #[test]
    fn query_is_percent_encoded() {
        let c = Credential::api_key_query("api key", "a&b=c d/é").unwrap();
        match &c.kind {
            CredentialKind::Query { param, pair } => {
                assert_eq!(&**param, "api key");
                assert_eq!(pair.expose_secret(), "api%20key=a%26b%3Dc%20d%2F%C3%A9");
            }
            CredentialKind::Header { .. } => panic!("not a query credential"),
        }
        assert!(c.is_query() && c.header_name().is_none());
        assert!(Credential::api_key_query("", "k").is_err());
        assert!(Credential::api_key_query("k", "").is_err());
        assert!(Credential::api_key_query("k", "a\nb").is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        for c in [
            Credential::bearer("s3cr3t").unwrap(),
            Credential::basic("user", "s3cr3t").unwrap(),
            Credential::api_key_header("x-key", "s3cr3t").unwrap(),
            Credential::api_key_query("key", "s3cr3t").unwrap(),
        ] {
            let s = format!("{c:?} {c:#?}");
            assert!(!s.contains("s3cr3t") && !s.contains("czNjcjN0"), "{s}");
            assert!(s.contains("[REDACTED]"));
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn basic_never_panics_and_round_trips(user in "\\PC{0,24}|.{0,24}", pass in ".{0,24}") {
                match Credential::basic(user.as_str(), pass.as_str()) {
                    Ok(c) => {
                        prop_assert!(!user.contains(':'));
                        prop_assert!(!user.chars().chain(pass.chars()).any(char::is_control));
                        let value = header(&c).1.to_str().unwrap().to_owned();
                        let encoded = value.strip_prefix("Basic ").unwrap();
                        let decoded = STANDARD.decode(encoded).unwrap();
                        prop_assert_eq!(decoded, format!("{user}:{pass}").into_bytes());
                    }
                    Err(e) => {
                        prop_assert!(e.is_invalid_credential());
                        prop_assert!(user.contains(':') || user.chars().chain(pass.chars()).any(char::is_control));
                    }
                }
            }

            #[test]
            fn header_kinds_never_panic(name in ".{0,16}", value in proptest::collection::vec(any::<char>(), 0..24)) {
                let value: String = value.into_iter().collect();
                let _ = Credential::bearer(value.as_str());
                let _ = Credential::header(name.as_str(), value.as_str());
                let _ = Credential::api_key_header(name.as_str(), value.as_str());
                let _ = Credential::api_key_query(name.as_str(), value.as_str());
            }
        }
    }
}
