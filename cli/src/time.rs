//! Durations on the command line and timestamps in output.

use std::time::Duration;

/// Parses `90s`, `45m`, `12h`, `30d`, `2w`.
pub(crate) fn parse_age(text: &str) -> Result<Duration, String> {
    fsmstore::core::parse_duration(text).map_err(|err| match err {
        fsmstore::Error::Config(text) => text,
        other => other.to_string(),
    })
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS.mmm UTC`.
pub(crate) fn format_ms(ms: i64) -> String {
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000,
    );
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}.{milli:03} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_age("90s"), Ok(Duration::from_secs(90)));
        assert!(parse_age("30").is_err() && parse_age("d").is_err() && parse_age("3y").is_err());
    }

    #[test]
    fn timestamps() {
        assert_eq!(format_ms(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(format_ms(1_764_028_800_123), "2025-11-25 00:00:00.123 UTC");
        assert_eq!(format_ms(951_782_400_000), "2000-02-29 00:00:00.000 UTC");
    }
}
