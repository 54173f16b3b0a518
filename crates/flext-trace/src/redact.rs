//! Redaction: what of a URL or a header may be recorded.
//!
//! `url.full` never carries credentials: user-info becomes `REDACTED:REDACTED` and the values
//! of sensitive query keys become `REDACTED` (the keys stay, so the shape of the request is
//! still visible). Headers are recorded only from an explicit allow-list, and a value marked
//! sensitive (or an `Authorization`, `Proxy-Authorization`, `Cookie` or `Set-Cookie` value)
//! is written as `REDACTED` even when its name is listed.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use http::{HeaderMap, HeaderName, Uri, header};

/// The text that replaces a secret.
pub const REDACTED: &str = "REDACTED";

/// The query keys whose values are always redacted: OpenTelemetry's list (`AWSAccessKeyId`,
/// `Signature`, `sig`, `X-Goog-Signature`) plus the other AWS SigV4 presigned-URL secrets.
pub const DEFAULT_SENSITIVE_QUERY_KEYS: [&str; 7] = [
    "AWSAccessKeyId",
    "Signature",
    "sig",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "X-Goog-Signature",
];

/// Which parts of a URL are secret.
///
/// Keys are matched after percent-decoding and ignoring ASCII case and a trailing `[...]`
/// (so `SIG`, `%73ig` and `sig[]` are all `sig`), and `&` and `;` both separate parameters:
/// a server that reads a secret under any of these spellings never sees it recorded.
///
/// ```
/// use flext_trace::Redaction;
///
/// let redaction = Redaction::new().query_key("api_key");
/// assert_eq!(
///     redaction.redact("https://user:pw@example.com/a?sig=abc&page=2&API_KEY=k#f"),
///     "https://REDACTED:REDACTED@example.com/a?sig=REDACTED&page=2&API_KEY=REDACTED#f",
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    keys: Vec<Cow<'static, str>>,
    all_values: bool,
}

impl Redaction {
    /// The default: [`DEFAULT_SENSITIVE_QUERY_KEYS`].
    pub fn new() -> Redaction {
        Redaction {
            keys: DEFAULT_SENSITIVE_QUERY_KEYS
                .iter()
                .map(|k| Cow::Borrowed(*k))
                .collect(),
            all_values: false,
        }
    }

    /// Also redacts the value of `key` (`token`, `api_key`, ...).
    pub fn query_key(mut self, key: impl Into<Cow<'static, str>>) -> Redaction {
        self.keys.push(key.into());
        self
    }

    /// Redacts every query value, keeping only the keys.
    pub fn all_query_values(mut self) -> Redaction {
        self.all_values = true;
        self
    }

    /// Whether the value of the raw (possibly percent-encoded) query key `key` is redacted.
    pub fn is_sensitive_key(&self, key: &str) -> bool {
        self.all_values || self.keys.iter().any(|k| key_matches(key, k))
    }

    /// The URI, redacted, as a value to display (no allocation until it is written).
    pub fn url<'a>(&'a self, uri: &'a Uri) -> RedactedUrl<'a> {
        RedactedUrl {
            uri,
            host: None,
            redaction: self,
        }
    }

    /// Redacts URL text. Anything is accepted; text that is not a URL is treated as a path
    /// and query.
    pub fn redact(&self, url: &str) -> String {
        let mut out = String::with_capacity(url.len() + 16);
        // Writing to a String cannot fail.
        let _ = self.write_str_url(&mut out, url);
        out
    }

    fn write_str_url(&self, out: &mut impl fmt::Write, url: &str) -> fmt::Result {
        let (scheme, rest) = match url.split_once("://") {
            Some((s, rest)) if is_scheme(s) => (Some(s), rest),
            _ => (None, url),
        };
        let rest = match (scheme, rest.strip_prefix("//")) {
            (Some(s), _) => {
                out.write_str(s)?;
                out.write_str("://")?;
                Some(rest)
            }
            (None, Some(r)) => {
                out.write_str("//")?;
                Some(r)
            }
            (None, None) => None,
        };
        let tail = match rest {
            Some(rest) => {
                let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                let (authority, tail) = rest.split_at(end);
                write_authority(out, authority)?;
                tail
            }
            None => url,
        };
        let (before_fragment, fragment) = match tail.split_once('#') {
            Some((b, f)) => (b, Some(f)),
            None => (tail, None),
        };
        match before_fragment.split_once('?') {
            Some((path, query)) => {
                out.write_str(path)?;
                out.write_char('?')?;
                self.write_query(out, query)?;
            }
            None => out.write_str(before_fragment)?,
        }
        if let Some(fragment) = fragment {
            // Not sent over HTTP, but an OAuth implicit flow puts tokens there.
            out.write_char('#')?;
            self.write_query(out, fragment)?;
        }
        Ok(())
    }

    fn write_query(&self, out: &mut impl fmt::Write, query: &str) -> fmt::Result {
        let mut rest = query;
        loop {
            let end = rest.find(['&', ';']).unwrap_or(rest.len());
            let (pair, tail) = rest.split_at(end);
            match pair.split_once('=') {
                Some((key, _)) if self.is_sensitive_key(key) => {
                    out.write_str(key)?;
                    out.write_char('=')?;
                    out.write_str(REDACTED)?;
                }
                _ => out.write_str(pair)?,
            }
            let mut chars = tail.chars();
            match chars.next() {
                Some(sep) => {
                    out.write_char(sep)?;
                    rest = chars.as_str();
                }
                None => return Ok(()),
            }
        }
    }
}

impl Default for Redaction {
    fn default() -> Redaction {
        Redaction::new()
    }
}

fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

fn write_authority(out: &mut impl fmt::Write, authority: &str) -> fmt::Result {
    match authority.rfind('@') {
        Some(at) => {
            out.write_str("REDACTED:REDACTED")?;
            out.write_str(&authority[at..])
        }
        None => out.write_str(authority),
    }
}

/// Whether a raw query key names `wanted`: percent-decoded, ASCII case ignored, and a
/// trailing `[...]` (array syntax) ignored.
fn key_matches(raw: &str, wanted: &str) -> bool {
    let mut decoded = Decoded::new(raw.as_bytes());
    let mut wanted = wanted.bytes();
    loop {
        match (decoded.next(), wanted.next()) {
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(&b) => {}
            (None, None) => return true,
            // `sig[]`, `sig[0]`: frameworks read these as `sig`.
            (Some(b'['), None) => return true,
            _ => return false,
        }
    }
}

/// Percent-decoding over bytes; a `%` not followed by two hex digits stands for itself.
struct Decoded<'a> {
    bytes: &'a [u8],
}

impl<'a> Decoded<'a> {
    fn new(bytes: &'a [u8]) -> Decoded<'a> {
        Decoded { bytes }
    }
}

impl Iterator for Decoded<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        match self.bytes {
            [b'%', h, l, rest @ ..] if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                self.bytes = rest;
                Some(hex(*h) << 4 | hex(*l))
            }
            [b, rest @ ..] => {
                self.bytes = rest;
                Some(*b)
            }
            [] => None,
        }
    }
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// A URI with its secrets redacted, written on demand by [`Display`](fmt::Display).
///
/// A relative URI is written scheme-relative from the `Host` header when the request has one
/// (`//example.com/path`), as OpenTelemetry's `url.full` allows.
#[derive(Debug, Clone, Copy)]
pub struct RedactedUrl<'a> {
    uri: &'a Uri,
    host: Option<&'a str>,
    redaction: &'a Redaction,
}

impl<'a> RedactedUrl<'a> {
    /// With the `Host` header used when the URI is relative.
    pub(crate) fn with_host(mut self, host: Option<&'a str>) -> RedactedUrl<'a> {
        self.host = host;
        self
    }
}

impl fmt::Display for RedactedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let uri = self.uri;
        match (uri.scheme_str(), uri.authority()) {
            (Some(scheme), Some(authority)) => {
                f.write_str(scheme)?;
                f.write_str("://")?;
                write_authority(f, authority.as_str())?;
            }
            (None, Some(authority)) => {
                f.write_str("//")?;
                write_authority(f, authority.as_str())?;
            }
            (_, None) => {
                if let Some(host) = self.host {
                    f.write_str("//")?;
                    write_authority(f, host)?;
                }
            }
        }
        f.write_str(uri.path())?;
        if let Some(query) = uri.query() {
            f.write_char('?')?;
            self.redaction.write_query(f, query)?;
        }
        Ok(())
    }
}

/// Names that are never recorded in clear, whatever the allow-list says.
fn always_sensitive(name: &HeaderName) -> bool {
    name == header::AUTHORIZATION
        || name == header::PROXY_AUTHORIZATION
        || name == header::COOKIE
        || name == header::SET_COOKIE
}

/// The allow-listed headers of a map, written as `name: value; name: value`, each sensitive
/// value as `REDACTED` and bytes that are not visible ASCII escaped as `\xNN`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordedHeaders<'a> {
    pub(crate) names: &'a [HeaderName],
    pub(crate) headers: &'a HeaderMap,
}

impl RecordedHeaders<'_> {
    /// Whether any listed header is present (else nothing is recorded).
    pub(crate) fn any(&self) -> bool {
        self.names.iter().any(|n| self.headers.contains_key(n))
    }
}

impl fmt::Display for RecordedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for name in self.names {
            for value in self.headers.get_all(name) {
                if !first {
                    f.write_str("; ")?;
                }
                first = false;
                f.write_str(name.as_str())?;
                f.write_str(": ")?;
                if value.is_sensitive() || always_sensitive(name) {
                    f.write_str(REDACTED)?;
                } else {
                    write_escaped(f, value.as_bytes())?;
                }
            }
        }
        Ok(())
    }
}

/// A header value as text: visible ASCII and spaces as they are, other bytes as `\xNN`.
pub(crate) fn write_escaped(f: &mut impl fmt::Write, bytes: &[u8]) -> fmt::Result {
    for &b in bytes {
        if b == b' ' || b.is_ascii_graphic() && b != b'\\' {
            f.write_char(char::from(b))?;
        } else {
            write!(f, "\\x{b:02x}")?;
        }
    }
    Ok(())
}

/// The value of one header for an attribute, `None` when it must not be recorded.
#[cfg(feature = "opentelemetry")]
pub(crate) fn header_value_text(name: &HeaderName, value: &http::HeaderValue) -> String {
    if value.is_sensitive() || always_sensitive(name) {
        return REDACTED.to_owned();
    }
    let mut s = String::with_capacity(value.len());
    let _ = write_escaped(&mut s, value.as_bytes());
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn redact(s: &str) -> String {
        Redaction::new().redact(s)
    }

    #[test]
    fn userinfo_and_listed_keys() {
        assert_eq!(
            redact("https://user:pass@example.com:8443/p?sig=abc&page=2"),
            "https://REDACTED:REDACTED@example.com:8443/p?sig=REDACTED&page=2"
        );
        assert_eq!(redact("http://user@h/"), "http://REDACTED:REDACTED@h/");
        assert_eq!(
            redact("http://h/?X-Amz-Signature=s;x-amz-credential=c&%53ignature=t&sig[]=u&sig"),
            "http://h/?X-Amz-Signature=REDACTED;x-amz-credential=REDACTED&%53ignature=REDACTED&sig[]=REDACTED&sig"
        );
        assert_eq!(
            redact("http://h/#access=1&sig=2"),
            "http://h/#access=1&sig=REDACTED"
        );
        assert_eq!(redact("/p?sig=1"), "/p?sig=REDACTED");
        assert_eq!(redact("//u:p@h/p"), "//REDACTED:REDACTED@h/p");
        assert_eq!(redact("http://h/a@b?x=1"), "http://h/a@b?x=1");
        assert_eq!(redact(""), "");
        assert_eq!(redact("?&&="), "?&&=");
        assert_eq!(
            redact("http://h?sig=%zz&signature2=k"),
            "http://h?sig=REDACTED&signature2=k"
        );
    }

    #[test]
    fn user_keys_and_all_values() {
        let r = Redaction::new().query_key("token");
        assert_eq!(
            r.redact("http://h/?Token=a&b=c"),
            "http://h/?Token=REDACTED&b=c"
        );
        let all = Redaction::new().all_query_values();
        assert_eq!(
            all.redact("http://h/?a=1&b=2&c"),
            "http://h/?a=REDACTED&b=REDACTED&c"
        );
    }

    #[test]
    fn uri_display_matches_text_redaction() {
        let r = Redaction::new();
        for s in [
            "https://user:pass@example.com/p?sig=abc&page=2",
            "http://[::1]:8080/x?X-Goog-Signature=1",
            "/relative?sig=1",
            "http://h",
        ] {
            let uri: Uri = s.parse().unwrap();
            assert_eq!(r.url(&uri).to_string(), r.redact(&uri.to_string()), "{s}");
        }
        let uri: Uri = "/p?sig=1".parse().unwrap();
        assert_eq!(
            r.url(&uri).with_host(Some("u:p@h:81")).to_string(),
            "//REDACTED:REDACTED@h:81/p?sig=REDACTED"
        );
    }

    #[test]
    fn headers_allow_list_and_sensitive_values() {
        let mut map = HeaderMap::new();
        map.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let mut secret = HeaderValue::from_static("s3cr3t");
        secret.set_sensitive(true);
        map.insert("x-api-key", secret);
        map.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer t0k3n"),
        );
        map.append("x-multi", HeaderValue::from_static("a"));
        map.append("x-multi", HeaderValue::from_bytes(b"b\xff\\").unwrap());
        map.insert("x-unlisted", HeaderValue::from_static("no"));
        let names = [
            header::CONTENT_TYPE,
            HeaderName::from_static("x-api-key"),
            header::AUTHORIZATION,
            HeaderName::from_static("x-multi"),
            HeaderName::from_static("x-absent"),
        ];
        let text = RecordedHeaders {
            names: &names,
            headers: &map,
        }
        .to_string();
        assert_eq!(
            text,
            "content-type: application/json; x-api-key: REDACTED; authorization: REDACTED; \
             x-multi: a; x-multi: b\\xff\\x5c"
        );
        let none = RecordedHeaders {
            names: &names[4..],
            headers: &map,
        };
        assert!(!none.any());
    }

    fn listed_key() -> impl Strategy<Value = String> {
        (
            prop::sample::select(DEFAULT_SENSITIVE_QUERY_KEYS.to_vec()),
            any::<u64>(),
            any::<bool>(),
        )
            .prop_map(|(key, bits, brackets)| {
                // Random case and percent-encoding of each byte.
                let mut out = String::new();
                for (i, b) in key.bytes().enumerate() {
                    let flip = bits >> (i % 32) & 1 == 1;
                    let encode = bits >> (32 + i % 32) & 1 == 1;
                    let c = if flip {
                        (b as char).to_ascii_lowercase()
                    } else {
                        (b as char).to_ascii_uppercase()
                    };
                    if encode {
                        out.push_str(&format!("%{:02X}", c as u8));
                    } else {
                        out.push(c);
                    }
                }
                if brackets {
                    out.push_str("[]");
                }
                out
            })
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,80}", k in "\\PC{0,10}") {
            let r = Redaction::new().query_key(k);
            let _ = r.redact(&s);
            let _ = r.is_sensitive_key(&s);
            if let Ok(uri) = s.parse::<Uri>() {
                let _ = r.url(&uri).to_string();
            }
        }

        #[test]
        fn listed_values_never_pass(
            scheme in "(https?|ftp)",
            user in "[a-z]{1,6}",
            host in "[a-z]{1,8}(\\.[a-z]{1,5}){0,2}",
            path in "(/[a-zA-Z0-9@._-]{0,6}){0,3}",
            before in proptest::collection::vec(("p[a-z]{0,4}", "[a-z0-9]{0,5}"), 0..3),
            after in proptest::collection::vec(("p[a-z]{0,4}", "[a-z0-9]{0,5}"), 0..3),
            key in listed_key(),
            secret in "[a-z0-9]{6}",
            sep in "[&;]",
        ) {
            let secret = format!("SECRETV{secret}");
            let password = "SECRETPW";
            let user = format!("SECRETUSER{user}");
            let mut query: Vec<String> = before.iter().map(|(k, v)| format!("{k}={v}")).collect();
            query.push(format!("{key}={secret}"));
            query.extend(after.iter().map(|(k, v)| format!("{k}={v}")));
            let url = format!("{scheme}://{user}:{password}@{host}{path}?{}", query.join(&sep));
            let out = Redaction::new().redact(&url);
            prop_assert!(!out.contains(&secret), "{url} -> {out}");
            prop_assert!(!out.contains(password), "{url} -> {out}");
            prop_assert!(!out.contains(&user), "{url} -> {out}");
            for (k, v) in before.iter().chain(&after) {
                let kept = format!("{k}={v}");
                prop_assert!(out.contains(&kept), "{url} -> {out}");
            }
            if let Ok(uri) = url.parse::<Uri>() {
                let shown = Redaction::new().url(&uri).to_string();
                prop_assert!(!shown.contains(&secret), "{url} -> {shown}");
                prop_assert!(!shown.contains(password));
            }
        }
    }
}
