//! Human durations in configuration: `"250ms"`, `"10s"`, `"5m"`, `"1h30m"`.

use std::fmt;
use std::time::Duration;

/// Parses a duration written as one or more `<number><unit>` parts: `250ms`, `10s`,
/// `1m30s`, `1.5s`. Units: `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`, `d`. A bare `0` is
/// zero. Anything else is an error with a message saying what was expected; nothing panics,
/// and values too large for a [`Duration`] are errors, not wrap-arounds.
///
/// It is the syntax of [`ClientConfig`](crate::ClientConfig) files, exported so that tools
/// (the `flext` command line) read durations the same way.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(flext_api::parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert!(flext_api::parse_duration("soon").is_err());
/// ```
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::new(text, "empty duration"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(DurationError::new(text, "expected a number"));
        }
        let (num, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let nanos_per_unit: u128 = match unit.trim() {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            "" => {
                return Err(DurationError::new(
                    text,
                    "missing unit (ns, us, ms, s, m, h or d)",
                ));
            }
            _ => {
                return Err(DurationError::new(
                    text,
                    "unknown unit (ns, us, ms, s, m, h or d)",
                ));
            }
        };
        let nanos =
            scaled(num, nanos_per_unit).ok_or(DurationError::new(text, "invalid number"))?;
        let part =
            nanos_to_duration(nanos).ok_or(DurationError::new(text, "duration too large"))?;
        total = total
            .checked_add(part)
            .ok_or(DurationError::new(text, "duration too large"))?;
        rest = next;
    }
    Ok(total)
}

/// `num` (digits with at most one `.`) times `unit` nanoseconds, truncated to whole
/// nanoseconds; `None` for a malformed number or an overflow.
fn scaled(num: &str, unit: u128) -> Option<u128> {
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return None;
    }
    let mut value: u128 = 0;
    for d in int.bytes() {
        value = value.checked_mul(10)?.checked_add(u128::from(d - b'0'))?;
    }
    let mut nanos = value.checked_mul(unit)?;
    let mut scale = unit;
    for d in frac.bytes().take(30) {
        scale /= 10;
        nanos = nanos.checked_add(u128::from(d - b'0').checked_mul(scale)?)?;
    }
    Some(nanos)
}

fn nanos_to_duration(nanos: u128) -> Option<Duration> {
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    // The remainder is below 1e9, so it fits a u32.
    let sub = u32::try_from(nanos % 1_000_000_000).ok()?;
    Some(Duration::new(secs, sub))
}

/// Formats a duration the way [`parse`] reads it, in the largest unit that is exact.
pub(crate) fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    for (unit, per) in [
        ("h", 3_600_000_000_000u128),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
    ] {
        if nanos.is_multiple_of(per) {
            return format!("{}{unit}", nanos / per);
        }
    }
    format!("{nanos}ns")
}

/// A duration that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    text: String,
    reason: &'static str,
}

impl DurationError {
    fn new(text: &str, reason: &'static str) -> DurationError {
        DurationError {
            text: text.chars().take(64).collect(),
            reason,
        }
    }
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid duration {:?}: {} (write it like \"250ms\", \"10s\" or \"1m30s\")",
            self.text, self.reason
        )
    }
}

impl std::error::Error for DurationError {}

/// Serde support for `Duration` fields as human strings.
pub(crate) mod serde_human {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse(&text).map_err(serde::de::Error::custom)
    }

    /// The same for `Option<Duration>`, where `"off"` or a missing field is `None`.
    pub(crate) mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        pub(crate) fn serialize<S: Serializer>(
            d: &Option<Duration>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_str(&super::super::format(*d)),
                None => s.serialize_str("off"),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Duration>, D::Error> {
            let text = String::deserialize(d)?;
            if text.trim().eq_ignore_ascii_case("off") {
                return Ok(None);
            }
            super::super::parse(&text)
                .map(Some)
                .map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_common_forms() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse(" 10s "), Ok(Duration::from_secs(10)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("15us"), Ok(Duration::from_micros(15)));
    }

    #[test]
    fn rejects_with_reasons() {
        assert!(parse("").unwrap_err().to_string().contains("empty"));
        assert!(
            parse("10")
                .unwrap_err()
                .to_string()
                .contains("missing unit")
        );
        assert!(
            parse("10 parsecs")
                .unwrap_err()
                .to_string()
                .contains("unknown unit")
        );
        assert!(
            parse("ms")
                .unwrap_err()
                .to_string()
                .contains("expected a number")
        );
        assert!(parse("1.2.3s").is_err());
        assert!(parse("99999999999999999999999999999999999d").is_err());
        assert!(parse("-5s").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = parse(&s);
        }

        #[test]
        fn format_then_parse_round_trips(nanos in any::<u64>()) {
            let d = Duration::from_nanos(nanos);
            prop_assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
