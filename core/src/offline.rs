//! Offline SQL: the statements a migration run would execute, with the version-table
//! bookkeeping, as one script (Alembic's `--sql`). Needs no database.

use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::migrations::MigrationSet;
use crate::planner::Direction;
use crate::sql::VersionQueries;
use crate::table_name::TableName;

/// A SQL string literal for `dialect`.
fn literal(dialect: Dialect, text: &str) -> String {
    let escaped = text.replace('\'', "''");
    match dialect {
        // MySQL treats backslashes in literals as escapes unless NO_BACKSLASH_ESCAPES.
        Dialect::Mysql => format!("'{}'", escaped.replace('\\', "\\\\")),
        Dialect::Sqlite | Dialect::Postgres => format!("'{escaped}'"),
    }
}

/// The script that moves `set` from version `from` to version `to` (either direction),
/// recording each step in `version_table` as the online migrator does. On PostgreSQL and
/// SQLite each migration is wrapped in a transaction; MySQL commits DDL implicitly.
///
/// # Errors
/// [`Error::Migration`] when `from` or `to` is outside `0..=head`.
pub fn offline_script(
    set: &MigrationSet,
    version_table: &TableName,
    from: i64,
    to: i64,
) -> Result<String> {
    let head = set.head();
    for version in [from, to] {
        if !(0..=head).contains(&version) {
            // The caller's input, as `migrate up --to 99`: exit 1, not 3.
            return Err(Error::InvalidInput(format!(
                "version {version} is outside 0..={head}"
            )));
        }
    }
    let Some(dialect) = set.dialect() else {
        return Err(Error::Config(format!(
            "the migrations of {} are moves between key layouts, not SQL: run them online (`fsmstore migrate up`)",
            set.table()
        )));
    };
    let v = version_table.quoted(dialect);
    let table = literal(dialect, set.table().as_str());
    let transactional = dialect != Dialect::Mysql;
    let mut out = format!(
        "-- fsmstore migrations for table {} ({dialect}): version {from} -> {to}\n\n{};\n",
        set.table(),
        VersionQueries::for_table(dialect, version_table).create
    );
    let (direction, versions): (Direction, Vec<i64>) = if to >= from {
        (Direction::Up, (from + 1..=to).collect())
    } else {
        (Direction::Down, (to + 1..=from).rev().collect())
    };
    for migration in versions.iter().filter_map(|&version| set.get(version)) {
        let (label, statements) = match direction {
            Direction::Up => ("up", &migration.up),
            Direction::Down => ("down", &migration.down),
        };
        out.push_str(&format!(
            "\n-- {} {label}: {}\n",
            migration.version, migration.description
        ));
        if transactional {
            out.push_str("BEGIN;\n");
        }
        for statement in statements {
            out.push_str(statement);
            out.push_str(";\n");
        }
        match direction {
            Direction::Up => out.push_str(&format!(
                "INSERT INTO {v} (table_name, version, description, success, checksum, execution_time_ms) \
                 VALUES ({table}, {}, {}, TRUE, {}, 0);\n",
                migration.version,
                literal(dialect, &migration.description),
                literal(dialect, &migration.checksum)
            )),
            Direction::Down => out.push_str(&format!(
                "DELETE FROM {v} WHERE table_name = {table} AND version = {};\n",
                migration.version
            )),
        }
        if transactional {
            out.push_str("COMMIT;\n");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(dialect: Dialect) -> MigrationSet {
        MigrationSet::builtin(dialect, &TableName::new("fsm").unwrap())
    }

    #[test]
    fn up_script_holds_every_statement_and_its_bookkeeping() {
        let set = set(Dialect::Postgres);
        let script =
            offline_script(&set, &TableName::default_version_table(), 0, set.head()).unwrap();
        for migration in set.iter() {
            for statement in &migration.up {
                assert!(script.contains(statement.as_str()), "missing {statement}");
            }
            assert!(script.contains(&migration.checksum));
        }
        assert_eq!(script.matches("BEGIN;").count() as i64, set.head());
    }

    #[test]
    fn down_script_runs_newest_first_and_deletes_rows() {
        let set = set(Dialect::Mysql);
        let script = offline_script(&set, &TableName::default_version_table(), 3, 1).unwrap();
        let three = script.find("-- 3 down").unwrap();
        let two = script.find("-- 2 down").unwrap();
        assert!(three < two && !script.contains("-- 1 down") && !script.contains("BEGIN"));
        assert!(script.contains(
            "DELETE FROM `fsmstore_migrations` WHERE table_name = 'fsm' AND version = 2;"
        ));
    }

    #[test]
    fn literals_are_escaped_and_ranges_checked() {
        assert_eq!(literal(Dialect::Postgres, "it's"), "'it''s'");
        assert_eq!(literal(Dialect::Mysql, "a\\b'"), "'a\\\\b'''");
        let sqlite = set(Dialect::Sqlite);
        let past_head = sqlite.head() + 1;
        assert!(
            offline_script(&sqlite, &TableName::default_version_table(), 0, past_head).is_err()
        );
    }
}
