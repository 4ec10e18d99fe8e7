//! Version-table statements ([`VersionQueries`], [`MysqlVersionRepair`]) and
//! [`drop_table_if_exists`].

use crate::dialect::Dialect;
use crate::table_name::TableName;

/// Statements on the version table, which records applied migrations of any number of FSM
/// tables (its key is `(table_name, version)`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VersionQueries {
    /// `()`: creates the version table if it does not exist.
    pub create: String,
    /// `(table_name)` → `version, description, installed_on (unix ms), success, checksum,
    /// execution_time_ms`, by version.
    pub select_applied: String,
    /// `(table_name, version, description, success, checksum, execution_time_ms)`.
    pub insert: String,
    /// `(success, execution_time_ms, table_name, version)`.
    pub mark_success: String,
    /// `(success, table_name, version)`: marks a row unfinished or finished, keeping its
    /// execution time (a MySQL down step).
    pub set_success: String,
    /// `(table_name, version)`.
    pub delete: String,
    /// `(bare table name)` → `COUNT(*)`: 1 when that table exists in the current
    /// database/schema, else 0.
    pub table_exists: String,
}

/// MySQL / MariaDB: version tables made before fsmstore 0.2 compared `table_name` with the
/// server's default collation, case-insensitively (`Order` and `order` shared rows). The
/// migrator checks and, once, repairs it under its lock.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MysqlVersionRepair {
    /// `(bare version table name)` → the collation of its `table_name` column.
    pub check: String,
    /// Makes `table_name` byte-exact (`ascii_bin`; table names are ASCII identifiers).
    pub repair: String,
    /// The collation `check` returns once repaired.
    pub collation: &'static str,
}

impl MysqlVersionRepair {
    /// The statements for `version_table`.
    pub fn new(version_table: &TableName) -> Self {
        MysqlVersionRepair {
            check: "SELECT COLLATION_NAME FROM information_schema.COLUMNS \
                    WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = 'table_name'"
                .to_owned(),
            repair: format!(
                "ALTER TABLE {} MODIFY table_name VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL",
                version_table.quoted(Dialect::Mysql)
            ),
            collation: "ascii_bin",
        }
    }
}

/// `DROP TABLE IF EXISTS` for `table` (cleanup of scratch tables; never run by migrations).
pub fn drop_table_if_exists(dialect: Dialect, table: &TableName) -> String {
    format!("DROP TABLE IF EXISTS {}", table.quoted(dialect))
}

/// Statements shared by every dialect (standard SQL, `?`-free apart from placeholders).
pub(super) fn common_version_queries(
    v: &str,
    placeholders: [&str; 6],
) -> (String, String, String, String) {
    let [p1, p2, p3, p4, p5, p6] = placeholders;
    (
        format!(
            "INSERT INTO {v} (table_name, version, description, success, checksum, execution_time_ms) \
             VALUES ({p1}, {p2}, {p3}, {p4}, {p5}, {p6})"
        ),
        format!("UPDATE {v} SET success = {p1}, execution_time_ms = {p2} WHERE table_name = {p3} AND version = {p4}"),
        format!("UPDATE {v} SET success = {p1} WHERE table_name = {p2} AND version = {p3}"),
        format!("DELETE FROM {v} WHERE table_name = {p1} AND version = {p2}"),
    )
}
