//! The [`Migrator`] trait backends implement, and what it reports.

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::migrations::{AppliedMigration, MigrationSet};
use crate::options::SchemaPolicy;
use crate::planner::{verified_version, Direction, MigrationTarget};

/// A migration run: the version before and after, and each step with its duration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// The version before.
    pub from: i64,
    /// The version after.
    pub to: i64,
    /// `(version, direction, milliseconds)` of each step that ran.
    pub steps: Vec<(i64, Direction, i64)>,
}

/// The applied version compared with what the code needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// The FSM table.
    pub table: String,
    /// The applied version (0: nothing, the table does not exist).
    pub current: i64,
    /// The newest version the code knows.
    pub head: i64,
    /// The version table.
    pub version_table: String,
}

impl SchemaStatus {
    /// Compares `applied` (rows of `version_table`) with `set`.
    ///
    /// # Errors
    /// Dirty, drifted or too-new schemas, as [`MigrationPlan::new`](crate::MigrationPlan::new).
    pub fn new(
        set: &MigrationSet,
        version_table: &str,
        applied: &[AppliedMigration],
    ) -> Result<Self> {
        Ok(SchemaStatus {
            table: set.table().to_string(),
            current: verified_version(set, applied)?,
            head: set.head(),
            version_table: version_table.to_owned(),
        })
    }

    /// What upgrades this table (to `to`, or the latest version), on its version table.
    pub fn upgrade_remedy(&self, to: Option<i64>) -> crate::Remedy {
        crate::Remedy::upgrade(&self.table, to).with_version_table(&self.version_table)
    }

    /// Succeeds when the schema is exactly at head.
    ///
    /// # Errors
    /// [`Error::SchemaOutdated`] naming the command that upgrades it.
    pub fn require_head(&self) -> Result<()> {
        if self.current < self.head {
            return Err(Error::SchemaOutdated {
                table: self.table.clone(),
                current: self.current,
                required: self.head,
                fix: Box::new(self.upgrade_remedy(None)),
            });
        }
        Ok(())
    }
}

/// How an applied or pending migration stands, for `history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The migration's version.
    pub version: i64,
    /// Its description in the code (or in the version table, for an unknown version).
    pub description: String,
    /// Its row in the version table, if applied.
    pub applied: Option<AppliedMigration>,
    /// Whether the code knows this version.
    pub known: bool,
    /// Whether the applied checksum equals the code's (`true` when not applied).
    pub checksum_ok: bool,
}

/// Runs the planned migrations of one FSM table on one database.
///
/// Backends implement the four required methods; they lock, read the version table, ask
/// the planner ([`MigrationPlan`](crate::MigrationPlan)) for the next step and execute it.
///
/// # Behavior
/// * Concurrent migrators apply each migration exactly once (the backend's lock).
/// * The lock is released on every exit path, including a failing migration.
/// * Drift, dirty migrations and a database newer than the code are errors that name the
///   version.
#[async_trait]
pub trait Migrator: Send + Sync {
    /// The migrations this migrator runs, rendered for its dialect and table.
    fn migrations(&self) -> &MigrationSet;

    /// The version table it records them in.
    fn version_table(&self) -> &str;

    /// The version-table rows of this FSM table, by version (empty when none).
    ///
    /// # Errors
    /// Database errors.
    async fn applied(&self) -> Result<Vec<AppliedMigration>>;

    /// Moves the schema to `target` under the migration lock.
    ///
    /// # Errors
    /// Planner errors (see [`MigrationPlan::new`](crate::MigrationPlan::new)),
    /// [`Error::MigrationFailed`] when a statement fails, database errors.
    async fn migrate(&self, target: MigrationTarget) -> Result<MigrationReport>;

    /// Records `target` as the applied version without running any migration SQL (to adopt
    /// a table made elsewhere, or to mark a repaired dirty migration).
    ///
    /// # Errors
    /// [`Error::Migration`] for a target outside the known range; database errors.
    async fn stamp(&self, target: MigrationTarget) -> Result<()>;

    /// Releases the connections this migrator holds. A migrator handed out by a
    /// `Database` shares the database's pool: closing it closes the database. Later calls
    /// fail with [`Error::Closed`]; closing twice is fine.
    ///
    /// # Errors
    /// Database errors while shutting down.
    async fn close(&self) -> Result<()>;

    /// Drops the FSM table and the version table, whatever version they are at (scratch
    /// tables of the conformance command; uninstalling). The version table is dropped
    /// even if other FSM tables recorded versions in it, so use it only on tables you own.
    ///
    /// # Errors
    /// [`Error::Config`] where the backend does not support it; database errors.
    async fn drop_tables(&self) -> Result<()> {
        Err(Error::Config(
            "this migrator can not drop tables".to_owned(),
        ))
    }

    /// Where this table's dialogue migrations are recorded, under the migration lock
    /// ([`migrate_dialogues`](crate::migrate_dialogues)): one per run.
    ///
    /// # Errors
    /// [`Error::Config`] where the backend has none; database errors.
    async fn dialogue_ledger(&self) -> Result<Box<dyn crate::DialogueLedger + '_>> {
        Err(Error::Config(
            "this backend records no dialogue migrations".to_owned(),
        ))
    }

    /// Upgrades to head: idempotent and safe with many instances starting at once.
    ///
    /// # Errors
    /// As [`Migrator::migrate`].
    async fn ensure_schema(&self) -> Result<MigrationReport> {
        self.migrate(MigrationTarget::Head).await
    }

    /// What opening a storage does about the schema: `Upgrade` runs
    /// [`Migrator::ensure_schema`], `Verify` requires the schema at head, `Trust` checks
    /// nothing. Every backend's `open` calls this, so the policies mean the same everywhere.
    ///
    /// # Errors
    /// [`Error::SchemaOutdated`] naming the command to run, the other schema errors, and
    /// database errors.
    async fn apply_policy(&self, policy: SchemaPolicy) -> Result<()> {
        match policy {
            SchemaPolicy::Upgrade => self.ensure_schema().await.map(drop),
            SchemaPolicy::Verify => {
                let status = self.status().await?;
                if status.current == 0 && self.table_exists().await? {
                    // Not "create it": it is there, recorded elsewhere or by no one.
                    return Err(Error::SchemaUnrecorded {
                        fix: Box::new(
                            crate::Remedy::stamp(&status.table, 1)
                                .with_version_table(&status.version_table),
                        ),
                        table: status.table,
                        version_table: status.version_table,
                    });
                }
                status.require_head()
            }
            SchemaPolicy::Trust => Ok(()),
        }
    }

    /// What opening a storage in `layout` does about the schema. fsmstore's layout is
    /// [`Migrator::apply_policy`]. A layout pinned to an older version (the aiogram layout,
    /// version 1) is never migrated past it: `Upgrade` creates a missing table at that
    /// version, and records it on a table another program made (Python's library records
    /// nothing); `Verify` accepts the table at that version or unrecorded, and refuses a
    /// missing one with the command that creates it; a table at another version is refused
    /// with [`Error::LayoutMismatch`] (under every policy but `Trust`).
    ///
    /// # Errors
    /// As [`Migrator::apply_policy`], and [`Error::LayoutMismatch`].
    async fn apply_layout_policy(&self, policy: SchemaPolicy, layout: Layout) -> Result<()> {
        if layout == Layout::Fsmstore || policy == SchemaPolicy::Trust {
            return self.apply_policy(policy).await;
        }
        let mut status = self.status().await?;
        let expected = layout.schema_version(status.head);
        if status.current == 0 && policy == SchemaPolicy::Upgrade {
            // `AtLeast`: decided again under the lock, so a table another migrator moved
            // on meanwhile is never moved back (it is refused below instead).
            let target = MigrationTarget::AtLeast(expected);
            if self.table_exists().await? {
                self.stamp(target).await?;
            } else {
                self.migrate(target).await?;
            }
            status = self.status().await?;
        }
        match status.current {
            0 if policy == SchemaPolicy::Verify && self.table_exists().await? => Ok(()),
            0 => Err(Error::SchemaOutdated {
                table: status.table.clone(),
                current: 0,
                required: expected,
                fix: Box::new(status.upgrade_remedy(Some(expected))),
            }),
            current if current == expected => Ok(()),
            current => Err(Error::LayoutMismatch {
                table: status.table.clone(),
                layout,
                current,
                expected,
                fix: if current > expected {
                    format!(
                        "fsmstore's migrations have moved it to its own layout, which Python bots can no longer write; open it without layout={layout} (or move it back by downgrading it to schema version {expected})"
                    )
                } else {
                    status.upgrade_remedy(Some(expected)).to_string()
                },
            }),
        }
    }

    /// Whether the FSM table exists (made by fsmstore or by another program).
    ///
    /// # Errors
    /// Database errors.
    async fn table_exists(&self) -> Result<bool>;

    /// The applied version compared with head.
    ///
    /// # Errors
    /// Dirty, drifted or too-new schemas; database errors.
    async fn status(&self) -> Result<SchemaStatus> {
        SchemaStatus::new(
            self.migrations(),
            self.version_table(),
            &self.applied().await?,
        )
        .map_err(|err| err.for_version_table(self.version_table()))
    }

    /// The applied version (0: nothing applied).
    ///
    /// # Errors
    /// As [`Migrator::status`].
    async fn current(&self) -> Result<i64> {
        Ok(self.status().await?.current)
    }

    /// Every known and every applied migration, in version order, with its state.
    ///
    /// # Errors
    /// Database errors.
    async fn history(&self) -> Result<Vec<HistoryEntry>> {
        let applied = self.applied().await?;
        Ok(history(self.migrations(), applied))
    }
}

/// Joins the code's migrations with the version table's rows.
pub fn history(set: &MigrationSet, applied: Vec<AppliedMigration>) -> Vec<HistoryEntry> {
    let newest = applied
        .iter()
        .map(|row| row.version)
        .max()
        .unwrap_or(0)
        .max(set.head());
    (1..=newest)
        .filter_map(|version| {
            let row = applied.iter().find(|row| row.version == version).cloned();
            let migration = set.get(version);
            if row.is_none() && migration.is_none() {
                return None;
            }
            Some(HistoryEntry {
                version,
                description: migration
                    .map(|m| m.description.clone())
                    .or_else(|| row.as_ref().map(|r| r.description.clone()))
                    .unwrap_or_default(),
                checksum_ok: match (&row, migration) {
                    (Some(row), Some(m)) => row.checksum == m.checksum,
                    _ => true,
                },
                known: migration.is_some(),
                applied: row,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dialect, TableName};

    fn applied(set: &MigrationSet, version: i64, checksum: Option<&str>) -> AppliedMigration {
        let migration = set.get(version);
        AppliedMigration {
            version,
            description: migration.map_or("gone".into(), |m| m.description.clone()),
            installed_on_ms: 0,
            success: true,
            checksum: checksum
                .map(str::to_owned)
                .or_else(|| migration.map(|m| m.checksum.clone()))
                .unwrap_or_default(),
            execution_time_ms: 1,
        }
    }

    #[test]
    fn status_names_the_upgrade_and_requires_head() {
        let set = MigrationSet::builtin(Dialect::Sqlite, &TableName::new("forms").unwrap());
        let head = set.head();
        let rows: Vec<_> = (1..head).map(|v| applied(&set, v, None)).collect();
        let status = SchemaStatus::new(&set, "custom_v", &rows).unwrap();
        assert_eq!((status.current, status.head), (head - 1, head));
        assert_eq!(
            status.upgrade_remedy(None),
            crate::Remedy::upgrade("forms", None).with_version_table("custom_v")
        );
        let Err(Error::SchemaOutdated {
            current,
            required,
            fix,
            ..
        }) = status.require_head()
        else {
            panic!("one version short of head is outdated")
        };
        assert_eq!((current, required), (head - 1, head));
        assert_eq!(*fix, status.upgrade_remedy(None));

        let rows: Vec<_> = (1..=head).map(|v| applied(&set, v, None)).collect();
        let status = SchemaStatus::new(&set, DEFAULT_VERSION_TABLE_NAME, &rows).unwrap();
        status.require_head().unwrap();
        assert_eq!(
            status.upgrade_remedy(None),
            crate::Remedy::upgrade("forms", None)
        );
    }

    #[test]
    fn history_joins_code_and_rows() {
        let set = MigrationSet::builtin(Dialect::Postgres, &TableName::new("forms").unwrap());
        let head = set.head();
        let rows = vec![
            applied(&set, 1, None),
            applied(&set, 2, Some("edited")),
            applied(&set, head + 1, Some("x")),
        ];
        let entries = history(&set, rows);
        assert_eq!(entries.len() as i64, head + 1);
        assert!(entries[0].applied.is_some() && entries[0].checksum_ok && entries[0].known);
        assert!(
            entries[1].applied.is_some() && !entries[1].checksum_ok,
            "drifted"
        );
        assert!(
            entries[2].applied.is_none() && entries[2].checksum_ok,
            "pending"
        );
        let newer = &entries[head as usize];
        assert_eq!(newer.version, head + 1);
        assert!(!newer.known && newer.applied.is_some());
        assert_eq!(newer.description, "gone");
    }

    const DEFAULT_VERSION_TABLE_NAME: &str = crate::table_name::DEFAULT_VERSION_TABLE;
}
