//! Property tests for every parser and builder of the facade that takes user input: base
//! URLs and the joining of request targets, header names and values (per request and
//! default), query strings, per-request credentials, configuration files and durations.
//!
//! Each property has two halves: arbitrary input never panics and gives a value or a typed
//! error, and valid input agrees with a reference (`http::Uri`, `http::HeaderName`,
//! `http::HeaderValue`, `serde_urlencoded`, exact integer arithmetic) or round-trips.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use flext_api::{
    BreakerClock, BreakerSettings, Client, ClientBuilder, ClientConfig, HttpVersionPref,
    PoolSettings, Propagate, RetrySettings, TraceSettings, parse_duration,
};
use flext_testkit::{SCRIPT_HEADER, TestServer};
use http::header::{HeaderName, HeaderValue};
use http::{Request, Uri};
use proptest::prelude::*;

/// Properties that build a client per case stay at 256 cases; those that send a request
/// per case, at 32.
fn cases(n: u32) -> ProptestConfig {
    ProptestConfig::with_cases(n)
}

/// URL-like text: mostly well-formed http(s) URLs with user-info, ports, paths, queries and
/// fragments in every combination, some other schemes, and arbitrary text.
fn url_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,40}",
        "(https?|HTTPS?|ftp|file|)://([a-z]{1,5}(:[a-z0-9]{0,5})?@)?([a-z0-9-]{0,10}(\\.[a-z]{1,5}){0,2}|\\[::1\\]|127\\.0\\.0\\.1)(:[0-9]{0,6})?(/[a-zA-Z0-9%._~:@!$&'()*+,;=-]{0,8}){0,3}/?(\\?[a-z0-9=&%]{0,10})?(#[a-z]{0,4})?",
        "(https?)://[a-z]{1,8}(:[0-9]{1,5})?(/[a-z0-9]{1,5}){0,3}/?",
    ]
}

/// Request targets: absolute URLs, absolute and relative paths with queries, network-path
/// references (`//host/x`), scheme-like text, characters a URL may not hold, anything.
fn reference() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,30}",
        url_like(),
        "/?([a-zA-Z0-9%._~:@!$&'()*+,;=-]{0,8}/){0,3}[a-zA-Z0-9._-]{0,8}(\\?[a-zA-Z0-9=&%/?]{0,10})?",
        "//[a-z.]{1,10}(/[a-z]{0,5}){0,2}",
        "[a-z]{1,6}:[a-z/]{0,10}",
        "[ \\t\"<>\\\\^`{|}]{1,3}[a-z]{0,4}",
    ]
}

/// What `ClientBuilder::base_url` must accept: an absolute http(s) URL with a host and no
/// query, as `http::Uri` reads it.
fn is_valid_base(text: &str) -> bool {
    text.parse::<Uri>().is_ok_and(|u| {
        matches!(u.scheme_str(), Some("http" | "https"))
            && u.host().is_some_and(|h| !h.is_empty())
            && u.query().is_none()
    })
}

fn client_with_base(base: &str) -> Result<Client, flext_api::Error> {
    Client::builder().base_url(base).build()
}

/// RFC 3986 §5.2.3's merge, without dot-segment removal: what a relative target becomes.
/// A fragment is never sent, so it is not part of the result.
fn merged(base_path: &str, reference: &str) -> String {
    let reference = reference.split('#').next().unwrap_or_default();
    if reference.starts_with('/') {
        return reference.to_string();
    }
    let dir = base_path.rfind('/').map_or("/", |i| &base_path[..=i]);
    format!("{dir}{reference}")
}

fn build(client: &Client, reference: &str) -> Result<Request<flext_api::Body>, flext_api::Error> {
    client.get(reference).build()
}

proptest! {
    #![proptest_config(cases(256))]

    /// A base URL is accepted exactly when `http::Uri` reads it as an absolute http(s) URL
    /// with a host and no query; otherwise the error names the `base_url` setting.
    #[test]
    fn base_url_is_accepted_exactly_when_http_uri_agrees(base in url_like()) {
        match client_with_base(&base) {
            Ok(_) => prop_assert!(is_valid_base(&base), "accepted {base:?}"),
            Err(e) => {
                prop_assert!(!is_valid_base(&base), "refused {base:?}: {e}");
                prop_assert!(e.is_builder());
                prop_assert_eq!(e.setting(), Some("base_url"));
            }
        }
    }

    /// Joining a target to a base never panics and gives an absolute http(s) URL that
    /// round-trips through its text, or a request error. An absolute target stands alone;
    /// anything else stays on the base's origin (so `//evil.example/x` is a path there, not
    /// another host) with the path RFC 3986's merge gives.
    #[test]
    fn join_stays_on_the_base_origin_unless_the_target_is_absolute(
        base in url_like().prop_filter("a valid base", |b| is_valid_base(b)),
        reference in reference(),
    ) {
        let client = client_with_base(&base).unwrap();
        let base_uri: Uri = base.parse().unwrap();
        match build(&client, &reference) {
            Ok(req) => {
                let uri = req.uri();
                prop_assert!(matches!(uri.scheme_str(), Some("http" | "https")), "{uri}");
                prop_assert!(uri.host().is_some_and(|h| !h.is_empty()), "{uri}");
                prop_assert_eq!(&uri.to_string().parse::<Uri>().unwrap(), uri);
                match reference.parse::<Uri>() {
                    Ok(abs) if abs.scheme().is_some() => prop_assert_eq!(uri, &abs),
                    _ => {
                        prop_assert_eq!(uri.scheme(), base_uri.scheme());
                        prop_assert_eq!(uri.authority(), base_uri.authority());
                        let want = merged(base_uri.path(), &reference);
                        prop_assert_eq!(uri.path_and_query().map(|pq| pq.as_str()), Some(want.as_str()));
                    }
                }
            }
            Err(e) => prop_assert!(e.is_request(), "{reference:?}: {e:?}"),
        }
    }

    /// Without a base URL only absolute http(s) URLs with a host are accepted, as they are.
    #[test]
    fn without_a_base_only_absolute_urls_are_accepted(reference in reference()) {
        static CLIENT: OnceLock<Client> = OnceLock::new();
        let client = CLIENT.get_or_init(Client::new);
        let reference_says = reference.parse::<Uri>().ok().filter(|u| {
            matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty())
        });
        match (build(client, &reference), reference_says) {
            (Ok(req), Some(uri)) => prop_assert_eq!(req.uri(), &uri),
            (Err(e), None) => prop_assert!(e.is_request()),
            (got, want) => prop_assert!(false, "{reference:?}: got {got:?}, http::Uri says {want:?}"),
        }
    }
}

/// Header names: valid tokens (any case), and text that is not one.
fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[!#$%&'*+.^_`|~0-9a-zA-Z-]{1,12}",
        "\\PC{0,12}",
        "[a-z]{0,4}[ :()\\x00-\\x1f\\x7f\u{80}-\u{ff}][a-z]{0,4}",
    ]
}

/// Header values: visible ASCII with spaces and tabs, control characters, non-ASCII.
fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~\\t]{0,20}",
        "\\PC{0,16}",
        "[a-z]{0,4}[\\x00-\\x1f\\x7f][a-z]{0,4}",
    ]
}

fn base_client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        Client::builder()
            .base_url("http://127.0.0.1:9/")
            .build()
            .unwrap()
    })
}

proptest! {
    #![proptest_config(cases(256))]

    /// `RequestBuilder::header` accepts a pair exactly when `http` does, and the request then
    /// carries the value byte for byte; otherwise it is a request error at build time.
    #[test]
    fn request_headers_agree_with_http(name in header_name(), value in header_value()) {
        let reference = HeaderName::try_from(name.as_str())
            .ok()
            .zip(HeaderValue::try_from(value.as_str()).ok());
        let built = base_client().get("x").header(&name, &value).build();
        match (built, reference) {
            (Ok(req), Some((n, v))) => prop_assert_eq!(req.headers().get(&n), Some(&v)),
            (Err(e), None) => {
                prop_assert!(e.is_request());
                // The message names the header but the value never shows (it may be a secret);
                // a value the name contains shows as part of the name.
                prop_assert!(
                    value.len() < 4 || name.contains(&value) || !e.to_string().contains(&value),
                    "{e}"
                );
            }
            (got, want) => prop_assert!(false, "{name:?}: {value:?}: got {got:?}, http says {want:?}"),
        }
    }

    /// `ClientBuilder::default_header` and `user_agent` accept exactly what `http` does; a
    /// refusal names the setting.
    #[test]
    fn default_headers_and_user_agent_agree_with_http(
        name in header_name(),
        value in header_value(),
        agent in header_value(),
    ) {
        let ok_header = HeaderName::try_from(name.as_str()).is_ok()
            && HeaderValue::try_from(value.as_str()).is_ok();
        let ok_agent = HeaderValue::try_from(agent.as_str()).is_ok();
        let result = Client::builder().default_header(&name, &value).user_agent(&agent).build();
        match result {
            Ok(_) => prop_assert!(ok_header && ok_agent),
            Err(e) => {
                prop_assert!(e.is_builder());
                let want = if ok_header { "user_agent" } else { "default_headers" };
                prop_assert_eq!(e.setting(), Some(want), "{}", e);
            }
        }
    }

    /// Per-request credentials: a bearer token is accepted when `Bearer <token>` is a header
    /// value, Basic credentials when the user-id has no `:` and neither part a control
    /// character; both are marked sensitive.
    #[test]
    fn per_request_credentials_are_checked_and_sensitive(
        token in header_value(),
        user in header_value(),
        password in header_value(),
    ) {
        let bearer = base_client().get("x").bearer_auth(&token).build();
        match bearer {
            Ok(req) => {
                let v = req.headers().get(http::header::AUTHORIZATION).unwrap();
                prop_assert!(v.is_sensitive());
                let want = format!("Bearer {token}");
                prop_assert_eq!(v.as_bytes(), want.as_bytes());
            }
            Err(e) => {
                let as_header = HeaderValue::try_from(format!("Bearer {token}"));
                prop_assert!(e.is_request());
                prop_assert!(as_header.is_err());
            }
        }
        let basic_ok = !user.contains(':')
            && !user.chars().any(char::is_control)
            && !password.chars().any(char::is_control);
        match base_client().get("x").basic_auth(&user, &password).build() {
            Ok(req) => {
                prop_assert!(basic_ok);
                let v = req.headers().get(http::header::AUTHORIZATION).unwrap();
                prop_assert!(v.is_sensitive());
                prop_assert!(v.as_bytes().starts_with(b"Basic "));
            }
            Err(e) => prop_assert!(!basic_ok && e.is_request(), "{e:?}"),
        }
    }

    /// Any query pairs serialize into a URI that `http` accepts, after the target's own
    /// query, and decode back to the same pairs.
    #[test]
    fn query_pairs_round_trip(
        pairs in prop::collection::vec(("\\PC{0,8}", "\\PC{0,8}"), 0..5),
        existing in prop::option::of("[a-z]{1,4}=[a-z0-9]{0,4}"),
    ) {
        let target = match &existing {
            Some(q) => format!("items?{q}"),
            None => "items".to_string(),
        };
        let req = base_client().get(&target).query(&pairs).build().unwrap();
        let query = req.uri().query().unwrap_or("");
        let decoded: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
        let mut want: Vec<(String, String)> = match &existing {
            Some(q) => serde_urlencoded::from_str(q).unwrap(),
            None => Vec::new(),
        };
        want.extend(pairs.iter().cloned());
        prop_assert_eq!(decoded, want);
        prop_assert_eq!(req.uri().path(), "/items");
    }
}

// ---- durations -------------------------------------------------------------------------

const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];

/// One `<number><unit>` part: an integer, a fraction of at most as many digits as keep the
/// unit's scale whole (so that the exact value is a whole number of nanoseconds), spaces.
fn duration_part() -> impl Strategy<Value = (String, u128)> {
    (
        0usize..UNITS.len(),
        0u64..100_000,
        "[0-9]{0,11}",
        any::<bool>(),
    )
        .prop_map(|(u, int, frac, space)| {
            let (unit, per) = UNITS[u];
            // Powers of ten in `per`: 9 for s, 10 for m (6e10), 11 for h and d.
            let exact_digits = (0..12u32)
                .take_while(|k| per % 10u128.pow(*k) == 0)
                .last()
                .unwrap_or(0) as usize;
            let frac = &frac[..frac.len().min(exact_digits)];
            let mut nanos = u128::from(int) * per;
            let mut text = int.to_string();
            if !frac.is_empty() {
                let f: u128 = frac.parse().unwrap();
                nanos += f * per / 10u128.pow(frac.len() as u32);
                text.push('.');
                text.push_str(frac);
            }
            if space {
                text.push(' ');
            }
            text.push_str(unit);
            (text, nanos)
        })
}

proptest! {
    #![proptest_config(cases(256))]

    /// A duration of several parts is the exact sum of its parts, whitespace around it and
    /// between number and unit ignored.
    #[test]
    fn durations_are_the_exact_sum_of_their_parts(
        parts in prop::collection::vec(duration_part(), 1..4),
        pad in "[ \\t]{0,2}",
    ) {
        let text = format!("{pad}{}{pad}", parts.iter().map(|(t, _)| t.as_str()).collect::<String>());
        let total: u128 = parts.iter().map(|(_, n)| n).sum();
        let want = Duration::new(
            u64::try_from(total / 1_000_000_000).unwrap(),
            u32::try_from(total % 1_000_000_000).unwrap(),
        );
        prop_assert_eq!(parse_duration(&text), Ok(want), "{:?}", text);
    }

    /// Text that is not a duration gives an error whose message quotes at most 64 characters
    /// of it and says how to write one; large values are errors, never wrap-arounds.
    #[test]
    fn bad_durations_are_errors_with_a_hint(text in "\\PC{0,80}|[0-9]{20,40}[smhd]|-[0-9]{1,3}s") {
        if let Err(e) = parse_duration(&text) {
            let msg = e.to_string();
            prop_assert!(msg.starts_with("invalid duration"), "{msg}");
            prop_assert!(msg.contains("\"250ms\""), "{msg}");
        } else {
            // Accepted text reads back: digits, dots, units and spaces only.
            prop_assert!(
                text.chars().all(|c| c.is_ascii_digit() || c.is_whitespace() || ".nuµmshd".contains(c)),
                "{text:?}"
            );
        }
    }
}

// ---- configuration files ----------------------------------------------------------------

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        (1u64..100_000).prop_map(Duration::from_millis),
        (1u64..4_000).prop_map(Duration::from_secs),
        any::<u64>().prop_map(Duration::from_nanos),
    ]
}

/// Finite floats in and around `0..=1`, where the validated settings live.
fn ratio() -> impl Strategy<Value = f64> {
    prop_oneof![0.0..=1.0f64, -2.0..3.0f64, Just(0.0), Just(1.0)]
}

/// Sizes and counts: small, zero, and the whole range.
fn size() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 1u64..2_000, any::<u64>()]
}

fn config() -> impl Strategy<Value = ClientConfig> {
    let top = (
        prop::option::of(url_like()),
        prop::option::of("[ -~]{0,12}"),
        prop::collection::btree_map("[a-z-]{1,8}", "[ -~]{0,8}", 0..3),
        (duration(), duration(), duration()),
        size(),
        prop_oneof![
            Just(HttpVersionPref::Auto),
            Just(HttpVersionPref::Http1),
            Just(HttpVersionPref::Http2PriorKnowledge),
        ],
        prop::collection::vec("[a-z/._-]{1,12}".prop_map(PathBuf::from), 0..2),
        any::<bool>(),
        size(),
    );
    let retry = (
        any::<bool>(),
        0u32..13,
        (duration(), duration(), duration()),
        size(),
        ratio(),
        any::<u32>(),
    )
        .prop_map(
            |(enabled, max_retries, (base, max, ra), replay, ratio, min)| RetrySettings {
                enabled,
                max_retries,
                backoff_base: base,
                backoff_max: max,
                max_retry_after: ra,
                max_replay_bytes: usize::try_from(replay).unwrap_or(usize::MAX),
                budget_ratio: ratio,
                budget_min_per_second: min,
            },
        );
    let breaker = (
        any::<bool>(),
        0u32..10,
        ratio(),
        any::<u32>(),
        (duration(), duration(), duration()),
        0u32..4,
    )
        .prop_map(
            |(enabled, consecutive, rate, minimum, (window, open, max_open), probes)| {
                BreakerSettings {
                    enabled,
                    consecutive_failures: consecutive,
                    failure_rate: rate,
                    minimum_calls: minimum,
                    window,
                    open_for: open,
                    max_open_for: max_open,
                    half_open_probes: probes,
                    clock: if enabled {
                        BreakerClock::Coarse
                    } else {
                        BreakerClock::Tokio
                    },
                }
            },
        );
    let pool = (
        (size(), size(), size(), size()),
        prop::option::of(duration()),
        prop::option::of(duration()),
        duration(),
    )
        .prop_map(
            |((conns, idle, h2, waiters), idle_timeout, lifetime, acquire)| {
                let us = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
                PoolSettings {
                    max_connections_per_origin: us(conns),
                    max_idle_per_origin: us(idle),
                    idle_timeout,
                    max_lifetime: lifetime,
                    http2_max_connections_per_origin: us(h2),
                    max_waiters_per_origin: us(waiters),
                    acquire_timeout: acquire,
                }
            },
        );
    let propagate = prop_oneof![
        Just(Propagate::Off),
        Just(Propagate::Recorded),
        Just(Propagate::Always),
    ];
    let trace = (any::<bool>(), propagate)
        .prop_map(|(enabled, propagate)| TraceSettings { enabled, propagate });
    (top, retry, breaker, pool, trace).prop_map(
        |(
            (
                base_url,
                user_agent,
                default_headers,
                (t, at, ct),
                body,
                protocol,
                ca,
                danger,
                redirects,
            ),
            retry,
            breaker,
            pool,
            trace,
        )| ClientConfig {
            base_url,
            user_agent,
            default_headers,
            timeout: t,
            attempt_timeout: at,
            connect_timeout: ct,
            max_response_body: body,
            protocol,
            ca_certs: ca,
            danger_accept_invalid_certs: danger,
            max_redirects: usize::try_from(redirects).unwrap_or(usize::MAX),
            retry,
            breaker,
            pool,
            trace,
        },
    )
}

/// TOML-ish text: lines of known keys (and a typo), tables, and values of every kind.
fn config_text() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("base_url"),
        Just("timeout"),
        Just("attempt_timeout"),
        Just("max_redirects"),
        Just("protocol"),
        Just("timeuot"),
        Just("[retry]"),
        Just("[breaker]"),
        Just("[pool]"),
        Just("max_retries"),
        Just("window"),
        Just("idle_timeout"),
        Just("enabled"),
        Just("budget_ratio"),
    ];
    let value = prop_oneof![
        "\"[0-9]{1,3}(ms|s|m|h|x)?\"",
        "\"(off|OFF|auto|http1|http2-prior-knowledge)\"",
        "-?[0-9]{1,20}(\\.[0-9]{1,3})?",
        "(true|false|nan|inf)",
        "\"\\PC{0,10}\"",
        "\\PC{0,6}",
        "\\[\\]|\\{\\}",
    ];
    prop::collection::vec((key, value), 0..6).prop_map(|lines| {
        lines
            .into_iter()
            .map(|(k, v)| {
                if k.starts_with('[') {
                    format!("{k}\n")
                } else {
                    format!("{k} = {v}\n")
                }
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(cases(256))]

    /// Arbitrary configuration text never panics: it gives a configuration that validates,
    /// or a builder error.
    #[test]
    fn config_text_gives_a_config_or_a_builder_error(
        toml_text in prop_oneof![config_text(), "\\PC{0,60}"],
        json_text in prop_oneof!["\\PC{0,60}", "\\{\"(timeout|retry|pool)\": (\"[0-9]{1,3}s\"|\\{\\}|[0-9]{1,3}|null)\\}"],
    ) {
        match ClientConfig::from_toml(&toml_text) {
            Ok(c) => prop_assert!(c.validate().is_ok()),
            Err(e) => prop_assert!(e.is_builder(), "{e:?}"),
        }
        match ClientConfig::from_json(&json_text) {
            Ok(c) => prop_assert!(c.validate().is_ok()),
            Err(e) => prop_assert!(e.is_builder(), "{e:?}"),
        }
    }

    /// A configuration written as TOML or JSON reads back equal when it validates; when it
    /// does not, reading it back fails on the same setting `validate` names.
    #[test]
    fn config_round_trips_through_toml_and_json(c in config()) {
        let json = serde_json::to_string(&c).unwrap();
        let from_json = ClientConfig::from_json(&json);
        match c.validate() {
            Ok(()) => prop_assert_eq!(&from_json.unwrap(), &c),
            Err(e) => prop_assert_eq!(from_json.unwrap_err().setting(), e.setting()),
        }
        // Every size round-trips, `u64::MAX` included (the toml crate writes and reads
        // integers above `i64::MAX`).
        let text = c.to_toml().unwrap();
        let from_toml = ClientConfig::from_toml(&text);
        match c.validate() {
            Ok(()) => prop_assert_eq!(from_toml.unwrap(), c),
            Err(e) => prop_assert_eq!(from_toml.unwrap_err().setting(), e.setting()),
        }
    }

    /// `validate` is the whole check: a configuration it accepts builds a client.
    #[test]
    fn a_validated_config_builds_a_client(c in config()) {
        let mut c = c;
        c.ca_certs.clear();
        let validated = c.validate();
        let built = ClientBuilder::from_config(c.clone()).build();
        match (validated, built) {
            (Ok(()), Ok(_)) => {}
            (Err(v), Err(b)) => prop_assert_eq!(v.setting(), b.setting()),
            (Ok(()), Err(b)) => {
                // Settings the builder reads beyond `validate`: headers and the user agent.
                prop_assert!(
                    matches!(b.setting(), Some("default_headers" | "user_agent")),
                    "validate accepted {c:?} but build said {b}"
                );
            }
            (Err(v), Ok(_)) => prop_assert!(false, "build accepted what validate refused: {v}"),
        }
    }

    /// A duration field reads exactly what `parse_duration` reads, in TOML and JSON alike;
    /// zero is then refused by validation, which names the setting.
    #[test]
    fn duration_fields_read_like_parse_duration(text in prop_oneof![
        "\\PC{0,12}",
        "[0-9]{1,3}(\\.[0-9])?(ms|s|m|h)",
        "(off|Off| off )",
    ]) {
        let mut table = toml::Table::new();
        let mut pool = toml::Table::new();
        pool.insert("acquire_timeout".into(), toml::Value::String(text.clone()));
        pool.insert("idle_timeout".into(), toml::Value::String(text.clone()));
        table.insert("pool".into(), toml::Value::Table(pool));
        let toml_text = toml::to_string(&table).unwrap();
        let json_text = serde_json::json!({
            "pool": {"acquire_timeout": text, "idle_timeout": text}
        })
        .to_string();
        let want = parse_duration(&text);
        for got in [ClientConfig::from_toml(&toml_text), ClientConfig::from_json(&json_text)] {
            match (&want, got) {
                (Ok(d), Err(e)) if d.is_zero() => {
                    prop_assert_eq!(e.setting(), Some("pool.acquire_timeout"));
                }
                (Ok(d), Ok(c)) => {
                    prop_assert_eq!(c.pool.acquire_timeout, *d);
                    prop_assert_eq!(c.pool.idle_timeout, Some(*d));
                }
                (Err(_), Err(e)) => {
                    prop_assert!(e.is_builder());
                    prop_assert!(e.to_string().contains("invalid duration"), "{e}");
                }
                (want, got) => prop_assert!(false, "{text:?}: parse_duration {want:?}, config {got:?}"),
            }
        }
    }
}

/// Regressions of `a_validated_config_builds_a_client`: settings `validate` let through and
/// the layers then refused at build time.
#[test]
fn validate_refuses_what_the_layers_would_refuse() {
    let refused = |text: &str, setting: &str| {
        let e = ClientConfig::from_toml(text).unwrap_err();
        assert_eq!(e.setting(), Some(setting), "{text}: {e}");
    };
    refused(
        "[pool]\nmax_waiters_per_origin = 0",
        "pool.max_waiters_per_origin",
    );
    refused("[pool]\nacquire_timeout = \"0s\"", "pool.acquire_timeout");
    refused("[pool]\nidle_timeout = \"0s\"", "pool.idle_timeout");
    refused("[pool]\nmax_lifetime = \"0ms\"", "pool.max_lifetime");
    refused("[breaker]\nminimum_calls = 0", "breaker.minimum_calls");
    refused("[breaker]\nopen_for = \"0s\"", "breaker.open_for");
    refused(
        "[breaker]\nhalf_open_probes = 1001",
        "breaker.half_open_probes",
    );
    refused(
        "attempt_timeout = \"1ns\"\n[breaker]\nwindow = \"2ns\"",
        "breaker.window",
    );
    refused(
        "[retry]\nbudget_min_per_second = 100001",
        "retry.budget_min_per_second",
    );
    // "off" is how an optional duration is turned off.
    let off = ClientConfig::from_toml("[pool]\nidle_timeout = \"off\"").unwrap();
    assert_eq!(off.pool.idle_timeout, None);
}

/// A breaker window over 64 s (the breaker's most buckets) builds, with longer buckets.
#[test]
fn a_long_breaker_window_builds() {
    for window in ["65s", "2m", "1h"] {
        let config = ClientConfig::from_toml(&format!("[breaker]\nwindow = \"{window}\"")).unwrap();
        ClientBuilder::from_config(config).build().unwrap();
    }
}

// ---- headers on the wire ----------------------------------------------------------------

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    })
}

fn echo_server() -> &'static TestServer {
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        runtime()
            .block_on(TestServer::builder().http1().start())
            .unwrap()
    })
}

/// The values of header `name` the server received.
fn echoed(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pair| pair[0].as_str() == Some(name))
        .map(|pair| pair[1].as_str().unwrap().to_owned())
        .collect()
}

proptest! {
    #![proptest_config(cases(32))]

    /// Valid default and per-request headers reach the server as given; a request's own
    /// header replaces the default of the same name rather than adding to it.
    #[test]
    fn headers_reach_the_server_and_request_headers_win(
        name in "x-[a-z0-9-]{1,10}",
        default in "[!-~]([ -~]{0,10}[!-~])?",
        own in prop::option::of("[!-~]{1,10}"),
    ) {
        let server = echo_server();
        let client = Client::builder()
            .base_url(&server.url("/"))
            .default_header(&name, &default)
            .no_retry()
            .build()
            .unwrap();
        let mut request = client.get("echo").header(SCRIPT_HEADER, "echo");
        if let Some(own) = &own {
            request = request.header(&name, own);
        }
        let echo: serde_json::Value = runtime().block_on(async {
            request.send().await.unwrap().json().await.unwrap()
        });
        let want = own.unwrap_or(default);
        prop_assert_eq!(echoed(&echo, &name), vec![want]);
    }
}
