//! [`SqliteStorage`]: the [`Storage`] implementation.

use std::sync::Arc;

use async_trait::async_trait;
use fsmstore_core::coalesce::{Answer, CoalesceStats, Coalescer};
use fsmstore_core::sql::{InspectQueries, SqliteQueries};
use fsmstore_core::{
    parse_stored, plan_merge, retry, validate_data, validate_field, validate_state, Data, Database,
    Dialect, Error, LocalIsolation, LocalLocks, MergeWrite, Migrator, NextState, Record, Result,
    SchemaPolicy, Storage, StorageKey, StorageOptions,
};
use rusqlite::{Connection, OptionalExtension};
use serde_json::Value;

use crate::config::{SqliteConfig, SqliteLocation};
use crate::connections::Connections;
use crate::error::from_sqlite;
use crate::locks::shared_locks;
use crate::migrate::SqliteMigrator;
use crate::writes::{SqliteWrite, SqliteWriter, WriteTx};

/// FSM storage in a SQLite database.
///
/// Cheap to clone: clones share the connections. See the crate docs for an example.
#[derive(Clone)]
pub struct SqliteStorage {
    pub(crate) connections: Arc<Connections>,
    queries: Arc<SqliteQueries>,
    pub(crate) inspect: Arc<InspectQueries>,
    pub(crate) options: StorageOptions,
    /// Per-key locks, shared by every storage of this process on the same file and table.
    locks: Arc<LocalLocks>,
    /// Where the database is (a file's dialogue migrations lock a file beside it).
    location: crate::SqliteLocation,
    /// The writes that go together when several wait.
    writes: Arc<Coalescer<SqliteWriter>>,
}

impl std::fmt::Debug for SqliteStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStorage")
            .field("table", &self.options.table)
            .field("closed", &self.connections.is_closed())
            .finish()
    }
}

impl SqliteStorage {
    /// Opens the database and applies the schema policy of `config.options.schema`:
    /// `Verify` (default) refuses a schema that is not at head, `Upgrade` migrates first.
    /// A private in-memory database (`sqlite::memory:`) is always new, so `Verify` creates
    /// its schema instead of failing.
    ///
    /// # Errors
    /// [`Error::Connection`] when the file can not be opened;
    /// [`Error::SchemaOutdated`] (naming the command to run), [`Error::SchemaTooNew`],
    /// [`Error::MigrationDrift`] and [`Error::MigrationDirty`] from the schema check.
    pub async fn open(config: SqliteConfig) -> Result<Self> {
        config.check()?;
        let connections = Connections::open(&config).await?;
        let config_location = config.location.clone();
        let locks = shared_locks(&config_location, config.options.table.as_str());
        let queries = Arc::new(SqliteQueries::for_options(&config.options));
        // One writer connection: one batch at a time.
        let writer = SqliteWriter {
            connections: Arc::clone(&connections),
            queries: Arc::clone(&queries),
            retry: config.options.retry,
        };
        let storage = SqliteStorage {
            locks,
            location: config_location.clone(),
            writes: Coalescer::new(writer, config.options.write_batches.min(1)),
            queries,
            inspect: Arc::new(InspectQueries::for_layout(
                Dialect::Sqlite,
                &config.options.table,
                config.options.layout,
            )),
            options: config.options,
            connections,
        };
        // A private in-memory database is always new: verifying it could only fail with
        // advice that can not apply, so it is created instead.
        let policy = match (&config_location, storage.options.schema) {
            (SqliteLocation::Memory, SchemaPolicy::Verify) => SchemaPolicy::Upgrade,
            (_, policy) => policy,
        };
        let checked = match storage.migrator() {
            Ok(migrator) => {
                migrator
                    .apply_layout_policy(policy, storage.options.layout)
                    .await
            }
            Err(err) => Err(err),
        };
        if let Err(err) = checked {
            // Do not leave connections open behind a failed open.
            let _ = storage.connections.close().await;
            return Err(err);
        }
        Ok(storage)
    }

    /// Opens `url` (see [`SqliteConfig::from_url`]).
    ///
    /// # Errors
    /// As [`SqliteConfig::from_url`] and [`SqliteStorage::open`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::open(SqliteConfig::from_url(url)?).await
    }

    /// One [`Database`] handle over this storage's connections: the storage, its
    /// whole-table operations and its migrator.
    ///
    /// # Errors
    /// [`Error::Migration`] for a custom migration list that is not contiguous.
    pub fn database(&self) -> Result<Database> {
        let migrator: Arc<dyn Migrator> = Arc::new(self.migrator()?);
        let connections = Arc::clone(&self.connections);
        let isolation = LocalIsolation::shared(Arc::clone(&self.locks), self.options.clone())
            .while_open(move || !connections.is_closed());
        Ok(
            Database::new("sqlite", Arc::new(self.clone()), Some(migrator))
                .with_isolation(Arc::new(isolation)),
        )
    }

    /// The migrator of this storage's table, on the same connections.
    ///
    /// # Errors
    /// [`Error::Migration`] for a custom migration list that is not contiguous.
    pub fn migrator(&self) -> Result<SqliteMigrator> {
        SqliteMigrator::on_connections(
            Arc::clone(&self.connections),
            Arc::clone(&self.locks),
            &self.location,
            &self.options,
        )
    }

    /// Runs `work` on a reader (or the idle writer), again under the retry policy when
    /// the database was busy.
    async fn read<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl Fn(&mut Connection, &SqliteQueries) -> Result<T> + Send + Sync + 'static,
    ) -> Result<T> {
        let work = Arc::new(work);
        retry(&self.options.retry, operation, || {
            let (work, queries) = (Arc::clone(&work), Arc::clone(&self.queries));
            self.connections.read(move |conn| work(conn, &queries))
        })
        .await
    }

    /// A point read: on the calling thread when a connection is idle and the database
    /// does not make it wait ([`Connections::try_read_here`]), else as [`Self::read`].
    async fn point_read<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl Fn(&mut Connection, &SqliteQueries) -> Result<T> + Send + Sync + 'static,
    ) -> Result<T> {
        if let Some(done) = self
            .connections
            .try_read_here(|conn| work(conn, &self.queries))
        {
            return done;
        }
        self.read(operation, work).await
    }

    /// Runs `work`, a write of row `id`, on the writer: alone (under the retry policy
    /// when the database was busy), or in one transaction with the writes waiting beside
    /// it (see [`fsmstore_core::coalesce`]).
    async fn write<T: Answer>(
        &self,
        operation: &'static str,
        id: String,
        work: impl Fn(&mut Connection, &SqliteQueries) -> Result<T> + Send + Sync + 'static,
    ) -> Result<T> {
        let work = Arc::new(work);
        let writes = &self.writes;
        let own = Arc::clone(&work);
        let alone = move || writes.backend().one(operation, own);
        writes
            .write(alone, || SqliteWrite {
                id,
                operation,
                work: Arc::new(move |conn: &mut Connection, q: &SqliteQueries| {
                    work(conn, q).map(Answer::into_written)
                }),
            })
            .await
    }
}

/// Runs `statement` with `id`, then deletes the row if it holds nothing, in one
/// transaction.
fn clear_field(
    conn: &mut Connection,
    queries: &SqliteQueries,
    statement: &str,
    id: &str,
) -> Result<()> {
    let tx = WriteTx::begin(conn)?;
    tx.prepare_cached(statement)
        .and_then(|mut s| s.execute([id]))
        .map_err(from_sqlite)?;
    tx.prepare_cached(&queries.delete_if_empty)
        .and_then(|mut s| s.execute([id]))
        .map_err(from_sqlite)?;
    tx.commit()
}

/// Reads, merges `patch` and writes inside one `BEGIN IMMEDIATE` (or a savepoint of a
/// batch's, which holds it already): the write lock is held
/// from the first read, so no other connection or process can interleave. `state` is
/// `Some(new state)` for a transition (the row goes when it ends up empty) and `None` to
/// keep the state (`update_data`, whose non-empty patch never empties the row).
fn merge_locked(
    conn: &mut Connection,
    q: &SqliteQueries,
    id: &str,
    patch: &Data,
    next: NextState<'_>,
) -> Result<Data> {
    let tx = WriteTx::begin(conn)?;
    // State and data read once (an expired row reads as absent) and written back whole:
    // expiry is decided by this one read, under the write lock. Core plans the write;
    // fields the patch does not name keep their stored text.
    let (old_state, stored) = select_record_text(&tx, q, id)?;
    let plan = plan_merge(id, old_state, stored.as_deref(), patch, next)?;
    match &plan.write {
        MergeWrite::Upsert { state, data } => tx
            .prepare_cached(&q.row.upsert_record)
            .and_then(|mut s| s.execute(rusqlite::params![id, state, data])),
        MergeWrite::Delete => tx
            .prepare_cached(&q.row.delete)
            .and_then(|mut s| s.execute([id])),
    }
    .map_err(from_sqlite)?;
    tx.commit()?;
    Ok(plan.data)
}

/// The state and the data column's text of `id` (absent or expired: `None`, `None`).
fn select_record_text(
    conn: &Connection,
    queries: &SqliteQueries,
    id: &str,
) -> Result<(Option<String>, Option<String>)> {
    let row: Option<(Option<String>, Option<String>)> = conn
        .prepare_cached(&queries.row.get_record)
        .and_then(|mut s| {
            s.query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(from_sqlite)?;
    Ok(row.unwrap_or((None, None)))
}

/// The data of `id` (absent or expired: `{}`).
fn select_data(conn: &Connection, queries: &SqliteQueries, id: &str) -> Result<Data> {
    let text: Option<Option<String>> = conn
        .prepare_cached(&queries.row.get_data)
        .and_then(|mut s| s.query_row([id], |row| row.get(0)).optional())
        .map_err(from_sqlite)?;
    parse_stored(id, text.flatten().as_deref())
}

/// The state and data of `id` (absent or expired: `None` and `{}`).
fn select_record(
    conn: &Connection,
    queries: &SqliteQueries,
    id: &str,
) -> Result<(Option<String>, Data)> {
    let (state, text) = select_record_text(conn, queries, id)?;
    Ok((state, parse_stored(id, text.as_deref())?))
}

#[async_trait]
impl Storage for SqliteStorage {
    async fn get_state(&self, key: &StorageKey) -> Result<Option<String>> {
        let id = self.options.row_id(key)?;
        self.point_read("get_state", move |conn, q| {
            let state: Option<Option<String>> = conn
                .prepare_cached(&q.row.get_state)
                .and_then(|mut s| s.query_row([&id], |row| row.get(0)).optional())
                .map_err(from_sqlite)?;
            Ok(state.flatten())
        })
        .await
    }

    async fn set_state(&self, key: &StorageKey, state: Option<&str>) -> Result<()> {
        let id = self.options.row_id(key)?;
        match state {
            Some(state) => {
                validate_state(state)?;
                let state = state.to_owned();
                self.write("set_state", id.clone(), move |conn, q| {
                    conn.prepare_cached(&q.row.upsert_state)
                        .and_then(|mut s| s.execute([&id, &state]))
                        .map_err(from_sqlite)?;
                    Ok(())
                })
                .await
            }
            None => {
                self.write("set_state", id.clone(), move |conn, q| {
                    clear_field(conn, q, &q.row.clear_state, &id)
                })
                .await
            }
        }
    }

    async fn get_data(&self, key: &StorageKey) -> Result<Data> {
        let id = self.options.row_id(key)?;
        self.point_read("get_data", move |conn, q| select_data(conn, q, &id))
            .await
    }

    async fn set_data(&self, key: &StorageKey, data: &Data) -> Result<()> {
        let id = self.options.row_id(key)?;
        if data.is_empty() {
            return self
                .write("set_data", id.clone(), move |conn, q| {
                    clear_field(conn, q, &q.row.clear_data, &id)
                })
                .await;
        }
        let text = validate_data(&id, data, self.options.max_data_bytes)?;
        self.write("set_data", id.clone(), move |conn, q| {
            conn.prepare_cached(&q.row.upsert_data)
                .and_then(|mut s| s.execute([&id, &text]))
                .map_err(from_sqlite)?;
            Ok(())
        })
        .await
    }

    async fn update_data(&self, key: &StorageKey, patch: &Data) -> Result<Data> {
        if patch.is_empty() {
            return self.get_data(key).await;
        }
        let id = self.options.row_id(key)?;
        // The limit applies to the patch, as on backends that merge inside the database.
        validate_data(&id, patch, self.options.max_data_bytes)?;
        let patch = patch.clone();
        self.write("update_data", id.clone(), move |conn, q| {
            merge_locked(conn, q, &id, &patch, NextState::Keep)
        })
        .await
    }

    async fn transition(
        &self,
        key: &StorageKey,
        state: Option<&str>,
        patch: &Data,
    ) -> Result<Data> {
        let id = self.options.transition_row_id(key, state, patch)?;
        let (state, patch) = (state.map(str::to_owned), patch.clone());
        self.write("transition", id.clone(), move |conn, q| {
            merge_locked(conn, q, &id, &patch, NextState::Set(state.as_deref()))
        })
        .await
    }

    async fn set_record(&self, key: &StorageKey, state: Option<&str>, data: &Data) -> Result<()> {
        let (id, text) = self.options.record_row_id(key, state, data)?;
        let (state, empty) = (state.map(str::to_owned), data.is_empty());
        self.write("set_record", id.clone(), move |conn, q| {
            match (state.as_deref(), empty) {
                (None, true) => conn
                    .prepare_cached(&q.row.delete)
                    .and_then(|mut s| s.execute([&id])),
                (state, _) => conn
                    .prepare_cached(&q.row.upsert_record)
                    .and_then(|mut s| s.execute(rusqlite::params![id, state, text])),
            }
            .map_err(from_sqlite)?;
            Ok(())
        })
        .await
    }

    async fn get_value(&self, key: &StorageKey, field: &str) -> Result<Option<Value>> {
        validate_field(field)?;
        // SQLite's JSON paths can not name every field exactly (quotes, dots): read the
        // object and pick the field.
        Ok(self.get_data(key).await?.remove(field))
    }

    async fn get_record(&self, key: &StorageKey) -> Result<Record> {
        let id = self.options.row_id(key)?;
        self.point_read("get_record", move |conn, q| {
            let (state, data) = select_record(conn, q, &id)?;
            Ok(Record { state, data })
        })
        .await
    }

    async fn clear(&self, key: &StorageKey) -> Result<bool> {
        let id = self.options.row_id(key)?;
        self.write("clear", id.clone(), move |conn, q| {
            // One row back when a row was deleted: whether it was fresh (an expired row
            // is absent, so clearing it finds nothing).
            let fresh: Option<bool> = conn
                .prepare_cached(&q.take)
                .and_then(|mut s| s.query_row([&id], |row| row.get(0)).optional())
                .map_err(from_sqlite)?;
            Ok(fresh.unwrap_or(false))
        })
        .await
    }

    async fn key_count(&self) -> Result<u64> {
        self.read("key_count", |conn, q| {
            let count: i64 = conn
                .prepare_cached(&q.row.count)
                .and_then(|mut s| s.query_row([], |row| row.get(0)))
                .map_err(from_sqlite)?;
            u64::try_from(count).map_err(|_| Error::database(false, "negative COUNT(*)"))
        })
        .await
    }

    fn options(&self) -> &StorageOptions {
        &self.options
    }

    fn write_stats(&self) -> Option<CoalesceStats> {
        Some(self.writes.stats())
    }

    async fn close(&self) -> Result<()> {
        self.connections.close().await
    }
}
