//! Durations on the command line: `250ms`, `2s`, `1.5s`, `1m30s`, read by flext-api's parser
//! (the syntax of its configuration files), and their short human display.

use std::time::Duration;

/// Parses a command-line duration with flext-api's parser (the syntax of its config files).
pub(crate) fn parse(text: &str) -> Result<Duration, flext_api::DurationError> {
    flext_api::parse_duration(text)
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
    fn reads_the_config_syntax() {
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(
            parse("2")
                .unwrap_err()
                .to_string()
                .contains("invalid duration")
        );
    }

    #[test]
    fn formats_by_magnitude() {
        assert_eq!(format(Duration::from_micros(850)), "850us");
        assert_eq!(format(Duration::from_micros(12_340)), "12.3ms");
        assert_eq!(format(Duration::from_millis(2_500)), "2.50s");
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
    }
}
