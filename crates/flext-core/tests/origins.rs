//! `Origin`, `OriginRef` and `OriginError` through the public API: typed errors for bad
//! input, and the spelling check that decides which host gets a per-origin credential.

use std::collections::HashMap;

use flext_core::{Origin, OriginError, OriginRef, Scheme};
use http::Uri;
use proptest::prelude::*;

fn uri(s: &str) -> Uri {
    s.parse().expect("a valid uri")
}

/// The predicate that says yes for an error, and its message.
fn describe(e: &OriginError) -> (&'static str, String) {
    let kind = match () {
        () if e.is_missing_scheme() => "missing_scheme",
        () if e.is_unsupported_scheme() => "unsupported_scheme",
        () if e.is_missing_host() => "missing_host",
        () if e.is_invalid() => "invalid",
        () if e.is_has_path() => "has_path",
        () => "none",
    };
    (kind, e.to_string())
}

#[test]
fn every_bad_input_gets_its_own_typed_error_and_message() {
    let cases: [(Result<Origin, OriginError>, &str, &str); 6] = [
        (
            Origin::from_uri(&uri("/relative")),
            "missing_scheme",
            "uri has no scheme (an absolute http or https uri is needed)",
        ),
        (
            "ws://chat.example".parse(),
            "unsupported_scheme",
            "uri scheme is neither http nor https",
        ),
        (
            Origin::new(Scheme::Https, " \t", 443),
            "missing_host",
            "uri has no host",
        ),
        (
            Origin::new(Scheme::Https, "bad host", 443),
            "invalid",
            "host is not valid in a uri",
        ),
        (
            "http://exa mple.com".parse(),
            "invalid",
            "text is not a valid uri",
        ),
        (
            "https://api.example.com/v1?x=1".parse(),
            "has_path",
            "an origin has no path, query or fragment",
        ),
    ];
    for (result, kind, message) in cases {
        let err = result.unwrap_err();
        assert_eq!(describe(&err), (kind, message.to_owned()));
        // Usable as a boxed error.
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(err);
        assert_eq!(boxed.to_string(), message);
    }
}

#[test]
fn an_empty_bracketed_host_is_a_missing_host() {
    // `http` accepts `[]` as an authority; it names no host.
    if let Ok(u) = "http://[]:80/".parse::<Uri>() {
        assert!(Origin::try_from(&u).unwrap_err().is_missing_host());
    }
}

#[test]
fn try_from_a_uri_is_from_uri() {
    let u = uri("HTTP://Example.org:8080/a");
    let origin = Origin::try_from(&u).unwrap();
    assert_eq!(origin, Origin::from_uri(&u).unwrap());
    assert_eq!(origin.to_string(), "http://example.org:8080");
}

#[test]
fn scheme_knows_its_port_and_whether_it_is_secure() {
    assert!(Scheme::Https.is_secure());
    assert!(!Scheme::Http.is_secure());
    assert_eq!(
        (Scheme::Http.default_port(), Scheme::Https.default_port()),
        (80, 443)
    );
    assert_eq!(Scheme::Https.to_string(), "https");
}

#[test]
fn authority_is_host_and_explicit_port() {
    let v6: Origin = "http://[::1]:8080".parse().unwrap();
    assert_eq!(v6.authority(), "[::1]:8080");
    let named: Origin = "https://API.example.com".parse().unwrap();
    assert_eq!(named.authority(), "api.example.com:443");
}

#[test]
fn a_borrowed_origin_reads_the_uri_as_written_and_compares_like_the_owned_one() {
    let u = uri("https://API.Example.com/v1");
    let r = OriginRef::from_uri(&u).unwrap();
    assert_eq!(
        (r.scheme(), r.host(), r.port()),
        (Scheme::Https, "API.Example.com", 443)
    );
    let owned: Origin = "https://api.example.com".parse().unwrap();
    // Both ways round: `Origin == OriginRef` and `OriginRef == Origin`.
    assert_eq!(owned, r);
    assert_eq!(r, owned);
    let other: Origin = "https://api.example.com:8443".parse().unwrap();
    assert_ne!(other, r);
    // A map keyed by `Origin` finds the entry of the borrowed one's owned form.
    let map = HashMap::from([(owned, "token")]);
    assert_eq!(map.get(&r.to_origin()), Some(&"token"));
}

#[test]
fn user_info_that_looks_like_the_host_is_not_its_spelling() {
    // `http://a:b@c/` goes to host `c`; it must never pass for origin `http://a`.
    let a: Origin = "http://a".parse().unwrap();
    let tricky = uri("http://a:b@c/");
    assert_eq!(Origin::from_uri(&tricky).unwrap().host(), "c");
    assert!(!a.is_spelled_by(&tricky));
    let a_port: Origin = "http://a:1".parse().unwrap();
    assert!(!a_port.is_spelled_by(&uri("http://a:1@c/")));
    // A shorter authority than the host, and another port, are not it either.
    let long: Origin = "https://api.example.com".parse().unwrap();
    assert!(!long.is_spelled_by(&uri("https://api/x")));
    assert!(!long.is_spelled_by(&uri("https://api.example.com:444/x")));
    assert!(!long.is_spelled_by(&uri("/relative")));
}

/// The origin's documented contract for `FromStr`: "A path, query or user-info is an error:
/// an origin has none." Regression: user-info was accepted and silently dropped, so a
/// configured origin such as `https://user:secret@api.example.com` parsed as
/// `https://api.example.com`.
#[test]
fn parsing_an_origin_with_user_info_is_an_error() {
    let err = "https://user:secret@api.example.com"
        .parse::<Origin>()
        .unwrap_err();
    assert!(err.is_has_user_info());
    assert!(!err.to_string().contains("secret"), "{err}");
    assert!("https://user@api.example.com/".parse::<Origin>().is_err());
    // Nor through `Origin::new`, where `user@host` would parse as user-info and a host.
    let err = Origin::new(Scheme::Https, "user:pw@api.example.com", 443).unwrap_err();
    assert!(err.is_has_user_info(), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever the user-info, an origin is spelled by a URI only when the URI goes to it.
    #[test]
    fn user_info_never_makes_another_host_pass(
        user in "[a-z]{1,3}(:[a-z0-9]{0,4})?",
        host in "[a-z]{1,3}",
        port in proptest::option::of(1u16..100),
    ) {
        let port_s = port.map(|p| format!(":{p}")).unwrap_or_default();
        let u = uri(&format!("http://{user}@{host}{port_s}/x"));
        let claimed: Origin = format!("http://{user}").parse().unwrap_or_else(|_| {
            Origin::new(Scheme::Http, user.split(':').next().unwrap(), 80).unwrap()
        });
        if claimed.is_spelled_by(&u) {
            prop_assert_eq!(OriginRef::from_uri(&u).unwrap(), claimed.as_ref());
        }
    }
}
