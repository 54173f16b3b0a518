//! Durations on the command line: `250ms`, `2s`, `1.5s`, `1m30s`.
//!
//! flext-api parses the same syntax in its configuration files, but keeps the parser private,
//! so the CLI carries this small one (same units, same rules).

use std::fmt;
use std::time::Duration;

/// Nanoseconds in one of each unit the parser knows.
const UNITS: [(&str, u128); 7] = [
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DurationError {
    text: String,
    why: &'static str,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid duration {:?}: {} (write it like 250ms, 2s, 1.5s or 1m30s)",
            self.text, self.why
        )
    }
}

impl std::error::Error for DurationError {}

/// Parses one or more `<number><unit>` parts (`ns`, `us`, `ms`, `s`, `m`, `h`, `d`); a bare
/// `0` is zero. Never panics; overflows are errors.
pub(crate) fn parse(text: &str) -> Result<Duration, DurationError> {
    let err = |why| DurationError {
        text: text.to_string(),
        why,
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(err("expected a number"));
        }
        let (num, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(err("missing unit"));
        }
        let per_unit = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, n)| *n)
            .ok_or_else(|| err("unknown unit (ns, us, ms, s, m, h or d)"))?;
        let nanos = scaled(num, per_unit).ok_or_else(|| err("invalid number"))?;
        total = total.checked_add(nanos).ok_or_else(|| err("too large"))?;
        rest = next;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| err("too large"))?;
    let nanos = u32::try_from(total % 1_000_000_000).map_err(|_| err("too large"))?;
    Ok(Duration::new(secs, nanos))
}

/// `num` (digits with at most one `.`) times `unit` nanoseconds, truncated; `None` when
/// malformed or too large.
fn scaled(num: &str, unit: u128) -> Option<u128> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') || int.len() > 30 {
        return None;
    }
    let whole = if int.is_empty() {
        0
    } else {
        int.parse::<u128>().ok()?
    };
    let mut value = whole.checked_mul(unit)?;
    let mut scale = unit;
    for digit in frac.bytes().take(18) {
        scale /= 10;
        value = value.checked_add(u128::from(digit - b'0') * scale)?;
    }
    Some(value)
}

/// A short human form: `850us`, `12.3ms`, `2.50s`, `1m30s`.
pub(crate) fn format(d: Duration) -> String {
    let micros = d.as_micros();
    if micros < 1_000 {
        format!("{micros}us")
    } else if micros < 1_000_000 {
        format!("{:.1}ms", d.as_secs_f64() * 1e3)
    } else if d.as_secs() < 60 {
        format!("{:.2}s", d.as_secs_f64())
    } else {
        format!("{}m{}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// Milliseconds as a float, for reports and JSON.
pub(crate) fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse(" 10us "), Ok(Duration::from_micros(10)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse(".5s"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in [
            "",
            "2",
            "s",
            "2x",
            "1..2s",
            "ms5",
            "-1s",
            "99999999999999999999999999999999d",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.to_string().contains("invalid duration"), "{bad}: {e}");
        }
    }

    #[test]
    fn formats_by_magnitude() {
        assert_eq!(format(Duration::from_micros(850)), "850us");
        assert_eq!(format(Duration::from_micros(12_340)), "12.3ms");
        assert_eq!(format(Duration::from_millis(2_500)), "2.50s");
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
    }
}
