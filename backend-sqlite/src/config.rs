//! Where the database is and how to open it.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fsmstore_core::{Error, KeyBuilder, Result, SchemaPolicy, StorageOptions};

/// Where the SQLite database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SqliteLocation {
    /// A file (created if missing).
    File(PathBuf),
    /// A private in-memory database, gone when the storage closes.
    Memory,
    /// A named in-memory database shared by every connection of this process that opens
    /// the same name; gone when the last connection closes.
    SharedMemory(String),
}

/// Settings of a SQLite storage.
///
/// ```
/// use fsmstore_sqlite::{SqliteConfig, SqliteLocation};
/// let config = SqliteConfig::from_url("sqlite://bot.db?table=dev_fsm&readers=2").unwrap();
/// assert_eq!(config.location, SqliteLocation::File("bot.db".into()));
/// assert_eq!(config.options.table.as_str(), "dev_fsm");
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct SqliteConfig {
    /// The database.
    pub location: SqliteLocation,
    /// Reader connections beside the one writer (files only; in-memory databases use the
    /// writer for reads too). Default 4.
    pub readers: usize,
    /// How long a connection waits for a lock held by another connection. Default 5 s.
    pub busy_timeout: Duration,
    /// Tables, key layout, schema policy, limits.
    pub options: StorageOptions,
}

impl fmt::Debug for SqliteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteConfig")
            .field("location", &self.location)
            .field("readers", &self.readers)
            .field("busy_timeout", &self.busy_timeout)
            .field("options", &self.options)
            .finish()
    }
}

impl SqliteConfig {
    fn new(location: SqliteLocation) -> Self {
        SqliteConfig {
            location,
            readers: 4,
            busy_timeout: Duration::from_secs(5),
            options: StorageOptions::default(),
        }
    }

    /// A database file.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self::new(SqliteLocation::File(path.into()))
    }

    /// A private in-memory database.
    pub fn memory() -> Self {
        Self::new(SqliteLocation::Memory)
    }

    /// A named in-memory database shared within this process.
    pub fn shared_memory(name: impl Into<String>) -> Self {
        Self::new(SqliteLocation::SharedMemory(name.into()))
    }

    /// Parses `sqlite://path/to/file.db`, `sqlite:///absolute/path.db`, `sqlite::memory:`
    /// or `sqlite://:memory:`, with optional query parameters `table`, `version_table`,
    /// `readers`, `busy_timeout_ms` and `schema` (`verify`, `upgrade`, `trust`).
    ///
    /// # Errors
    /// [`Error::Config`] for another scheme or a bad parameter; [`Error::InvalidTableName`].
    pub fn from_url(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| Error::Config(format!("not a sqlite URL: {url:?}")))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut config = match path {
            ":memory:" => Self::memory(),
            "" => return Err(Error::Config(format!("sqlite URL without a path: {url:?}"))),
            path => Self::file(path),
        };
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            config = config.apply_parameter(name, value)?;
        }
        Ok(config)
    }

    fn apply_parameter(mut self, name: &str, value: &str) -> Result<Self> {
        if self.options.set_url_parameter(name, value)? {
            return Ok(self);
        }
        let number = |value: &str| {
            value.parse::<u64>().map_err(|_| {
                Error::Config(format!(
                    "sqlite URL parameter {name}={value:?} is not a number"
                ))
            })
        };
        match name {
            "readers" => self.readers = number(value)? as usize,
            "busy_timeout_ms" => self.busy_timeout = Duration::from_millis(number(value)?),
            other => {
                return Err(Error::Config(format!(
                    "unknown sqlite URL parameter {other:?} (known: table, version_table, readers, busy_timeout_ms, schema)"
                )))
            }
        }
        Ok(self)
    }

    /// Sets the FSM table.
    ///
    /// # Errors
    /// [`Error::InvalidTableName`].
    pub fn table(mut self, name: &str) -> Result<Self> {
        self.options = self.options.table(name)?;
        Ok(self)
    }

    /// Sets the version table.
    ///
    /// # Errors
    /// [`Error::InvalidTableName`].
    pub fn version_table(mut self, name: &str) -> Result<Self> {
        self.options = self.options.version_table(name)?;
        Ok(self)
    }

    /// Sets what opening does about the schema.
    pub fn schema(mut self, policy: SchemaPolicy) -> Self {
        self.options.schema = policy;
        self
    }

    /// Sets the key builder.
    pub fn key_builder(mut self, builder: impl KeyBuilder + 'static) -> Self {
        self.options.key_builder = Arc::new(builder);
        self
    }

    /// Sets the number of reader connections.
    pub fn readers(mut self, readers: usize) -> Self {
        self.readers = readers;
        self
    }

    /// Sets the busy timeout.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Replaces the shared options.
    pub fn options(mut self, options: StorageOptions) -> Self {
        self.options = options;
        self
    }

    /// The path or URI rusqlite opens, and whether the database is a file.
    pub(crate) fn open_target(&self) -> (String, bool) {
        static PRIVATE: AtomicU64 = AtomicU64::new(0);
        match &self.location {
            SqliteLocation::File(path) => (path.to_string_lossy().into_owned(), true),
            SqliteLocation::Memory => {
                let n = PRIVATE.fetch_add(1, Ordering::Relaxed);
                (
                    format!(
                        "file:/fsmstore-private-{}-{n}?vfs=memdb",
                        std::process::id()
                    ),
                    false,
                )
            }
            SqliteLocation::SharedMemory(name) => (format!("file:/{name}?vfs=memdb"), false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let memory = SqliteConfig::from_url("sqlite::memory:").unwrap();
        assert_eq!(memory.location, SqliteLocation::Memory);
        assert_eq!(
            SqliteConfig::from_url("sqlite://:memory:")
                .unwrap()
                .location,
            SqliteLocation::Memory
        );
        let abs = SqliteConfig::from_url("sqlite:///var/lib/bot/fsm.db").unwrap();
        assert_eq!(
            abs.location,
            SqliteLocation::File("/var/lib/bot/fsm.db".into())
        );
        let rel = SqliteConfig::from_url("sqlite://data/fsm.db?schema=upgrade&busy_timeout_ms=250")
            .unwrap();
        assert_eq!(rel.location, SqliteLocation::File("data/fsm.db".into()));
        assert_eq!(rel.options.schema, SchemaPolicy::Upgrade);
        assert_eq!(rel.busy_timeout, Duration::from_millis(250));
    }

    #[test]
    fn bad_urls_are_config_errors() {
        for url in [
            "postgres://x",
            "sqlite://",
            "sqlite://a.db?nope=1",
            "sqlite://a.db?readers=x",
            "sqlite://a.db?schema=maybe",
        ] {
            assert!(
                matches!(SqliteConfig::from_url(url), Err(Error::Config(_))),
                "{url}"
            );
        }
        assert!(matches!(
            SqliteConfig::from_url("sqlite://a.db?table=bad-name"),
            Err(Error::InvalidTableName { .. })
        ));
    }

    #[test]
    fn private_memory_databases_are_distinct() {
        let config = SqliteConfig::memory();
        assert_ne!(config.open_target().0, config.open_target().0);
    }
}
