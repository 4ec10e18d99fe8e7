//! [`PgStorage`]: the [`Storage`] implementation.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use fsmstore_core::coalesce::{Answer, CoalesceStats, Coalescer};
use fsmstore_core::sql::{InspectQueries, PostgresQueries};
use fsmstore_core::{
    validate_data, validate_field, validate_state, Data, Database, Dialect, Error, Migrator,
    Record, Replay, Result, SchemaPolicy, Storage, StorageKey, StorageOptions,
};
use serde_json::Value;
use tokio_postgres::types::Json;

use crate::config::PgConfig;
use crate::connections::Connections;
use crate::error::{corrupt_text, from_pg};
use crate::migrate::PgMigrator;
use crate::params::p;
use crate::writes::{data_of, PgWrite, PgWriter};

/// FSM storage in a PostgreSQL database, over a connection pool.
///
/// Cheap to clone: clones share the pool. A lost connection makes the calls that used it
/// fail with a transient error; the pool replaces the connection on its next checkout.
#[derive(Clone)]
pub struct PgStorage {
    inner: Arc<Inner>,
}

struct Inner {
    conns: Arc<Connections>,
    queries: Arc<PostgresQueries>,
    inspect: InspectQueries,
    /// The writes that go together when several wait (see [`fsmstore_core::coalesce`]).
    writes: Arc<Coalescer<PgWriter>>,
}

impl std::fmt::Debug for PgStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStorage")
            .field("connections", &self.inner.conns)
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
        let queries = Arc::new(PostgresQueries::for_options(&config.options));
        let batches = config.options.effective_write_batches();
        let conns = Arc::new(Connections::new(config)?);
        let writer = PgWriter {
            conns: Arc::clone(&conns),
            queries: Arc::clone(&queries),
        };
        let storage = PgStorage {
            inner: Arc::new(Inner {
                queries,
                inspect: InspectQueries::for_layout(
                    Dialect::Postgres,
                    &conns.config().options.table,
                    conns.config().options.layout,
                ),
                writes: Coalescer::new(writer, batches),
                conns,
            }),
        };
        let checked = match (storage.options().schema, storage.migrator()) {
            // Nothing to check: still fail now, not at the first call, if the server is
            // unreachable.
            (SchemaPolicy::Trust, _) => storage.inner.conns.client().await.map(drop),
            (policy, Ok(migrator)) => {
                let layout = storage.options().layout;
                migrator.apply_layout_policy(policy, layout).await
            }
            (_, Err(err)) => Err(err),
        };
        if let Err(err) = checked {
            storage.inner.conns.close();
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
        let isolation = crate::isolation::isolation(&self.inner.conns);
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
        PgMigrator::sharing(Arc::clone(&self.inner.conns))
    }

    /// The settings this storage was opened with.
    pub fn config(&self) -> &PgConfig {
        self.inner.conns.config()
    }

    /// Runs `write`: alone, or with the writes waiting beside it.
    async fn write<T: Answer>(&self, write: PgWrite<'_>) -> Result<T> {
        let writes = &self.inner.writes;
        let alone = || async { writes.backend().one(&write).await.and_then(T::from_written) };
        writes.write(alone, || write.to_owned_write()).await
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
            .inner
            .conns
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
            self.inner
                .conns
                .execute(operation, &q.delete_if_empty, &[p(&id)])
                .await?;
        }
        Ok(data)
    }
}

#[async_trait]
impl Storage for PgStorage {
    async fn get_state(&self, key: &StorageKey) -> Result<Option<String>> {
        let id = self.options().row_id(key)?;
        let row = self
            .inner
            .conns
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
        match state {
            Some(state) => {
                validate_state(state)?;
                self.write(PgWrite::SetState {
                    id,
                    state: state.to_owned(),
                })
                .await
            }
            // One statement: deletes the row when its data is empty, else clears the state.
            None => self.clear_state("set_state", &id, false).await.map(drop),
        }
    }

    async fn get_data(&self, key: &StorageKey) -> Result<Data> {
        let id = self.options().row_id(key)?;
        let row = self
            .inner
            .conns
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
                .inner
                .conns
                .query_opt("set_data", Replay::Unsafe, &q.row.clear_data, &[p(&id)])
                .await?;
            let no_state: bool = match row {
                Some(row) => row.try_get(0).map_err(from_pg)?,
                None => false,
            };
            if no_state {
                // A clear of the state committed meanwhile: the row holds nothing now.
                self.inner
                    .conns
                    .execute("set_data", &q.delete_if_empty, &[p(&id)])
                    .await?;
            }
            return Ok(());
        }
        validate_data(&id, data, self.options().max_data_bytes)?;
        self.write(PgWrite::SetData {
            id,
            data: Json(Cow::Borrowed(data)),
        })
        .await
    }

    async fn update_data(&self, key: &StorageKey, patch: &Data) -> Result<Data> {
        if patch.is_empty() {
            return self.get_data(key).await;
        }
        let id = self.options().row_id(key)?;
        validate_data(&id, patch, self.options().max_data_bytes)?;
        self.write(PgWrite::UpdateData {
            id,
            patch: Json(Cow::Borrowed(patch)),
        })
        .await
    }

    async fn transition(
        &self,
        key: &StorageKey,
        state: Option<&str>,
        patch: &Data,
    ) -> Result<Data> {
        let id = self.options().transition_row_id(key, state, patch)?;
        // No state and nothing to merge may leave the row empty: `clear_state` deletes it
        // then, in the same statement, and returns the data otherwise.
        if state.is_none() && patch.is_empty() {
            return self.clear_state("transition", &id, true).await;
        }
        self.write(PgWrite::Transition {
            id,
            state: state.map(str::to_owned),
            patch: Json(Cow::Borrowed(patch)),
        })
        .await
    }

    async fn set_record(&self, key: &StorageKey, state: Option<&str>, data: &Data) -> Result<()> {
        let (id, _) = self.options().record_row_id(key, state, data)?;
        let q = &self.inner.queries.row;
        if state.is_none() && data.is_empty() {
            return self
                .inner
                .conns
                .execute("set_record", &q.delete, &[p(&id)])
                .await
                .map(drop);
        }
        self.write(PgWrite::SetRecord {
            id,
            state: state.map(str::to_owned),
            data: Json(Cow::Borrowed(data)),
        })
        .await
    }

    async fn get_value(&self, key: &StorageKey, field: &str) -> Result<Option<Value>> {
        validate_field(field)?;
        let id = self.options().row_id(key)?;
        let row = self
            .inner
            .conns
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
            .inner
            .conns
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
        self.write(PgWrite::Clear { id }).await
    }

    async fn key_count(&self) -> Result<u64> {
        let row = self
            .inner
            .conns
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
        &self.inner.conns.config().options
    }

    fn write_stats(&self) -> Option<CoalesceStats> {
        Some(self.inner.writes.stats())
    }

    async fn close(&self) -> Result<()> {
        self.inner.conns.close();
        Ok(())
    }
}

impl PgStorage {
    /// The connections, for the whole-table operations.
    pub(crate) fn connections(&self) -> &Connections {
        &self.inner.conns
    }

    /// Core's whole-table statements of this table.
    pub(crate) fn inspect_queries(&self) -> &InspectQueries {
        &self.inner.inspect
    }
}
