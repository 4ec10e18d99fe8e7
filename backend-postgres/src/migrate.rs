//! [`PgMigrator`]: core's migration engine on PostgreSQL. [`MigrationSteps`] on a
//! dedicated connection that holds an advisory lock; each planning round, its migration
//! and its version row commit in one transaction.

use std::sync::Arc;

use crate::config::Pooler;
use crate::params::{p, Param};
use async_trait::async_trait;
use fsmstore_core::sql::{drop_table_if_exists, MigrationLock, VersionQueries};
use fsmstore_core::{
    ledger_name, run_migration, run_stamp, AppliedMigration, Dialect, DialogueLedger, Direction,
    Error, MigrationReport, MigrationSet, MigrationStep, MigrationSteps, MigrationTarget, Migrator,
    Result, StampPlan,
};
use tokio_postgres::Client;

use crate::config::PgConfig;
use crate::connections::Connections;
use crate::error::from_pg;

/// Migrates one FSM table in a PostgreSQL database.
#[derive(Clone)]
pub struct PgMigrator {
    conns: Arc<Connections>,
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
        Self::sharing(Arc::new(Connections::sized(2, 2, config)?))
    }

    /// A migrator reading through `conns` (a storage's).
    pub(crate) fn sharing(conns: Arc<Connections>) -> Result<Self> {
        let config = conns.config().clone();
        let lock = MigrationLock::postgres(&config.options.version_table);
        Ok(PgMigrator {
            conns,
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

    /// [`Error::Closed`] once the pool was closed (by this migrator or the storage it
    /// shares): no dedicated connection is opened afterwards.
    fn ensure_open(&self) -> Result<()> {
        if self.conns.is_closed() {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// The steps of one run, on a dedicated connection: dropping it ends the session,
    /// which releases the advisory lock even if the release statement could not run.
    async fn steps(&self) -> Result<PgSteps<'_>> {
        let (client, driver) = crate::tls::connect_dedicated(&self.inner.config).await?;
        Ok(PgSteps {
            client,
            driver,
            inner: &self.inner,
        })
    }
}

/// [`MigrationSteps`] on a dedicated connection: the advisory lock, then each planning
/// round in one transaction.
struct PgSteps<'m> {
    client: Client,
    driver: tokio::task::JoinHandle<()>,
    inner: &'m Inner,
}

impl Drop for PgSteps<'_> {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl PgSteps<'_> {
    /// Runs `sql` unnamed (nothing prepared: the same through a transaction pooler).
    async fn run(&self, sql: &str, params: &[Param<'_>]) -> Result<()> {
        self.client
            .execute_typed(sql, params)
            .await
            .map(drop)
            .map_err(from_pg)
    }

    /// Behind a transaction pooler the session lock would stay on a server connection
    /// other clients borrow: each transaction takes `pg_advisory_xact_lock` instead.
    fn in_transaction(&self) -> bool {
        self.inner.config.pooler == Pooler::Transaction
    }

    async fn batch(&self, sql: &str) -> Result<()> {
        self.client.batch_execute(sql).await.map_err(from_pg)
    }

    /// The transaction-level lock, its wait bounded for this transaction only.
    fn xact_lock(&self) -> String {
        self.inner
            .lock
            .acquire_in_transaction_within(self.inner.config.lock_timeout)
    }

    /// `result` of taking the lock, with a lock timeout (SQLSTATE 55P03) turned into
    /// [`Error::MigrationLockTimeout`] naming who holds the lock.
    async fn named_timeout(&self, result: Result<()>) -> Result<()> {
        let Err(err) = result else {
            return Ok(());
        };
        if !is_lock_timeout(&err) {
            return Err(err);
        }
        let holder = match self.client.simple_query(&self.inner.lock.holder).await {
            Ok(messages) => messages.iter().find_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            }),
            Err(_) => None,
        };
        Err(Error::MigrationLockTimeout {
            lock: self.inner.lock.name.clone(),
            waited: self.inner.config.lock_timeout,
            holder,
        })
    }
}

/// Whether `err` is the server giving up on a lock wait (`lock_timeout`, 55P03).
fn is_lock_timeout(err: &Error) -> bool {
    crate::error::has_sqlstate(err, &tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE)
}

#[async_trait]
impl MigrationSteps for PgSteps<'_> {
    async fn lock(&mut self) -> Result<()> {
        if self.in_transaction() {
            // The version table is created under the lock too (two `CREATE TABLE IF NOT
            // EXISTS` at once can collide); each round takes the lock again.
            let lock = self.xact_lock();
            let create = &self.inner.versions.create;
            let locked = self
                .batch(&format!("BEGIN; {lock}; {create}; COMMIT"))
                .await;
            if locked.is_err() {
                let _ = self.batch("ROLLBACK").await;
            }
            return self.named_timeout(locked).await;
        }
        // The wait is bounded: PostgreSQL's lock_timeout covers advisory locks (55P03).
        let acquire = self
            .inner
            .lock
            .acquire_within(self.inner.config.lock_timeout);
        let locked = self.batch(&acquire).await;
        if locked.is_err() {
            let _ = self.batch("RESET lock_timeout").await;
        }
        self.named_timeout(locked).await?;
        let created = self.batch(&self.inner.versions.create).await;
        if created.is_err() {
            self.unlock().await;
        }
        created
    }

    async fn unlock(&mut self) {
        if self.in_transaction() {
            // Each round's lock ended with its transaction.
            return;
        }
        if let Err(err) = self.run(&self.inner.lock.release, &[]).await {
            tracing::warn!(lock = %self.inner.lock.name, error = %err, "releasing the migration lock failed; the session end releases it");
        }
    }

    async fn begin(&mut self) -> Result<()> {
        if self.in_transaction() {
            // All or nothing: a failed lock leaves no transaction open.
            let lock = self.xact_lock();
            let locked = self.batch(&format!("BEGIN; {lock}")).await;
            if locked.is_err() {
                let _ = self.batch("ROLLBACK").await;
            }
            return self.named_timeout(locked).await;
        }
        self.batch("BEGIN").await
    }

    async fn commit(&mut self) -> Result<()> {
        self.batch("COMMIT").await
    }

    async fn rollback(&mut self) {
        if let Err(err) = self.batch("ROLLBACK").await {
            tracing::warn!(error = %err, "rolling back a migration round failed");
        }
    }

    async fn applied(&mut self) -> Result<Vec<AppliedMigration>> {
        let table = self.inner.set.table().as_str();
        let rows = self
            .client
            .query_typed(&self.inner.versions.select_applied, &[p(&table)])
            .await
            .map_err(from_pg)?;
        applied_rows(&rows)
    }

    async fn apply(&mut self, step: &MigrationStep) -> Result<()> {
        for statement in &step.statements {
            self.client
                .batch_execute(statement)
                .await
                .map_err(|err| step.failed(err))?;
        }
        Ok(())
    }

    async fn record(&mut self, step: &MigrationStep, elapsed_ms: i64) -> Result<()> {
        let table = self.inner.set.table().as_str();
        let versions = &self.inner.versions;
        match step.direction {
            Direction::Up => {
                let row = [
                    p(&table),
                    p(&step.version),
                    p(&step.description),
                    p(&true),
                    p(&step.checksum),
                    p(&elapsed_ms),
                ];
                self.run(&versions.insert, &row).await
            }
            Direction::Down => {
                self.run(&versions.delete, &[p(&table), p(&step.version)])
                    .await
            }
        }
    }

    async fn stamp(&mut self, plan: &StampPlan) -> Result<()> {
        let table = self.inner.set.table().as_str();
        let versions = &self.inner.versions;
        for version in &plan.delete {
            self.run(&versions.delete, &[p(&table), p(version)]).await?;
        }
        for m in &plan.insert {
            let row = [
                p(&table),
                p(&m.version),
                p(&m.description),
                p(&true),
                p(&m.checksum),
                p(&0_i64),
            ];
            self.run(&versions.insert, &row).await?;
        }
        Ok(())
    }
}

/// Dialogue migrations' history and lock: the migration session of the schema (its lock,
/// its version table), recording under [`ledger_name`].
///
/// Behind a transaction pooler a lock lasts one transaction at most, so the run holds one
/// open (`pg_advisory_xact_lock` in it) while a step runs, and each record commits it and
/// takes the lock again in the next: records are durable at once, and a step only runs
/// under the lock (the runner reads the records again after each, in case another
/// instance ran a step in between).
struct PgLedger<'m> {
    steps: PgSteps<'m>,
    table: String,
    /// The run's transaction is open (behind a transaction pooler).
    in_run_transaction: bool,
}

impl PgLedger<'_> {
    /// `write` in one round of the session (in a transaction of its own, or in the run's
    /// behind a transaction pooler).
    async fn round(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        unless_recorded: Option<i64>,
    ) -> Result<()> {
        if self.in_run_transaction {
            let written = self.write(sql, params, unless_recorded).await;
            let relocked = match written {
                Ok(()) => {
                    let lock = self.steps.xact_lock();
                    self.steps.batch(&format!("COMMIT; BEGIN; {lock}")).await
                }
                Err(err) => Err(err),
            };
            return self.steps.named_timeout(relocked).await;
        }
        MigrationSteps::begin(&mut self.steps).await?;
        let result = self.write(sql, params, unless_recorded).await;
        match result {
            Ok(()) => MigrationSteps::commit(&mut self.steps).await,
            Err(err) => {
                MigrationSteps::rollback(&mut self.steps).await;
                Err(err)
            }
        }
    }

    /// `sql` with `params`, unless step `unless_recorded` has a record.
    async fn write(
        &self,
        sql: &str,
        params: &[Param<'_>],
        unless_recorded: Option<i64>,
    ) -> Result<()> {
        if let Some(version) = unless_recorded {
            if self
                .recorded_in_round()
                .await?
                .iter()
                .any(|row| row.version == version)
            {
                return Ok(());
            }
        }
        self.steps.run(sql, params).await
    }

    async fn recorded_in_round(&self) -> Result<Vec<AppliedMigration>> {
        let rows = self
            .steps
            .client
            .query_typed(
                &self.steps.inner.versions.select_applied,
                &[p(&self.table.as_str())],
            )
            .await
            .map_err(from_pg)?;
        applied_rows(&rows)
    }
}

#[async_trait]
impl DialogueLedger for PgLedger<'_> {
    async fn lock(&mut self) -> Result<()> {
        if !self.steps.in_transaction() {
            return MigrationSteps::lock(&mut self.steps).await;
        }
        let lock = self.steps.xact_lock();
        let create = &self.steps.inner.versions.create;
        let locked = self.steps.batch(&format!("BEGIN; {lock}; {create}")).await;
        if locked.is_err() {
            let _ = self.steps.batch("ROLLBACK").await;
        }
        self.steps.named_timeout(locked).await?;
        self.in_run_transaction = true;
        Ok(())
    }

    async fn unlock(&mut self) {
        if !self.in_run_transaction {
            return MigrationSteps::unlock(&mut self.steps).await;
        }
        self.in_run_transaction = false;
        if let Err(err) = self.steps.batch("COMMIT").await {
            tracing::warn!(error = %err, "committing a dialogue migration's records failed; its steps run again at the next start");
            let _ = self.steps.batch("ROLLBACK").await;
        }
    }

    async fn recorded(&mut self) -> Result<Vec<AppliedMigration>> {
        self.recorded_in_round().await
    }

    async fn keep(&mut self) -> Result<()> {
        // The lock lives in this connection's session (or its transaction): a connection
        // that was lost took the lock with it, and the run must not go on without it.
        self.steps.batch("SELECT 1").await.map_err(|err| {
            Error::Migration(format!(
                "lost the migration lock's connection while a dialogue step ran ({err}); the next start resumes the step"
            ))
        })
    }

    async fn start(&mut self, version: i64, description: &str, checksum: &str) -> Result<()> {
        let table = self.table.clone();
        let table = table.as_str();
        let insert = self.steps.inner.versions.insert.clone();
        let row = [
            p(&table),
            p(&version),
            p(&description),
            p(&false),
            p(&checksum),
            p(&0_i64),
        ];
        self.round(&insert, &row, Some(version)).await
    }

    async fn finish(&mut self, version: i64, elapsed_ms: i64) -> Result<()> {
        let table = self.table.clone();
        let table = table.as_str();
        let mark = self.steps.inner.versions.mark_success.clone();
        let row = [p(&true), p(&elapsed_ms), p(&table), p(&version)];
        self.round(&mark, &row, None).await
    }
}

/// The version table's rows as applied migrations.
fn applied_rows(rows: &[tokio_postgres::Row]) -> Result<Vec<AppliedMigration>> {
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

impl PgMigrator {
    /// Whether table `name` exists in the current schema.
    async fn exists(&self, name: &str) -> Result<bool> {
        let rows = self
            .conns
            .query(
                "table_exists",
                &self.inner.versions.table_exists,
                &[p(&name)],
            )
            .await?;
        let count: i64 = match rows.first() {
            Some(row) => row.try_get(0).map_err(from_pg)?,
            None => 0,
        };
        Ok(count > 0)
    }
}

#[async_trait]
impl Migrator for PgMigrator {
    fn migrations(&self) -> &MigrationSet {
        &self.inner.set
    }

    fn version_table(&self) -> &str {
        self.inner.config.options.version_table.as_str()
    }

    async fn applied(&self) -> Result<Vec<AppliedMigration>> {
        let version_table = self.inner.config.options.version_table.as_str();
        if !self.exists(version_table).await? {
            return Ok(Vec::new());
        }
        let table = self.inner.set.table().as_str();
        let rows = self
            .conns
            .query("applied", &self.inner.versions.select_applied, &[p(&table)])
            .await?;
        applied_rows(&rows)
    }

    async fn table_exists(&self) -> Result<bool> {
        self.exists(self.inner.config.options.table.as_str()).await
    }

    async fn migrate(&self, target: MigrationTarget) -> Result<MigrationReport> {
        self.ensure_open()?;
        let mut steps = self.steps().await?;
        run_migration(&mut steps, &self.inner.set, target)
            .await
            .map_err(|err| err.for_version_table(self.version_table()))
    }

    async fn stamp(&self, target: MigrationTarget) -> Result<()> {
        self.ensure_open()?;
        let mut steps = self.steps().await?;
        run_stamp(&mut steps, &self.inner.set, target)
            .await
            .map_err(|err| err.for_version_table(self.version_table()))
    }

    async fn close(&self) -> Result<()> {
        self.conns.close();
        Ok(())
    }

    async fn dialogue_ledger(&self) -> Result<Box<dyn DialogueLedger + '_>> {
        self.ensure_open()?;
        Ok(Box::new(PgLedger {
            table: ledger_name(self.inner.set.table().as_str()),
            steps: self.steps().await?,
            in_run_transaction: false,
        }))
    }

    async fn drop_tables(&self) -> Result<()> {
        let client = self.conns.client().await?;
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
