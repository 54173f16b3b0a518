//! Property tests of the request command's own encoders: the Basic credentials' base64 and
//! the URL redaction of `-v` output and errors.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;

use super::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The CLI's base64 is RFC 4648's, as the `base64` crate writes it, for any bytes.
    #[test]
    fn base64_agrees_with_the_base64_crate(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        prop_assert_eq!(base64(&bytes), STANDARD.encode(&bytes));
    }

    /// A redacted URL never shows its user-info, password or query, whatever else it holds,
    /// and keeps the scheme, host, port and path.
    #[test]
    fn redaction_drops_user_info_and_query(
        scheme in "https?",
        user in "[a-z]{1,6}",
        host in "[a-z]{1,8}(\\.[a-z]{2,4})?",
        port in prop::option::of(1u16..),
        path in "(/[a-z0-9._~-]{0,6}){0,3}",
        query in "[a-z]{1,4}=[a-z0-9]{0,4}(&[a-z]{1,4}=[a-z0-9]{0,4}){0,2}",
    ) {
        let port_text = port.map(|p| format!(":{p}")).unwrap_or_default();
        let url = format!("{scheme}://{user}:PASSWORDMARK@{host}{port_text}{path}?{query}&k=QUERYMARK");
        let shown = redact(&url);
        prop_assert!(!shown.contains("PASSWORDMARK") && !shown.contains("QUERYMARK"), "{}", shown);
        prop_assert!(!shown.contains('@') && !shown.contains('?'), "{}", shown);
        let path = if path.is_empty() { "/" } else { path.as_str() };
        prop_assert_eq!(shown, format!("{scheme}://{host}{port_text}{path}"));
    }

    /// Redaction never panics, and what it shows of any text has no query.
    #[test]
    fn redaction_of_anything_has_no_query(url in "\\PC{0,40}") {
        prop_assert!(!redact(&url).contains('?'));
    }
}
