//! What the suite needs from a backend, and the in-memory reference backend.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use fsmstore_core::{
    Database, Dialect, Inspect, LocalIsolation, LocalLocks, MemoryStorage, Migrator, Result,
    SchemaPolicy, Storage, StorageOptions,
};

/// What a backend can do beyond the storage contract, as it declares it: the suite runs a
/// group of cases only on a backend that declares what the group needs, and a case asks
/// here instead of asking which database it is on (OpenDAL's behaviour tests are the
/// model). The default declares nothing: the storage group alone. Build one with
/// `..Capabilities::default()` (or `..Capabilities::sql()`), so a capability added later
/// stays off for a backend that does not know it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Versioned schema migrations: the schema group ([`Backend::migrator`]).
    pub migrations: bool,
    /// Rows record when they were last written: purge by age (and expiry).
    pub updated_at: bool,
    /// Dialogue migrations declared in code, recorded and locked
    /// ([`Migrator::dialogue_ledger`](fsmstore_core::Migrator::dialogue_ledger)).
    pub dialogue_migrations: bool,
    /// Expiry (`ttl`): a dialogue not written for longer reads as absent.
    pub expiry: bool,
    /// The table layout of Python's aiogram-sqlalchemy-storage: the storage group again in
    /// that layout, and that layout's own cases.
    pub aiogram_layout: bool,
    /// Raw statements ([`Backend::execute_raw`], [`Backend::query_raw`]): the cases on rows
    /// another program wrote.
    pub raw_sql: bool,
    /// In the aiogram layout ids compare in the id column's collation (MySQL, MariaDB:
    /// trailing spaces ignored), so the backend refuses ids ending in a space there and a
    /// hand-made table whose collation is not binary.
    pub collated_ids: bool,
    /// [`Backend::execute_raw`]'s string literals read a backslash as an escape.
    pub backslash_escapes: bool,
    /// Locks live in database sessions the backend can end ([`Backend::kill_session`]):
    /// every lock guard must name its session.
    pub kills_sessions: bool,
}

impl Capabilities {
    /// An SQL backend: migrations, `updated_at`, the aiogram layout and raw statements.
    pub fn sql() -> Self {
        Capabilities {
            migrations: true,
            updated_at: true,
            dialogue_migrations: true,
            expiry: true,
            aiogram_layout: true,
            raw_sql: true,
            ..Capabilities::default()
        }
    }
}

/// A backend under test.
///
/// The suite passes [`StorageOptions`] naming the case's own FSM and version tables;
/// opening them twice must reach the same data (that is how persistence is tested).
/// A backend implements [`Backend::open_database`] and [`Backend::cleanup`]; the rest
/// derives from the [`Database`] handle.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A short name for reports (`sqlite`, `postgres`, …).
    fn name(&self) -> String;

    /// Opens the database with `options`, applying `options.schema`.
    ///
    /// # Errors
    /// Whatever opening fails with; the schema cases check these errors.
    async fn open_database(&self, options: StorageOptions) -> Result<Database>;

    /// The storage of [`Backend::open_database`].
    ///
    /// # Errors
    /// As [`Backend::open_database`].
    async fn open(&self, options: StorageOptions) -> Result<Arc<dyn Storage>> {
        Ok(self.open_database(options).await?.storage())
    }

    /// The whole-table operations of [`Backend::open_database`].
    ///
    /// # Errors
    /// As [`Backend::open_database`].
    async fn open_inspect(&self, options: StorageOptions) -> Result<Arc<dyn Inspect>> {
        Ok(self.open_database(options).await?.inspect())
    }

    /// A migrator for `options.table`: the database opened without a schema check.
    ///
    /// # Errors
    /// Backends without a schema return [`Error::Config`](fsmstore_core::Error::Config); the schema group is not run on
    /// them.
    async fn migrator(&self, options: StorageOptions) -> Result<Arc<dyn Migrator>> {
        self.open_database(options.schema(SchemaPolicy::Trust))
            .await?
            .migrator()
    }

    /// Drops what a case created: its FSM table and its version table.
    ///
    /// # Errors
    /// Database errors (reported, never fatal to the case).
    async fn cleanup(&self, options: &StorageOptions) -> Result<()>;

    /// Ends database session `session` as an operator would (`pg_terminate_backend`,
    /// `KILL`), for the case that kills a lock holder. `Ok(false)`: this backend's locks
    /// have no sessions.
    ///
    /// # Errors
    /// Database errors.
    async fn kill_session(&self, session: i64) -> Result<bool> {
        let _ = session;
        Ok(false)
    }

    /// The SQL dialect of [`Backend::execute_raw`] (`None`: the backend runs no SQL).
    fn dialect(&self) -> Option<Dialect> {
        None
    }

    /// Runs `sql` (no parameters, one statement) on the database of `options`, outside
    /// fsmstore: how the aiogram-layout cases put rows there as another program would.
    ///
    /// # Errors
    /// [`Error::Config`](fsmstore_core::Error::Config) when the backend runs no SQL;
    /// database errors.
    async fn execute_raw(&self, options: &StorageOptions, sql: &str) -> Result<()> {
        let _ = (options, sql);
        Err(fsmstore_core::Error::Config(format!(
            "{} runs no SQL",
            self.name()
        )))
    }

    /// Runs query `sql` on the database of `options`, outside fsmstore, and returns its
    /// first column as text, one entry per row.
    ///
    /// # Errors
    /// As [`Backend::execute_raw`].
    async fn query_raw(&self, options: &StorageOptions, sql: &str) -> Result<Vec<Option<String>>> {
        let _ = (options, sql);
        Err(fsmstore_core::Error::Config(format!(
            "{} runs no SQL",
            self.name()
        )))
    }

    /// What this backend declares it can do (see [`Capabilities`]).
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
}

/// [`MemoryStorage`] as a backend: the reference every SQL backend is compared with.
/// Reopening a table returns a new handle on the same rows.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    /// Each table's rows, and its locks (shared by every handle, as a database's are).
    tables: Mutex<HashMap<String, (MemoryStorage, Arc<LocalLocks>)>>,
}

impl MemoryBackend {
    /// A backend with no tables.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> String {
        "memory".to_owned()
    }

    fn capabilities(&self) -> Capabilities {
        // Rows keep their write time (purge by age) and expire; no schema, no SQL.
        Capabilities {
            updated_at: true,
            expiry: true,
            ..Capabilities::default()
        }
    }

    async fn open_database(&self, options: StorageOptions) -> Result<Database> {
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        let (storage, locks) = match tables.get(options.table.as_str()) {
            // Same rows, options of this open (key builder, limits).
            Some((existing, locks)) => (existing.reopen_with(options.clone()), Arc::clone(locks)),
            None => {
                let storage = MemoryStorage::with_options(options.clone());
                let locks = Arc::new(LocalLocks::default());
                tables.insert(
                    options.table.to_string(),
                    (storage.reopen(), Arc::clone(&locks)),
                );
                (storage, locks)
            }
        };
        let isolation =
            Arc::new(LocalIsolation::shared(locks, options).while_open(storage.open_check()));
        Ok(Database::new("memory", Arc::new(storage), None).with_isolation(isolation))
    }

    async fn cleanup(&self, options: &StorageOptions) -> Result<()> {
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        tables.remove(options.table.as_str());
        Ok(())
    }
}
