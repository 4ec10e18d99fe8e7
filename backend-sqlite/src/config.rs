//! Where the database is and how to open it.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fsmstore_core::{check_duration, DatabaseUrl, Error, Result, StorageOptions};

/// The longest busy timeout SQLite can take: `i32::MAX` milliseconds (about 24.8 days).
/// rusqlite panics past it, so a longer one is refused where it enters.
pub const MAX_BUSY_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// The URL parameters only SQLite reads.
const SQLITE_PARAMETERS: [&str; 4] = ["busy_timeout", "busy_timeout_ms", "mode", "synchronous"];

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

/// How a SQLite file is opened (URL parameter `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SqliteMode {
    /// Read and write; create the file if it is missing (`rwc`, the default).
    #[default]
    ReadWriteCreate,
    /// Read and write an existing file; a missing one is an error (`rw`).
    ReadWrite,
    /// Read an existing file only (`ro`): for inspection, also where the file is not
    /// writable. Writes fail with a permanent error. (A WAL database in a folder that is not
    /// writable also needs its `-wal` and `-shm` files present, as SQLite documents.)
    ReadOnly,
}

/// How durable a commit is on a file (URL parameter `synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SqliteSync {
    /// `NORMAL` (the default): with WAL, a commit survives an application crash; the last
    /// commits may be lost on power loss or an OS crash. The database never corrupts.
    #[default]
    Normal,
    /// `FULL`: every acknowledged commit also survives power loss, at the price of an
    /// fsync per commit.
    Full,
}

/// Settings of a SQLite storage.
///
/// ```
/// use fsmstore_sqlite::{SqliteConfig, SqliteLocation};
/// let config = SqliteConfig::from_url("sqlite://bot.db?table=dev_fsm&pool_max=3").unwrap();
/// assert_eq!(config.location, SqliteLocation::File("bot.db".into()));
/// assert_eq!(config.options.table.as_str(), "dev_fsm");
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct SqliteConfig {
    /// The database.
    pub location: SqliteLocation,
    /// How long a connection waits for a lock held by another connection. Default 5 s.
    pub busy_timeout: Duration,
    /// Whether the file may be created or written (`mode`).
    pub mode: SqliteMode,
    /// How durable a commit is (`synchronous`).
    pub synchronous: SqliteSync,
    /// The options every backend shares. `pool_max` counts the one writer and the
    /// readers beside it (files only; in-memory databases use the writer for reads too).
    pub options: StorageOptions,
}

impl fmt::Debug for SqliteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteConfig")
            .field("location", &self.location)
            .field("busy_timeout", &self.busy_timeout)
            .field("mode", &self.mode)
            .field("synchronous", &self.synchronous)
            .field("options", &self.options)
            .finish()
    }
}

impl SqliteConfig {
    fn new(location: SqliteLocation) -> Self {
        SqliteConfig {
            location,
            busy_timeout: Duration::from_secs(5),
            mode: SqliteMode::default(),
            synchronous: SqliteSync::default(),
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
    /// or `sqlite://:memory:` (the query starts at the first `?`; the path is
    /// percent-decoded, so `%3F` is a `?` in a file name, `%25` a `%`), with the shared query parameters
    /// ([`SHARED_URL_PARAMETERS`](fsmstore_core::SHARED_URL_PARAMETERS)) and SQLite's own
    /// `busy_timeout_ms`, `mode` (`rwc`, `rw`, `ro`: [`SqliteMode`]) and `synchronous`
    /// (`normal`, `full`: [`SqliteSync`]).
    ///
    /// # Errors
    /// [`Error::Config`] for another scheme, an unknown parameter or a bad value, naming
    /// it; [`Error::InvalidTableName`].
    pub fn from_url(url: &str) -> Result<Self> {
        let mut url = DatabaseUrl::parse_file(url)?;
        if url.scheme() != "sqlite" {
            return Err(Error::Config(format!(
                "not a sqlite URL (scheme {:?})",
                url.scheme()
            )));
        }
        let path = url.file_path()?;
        let mut config = match path.as_str() {
            ":memory:" => Self::memory(),
            "" => return Err(Error::Config("sqlite URL without a path".to_owned())),
            path => Self::file(path),
        };
        if let Some(timeout) = url.take_duration(
            "busy_timeout",
            Some(("busy_timeout_ms", Duration::from_millis(1))),
            MAX_BUSY_TIMEOUT,
        )? {
            config.busy_timeout = timeout;
        }
        config.mode = match url.take("mode").as_deref() {
            None | Some("rwc") => SqliteMode::ReadWriteCreate,
            Some("rw") => SqliteMode::ReadWrite,
            Some("ro") => SqliteMode::ReadOnly,
            Some(other) => {
                return Err(Error::Config(format!(
                    "URL parameter mode={other:?}: use rwc (default), rw or ro"
                )))
            }
        };
        config.synchronous = match url.take("synchronous").as_deref() {
            None | Some("normal") => SqliteSync::Normal,
            Some("full") => SqliteSync::Full,
            Some(other) => {
                return Err(Error::Config(format!(
                    "URL parameter synchronous={other:?}: use normal (default) or full"
                )))
            }
        };
        config.options = url.finish("sqlite", &SQLITE_PARAMETERS)?;
        Ok(config)
    }

    /// Joins `options` set in code with those the URL set (see
    /// [`StorageOptions::merge`]).
    ///
    /// # Errors
    /// [`Error::Config`] for a setting the URL and `options` give differently.
    pub fn options(mut self, options: StorageOptions) -> Result<Self> {
        self.options = self.options.merge(options)?;
        Ok(self)
    }

    /// Sets how long a connection waits for a lock held by another connection.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Checks the settings made in code; `open` calls it.
    ///
    /// # Errors
    /// [`Error::Config`] for a busy timeout past [`MAX_BUSY_TIMEOUT`], and as
    /// [`StorageOptions::check`].
    pub(crate) fn check(&self) -> Result<()> {
        check_duration("busy_timeout", self.busy_timeout, MAX_BUSY_TIMEOUT)?;
        self.options.check()
    }

    /// Reader connections beside the writer.
    pub(crate) fn readers(&self) -> usize {
        self.options.pool_max.saturating_sub(1) as usize
    }

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
        let rel = SqliteConfig::from_url(
            "sqlite://data/fsm.db?schema=upgrade&busy_timeout_ms=250&pool_max=3",
        )
        .unwrap();
        assert_eq!(rel.location, SqliteLocation::File("data/fsm.db".into()));
        assert_eq!(rel.options.schema, fsmstore_core::SchemaPolicy::Upgrade);
        assert_eq!(rel.busy_timeout, Duration::from_millis(250));
        assert_eq!(rel.readers(), 2);
        let max = SqliteConfig::from_url("sqlite://a.db?busy_timeout_ms=2147483647").unwrap();
        assert_eq!(max.busy_timeout, MAX_BUSY_TIMEOUT);
        let named = SqliteConfig::from_url("sqlite://a.db?busy_timeout=2s").unwrap();
        assert_eq!(named.busy_timeout, Duration::from_secs(2));
        assert!(SqliteConfig::from_url("sqlite://a.db?busy_timeout=2s&busy_timeout_ms=5").is_err());
        assert!(SqliteConfig::from_url("sqlite://a.db?busy_timeout=25d").is_err());
        let spaced = SqliteConfig::from_url("sqlite://my%20bot%3F.db?table=t").unwrap();
        assert_eq!(spaced.location, SqliteLocation::File("my bot?.db".into()));
        assert!(SqliteConfig::file("a.db")
            .busy_timeout(Duration::MAX)
            .check()
            .is_err());
    }

    #[test]
    fn bad_urls_are_config_errors() {
        for url in [
            "postgres://x",
            "sqlite://",
            "sqlite://a.db?nope=1",
            "sqlite://a.db?busy_timeout_ms=x",
            "sqlite://a.db?readers=2",
            "sqlite://a.db?schema=maybe",
            // rusqlite panics on a busy timeout past i32::MAX ms: refused here instead.
            "sqlite://a.db?busy_timeout_ms=2147483648",
            "sqlite://a.db?busy_timeout_ms=-1",
            "sqlite://a.db#frag",
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
