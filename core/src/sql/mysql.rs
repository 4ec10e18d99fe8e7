//! MySQL 8 / MariaDB 10.6+ statements. `data` is `JSON` (MariaDB: `LONGTEXT` with a
//! `json_valid` check). Neither has a shallow-merge operator, so `update_data` locks the
//! row with an upsert (an exclusive lock from the start: no shared-to-exclusive upgrade
//! that deadlocks on a cold key), reads, merges and writes in one transaction.

use super::{common_version_queries, MysqlQueries, RowQueries, VersionQueries};

pub(super) fn queries(t: &str, ttl: Option<std::time::Duration>) -> MysqlQueries {
    // `fresh`: the row was written within the TTL, by the server's clock (always true
    // without one). In `ON DUPLICATE KEY UPDATE` assignments run left to right and see
    // earlier ones, so every `fresh` test comes before `updated_at` is set.
    let fresh = match ttl {
        // Written as an expression of `updated_at`, so the optimizer keeps to the primary
        // key instead of merging in the `updated_at` index.
        Some(ttl) => format!(
            "updated_at + INTERVAL {} MICROSECOND >= CURRENT_TIMESTAMP(6)",
            ttl.as_micros()
        ),
        None => "TRUE".to_owned(),
    };
    let (and_fresh, where_fresh) = match ttl {
        Some(_) => (format!(" AND {fresh}"), format!(" WHERE {fresh}")),
        None => (String::new(), String::new()),
    };
    let (keep_state, keep_data) = match ttl {
        Some(_) => (
            format!("state = IF({fresh}, state, NULL), "),
            format!("data = IF({fresh}, data, '{{}}'), "),
        ),
        None => (String::new(), String::new()),
    };
    MysqlQueries {
        row: RowQueries {
            get_record: format!("SELECT state, data FROM {t} WHERE id = ?{and_fresh}"),
            get_state: format!("SELECT state FROM {t} WHERE id = ?{and_fresh}"),
            get_data: format!("SELECT data FROM {t} WHERE id = ?{and_fresh}"),
            upsert_state: format!(
                "INSERT INTO {t} (id, state, data) VALUES (?, ?, '{{}}') \
                 ON DUPLICATE KEY UPDATE {keep_data}state = VALUES(state), \
                 updated_at = CURRENT_TIMESTAMP(6)"
            ),
            clear_state: format!(
                "UPDATE {t} SET {keep_data}state = NULL, updated_at = CURRENT_TIMESTAMP(6) WHERE id = ?"
            ),
            upsert_data: format!(
                "INSERT INTO {t} (id, state, data) VALUES (?, NULL, ?) \
                 ON DUPLICATE KEY UPDATE {keep_state}data = VALUES(data), \
                 updated_at = CURRENT_TIMESTAMP(6)"
            ),
            clear_data: format!(
                "UPDATE {t} SET {keep_state}data = '{{}}', updated_at = CURRENT_TIMESTAMP(6) WHERE id = ?"
            ),
            upsert_record: format!(
                "INSERT INTO {t} (id, state, data) VALUES (?, ?, ?) \
                 ON DUPLICATE KEY UPDATE state = VALUES(state), data = VALUES(data), \
                 updated_at = CURRENT_TIMESTAMP(6)"
            ),
            delete: format!("DELETE FROM {t} WHERE id = ?"),
            count: format!("SELECT COUNT(*) FROM {t}{where_fresh}"),
        },
        delete_if_empty: format!(
            "DELETE FROM {t} WHERE id = ? AND state IS NULL AND JSON_LENGTH(data) = 0"
        ),
        lock_row: format!(
            "INSERT INTO {t} (id, state, data) VALUES (?, NULL, '{{}}') \
             ON DUPLICATE KEY UPDATE id = id"
        ),
        take: format!("DELETE FROM {t} WHERE id = ?{and_fresh}"),
        delete_expired: format!("DELETE FROM {t} WHERE id = ? AND NOT ({fresh})"),
        update_if_older: format!(
            "UPDATE {t} SET state = ?, data = ?, updated_at = FROM_UNIXTIME(? / 1000) \
             WHERE id = ? AND updated_at < FROM_UNIXTIME(? / 1000) + INTERVAL 1000 MICROSECOND"
        ),
        // fsmstore's layout deletes rows: none is emptied.
        revive_emptied: format!("UPDATE {t} SET state = ?, data = ? WHERE id = ? AND 0 = 1"),
        get_records: format!(
            "SELECT id, state, data FROM {t} WHERE id IN (?){and_fresh} FOR UPDATE"
        ),
    }
}

/// The statements on a table in the layout of `aiogram-sqlalchemy-storage` (schema
/// version 1, data as JSON text in a `LONGTEXT`, `NULL` or `''` when empty; no
/// `updated_at`). `update_data` is the same locked read-merge-write as in fsmstore's layout.
pub(super) fn aiogram_queries(t: &str) -> MysqlQueries {
    let live = super::LIVE_TEXT_ROW;
    MysqlQueries {
        row: RowQueries {
            get_record: format!("SELECT state, data FROM {t} WHERE id = ?"),
            get_state: format!("SELECT state FROM {t} WHERE id = ?"),
            get_data: format!("SELECT data FROM {t} WHERE id = ?"),
            upsert_state: format!(
                "INSERT INTO {t} (id, state, data) VALUES (?, ?, NULL) \
                 ON DUPLICATE KEY UPDATE state = VALUES(state)"
            ),
            clear_state: format!("UPDATE {t} SET state = NULL WHERE id = ?"),
            upsert_data: format!(
                "INSERT INTO {t} (id, state, data) VALUES (?, NULL, ?) \
                 ON DUPLICATE KEY UPDATE data = VALUES(data)"
            ),
            clear_data: format!("UPDATE {t} SET data = NULL WHERE id = ?"),
            upsert_record: format!(
                "INSERT INTO {t} (id, state, data) VALUES (?, ?, ?) \
                 ON DUPLICATE KEY UPDATE state = VALUES(state), data = VALUES(data)"
            ),
            // Rows are emptied, never deleted (see `LIVE_TEXT_ROW`).
            delete: format!("UPDATE {t} SET state = NULL, data = NULL WHERE id = ?"),
            count: format!("SELECT COUNT(*) FROM {t} WHERE {live}"),
        },
        delete_if_empty: format!(
            "UPDATE {t} SET data = NULL WHERE id = ? AND state IS NULL AND {}",
            super::EMPTY_TEXT_DATA
        ),
        lock_row: format!(
            "INSERT INTO {t} (id, state, data) VALUES (?, NULL, NULL) \
             ON DUPLICATE KEY UPDATE id = id"
        ),
        take: format!("UPDATE {t} SET state = NULL, data = NULL WHERE id = ? AND {live}"),
        // Nothing expires in this layout.
        delete_expired: format!("DELETE FROM {t} WHERE id = ? AND 0 = 1"),
        // No write times here: no row is older.
        update_if_older: format!(
            "UPDATE {t} SET state = ?, data = ? WHERE 0 = 1 AND ? IS NULL AND id = ? AND ? IS NULL"
        ),
        revive_emptied: format!(
            "UPDATE {t} SET state = ?, data = ? WHERE id = ? AND state IS NULL AND {}",
            super::EMPTY_TEXT_DATA
        ),
        get_records: format!("SELECT id, state, data FROM {t} WHERE id IN (?) FOR UPDATE"),
    }
}

pub(super) fn version_queries(v: &str) -> VersionQueries {
    let (insert, mark_success, set_success, delete) = common_version_queries(v, ["?"; 6]);
    VersionQueries {
        create: format!(
            "CREATE TABLE IF NOT EXISTS {v} (\
             table_name VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, \
             version BIGINT NOT NULL, \
             description VARCHAR(255) NOT NULL, \
             installed_on TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
             success BOOLEAN NOT NULL, \
             checksum VARCHAR(64) NOT NULL, \
             execution_time_ms BIGINT NOT NULL, \
             PRIMARY KEY (table_name, version)) CHARACTER SET utf8mb4"
        ),
        select_applied: format!(
            "SELECT version, description, \
             CAST(UNIX_TIMESTAMP(installed_on) * 1000 AS SIGNED), success, checksum, execution_time_ms \
             FROM {v} WHERE table_name = ? ORDER BY version"
        ),
        insert,
        mark_success,
        set_success,
        delete,
        table_exists: "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?".to_owned(),
    }
}

/// Renames a state in a batch of rows (`keep`: the assignment that keeps `updated_at`).
/// States compare byte for byte (`CAST(? AS BINARY)`), whatever the column's collation
/// (a Python-made table's is often case-insensitive, and `utf8mb4_bin` ignores trailing
/// spaces), as every other backend compares them.
fn rename_states(t: &str, keep: &str) -> String {
    format!("UPDATE {t} SET state = ?{keep} WHERE state = CAST(? AS BINARY) AND id > ? AND id <= ?")
}

/// Moves the states of one group to another in a batch of rows.
fn regroup_states(t: &str, keep: &str) -> String {
    format!(
        "UPDATE {t} SET state = CONCAT(?, SUBSTRING(state, ?)){keep} \
         WHERE LEFT(state, ?) = CAST(? AS BINARY) AND id > ? AND id <= ?"
    )
}

pub(super) fn inspect_queries(t: &str, layout: crate::Layout) -> super::InspectQueries {
    let live = format!("{} AND ", super::LIVE_TEXT_ROW);
    let writes = match layout {
        crate::Layout::AiogramSqlalchemy => {
            let insert_row = format!("INSERT INTO {t} (id, state, data) VALUES (?, ?, ?)");
            super::RowWrites {
                put_row: insert_row.clone(),
                insert_row,
                replace_row: aiogram_queries(t).row.upsert_record,
                rewrite_row: format!("UPDATE {t} SET state = ?, data = ? WHERE id = ?"),
                delete_row_if: format!("UPDATE {t} SET state = NULL, data = NULL WHERE id = ?"),
                rename_states: rename_states(t, ""),
                regroup_states: regroup_states(t, ""),
            }
        }
        _ => {
            // `? / 1000` is an exact decimal (4 places), so FROM_UNIXTIME keeps the
            // millisecond.
            let insert_row = format!(
                "INSERT INTO {t} (id, state, data, updated_at) VALUES (?, ?, ?, \
                 COALESCE(FROM_UNIXTIME(? / 1000), CURRENT_TIMESTAMP(6)))"
            );
            // `updated_at` assigned itself: else `ON UPDATE CURRENT_TIMESTAMP` sets it.
            let keep = ", updated_at = updated_at";
            super::RowWrites {
                rename_states: rename_states(t, keep),
                regroup_states: regroup_states(t, keep),
                rewrite_row: format!("UPDATE {t} SET state = ?, data = ?{keep} WHERE id = ?"),
                delete_row_if: format!("DELETE FROM {t} WHERE id = ?"),
                put_row: insert_row.clone(),
                replace_row: format!(
                    "{insert_row} ON DUPLICATE KEY UPDATE state = VALUES(state), \
                     data = VALUES(data), updated_at = VALUES(updated_at)"
                ),
                insert_row,
            }
        }
    };
    let rows = match layout {
        crate::Layout::AiogramSqlalchemy => super::RowShape {
            live: &live,
            data: "data",
            updated_ms: "CAST(NULL AS SIGNED)",
            before: "0 = 1",
        },
        _ => super::RowShape {
            live: "",
            data: "data",
            // FLOOR, not the cast's rounding (see the PostgreSQL statement).
            updated_ms: "CAST(FLOOR(UNIX_TIMESTAMP(updated_at) * 1000) AS SIGNED)",
            before: "updated_at < FROM_UNIXTIME({cutoff} / 1000)",
        },
    };
    super::inspect_queries(
        t,
        "CAST(FLOOR(UNIX_TIMESTAMP(CURRENT_TIMESTAMP(6)) * 1000) AS SIGNED)",
        rows,
        |_| "?".to_owned(),
        true,
        writes,
    )
}

/// What fsmstore asks a MySQL or MariaDB server about itself.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct MysqlServer;

impl MysqlServer {
    /// `()` → 1 on a Galera node with replication on (MySQL has no such variable: an error).
    pub const GALERA_ON: &'static str = "SELECT @@wsrep_on";
    /// `()` → `(name, value)`: `wsrep_ready` (`ON` on a node that takes statements); no
    /// row on a server without Galera.
    pub const GALERA_READY: &'static str = "SHOW STATUS LIKE 'wsrep_ready'";
    /// `(table name)` → the collation of the `id` column of that table in the current
    /// database.
    pub const ID_COLLATION: &'static str = "SELECT COLLATION_NAME FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = 'id'";
}

#[cfg(test)]
mod tests {
    use super::super::mysql_rows;

    #[test]
    fn a_statement_for_many_rows_repeats_its_tuple_or_widens_its_list() {
        let q = super::queries("`t`", None);
        assert_eq!(
            mysql_rows(&q.row.upsert_state, 3),
            q.row.upsert_state.replace(
                "VALUES (?, ?, '{}')",
                "VALUES (?, ?, '{}'), (?, ?, '{}'), (?, ?, '{}')"
            )
        );
        assert_eq!(
            mysql_rows(&q.get_records, 2),
            "SELECT id, state, data FROM `t` WHERE id IN (?, ?) FOR UPDATE"
        );
        let ttl = super::queries("`t`", Some(std::time::Duration::from_secs(60)));
        let widened = mysql_rows(&ttl.get_records, 2);
        assert!(
            widened
                .starts_with("SELECT id, state, data FROM `t` WHERE id IN (?, ?) AND updated_at"),
            "{widened}"
        );
        assert_eq!(mysql_rows(&q.row.upsert_state, 1), q.row.upsert_state);
        assert_eq!(mysql_rows(&q.take, 5), q.take);
        let a = super::aiogram_queries("`t`");
        assert_eq!(
            mysql_rows(&a.lock_row, 2)
                .matches("(?, NULL, NULL)")
                .count(),
            2
        );
        for statement in [
            &q.row.upsert_data,
            &q.row.upsert_record,
            &q.lock_row,
            &a.row.upsert_record,
        ] {
            let two = mysql_rows(statement, 2);
            assert_eq!(
                two.matches('?').count(),
                2 * statement.matches('?').count(),
                "{two}"
            );
        }
    }
}
