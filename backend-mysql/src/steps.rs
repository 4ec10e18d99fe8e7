//! The steps of a MySQL migration run ([`MysqlSteps`], core's [`MigrationSteps`]) and their
//! version-table bookkeeping: the lock, a step run one statement at a time with its
//! unfinished/successful marks, stamping.

use async_trait::async_trait;
use fsmstore_core::sql::{ClusterLock, MigrationLock, MysqlVersionRepair, VersionQueries};
use fsmstore_core::{
    dirty_error, AppliedMigration, Direction, Error, MigrationSet, MigrationStep, MigrationSteps,
    Result, StampPlan,
};
use sqlx::mysql::MySqlConnection;
use sqlx::{Connection, SqlStr};

use crate::connections::sql;
use crate::error::{error_number, from_sqlx, ER_DUP_ENTRY, ER_LOCK_DEADLOCK};

/// How long the cluster lock row holds without renewal: a migrator that died mid-run on
/// another node blocks the others at most this long (one on the same node is taken over at
/// once). Each planning round renews it.
const LEASE_SECONDS: i64 = 600;

/// What a migrator needs to plan and run steps: the migrations and the statements.
pub(crate) struct Shared {
    pub(crate) set: MigrationSet,
    pub(crate) version_table: String,
    /// Core's version-table statements.
    pub(crate) versions: VersionQueries,
    /// Core's migration lock (`GET_LOCK`).
    pub(crate) lock: MigrationLock,
    pub(crate) cluster: ClusterLock,
    pub(crate) repair: MysqlVersionRepair,
}

impl Shared {
    pub(crate) fn table(&self) -> &str {
        self.set.table().as_str()
    }

    pub(crate) async fn applied(
        &self,
        conn: &mut MySqlConnection,
    ) -> Result<Vec<AppliedMigration>> {
        self.applied_of(conn, self.table()).await
    }

    /// The version-table rows recorded under `table`.
    pub(crate) async fn applied_of(
        &self,
        conn: &mut MySqlConnection,
        table: &str,
    ) -> Result<Vec<AppliedMigration>> {
        let rows: Vec<(i64, String, i64, bool, String, i64)> =
            sqlx::query_as(sql(&self.versions.select_applied))
                .bind(table)
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

    pub(crate) async fn execute(
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

    /// Makes an old version table's `table_name` byte-exact (see [`MysqlVersionRepair`]).
    async fn repair_version_table(&self, conn: &mut MySqlConnection) -> Result<()> {
        let collation: Option<String> = sqlx::query_scalar(sql(&self.repair.check))
            .bind(&self.version_table)
            .fetch_optional(&mut *conn)
            .await
            .map_err(from_sqlx)?
            .flatten();
        if collation.as_deref() == Some(self.repair.collation) {
            return Ok(());
        }
        tracing::info!(version_table = %self.version_table, ?collation, "making the version table's table names byte-exact");
        sqlx::raw_sql(sql(&self.repair.repair))
            .execute(&mut *conn)
            .await
            .map(drop)
            .map_err(from_sqlx)
    }

    /// Takes `GET_LOCK` on `conn`, waiting at most `timeout`.
    pub(crate) async fn acquire_lock(
        &self,
        conn: &mut MySqlConnection,
        timeout: std::time::Duration,
    ) -> Result<()> {
        let seconds = timeout.as_secs_f64().ceil() as i64;
        let got: Option<i64> = sqlx::query_scalar(sql(&self.lock.acquire))
            .bind(seconds)
            .fetch_one(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        let name = &self.lock.name;
        match got {
            Some(1) => match self.acquire_cluster_lock(conn, timeout).await {
                Ok(()) => Ok(()),
                Err(err) => {
                    self.release_node_lock(conn).await;
                    Err(err)
                }
            },
            Some(_) => {
                let holder: Option<String> = sqlx::query_scalar(sql(&self.lock.holder))
                    .fetch_optional(&mut *conn)
                    .await
                    .ok()
                    .flatten();
                Err(Error::MigrationLockTimeout {
                    lock: format!("GET_LOCK('{name}')"),
                    waited: std::time::Duration::from_secs(seconds.unsigned_abs()),
                    holder,
                })
            }
            None => Err(Error::Migration(format!(
                "could not take the migration lock {name:?}: GET_LOCK returned NULL"
            ))),
        }
    }

    /// The cluster lock row ([`ClusterLock`]), taken while this connection holds
    /// `GET_LOCK` on its node: an insert, or a takeover of a stale row; a row another node
    /// holds is waited for until `timeout`.
    async fn acquire_cluster_lock(
        &self,
        conn: &mut MySqlConnection,
        timeout: std::time::Duration,
    ) -> Result<()> {
        let lock = &self.cluster;
        sqlx::raw_sql(sql(&lock.create))
            .execute(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        let deadline = std::time::Instant::now() + timeout;
        let mut pause = std::time::Duration::from_millis(20);
        loop {
            let inserted = sqlx::query(sql(&lock.insert))
                .bind(&lock.name)
                .bind(LEASE_SECONDS)
                .execute(&mut *conn)
                .await;
            match inserted {
                Ok(_) => return Ok(()),
                // Held: take it over if it is stale.
                Err(err) if error_number(&err) == Some(ER_DUP_ENTRY) => {
                    let taken = sqlx::query(sql(&lock.take_over))
                        .bind(LEASE_SECONDS)
                        .bind(&lock.name)
                        .execute(&mut *conn)
                        .await;
                    match taken {
                        Ok(done) if done.rows_affected() == 1 => return Ok(()),
                        Ok(_) => {}
                        Err(err) if error_number(&err) == Some(ER_LOCK_DEADLOCK) => {}
                        Err(err) => return Err(from_sqlx(err)),
                    }
                }
                // Another node's write of the row won certification.
                Err(err) if error_number(&err) == Some(ER_LOCK_DEADLOCK) => {}
                Err(err) => return Err(from_sqlx(err)),
            }
            if std::time::Instant::now() >= deadline {
                let holder: Option<(String, i64)> = sqlx::query_as(sql(&lock.holder))
                    .bind(&lock.name)
                    .fetch_optional(&mut *conn)
                    .await
                    .unwrap_or_default();
                let (owner, left) = holder.unwrap_or_default();
                return Err(Error::MigrationLockTimeout {
                    lock: format!(
                        "cluster migration lock (row {:?} of {})",
                        lock.name, lock.table
                    ),
                    waited: timeout,
                    holder: Some(format!(
                        "{owner} for {left} s more (a migrator that died keeps it until then)"
                    )),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(250));
        }
    }

    /// Extends the cluster lock's lease (each planning round).
    ///
    /// # Errors
    /// [`Error::Migration`] when the lock is no longer this connection's: its lease ran out
    /// and another migrator took it over, so this run must stop.
    pub(crate) async fn renew_cluster_lock(&self, conn: &mut MySqlConnection) -> Result<()> {
        let renewed = sqlx::query(sql(&self.cluster.renew))
            .bind(LEASE_SECONDS)
            .bind(&self.cluster.name)
            .execute(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        // sqlx asks for matched rows (CLIENT_FOUND_ROWS), so 1 means the row is ours; 0 is
        // checked against the owner once more before giving up.
        if renewed.rows_affected() == 1 || self.holds_cluster_lock(conn).await? {
            return Ok(());
        }
        Err(Error::Migration(format!(
            "lost the cluster migration lock (row {:?} of {}): its lease ran out and another migrator took it over; run the migration again",
            self.cluster.name, self.cluster.table
        )))
    }

    /// Whether this connection owns the cluster lock row.
    async fn holds_cluster_lock(&self, conn: &mut MySqlConnection) -> Result<bool> {
        let owner: Option<(String, i64)> = sqlx::query_as(sql(&self.cluster.holder))
            .bind(&self.cluster.name)
            .fetch_optional(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        let me: String = sqlx::query_scalar(sql(&self.cluster.me))
            .fetch_one(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        Ok(owner.is_some_and(|(owner, _)| owner == me))
    }

    /// Releases the cluster lock row, then `GET_LOCK`. Failures are logged: the lease runs
    /// out, and the session's end releases `GET_LOCK`.
    pub(crate) async fn release_lock(&self, conn: &mut MySqlConnection) {
        let released = sqlx::query(sql(&self.cluster.release))
            .bind(&self.cluster.name)
            .execute(&mut *conn)
            .await;
        if let Err(err) = released {
            tracing::warn!(lock = %self.cluster.name, error = %err, "releasing the cluster migration lock failed; its lease runs out");
        }
        self.release_node_lock(conn).await;
    }

    /// `RELEASE_LOCK` on `conn`. A failure is logged, not returned: the server releases the
    /// lock when the session ends anyway.
    pub(crate) async fn release_node_lock(&self, conn: &mut MySqlConnection) {
        let released: sqlx::Result<Option<i64>> = sqlx::query_scalar(sql(&self.lock.release))
            .fetch_one(&mut *conn)
            .await;
        if !matches!(released, Ok(Some(1))) {
            tracing::warn!(lock = %self.lock.name, result = ?released, "RELEASE_LOCK did not release the migration lock; closing the session releases it");
        }
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
                return Err(step.failed(err));
            }
            return Err(dirty_error(
                step.version,
                &step.description,
                self.table(),
                Some(Box::new(err)),
            ));
        }
        Ok(())
    }
}

/// [`MigrationSteps`] on a dedicated connection holding `GET_LOCK`. MySQL commits DDL
/// implicitly, so rounds are not transactions: `apply` records a step as unfinished before
/// its first statement and `record` marks it done.
pub(crate) struct MysqlSteps<'m> {
    pub(crate) conn: MySqlConnection,
    pub(crate) shared: &'m Shared,
    pub(crate) lock_timeout: std::time::Duration,
}

impl MysqlSteps<'_> {
    /// Closes the dedicated connection (which also ends its session and any lock).
    pub(crate) async fn close(self) {
        if let Err(err) = self.conn.close().await {
            tracing::debug!(error = %err, "closing the migration connection failed");
        }
    }
}

#[async_trait]
impl MigrationSteps for MysqlSteps<'_> {
    async fn lock(&mut self) -> Result<()> {
        self.shared
            .acquire_lock(&mut self.conn, self.lock_timeout)
            .await?;
        let created = match sqlx::raw_sql(sql(&self.shared.versions.create))
            .execute(&mut self.conn)
            .await
        {
            Ok(_) => self.shared.repair_version_table(&mut self.conn).await,
            Err(err) => Err(from_sqlx(err)),
        };
        if created.is_err() {
            self.unlock().await;
        }
        created
    }

    async fn unlock(&mut self) {
        self.shared.release_lock(&mut self.conn).await;
    }

    async fn begin(&mut self) -> Result<()> {
        // No transaction (MySQL commits DDL as it goes); the round renews the lock's lease.
        self.shared.renew_cluster_lock(&mut self.conn).await
    }

    async fn commit(&mut self) -> Result<()> {
        Ok(())
    }

    async fn rollback(&mut self) {}

    async fn applied(&mut self) -> Result<Vec<AppliedMigration>> {
        self.shared.applied(&mut self.conn).await
    }

    async fn apply(&mut self, step: &MigrationStep) -> Result<()> {
        let (shared, conn) = (self.shared, &mut self.conn);
        let key = vec![Arg::Text(shared.table()), Arg::Int(step.version)];
        let mark = |success| {
            vec![
                Arg::Bool(success),
                Arg::Text(shared.table()),
                Arg::Int(step.version),
            ]
        };
        match step.direction {
            Direction::Up => {
                // Recorded unfinished first: DDL commits as it goes.
                let row = vec![
                    Arg::Text(shared.table()),
                    Arg::Int(step.version),
                    Arg::Text(&step.description),
                    Arg::Bool(false),
                    Arg::Text(&step.checksum),
                    Arg::Int(0),
                ];
                shared
                    .execute(conn, &sql(&shared.versions.insert), row)
                    .await?;
                shared
                    .run_statements(conn, step, &sql(&shared.versions.delete), key)
                    .await
            }
            Direction::Down => {
                shared
                    .execute(conn, &sql(&shared.versions.set_success), mark(false))
                    .await?;
                shared
                    .run_statements(conn, step, &sql(&shared.versions.set_success), mark(true))
                    .await
            }
        }
    }

    async fn record(&mut self, step: &MigrationStep, elapsed_ms: i64) -> Result<()> {
        let (shared, conn) = (self.shared, &mut self.conn);
        match step.direction {
            Direction::Up => {
                let done = vec![
                    Arg::Bool(true),
                    Arg::Int(elapsed_ms),
                    Arg::Text(shared.table()),
                    Arg::Int(step.version),
                ];
                shared
                    .execute(conn, &sql(&shared.versions.mark_success), done)
                    .await
            }
            Direction::Down => {
                let key = vec![Arg::Text(shared.table()), Arg::Int(step.version)];
                shared
                    .execute(conn, &sql(&shared.versions.delete), key)
                    .await
            }
        }
    }

    /// One transaction: the version table is InnoDB.
    async fn stamp(&mut self, plan: &StampPlan) -> Result<()> {
        let shared = self.shared;
        let table = shared.table();
        let mut tx = self.conn.begin().await.map_err(from_sqlx)?;
        for version in &plan.delete {
            let key = vec![Arg::Text(table), Arg::Int(*version)];
            shared
                .execute(&mut tx, &sql(&shared.versions.delete), key)
                .await?;
        }
        for m in &plan.insert {
            let row = vec![
                Arg::Text(table),
                Arg::Int(m.version),
                Arg::Text(&m.description),
                Arg::Bool(true),
                Arg::Text(&m.checksum),
                Arg::Int(0),
            ];
            shared
                .execute(&mut tx, &sql(&shared.versions.insert), row)
                .await?;
        }
        tx.commit().await.map_err(from_sqlx)
    }
}

/// A bound value of a version-table statement.
#[derive(Clone, Copy)]
pub(crate) enum Arg<'a> {
    Int(i64),
    Text(&'a str),
    Bool(bool),
}

pub(crate) type Args<'a> = Vec<Arg<'a>>;

/// Dialogue migrations' history and lock: the schema's migration session (`GET_LOCK`, or
/// Galera's lock row with its lease), recording under
/// [`ledger_name`](fsmstore_core::ledger_name) in the version table.
pub(crate) struct MysqlLedger<'m> {
    pub(crate) steps: MysqlSteps<'m>,
    pub(crate) table: String,
}

#[async_trait]
impl fsmstore_core::DialogueLedger for MysqlLedger<'_> {
    async fn lock(&mut self) -> Result<()> {
        MigrationSteps::lock(&mut self.steps).await
    }

    async fn unlock(&mut self) {
        MigrationSteps::unlock(&mut self.steps).await;
    }

    async fn recorded(&mut self) -> Result<Vec<AppliedMigration>> {
        let steps = &mut self.steps;
        steps.shared.applied_of(&mut steps.conn, &self.table).await
    }

    async fn start(&mut self, version: i64, description: &str, checksum: &str) -> Result<()> {
        if self
            .recorded()
            .await?
            .iter()
            .any(|row| row.version == version)
        {
            return Ok(());
        }
        let steps = &mut self.steps;
        let row = vec![
            Arg::Text(&self.table),
            Arg::Int(version),
            Arg::Text(description),
            Arg::Bool(false),
            Arg::Text(checksum),
            Arg::Int(0),
        ];
        steps
            .shared
            .execute(&mut steps.conn, &sql(&steps.shared.versions.insert), row)
            .await
    }

    async fn finish(&mut self, version: i64, elapsed_ms: i64) -> Result<()> {
        let steps = &mut self.steps;
        let done = vec![
            Arg::Bool(true),
            Arg::Int(elapsed_ms),
            Arg::Text(&self.table),
            Arg::Int(version),
        ];
        steps
            .shared
            .execute(
                &mut steps.conn,
                &sql(&steps.shared.versions.mark_success),
                done,
            )
            .await
    }

    async fn keep(&mut self) -> Result<()> {
        // Renews the Galera lock row's lease (nothing to do for `GET_LOCK`).
        MigrationSteps::begin(&mut self.steps).await
    }
}
