//! Options every backend shares: tables, key layout, schema policy, limits; their setters.
//! Applying URL parameters, joining URL and code, and checking are in the child modules.

mod settings;
mod url_parameters;
mod validation;

pub use url_parameters::SHARED_URL_PARAMETERS;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::key::{DefaultKeyBuilder, KeyBuilder};
use crate::layout::Layout;
use crate::migrations::MigrationSource;
use crate::retry::RetryPolicy;
use crate::table_name::TableName;

/// The largest data object, serialized, that a storage accepts by default: 8 MiB.
pub const DEFAULT_MAX_DATA_BYTES: usize = 8 * 1024 * 1024;

/// The most connections a storage opens by default, on every backend.
pub const DEFAULT_POOL_MAX: u32 = 10;

/// How long opening a connection, or waiting for a pooled one, may take by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What opening a storage does about the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SchemaPolicy {
    /// Refuse a schema that is not at head, with an error naming the command that fixes it.
    #[default]
    Verify,
    /// Upgrade to head first (`ensure_schema`), then open.
    Upgrade,
    /// Check nothing (the caller manages the schema and takes the risk).
    Trust,
}

impl std::str::FromStr for SchemaPolicy {
    type Err = Error;

    /// Parses `verify`, `upgrade` or `trust` (the `schema` URL parameter).
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "verify" => Ok(SchemaPolicy::Verify),
            "upgrade" => Ok(SchemaPolicy::Upgrade),
            "trust" => Ok(SchemaPolicy::Trust),
            other => Err(Error::Config(format!(
                "schema={other:?}: use verify, upgrade or trust"
            ))),
        }
    }
}

/// The options every backend shares, with the same types and defaults everywhere; each
/// backend's config adds only its own settings (TLS, search path, busy timeout, …).
///
/// | option | URL parameter | default |
/// |---|---|---|
/// | [`table`](StorageOptions::table) | `table` | `aiogram_fsm_data` |
/// | [`version_table`](StorageOptions::version_table) | `version_table` | `fsmstore_migrations` |
/// | [`schema`](StorageOptions::schema) | `schema` (`verify`, `upgrade`, `trust`) | `verify` |
/// | [`pool_max`](StorageOptions::pool_max) | `pool_max` | 10 |
/// | [`lock_pool_max`](StorageOptions::lock_pool_max) | `lock_pool_max` | `pool_max` |
/// | [`connect_timeout`](StorageOptions::connect_timeout) | `connect_timeout_ms` | 10 s |
/// | [`call_timeout`](StorageOptions::call_timeout) | `call_timeout_ms` | 30 s |
/// | [`max_data_bytes`](StorageOptions::max_data_bytes) | `max_data_bytes` | 8 MiB |
/// | [`retry`](StorageOptions::retry) | `retry_attempts` | 5 attempts, 5 ms to 500 ms ([`RetryPolicy`]) |
/// | [`ttl`](StorageOptions::ttl) | `ttl` (`30m`, `7d`) | none |
/// | [`layout`](StorageOptions::layout) | `layout` (`fsmstore`, `aiogram-sqlalchemy`) | `fsmstore` |
/// | [`write_batches`](StorageOptions::write_batches) | `write_batches` (`0`: off) | 2 |
/// | [`key_builder`](StorageOptions::key_builder) | — | aiogram's layout |
///
/// A setting given both in a URL and in code must agree: see [`StorageOptions::merge`].
///
/// ```
/// use fsmstore_core::{SchemaPolicy, StorageOptions};
/// let options = StorageOptions::default()
///     .table("dev_aiogram_fsm_data")?
///     .schema(SchemaPolicy::Upgrade)
///     .pool_max(4);
/// assert_eq!(options.pool_max, 4);
/// # Ok::<(), fsmstore_core::Error>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct StorageOptions {
    /// The FSM table (default `aiogram_fsm_data`).
    pub table: TableName,
    /// The version table (default `fsmstore_migrations`).
    pub version_table: TableName,
    /// Turns keys into row ids (default: aiogram's layout).
    pub key_builder: Arc<dyn KeyBuilder>,
    /// What to do about the schema when opening.
    pub schema: SchemaPolicy,
    /// The largest serialized data object accepted.
    pub max_data_bytes: usize,
    /// The most connections the storage opens (SQLite: one writer and `pool_max - 1`
    /// readers).
    pub pool_max: u32,
    /// The most connections holding per-key locks at once (PostgreSQL, MySQL: each held
    /// [`Isolation::lock`](crate::Isolation::lock) holds one; SQLite's and Redis' locks
    /// hold none). `None`: as many as [`StorageOptions::pool_max`].
    pub lock_pool_max: Option<u32>,
    /// How long opening a connection, or waiting for a pooled one, may take (PostgreSQL,
    /// MySQL; SQLite waits on no server and has `busy_timeout` instead).
    pub connect_timeout: Duration,
    /// How calls are run again after a conflict the database rolled back.
    pub retry: RetryPolicy,
    /// Migrations to run instead of the built-in ones (tests and extensions).
    pub migrations: Option<Arc<Vec<MigrationSource>>>,
    /// How long [`Isolation::lock`](crate::Isolation::lock) waits for a key's lock before
    /// [`Error::LockTimeout`] (default 30 s).
    pub isolation_timeout: Duration,
    /// Expiry: a row not written for longer than this reads as absent, and a write to it
    /// starts from empty (default: none, rows never expire).
    pub ttl: Option<Duration>,
    /// The table layout read and written (default: fsmstore's own; see [`Layout`]).
    pub layout: Layout,
    /// How long one call waits for the server's answer, on the client, whatever the
    /// server does (a host gone silent: packets dropped, nothing refused). Past it a read
    /// is a transient [`Error::Connection`], a write [`Error::OutcomeUnknown`], and the
    /// connection is closed (default 30 s; PostgreSQL and MySQL).
    pub call_timeout: Duration,
    /// Coalesced writes: how many writes (alone or batches) may run at once (PostgreSQL,
    /// MySQL, SQLite), at most `pool_max`. A write that finds fewer running runs alone, as
    /// its own statement; writes that arrive while that many run wait and go together, one
    /// statement per kind of write and one commit, each answered on its own after the
    /// commit. `0` turns it off: every write its own statement and commit (default 2: at 64
    /// writers on this project's 2-core benchmark machine 2 wrote the most on PostgreSQL
    /// and MariaDB, 4 about 15 % less, 6 and more less again; SQLite has one writer and
    /// runs one at a time).
    pub write_batches: u32,
    /// The settings a setter or a URL parameter gave, even to their default value: what
    /// [`StorageOptions::merge`] takes as "set".
    set: u16,
}

/// The settings [`StorageOptions::merge`] joins, one bit each in `StorageOptions::set`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
    Table = 1,
    VersionTable = 1 << 1,
    Schema = 1 << 2,
    MaxDataBytes = 1 << 3,
    PoolMax = 1 << 4,
    ConnectTimeout = 1 << 5,
    Retry = 1 << 6,
    IsolationTimeout = 1 << 7,
    Ttl = 1 << 8,
    Layout = 1 << 9,
    KeyBuilder = 1 << 10,
    Migrations = 1 << 11,
    CallTimeout = 1 << 12,
    LockPoolMax = 1 << 13,
    WriteBatches = 1 << 14,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            table: TableName::default_table(),
            version_table: TableName::default_version_table(),
            key_builder: Arc::new(DefaultKeyBuilder::default()),
            schema: SchemaPolicy::default(),
            max_data_bytes: DEFAULT_MAX_DATA_BYTES,
            pool_max: DEFAULT_POOL_MAX,
            lock_pool_max: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            retry: RetryPolicy::default(),
            migrations: None,
            isolation_timeout: DEFAULT_ISOLATION_TIMEOUT,
            ttl: None,
            layout: Layout::Fsmstore,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            write_batches: DEFAULT_WRITE_BATCHES,
            set: 0,
        }
    }
}

impl fmt::Debug for StorageOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageOptions")
            .field("table", &self.table)
            .field("version_table", &self.version_table)
            .field("key_builder", &self.key_builder)
            .field("schema", &self.schema)
            .field("max_data_bytes", &self.max_data_bytes)
            .field("pool_max", &self.pool_max)
            .field("lock_pool_max", &self.lock_pool_size())
            .field("connect_timeout", &self.connect_timeout)
            .field("retry", &self.retry)
            .field("custom_migrations", &self.migrations.is_some())
            .field("isolation_timeout", &self.isolation_timeout)
            .field("ttl", &self.ttl)
            .field("layout", &self.layout)
            .field("call_timeout", &self.call_timeout)
            .field("write_batches", &self.write_batches)
            .finish()
    }
}

/// The default [`StorageOptions::call_timeout`].
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The default [`StorageOptions::write_batches`].
pub const DEFAULT_WRITE_BATCHES: u32 = 2;

/// The default [`StorageOptions::isolation_timeout`].
pub const DEFAULT_ISOLATION_TIMEOUT: Duration = Duration::from_secs(30);

impl StorageOptions {
    /// Sets the FSM table.
    ///
    /// # Errors
    /// [`Error::InvalidTableName`].
    pub fn table(mut self, name: &str) -> Result<Self> {
        self.table = TableName::new(name)?;
        Ok(self.mark(Setting::Table))
    }

    /// Sets the version table.
    ///
    /// # Errors
    /// [`Error::InvalidTableName`].
    pub fn version_table(mut self, name: &str) -> Result<Self> {
        self.version_table = TableName::new(name)?;
        Ok(self.mark(Setting::VersionTable))
    }

    fn mark(mut self, setting: Setting) -> Self {
        self.set |= setting as u16;
        self
    }

    /// Whether `setting` was given: by a setter or a URL parameter (even to its default
    /// value), or by assigning the public field a value other than the default.
    fn is_set<T: PartialEq>(&self, setting: Setting, value: &T, default: &T) -> bool {
        self.set & setting as u16 != 0 || value != default
    }

    /// Sets the most connections the storage opens (at least 1).
    pub fn pool_max(mut self, connections: u32) -> Self {
        self.pool_max = connections.max(1);
        self.mark(Setting::PoolMax)
    }

    /// Sets the most connections holding per-key locks at once (at least 1): one bot
    /// instance handles at most this many locked keys at once, the others wait for a
    /// connection (at most `isolation_timeout`).
    pub fn lock_pool_max(mut self, connections: u32) -> Self {
        self.lock_pool_max = Some(connections.max(1));
        self.mark(Setting::LockPoolMax)
    }

    /// The size of the lock pool: [`StorageOptions::lock_pool_max`], else `pool_max`.
    pub fn lock_pool_size(&self) -> u32 {
        self.lock_pool_max.unwrap_or(self.pool_max)
    }

    /// Sets how calls are run again after a conflict the database rolled back.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self.mark(Setting::Retry)
    }

    /// Sets the expiry: a row not written for longer than `ttl` reads as absent.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self.mark(Setting::Ttl)
    }

    /// Sets the table layout: [`Layout::AiogramSqlalchemy`] reads and writes the table of
    /// Python's `aiogram-sqlalchemy-storage` as it is, so both can use it at once.
    pub fn layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self.mark(Setting::Layout)
    }

    /// Sets how long a per-key lock is waited for.
    pub fn isolation_timeout(mut self, timeout: Duration) -> Self {
        self.isolation_timeout = timeout;
        self.mark(Setting::IsolationTimeout)
    }

    /// Sets how long one call waits for the server's answer (see
    /// [`StorageOptions::call_timeout`]).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self.mark(Setting::CallTimeout)
    }

    /// Sets how many writes or batches of coalesced writes may run at once (see
    /// [`StorageOptions::write_batches`]); `0` turns coalescing off.
    pub fn write_batches(mut self, batches: u32) -> Self {
        self.write_batches = batches;
        self.mark(Setting::WriteBatches)
    }

    /// The writes a server backend runs at once: `write_batches`, at most `pool_max` (more
    /// would only wait for a connection); `0` when coalescing is off.
    pub fn effective_write_batches(&self) -> u32 {
        self.write_batches.min(self.pool_max)
    }

    /// Sets how long opening a connection, or waiting for a pooled one, may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self.mark(Setting::ConnectTimeout)
    }

    /// Sets the key builder.
    pub fn key_builder(mut self, builder: impl KeyBuilder + 'static) -> Self {
        self.key_builder = Arc::new(builder);
        self.mark(Setting::KeyBuilder)
    }

    /// Sets the schema policy.
    pub fn schema(mut self, policy: SchemaPolicy) -> Self {
        self.schema = policy;
        self.mark(Setting::Schema)
    }

    /// Sets the data size limit.
    pub fn max_data_bytes(mut self, limit: usize) -> Self {
        self.max_data_bytes = limit;
        self.mark(Setting::MaxDataBytes)
    }

    /// Runs `sources` instead of the built-in migrations.
    pub fn migrations(mut self, sources: Vec<MigrationSource>) -> Self {
        self.migrations = Some(Arc::new(sources));
        self.mark(Setting::Migrations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::{parse_duration, MAX_DURATION};
    use crate::key::MAX_KEY_BYTES;

    #[test]
    fn settings_a_backend_would_ignore_are_refused_wherever_given() {
        let schema_less = ["version_table", "schema", "migrations"];
        // Given in the URL, even as the default value.
        for (name, value) in [("version_table", "fsm_versions"), ("schema", "verify")] {
            let err = url_options(&[(name, value)])
                .unsupported("kv", &schema_less)
                .unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
        // Given in code.
        let custom = StorageOptions::default().migrations(Vec::new());
        let err = custom.unsupported("kv", &schema_less).unwrap_err();
        assert!(err.to_string().contains("migrations"), "{err}");
        // Not given: fine; what is not listed is not refused.
        let options = url_options(&[("ttl", "30d"), ("table", "t")]);
        options.unsupported("kv", &schema_less).unwrap();
        assert!(options.unsupported("kv", &["table"]).is_err());
        assert!(options.unsupported("kv", &["no_such"]).is_err());
    }

    fn url_options(pairs: &[(&str, &str)]) -> StorageOptions {
        let mut options = StorageOptions::default();
        for (name, value) in pairs {
            assert!(options.set_url_parameter(name, value).unwrap(), "{name}");
        }
        options
    }

    #[test]
    fn shared_url_parameters_parse_and_name_themselves_when_bad() {
        let options = url_options(&[
            ("table", "t1"),
            ("version_table", "v1"),
            ("schema", "upgrade"),
            ("pool_max", "3"),
            ("lock_pool_max", "32"),
            ("connect_timeout_ms", "250"),
            ("max_data_bytes", "1024"),
        ]);
        assert_eq!(options.lock_pool_max, Some(32));
        assert_eq!(options.lock_pool_size(), 32);
        assert_eq!(StorageOptions::default().pool_max(7).lock_pool_size(), 7);
        assert_eq!(options.table.as_str(), "t1");
        assert_eq!(options.version_table.as_str(), "v1");
        assert_eq!(options.schema, SchemaPolicy::Upgrade);
        assert_eq!(options.pool_max, 3);
        assert_eq!(options.connect_timeout, Duration::from_millis(250));
        assert_eq!(options.max_data_bytes, 1024);
        for (name, value) in [
            ("pool_max", "0"),
            ("pool_max", "many"),
            ("lock_pool_max", "0"),
            ("lock_pool_max", "4294967296"),
            ("connect_timeout_ms", "-1"),
            ("schema", "maybe"),
        ] {
            let err = StorageOptions::default()
                .set_url_parameter(name, value)
                .unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
        assert!(!StorageOptions::default()
            .set_url_parameter("readers", "2")
            .unwrap());
    }

    #[test]
    fn retry_attempts_pool_and_setters_take_effect() {
        let options = url_options(&[("retry_attempts", "3")]);
        assert_eq!(options.retry.max_attempts, 3);
        assert!(StorageOptions::default()
            .set_url_parameter("retry_attempts", "0")
            .is_err());
        let options = StorageOptions::default()
            .version_table("v_custom")
            .unwrap()
            .connect_timeout(Duration::from_millis(7))
            .migrations(crate::migrations::builtin());
        assert_eq!(options.version_table.as_str(), "v_custom");
        assert_eq!(options.connect_timeout, Duration::from_millis(7));
        assert!(options.migrations.is_some());
        let shown = format!("{options:?}");
        assert!(
            shown.contains("pool_max") && shown.contains("v_custom"),
            "{shown}"
        );
    }

    #[test]
    fn row_ids_of_exactly_the_limit_are_accepted() {
        use crate::key::{BotId, ChatId, DefaultKeyBuilder, StorageKey, UserId};
        // "fsm:1:1:" is 8 characters; the destiny fills the rest.
        let options =
            StorageOptions::default().key_builder(DefaultKeyBuilder::default().with_destiny(true));
        let key = |destiny_len: usize| {
            StorageKey::new(BotId(0), ChatId(1), UserId(1)).for_destiny("d".repeat(destiny_len))
        };
        assert_eq!(
            options
                .row_id(&key(MAX_KEY_BYTES - 8))
                .unwrap()
                .chars()
                .count(),
            MAX_KEY_BYTES
        );
        assert!(matches!(
            options.row_id(&key(MAX_KEY_BYTES - 7)),
            Err(Error::InvalidKey(_))
        ));
    }

    #[test]
    fn merge_takes_each_side_where_the_other_kept_the_default() {
        let url = url_options(&[("table", "from_url"), ("pool_max", "3")]);
        let code = StorageOptions::default()
            .schema(SchemaPolicy::Upgrade)
            .max_data_bytes(99);
        let merged = url.merge(code).unwrap();
        assert_eq!(merged.table.as_str(), "from_url");
        assert_eq!(merged.pool_max, 3);
        assert_eq!(merged.schema, SchemaPolicy::Upgrade);
        assert_eq!(merged.max_data_bytes, 99);
    }

    #[test]
    fn merge_refuses_a_setting_given_differently_in_both() {
        let url = url_options(&[("table", "from_url")]);
        let err = url
            .clone()
            .merge(StorageOptions::default().table("from_code").unwrap())
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)));
        assert!(err.to_string().contains("table"), "{err}");
        // The same value on both sides is not a conflict.
        let same = url
            .merge(StorageOptions::default().table("from_url").unwrap())
            .unwrap();
        assert_eq!(same.table.as_str(), "from_url");
        let err = url_options(&[("schema", "trust")])
            .merge(StorageOptions::default().schema(SchemaPolicy::Upgrade))
            .unwrap_err();
        assert!(err.to_string().contains("schema"), "{err}");
    }

    #[test]
    fn durations_past_the_limit_are_refused_where_they_enter() {
        // Once: `ttl=1000000w` overflowed MySQL's DATETIME (every row read as expired) and
        // a TTL of 3e16 ms made every PostgreSQL read an error.
        for (name, value) in [
            ("ttl", "1000000w"),
            ("ttl", "36501d"),
            ("ttl", "18446744073709551615ms"),
            ("ttl", "99999999999999999999999s"),
            ("connect_timeout_ms", "3153600000001"),
            ("isolation_timeout_ms", "18446744073709551616"),
        ] {
            let err = StorageOptions::default()
                .set_url_parameter(name, value)
                .unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, Error::Config(_)), "{name}={value}: {text}");
            assert!(
                text.contains("36500d") || text.contains("3153600000000 ms"),
                "{name}={value}: {text}"
            );
        }
        let options = url_options(&[("ttl", "36500d"), ("connect_timeout_ms", "3153600000000")]);
        assert_eq!(options.ttl, Some(MAX_DURATION));
        assert_eq!(options.connect_timeout, MAX_DURATION);
        for bad in ["", "5", "ms", "-5s", "5 s", "5y", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        // Set in code, past the limit: refused when a backend opens (`check`).
        let err = StorageOptions::default()
            .ttl(MAX_DURATION + Duration::from_millis(1))
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("ttl"), "{err}");
        assert!(StorageOptions::default()
            .isolation_timeout(Duration::MAX)
            .check()
            .is_err());
        assert!(StorageOptions::default()
            .ttl(Duration::ZERO)
            .check()
            .is_err());
        StorageOptions::default().ttl(MAX_DURATION).check().unwrap();
    }

    /// Each setting, both ways: the URL giving the default value explicitly against code
    /// giving another (once the URL's was taken as "not set" and the code's silently won,
    /// or the other way round), and each side alone.
    #[test]
    fn an_explicit_default_is_a_setting_for_every_setting() {
        type Setter = fn(StorageOptions) -> StorageOptions;
        let cases: [(&str, &str, &str, Setter, Setter); 12] = [
            (
                "table",
                "aiogram_fsm_data",
                "t_other",
                |o| o.table("t_other").unwrap(),
                |o| o.table("aiogram_fsm_data").unwrap(),
            ),
            (
                "version_table",
                "fsmstore_migrations",
                "v_other",
                |o| o.version_table("v_other").unwrap(),
                |o| o.version_table("fsmstore_migrations").unwrap(),
            ),
            (
                "schema",
                "verify",
                "upgrade",
                |o| o.schema(SchemaPolicy::Upgrade),
                |o| o.schema(SchemaPolicy::Verify),
            ),
            (
                "max_data_bytes",
                "8388608",
                "100",
                |o| o.max_data_bytes(100),
                |o| o.max_data_bytes(DEFAULT_MAX_DATA_BYTES),
            ),
            (
                "pool_max",
                "10",
                "3",
                |o| o.pool_max(3),
                |o| o.pool_max(DEFAULT_POOL_MAX),
            ),
            (
                "lock_pool_max",
                "10",
                "32",
                |o| o.lock_pool_max(32),
                |o| o.lock_pool_max(DEFAULT_POOL_MAX),
            ),
            (
                "connect_timeout_ms",
                "10000",
                "250",
                |o| o.connect_timeout(Duration::from_millis(250)),
                |o| o.connect_timeout(DEFAULT_CONNECT_TIMEOUT),
            ),
            (
                "retry_attempts",
                "5",
                "2",
                |o| {
                    o.retry(RetryPolicy::new(
                        2,
                        RetryPolicy::default().base_delay,
                        RetryPolicy::default().max_delay,
                    ))
                },
                |o| o.retry(RetryPolicy::default()),
            ),
            (
                "isolation_timeout_ms",
                "30000",
                "500",
                |o| o.isolation_timeout(Duration::from_millis(500)),
                |o| o.isolation_timeout(DEFAULT_ISOLATION_TIMEOUT),
            ),
            (
                "layout",
                "fsmstore",
                "aiogram-sqlalchemy",
                |o| o.layout(Layout::AiogramSqlalchemy),
                |o| o.layout(Layout::Fsmstore),
            ),
            (
                "ttl",
                "30d",
                "1d",
                |o| o.ttl(Duration::from_secs(86_400)),
                |o| o.ttl(Duration::from_secs(30 * 86_400)),
            ),
            (
                "call_timeout_ms",
                "30000",
                "1500",
                |o| o.call_timeout(Duration::from_millis(1500)),
                |o| o.call_timeout(DEFAULT_CALL_TIMEOUT),
            ),
        ];
        for (name, url_default, url_other, code_other, code_default) in cases {
            let shown = name.trim_end_matches("_ms").trim_end_matches("_attempts");
            // The URL names the default, the code another value: a conflict.
            let err = url_options(&[(name, url_default)])
                .merge(code_other(StorageOptions::default()))
                .unwrap_err();
            assert!(err.to_string().contains(shown), "{name}: {err}");
            // The URL names another value, the code the default: a conflict too.
            let err = url_options(&[(name, url_other)])
                .merge(code_default(StorageOptions::default()))
                .unwrap_err();
            assert!(err.to_string().contains(shown), "{name}: {err}");
            // One side alone wins; the same value on both sides is fine.
            let from_url = url_options(&[(name, url_other)]);
            let merged = from_url.clone().merge(StorageOptions::default()).unwrap();
            assert_eq!(format!("{merged:?}"), format!("{from_url:?}"), "{name}");
            let from_code = code_other(StorageOptions::default());
            let merged = StorageOptions::default().merge(from_code.clone()).unwrap();
            assert_eq!(format!("{merged:?}"), format!("{from_code:?}"), "{name}");
            let same =
                url_options(&[(name, url_other)]).merge(code_other(StorageOptions::default()));
            assert!(same.is_ok(), "{name}: {same:?}");
        }
    }

    /// One duration syntax for every time parameter; the older names stay as aliases, and
    /// a setting named twice is refused.
    #[test]
    fn time_parameters_take_durations_and_their_older_names() {
        let options = url_options(&[
            ("call_timeout", "2s"),
            ("isolation_timeout", "500ms"),
            ("connect_timeout", "3"),
            ("ttl", "30d"),
        ]);
        assert_eq!(options.call_timeout, Duration::from_secs(2));
        assert_eq!(options.isolation_timeout, Duration::from_millis(500));
        assert_eq!(
            options.connect_timeout,
            Duration::from_secs(3),
            "libpq's bare seconds"
        );
        let options = url_options(&[("call_timeout_ms", "2000"), ("connect_timeout_ms", "250")]);
        assert_eq!(options.call_timeout, Duration::from_secs(2));
        assert_eq!(options.connect_timeout, Duration::from_millis(250));
        assert!(
            StorageOptions::default()
                .set_url_parameter("call_timeout", "5")
                .is_err(),
            "a unit is needed"
        );
        let mut twice = StorageOptions::default();
        twice.set_url_parameter("call_timeout", "2s").unwrap();
        let err = twice
            .set_url_parameter("call_timeout_ms", "2000")
            .unwrap_err();
        assert!(err.to_string().contains("call_timeout_ms"), "{err}");
    }
}
