//! What was given: a setting set by a setter or a URL parameter (even to its default
//! value) is given, and two sets of options join by that, never by "equal to the default".

use super::{Setting, StorageOptions};
use crate::error::{Error, Result};
use crate::retry::RetryPolicy;

impl StorageOptions {
    /// Whether the retry policy was given (a setter or `retry_attempts`), even as the
    /// default: a backend that picks its own default (Galera) keeps a given one.
    pub fn retry_is_set(&self) -> bool {
        self.is_set(Setting::Retry, &self.retry, &RetryPolicy::default())
    }

    /// Refuses each setting of `names` that was given (in the URL or in code, even to its
    /// default value): what a backend would ignore is an error naming it, never silently
    /// dropped. A backend without SQL migrations refuses
    /// `["version_table", "schema", "migrations"]`.
    ///
    /// ```
    /// use fsmstore_core::{SchemaPolicy, StorageOptions};
    /// let schema_less = ["version_table", "schema", "migrations"];
    /// assert!(StorageOptions::default().unsupported("redis", &schema_less).is_ok());
    /// let err = StorageOptions::default()
    ///     .schema(SchemaPolicy::Verify)
    ///     .unsupported("redis", &schema_less)
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("schema"), "{err}");
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] naming the first such setting; an unknown name in `names` (a bug of
    /// the backend) is refused too.
    pub fn unsupported(&self, backend: &str, names: &[&str]) -> Result<()> {
        for name in names {
            if self.given(name)? {
                return Err(Error::Config(format!(
                    "the {backend} backend has no use for `{name}`: remove it from the URL and the options"
                )));
            }
        }
        Ok(())
    }

    /// Whether setting `name` (its URL parameter's name) was given, in the URL or in
    /// code, even as its default value.
    ///
    /// # Errors
    /// [`Error::Config`] for a name this can not tell (a bug of the caller).
    pub fn given(&self, name: &str) -> Result<bool> {
        let defaults = StorageOptions::default();
        Ok(match name {
            "table" => self.is_set(Setting::Table, &self.table, &defaults.table),
            "version_table" => self.is_set(
                Setting::VersionTable,
                &self.version_table,
                &defaults.version_table,
            ),
            "schema" => self.is_set(Setting::Schema, &self.schema, &defaults.schema),
            "layout" => self.is_set(Setting::Layout, &self.layout, &defaults.layout),
            "migrations" => self.set & Setting::Migrations as u16 != 0,
            "ttl" => self.is_set(Setting::Ttl, &self.ttl, &defaults.ttl),
            "pool_max" => self.is_set(Setting::PoolMax, &self.pool_max, &defaults.pool_max),
            "lock_pool_max" => self.is_set(
                Setting::LockPoolMax,
                &self.lock_pool_max,
                &defaults.lock_pool_max,
            ),
            other => {
                return Err(Error::Config(format!(
                    "no setting named {other:?} to look at"
                )))
            }
        })
    }

    /// Joins options parsed from a URL (`self`) with options set in code.
    ///
    /// The one precedence: a setting given on one side only is taken from that side; given
    /// on both sides, the two must be equal; given on neither, it keeps its default. "Given"
    /// means set by a setter or a URL parameter, *even to the default value*: so
    /// `open_with("sqlite://x.db?schema=upgrade", StorageOptions::default().schema(SchemaPolicy::Verify))`
    /// is a conflict, never a silent `Upgrade`. The key builder and custom migrations come
    /// from code (a URL can not set them).
    ///
    /// ```
    /// use fsmstore_core::{DatabaseUrl, SchemaPolicy, StorageOptions};
    /// let url = DatabaseUrl::parse_file("sqlite://x.db?schema=upgrade")?.options().clone();
    /// let err = url.merge(StorageOptions::default().schema(SchemaPolicy::Verify)).unwrap_err();
    /// assert!(err.to_string().contains("schema"));
    /// # Ok::<(), fsmstore_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] naming the first setting the two sides give differently.
    pub fn merge(self, code: StorageOptions) -> Result<StorageOptions> {
        let defaults = StorageOptions::default();
        let (url, mut code) = (self, code);
        macro_rules! pick {
            ($field:ident, $setting:expr, $name:literal) => {{
                let url_set = url.is_set($setting, &url.$field, &defaults.$field);
                let code_set = code.is_set($setting, &code.$field, &defaults.$field);
                match (url_set, code_set) {
                    (true, true) if url.$field != code.$field => {
                        return Err(Error::Config(format!(
                            "{} is {:?} in the URL and {:?} in the options: set it in one place",
                            $name, url.$field, code.$field
                        )))
                    }
                    (true, false) => url.$field.clone(),
                    _ => code.$field.clone(),
                }
            }};
        }
        code.table = pick!(table, Setting::Table, "table");
        code.version_table = pick!(version_table, Setting::VersionTable, "version_table");
        code.schema = pick!(schema, Setting::Schema, "schema");
        code.max_data_bytes = pick!(max_data_bytes, Setting::MaxDataBytes, "max_data_bytes");
        code.pool_max = pick!(pool_max, Setting::PoolMax, "pool_max");
        code.lock_pool_max = pick!(lock_pool_max, Setting::LockPoolMax, "lock_pool_max");
        code.connect_timeout = pick!(connect_timeout, Setting::ConnectTimeout, "connect_timeout");
        code.retry = pick!(retry, Setting::Retry, "retry");
        code.isolation_timeout = pick!(
            isolation_timeout,
            Setting::IsolationTimeout,
            "isolation_timeout"
        );
        code.ttl = pick!(ttl, Setting::Ttl, "ttl");
        code.layout = pick!(layout, Setting::Layout, "layout");
        code.call_timeout = pick!(call_timeout, Setting::CallTimeout, "call_timeout");
        code.write_batches = pick!(write_batches, Setting::WriteBatches, "write_batches");
        code.set |= url.set;
        Ok(code)
    }
}
