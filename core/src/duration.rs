//! Durations as every setting takes them: one syntax (`500ms`, `5s`, `30d`), at most
//! [`MAX_DURATION`], refused where they enter and never wrapped.

use std::time::Duration;

use crate::error::{Error, Result};

/// The longest duration any setting accepts: 36500 days (100 years). Longer ones are
/// refused where they enter, never wrapped: a TTL of a million weeks once made every row
/// read as expired on MySQL (its `DATETIME` overflowed) and every read an error on
/// PostgreSQL.
pub const MAX_DURATION: Duration = Duration::from_secs(36_500 * 86_400);

/// A duration written as a number and a unit: `500ms`, `90s`, `45m`, `12h`, `30d`, `2w`,
/// at most [`MAX_DURATION`] (`36500d`).
///
/// ```
/// use std::time::Duration;
/// use fsmstore_core::parse_duration;
/// assert_eq!(parse_duration("30d")?, Duration::from_secs(30 * 86_400));
/// assert!(parse_duration("36501d").is_err());
/// assert!(parse_duration("18446744073709551615ms").is_err());
/// # Ok::<(), fsmstore_core::Error>(())
/// ```
///
/// # Errors
/// [`Error::Config`] naming what is wrong, and the largest accepted value for one that is
/// too long.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let too_long = || {
        Error::Config(format!(
            "{text:?} is longer than the largest accepted duration, 36500d (100 years)"
        ))
    };
    let millis = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        _ if number.is_empty() || unit.is_empty() => {
            return Err(Error::Config(format!(
                "{text:?}: expected a number and a unit, like 30m"
            )))
        }
        _ => {
            return Err(Error::Config(format!(
                "{text:?}: the unit must be ms, s, m, h, d or w"
            )))
        }
    };
    if number.is_empty() {
        return Err(Error::Config(format!(
            "{text:?}: expected a number and a unit, like 30m"
        )));
    }
    // All digits: a parse failure is a number past u64, too long either way.
    let number: u64 = number.parse().map_err(|_| too_long())?;
    let duration = number
        .checked_mul(millis)
        .map(Duration::from_millis)
        .ok_or_else(too_long)?;
    if duration > MAX_DURATION {
        return Err(too_long());
    }
    Ok(duration)
}

/// `duration` as [`parse_duration`] reads it, in the largest unit up to days that divides
/// it exactly: `30d`, `7d`, `90m`, `1500ms` (never `2592000s`; days, not weeks, as TTLs and
/// ages are usually written).
///
/// ```
/// use std::time::Duration;
/// use fsmstore_core::format_duration;
/// assert_eq!(format_duration(Duration::from_secs(30 * 86_400)), "30d");
/// assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
/// assert_eq!(format_duration(Duration::from_secs(14 * 86_400)), "14d");
/// ```
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if millis % size == 0 {
            return format!("{}{unit}", millis / size);
        }
    }
    format!("{millis}ms")
}

/// A duration by URL parameter `name`: `500ms`, `5s`, `30d` (see [`parse_duration`]).
///
/// # Errors
/// [`Error::Config`] naming the parameter.
pub fn named_duration(name: &str, value: &str) -> Result<Duration> {
    parse_duration(value).map_err(|err| match err {
        Error::Config(why) => Error::Config(format!("URL parameter {name}: {why}")),
        other => other,
    })
}

/// [`named_duration`], or a bare number of seconds (libpq's `connect_timeout`).
///
/// # Errors
/// As [`named_duration`].
pub fn parse_duration_or_seconds(name: &str, value: &str) -> Result<Duration> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return named_duration(name, &format!("{value}s"));
    }
    named_duration(name, value)
}

/// A duration given in whole milliseconds by URL parameter `name`, at most `max`.
///
/// # Errors
/// [`Error::Config`] naming the parameter, and the largest accepted value for one that is
/// too long.
pub fn parse_millis(name: &str, value: &str, max: Duration) -> Result<Duration> {
    let too_long = || {
        Error::Config(format!(
            "URL parameter {name}={value} is longer than the largest accepted, {} ms",
            max.as_millis()
        ))
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Config(format!(
            "URL parameter {name}={value:?} is not a whole number of milliseconds"
        )));
    }
    let ms: u64 = value.parse().map_err(|_| too_long())?;
    let duration = Duration::from_millis(ms);
    if duration > max {
        return Err(too_long());
    }
    Ok(duration)
}

/// Checks a duration set in code: at most `max`.
///
/// # Errors
/// [`Error::Config`] naming the setting and the largest accepted value.
pub fn check_duration(name: &str, value: Duration, max: Duration) -> Result<Duration> {
    if value > max {
        return Err(Error::Config(format!(
            "{name} of {value:?} is longer than the largest accepted, {max:?}"
        )));
    }
    Ok(value)
}
