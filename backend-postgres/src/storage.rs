//! [`PgStorage`]: the [`Storage`] implementation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::{Object, Pool};
use fsmstore_core::sql::{InspectQueries, PostgresQueries};
use fsmstore_core::{
    data_from_value, retry, validate_data, validate_field, validate_state, Data, Database, Dialect,
    Error, Inspect, Migrator, Record, Result, SchemaPolicy, Storage, StorageKey, StorageOptions,
    StoredRow, TableStats,
};
use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio_postgres::types::Json;
use tokio_postgres::{Row, Statement};

use crate::config::PgConfig;
use crate::error::{classify, corrupt_text, from_pg, from_pool, Failure};
use crate::migrate::PgMigrator;
use crate::params::{p, untyped, Param};
use crate::pool::build_pool;

/// FSM storage in a PostgreSQL database, over a connection pool.
///
/// Cheap to clone: clones share the pool. A lost connection makes the calls that used it
/// fail with a transient error; the pool replaces the connection on its next checkout.
#[derive(Clone)]
pub struct PgStorage {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// Connections holding per-key locks ([`Database::isolation`]).
    lock_pool: Pool,
    queries: PostgresQueries,
    inspect: InspectQueries,
    config: PgConfig,
    closed: AtomicBool,
}

impl std::fmt::Debug for PgStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStorage")
            .field("config", &self.inner.config)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl PgStorage {
    /// Connects and applies the schema policy of `config.options.schema`: `Verify`
    /// (default) refuses a schema that is not at head, `Upgrade` migrates first.
    ///
    /// # Errors
    /// [`Error::Connection`] when the server is unreachable (transient);
    /// [`Error::SchemaOutdated`] naming the command to run, and the other schema errors.
    pub async fn open(config: PgConfig) -> Result<Self> {
        config.options.check()?;
        config.check_pooler()?;
        let pool = build_pool(&config)?;
        let lock_pool = build_pool(&config)?;
        let storage = PgStorage {
            inner: Arc::new(Inner {
                lock_pool,
                queries: PostgresQueries::for_options(&config.options),
                inspect: InspectQueries::for_layout(
                    Dialect::Postgres,
                    &config.options.table,
                    config.options.layout,
                ),
                pool,
                config,
                closed: AtomicBool::new(false),
            }),
        };
        let checked = match (storage.inner.config.options.schema, storage.migrator()) {
            // Nothing to check: still fail now, not at the first call, if the server is
            // unreachable.
            (SchemaPolicy::Trust, _) => storage.client().await.map(drop),
            (policy, Ok(migrator)) => {
                let layout = storage.inner.config.options.layout;
                migrator.apply_layout_policy(policy, layout).await
            }
            (_, Err(err)) => Err(err),
        };
        if let Err(err) = checked {
            storage.inner.pool.close();
            storage.inner.lock_pool.close();
            return Err(err);
        }
        Ok(storage)
    }

    /// Opens `url` (see [`PgConfig::from_url`]).
    ///
    /// # Errors
    /// As [`PgConfig::from_url`] and [`PgStorage::open`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::open(PgConfig::from_url(url)?).await
    }

    /// One [`Database`] handle over this storage's connections: the storage, its
    /// whole-table operations and its migrator.
    ///
    /// # Errors
    /// [`Error::Migration`] for a custom migration list that is not contiguous.
    pub fn database(&self) -> Result<Database> {
        let migrator: Arc<dyn Migrator> = Arc::new(self.migrator()?);
        let isolation = crate::isolation::isolation(
            self.inner.lock_pool.clone(),
            &self.inner.config.options,
            self.inner.config.pooler,
        );
        Ok(
            Database::new("postgres", Arc::new(self.clone()), Some(migrator))
                .with_isolation(isolation),
        )
    }

    /// The migrator of this storage's table, sharing its pool for reads.
    ///
    /// # Errors
    /// [`Error::Migration`] for a custom migration list that is not contiguous.
    pub fn migrator(&self) -> Result<PgMigrator> {
        PgMigrator::with_pool(self.inner.pool.clone(), self.inner.config.clone())
    }

    /// The settings this storage was opened with.
    pub fn config(&self) -> &PgConfig {
        &self.inner.config
    }

    async fn client(&self) -> Result<Object> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        self.inner.pool.get().await.map_err(from_pool)
    }

    /// Runs `op` on `sql` (prepared once per connection, or an unnamed statement behind a
    /// transaction pooler) with `params`: conflicts again
    /// under the retry policy; a connection that fails before the statement could apply
    /// anything is replaced (at most `pool_max + 1` times); a write whose connection is lost
    /// while it runs is [`Error::OutcomeUnknown`], never replayed.
    async fn run<T>(
        &self,
        operation: &'static str,
        replay: Replay,
        sql: &str,
        params: &[Param<'_>],
        op: PgOp<T>,
    ) -> Result<T> {
        let policy = self.options().retry;
        retry(&policy, operation, || {
            self.attempt(operation, replay, sql, params, op)
        })
        .await
    }

    async fn attempt<T>(
        &self,
        operation: &'static str,
        replay: Replay,
        sql: &str,
        params: &[Param<'_>],
        op: PgOp<T>,
    ) -> Result<T> {
        let mut lost = None;
        for _ in 0..=self.options().pool_max {
            // Waiting for a connection already retried until the connect timeout.
            let client = self.client().await?;
            // Preparing runs nothing: any failure here leaves the row as it was. Behind a
            // transaction pooler nothing is prepared: the unnamed statement is parsed,
            // bound and run in one round trip, on whichever server connection it gets.
            // Every answer is waited for at most `call_timeout`, whatever the server does:
            // a host gone silent (packets dropped, nothing refused) is left as a dead one
            // is, its connection closed.
            let deadline = self.options().call_timeout;
            let prepared = if self.inner.config.pooler.unnamed_statements() {
                None
            } else {
                match tokio::time::timeout(deadline, client.prepare_cached(sql)).await {
                    Err(_) => {
                        drop(Object::take(client));
                        return Err(Error::no_answer(operation, "PostgreSQL", deadline, false));
                    }
                    Ok(Ok(statement)) => Some(statement),
                    Ok(Err(err)) if classify(&err) != Failure::Other => {
                        lost = Some(err);
                        continue;
                    }
                    Ok(Err(err)) => return Err(from_pg(err)),
                }
            };
            let result =
                match tokio::time::timeout(deadline, op(&client, prepared.as_ref(), sql, params))
                    .await
                {
                    Ok(result) => result,
                    Err(_) => {
                        drop(Object::take(client));
                        return Err(Error::no_answer(
                            operation,
                            "PostgreSQL",
                            deadline,
                            replay == Replay::Unsafe,
                        ));
                    }
                };
            match result {
                Ok(value) => return Ok(value),
                Err(err) => match (classify(&err), replay) {
                    (Failure::ConnectionLost, Replay::Unsafe) => {
                        return Err(Error::outcome_unknown(operation, err))
                    }
                    (Failure::ConnectionLost | Failure::SessionAborted, _) => {
                        tracing::debug!(operation, error = %err, "connection lost; running the call on another one");
                        lost = Some(err);
                    }
                    (Failure::Other, _) => return Err(from_pg(err)),
                },
            }
        }
        Err(lost.map_or_else(
            || Error::connection("no live PostgreSQL connection", None),
            from_pg,
        ))
    }

    /// Clears the state of `id` (deleting the row when its data is empty, in the same
    /// statement) and, for `transition`, returns the data it keeps (`set_state(None)` never
    /// reads it); removes the row if a clear of the data committed meanwhile left it empty.
    async fn clear_state(
        &self,
        operation: &'static str,
        id: &str,
        returns_data: bool,
    ) -> Result<Data> {
        let q = &self.inner.queries;
        let statement = if returns_data {
            &q.clear_state_data
        } else {
            &q.row.clear_state
        };
        let row = self
            .query_opt(operation, Replay::Unsafe, statement, &[p(&id)])
            .await
            .map_err(|err| corrupt_text(id, err))?;
        let Some(row) = row else {
            // Deleted (no data left) or absent.
            return Ok(Data::new());
        };
        let (data, emptied) = if returns_data {
            let data = data_of(id, &row, 0)?;
            let emptied = data.is_empty();
            (data, emptied)
        } else {
            (Data::new(), row.try_get::<_, bool>(0).map_err(from_pg)?)
        };
        if emptied {
            // A clear of the data committed meanwhile: the row holds nothing now.
            self.execute(operation, &q.delete_if_empty, &[p(&id)])
                .await?;
        }
        Ok(data)
    }

    /// A statement returning at most one row.
    async fn query_opt(
        &self,
        operation: &'static str,
        replay: Replay,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Option<Row>> {
        self.run(
            operation,
            replay,
            sql,
            params,
            |client, statement, sql, params| {
                Box::pin(async move {
                    match statement {
                        Some(statement) => client.query_opt(statement, &untyped(params)).await,
                        None => client.query_typed_opt(sql, params).await,
                    }
                })
            },
        )
        .await
    }

    /// A write returning the rows it changed.
    async fn execute(
        &self,
        operation: &'static str,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<u64> {
        self.run(operation, Replay::Unsafe, sql, params, execute_op)
            .await
    }

    /// A read returning rows.
    async fn query(
        &self,
        operation: &'static str,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>> {
        self.run(
            operation,
            Replay::Safe,
            sql,
            params,
            |client, statement, sql, params| {
                Box::pin(async move {
                    match statement {
                        Some(statement) => client.query(statement, &untyped(params)).await,
                        None => client.query_typed(sql, params).await,
                    }
                })
            },
        )
        .await
    }
}

/// Whether a statement may run again after its connection was lost mid-statement: a read
/// (or a write whose replay changes nothing, like a purge batch) may; a write may not, its
/// outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    Safe,
    Unsafe,
}

/// One statement on a pooled connection: the prepared statement, or `None` to run `sql`
/// unnamed (behind a transaction pooler). A plain function (no captures), so its future
/// borrows only its arguments.
type PgOp<T> = for<'c> fn(
    &'c Object,
    Option<&'c Statement>,
    &'c str,
    &'c [Param<'c>],
) -> BoxFuture<'c, std::result::Result<T, tokio_postgres::Error>>;

/// A write returning the rows it changed.
fn execute_op<'c>(
    client: &'c Object,
    statement: Option<&'c Statement>,
    sql: &'c str,
    params: &'c [Param<'c>],
) -> BoxFuture<'c, std::result::Result<u64, tokio_postgres::Error>> {
    Box::pin(async move {
        match statement {
            Some(statement) => client.execute(statement, &untyped(params)).await,
            None => client.execute_typed(sql, params).await,
        }
    })
}

/// The data column of `row`. A value that does not decode (a number past `f64`, which
/// `JSONB` holds as `numeric`) is corrupt data, as on every backend: the connection is
/// fine.
fn data_of(id: &str, row: &Row, column: usize) -> Result<Data> {
    let value: Value = row.try_get(column).map_err(|err| Error::CorruptData {
        key: id.to_owned(),
        reason: err.to_string(),
    })?;
    data_from_value(id, value)
}

#[async_trait]
impl Storage for PgStorage {
    async fn get_state(&self, key: &StorageKey) -> Result<Option<String>> {
        let id = self.options().row_id(key)?;
        let row = self
            .query_opt(
                "get_state",
                Replay::Safe,
                &self.inner.queries.row.get_state,
                &[p(&id)],
            )
            .await?;
        row.map_or(Ok(None), |row| row.try_get(0).map_err(from_pg))
    }

    async fn set_state(&self, key: &StorageKey, state: Option<&str>) -> Result<()> {
        let id = self.options().row_id(key)?;
        let q = &self.inner.queries;
        match state {
            Some(state) => {
                validate_state(state)?;
                self.execute("set_state", &q.row.upsert_state, &[p(&id), p(&state)])
                    .await
                    .map(drop)
            }
            // One statement: deletes the row when its data is empty, else clears the state.
            None => self.clear_state("set_state", &id, false).await.map(drop),
        }
    }

    async fn get_data(&self, key: &StorageKey) -> Result<Data> {
        let id = self.options().row_id(key)?;
        let row = self
            .query_opt(
                "get_data",
                Replay::Safe,
                &self.inner.queries.row.get_data,
                &[p(&id)],
            )
            .await
            .map_err(|err| corrupt_text(&id, err))?;
        row.map_or_else(|| Ok(Data::new()), |row| data_of(&id, &row, 0))
    }

    async fn set_data(&self, key: &StorageKey, data: &Data) -> Result<()> {
        let id = self.options().row_id(key)?;
        let q = &self.inner.queries;
        if data.is_empty() {
            let row = self
                .query_opt("set_data", Replay::Unsafe, &q.row.clear_data, &[p(&id)])
                .await?;
            let no_state: bool = match row {
                Some(row) => row.try_get(0).map_err(from_pg)?,
                None => false,
            };
            if no_state {
                // A clear of the state committed meanwhile: the row holds nothing now.
                self.execute("set_data", &q.delete_if_empty, &[p(&id)])
                    .await?;
            }
            return Ok(());
        }
        validate_data(&id, data, self.options().max_data_bytes)?;
        self.execute("set_data", &q.row.upsert_data, &[p(&id), p(&Json(data))])
            .await
            .map(drop)
    }

    async fn update_data(&self, key: &StorageKey, patch: &Data) -> Result<Data> {
        if patch.is_empty() {
            return self.get_data(key).await;
        }
        let id = self.options().row_id(key)?;
        validate_data(&id, patch, self.options().max_data_bytes)?;
        let row = self
            .query_opt(
                "update_data",
                Replay::Unsafe,
                &self.inner.queries.merge_data,
                &[p(&id), p(&Json(patch))],
            )
            .await
            .map_err(|err| corrupt_text(&id, err))?;
        match row {
            Some(row) => data_of(&id, &row, 0),
            None => Err(Error::database(false, "INSERT … RETURNING returned no row")),
        }
    }

    async fn transition(
        &self,
        key: &StorageKey,
        state: Option<&str>,
        patch: &Data,
    ) -> Result<Data> {
        let id = self.options().transition_row_id(key, state, patch)?;
        let q = &self.inner.queries;
        // No state and nothing to merge may leave the row empty: `clear_state` deletes it
        // then, in the same statement, and returns the data otherwise.
        if state.is_none() && patch.is_empty() {
            return self.clear_state("transition", &id, true).await;
        }
        let row = {
            self.query_opt(
                "transition",
                Replay::Unsafe,
                &q.transition,
                &[p(&id), p(&state), p(&Json(patch))],
            )
            .await
            .map_err(|err| corrupt_text(&id, err))?
        };
        row.map_or_else(|| Ok(Data::new()), |row| data_of(&id, &row, 0))
    }

    async fn set_record(&self, key: &StorageKey, state: Option<&str>, data: &Data) -> Result<()> {
        let (id, _) = self.options().record_row_id(key, state, data)?;
        let q = &self.inner.queries.row;
        if state.is_none() && data.is_empty() {
            return self
                .execute("set_record", &q.delete, &[p(&id)])
                .await
                .map(drop);
        }
        self.execute(
            "set_record",
            &q.upsert_record,
            &[p(&id), p(&state), p(&Json(data))],
        )
        .await
        .map(drop)
    }

    async fn get_value(&self, key: &StorageKey, field: &str) -> Result<Option<Value>> {
        validate_field(field)?;
        let id = self.options().row_id(key)?;
        let row = self
            .query_opt(
                "get_value",
                Replay::Safe,
                &self.inner.queries.get_value,
                &[p(&id), p(&field)],
            )
            .await
            .map_err(|err| corrupt_text(&id, err))?;
        row.map_or(Ok(None), |row| {
            row.try_get(0).map_err(|err| Error::CorruptData {
                key: id.clone(),
                reason: err.to_string(),
            })
        })
    }

    async fn get_record(&self, key: &StorageKey) -> Result<Record> {
        let id = self.options().row_id(key)?;
        let row = self
            .query_opt(
                "get_record",
                Replay::Safe,
                &self.inner.queries.row.get_record,
                &[p(&id)],
            )
            .await
            .map_err(|err| corrupt_text(&id, err))?;
        match row {
            Some(row) => Ok(Record {
                state: row.try_get(0).map_err(from_pg)?,
                data: data_of(&id, &row, 1)?,
            }),
            None => Ok(Record::default()),
        }
    }

    async fn clear(&self, key: &StorageKey) -> Result<bool> {
        let id = self.options().row_id(key)?;
        // One row back when a row was deleted: whether it was fresh (an expired row is
        // absent, so clearing it finds nothing).
        let row = self
            .query_opt("clear", Replay::Unsafe, &self.inner.queries.take, &[p(&id)])
            .await?;
        match row {
            Some(row) => row.try_get(0).map_err(from_pg),
            None => Ok(false),
        }
    }

    async fn key_count(&self) -> Result<u64> {
        let row = self
            .query_opt(
                "key_count",
                Replay::Safe,
                &self.inner.queries.row.count,
                &[],
            )
            .await?;
        let count: i64 = match row {
            Some(row) => row.try_get(0).map_err(from_pg)?,
            None => 0,
        };
        Ok(count.max(0) as u64)
    }

    fn options(&self) -> &StorageOptions {
        &self.inner.config.options
    }

    async fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.pool.close();
        self.inner.lock_pool.close();
        Ok(())
    }
}

fn stored(row: &Row) -> Result<StoredRow> {
    let id: String = row.try_get(0).map_err(from_pg)?;
    // The data column as text (core's inspect statements cast it), parsed here: one row
    // that does not read is reported on its own.
    let text: Option<String> = row.try_get(2).map_err(from_pg)?;
    Ok(StoredRow::from_text(
        id,
        row.try_get(1).map_err(from_pg)?,
        text.as_deref(),
        row.try_get(3).map_err(from_pg)?,
    ))
}

#[async_trait]
impl Inspect for PgStorage {
    async fn list_rows(
        &self,
        state: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<StoredRow>> {
        let q = &self.inner.inspect;
        let after = after.unwrap_or_default();
        let limit = limit.min(i64::MAX as u64) as i64;
        let rows = match state {
            Some(state) => {
                self.query(
                    "list_rows",
                    &q.list_by_state,
                    &[p(&state), p(&after), p(&limit)],
                )
                .await?
            }
            None => {
                self.query("list_rows", &q.list, &[p(&after), p(&limit)])
                    .await?
            }
        };
        rows.iter().map(stored).collect()
    }

    async fn get_row(&self, id: &str) -> Result<Option<StoredRow>> {
        let row = self
            .query_opt(
                "get_row",
                Replay::Safe,
                &self.inner.inspect.get_row,
                &[p(&id)],
            )
            .await?;
        row.as_ref().map(stored).transpose()
    }

    async fn stats(&self) -> Result<TableStats> {
        let q = &self.inner.inspect;
        let range = self
            .query_opt("stats", Replay::Safe, &q.time_range, &[])
            .await?;
        let (rows, oldest_ms, newest_ms): (i64, Option<i64>, Option<i64>) = match range {
            Some(row) => (
                row.try_get(0).map_err(from_pg)?,
                row.try_get(1).map_err(from_pg)?,
                row.try_get(2).map_err(from_pg)?,
            ),
            None => (0, None, None),
        };
        let per_state = self
            .query("stats", &q.count_by_state, &[])
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get::<_, i64>(1)? as u64)))
            .collect::<std::result::Result<Vec<_>, tokio_postgres::Error>>()
            .map_err(from_pg)?;
        Ok(TableStats {
            rows: rows as u64,
            per_state,
            oldest_ms,
            newest_ms,
        })
    }

    async fn database_now_ms(&self) -> Result<i64> {
        let row = self
            .query_opt(
                "database_now_ms",
                Replay::Safe,
                &self.inner.inspect.now_ms,
                &[],
            )
            .await?;
        match row {
            Some(row) => row.try_get(0).map_err(from_pg),
            None => Err(Error::database(false, "SELECT now() returned no row")),
        }
    }

    async fn count_older_than(&self, cutoff_ms: i64) -> Result<u64> {
        self.options().require_updated_at("purge --older-than")?;
        let row = self
            .query_opt(
                "count_older_than",
                Replay::Safe,
                &self.inner.inspect.count_older,
                &[p(&cutoff_ms)],
            )
            .await?;
        let count: i64 = match row {
            Some(row) => row.try_get(0).map_err(from_pg)?,
            None => 0,
        };
        Ok(count as u64)
    }

    async fn purge_older_than(&self, cutoff_ms: i64, batch: u64) -> Result<u64> {
        self.options().require_updated_at("purge --older-than")?;
        let batch = batch.min(i64::MAX as u64) as i64;
        // Replay-safe: running the batch again only deletes more rows that are too old.
        let sql = &self.inner.inspect.purge_batch;
        self.run(
            "purge_older_than",
            Replay::Safe,
            sql,
            &[p(&cutoff_ms), p(&batch)],
            execute_op,
        )
        .await
    }
}
