//! [`PgMigrator`]: runs the planner's steps under an advisory lock held by a dedicated
//! connection. Each migration and its bookkeeping row commit in one transaction.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use fsmstore_core::sql::{drop_table_if_exists, MigrationLock, VersionQueries};
use fsmstore_core::{
    drive_migration, AppliedMigration, Dialect, Direction, MigrationPlan, MigrationReport,
    MigrationSet, MigrationTarget, Migrator, Result, StampPlan, StepOutcome,
};
use tokio::sync::Mutex;
use tokio_postgres::{Client, GenericClient};

use crate::config::PgConfig;
use crate::error::{from_pg, from_pool};
use crate::storage::build_pool;

/// Migrates one FSM table in a PostgreSQL database.
#[derive(Clone)]
pub struct PgMigrator {
    pool: Pool,
    inner: Arc<Inner>,
}

struct Inner {
    config: PgConfig,
    set: MigrationSet,
    versions: VersionQueries,
    lock: MigrationLock,
}

impl std::fmt::Debug for PgMigrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgMigrator")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl PgMigrator {
    /// A migrator for `config` (no schema check: this is how an outdated schema is
    /// upgraded). Connects lazily.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad pool setting, [`Error::Migration`] for a custom
    /// migration list that is not contiguous.
    pub fn new(config: PgConfig) -> Result<Self> {
        let pool = build_pool(&config.clone().pool_max(2))?;
        Self::with_pool(pool, config)
    }

    pub(crate) fn with_pool(pool: Pool, config: PgConfig) -> Result<Self> {
        let lock = MigrationLock::postgres(&config.options.version_table);
        Ok(PgMigrator {
            pool,
            inner: Arc::new(Inner {
                set: config.options.migration_set(Dialect::Postgres)?,
                versions: VersionQueries::for_table(
                    Dialect::Postgres,
                    &config.options.version_table,
                ),
                lock,
                config,
            }),
        })
    }

    /// Opens a dedicated connection, takes the advisory lock, runs `work`, and releases
    /// the lock whatever `work` returned. Dropping the connection afterwards ends the
    /// session, which releases the lock even if the release statement could not run.
    async fn locked<T>(&self, work: impl AsyncLockedWork<T>) -> Result<T> {
        let (client, driver) = crate::tls::connect_dedicated(&self.inner.config).await?;
        let client = Mutex::new(client);
        let result = async {
            client
                .lock()
                .await
                .execute(&self.inner.lock.acquire, &[])
                .await
                .map_err(from_pg)?;
            let result = work.run(&self.inner, &client).await;
            let released = client.lock().await.execute(&self.inner.lock.release, &[]).await;
            if let Err(err) = released {
                tracing::warn!(lock = %self.inner.lock.name, error = %err, "releasing the migration lock failed; the session end releases it");
            }
            result
        }
        .await;
        drop(client);
        driver.abort();
        result
    }
}

/// Work done while holding the migration lock.
trait AsyncLockedWork<T> {
    async fn run(self, inner: &Inner, client: &Mutex<Client>) -> Result<T>;
}

struct Migrate(MigrationTarget);
struct Stamp(MigrationTarget);

impl AsyncLockedWork<MigrationReport> for Migrate {
    async fn run(self, inner: &Inner, client: &Mutex<Client>) -> Result<MigrationReport> {
        drive_migration(self.0, |target| async move {
            let mut client = client.lock().await;
            inner.run_next_step(&mut client, target).await
        })
        .await
    }
}

impl AsyncLockedWork<()> for Stamp {
    async fn run(self, inner: &Inner, client: &Mutex<Client>) -> Result<()> {
        let mut client = client.lock().await;
        let tx = client.transaction().await.map_err(from_pg)?;
        tx.execute(&inner.versions.create, &[])
            .await
            .map_err(from_pg)?;
        let plan = StampPlan::new(&inner.set, &inner.applied(&tx).await?, self.0)?;
        let table = inner.set.table().as_str();
        for version in plan.delete {
            tx.execute(&inner.versions.delete, &[&table, &version])
                .await
                .map_err(from_pg)?;
        }
        for m in plan.insert {
            tx.execute(
                &inner.versions.insert,
                &[
                    &table,
                    &m.version,
                    &m.description,
                    &true,
                    &m.checksum,
                    &0_i64,
                ],
            )
            .await
            .map_err(from_pg)?;
        }
        tx.commit().await.map_err(from_pg)
    }
}

impl Inner {
    async fn applied(&self, client: &impl GenericClient) -> Result<Vec<AppliedMigration>> {
        let rows = client
            .query(&self.versions.select_applied, &[&self.set.table().as_str()])
            .await
            .map_err(from_pg)?;
        rows.iter()
            .map(|row| {
                Ok(AppliedMigration {
                    version: row.try_get(0)?,
                    description: row.try_get(1)?,
                    installed_on_ms: row.try_get(2)?,
                    success: row.try_get(3)?,
                    checksum: row.try_get(4)?,
                    execution_time_ms: row.try_get(5)?,
                })
            })
            .collect::<std::result::Result<Vec<_>, tokio_postgres::Error>>()
            .map_err(from_pg)
    }

    /// Plans against the version table and runs the first step, with its bookkeeping, in
    /// one transaction.
    async fn run_next_step(
        &self,
        client: &mut Client,
        target: MigrationTarget,
    ) -> Result<StepOutcome> {
        let tx = client.transaction().await.map_err(from_pg)?;
        tx.execute(&self.versions.create, &[])
            .await
            .map_err(from_pg)?;
        let plan = MigrationPlan::new(&self.set, &self.applied(&tx).await?, target)?;
        let Some(step) = plan.steps.first() else {
            tx.commit().await.map_err(from_pg)?;
            return Ok(StepOutcome::finished(&plan));
        };
        let started = Instant::now();
        for statement in &step.statements {
            tx.batch_execute(statement)
                .await
                .map_err(|err| step.failed(err))?;
        }
        let elapsed = started.elapsed().as_millis() as i64;
        let table = self.set.table().as_str();
        match step.direction {
            Direction::Up => {
                tx.execute(
                    &self.versions.insert,
                    &[
                        &table,
                        &step.version,
                        &step.description,
                        &true,
                        &step.checksum,
                        &elapsed,
                    ],
                )
                .await
            }
            Direction::Down => {
                tx.execute(&self.versions.delete, &[&table, &step.version])
                    .await
            }
        }
        .map_err(from_pg)?;
        tx.commit().await.map_err(from_pg)?;
        tracing::info!(version = step.version, direction = ?step.direction, ms = elapsed, "postgres migration ran");
        Ok(StepOutcome::ran(&plan, step, elapsed))
    }
}

#[async_trait]
impl Migrator for PgMigrator {
    fn migrations(&self) -> &MigrationSet {
        &self.inner.set
    }

    async fn applied(&self) -> Result<Vec<AppliedMigration>> {
        let client = self.pool.get().await.map_err(from_pool)?;
        let version_table = self.inner.config.options.version_table.as_str();
        let exists: i64 = client
            .query_one(&self.inner.versions.table_exists, &[&version_table])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(from_pg)?;
        if exists == 0 {
            return Ok(Vec::new());
        }
        self.inner.applied(&**client).await
    }

    async fn migrate(&self, target: MigrationTarget) -> Result<MigrationReport> {
        self.locked(Migrate(target)).await
    }

    async fn stamp(&self, target: MigrationTarget) -> Result<()> {
        self.locked(Stamp(target)).await
    }

    async fn drop_tables(&self) -> Result<()> {
        let client = self.pool.get().await.map_err(from_pool)?;
        let options = &self.inner.config.options;
        for table in [&options.table, &options.version_table] {
            client
                .batch_execute(&drop_table_if_exists(Dialect::Postgres, table))
                .await
                .map_err(from_pg)?;
        }
        Ok(())
    }
}
