//! [`MysqlStorage`]: the [`Storage`] implementation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use fsmstore_core::sql::MysqlQueries;
use fsmstore_core::MAX_DURATION;
use fsmstore_core::{
    parse_data, plan_merge, validate_data, validate_field, validate_state, Data, Database, Error,
    Layout, MergeWrite, Migrator, NextState, Record, Result, RetryPolicy, Storage, StorageKey,
    StorageOptions,
};
use serde_json::Value;
use sqlx::mysql::{MySqlConnection, MySqlPool, MySqlRow};
use sqlx::{Acquire, AssertSqlSafe, Row, SqlSafeStr, SqlStr};

use crate::call::{Access, Attempt, Phase};
use crate::config::MysqlConfig;
use crate::error::from_sqlx;
use crate::failover::Failover;
use crate::inspect::InspectStatements;
use crate::migrate::MysqlMigrator;
use crate::stash::ConnectionStash;

/// The retry policy of a storage on a Galera node unless one was set: 30 attempts, 5 ms to
/// 1 s apart.
pub fn galera_retry() -> RetryPolicy {
    RetryPolicy::new(
        30,
        std::time::Duration::from_millis(5),
        std::time::Duration::from_secs(1),
    )
}

/// Whether the server behind `pool` is a Galera node with replication on (`wsrep_on`;
/// MySQL has no such variable: false).
async fn is_galera(pool: &sqlx::MySqlPool) -> bool {
    sqlx::query_scalar::<_, i64>("SELECT @@wsrep_on")
        .fetch_one(pool)
        .await
        .is_ok_and(|on| on == 1)
}

/// FSM storage in a MySQL 8 or MariaDB 10.6+ database.
///
/// Cheap to clone: clones share the pool. See the crate docs for an example.
#[derive(Clone)]
pub struct MysqlStorage {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pool: MySqlPool,
    /// Connections holding per-key locks ([`Database::isolation`]).
    pub(crate) lock_pool: MySqlPool,
    /// The hosts, and the one the pools connect to.
    pub(crate) failover: Failover,
    sql: Statements,
    pub(crate) inspect: InspectStatements,
    pub(crate) config: MysqlConfig,
    pub(crate) closed: AtomicBool,
    /// Connections of calls that succeeded, kept for the next call (see `stash.rs`).
    pub(crate) stash: ConnectionStash,
}

/// Core's MySQL statements as sqlx strings (cheap to clone: shared, not copied).
struct Statements {
    get_record: SqlStr,
    get_state: SqlStr,
    get_data: SqlStr,
    upsert_state: SqlStr,
    clear_state: SqlStr,
    upsert_data: SqlStr,
    clear_data: SqlStr,
    delete_if_empty: SqlStr,
    upsert_record: SqlStr,
    lock_row: SqlStr,
    delete: SqlStr,
    count: SqlStr,
    take: SqlStr,
    /// `Some` with a TTL: run after `take` to remove an expired row.
    delete_expired: Option<SqlStr>,
}

/// A statement text from core as a sqlx string. Core builds every statement from validated,
/// quoted identifiers and binds every value, which is what `AssertSqlSafe` asserts.
pub(crate) fn sql(text: &str) -> SqlStr {
    AssertSqlSafe(Arc::<str>::from(text)).into_sql_str()
}

impl Statements {
    fn new(q: &MysqlQueries, ttl: bool) -> Self {
        Statements {
            get_record: sql(&q.row.get_record),
            get_state: sql(&q.row.get_state),
            get_data: sql(&q.row.get_data),
            upsert_state: sql(&q.row.upsert_state),
            clear_state: sql(&q.row.clear_state),
            upsert_data: sql(&q.row.upsert_data),
            clear_data: sql(&q.row.clear_data),
            delete_if_empty: sql(&q.delete_if_empty),
            upsert_record: sql(&q.row.upsert_record),
            lock_row: sql(&q.lock_row),
            delete: sql(&q.row.delete),
            count: sql(&q.row.count),
            take: sql(&q.take),
            delete_expired: ttl.then(|| sql(&q.delete_expired)),
        }
    }
}

impl std::fmt::Debug for MysqlStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlStorage")
            .field("server", &self.inner.config.to_string())
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
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
    pub async fn open(mut config: MysqlConfig) -> Result<Self> {
        config.options.check()?;
        fsmstore_core::check_duration("lock_timeout", config.lock_timeout, MAX_DURATION)?;
        let sql = Statements::new(
            &MysqlQueries::for_options(&config.options),
            config.options.ttl.is_some(),
        );
        let inspect = InspectStatements::new(&config.options.table, config.options.layout);
        let (pool, host) = config.pool_on_any(config.options.pool_max).await?;
        if !config.options.retry_is_set() && is_galera(&pool).await {
            // Every Galera node takes writes; two nodes' transactions on one key meet only
            // at commit, where one fails certification (1213, rolled back: safe to run
            // again). Under contention that takes more attempts than on one server
            // (measured: 48 writers over three nodes on one key, 20 % of calls failed after
            // 5 attempts, 1 % after 10, none after 20 on an idle machine, 1 in 1440 after 20
            // on a loaded one).
            config.options.retry = galera_retry();
        }
        let hosts = config.host_options();
        let lock_pool = config.lazy_pool(config.options.pool_max, hosts[host].clone());
        let failover = Failover::new(hosts, host);
        let storage = MysqlStorage {
            inner: Arc::new(Inner {
                pool,
                lock_pool,
                failover,
                sql,
                inspect,
                config,
                closed: AtomicBool::new(false),
                stash: ConnectionStash::default(),
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
        is_galera(&self.inner.pool).await
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
        let collation: Option<Option<String>> = sqlx::query_scalar(
            "SELECT COLLATION_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = 'id'",
        )
        .bind(table)
        .fetch_optional(&self.inner.pool)
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
    fn exact(&self, id: String) -> Result<String> {
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
        let isolation = crate::isolation::MysqlIsolation {
            pool: self.inner.lock_pool.clone(),
            options: self.inner.config.options.clone(),
            // Closed (the lock pool closes in the background): no more locks.
            local: fsmstore_core::LocalIsolation::new(self.inner.config.options.clone())
                .while_open({
                    let inner = Arc::clone(&self.inner);
                    move || !inner.closed.load(Ordering::Acquire)
                }),
        };
        Ok(
            Database::new("mysql", Arc::new(self.clone()), Some(migrator))
                .with_isolation(Arc::new(isolation)),
        )
    }

    /// The migrator of this storage's table; it reads through this storage's pool and takes
    /// the migration lock on a connection of its own.
    ///
    /// # Errors
    /// [`Error::Migration`] for a custom migration list that is not contiguous.
    pub fn migrator(&self) -> Result<MysqlMigrator> {
        Ok(
            MysqlMigrator::on_pool(self.inner.pool.clone(), &self.inner.config)?
                .sharing(self.clone()),
        )
    }

    /// The pool, for callers that want to run their own statements beside the storage.
    pub fn pool(&self) -> &MySqlPool {
        &self.inner.pool
    }
}

pub(crate) fn data_column(row: &MySqlRow, index: usize, id: &str) -> Result<Data> {
    let text = data_text(row, index).map_err(from_sqlx)?;
    text.map_or_else(|| Ok(Data::new()), |text| parse_data(id, &text))
}

/// The data column's text. MariaDB's JSON is LONGTEXT, MySQL 8's a JSON column type that
/// sqlx's `String` refuses to decode: read the text unchecked (both arrive as UTF-8 text)
/// and parse it with core's rules, so bad stored data is `CorruptData` on both servers.
fn data_text(row: &MySqlRow, index: usize) -> sqlx::Result<Option<String>> {
    row.try_get_unchecked(index)
}

async fn select_row(
    conn: &mut MySqlConnection,
    statement: &SqlStr,
    id: &str,
) -> sqlx::Result<Option<MySqlRow>> {
    sqlx::query(statement.clone())
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
}

/// Runs `statement` binding `id` and, when given, a second value.
async fn execute(
    conn: &mut MySqlConnection,
    statement: &SqlStr,
    id: &str,
    value: Option<&str>,
) -> sqlx::Result<u64> {
    let mut query = sqlx::query(statement.clone()).bind(id);
    if let Some(value) = value {
        query = query.bind(value);
    }
    Ok(query.execute(&mut *conn).await?.rows_affected())
}

/// What [`merge_locked`] merges: the statements, the row, the patch, and what becomes of
/// the state (core's [`plan_merge`] decides the write).
struct Merge<'a> {
    sql: &'a Statements,
    id: &'a str,
    patch: &'a Data,
    next: NextState<'a>,
}

/// `update_data` and `transition` in one transaction: core's `lock_row` upsert takes an
/// exclusive row lock from the start (inserting an empty row for a cold key, so there is no
/// shared-to-exclusive upgrade to deadlock on), then the row is read, merged in Rust with
/// `dict.update` semantics and written. Concurrent updates of one key queue on the row
/// lock. Everything before `COMMIT` is rolled back if the connection dies. The inner
/// `Result` is stored data that is not an object.
async fn merge_locked(conn: &mut MySqlConnection, m: &Merge<'_>) -> Attempt<Result<Data>> {
    let (sql, id) = (m.sql, m.id);
    let mut tx = conn.begin().await.before()?;
    execute(&mut tx, &sql.lock_row, id, None).await.before()?;
    // State and data read once under the row lock (an expired row reads as absent) and
    // written back whole: expiry is decided by this one read.
    let row = select_row(&mut tx, &sql.get_record, id).await.before()?;
    let (old_state, stored) = match row {
        Some(row) => match (row.try_get(0), data_text(&row, 1)) {
            (Ok(state), Ok(stored)) => (state, stored),
            // Dropping the transaction rolls back the lock_row insert.
            (Err(err), _) | (_, Err(err)) => return Ok(Err(from_sqlx(err))),
        },
        None => (None, None),
    };
    // Core plans the write; fields the patch does not name keep their stored text.
    let plan = match plan_merge(id, old_state, stored.as_deref(), m.patch, m.next) {
        Ok(plan) => plan,
        Err(err) => return Ok(Err(err)),
    };
    match &plan.write {
        MergeWrite::Upsert { state, data } => {
            upsert_record(&mut tx, sql, id, state.as_deref(), data).await
        }
        MergeWrite::Delete => execute(&mut tx, &sql.delete, id, None).await,
    }
    .before()?;
    tx.commit().await.applying()?;
    Ok(Ok(plan.data))
}

/// Writes state and data of `id` together.
async fn upsert_record(
    conn: &mut MySqlConnection,
    sql: &Statements,
    id: &str,
    state: Option<&str>,
    data: &str,
) -> sqlx::Result<u64> {
    let query = sqlx::query(sql.upsert_record.clone())
        .bind(id)
        .bind(state)
        .bind(data);
    Ok(query.execute(&mut *conn).await?.rows_affected())
}

/// Runs `clear` (a statement emptying state or data) and core's `delete_if_empty` in one
/// transaction, so a row holding nothing never stays behind.
async fn clear_field(
    conn: &mut MySqlConnection,
    sql: &Statements,
    clear: &SqlStr,
    id: &str,
) -> Attempt<()> {
    let mut tx = conn.begin().await.before()?;
    execute(&mut tx, clear, id, None).await.before()?;
    execute(&mut tx, &sql.delete_if_empty, id, None)
        .await
        .before()?;
    tx.commit().await.applying()
}

impl MysqlStorage {
    /// A read of the row of `id` with `statement`.
    async fn select(
        &self,
        operation: &'static str,
        statement: &SqlStr,
        id: &str,
    ) -> Result<Option<MySqlRow>> {
        self.call(
            operation,
            Access::Read,
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
        statement: &SqlStr,
        id: &str,
        value: Option<&str>,
    ) -> Result<u64> {
        let args = (statement, id, value);
        self.call(
            operation,
            Access::Write,
            args,
            |conn, (statement, id, value)| {
                Box::pin(async move { execute(conn, statement, id, *value).await.applying() })
            },
        )
        .await
    }

    /// `clear` and `delete_if_empty` in one transaction.
    async fn clear_field(&self, operation: &'static str, clear: &SqlStr, id: &str) -> Result<()> {
        let args = (&self.inner.sql, clear, id);
        self.call(operation, Access::Write, args, |conn, (sql, clear, id)| {
            Box::pin(clear_field(conn, sql, clear, id))
        })
        .await
    }

    /// A read-merge-write under the row lock.
    async fn merge(&self, operation: &'static str, merge: Merge<'_>) -> Result<Data> {
        self.call(operation, Access::Write, merge, |conn, merge| {
            Box::pin(merge_locked(conn, merge))
        })
        .await?
    }
}

#[async_trait]
impl Storage for MysqlStorage {
    async fn get_state(&self, key: &StorageKey) -> Result<Option<String>> {
        let id = self.exact(self.options().row_id(key)?)?;
        let row = self
            .select("get_state", &self.inner.sql.get_state, &id)
            .await?;
        match row {
            Some(row) => row.try_get(0).map_err(from_sqlx),
            None => Ok(None),
        }
    }

    async fn set_state(&self, key: &StorageKey, state: Option<&str>) -> Result<()> {
        let sql = &self.inner.sql;
        let id = self.exact(self.options().row_id(key)?)?;
        match state {
            Some(state) => {
                validate_state(state)?;
                self.write("set_state", &sql.upsert_state, &id, Some(state))
                    .await
                    .map(drop)
            }
            None => self.clear_field("set_state", &sql.clear_state, &id).await,
        }
    }

    async fn get_data(&self, key: &StorageKey) -> Result<Data> {
        let id = self.exact(self.options().row_id(key)?)?;
        let row = self
            .select("get_data", &self.inner.sql.get_data, &id)
            .await?;
        match row {
            Some(row) => data_column(&row, 0, &id),
            None => Ok(Data::new()),
        }
    }

    async fn set_data(&self, key: &StorageKey, data: &Data) -> Result<()> {
        let sql = &self.inner.sql;
        let id = self.exact(self.options().row_id(key)?)?;
        if data.is_empty() {
            return self.clear_field("set_data", &sql.clear_data, &id).await;
        }
        let text = validate_data(&id, data, self.options().max_data_bytes)?;
        self.write("set_data", &sql.upsert_data, &id, Some(&text))
            .await
            .map(drop)
    }

    async fn update_data(&self, key: &StorageKey, patch: &Data) -> Result<Data> {
        if patch.is_empty() {
            return self.get_data(key).await;
        }
        let id = self.exact(self.options().row_id(key)?)?;
        // The limit applies to the patch, as on backends that merge inside the database.
        validate_data(&id, patch, self.options().max_data_bytes)?;
        let merge = Merge {
            sql: &self.inner.sql,
            id: &id,
            patch,
            next: NextState::Keep,
        };
        self.merge("update_data", merge).await
    }

    async fn transition(
        &self,
        key: &StorageKey,
        state: Option<&str>,
        patch: &Data,
    ) -> Result<Data> {
        let id = self.exact(self.options().transition_row_id(key, state, patch)?)?;
        let merge = Merge {
            sql: &self.inner.sql,
            id: &id,
            patch,
            next: NextState::Set(state),
        };
        self.merge("transition", merge).await
    }

    async fn set_record(&self, key: &StorageKey, state: Option<&str>, data: &Data) -> Result<()> {
        let (id, text) = self.options().record_row_id(key, state, data)?;
        let id = self.exact(id)?;
        if state.is_none() && data.is_empty() {
            return self
                .write("set_record", &self.inner.sql.delete, &id, None)
                .await
                .map(drop);
        }
        let args = (&self.inner.sql, id.as_str(), state, text.as_str());
        self.call(
            "set_record",
            Access::Write,
            args,
            |conn, (sql, id, state, text)| {
                Box::pin(async move {
                    upsert_record(conn, sql, id, *state, text)
                        .await
                        .map(drop)
                        .applying()
                })
            },
        )
        .await
    }

    async fn get_value(&self, key: &StorageKey, field: &str) -> Result<Option<Value>> {
        validate_field(field)?;
        // Core has no MySQL get_value: JSON paths can not name every field exactly
        // (quotes, dots, `*`) on both servers. Read the object and pick the field.
        Ok(self.get_data(key).await?.remove(field))
    }

    async fn get_record(&self, key: &StorageKey) -> Result<Record> {
        let id = self.exact(self.options().row_id(key)?)?;
        let row = self
            .select("get_record", &self.inner.sql.get_record, &id)
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
        let deleted = self.write("clear", &self.inner.sql.take, &id, None).await?;
        if let Some(expired) = &self.inner.sql.delete_expired {
            self.write("clear", expired, &id, None).await?;
        }
        Ok(deleted > 0)
    }

    async fn key_count(&self) -> Result<u64> {
        let count: i64 = self
            .call(
                "key_count",
                Access::Read,
                &self.inner.sql.count,
                |conn, count| {
                    Box::pin(async move {
                        sqlx::query_scalar((*count).clone())
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
        &self.inner.config.options
    }

    async fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        // sqlx's close waits for every checked-out connection: hand the stash back first.
        self.inner.stash.drain();
        self.inner.pool.close().await;
        // Held lock guards keep their connections until dropped: close the lock pool in
        // the background (idle connections at once, held ones when their guards go).
        let lock_pool = self.inner.lock_pool.clone();
        tokio::spawn(async move { lock_pool.close().await });
        Ok(())
    }
}
