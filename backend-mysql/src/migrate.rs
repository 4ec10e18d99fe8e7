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
use fsmstore_core::sql::{drop_table_if_exists, MigrationLock, VersionQueries};
use fsmstore_core::{
    drive_migration, AppliedMigration, Dialect, Error, MigrationReport, MigrationSet,
    MigrationTarget, Migrator, Result, TableName,
};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPool};
use sqlx::Connection;

use crate::config::MysqlConfig;
use crate::error::from_sqlx;
use crate::steps::Shared;
use crate::storage::sql;

/// Migrates one FSM table in a MySQL / MariaDB database.
///
/// Reads (`applied`, `status`, `history`) go through a small pool; `migrate` and `stamp`
/// open a dedicated connection, take `GET_LOCK` on it (named after the version table, with
/// a finite timeout), and release it with `RELEASE_LOCK` on every exit path. If the task is
/// cancelled mid-run the connection is dropped and the server releases the lock with the
/// session.
#[derive(Clone)]
pub struct MysqlMigrator {
    pool: MySqlPool,
    connect: MySqlConnectOptions,
    connect_timeout: Duration,
    lock_timeout: Duration,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MysqlMigrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlMigrator")
            .field("table", self.shared.set.table())
            .field("version_table", &self.shared.version_table)
            .field("lock", &self.shared.lock_name)
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
        let pool = config.pool(2).await?;
        Self::on_pool(pool, &config)
    }

    /// Opens `url` (see [`MysqlConfig::from_url`]).
    ///
    /// # Errors
    /// As [`MysqlConfig::from_url`] and [`MysqlMigrator::open`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::open(MysqlConfig::from_url(url)?).await
    }

    pub(crate) fn on_pool(pool: MySqlPool, config: &MysqlConfig) -> Result<Self> {
        let options = &config.options;
        let v = VersionQueries::for_table(Dialect::Mysql, &options.version_table);
        let lock = MigrationLock::mysql(&options.version_table);
        Ok(MysqlMigrator {
            pool,
            connect: config.connect.clone(),
            connect_timeout: config.connect_timeout,
            lock_timeout: config.lock_timeout,
            shared: Arc::new(Shared {
                set: options.migration_set(Dialect::Mysql)?,
                version_table: options.version_table.as_str().to_owned(),
                create: sql(&v.create),
                select_applied: sql(&v.select_applied),
                insert: sql(&v.insert),
                mark_success: sql(&v.mark_success),
                delete: sql(&v.delete),
                table_exists: sql(&v.table_exists),
                lock_acquire: sql(&lock.acquire),
                lock_release: sql(&lock.release),
                lock_name: lock.name,
            }),
        })
    }

    /// Closes the migrator's pool (the storage's, for a migrator from
    /// [`MysqlStorage::migrator`](crate::MysqlStorage::migrator): close that instead).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Opens the dedicated connection and takes the migration lock on it.
    async fn lock(&self) -> Result<MySqlConnection> {
        let mut conn = tokio::time::timeout(
            self.connect_timeout,
            MySqlConnection::connect_with(&self.connect),
        )
        .await
        .map_err(|_| {
            Error::connection(
                format!(
                    "timed out after {:?} connecting to MySQL for the migration lock",
                    self.connect_timeout
                ),
                None,
            )
        })?
        .map_err(from_sqlx)?;
        let seconds = self.lock_timeout.as_secs_f64().ceil() as i64;
        let got: Option<i64> = sqlx::query_scalar(self.shared.lock_acquire.clone())
            .bind(seconds)
            .fetch_one(&mut conn)
            .await
            .map_err(from_sqlx)?;
        let name = &self.shared.lock_name;
        match got {
            Some(1) => Ok(conn),
            Some(_) => Err(Error::Migration(format!(
                "timed out after {seconds} s waiting for the migration lock {name:?}: another migrator holds it (see SELECT IS_USED_LOCK('{name}'))"
            ))),
            None => Err(Error::Migration(format!(
                "could not take the migration lock {name:?}: GET_LOCK returned NULL"
            ))),
        }
    }

    /// The version table's rows for this FSM table (empty when it does not exist).
    async fn read_applied(&self) -> Result<Vec<AppliedMigration>> {
        let mut conn = self.pool.acquire().await.map_err(from_sqlx)?;
        let exists: i64 = sqlx::query_scalar(self.shared.table_exists.clone())
            .bind(&self.shared.version_table)
            .fetch_one(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        if exists == 0 {
            return Ok(Vec::new());
        }
        self.shared.applied(&mut conn).await
    }

    /// Releases the lock and closes the dedicated connection. A failure here is logged,
    /// not returned: the server releases the lock when the session ends anyway.
    async fn unlock(&self, mut conn: MySqlConnection) {
        let released: sqlx::Result<Option<i64>> =
            sqlx::query_scalar(self.shared.lock_release.clone())
                .fetch_one(&mut conn)
                .await;
        match released {
            Ok(Some(1)) => {}
            other => {
                tracing::warn!(lock = %self.shared.lock_name, result = ?other, "RELEASE_LOCK did not release the migration lock; closing the session releases it")
            }
        }
        if let Err(err) = conn.close().await {
            tracing::debug!(error = %err, "closing the migration connection failed");
        }
    }

    /// Takes the lock and creates the version table under it. The caller runs its work,
    /// then [`MysqlMigrator::unlock`], whatever the work returned.
    async fn lock_and_create(&self) -> Result<MySqlConnection> {
        let mut conn = self.lock().await?;
        match sqlx::raw_sql(self.shared.create.clone())
            .execute(&mut conn)
            .await
        {
            Ok(_) => Ok(conn),
            Err(err) => {
                self.unlock(conn).await;
                Err(from_sqlx(err))
            }
        }
    }
}

#[async_trait]
impl Migrator for MysqlMigrator {
    fn migrations(&self) -> &MigrationSet {
        &self.shared.set
    }

    async fn applied(&self) -> Result<Vec<AppliedMigration>> {
        let rows = self.read_applied().await?;
        if rows.iter().all(|row| row.success) {
            return Ok(rows);
        }
        // An unfinished row is dirty only if no migrator is running it: without the lock
        // a concurrent start-up (`Verify` while another instance upgrades) would report
        // a migration in progress as dirty. Wait for the lock, then read again.
        let conn = self.lock().await?;
        let rows = self.read_applied().await;
        self.unlock(conn).await;
        rows
    }

    async fn migrate(&self, target: MigrationTarget) -> Result<MigrationReport> {
        let mut conn = self.lock_and_create().await?;
        let result = {
            let conn = tokio::sync::Mutex::new(&mut conn);
            let shared = &*self.shared;
            drive_migration(target, |target| {
                let conn = &conn;
                async move { shared.next_step(*conn.lock().await, target).await }
            })
            .await
        };
        self.unlock(conn).await;
        result
    }

    async fn drop_tables(&self) -> Result<()> {
        let mut conn = self.lock().await?;
        let mut result = Ok(());
        for table in [
            self.shared.set.table().clone(),
            TableName::new(&self.shared.version_table)?,
        ] {
            let statement = sql(&drop_table_if_exists(Dialect::Mysql, &table));
            result = sqlx::raw_sql(statement)
                .execute(&mut conn)
                .await
                .map(drop)
                .map_err(from_sqlx);
            if result.is_err() {
                break;
            }
        }
        self.unlock(conn).await;
        result
    }

    async fn stamp(&self, target: MigrationTarget) -> Result<()> {
        let mut conn = self.lock_and_create().await?;
        let result = self.shared.stamp(&mut conn, target).await;
        self.unlock(conn).await;
        result
    }
}
