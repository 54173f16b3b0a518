//! The allow-list of origins a credential is sent to.

use flext_core::{Origin, OriginRef, Scheme};
use http::Uri;

/// The origins a credential may go to, each with whether it is plain `http` to a host that is
/// not loopback (which needs an explicit opt-in).
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) origin: Origin,
    pub(crate) insecure: bool,
}

impl Scope {
    pub(crate) fn push(&mut self, origin: Origin) {
        if self.entries.iter().any(|e| e.origin == origin) {
            return;
        }
        let insecure = origin.scheme() == Scheme::Http && !origin.is_loopback();
        self.entries.push(Entry { origin, insecure });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry for the origin of a request, if the credential may go there. A handful of
    /// origins is the common case, so a scan beats hashing the host; and the URI as written
    /// (`https://api.example.com/...`) is compared before it is parsed into an origin.
    #[inline]
    pub(crate) fn find(&self, uri: &Uri) -> Option<&Entry> {
        // The usual spelling first: a byte comparison per entry, no parse.
        let found = match self.entries.as_slice() {
            // The common case, without the loop.
            [only] => only.origin.is_spelled_by(uri).then_some(only),
            entries => entries.iter().find(|e| e.origin.is_spelled_by(uri)),
        };
        found.or_else(|| self.parse_and_find(uri))
    }

    /// User-info, an explicit default port, odd cases: the full parse.
    #[inline(never)]
    fn parse_and_find(&self, uri: &Uri) -> Option<&Entry> {
        let origin = OriginRef::from_uri(uri).ok()?;
        self.entries.iter().find(|e| origin == e.origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(scope: &'a Scope, uri: &str) -> Option<&'a Entry> {
        let uri: Uri = uri.parse().unwrap();
        let found = scope.find(&uri);
        // The fast path agrees with the full parse.
        let parsed = OriginRef::from_uri(&uri)
            .ok()
            .and_then(|o| scope.entries.iter().find(|e| o == e.origin));
        assert_eq!(found.map(|e| &e.origin), parsed.map(|e| &e.origin), "{uri}");
        found
    }

    #[test]
    fn matches_exact_origins_only() {
        let mut scope = Scope::default();
        scope.push("https://api.example.com".parse().unwrap());
        scope.push("http://localhost:8080".parse().unwrap());
        scope.push("http://plain.example.com".parse().unwrap());
        scope.push("https://API.example.com:443".parse().unwrap());
        assert_eq!(scope.entries.len(), 3);

        assert!(find(&scope, "https://API.Example.com/v1?x=1").is_some());
        assert!(find(&scope, "https://api.example.com:443/").is_some());
        assert!(find(&scope, "https://user:pw@api.example.com/").is_some());
        assert!(find(&scope, "HTTPS://api.example.com:443/").is_some());
        assert!(find(&scope, "http://LOCALHOST:8080/").is_some());
        assert!(find(&scope, "http://localhost/").is_none());
        assert!(find(&scope, "http://localhost:80/").is_none());
        // Another scheme, port or host is another origin.
        assert!(find(&scope, "http://api.example.com/").is_none());
        assert!(find(&scope, "https://api.example.com:8443/").is_none());
        assert!(find(&scope, "https://evil.example.com/").is_none());
        assert!(find(&scope, "https://api.example.com.evil.net/").is_none());
        assert!(find(&scope, "/relative").is_none());

        assert!(!find(&scope, "http://localhost:8080/").unwrap().insecure);
        assert!(find(&scope, "http://plain.example.com/").unwrap().insecure);
        assert!(!find(&scope, "https://api.example.com/").unwrap().insecure);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn the_fast_path_agrees_with_the_full_parse(
                scheme in "(?i:https?)",
                user in proptest::option::of("[a-z]{1,4}(:[a-z]{1,4})?"),
                host in "(?i:api\\.example\\.com|localhost|127\\.0\\.0\\.1|\\[::1\\]|other\\.net)",
                port in proptest::option::of(prop_oneof![Just(80u16), Just(443), Just(8080), 1u16..]),
            ) {
                let mut scope = Scope::default();
                for o in ["https://api.example.com", "http://localhost:8080", "http://127.0.0.1", "https://[::1]:8443"] {
                    scope.push(o.parse().unwrap());
                }
                let user = user.map(|u| format!("{u}@")).unwrap_or_default();
                let port = port.map(|p| format!(":{p}")).unwrap_or_default();
                let uri = format!("{scheme}://{user}{host}{port}/x");
                if uri.parse::<Uri>().is_ok() {
                    find(&scope, &uri);
                }
            }
        }
    }
}
