//! [`Origin`]: the scheme, host and port a request goes to, normalised.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use http::Uri;

/// The scheme of an [`Origin`]. Only the two schemes an HTTP client speaks are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// `http`: plain text, default port 80.
    Http,
    /// `https`: TLS, default port 443.
    Https,
}

impl Scheme {
    /// The port used when a URI names none (RFC 9110 §4.2).
    pub const fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    /// The scheme as written in a URI, lower-case.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// Whether the scheme runs over TLS.
    pub const fn is_secure(self) -> bool {
        matches!(self, Scheme::Https)
    }

    fn parse(s: &str) -> Option<Scheme> {
        if s.eq_ignore_ascii_case("http") {
            Some(Scheme::Http)
        } else if s.eq_ignore_ascii_case("https") {
            Some(Scheme::Https)
        } else {
            None
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a request goes: scheme, host and port, normalised so that two URIs naming the same
/// server give equal origins (RFC 6454 §4).
///
/// The host is lower-cased, IPv6 addresses keep their brackets (`[::1]`), and the default
/// port of the scheme is made explicit, so `HTTPS://Example.COM/a` and
/// `https://example.com:443/b` are the same origin. It is the key for per-host circuit
/// breakers, connection pools and credentials.
///
/// ```
/// use flext_core::Origin;
///
/// let uri: http::Uri = "HTTPS://Example.COM/path?q=1".parse().unwrap();
/// let origin = Origin::from_uri(&uri).unwrap();
/// assert_eq!(origin.to_string(), "https://example.com:443");
/// assert_eq!(origin, "https://example.com".parse::<Origin>().unwrap());
///
/// // A relative URI has no origin: a typed error, not a panic.
/// let relative: http::Uri = "/just/a/path".parse().unwrap();
/// assert!(Origin::from_uri(&relative).unwrap_err().is_missing_scheme());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin {
    scheme: Scheme,
    // Lower-case; IPv6 literals in brackets.
    host: Box<str>,
    port: u16,
}

impl Origin {
    /// The origin of an absolute URI.
    ///
    /// # Errors
    ///
    /// A URI without a scheme or a host, with a scheme other than `http` or `https`, or with
    /// an empty host.
    pub fn from_uri(uri: &Uri) -> Result<Origin, OriginError> {
        OriginRef::from_uri(uri).map(|r| r.to_origin())
    }

    /// Builds an origin from its parts. The host is lower-cased; an IPv6 literal gets
    /// brackets if it has none.
    ///
    /// # Errors
    ///
    /// An empty host, or a host with characters that cannot appear in a URI authority.
    pub fn new(scheme: Scheme, host: &str, port: u16) -> Result<Origin, OriginError> {
        let host = host.trim();
        if host.is_empty() {
            return Err(OriginError::new(ErrorKind::MissingHost));
        }
        if host.contains('@') {
            // `user@host` would parse as user-info and a host: refuse it rather than drop it.
            return Err(OriginError::new(ErrorKind::HasUserInfo));
        }
        let bracketed;
        let host = if host.contains(':') && !host.starts_with('[') {
            bracketed = format!("[{host}]");
            bracketed.as_str()
        } else {
            host
        };
        // Let `http` check the host the same way it checks a URI.
        let uri = Uri::builder()
            .scheme(scheme.as_str())
            .authority(format!("{host}:{port}"))
            .path_and_query("/")
            .build()
            .map_err(|_| OriginError::new(ErrorKind::InvalidHost))?;
        Origin::from_uri(&uri)
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host, lower-case; an IPv6 literal keeps its brackets (`[::1]`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, explicit even when it is the scheme's default.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the host is a loopback name or address: `localhost` (and names under
    /// `.localhost`, RFC 6761), `127.0.0.0/8` or `[::1]`.
    pub fn is_loopback(&self) -> bool {
        let host = self.host();
        if host == "localhost" || host.ends_with(".localhost") {
            return true;
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    }

    /// The host and port as written in an authority (`example.com:443`, `[::1]:8080`).
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// A borrowed view of this origin, for comparisons with [`OriginRef`]s.
    pub fn as_ref(&self) -> OriginRef<'_> {
        OriginRef {
            scheme: self.scheme,
            host: &self.host,
            port: self.port,
        }
    }

    /// Whether `uri` spells this origin the usual way: its scheme, then the lower-case host,
    /// with the port written or not (`https://api.example.com/...`,
    /// `http://127.0.0.1:8080/...`). Comparing bytes, it costs a few nanoseconds and parses
    /// nothing, which makes it the check to run on every request before a full parse.
    ///
    /// `false` means "not spelled this way", not "another origin": upper-case letters,
    /// user-info or an odd port spelling (`:0443`) say `false` for the same origin, so fall
    /// back to [`OriginRef::from_uri`] for an exact answer.
    ///
    /// ```
    /// use flext_core::{Origin, OriginRef};
    /// use http::Uri;
    ///
    /// let origin: Origin = "https://api.example.com".parse()?;
    /// assert!(origin.is_spelled_by(&Uri::from_static("https://api.example.com/v1")));
    /// assert!(origin.is_spelled_by(&Uri::from_static("https://api.example.com:443/v1")));
    /// assert!(!origin.is_spelled_by(&Uri::from_static("http://api.example.com/v1")));
    /// // The same origin, spelled otherwise: the full parse says so.
    /// let upper = Uri::from_static("https://API.example.com/v1");
    /// assert!(!origin.is_spelled_by(&upper));
    /// assert_eq!(OriginRef::from_uri(&upper)?, origin.as_ref());
    /// # Ok::<(), flext_core::OriginError>(())
    /// ```
    #[inline]
    pub fn is_spelled_by(&self, uri: &Uri) -> bool {
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return false;
        };
        // A parsed URI keeps a standard scheme in lower case; a comparison with a literal is a
        // length check and a word compare, not a call.
        let same_scheme = match self.scheme {
            Scheme::Http => scheme == "http",
            Scheme::Https => scheme == "https",
        };
        if !same_scheme {
            return false;
        }
        let (authority, host) = (authority.as_str().as_bytes(), self.host.as_bytes());
        let Some((head, rest)) = authority.split_at_checked(host.len()) else {
            return false;
        };
        if !same_bytes(head, host) {
            return false;
        }
        match rest {
            [] => self.port == self.scheme.default_port(),
            [b':', digits @ ..] if !digits.is_empty() && digits.len() <= 5 => {
                let mut port = 0u32;
                for d in digits {
                    if !d.is_ascii_digit() {
                        return false;
                    }
                    port = port * 10 + u32::from(d - b'0');
                }
                port == u32::from(self.port)
            }
            _ => false,
        }
    }
}

/// `a == b` for two slices, a word at a time and inlined, where a slice comparison calls
/// `memcmp` (a host name is short, and this runs on every request): two overlapping words
/// cover any length from 8 to 16 bytes, two overlapping half-words 4 to 7.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let words = |x: &[u8]| {
        x.first_chunk::<8>()
            .zip(x.last_chunk::<8>())
            .map(|(f, l)| (u64::from_ne_bytes(*f), u64::from_ne_bytes(*l)))
    };
    match a.len() {
        0..4 => a == b,
        4..8 => {
            let halves = |x: &[u8]| {
                x.first_chunk::<4>()
                    .zip(x.last_chunk::<4>())
                    .map(|(f, l)| (u32::from_ne_bytes(*f), u32::from_ne_bytes(*l)))
            };
            halves(a) == halves(b)
        }
        8..=16 => words(a) == words(b),
        _ => {
            let (mut a8, mut b8) = (a.chunks_exact(8), b.chunks_exact(8));
            a8.by_ref()
                .zip(b8.by_ref())
                .all(|(x, y)| words(x) == words(y))
                && words(a) == words(b)
        }
    }
}

impl Hash for Origin {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_ref().hash(state);
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Origin({self})")
    }
}

impl FromStr for Origin {
    type Err = OriginError;

    /// Parses `scheme://host[:port]`, with an optional trailing `/`. A path, query or
    /// user-info is an error: an origin has none.
    fn from_str(s: &str) -> Result<Origin, OriginError> {
        let uri: Uri = s
            .parse()
            .map_err(|_| OriginError::new(ErrorKind::InvalidUri))?;
        if let Some(pq) = uri.path_and_query()
            && (pq.as_str() != "/" && !pq.as_str().is_empty())
        {
            return Err(OriginError::new(ErrorKind::HasPath));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            // Dropping it silently would scope a credential to an origin the user did not
            // write; the error does not repeat the text, which may hold a password.
            return Err(OriginError::new(ErrorKind::HasUserInfo));
        }
        Origin::from_uri(&uri)
    }
}

impl TryFrom<&Uri> for Origin {
    type Error = OriginError;

    fn try_from(uri: &Uri) -> Result<Origin, OriginError> {
        Origin::from_uri(uri)
    }
}

/// A borrowed [`Origin`], read from a URI without allocating when its host is already
/// lower-case (the common case).
///
/// It hashes and compares like the `Origin` it stands for, so a map keyed by `Origin` can be
/// probed with it on a hot path and an owned key made only for a new entry.
#[derive(Debug, Clone, Copy)]
pub struct OriginRef<'a> {
    scheme: Scheme,
    host: &'a str,
    port: u16,
}

impl<'a> OriginRef<'a> {
    /// Reads the origin of an absolute URI.
    ///
    /// # Errors
    ///
    /// As [`Origin::from_uri`].
    pub fn from_uri(uri: &'a Uri) -> Result<OriginRef<'a>, OriginError> {
        let scheme = uri
            .scheme_str()
            .ok_or(OriginError::new(ErrorKind::MissingScheme))?;
        let scheme = Scheme::parse(scheme).ok_or(OriginError::new(ErrorKind::UnsupportedScheme))?;
        let host = uri.host().ok_or(OriginError::new(ErrorKind::MissingHost))?;
        if host.is_empty() || host == "[]" {
            return Err(OriginError::new(ErrorKind::MissingHost));
        }
        // User-info (`user:pass@`) is not part of an origin; `host()` already leaves it out.
        let port = match uri.port_u16() {
            Some(port) => port,
            // `http` parses a port past 65535 but gives no number for it: refuse it rather
            // than take the scheme's default. An empty port (`host:`) is the default.
            None if has_port_digits(uri) => return Err(OriginError::new(ErrorKind::InvalidPort)),
            None => scheme.default_port(),
        };
        Ok(OriginRef { scheme, host, port })
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The port, explicit even when it is the scheme's default.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host as written in the URI (it may have upper-case letters; comparisons ignore
    /// case).
    pub fn host(&self) -> &'a str {
        self.host
    }

    /// The owned origin. Allocates the host.
    pub fn to_origin(&self) -> Origin {
        Origin {
            scheme: self.scheme,
            host: self.host.to_ascii_lowercase().into_boxed_str(),
            port: self.port,
        }
    }
}

impl Hash for OriginRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.scheme.hash(state);
        // Hash the lower-cased host without allocating: feed it in small stack chunks.
        let mut buf = [0u8; 32];
        for chunk in self.host.as_bytes().chunks(buf.len()) {
            let out = &mut buf[..chunk.len()];
            out.copy_from_slice(chunk);
            out.make_ascii_lowercase();
            state.write(out);
        }
        state.write_u8(0xff);
        self.port.hash(state);
    }
}

impl PartialEq for OriginRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.scheme == other.scheme
            && self.port == other.port
            && self.host.eq_ignore_ascii_case(other.host)
    }
}

impl Eq for OriginRef<'_> {}

impl PartialEq<Origin> for OriginRef<'_> {
    fn eq(&self, other: &Origin) -> bool {
        *self == other.as_ref()
    }
}

impl PartialEq<OriginRef<'_>> for Origin {
    fn eq(&self, other: &OriginRef<'_>) -> bool {
        self.as_ref() == *other
    }
}

/// Why a URI has no [`Origin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginError {
    kind: ErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorKind {
    MissingScheme,
    UnsupportedScheme,
    MissingHost,
    InvalidHost,
    InvalidUri,
    HasPath,
    HasUserInfo,
    InvalidPort,
}

/// Whether the authority of `uri` writes a port after its host (`:` and at least a digit).
fn has_port_digits(uri: &Uri) -> bool {
    let Some(authority) = uri.authority() else {
        return false;
    };
    let a = authority.as_str();
    let host_port = a.rsplit_once('@').map_or(a, |(_, h)| h);
    // After an IPv6 literal's `]`, or anywhere in a name or IPv4 address.
    let tail = host_port.rsplit_once(']').map_or(host_port, |(_, t)| t);
    tail.rsplit_once(':')
        .is_some_and(|(_, digits)| !digits.is_empty())
}

impl OriginError {
    const fn new(kind: ErrorKind) -> OriginError {
        OriginError { kind }
    }

    /// The URI has no scheme (it is relative).
    pub fn is_missing_scheme(&self) -> bool {
        self.kind == ErrorKind::MissingScheme
    }

    /// The scheme is neither `http` nor `https`.
    pub fn is_unsupported_scheme(&self) -> bool {
        self.kind == ErrorKind::UnsupportedScheme
    }

    /// The URI has no host, or an empty one.
    pub fn is_missing_host(&self) -> bool {
        self.kind == ErrorKind::MissingHost
    }

    /// The text is not a URI, the host cannot appear in one, or the port is past 65535.
    pub fn is_invalid(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::InvalidUri | ErrorKind::InvalidHost | ErrorKind::InvalidPort
        )
    }

    /// The text has a path, query or fragment, which an origin does not.
    pub fn is_has_path(&self) -> bool {
        self.kind == ErrorKind::HasPath
    }

    /// The text has user-info (`user:password@`), which an origin does not.
    pub fn is_has_user_info(&self) -> bool {
        self.kind == ErrorKind::HasUserInfo
    }
}

impl fmt::Display for OriginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            ErrorKind::MissingScheme => {
                "uri has no scheme (an absolute http or https uri is needed)"
            }
            ErrorKind::UnsupportedScheme => "uri scheme is neither http nor https",
            ErrorKind::MissingHost => "uri has no host",
            ErrorKind::InvalidHost => "host is not valid in a uri",
            ErrorKind::InvalidUri => "text is not a valid uri",
            ErrorKind::HasPath => "an origin has no path, query or fragment",
            ErrorKind::HasUserInfo => "an origin has no user-info (user:password@)",
            ErrorKind::InvalidPort => "port is not a number from 0 to 65535",
        })
    }
}

impl std::error::Error for OriginError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;

    #[test]
    fn same_bytes_is_equality() {
        let words = [
            "",
            "a",
            "abcdefg",
            "abcdefgh",
            "abcdefghi",
            "bench.internal",
            "[::1]",
        ];
        for a in words {
            for b in words {
                assert_eq!(same_bytes(a.as_bytes(), b.as_bytes()), a == b, "{a} {b}");
            }
        }
        assert!(!same_bytes(b"abcdefghXj", b"abcdefghYj"));
        assert!(!same_bytes(b"Xbcdefghij", b"abcdefghij"));
    }

    fn origin(s: &str) -> Result<Origin, OriginError> {
        let uri: Uri = s
            .parse()
            .map_err(|_| OriginError::new(ErrorKind::InvalidUri))?;
        Origin::from_uri(&uri)
    }

    fn hash_of<T: Hash>(t: &T) -> u64 {
        let mut h = DefaultHasher::new();
        t.hash(&mut h);
        h.finish()
    }

    #[test]
    fn a_port_past_65535_is_refused_not_taken_for_the_default() {
        for text in [
            "http://a:65536/",
            "http://a:65616/x",
            "https://u@[::1]:99999/",
        ] {
            let uri: Uri = text.parse().unwrap();
            let e = OriginRef::from_uri(&uri).unwrap_err();
            assert!(e.is_invalid(), "{text}: {e}");
            assert!(e.to_string().contains("port"), "{e}");
        }
        for (text, port) in [
            ("http://a:/", 80),
            ("http://a:65535/", 65535),
            ("https://[::1]/", 443),
        ] {
            let uri: Uri = text.parse().unwrap();
            assert_eq!(OriginRef::from_uri(&uri).unwrap().port(), port, "{text}");
        }
    }

    #[test]
    fn normalises_case_and_default_ports() {
        let a = origin("HTTPS://Example.COM/a?b").unwrap();
        assert_eq!(a.scheme(), Scheme::Https);
        assert_eq!(a.host(), "example.com");
        assert_eq!(a.port(), 443);
        assert_eq!(a, origin("https://example.com:443/other").unwrap());
        assert_eq!(origin("http://x.org").unwrap().port(), 80);
        assert_eq!(origin("http://x.org:8080").unwrap().port(), 8080);
        assert_ne!(
            origin("http://x.org").unwrap(),
            origin("https://x.org").unwrap()
        );
    }

    #[test]
    fn ipv6_keeps_brackets() {
        let o = origin("http://[::1]:8080/").unwrap();
        assert_eq!(o.host(), "[::1]");
        assert_eq!(o.to_string(), "http://[::1]:8080");
        assert!(o.is_loopback());
        let built = Origin::new(Scheme::Http, "::1", 8080).unwrap();
        assert_eq!(built, o);
    }

    #[test]
    fn user_info_is_not_part_of_the_origin() {
        let o = origin("https://user:secret@api.example.com/x").unwrap();
        assert_eq!(o.to_string(), "https://api.example.com:443");
        assert!(!format!("{o:?}").contains("secret"));
    }

    #[test]
    fn typed_errors() {
        assert!(origin("/relative").unwrap_err().is_missing_scheme());
        assert!(origin("ftp://x.org/").unwrap_err().is_unsupported_scheme());
        assert!(
            "https://x.org/path"
                .parse::<Origin>()
                .unwrap_err()
                .is_has_path()
        );
        assert!("not a uri".parse::<Origin>().unwrap_err().is_invalid());
        assert!(
            Origin::new(Scheme::Http, "", 80)
                .unwrap_err()
                .is_missing_host()
        );
        assert!(
            Origin::new(Scheme::Http, "a b", 80)
                .unwrap_err()
                .is_invalid()
        );
        assert_eq!(
            origin("/relative").unwrap_err().to_string(),
            "uri has no scheme (an absolute http or https uri is needed)"
        );
    }

    #[test]
    fn loopback_detection() {
        for s in [
            "http://localhost",
            "http://api.localhost",
            "http://127.0.0.1",
            "http://127.9.9.9",
            "http://[::1]",
        ] {
            assert!(origin(s).unwrap().is_loopback(), "{s}");
        }
        for s in [
            "http://example.com",
            "http://10.0.0.1",
            "http://localhost.example.com",
            "http://[::2]",
        ] {
            assert!(!origin(s).unwrap().is_loopback(), "{s}");
        }
    }

    #[test]
    fn borrowed_view_hashes_and_compares_like_owned() {
        let uri: Uri = "https://API.Example.com/x".parse().unwrap();
        let r = OriginRef::from_uri(&uri).unwrap();
        let o = origin("https://api.example.com").unwrap();
        assert_eq!(r, o);
        assert_eq!(hash_of(&r), hash_of(&o));
        let mut map = std::collections::HashMap::new();
        map.insert(o, 1);
        assert_eq!(map.get(&r.to_origin()), Some(&1));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn host() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-zA-Z][a-zA-Z0-9-]{0,20}(\\.[a-zA-Z][a-zA-Z0-9-]{0,10}){0,3}",
                any::<[u8; 4]>().prop_map(|b| std::net::Ipv4Addr::from(b).to_string()),
                any::<[u16; 8]>().prop_map(|s| format!("[{}]", std::net::Ipv6Addr::from(s))),
            ]
        }

        proptest! {
            #[test]
            fn display_then_parse_round_trips(
                https in any::<bool>(),
                host in host(),
                port in proptest::option::of(1u16..),
                path in "(/[a-z0-9]{0,8}){0,3}",
            ) {
                let scheme = if https { "https" } else { "http" };
                let port_s = port.map(|p| format!(":{p}")).unwrap_or_default();
                let uri: Uri = format!("{scheme}://{host}{port_s}{path}").parse().unwrap();
                let o = Origin::from_uri(&uri).unwrap();
                prop_assert_eq!(o.host(), host.to_ascii_lowercase());
                let scheme = if https { Scheme::Https } else { Scheme::Http };
                prop_assert_eq!(o.port(), port.unwrap_or(scheme.default_port()));
                let again: Origin = o.to_string().parse().unwrap();
                prop_assert_eq!(&again, &o);
                prop_assert_eq!(hash_of(&again), hash_of(&OriginRef::from_uri(&uri).unwrap()));
                let rebuilt = Origin::new(o.scheme(), o.host(), o.port()).unwrap();
                prop_assert_eq!(rebuilt, o);
            }

            #[test]
            fn same_bytes_is_slice_equality(
                a in proptest::collection::vec(any::<u8>(), 0..40),
                flip in any::<Option<(usize, u8)>>(),
            ) {
                let mut b = a.clone();
                if let Some((i, x)) = flip
                    && !b.is_empty()
                {
                    let i = i % b.len();
                    b[i] ^= x;
                }
                prop_assert_eq!(same_bytes(&a, &b), a == b);
            }

            #[test]
            fn spelled_by_never_says_yes_for_another_origin(
                a in "(http|https|HTTP)://(a|b|A|127\\.0\\.0\\.1|\\[::1\\]|u@a)(:[0-9]{1,6})?/x",
                b in "(http|https)://(a|b|127\\.0\\.0\\.1|\\[::1\\])(:[0-9]{1,5})?",
            ) {
                let (Ok(uri), Ok(origin)) = (a.parse::<Uri>(), b.parse::<Origin>()) else {
                    return Ok(());
                };
                if origin.is_spelled_by(&uri) {
                    prop_assert_eq!(OriginRef::from_uri(&uri).ok(), Some(origin.as_ref()));
                }
                // The usual spelling of an origin always says yes.
                let usual: Uri = format!("{origin}/x").parse().unwrap();
                prop_assert!(origin.is_spelled_by(&usual), "{}", usual);
            }

            #[test]
            fn never_panics_on_arbitrary_text(s in "\\PC{0,40}") {
                if let Ok(uri) = s.parse::<Uri>() {
                    let _ = Origin::from_uri(&uri);
                }
                let _ = s.parse::<Origin>();
            }
        }
    }
}
