//! [`MysqlMigrator`]: runs the planner's steps under `GET_LOCK`.
//!
//! MySQL and MariaDB commit DDL implicitly, so a migration can not share a transaction with
//! its bookkeeping. Instead each step is recorded as unfinished (`success = false`) before
//! its first statement runs, its statements run one at a time, and the row is marked
//! successful afterwards. A step whose first statement fails changed nothing: its row is
//! removed again and the error is [`Error::MigrationFailed`]. A step that fails later is
//! half-applied: its row stays unfinished, and this and every later run report it as
//! [`Error::MigrationDirty`] with the `stamp` command that records the repaired state.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fsmstore_core::sql::{
    drop_table_if_exists, ClusterLock, MigrationLock, MysqlVersionRepair, VersionQueries,
};
use fsmstore_core::{
    run_migration, run_stamp, AppliedMigration, Dialect, Error, MigrationReport, MigrationSet,
    MigrationTarget, Migrator, Result, TableName,
};
use sqlx::mysql::MySqlConnection;

use crate::config::MysqlConfig;
use crate::connections::{sql, Connections};
use crate::error::from_sqlx;
use crate::steps::{MysqlLedger, MysqlSteps, Shared};

/// Migrates one FSM table in a MySQL / MariaDB database.
///
/// Reads (`applied`, `status`, `history`) go through a small pool; `migrate` and `stamp`
/// open a dedicated connection, take `GET_LOCK` on it (named after the version table, with
/// a finite timeout), and release it with `RELEASE_LOCK` on every exit path. If the task is
/// cancelled mid-run the connection is dropped and the server releases the lock with the
/// session.
#[derive(Clone)]
pub struct MysqlMigrator {
    /// Its own, or the storage's whose pool it shares.
    conns: Arc<Connections>,
    lock_timeout: Duration,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MysqlMigrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlMigrator")
            .field("table", self.shared.set.table())
            .field("version_table", &self.shared.version_table)
            .field("lock", &self.shared.lock.name)
            .finish()
    }
}

impl MysqlMigrator {
    /// Opens a migrator with a pool of its own (at most 2 connections; no schema check:
    /// this is how an outdated database is upgraded).
    ///
    /// # Errors
    /// [`Error::Connection`] when the server can not be reached.
    pub async fn open(config: MysqlConfig) -> Result<Self> {
        Self::sharing(Arc::new(Connections::open(config, 2, 2).await?))
    }

    /// Opens `url` (see [`MysqlConfig::from_url`]).
    ///
    /// # Errors
    /// As [`MysqlConfig::from_url`] and [`MysqlMigrator::open`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::open(MysqlConfig::from_url(url)?).await
    }

    /// A migrator on `conns` (a storage's, whose close closes them).
    pub(crate) fn sharing(conns: Arc<Connections>) -> Result<Self> {
        let config = conns.config();
        let options = &config.options;
        let v = VersionQueries::for_table(Dialect::Mysql, &options.version_table);
        let lock = MigrationLock::mysql(&options.version_table);
        Ok(MysqlMigrator {
            lock_timeout: config.lock_timeout,
            shared: Arc::new(Shared {
                set: options.migration_set(Dialect::Mysql)?,
                version_table: options.version_table.as_str().to_owned(),
                versions: v,
                lock,
                cluster: ClusterLock::mysql(&options.version_table),
                repair: MysqlVersionRepair::new(&options.version_table),
            }),
            conns,
        })
    }

    /// Opens the connection a run holds its lock on: never a pooled one, which could be
    /// handed back mid-run.
    async fn dedicated(&self) -> Result<MySqlConnection> {
        // The first host that answers (every one of `hosts=` shares the database).
        self.conns
            .config()
            .connect_any()
            .await
            .map(|(conn, _)| conn)
    }

    /// [`Error::Closed`] once the pool was closed (by this migrator or the storage it
    /// shares): nothing, not even a dedicated connection, is opened afterwards.
    fn ensure_open(&self) -> Result<()> {
        if self.conns.is_closed() {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// The steps of one run, on a dedicated connection. If the future is dropped mid-run,
    /// the connection closes and the server releases the lock with the session.
    async fn steps(&self) -> Result<MysqlSteps<'_>> {
        Ok(MysqlSteps {
            conn: self.dedicated().await?,
            shared: &self.shared,
            lock_timeout: self.lock_timeout,
        })
    }

    /// The version table's rows for this FSM table (empty when it does not exist).
    async fn read_applied(&self) -> Result<Vec<AppliedMigration>> {
        let mut conn = self.conns.acquire().await.map_err(from_sqlx)?;
        if !self.exists(&mut conn, &self.shared.version_table).await? {
            return Ok(Vec::new());
        }
        self.shared.applied(&mut conn).await
    }

    /// Whether table `name` exists in the current database.
    async fn exists(&self, conn: &mut sqlx::MySqlConnection, name: &str) -> Result<bool> {
        let count: i64 = sqlx::query_scalar(sql(&self.shared.versions.table_exists))
            .bind(name)
            .fetch_one(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        Ok(count > 0)
    }
}

#[async_trait]
impl Migrator for MysqlMigrator {
    fn migrations(&self) -> &MigrationSet {
        &self.shared.set
    }

    fn version_table(&self) -> &str {
        &self.shared.version_table
    }

    async fn table_exists(&self) -> Result<bool> {
        self.ensure_open()?;
        let mut conn = self.conns.acquire().await.map_err(from_sqlx)?;
        self.exists(&mut conn, self.shared.set.table().as_str())
            .await
    }

    async fn applied(&self) -> Result<Vec<AppliedMigration>> {
        self.ensure_open()?;
        let rows = self.read_applied().await?;
        if rows.iter().all(|row| row.success) {
            return Ok(rows);
        }
        // An unfinished row is dirty only if no migrator is running it: without the lock
        // a concurrent start-up (`Verify` while another instance upgrades) would report
        // a migration in progress as dirty. Wait for the lock, then read again.
        let mut steps = self.steps().await?;
        let rows = match self
            .shared
            .acquire_lock(&mut steps.conn, self.lock_timeout)
            .await
        {
            Ok(()) => {
                let rows = self.read_applied().await;
                self.shared.release_lock(&mut steps.conn).await;
                rows
            }
            Err(err) => Err(err),
        };
        steps.close().await;
        rows
    }

    async fn migrate(&self, target: MigrationTarget) -> Result<MigrationReport> {
        self.ensure_open()?;
        let mut steps = self.steps().await?;
        let result = run_migration(&mut steps, &self.shared.set, target)
            .await
            .map_err(|err| err.for_version_table(self.version_table()));
        steps.close().await;
        result
    }

    async fn drop_tables(&self) -> Result<()> {
        self.ensure_open()?;
        let mut steps = self.steps().await?;
        let result = async {
            self.shared
                .acquire_lock(&mut steps.conn, self.lock_timeout)
                .await?;
            let mut dropped = Ok(());
            for table in [
                self.shared.set.table().clone(),
                TableName::new(&self.shared.version_table)?,
            ] {
                let statement = sql(&drop_table_if_exists(Dialect::Mysql, &table));
                dropped = sqlx::raw_sql(statement)
                    .execute(&mut steps.conn)
                    .await
                    .map(drop)
                    .map_err(from_sqlx);
                if dropped.is_err() {
                    break;
                }
            }
            // The lock table goes with the version table it locks, while the lock is still
            // held: a migrator waiting meanwhile fails (its table is gone) rather than run
            // beside another that recreated it.
            if dropped.is_ok() {
                let statement = sql(&drop_table_if_exists(
                    Dialect::Mysql,
                    &self.shared.cluster.table,
                ));
                dropped = sqlx::raw_sql(statement)
                    .execute(&mut steps.conn)
                    .await
                    .map(drop)
                    .map_err(from_sqlx);
            }
            // The row went with its table; only the node's lock is left.
            if dropped.is_ok() {
                self.shared.release_node_lock(&mut steps.conn).await;
            } else {
                self.shared.release_lock(&mut steps.conn).await;
            }
            dropped
        }
        .await;
        steps.close().await;
        result
    }

    async fn close(&self) -> Result<()> {
        self.conns.close().await;
        Ok(())
    }

    async fn dialogue_ledger(&self) -> Result<Box<dyn fsmstore_core::DialogueLedger + '_>> {
        self.ensure_open()?;
        Ok(Box::new(MysqlLedger {
            table: fsmstore_core::ledger_name(self.shared.table()),
            steps: self.steps().await?,
        }))
    }

    async fn stamp(&self, target: MigrationTarget) -> Result<()> {
        self.ensure_open()?;
        let mut steps = self.steps().await?;
        let result = run_stamp(&mut steps, &self.shared.set, target)
            .await
            .map_err(|err| err.for_version_table(self.version_table()));
        steps.close().await;
        result
    }
}
