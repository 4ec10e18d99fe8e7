//! The URL parameters every backend shares, applied to [`StorageOptions`].

use super::{Setting, StorageOptions};
use crate::duration::{
    named_duration, parse_duration, parse_duration_or_seconds, parse_millis, MAX_DURATION,
};
use crate::error::{Error, Result};
use crate::retry::RetryPolicy;
use crate::table_name::TableName;

/// The most [`StorageOptions::write_batches`] a URL may ask for.
const MAX_WRITE_BATCHES: u32 = 1024;

/// The URL parameters every backend understands (parsed by [`DatabaseUrl`](crate::DatabaseUrl)).
pub const SHARED_URL_PARAMETERS: [&str; 16] = [
    "call_timeout",
    "call_timeout_ms",
    "connect_timeout",
    "isolation_timeout",
    "table",
    "version_table",
    "schema",
    "pool_max",
    "lock_pool_max",
    "connect_timeout_ms",
    "max_data_bytes",
    "retry_attempts",
    "isolation_timeout_ms",
    "ttl",
    "layout",
    "write_batches",
];

impl StorageOptions {
    /// Applies URL query parameter `name=value` if it is one of
    /// [`SHARED_URL_PARAMETERS`]; returns whether it was.
    ///
    /// # Errors
    /// [`Error::InvalidTableName`], or [`Error::Config`] naming the parameter for a bad
    /// value.
    pub fn set_url_parameter(&mut self, name: &str, value: &str) -> Result<bool> {
        let number = |value: &str| {
            value.parse::<u64>().map_err(|_| {
                Error::Config(format!(
                    "URL parameter {name}={value:?} is not a whole number"
                ))
            })
        };
        match name {
            "table" => self.table = TableName::new(value)?,
            "version_table" => self.version_table = TableName::new(value)?,
            "schema" => self.schema = value.parse()?,
            "layout" => self.layout = value.parse()?,
            "pool_max" => {
                self.pool_max = u32::try_from(number(value)?)
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        Error::Config(format!("URL parameter pool_max={value} must be 1 or more"))
                    })?;
            }
            "lock_pool_max" => {
                self.lock_pool_max = Some(
                    u32::try_from(number(value)?)
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| {
                            Error::Config(format!(
                                "URL parameter lock_pool_max={value} must be 1 or more"
                            ))
                        })?,
                );
            }
            // Every time parameter takes a duration (`500ms`, `5s`, `30d`); the older names
            // in milliseconds stay as aliases. `connect_timeout` also takes libpq's bare
            // seconds.
            "connect_timeout" => self.connect_timeout = parse_duration_or_seconds(name, value)?,
            "connect_timeout_ms" => self.connect_timeout = parse_millis(name, value, MAX_DURATION)?,
            "call_timeout" => self.call_timeout = named_duration(name, value)?,
            "call_timeout_ms" => self.call_timeout = parse_millis(name, value, MAX_DURATION)?,
            "isolation_timeout" => self.isolation_timeout = named_duration(name, value)?,
            "isolation_timeout_ms" => {
                self.isolation_timeout = parse_millis(name, value, MAX_DURATION)?
            }
            "ttl" => {
                let ttl = parse_duration(value)?;
                if ttl.is_zero() {
                    return Err(Error::Config("ttl must be longer than 0".to_owned()));
                }
                self.ttl = Some(ttl);
            }
            "retry_attempts" => {
                let attempts = u32::try_from(number(value)?)
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        Error::Config(format!(
                            "URL parameter retry_attempts={value} must be 1 or more"
                        ))
                    })?;
                self.retry =
                    RetryPolicy::new(attempts, self.retry.base_delay, self.retry.max_delay);
            }
            "write_batches" => {
                self.write_batches = u32::try_from(number(value)?)
                    .ok()
                    .filter(|n| *n <= MAX_WRITE_BATCHES)
                    .ok_or_else(|| {
                        Error::Config(format!(
                            "URL parameter write_batches={value} must be 0 (off) to {MAX_WRITE_BATCHES}"
                        ))
                    })?;
            }
            "max_data_bytes" => {
                self.max_data_bytes = usize::try_from(number(value)?).map_err(|_| {
                    Error::Config(format!("URL parameter max_data_bytes={value} is too large"))
                })?;
            }
            _ => return Ok(false),
        }
        let setting = match name {
            "table" => Setting::Table,
            "version_table" => Setting::VersionTable,
            "schema" => Setting::Schema,
            "layout" => Setting::Layout,
            "pool_max" => Setting::PoolMax,
            "lock_pool_max" => Setting::LockPoolMax,
            "connect_timeout" | "connect_timeout_ms" => Setting::ConnectTimeout,
            "call_timeout" | "call_timeout_ms" => Setting::CallTimeout,
            "isolation_timeout" | "isolation_timeout_ms" => Setting::IsolationTimeout,
            "ttl" => Setting::Ttl,
            "retry_attempts" => Setting::Retry,
            "write_batches" => Setting::WriteBatches,
            _ => Setting::MaxDataBytes,
        };
        // A URL naming one setting twice (`call_timeout=5s&call_timeout_ms=10`): refused,
        // as a parameter given twice is.
        if self.set & setting as u16 != 0 {
            return Err(Error::Config(format!(
                "URL parameter {name} sets {setting:?} a second time: give it once"
            )));
        }
        self.set |= setting as u16;
        Ok(true)
    }
}
