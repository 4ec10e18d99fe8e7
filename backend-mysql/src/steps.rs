//! The steps of a MySQL migration run and their version-table bookkeeping: planning a
//! round, running a step one statement at a time with its unfinished/successful marks,
//! stamping. The lock around them is in `migrate.rs`.

use std::time::Instant;

use fsmstore_core::{
    dirty_error, AppliedMigration, Direction, MigrationPlan, MigrationSet, MigrationStep,
    MigrationTarget, Result, StampPlan, StepOutcome,
};
use sqlx::mysql::MySqlConnection;
use sqlx::{Connection, SqlStr};

use crate::error::from_sqlx;
use crate::storage::sql;

/// What a migrator needs to plan and run steps: the migrations and the statements.
pub(crate) struct Shared {
    pub(crate) set: MigrationSet,
    pub(crate) version_table: String,
    pub(crate) create: SqlStr,
    pub(crate) select_applied: SqlStr,
    pub(crate) insert: SqlStr,
    pub(crate) mark_success: SqlStr,
    pub(crate) delete: SqlStr,
    pub(crate) table_exists: SqlStr,
    pub(crate) lock_acquire: SqlStr,
    pub(crate) lock_release: SqlStr,
    pub(crate) lock_name: String,
}

impl Shared {
    pub(crate) fn table(&self) -> &str {
        self.set.table().as_str()
    }

    pub(crate) async fn applied(
        &self,
        conn: &mut MySqlConnection,
    ) -> Result<Vec<AppliedMigration>> {
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

    /// Plans against the version table and runs the first step (the lock is held).
    pub(crate) async fn next_step(
        &self,
        conn: &mut MySqlConnection,
        target: MigrationTarget,
    ) -> Result<StepOutcome> {
        let applied = self.applied(conn).await?;
        let plan = MigrationPlan::new(&self.set, &applied, target)?;
        let Some(step) = plan.steps.first() else {
            return Ok(StepOutcome::finished(&plan));
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
        Ok(StepOutcome::ran(&plan, step, elapsed))
    }

    /// Runs the step's statements one at a time (text protocol: DDL is not prepared). If the
    /// first fails nothing changed: `undo` restores the version row and the error is
    /// `MigrationFailed`. If a later one fails the step is half-applied: the row stays
    /// unfinished and the error is `MigrationDirty`, naming the stamp commands.
    pub(crate) async fn run_statements(
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

    pub(crate) async fn stamp(
        &self,
        conn: &mut MySqlConnection,
        target: MigrationTarget,
    ) -> Result<()> {
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
pub(crate) enum Arg<'a> {
    Int(i64),
    Text(&'a str),
    Bool(bool),
}

pub(crate) type Args<'a> = Vec<Arg<'a>>;
