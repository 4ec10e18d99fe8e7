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
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fsmstore_core::sql::{drop_table_if_exists, MigrationLock, VersionQueries};
use fsmstore_core::{
    dirty_error, drive_migration, AppliedMigration, Dialect, Direction, Error, MigrationPlan,
    MigrationReport, MigrationSet, MigrationStep, MigrationTarget, Migrator, Result, StampPlan,
    StepOutcome, TableName,
};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPool};
use sqlx::{Connection, SqlStr};

use crate::config::MysqlConfig;
use crate::error::from_sqlx;
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

struct Shared {
    set: MigrationSet,
    version_table: String,
    create: SqlStr,
    select_applied: SqlStr,
    insert: SqlStr,
    mark_success: SqlStr,
    delete: SqlStr,
    table_exists: SqlStr,
    lock_acquire: SqlStr,
    lock_release: SqlStr,
    lock_name: String,
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
        let lock = MigrationLock::for_table(Dialect::Mysql, &options.version_table)
            .ok_or_else(|| Error::Config("core defines no MySQL migration lock".to_owned()))?;
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

impl Shared {
    fn table(&self) -> &str {
        self.set.table().as_str()
    }

    async fn applied(&self, conn: &mut MySqlConnection) -> Result<Vec<AppliedMigration>> {
        let rows: Vec<(i64, String, i64, bool, String, i64)> =
            sqlx::query_as(self.select_applied.clone())
                .bind(self.table())
                .fetch_all(&mut *conn)
                .await
                .map_err(from_sqlx)?;
        Ok(rows
            .into_iter()
            .map(
                |(version, description, installed_on_ms, success, checksum, execution_time_ms)| {
                    AppliedMigration {
                        version,
                        description,
                        installed_on_ms,
                        success,
                        checksum,
                        execution_time_ms,
                    }
                },
            )
            .collect())
    }

    async fn execute(
        &self,
        conn: &mut MySqlConnection,
        statement: &SqlStr,
        args: Args<'_>,
    ) -> Result<()> {
        let mut query = sqlx::query(statement.clone());
        for arg in args {
            query = match arg {
                Arg::Int(v) => query.bind(v),
                Arg::Text(v) => query.bind(v),
                Arg::Bool(v) => query.bind(v),
            };
        }
        query.execute(&mut *conn).await.map(drop).map_err(from_sqlx)
    }

    /// Plans against the version table and runs the first step (the lock is held).
    async fn next_step(
        &self,
        conn: &mut MySqlConnection,
        target: MigrationTarget,
    ) -> Result<StepOutcome> {
        let applied = self.applied(conn).await?;
        let plan = MigrationPlan::new(&self.set, &applied, target)?;
        let Some(step) = plan.steps.first() else {
            return Ok(StepOutcome {
                current: plan.current,
                target: plan.target,
                ran: None,
            });
        };
        let table = self.table();
        let started = Instant::now();
        match step.direction {
            Direction::Up => {
                // Recorded unfinished first: DDL commits as it goes.
                self.execute(
                    conn,
                    &self.insert,
                    vec![
                        Arg::Text(table),
                        Arg::Int(step.version),
                        Arg::Text(&step.description),
                        Arg::Bool(false),
                        Arg::Text(&step.checksum),
                        Arg::Int(0),
                    ],
                )
                .await?;
                let undo = vec![Arg::Text(table), Arg::Int(step.version)];
                self.run_statements(conn, step, &self.delete, undo).await?;
            }
            Direction::Down => {
                let previous_ms = applied
                    .iter()
                    .find(|row| row.version == step.version)
                    .map_or(0, |row| row.execution_time_ms);
                let mark = |success| {
                    vec![
                        Arg::Bool(success),
                        Arg::Int(previous_ms),
                        Arg::Text(table),
                        Arg::Int(step.version),
                    ]
                };
                self.execute(conn, &self.mark_success, mark(false)).await?;
                self.run_statements(conn, step, &self.mark_success, mark(true))
                    .await?;
            }
        }
        let elapsed = started.elapsed().as_millis() as i64;
        match step.direction {
            Direction::Up => {
                self.execute(
                    conn,
                    &self.mark_success,
                    vec![
                        Arg::Bool(true),
                        Arg::Int(elapsed),
                        Arg::Text(table),
                        Arg::Int(step.version),
                    ],
                )
                .await?
            }
            Direction::Down => {
                self.execute(
                    conn,
                    &self.delete,
                    vec![Arg::Text(table), Arg::Int(step.version)],
                )
                .await?
            }
        }
        tracing::info!(version = step.version, direction = ?step.direction, ms = elapsed, "mysql migration ran");
        Ok(StepOutcome {
            current: plan.current,
            target: plan.target,
            ran: Some((step.version, step.direction, elapsed)),
        })
    }

    /// Runs the step's statements one at a time (text protocol: DDL is not prepared). If the
    /// first fails nothing changed: `undo` restores the version row and the error is
    /// `MigrationFailed`. If a later one fails the step is half-applied: the row stays
    /// unfinished and the error is `MigrationDirty`, naming the stamp commands.
    async fn run_statements(
        &self,
        conn: &mut MySqlConnection,
        step: &MigrationStep,
        undo: &SqlStr,
        undo_args: Args<'_>,
    ) -> Result<()> {
        for (index, statement) in step.statements.iter().enumerate() {
            let Err(err) = sqlx::raw_sql(sql(statement)).execute(&mut *conn).await else {
                continue;
            };
            tracing::error!(
                version = step.version,
                direction = ?step.direction,
                statement = index + 1,
                of = step.statements.len(),
                error = %err,
                "mysql migration statement failed"
            );
            // If the bookkeeping can not be restored (connection lost?), whether the first
            // statement ran is unknown: the row stays unfinished, the step dirty.
            if index == 0 && self.execute(conn, undo, undo_args).await.is_ok() {
                return Err(Error::MigrationFailed {
                    version: step.version,
                    description: step.description.clone(),
                    source: Box::new(err),
                });
            }
            return Err(dirty_error(step.version, &step.description, self.table()));
        }
        Ok(())
    }

    async fn stamp(&self, conn: &mut MySqlConnection, target: MigrationTarget) -> Result<()> {
        let plan = StampPlan::new(&self.set, &self.applied(conn).await?, target)?;
        let table = self.table();
        let mut tx = conn.begin().await.map_err(from_sqlx)?;
        for version in plan.delete {
            self.execute(
                &mut tx,
                &self.delete,
                vec![Arg::Text(table), Arg::Int(version)],
            )
            .await?;
        }
        for m in plan.insert {
            self.execute(
                &mut tx,
                &self.insert,
                vec![
                    Arg::Text(table),
                    Arg::Int(m.version),
                    Arg::Text(&m.description),
                    Arg::Bool(true),
                    Arg::Text(&m.checksum),
                    Arg::Int(0),
                ],
            )
            .await?;
        }
        tx.commit().await.map_err(from_sqlx)
    }
}

/// A bound value of a version-table statement.
#[derive(Clone, Copy)]
enum Arg<'a> {
    Int(i64),
    Text(&'a str),
    Bool(bool),
}

type Args<'a> = Vec<Arg<'a>>;

#[async_trait]
impl Migrator for MysqlMigrator {
    fn migrations(&self) -> &MigrationSet {
        &self.shared.set
    }

    async fn applied(&self) -> Result<Vec<AppliedMigration>> {
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
