//! The migration planner: pure logic from the applied rows and the migration list to the
//! steps to run. Backends execute plans; they never decide what to run.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::migrations::{AppliedMigration, Migration, MigrationSet};

/// Where to move the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationTarget {
    /// The newest version the code knows.
    Head,
    /// Before the first migration (the table is dropped).
    Base,
    /// An absolute version (`0` is the same as `Base`).
    Version(i64),
    /// Relative to the current version: `+1` up one, `-1` down one.
    Relative(i64),
    /// Up to this version if the schema is below it, else where it is: never down. Decided
    /// under the migration lock, so a migrator that moved the table on meanwhile is never
    /// undone (how a storage in an older layout creates its table; see
    /// [`Migrator::apply_layout_policy`](crate::Migrator::apply_layout_policy)).
    AtLeast(i64),
}

impl FromStr for MigrationTarget {
    type Err = Error;

    /// Parses `head`, `base`, `3`, `+1` or `-2`.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let invalid = || {
            Error::Migration(format!(
                "invalid migration target {s:?}: use head, base, a version (3) or a step (+1, -1)"
            ))
        };
        match s {
            "head" => Ok(MigrationTarget::Head),
            "base" => Ok(MigrationTarget::Base),
            _ if s.starts_with('+') || s.starts_with('-') => s
                .parse()
                .map(MigrationTarget::Relative)
                .map_err(|_| invalid()),
            _ => s
                .parse()
                .map(MigrationTarget::Version)
                .map_err(|_| invalid()),
        }
    }
}

impl fmt::Display for MigrationTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrationTarget::Head => f.write_str("head"),
            MigrationTarget::Base => f.write_str("base"),
            MigrationTarget::Version(v) => write!(f, "{v}"),
            MigrationTarget::Relative(k) => write!(f, "{k:+}"),
            MigrationTarget::AtLeast(v) => write!(f, ">={v}"),
        }
    }
}

/// Which way a step moves the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Applies a migration.
    Up,
    /// Reverts one.
    Down,
}

/// One migration to apply or revert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStep {
    /// The migration's version.
    pub version: i64,
    /// Its description.
    pub description: String,
    /// Apply or revert.
    pub direction: Direction,
    /// The statements to run, in order.
    pub statements: Vec<String>,
    /// The migration's checksum (recorded when applying).
    pub checksum: String,
}

impl MigrationStep {
    /// The error for this step when one of its statements failed with `source`.
    pub fn failed(&self, source: impl Into<crate::error::BoxError>) -> Error {
        Error::MigrationFailed {
            version: self.version,
            description: self.description.clone(),
            source: source.into(),
        }
    }

    fn new(migration: &Migration, direction: Direction) -> Self {
        MigrationStep {
            version: migration.version,
            description: migration.description.clone(),
            direction,
            statements: match direction {
                Direction::Up => migration.up.clone(),
                Direction::Down => migration.down.clone(),
            },
            checksum: migration.checksum.clone(),
        }
    }
}

/// What to run to move from the applied version to a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationPlan {
    /// The version applied now (0: nothing).
    pub current: i64,
    /// The version after the plan ran.
    pub target: i64,
    /// The steps, in order.
    pub steps: Vec<MigrationStep>,
}

impl MigrationPlan {
    /// Plans the move of `set` from `applied` to `target`.
    ///
    /// # Errors
    /// * [`Error::MigrationDirty`] when a migration started and did not finish;
    /// * [`Error::MigrationDrift`] when an applied migration's checksum differs from the code's;
    /// * [`Error::SchemaTooNew`] when the database holds a version the code does not know;
    /// * [`Error::Migration`] for a target outside `0..=head` or a version table with gaps.
    pub fn new(
        set: &MigrationSet,
        applied: &[AppliedMigration],
        target: MigrationTarget,
    ) -> Result<Self> {
        let current = verified_version(set, applied)?;
        let target = resolve_target(set, current, target)?;
        let steps = if target >= current {
            (current + 1..=target)
                .filter_map(|version| set.get(version))
                .map(|migration| MigrationStep::new(migration, Direction::Up))
                .collect()
        } else {
            (target + 1..=current)
                .rev()
                .filter_map(|version| set.get(version))
                .map(|migration| MigrationStep::new(migration, Direction::Down))
                .collect()
        };
        Ok(MigrationPlan {
            current,
            target,
            steps,
        })
    }

    /// Whether nothing needs to run.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// What `stamp` changes in the version table: rows to delete, then rows to insert. Stamping
/// runs no migration SQL; it repairs dirty rows and accepts the code's checksums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StampPlan {
    /// The version recorded afterwards.
    pub target: i64,
    /// Versions whose rows are deleted.
    pub delete: Vec<i64>,
    /// Migrations recorded as applied (successful, with the code's checksum).
    pub insert: Vec<Migration>,
}

impl StampPlan {
    /// Plans recording `target` as the applied version of `set`.
    ///
    /// # Errors
    /// [`Error::Migration`] for a target outside `0..=head`.
    pub fn new(
        set: &MigrationSet,
        applied: &[AppliedMigration],
        target: MigrationTarget,
    ) -> Result<Self> {
        if let MigrationTarget::Relative(step) = target {
            // A stamp records what the schema *is*: a step from whatever is recorded now
            // (`stamp -1` once recorded v3 over a v4 table) names no known state.
            return Err(Error::InvalidInput(format!(
                "stamp takes head, base or a version, not a step ({step:+}): name the version the table is at"
            )));
        }
        let current = applied.iter().map(|row| row.version).max().unwrap_or(0);
        let target = resolve_target(set, current, target)?;
        let sound = |row: &AppliedMigration| {
            row.success
                && row.version <= target
                && set
                    .get(row.version)
                    .is_some_and(|m| m.checksum == row.checksum)
        };
        let delete = applied
            .iter()
            .filter(|row| !sound(row))
            .map(|row| row.version)
            .collect();
        let insert = set
            .iter()
            .filter(|m| m.version <= target)
            .filter(|m| {
                !applied
                    .iter()
                    .any(|row| row.version == m.version && sound(row))
            })
            .cloned()
            .collect();
        Ok(StampPlan {
            target,
            delete,
            insert,
        })
    }
}

/// Checks the applied rows against the code and returns the applied version.
///
/// # Errors
/// As [`MigrationPlan::new`].
pub fn verified_version(set: &MigrationSet, applied: &[AppliedMigration]) -> Result<i64> {
    let table = set.table().to_string();
    if let Some(dirty) = applied.iter().find(|row| !row.success) {
        return Err(dirty_error(dirty.version, &dirty.description, &table, None));
    }
    let current = applied.iter().map(|row| row.version).max().unwrap_or(0);
    if current > set.head() {
        return Err(Error::SchemaTooNew {
            table,
            current,
            known: set.head(),
        });
    }
    for (index, row) in applied.iter().enumerate() {
        if row.version != index as i64 + 1 {
            return Err(Error::Migration(format!(
                "the version table of {table} has a gap before version {}: repair it by recording version {current} as applied (a stamp)",
                row.version
            )));
        }
        if let Some(migration) = set.get(row.version) {
            if migration.checksum != row.checksum {
                return Err(Error::MigrationDrift {
                    version: row.version,
                    description: row.description.clone(),
                    applied: row.checksum.clone(),
                    expected: migration.checksum.clone(),
                });
            }
        }
    }
    Ok(current)
}

/// The error for migration `version` of `table` left half-applied, naming the `stamp`
/// commands that record the repaired state; `source` is the failing statement's error when
/// this run left it so.
pub fn dirty_error(
    version: i64,
    description: &str,
    table: &str,
    source: Option<crate::error::BoxError>,
) -> Error {
    Error::MigrationDirty {
        source,
        version,
        description: description.to_owned(),
        fix: Box::new(crate::Remedy::stamp(table, version)),
        undo: Box::new(crate::Remedy::stamp(table, version - 1)),
    }
}

fn resolve_target(set: &MigrationSet, current: i64, target: MigrationTarget) -> Result<i64> {
    let version = match target {
        MigrationTarget::Head => set.head(),
        MigrationTarget::Base => 0,
        MigrationTarget::Version(version) => version,
        MigrationTarget::Relative(steps) => current.saturating_add(steps),
        MigrationTarget::AtLeast(version) => version.max(current),
    };
    if !(0..=set.head()).contains(&version) {
        // The caller's input, not the schema's state: `InvalidInput` (exit 1, not 3).
        return Err(Error::InvalidInput(format!(
            "migration target {target} resolves to version {version}, outside 0..={} (now at {current})",
            set.head()
        )));
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dialect, TableName};

    fn set() -> MigrationSet {
        MigrationSet::builtin(Dialect::Sqlite, &TableName::new("fsm").unwrap())
    }

    fn applied_up_to(set: &MigrationSet, version: i64) -> Vec<AppliedMigration> {
        set.iter()
            .filter(|m| m.version <= version)
            .map(|m| AppliedMigration {
                version: m.version,
                description: m.description.clone(),
                installed_on_ms: 0,
                success: true,
                checksum: m.checksum.clone(),
                execution_time_ms: 1,
            })
            .collect()
    }

    fn versions(plan: &MigrationPlan) -> Vec<(i64, Direction)> {
        plan.steps
            .iter()
            .map(|s| (s.version, s.direction))
            .collect()
    }

    #[test]
    fn fresh_database_upgrades_through_every_migration() {
        let plan = MigrationPlan::new(&set(), &[], MigrationTarget::Head).unwrap();
        assert!(!plan.is_empty());
        assert_eq!((plan.current, plan.target), (0, 4));
        assert_eq!(
            versions(&plan),
            [
                (1, Direction::Up),
                (2, Direction::Up),
                (3, Direction::Up),
                (4, Direction::Up)
            ]
        );
    }

    #[test]
    fn head_when_at_head_is_empty() {
        let set = set();
        let plan = MigrationPlan::new(
            &set,
            &applied_up_to(&set, set.head()),
            MigrationTarget::Head,
        )
        .unwrap();
        assert!(plan.is_empty());
    }

    #[test]
    fn downgrade_runs_down_steps_newest_first() {
        let set = set();
        let applied = applied_up_to(&set, 3);
        let plan = MigrationPlan::new(&set, &applied, MigrationTarget::Base).unwrap();
        assert_eq!(
            versions(&plan),
            [
                (3, Direction::Down),
                (2, Direction::Down),
                (1, Direction::Down)
            ]
        );
        assert_eq!(plan.steps[0].statements, set.get(3).unwrap().down);
        let plan = MigrationPlan::new(&set, &applied, MigrationTarget::Relative(-1)).unwrap();
        assert_eq!(versions(&plan), [(3, Direction::Down)]);
        let plan = MigrationPlan::new(&set, &applied, MigrationTarget::Version(1)).unwrap();
        assert_eq!(
            versions(&plan),
            [(3, Direction::Down), (2, Direction::Down)]
        );
    }

    #[test]
    fn relative_and_absolute_upgrades() {
        let set = set();
        let applied = applied_up_to(&set, 1);
        let plan = MigrationPlan::new(&set, &applied, MigrationTarget::Relative(1)).unwrap();
        assert_eq!(versions(&plan), [(2, Direction::Up)]);
        let plan = MigrationPlan::new(&set, &applied, MigrationTarget::Version(3)).unwrap();
        assert_eq!(versions(&plan), [(2, Direction::Up), (3, Direction::Up)]);
    }

    #[test]
    fn targets_outside_the_range_are_rejected() {
        let set = set();
        let applied = applied_up_to(&set, set.head());
        for target in [
            MigrationTarget::Relative(1),
            MigrationTarget::Version(set.head() + 1),
            MigrationTarget::Relative(-(set.head() + 1)),
        ] {
            assert!(
                matches!(
                    MigrationPlan::new(&set, &applied, target),
                    Err(Error::InvalidInput(_))
                ),
                "{target}"
            );
        }
    }

    #[test]
    fn drift_names_the_version() {
        let set = set();
        let mut applied = applied_up_to(&set, 2);
        applied[1].checksum = "0".repeat(64);
        let err = MigrationPlan::new(&set, &applied, MigrationTarget::Head).unwrap_err();
        assert!(
            matches!(err, Error::MigrationDrift { version: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn dirty_migration_blocks_planning_and_names_the_fix() {
        let set = set();
        let mut applied = applied_up_to(&set, 2);
        applied[1].success = false;
        let err = MigrationPlan::new(&set, &applied, MigrationTarget::Head).unwrap_err();
        assert!(
            matches!(err, Error::MigrationDirty { version: 2, .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("record version 1 as applied"),
            "{err}"
        );
    }

    #[test]
    fn database_newer_than_code_is_refused() {
        let full = set();
        let applied = applied_up_to(&full, 3);
        let mut sources = crate::migrations::builtin();
        sources.truncate(2);
        let old_code = MigrationSet::render(&sources, Dialect::Sqlite, full.table()).unwrap();
        let err = MigrationPlan::new(&old_code, &applied, MigrationTarget::Head).unwrap_err();
        assert!(
            matches!(
                err,
                Error::SchemaTooNew {
                    current: 3,
                    known: 2,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn gaps_in_the_version_table_are_refused() {
        let set = set();
        let mut applied = applied_up_to(&set, 3);
        applied.remove(1);
        assert!(matches!(
            MigrationPlan::new(&set, &applied, MigrationTarget::Head),
            Err(Error::Migration(_))
        ));
    }

    #[test]
    fn stamp_records_without_running_and_repairs_dirty_rows() {
        let set = set();
        let plan = StampPlan::new(&set, &[], MigrationTarget::Version(1)).unwrap();
        assert_eq!(plan.delete, Vec::<i64>::new());
        assert_eq!(
            plan.insert.iter().map(|m| m.version).collect::<Vec<_>>(),
            [1]
        );

        let mut applied = applied_up_to(&set, 2);
        applied[1].success = false;
        let plan = StampPlan::new(&set, &applied, MigrationTarget::Version(2)).unwrap();
        assert_eq!(plan.delete, [2]);
        assert_eq!(
            plan.insert.iter().map(|m| m.version).collect::<Vec<_>>(),
            [2]
        );

        let plan =
            StampPlan::new(&set, &applied_up_to(&set, 3), MigrationTarget::Version(1)).unwrap();
        assert_eq!(plan.delete, [2, 3]);
        assert!(plan.insert.is_empty());
    }

    #[test]
    fn targets_parse_and_print() {
        for (text, target) in [
            ("head", MigrationTarget::Head),
            ("base", MigrationTarget::Base),
            ("2", MigrationTarget::Version(2)),
            ("+1", MigrationTarget::Relative(1)),
            ("-2", MigrationTarget::Relative(-2)),
        ] {
            assert_eq!(text.parse::<MigrationTarget>().unwrap(), target);
            assert_eq!(target.to_string(), text);
        }
        assert!("sideways".parse::<MigrationTarget>().is_err());
    }
}
