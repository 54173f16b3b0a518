//! `Retry-After` parsing (RFC 9110 §10.2.3).

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::RETRY_AFTER;

/// Parses a `Retry-After` value into how long to wait from `now`.
///
/// Both forms of RFC 9110 §10.2.3 are read:
/// - `delay-seconds` (`120`): that many seconds; a value too large for a `u64` saturates to
///   `u64::MAX` seconds (callers cap it; see `Instant::checked_add`);
/// - an `HTTP-date` in any of the three formats of §5.6.7 (IMF-fixdate
///   `Sun, 06 Nov 1994 08:49:37 GMT`, obsolete RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT` and
///   asctime `Sun Nov  6 08:49:37 1994`): the time from `now` until then, and zero for a
///   date in the past.
///
/// Surrounding spaces and tabs are ignored. Anything else (a sign, a fraction, an empty
/// value, bytes that are not text) gives `None`; this function never panics.
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use flext_core::parse_retry_after;
///
/// let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
/// assert_eq!(parse_retry_after(b"120", now), Some(Duration::from_secs(120)));
/// assert_eq!(
///     parse_retry_after(b"Sun, 06 Nov 1994 08:50:37 GMT", now),
///     Some(Duration::from_secs(60)),
/// );
/// assert_eq!(parse_retry_after(b"Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
/// assert_eq!(parse_retry_after(b"-1", now), None);
/// ```
pub fn parse_retry_after(value: &[u8], now: SystemTime) -> Option<Duration> {
    let value = trim_ows(value);
    if value.is_empty() {
        return None;
    }
    if value.iter().all(u8::is_ascii_digit) {
        let secs = value.iter().fold(0u64, |acc, d| {
            acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        });
        return Some(Duration::from_secs(secs));
    }
    let text = std::str::from_utf8(value).ok()?;
    let date = httpdate::parse_http_date(text).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Reads the `Retry-After` header of a response, as [`parse_retry_after`] does.
///
/// With several `Retry-After` fields (which a server should not send), the first is used.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    parse_retry_after(headers.get(RETRY_AFTER)?.as_bytes(), now)
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    // Sun, 06 Nov 1994 08:49:37 GMT, the example date of RFC 9110.
    const NOW: u64 = 784_111_777;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    #[test]
    fn delay_seconds() {
        assert_eq!(parse_retry_after(b"0", now()), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(b"  30\t", now()),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after(b"99999999999999999999999999", now()),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn all_three_date_formats() {
        let later = Some(Duration::from_secs(3600));
        assert_eq!(
            parse_retry_after(b"Sun, 06 Nov 1994 09:49:37 GMT", now()),
            later
        );
        assert_eq!(
            parse_retry_after(b"Sunday, 06-Nov-94 09:49:37 GMT", now()),
            later
        );
        assert_eq!(parse_retry_after(b"Sun Nov  6 09:49:37 1994", now()), later);
    }

    #[test]
    fn past_dates_are_zero() {
        assert_eq!(
            parse_retry_after(b"Sat, 05 Nov 1994 09:49:37 GMT", now()),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn malformed_is_none() {
        for v in [
            &b""[..],
            b" ",
            b"-5",
            b"+5",
            b"1.5",
            b"5s",
            b"soon",
            b"\xff\xfe",
            b"Sun, 06 Nov 1994",
            b"Sun, 32 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(v, now()), None, "{v:?}");
        }
    }

    #[test]
    fn from_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, now()), None);
        h.insert(RETRY_AFTER, http::HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now()), Some(Duration::from_secs(7)));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64), now_s in any::<u32>()) {
                let _ = parse_retry_after(&bytes, UNIX_EPOCH + Duration::from_secs(u64::from(now_s)));
            }

            #[test]
            fn digits_are_seconds(secs in any::<u64>()) {
                prop_assert_eq!(parse_retry_after(secs.to_string().as_bytes(), now()), Some(Duration::from_secs(secs)));
            }

            #[test]
            fn agrees_with_httpdate_on_valid_dates(date_s in 0u64..253_402_300_799, now_s in 0u64..253_402_300_799) {
                // Whole seconds within the years httpdate formats (1970..=9999).
                let date = UNIX_EPOCH + Duration::from_secs(date_s);
                let now = UNIX_EPOCH + Duration::from_secs(now_s);
                let text = httpdate::fmt_http_date(date);
                let expected = date.duration_since(now).unwrap_or(Duration::ZERO);
                prop_assert_eq!(parse_retry_after(text.as_bytes(), now), Some(expected));
                prop_assert_eq!(httpdate::parse_http_date(&text).ok(), Some(date));
            }
        }
    }
}
