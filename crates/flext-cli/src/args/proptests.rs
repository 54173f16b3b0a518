//! Property tests of the command line's value parsers and of whole command lines: arbitrary
//! input never panics and gives a value or clap's error; valid input agrees with `http`'s
//! types and flext-api's duration parser.

use proptest::prelude::*;

use super::*;

/// Text around a colon: a header name (valid or not), a value (valid or not), spaces.
fn name_colon_value() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        "[!#$%&'*+.^_`|~0-9a-zA-Z-]{1,10}",
        "\\PC{0,8}",
        "[a-z]{0,3}[ ()\\x00-\\x1f\u{80}-\u{ff}][a-z]{0,3}",
    ];
    let value = prop_oneof![
        "[ -~\\t]{0,16}",
        "\\PC{0,12}",
        "[a-z]{0,3}[\\x00-\\x1f\\x7f][a-z]{0,3}",
    ];
    prop_oneof![
        4 => (name, "[ \\t]{0,2}", value).prop_map(|(n, s, v)| format!("{n}:{s}{v}")),
        1 => "\\PC{0,20}",
    ]
}

/// What `-H` must do, from `http` alone: split at the first colon, trim both sides.
fn reference_header(s: &str) -> Option<(HeaderName, HeaderValue)> {
    let (name, value) = s.split_once(':')?;
    let name = HeaderName::try_from(name.trim()).ok()?;
    let value = HeaderValue::try_from(value.trim()).ok()?;
    Some((name, value))
}

fn url_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,30}",
        "(https?|HTTP|ftp|)(://|:/|:)([a-z]{1,4}(:[a-z]{0,4})?@)?[a-z0-9.-]{0,10}(:[0-9]{0,6})?(/[a-z0-9%._~-]{0,6}){0,3}(\\?[a-z=&]{0,8})?",
    ]
}

fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,12}",
        "[0-9]{1,4}(\\.[0-9]{1,3})?(ns|us|ms|s|m|h|d)",
        "0|0s|[0-9]{1,2}m[0-9]{1,2}s",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `-H` accepts `Name: value` exactly when `http` accepts the trimmed name and value.
    #[test]
    fn header_arg_agrees_with_http(s in name_colon_value()) {
        match (header_arg(&s), reference_header(&s)) {
            (Ok(got), Some(want)) => prop_assert_eq!(got, want),
            (Err(msg), None) => prop_assert!(!msg.is_empty()),
            (got, want) => prop_assert!(false, "{s:?}: got {got:?}, http says {want:?}"),
        }
    }

    /// `--idempotency-key` keeps exactly the values `http` accepts, unchanged.
    #[test]
    fn header_value_arg_agrees_with_http(s in "\\PC{0,16}|[ -~\\t\\x00-\\x1f]{0,8}") {
        prop_assert_eq!(header_value_arg(&s).ok(), HeaderValue::try_from(s.as_str()).ok().map(|_| s.clone()));
    }

    /// `--basic USER:PASS` splits at the first colon and keeps both parts as they are, so the
    /// password may hold colons; text without one is an error.
    #[test]
    fn user_pass_arg_splits_at_the_first_colon(user in "[^:]{0,8}", pass in "\\PC{0,8}", bare in "[^:]{0,8}") {
        prop_assert_eq!(user_pass_arg(&format!("{user}:{pass}")), Ok((user, pass)));
        prop_assert!(user_pass_arg(&bare).is_err());
    }

    /// `--api-key HEADER:VALUE` agrees with `http` for the name and the trimmed key.
    #[test]
    fn api_key_arg_agrees_with_http(s in name_colon_value()) {
        let want = s.split_once(':').and_then(|(name, key)| {
            let name = HeaderName::try_from(name.trim()).ok()?;
            HeaderValue::try_from(key.trim()).ok()?;
            Some((name, key.trim().to_string()))
        });
        prop_assert_eq!(api_key_arg(&s).ok(), want);
    }

    /// `-X` takes exactly the methods `http` takes, and keeps their spelling.
    #[test]
    fn method_arg_agrees_with_http(s in "[A-Za-z!#$%&'*+.^_`|~0-9-]{1,10}|\\PC{0,10}") {
        match (method_arg(&s), Method::from_bytes(s.as_bytes())) {
            (Ok(m), Ok(want)) => {
                prop_assert_eq!(m.as_str(), s.as_str());
                prop_assert_eq!(m, want);
            }
            (Err(msg), Err(_)) => prop_assert!(msg.contains("not a valid HTTP method")),
            (got, want) => prop_assert!(false, "{s:?}: got {got:?}, http says {want:?}"),
        }
    }

    /// A URL argument is accepted exactly when `http::Uri` reads an http(s) URL with a host.
    #[test]
    fn url_arg_agrees_with_http(s in url_like()) {
        let want = s.parse::<Uri>().is_ok_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty())
        });
        prop_assert_eq!(url_arg(&s).is_ok(), want, "{:?}: {:?}", s, url_arg(&s));
        if let Ok(kept) = url_arg(&s) {
            prop_assert_eq!(kept, s);
        }
    }

    /// Durations read like flext-api's config files; `-z` refuses zero; `demo --duration`
    /// takes 4 s to 10 min.
    #[test]
    fn duration_args_read_like_config_files(s in duration_text()) {
        let want = flext_api::parse_duration(&s);
        prop_assert_eq!(duration_arg(&s).ok(), want.clone().ok());
        prop_assert_eq!(
            positive_duration_arg(&s).ok(),
            want.clone().ok().filter(|d| !d.is_zero())
        );
        prop_assert_eq!(
            demo_duration_arg(&s).ok(),
            want.ok().filter(|d| (Duration::from_secs(4)..=Duration::from_secs(600)).contains(d))
        );
    }
}

/// One argument of a `request` or `bench` command line: a known flag, a value, or noise.
fn argument() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "-H", "--header", "-X", "--request", "--retries", "--timeout", "--attempt-timeout",
            "--bearer", "--basic", "--api-key", "--idempotency-key", "--http1",
            "--http2-prior-knowledge", "-k", "-i", "-v", "-f", "-n", "-c", "-z", "--no-retry",
            "--no-breaker", "--json", "--log", "--", "-", "--unknown",
        ])
        .prop_map(str::to_string),
        3 => name_colon_value(),
        2 => duration_text(),
        1 => "[0-9]{1,6}|-[0-9]{1,3}",
        1 => "(GET|POST|get|BAD METHOD|PURGE)",
        1 => "(error|warn|info|debug|trace|loud)",
    ]
    // `-d @-` and `--json @-` read stdin, and `@FILE` a file: not for a property test.
    .prop_filter("no @", |a| !a.starts_with('@'))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A whole command line never panics: clap returns arguments or its error. Parsed
    /// arguments hold only checked values: headers as `http` reads them, a valid URL, at most
    /// 10 retries, a concurrency of 1 to 10000.
    #[test]
    fn command_lines_parse_or_fail_cleanly(
        request in any::<bool>(),
        url in url_like(),
        args in prop::collection::vec(argument(), 0..8),
    ) {
        let sub = if request { "request" } else { "bench" };
        let mut argv = vec!["flext".to_string(), sub.to_string(), url];
        argv.extend(args);
        match Cli::try_parse_from(&argv) {
            Ok(cli) => match cli.command {
                Command::Request(r) => {
                    prop_assert!(url_arg(&r.url).is_ok());
                    prop_assert!(r.retries.is_none_or(|n| n <= 10));
                    for (name, value) in &r.headers {
                        let text = format!("{name}: {}", value.to_str().unwrap_or(""));
                        if value.to_str().is_ok() {
                            prop_assert_eq!(reference_header(&text), Some((name.clone(), value.clone())));
                        }
                    }
                }
                Command::Bench(b) => {
                    prop_assert!(url_arg(&b.url).is_ok());
                    prop_assert!((1..=10_000).contains(&b.concurrency));
                    prop_assert!(b.requests.is_none_or(|n| n >= 1));
                    prop_assert!(b.duration.is_none_or(|d| !d.is_zero()));
                }
                Command::Demo(_) => prop_assert!(false, "{argv:?} parsed as demo"),
            },
            Err(e) => {
                // Rendering the error (what the user sees) never panics either.
                let text = e.render().to_string();
                prop_assert!(!text.is_empty());
            }
        }
    }

    /// Every `-H` value given reaches the parsed arguments in order, or the line is refused.
    #[test]
    fn every_header_is_kept_in_order_or_refused(headers in prop::collection::vec(name_colon_value(), 1..4)) {
        let mut argv = vec!["flext".to_string(), "request".to_string(), "http://h/".to_string()];
        for h in &headers {
            argv.push(format!("--header={h}"));
        }
        let want: Option<Vec<_>> = headers.iter().map(|h| reference_header(h)).collect();
        match (Cli::try_parse_from(&argv), want) {
            (Ok(cli), Some(want)) => {
                let Command::Request(r) = cli.command else {
                    return Err(TestCaseError::fail("not a request"));
                };
                prop_assert_eq!(r.headers, want);
            }
            (Err(e), None) => prop_assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation),
            (got, want) => prop_assert!(false, "{headers:?}: got {got:?}, http says {want:?}"),
        }
    }
}
