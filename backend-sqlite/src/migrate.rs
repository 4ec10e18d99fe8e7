//! [`SqliteMigrator`]: runs the planner's steps. The lock is `BEGIN IMMEDIATE`: each
//! migration, its bookkeeping row and the planning that chose it share one transaction.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use fsmstore_core::sql::{drop_table_if_exists, VersionQueries};
use fsmstore_core::{
    drive_migration, AppliedMigration, Dialect, Direction, MigrationPlan, MigrationReport,
    MigrationSet, MigrationTarget, Migrator, Result, StampPlan, StepOutcome, StorageOptions,
    TableName,
};
use rusqlite::{Connection, TransactionBehavior};

use crate::config::SqliteConfig;
use crate::connections::Connections;
use crate::error::from_sqlite;

/// Migrates one FSM table in a SQLite database.
#[derive(Clone)]
pub struct SqliteMigrator {
    connections: Arc<Connections>,
    shared: Arc<Shared>,
}

struct Shared {
    set: MigrationSet,
    versions: VersionQueries,
    version_table: String,
}

impl std::fmt::Debug for SqliteMigrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteMigrator")
            .field("table", self.shared.set.table())
            .finish()
    }
}

impl SqliteMigrator {
    /// Opens a migrator on its own connection (no schema check: this is how an outdated
    /// database is upgraded). A private `:memory:` database is private to this migrator:
    /// use [`SqliteStorage::migrator`](crate::SqliteStorage::migrator) there.
    ///
    /// # Errors
    /// [`Error::Connection`](fsmstore_core::Error::Connection) when the file can not be opened.
    pub async fn open(config: SqliteConfig) -> Result<Self> {
        let connections = Connections::open(&config.clone().readers(0)).await?;
        Self::on_connections(connections, &config.options)
    }

    pub(crate) fn on_connections(
        connections: Arc<Connections>,
        options: &StorageOptions,
    ) -> Result<Self> {
        Ok(SqliteMigrator {
            connections,
            shared: Arc::new(Shared {
                set: options.migration_set(Dialect::Sqlite)?,
                versions: VersionQueries::for_table(Dialect::Sqlite, &options.version_table),
                version_table: options.version_table.as_str().to_owned(),
            }),
        })
    }

    /// Closes the migrator's connections (only those it opened itself matter).
    ///
    /// # Errors
    /// Database errors while closing.
    pub async fn close(&self) -> Result<()> {
        self.connections.close().await
    }
}

impl Shared {
    fn applied(&self, conn: &Connection) -> Result<Vec<AppliedMigration>> {
        let table = self.set.table().as_str();
        let mut statement = conn
            .prepare_cached(&self.versions.select_applied)
            .map_err(from_sqlite)?;
        let rows = statement
            .query_map([table], |row| {
                Ok(AppliedMigration {
                    version: row.get(0)?,
                    description: row.get(1)?,
                    installed_on_ms: row.get(2)?,
                    success: row.get(3)?,
                    checksum: row.get(4)?,
                    execution_time_ms: row.get(5)?,
                })
            })
            .map_err(from_sqlite)?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(from_sqlite)
    }

    fn version_table_exists(&self, conn: &Connection) -> Result<bool> {
        conn.query_row(&self.versions.table_exists, [&self.version_table], |row| {
            row.get::<_, i64>(0)
        })
        .map(|count| count > 0)
        .map_err(from_sqlite)
    }

    /// Plans against the current rows and runs the first step, all in one transaction.
    /// Returns the resolved target and the step that ran, if any.
    fn run_next_step(&self, conn: &mut Connection, target: MigrationTarget) -> Result<StepOutcome> {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(from_sqlite)?;
        tx.execute(&self.versions.create, []).map_err(from_sqlite)?;
        let plan = MigrationPlan::new(&self.set, &self.applied(&tx)?, target)?;
        let Some(step) = plan.steps.first() else {
            tx.commit().map_err(from_sqlite)?;
            return Ok(StepOutcome::finished(&plan));
        };
        let started = Instant::now();
        for statement in &step.statements {
            tx.execute_batch(statement)
                .map_err(|err| step.failed(err))?;
        }
        let elapsed = started.elapsed().as_millis() as i64;
        let table = self.set.table().as_str();
        match step.direction {
            Direction::Up => tx.execute(
                &self.versions.insert,
                rusqlite::params![
                    table,
                    step.version,
                    step.description,
                    true,
                    step.checksum,
                    elapsed
                ],
            ),
            Direction::Down => tx.execute(
                &self.versions.delete,
                rusqlite::params![table, step.version],
            ),
        }
        .map_err(from_sqlite)?;
        tx.commit().map_err(from_sqlite)?;
        tracing::info!(version = step.version, direction = ?step.direction, ms = elapsed, "sqlite migration ran");
        Ok(StepOutcome::ran(&plan, step, elapsed))
    }

    fn stamp(&self, conn: &mut Connection, target: MigrationTarget) -> Result<()> {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(from_sqlite)?;
        tx.execute(&self.versions.create, []).map_err(from_sqlite)?;
        let plan = StampPlan::new(&self.set, &self.applied(&tx)?, target)?;
        let table = self.set.table().as_str();
        for version in plan.delete {
            tx.execute(&self.versions.delete, rusqlite::params![table, version])
                .map_err(from_sqlite)?;
        }
        for m in plan.insert {
            tx.execute(
                &self.versions.insert,
                rusqlite::params![table, m.version, m.description, true, m.checksum, 0_i64],
            )
            .map_err(from_sqlite)?;
        }
        tx.commit().map_err(from_sqlite)
    }
}

#[async_trait]
impl Migrator for SqliteMigrator {
    fn migrations(&self) -> &MigrationSet {
        &self.shared.set
    }

    async fn applied(&self) -> Result<Vec<AppliedMigration>> {
        let shared = Arc::clone(&self.shared);
        self.connections
            .write(move |conn| {
                if !shared.version_table_exists(conn)? {
                    return Ok(Vec::new());
                }
                shared.applied(conn)
            })
            .await
    }

    async fn migrate(&self, target: MigrationTarget) -> Result<MigrationReport> {
        drive_migration(target, |target| {
            let shared = Arc::clone(&self.shared);
            self.connections
                .write(move |conn| shared.run_next_step(conn, target))
        })
        .await
    }

    async fn drop_tables(&self) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        self.connections
            .write(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(from_sqlite)?;
                for table in [
                    shared.set.table().clone(),
                    TableName::new(&shared.version_table)?,
                ] {
                    tx.execute(&drop_table_if_exists(Dialect::Sqlite, &table), [])
                        .map_err(from_sqlite)?;
                }
                tx.commit().map_err(from_sqlite)
            })
            .await
    }

    async fn stamp(&self, target: MigrationTarget) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        self.connections
            .write(move |conn| shared.stamp(conn, target))
            .await
    }
}
