//! [`MysqlStorage`]: the [`Storage`] implementation.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use fsmstore_core::coalesce::{Answer, CoalesceStats, Coalescer};
use fsmstore_core::sql::{InspectQueries, MysqlQueries, MysqlServer};
use fsmstore_core::MAX_DURATION;
use fsmstore_core::{
    validate_data, validate_state, Data, Database, Dialect, Error, Layout, Migrator, Record,
    Replay, Result, RetryPolicy, Storage, StorageKey, StorageOptions,
};
use sqlx::mysql::{MySqlPool, MySqlRow};
use sqlx::Row;

use crate::config::MysqlConfig;
use crate::connections::{sql, Connections, Staged};
use crate::error::from_sqlx;
use crate::migrate::MysqlMigrator;
use crate::statements::{clear_field, data_column, execute, select_row};
use crate::writes::{MysqlWrite, MysqlWriter};

/// The retry policy of a storage on a Galera node unless one was set: 30 attempts, 5 ms to
/// 1 s apart.
pub fn galera_retry() -> RetryPolicy {
    RetryPolicy::new(
        30,
        std::time::Duration::from_millis(5),
        std::time::Duration::from_secs(1),
    )
}

/// Whether the server behind `executor` is a Galera node with replication on (`wsrep_on`;
/// MySQL has no such variable: false).
async fn is_galera<'e>(executor: impl sqlx::MySqlExecutor<'e>) -> bool {
    sqlx::query_scalar::<_, i64>(MysqlServer::GALERA_ON)
        .fetch_one(executor)
        .await
        .is_ok_and(|on| on == 1)
}

/// FSM storage in a MySQL 8 or MariaDB 10.6+ database.
///
/// Cheap to clone: clones share the pool. See the crate docs for an example.
#[derive(Clone)]
pub struct MysqlStorage {
    inner: Arc<Inner>,
}

struct Inner {
    conns: Arc<Connections>,
    queries: Arc<MysqlQueries>,
    inspect: InspectQueries,
    /// The writes that go together when several wait (see [`fsmstore_core::coalesce`]).
    writes: Arc<Coalescer<MysqlWriter>>,
}

impl std::fmt::Debug for MysqlStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlStorage")
            .field("server", &self.inner.conns.config().to_string())
            .field("closed", &self.inner.conns.is_closed())
            .finish()
    }
}

impl MysqlStorage {
    /// Connects (a pool of `config.options.pool_max` connections) and applies the schema policy of
    /// `config.options.schema`: `Verify` (default) refuses a schema that is not at head,
    /// `Upgrade` migrates first (under the migration lock).
    ///
    /// # Errors
    /// [`Error::Connection`] when the server can not be reached; [`Error::SchemaOutdated`]
    /// (naming the command to run), [`Error::SchemaTooNew`], [`Error::MigrationDrift`] and
    /// [`Error::MigrationDirty`] from the schema check.
    pub async fn open(config: MysqlConfig) -> Result<Self> {
        config.options.check()?;
        fsmstore_core::check_duration("lock_timeout", config.lock_timeout, MAX_DURATION)?;
        let queries = Arc::new(MysqlQueries::for_options(&config.options));
        let inspect = InspectQueries::for_layout(
            Dialect::Mysql,
            &config.options.table,
            config.options.layout,
        );
        let (size, locks) = (config.options.pool_max, config.options.lock_pool_size());
        let mut conns = Connections::open(config, size, locks).await?;
        if !conns.config().options.retry_is_set() && is_galera(conns.pool_handed_back()).await {
            // Every Galera node takes writes; two nodes' transactions on one key meet only
            // at commit, where one fails certification (1213, rolled back: safe to run
            // again). Under contention that takes more attempts than on one server
            // (measured: 48 writers over three nodes on one key, 20 % of calls failed after
            // 5 attempts, 1 % after 10, none after 20 on an idle machine, 1 in 1440 after 20
            // on a loaded one).
            let mut options = conns.config().options.clone();
            options.retry = galera_retry();
            conns.set_options(options);
        }
        let conns = Arc::new(conns);
        let writer = MysqlWriter {
            conns: Arc::clone(&conns),
            queries: Arc::clone(&queries),
        };
        let batches = conns.config().options.effective_write_batches();
        let storage = MysqlStorage {
            inner: Arc::new(Inner {
                conns,
                queries,
                inspect,
                writes: Coalescer::new(writer, batches),
            }),
        };
        let checked = match storage.migrator() {
            Ok(migrator) => {
                let options = storage.options();
                migrator
                    .apply_layout_policy(options.schema, options.layout)
                    .await
            }
            Err(err) => Err(err),
        };
        let checked = match checked {
            Ok(()) if storage.options().layout == Layout::AiogramSqlalchemy => {
                storage.check_id_collation().await
            }
            other => other,
        };
        if let Err(err) = checked {
            // Do not leave connections open behind a failed open.
            let _ = storage.close().await;
            return Err(err);
        }
        Ok(storage)
    }

    /// Whether this storage's server is a Galera cluster node.
    pub async fn is_galera(&self) -> bool {
        match self.inner.conns.acquire().await {
            Ok(mut conn) => is_galera(&mut *conn).await,
            Err(_) => false,
        }
    }

    /// Refuses a table in the aiogram layout whose ids compare in a collation that is not
    /// binary (a table made by hand in the database's default collation, such as
    /// `utf8mb4_general_ci`): there keys differing in case or accents (destinies, business
    /// connection ids) would share one row. fsmstore's own migration 1 uses `utf8mb4_bin`.
    ///
    /// # Errors
    /// [`Error::Config`] naming the `ALTER TABLE` that fixes it; database errors.
    async fn check_id_collation(&self) -> Result<()> {
        let table = self.options().table.as_str();
        let mut conn = self.inner.conns.acquire().await.map_err(from_sqlx)?;
        let collation: Option<Option<String>> = sqlx::query_scalar(MysqlServer::ID_COLLATION)
            .bind(table)
            .fetch_optional(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        match collation.flatten() {
            Some(collation) if !collation.ends_with("_bin") => Err(Error::Config(format!(
                "table {table} compares ids in collation {collation}, where keys differing in case or accents share one row: run `ALTER TABLE {table} MODIFY id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL` first (aiogram-sqlalchemy-storage keeps working)"
            ))),
            _ => Ok(()),
        }
    }

    /// `id`, unless the table would not keep it apart from another id: in the aiogram
    /// layout ids are `VARCHAR` in a PAD SPACE collation, where `"a "` equals `"a"`, so an
    /// id ending in a space would share the row of the id without it (fsmstore's own layout
    /// compares ids byte for byte, migration 4).
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for such an id in the aiogram layout.
    pub(crate) fn exact(&self, id: String) -> Result<String> {
        if self.options().layout == Layout::AiogramSqlalchemy && id.ends_with(' ') {
            return Err(Error::InvalidKey(format!(
                "row id {id:?} ends in a space: in the aiogram-sqlalchemy layout MySQL and MariaDB compare ids ignoring trailing spaces, so it would share the row of {:?}; fsmstore's own layout (the table upgraded to the latest schema version) keeps them apart",
                id.trim_end_matches(' ')
            )));
        }
        Ok(id)
    }

    /// Opens `url` (see [`MysqlConfig::from_url`]).
    ///
    /// # Errors
    /// As [`MysqlConfig::from_url`] and [`MysqlStorage::open`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::open(MysqlConfig::from_url(url)?).await
    }

    /// One [`Database`] handle over this storage's connections: the storage, its
    /// whole-table operations and its migrator.
    ///
    /// # Errors
    /// [`Error::Migration`] for a custom migration list that is not contiguous.
    pub fn database(&self) -> Result<Database> {
        let migrator: Arc<dyn Migrator> = Arc::new(self.migrator()?);
        let isolation = crate::isolation::isolation(&self.inner.conns);
        Ok(
            Database::new("mysql", Arc::new(self.clone()), Some(migrator))
                .with_isolation(isolation),
        )
    }

    /// The migrator of this storage's table; it reads through this storage's pool and takes
    /// the migration lock on a connection of its own.
    ///
    /// # Errors
    /// [`Error::Migration`] for a custom migration list that is not contiguous.
    pub fn migrator(&self) -> Result<MysqlMigrator> {
        MysqlMigrator::sharing(Arc::clone(&self.inner.conns))
    }

    /// The pool, for callers that want to run their own statements beside the storage.
    ///
    /// The storage keeps the connections of its last calls idle, out of the pool, for its
    /// next calls; asking for the pool hands them back first, so a statement run on it
    /// right away finds one. Ask for the pool where the statement runs rather than keeping
    /// a clone: with every connection kept idle again by later calls (`pool_max` of them),
    /// a clone's `acquire` waits for the pool's timeout. Under load, the storage's calls
    /// waiting in the pool's queue come first, as they would for any connection freed.
    pub fn pool(&self) -> &MySqlPool {
        self.inner.conns.pool_handed_back()
    }

    /// The connections, for the whole-table operations.
    pub(crate) fn connections(&self) -> &Connections {
        &self.inner.conns
    }

    /// Core's whole-table statements of this table.
    pub(crate) fn inspect_queries(&self) -> &InspectQueries {
        &self.inner.inspect
    }

    /// Core's row statements of this table.
    pub(crate) fn row_queries(&self) -> &MysqlQueries {
        &self.inner.queries
    }
}

impl MysqlStorage {
    /// A read of the row of `id` with `statement`.
    async fn select(
        &self,
        operation: &'static str,
        statement: &str,
        id: &str,
    ) -> Result<Option<MySqlRow>> {
        self.inner
            .conns
            .call(
                operation,
                Replay::Safe,
                (statement, id),
                |conn, (statement, id)| {
                    Box::pin(async move { select_row(conn, statement, id).await.before() })
                },
            )
            .await
    }

    /// A one-statement write binding `id` and `value`.
    async fn write(
        &self,
        operation: &'static str,
        statement: &str,
        id: &str,
        value: Option<&str>,
    ) -> Result<u64> {
        let args = (statement, id, value);
        self.inner
            .conns
            .call(
                operation,
                Replay::Unsafe,
                args,
                |conn, (statement, id, value)| {
                    Box::pin(async move { execute(conn, statement, id, *value).await.applying() })
                },
            )
            .await
    }

    /// `clear` and `delete_if_empty` in one transaction.
    async fn clear_field(&self, operation: &'static str, clear: &str, id: &str) -> Result<()> {
        let args = (&self.inner.queries, clear, id);
        self.inner
            .conns
            .call(operation, Replay::Unsafe, args, |conn, (sql, clear, id)| {
                Box::pin(clear_field(conn, sql, clear, id))
            })
            .await
    }

    /// Runs `write`: alone, or with the writes waiting beside it.
    async fn coalesced<T: Answer>(&self, write: MysqlWrite<'_>) -> Result<T> {
        let writes = &self.inner.writes;
        let alone = || async { writes.backend().one(&write).await.and_then(T::from_written) };
        writes.write(alone, || write.to_owned_write()).await
    }
}

#[async_trait]
impl Storage for MysqlStorage {
    async fn get_state(&self, key: &StorageKey) -> Result<Option<String>> {
        let id = self.exact(self.options().row_id(key)?)?;
        let row = self
            .select("get_state", &self.inner.queries.row.get_state, &id)
            .await?;
        match row {
            Some(row) => row.try_get(0).map_err(from_sqlx),
            None => Ok(None),
        }
    }

    async fn set_state(&self, key: &StorageKey, state: Option<&str>) -> Result<()> {
        let sql = &self.inner.queries;
        let id = self.exact(self.options().row_id(key)?)?;
        match state {
            Some(state) => {
                validate_state(state)?;
                self.coalesced(MysqlWrite::SetState {
                    id,
                    state: state.to_owned(),
                })
                .await
            }
            None => {
                self.clear_field("set_state", &sql.row.clear_state, &id)
                    .await
            }
        }
    }

    async fn get_data(&self, key: &StorageKey) -> Result<Data> {
        let id = self.exact(self.options().row_id(key)?)?;
        let row = self
            .select("get_data", &self.inner.queries.row.get_data, &id)
            .await?;
        match row {
            Some(row) => data_column(&row, 0, &id),
            None => Ok(Data::new()),
        }
    }

    async fn set_data(&self, key: &StorageKey, data: &Data) -> Result<()> {
        let sql = &self.inner.queries;
        let id = self.exact(self.options().row_id(key)?)?;
        if data.is_empty() {
            return self.clear_field("set_data", &sql.row.clear_data, &id).await;
        }
        let text = validate_data(&id, data, self.options().max_data_bytes)?;
        self.coalesced(MysqlWrite::SetData { id, text }).await
    }

    async fn update_data(&self, key: &StorageKey, patch: &Data) -> Result<Data> {
        if patch.is_empty() {
            return self.get_data(key).await;
        }
        let id = self.exact(self.options().row_id(key)?)?;
        // The limit applies to the patch, as on backends that merge inside the database.
        validate_data(&id, patch, self.options().max_data_bytes)?;
        self.coalesced(MysqlWrite::Merge {
            id,
            patch: Cow::Borrowed(patch),
            next: None,
        })
        .await
    }

    async fn transition(
        &self,
        key: &StorageKey,
        state: Option<&str>,
        patch: &Data,
    ) -> Result<Data> {
        let id = self.exact(self.options().transition_row_id(key, state, patch)?)?;
        self.coalesced(MysqlWrite::Merge {
            id,
            patch: Cow::Borrowed(patch),
            next: Some(state.map(str::to_owned)),
        })
        .await
    }

    async fn set_record(&self, key: &StorageKey, state: Option<&str>, data: &Data) -> Result<()> {
        let (id, text) = self.options().record_row_id(key, state, data)?;
        let id = self.exact(id)?;
        if state.is_none() && data.is_empty() {
            return self
                .write("set_record", &self.inner.queries.row.delete, &id, None)
                .await
                .map(drop);
        }
        self.coalesced(MysqlWrite::SetRecord {
            id,
            state: state.map(str::to_owned),
            text,
        })
        .await
    }

    // get_value: the trait's default (a field of get_data). Core has no MySQL get_value:
    // JSON paths can not name every field exactly (quotes, dots, `*`) on both servers.

    async fn get_record(&self, key: &StorageKey) -> Result<Record> {
        let id = self.exact(self.options().row_id(key)?)?;
        let row = self
            .select("get_record", &self.inner.queries.row.get_record, &id)
            .await?;
        match row {
            Some(row) => Ok(Record {
                state: row.try_get(0).map_err(from_sqlx)?,
                data: data_column(&row, 1, &id)?,
            }),
            None => Ok(Record::default()),
        }
    }

    async fn clear(&self, key: &StorageKey) -> Result<bool> {
        let id = self.exact(self.options().row_id(key)?)?;
        // A fresh row, deleted: found. An expired row is absent (not found), and goes too.
        let found = self.coalesced(MysqlWrite::Clear { id: id.clone() }).await?;
        if self.options().ttl.is_some() {
            let expired = &self.inner.queries.delete_expired;
            self.write("clear", expired, &id, None).await?;
        }
        Ok(found)
    }

    async fn key_count(&self) -> Result<u64> {
        let count: i64 = self
            .inner
            .conns
            .call(
                "key_count",
                Replay::Safe,
                &self.inner.queries.row.count,
                |conn, count| {
                    Box::pin(async move {
                        sqlx::query_scalar(sql(count))
                            .fetch_one(&mut *conn)
                            .await
                            .before()
                    })
                },
            )
            .await?;
        u64::try_from(count).map_err(|_| Error::database(false, "negative COUNT(*)"))
    }

    fn options(&self) -> &StorageOptions {
        &self.inner.conns.config().options
    }

    fn write_stats(&self) -> Option<CoalesceStats> {
        Some(self.inner.writes.stats())
    }

    async fn close(&self) -> Result<()> {
        self.inner.conns.close().await;
        Ok(())
    }
}
