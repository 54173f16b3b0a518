//! Base URLs and joining relative request paths to them.

use std::borrow::Cow;
use std::fmt;

use http::Uri;
use http::uri::{PathAndQuery, Scheme};

use crate::error::Error;

/// An absolute `http`/`https` URL that relative request paths are joined to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseUrl {
    uri: Uri,
}

impl BaseUrl {
    pub(crate) fn parse(text: &str) -> Result<BaseUrl, Error> {
        let shown = Shown(text);
        let uri: Uri = text
            .parse()
            .map_err(|e| Error::builder("base_url", format!("{shown} is not a valid url: {e}")))?;
        match uri.scheme() {
            Some(s) if *s == Scheme::HTTP || *s == Scheme::HTTPS => {}
            _ => {
                return Err(Error::builder(
                    "base_url",
                    format!("{shown} must be an absolute http or https url"),
                ));
            }
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(Error::builder("base_url", format!("{shown} has no host")));
        }
        if uri.query().is_some() {
            return Err(Error::builder(
                "base_url",
                format!("{shown} must not have a query"),
            ));
        }
        Ok(BaseUrl { uri })
    }

    /// The URL, for a redacted display.
    pub(crate) fn uri(&self) -> &Uri {
        &self.uri
    }
}

/// URL text in an error message, quoted, without what may hold a secret: the user-info
/// becomes `REDACTED@` and a query or fragment `?REDACTED`.
pub(crate) struct Shown<'a>(pub(crate) &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redacted_text(self.0))
    }
}

/// URL text without user-info (`REDACTED@`) and query or fragment (`?REDACTED`).
pub(crate) fn redacted_text(text: &str) -> String {
    let (head, tail) = match text.find(['?', '#']) {
        Some(i) => (&text[..i], "?REDACTED"),
        None => (text, ""),
    };
    if let Some((scheme, rest)) = head.split_once("://") {
        // Up to the last `@`, not the first `/`: a password may hold a `/` (invalid, but this
        // is the text of an error). A path with an `@` is over-redacted, which is safe.
        if let Some(at) = rest.rfind('@') {
            return format!("{scheme}://REDACTED@{}{tail}", &rest[at + 1..]);
        }
    } else if let Some(at) = head.split('/').next().and_then(|first| first.rfind('@')) {
        // `user:pw@host/...` without a scheme; `a/b@c` is a path and stays.
        return format!("REDACTED@{}{tail}", &head[at + 1..]);
    }
    format!("{head}{tail}")
}

/// Resolves a request target: an absolute URL stands alone; otherwise it is joined to `base`
/// as a browser would (RFC 3986 §5.2, without dot-segment removal): `/path` replaces the
/// base's path, `path` is appended to the base's path up to its last `/` (so a base of
/// `https://api/v1/` and `items` give `https://api/v1/items`).
pub(crate) fn join(base: Option<&BaseUrl>, reference: &str) -> Result<Uri, Error> {
    if let Ok(uri) = reference.parse::<Uri>()
        && uri.scheme().is_some()
    {
        return check_absolute(uri, reference);
    }
    let shown = Shown(reference);
    let Some(base) = base else {
        return Err(Error::request(format!(
            "{shown} is not an absolute url and the client has no base_url"
        )));
    };
    let base_path = base.uri.path();
    let path_and_query = if reference.starts_with('/') {
        reference.to_string()
    } else {
        let dir = match base_path.rfind('/') {
            Some(i) => &base_path[..=i],
            None => "/",
        };
        format!("{dir}{reference}")
    };
    let pq: PathAndQuery = path_and_query
        .parse()
        .map_err(|e| Error::request(format!("{shown} is not a valid path: {e}")))?;
    let mut parts = base.uri.clone().into_parts();
    parts.path_and_query = Some(pq);
    Uri::from_parts(parts).map_err(|e| Error::request(format!("{shown}: {e}")))
}

/// A URL that [`Client::get`](crate::Client::get) and the other request methods accept:
/// text (`&str`, `String`, `Box<str>`, `Cow<str>`, or a reference to one), parsed on each call and joined to the client's base URL when it is
/// relative, or an [`http::Uri`] (`Uri`, `&Uri`) parsed once by the caller, which a hot loop
/// sending to one endpoint can reuse. Either way an absolute URL must be `http` or `https`
/// with a host.
///
/// ```no_run
/// # async fn run(client: flext_api::Client) -> Result<(), flext_api::Error> {
/// let health: http::Uri = "http://127.0.0.1:8080/health".parse().expect("a valid url");
/// for _ in 0..3 {
///     client.get(&health).send().await?;
/// }
/// client.get("http://127.0.0.1:8080/ready").send().await?;
/// # Ok(()) }
/// ```
pub trait IntoUrl: sealed::Sealed {}

pub(crate) mod sealed {
    use http::Uri;

    /// A URL as the caller gave it.
    #[derive(Debug)]
    pub enum Url<'a> {
        Text(&'a str),
        Parsed(Uri),
    }

    /// Keeps [`IntoUrl`](super::IntoUrl) to the types listed there.
    pub trait Sealed {
        /// The URL as given.
        fn url(&self) -> Url<'_>;
    }
}

/// Text URLs: every common way to hold a `str`.
macro_rules! text_urls {
    ($($text:ty),* $(,)?) => {$(
        impl IntoUrl for $text {}
        impl sealed::Sealed for $text {
            fn url(&self) -> sealed::Url<'_> {
                sealed::Url::Text(self.as_ref())
            }
        }
    )*};
}

text_urls!(
    &str,
    &&str,
    String,
    &String,
    Box<str>,
    &Box<str>,
    Cow<'_, str>,
    &Cow<'_, str>,
);

impl IntoUrl for Uri {}
impl sealed::Sealed for Uri {
    fn url(&self) -> sealed::Url<'_> {
        sealed::Url::Parsed(self.clone())
    }
}

impl IntoUrl for &Uri {}
impl sealed::Sealed for &Uri {
    fn url(&self) -> sealed::Url<'_> {
        sealed::Url::Parsed((*self).clone())
    }
}

/// `url` as a request's URI: text as [`join`] makes it; a parsed absolute URI checked as
/// text is; a parsed relative one joined to `base` as its text would be.
pub(crate) fn resolve(base: Option<&BaseUrl>, url: &impl IntoUrl) -> Result<Uri, Error> {
    match url.url() {
        sealed::Url::Text(text) => join(base, text),
        sealed::Url::Parsed(uri) if uri.scheme().is_some() => {
            if matches!(uri.scheme_str(), Some("http" | "https")) && has_host(&uri) {
                Ok(uri)
            } else {
                check_absolute(uri.clone(), &uri.to_string())
            }
        }
        // Relative: joined as its text would be.
        sealed::Url::Parsed(uri) => join(base, &uri.to_string()),
    }
}

/// Whether `uri` names a host: what `uri.host()` is non-empty for, without its two reverse
/// searches (a request sent with a parsed URI makes this check every time).
fn has_host(uri: &Uri) -> bool {
    let Some(authority) = uri.authority() else {
        return false;
    };
    let authority = authority.as_str().as_bytes();
    let host = authority
        .iter()
        .rposition(|&b| b == b'@')
        .map_or(authority, |at| &authority[at + 1..]);
    // What is left is `host`, `host:port` or `[v6]:port`: empty when it starts at the port.
    !matches!(host.first(), None | Some(b':'))
}

fn check_absolute(uri: Uri, text: &str) -> Result<Uri, Error> {
    let shown = Shown(text);
    match uri.scheme_str() {
        Some("http" | "https") if has_host(&uri) => Ok(uri),
        Some("http" | "https") => Err(Error::request(format!("{shown} has no host"))),
        _ => Err(Error::request(format!(
            "{shown}: only http and https urls are supported"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn j(base: &str, r: &str) -> String {
        join(Some(&BaseUrl::parse(base).unwrap()), r)
            .unwrap()
            .to_string()
    }

    #[test]
    fn joins_like_a_browser() {
        assert_eq!(
            j("https://api.example.com/v1/", "items?x=1"),
            "https://api.example.com/v1/items?x=1"
        );
        assert_eq!(
            j("https://api.example.com/v1", "items"),
            "https://api.example.com/items"
        );
        assert_eq!(
            j("https://api.example.com/v1/", "/health"),
            "https://api.example.com/health"
        );
        assert_eq!(
            j("https://api.example.com", "a/b"),
            "https://api.example.com/a/b"
        );
        assert_eq!(
            j("https://api.example.com/v1/", "http://other:8080/x"),
            "http://other:8080/x"
        );
    }

    #[test]
    fn typed_errors() {
        assert!(BaseUrl::parse("not a url").unwrap_err().is_builder());
        assert!(BaseUrl::parse("ftp://x/").unwrap_err().is_builder());
        assert!(BaseUrl::parse("/relative").unwrap_err().is_builder());
        assert!(join(None, "/relative").unwrap_err().is_request());
        assert!(join(None, "ftp://x/y").unwrap_err().is_request());
        let base = BaseUrl::parse("https://api/").unwrap();
        assert!(
            join(Some(&base), "bad path with spaces")
                .unwrap_err()
                .is_request()
        );
    }

    #[test]
    fn a_parsed_uri_is_taken_as_text_would_be() {
        let base = BaseUrl::parse("https://api.example.com/v1/").unwrap();
        let absolute: Uri = "http://other.example:8080/x?y=1".parse().unwrap();
        assert_eq!(resolve(Some(&base), &absolute).unwrap(), absolute);
        assert_eq!(resolve(None, &absolute.clone()).unwrap(), absolute);
        let relative: Uri = "/items?page=2".parse().unwrap();
        assert_eq!(
            resolve(Some(&base), &relative).unwrap().to_string(),
            "https://api.example.com/items?page=2"
        );
        for text in ["/items?page=2", "items", "https://h.example/a"] {
            let uri: Uri = text.parse().unwrap();
            assert_eq!(
                resolve(Some(&base), &uri).unwrap(),
                resolve(Some(&base), &text).unwrap(),
                "{text}"
            );
        }
        assert!(resolve(None, &relative).unwrap_err().is_request());
        let ftp: Uri = "ftp://files.example/a".parse().unwrap();
        let err = resolve(Some(&base), &ftp).unwrap_err();
        assert!(err.is_request());
        assert!(err.to_string().contains("only http and https"), "{err}");
    }

    #[test]
    fn errors_of_a_parsed_uri_show_no_user_info_nor_query() {
        let uri: Uri = "ftp://user:pw-s3cret@files.example/x?k=q-s3cret"
            .parse()
            .unwrap();
        let err = resolve(None, &uri).unwrap_err().to_string();
        assert!(err.contains("only http and https"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn errors_show_no_user_info_nor_query() {
        let shown = |t: &str| Shown(t).to_string();
        assert_eq!(
            shown("https://u:pw@api.example.com/x?sig=s#f"),
            "\"https://REDACTED@api.example.com/x?REDACTED\""
        );
        assert_eq!(shown("items?token=t"), "\"items?REDACTED\"");
        assert_eq!(shown("a/b@c"), "\"a/b@c\"");
        assert_eq!(
            shown("https://u:pa/ss@api.example.com/x"),
            "\"https://REDACTED@api.example.com/x\""
        );
        assert_eq!(
            shown("u:pw@api.example.com/x"),
            "\"REDACTED@api.example.com/x\""
        );
        let e = BaseUrl::parse("https://u:pw@api/?k=secret").unwrap_err();
        assert!(
            !e.to_string().contains("pw") && !e.to_string().contains("secret"),
            "{e}"
        );
        let e = join(None, "ftp://u:pw@h/?k=secret").unwrap_err();
        assert!(!format!("{e} {e:?}").contains("pw"), "{e:?}");
    }

    #[test]
    fn a_parsed_uri_without_a_host_is_refused() {
        for text in ["http://:80/", "http://u@:80/"] {
            let uri: Uri = text.parse().unwrap();
            assert!(!has_host(&uri), "{text}");
            let e = resolve(None, &uri).unwrap_err();
            assert!(e.to_string().contains("has no host"), "{e}");
        }
        assert!(has_host(&"http://u@h:80/".parse().unwrap()));
    }

    proptest! {
        #[test]
        fn never_panics(base in "\\PC{0,30}", reference in "\\PC{0,30}") {
            if let Ok(b) = BaseUrl::parse(&base) {
                let _ = join(Some(&b), &reference);
            }
            let _ = join(None, &reference);
        }

        #[test]
        fn relative_paths_stay_on_the_base_origin(seg in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,3}") {
            let base = BaseUrl::parse("https://api.example.com:8443/v1/").unwrap();
            let uri = join(Some(&base), &seg).unwrap();
            prop_assert_eq!(uri.authority().map(|a| a.as_str()), Some("api.example.com:8443"));
            prop_assert_eq!(uri.path(), format!("/v1/{seg}"));
        }

        /// The quick host check agrees with `Uri::host` on any URI `http` parses (which
        /// include `http://:80/` and `http://u@:80/`, with an empty host).
        #[test]
        fn the_host_check_agrees_with_uri_host(
            text in "http://([a-z]{0,4}(:[a-z]{0,4})?@)?(\\[[0-9a-f:]{0,6}\\]|[a-z0-9.]{0,6})(:[0-9]{0,5})?/",
        ) {
            if let Ok(uri) = text.parse::<Uri>() {
                prop_assert_eq!(has_host(&uri), uri.host().is_some_and(|h| !h.is_empty()), "{}", text);
            }
        }
    }
}
