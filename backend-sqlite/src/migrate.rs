//! [`SqliteMigrator`]: core's migration engine on SQLite. The lock is `BEGIN IMMEDIATE`:
//! each planning round, its migration and its version row share one transaction.

use std::sync::Arc;

use async_trait::async_trait;
use fsmstore_core::sql::{drop_table_if_exists, VersionQueries};
use fsmstore_core::{
    ledger_name, run_migration, run_stamp, AppliedMigration, Dialect, DialogueLedger, Direction,
    Error, LocalIsolation, LocalLocks, MigrationReport, MigrationSet, MigrationStep,
    MigrationSteps, MigrationTarget, Migrator, Result, StampPlan, StorageOptions, TableName,
};
use futures_util::FutureExt;
use rusqlite::{Connection, TransactionBehavior};

use crate::config::SqliteConfig;
use crate::connections::Connections;
use crate::error::from_sqlite;

/// Migrates one FSM table in a SQLite database.
#[derive(Clone)]
pub struct SqliteMigrator {
    connections: Arc<Connections>,
    locks: Arc<LocalLocks>,
    /// The file other processes' dialogue migrations lock (a file database's).
    lock_file: Option<std::path::PathBuf>,
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
        config.check()?;
        let mut single = config.clone();
        single.options.pool_max = 1;
        let connections = Connections::open(&single).await?;
        let locks = crate::locks::shared_locks(&config.location, config.options.table.as_str());
        Self::on_connections(connections, locks, &config.location, &config.options)
    }

    /// A migrator on `connections`; `locks` are the table's in-process locks (the
    /// dialogue migrations' lock is one of them).
    pub(crate) fn on_connections(
        connections: Arc<Connections>,
        locks: Arc<LocalLocks>,
        location: &crate::SqliteLocation,
        options: &StorageOptions,
    ) -> Result<Self> {
        let lock_file = match location {
            crate::SqliteLocation::File(path) => {
                let mut name = path.as_os_str().to_owned();
                name.push(format!(".{}~dialogues.lock", options.table.as_str()));
                Some(std::path::PathBuf::from(name))
            }
            _ => None,
        };
        Ok(SqliteMigrator {
            connections,
            locks,
            lock_file,
            shared: Arc::new(Shared {
                set: options.migration_set(Dialect::Sqlite)?,
                versions: VersionQueries::for_table(Dialect::Sqlite, &options.version_table),
                version_table: options.version_table.as_str().to_owned(),
            }),
        })
    }
}

impl Shared {
    fn applied(&self, conn: &Connection) -> Result<Vec<AppliedMigration>> {
        self.applied_of(conn, self.set.table().as_str())
    }

    /// The version-table rows recorded under `table`.
    fn applied_of(&self, conn: &Connection, table: &str) -> Result<Vec<AppliedMigration>> {
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
        self.exists(conn, &self.version_table)
    }

    /// Whether table `name` exists.
    fn exists(&self, conn: &Connection, name: &str) -> Result<bool> {
        conn.query_row(&self.versions.table_exists, [name], |row| {
            row.get::<_, i64>(0)
        })
        .map(|count| count > 0)
        .map_err(from_sqlite)
    }
}

impl SqliteMigrator {
    /// Runs `work` (core's engine) on [`SqliteSteps`] over the writer connection, inside
    /// one blocking call; its fix commands name this migrator's version table.
    async fn with_steps<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut SqliteSteps<'_>, &MigrationSet) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let shared = Arc::clone(&self.shared);
        self.connections
            .write(move |conn| {
                let mut steps = SqliteSteps {
                    conn,
                    shared: &shared,
                };
                work(&mut steps, &shared.set)
                    .map_err(|err| err.for_version_table(&shared.version_table))
            })
            .await
    }
}

/// [`MigrationSteps`] on the writer connection, inside one blocking call: SQLite's steps
/// never wait on anything but SQLite, so core's engine runs to completion in a single poll
/// (see [`run_blocking`]). The lock is each round's `BEGIN IMMEDIATE`.
struct SqliteSteps<'c> {
    conn: &'c mut Connection,
    shared: &'c Shared,
}

/// The writer is the storage's shared connection: whatever ended the run (an error the
/// engine did not roll back, a panic), it must not stay inside a transaction.
impl Drop for SqliteSteps<'_> {
    fn drop(&mut self) {
        if !self.conn.is_autocommit() {
            if let Err(err) = self.conn.execute_batch("ROLLBACK") {
                tracing::warn!(error = %err, "rolling back an unfinished migration round failed");
            }
        }
    }
}

impl SqliteSteps<'_> {
    fn run(&self, sql: &str, params: impl rusqlite::Params) -> Result<()> {
        self.conn
            .execute(sql, params)
            .map(drop)
            .map_err(from_sqlite)
    }
}

#[async_trait]
impl MigrationSteps for SqliteSteps<'_> {
    async fn lock(&mut self) -> Result<()> {
        Ok(())
    }

    async fn unlock(&mut self) {}

    async fn begin(&mut self) -> Result<()> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(from_sqlite)?;
        let created = self.run(&self.shared.versions.create, []);
        if created.is_err() {
            self.rollback().await;
        }
        created
    }

    async fn commit(&mut self) -> Result<()> {
        self.conn.execute_batch("COMMIT").map_err(from_sqlite)
    }

    async fn rollback(&mut self) {
        if let Err(err) = self.conn.execute_batch("ROLLBACK") {
            tracing::warn!(error = %err, "rolling back a migration round failed");
        }
    }

    async fn applied(&mut self) -> Result<Vec<AppliedMigration>> {
        self.shared.applied(self.conn)
    }

    async fn apply(&mut self, step: &MigrationStep) -> Result<()> {
        for statement in &step.statements {
            self.conn
                .execute_batch(statement)
                .map_err(|err| step.failed(err))?;
        }
        Ok(())
    }

    async fn record(&mut self, step: &MigrationStep, elapsed_ms: i64) -> Result<()> {
        let table = self.shared.set.table().as_str();
        let versions = &self.shared.versions;
        match step.direction {
            Direction::Up => self.run(
                &versions.insert,
                rusqlite::params![
                    table,
                    step.version,
                    step.description,
                    true,
                    step.checksum,
                    elapsed_ms
                ],
            ),
            Direction::Down => self.run(&versions.delete, rusqlite::params![table, step.version]),
        }
    }

    async fn stamp(&mut self, plan: &StampPlan) -> Result<()> {
        let table = self.shared.set.table().as_str();
        let versions = &self.shared.versions;
        for version in &plan.delete {
            self.run(&versions.delete, rusqlite::params![table, version])?;
        }
        for m in &plan.insert {
            self.run(
                &versions.insert,
                rusqlite::params![table, m.version, m.description, true, m.checksum, 0_i64],
            )?;
        }
        Ok(())
    }
}

/// Runs a migration future built on [`SqliteSteps`] to completion on the current
/// (blocking) thread. It never waits, so one poll finishes it; a future that did wait
/// would be a bug in this file, reported as an error rather than a hang.
fn run_blocking<T>(work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    work.now_or_never().unwrap_or_else(|| {
        Err(Error::database(
            false,
            "a SQLite migration step waited on something other than SQLite",
        ))
    })
}

#[async_trait]
impl Migrator for SqliteMigrator {
    fn migrations(&self) -> &MigrationSet {
        &self.shared.set
    }

    fn version_table(&self) -> &str {
        &self.shared.version_table
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

    async fn table_exists(&self) -> Result<bool> {
        let shared = Arc::clone(&self.shared);
        self.connections
            .read(move |conn| shared.exists(conn, shared.set.table().as_str()))
            .await
    }

    async fn migrate(&self, target: MigrationTarget) -> Result<MigrationReport> {
        self.with_steps(move |steps, set| run_blocking(run_migration(steps, set, target)))
            .await
    }

    async fn close(&self) -> Result<()> {
        self.connections.close().await
    }

    async fn dialogue_ledger(&self) -> Result<Box<dyn DialogueLedger + '_>> {
        Ok(Box::new(SqliteLedger {
            locks: Arc::clone(&self.locks),
            lock_file: self.lock_file.clone(),
            held: None,
            file_held: None,
            connections: Arc::clone(&self.connections),
            shared: Arc::clone(&self.shared),
            table: ledger_name(self.shared.set.table().as_str()),
        }))
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
        self.with_steps(move |steps, set| run_blocking(run_stamp(steps, set, target)))
            .await
    }
}

/// How long a dialogue migration waits for another one of this process on the same table.
const DIALOGUE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Dialogue migrations' history: the version table, under
/// [`ledger_name`](fsmstore_core::ledger_name), each call one `IMMEDIATE` transaction of
/// the writer. SQLite has no named lock, and a step can not hold a transaction open (the
/// bot writes meanwhile): the lock is the table's in-process lock named
/// [`ledger_name`](fsmstore_core::ledger_name) (no row id has a `~`), which every handle
/// of this process shares, and for a file an exclusive lock on the file
/// `<database>.<table>~dialogues.lock` beside it, which other processes take (the
/// operating system releases it when the process ends, however it ends).
struct SqliteLedger {
    locks: Arc<LocalLocks>,
    lock_file: Option<std::path::PathBuf>,
    held: Option<fsmstore_core::LockGuard>,
    /// The lock file's connection, in its exclusive transaction (behind a mutex: a
    /// connection is not `Sync`; nothing else uses it).
    file_held: Option<std::sync::Mutex<Connection>>,
    connections: Arc<Connections>,
    shared: Arc<Shared>,
    table: String,
}

impl SqliteLedger {
    /// `work` in one `IMMEDIATE` transaction, the version table created first.
    async fn round<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection, &Shared, &str) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (shared, table) = (Arc::clone(&self.shared), self.table.clone());
        self.connections
            .write(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(from_sqlite)?;
                tx.execute(&shared.versions.create, [])
                    .map_err(from_sqlite)?;
                let value = work(&tx, &shared, &table)?;
                tx.commit().map_err(from_sqlite)?;
                Ok(value)
            })
            .await
    }
}

#[async_trait]
impl DialogueLedger for SqliteLedger {
    async fn lock(&mut self) -> Result<()> {
        let isolation = LocalIsolation::shared(Arc::clone(&self.locks), StorageOptions::default());
        self.held = Some(
            isolation
                .lock_id(self.table.clone(), DIALOGUE_LOCK_WAIT)
                .await?
                .ok_or_else(|| Error::MigrationLockTimeout {
                    lock: self.table.clone(),
                    waited: DIALOGUE_LOCK_WAIT,
                    holder: Some("another dialogue migration of this process".to_owned()),
                })?,
        );
        if let Some(path) = &self.lock_file {
            match lock_file(path, DIALOGUE_LOCK_WAIT).await {
                Ok(file) => self.file_held = Some(std::sync::Mutex::new(file)),
                Err(err) => {
                    self.held = None;
                    return Err(err);
                }
            }
        }
        let created = self.round(|_, _, _| Ok(())).await;
        if created.is_err() {
            self.unlock().await;
        }
        created
    }

    async fn unlock(&mut self) {
        // Dropping the file releases its lock.
        self.file_held = None;
        self.held = None;
    }

    async fn recorded(&mut self) -> Result<Vec<AppliedMigration>> {
        self.round(|conn, shared, table| shared.applied_of(conn, table))
            .await
    }

    async fn start(&mut self, version: i64, description: &str, checksum: &str) -> Result<()> {
        let (description, checksum) = (description.to_owned(), checksum.to_owned());
        self.round(move |conn, shared, table| {
            if shared
                .applied_of(conn, table)?
                .iter()
                .any(|row| row.version == version)
            {
                return Ok(());
            }
            conn.execute(
                &shared.versions.insert,
                rusqlite::params![table, version, description, false, checksum, 0_i64],
            )
            .map(drop)
            .map_err(from_sqlite)
        })
        .await
    }

    async fn finish(&mut self, version: i64, elapsed_ms: i64) -> Result<()> {
        self.round(move |conn, shared, table| {
            conn.execute(
                &shared.versions.mark_success,
                rusqlite::params![true, elapsed_ms, table, version],
            )
            .map(drop)
            .map_err(from_sqlite)
        })
        .await
    }
}

/// An exclusive lock on the file `path`, waiting at most `wait`: SQLite's own, on a
/// database file of its own (`BEGIN EXCLUSIVE`, held until the connection is dropped; the
/// operating system releases it with the process).
///
/// # Errors
/// [`Error::MigrationLockTimeout`] when another process held it all along;
/// [`Error::Migration`] when the file can not be opened or locked.
async fn lock_file(path: &std::path::Path, wait: std::time::Duration) -> Result<Connection> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let failed = |err: rusqlite::Error| {
            let busy = matches!(
                &err,
                rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::DatabaseBusy
            );
            if busy {
                Error::MigrationLockTimeout {
                    lock: path.display().to_string(),
                    waited: wait,
                    holder: Some("another process's dialogue migration".to_owned()),
                }
            } else {
                Error::Migration(format!(
                    "could not lock the dialogue migrations' lock file {}: {err}",
                    path.display()
                ))
            }
        };
        let conn = Connection::open(&path).map_err(failed)?;
        conn.busy_timeout(wait).map_err(failed)?;
        conn.execute_batch("BEGIN EXCLUSIVE").map_err(failed)?;
        Ok(conn)
    })
    .await
    .map_err(|err| Error::Migration(format!("the lock file's thread failed: {err}")))?
}

#[cfg(test)]
mod lock_file_tests {
    use super::*;

    /// The lock file is exclusive (a second holder times out with the error that names the
    /// lock) and free again once its holder is dropped.
    #[tokio::test]
    async fn the_lock_file_is_exclusive_and_freed_by_its_holder() {
        let dir = std::env::temp_dir().join(format!("fsmstore-lockfile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bot.db.fsm~dialogues.lock");
        let held = lock_file(&path, std::time::Duration::from_secs(5))
            .await
            .unwrap();
        let err = lock_file(&path, std::time::Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::MigrationLockTimeout { lock, .. } if lock.ends_with("~dialogues.lock")),
            "{err:?}"
        );
        drop(held);
        lock_file(&path, std::time::Duration::from_secs(5))
            .await
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
