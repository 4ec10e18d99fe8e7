//! SQLite statements (3.42+, for `unixepoch('subsec')`; the bundled SQLite is newer). `updated_at`
//! holds unix milliseconds.

use super::{common_version_queries, RowQueries, SqliteQueries, VersionQueries};

const NOW_MS: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

pub(super) fn queries(t: &str, ttl: Option<std::time::Duration>) -> SqliteQueries {
    // `fresh`: the row was written within the TTL (always true without one). Inside
    // `ON CONFLICT DO UPDATE` and `UPDATE`, unqualified columns are the existing row's.
    let (fresh, and_fresh, where_fresh) = match ttl {
        Some(ttl) => {
            let fresh = format!("updated_at >= {NOW_MS} - {}", ttl.as_millis());
            (
                fresh.clone(),
                format!(" AND {fresh}"),
                format!(" WHERE {fresh}"),
            )
        }
        None => ("1".to_owned(), String::new(), String::new()),
    };
    // Values an expired row's columns are reset to when another column is written.
    let (keep_state, keep_data) = match ttl {
        Some(_) => (
            format!("CASE WHEN {fresh} THEN state ELSE NULL END"),
            format!("CASE WHEN {fresh} THEN data ELSE '{{}}' END"),
        ),
        None => ("state".to_owned(), "data".to_owned()),
    };
    SqliteQueries {
        row: RowQueries {
            get_record: format!("SELECT state, data FROM {t} WHERE id = ?1{and_fresh}"),
            get_state: format!("SELECT state FROM {t} WHERE id = ?1{and_fresh}"),
            get_data: format!("SELECT data FROM {t} WHERE id = ?1{and_fresh}"),
            upsert_state: format!(
                "INSERT INTO {t} (id, state, data, updated_at) VALUES (?1, ?2, '{{}}', {NOW_MS}) \
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state, data = {keep_data}, \
                 updated_at = excluded.updated_at"
            ),
            clear_state: format!(
                "UPDATE {t} SET state = NULL, data = {keep_data}, updated_at = {NOW_MS} WHERE id = ?1"
            ),
            upsert_data: format!(
                "INSERT INTO {t} (id, state, data, updated_at) VALUES (?1, NULL, ?2, {NOW_MS}) \
                 ON CONFLICT (id) DO UPDATE SET data = excluded.data, state = {keep_state}, \
                 updated_at = excluded.updated_at"
            ),
            clear_data: format!(
                "UPDATE {t} SET data = '{{}}', state = {keep_state}, updated_at = {NOW_MS} WHERE id = ?1"
            ),
            upsert_record: format!(
                "INSERT INTO {t} (id, state, data, updated_at) VALUES (?1, ?2, ?3, {NOW_MS}) \
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state, data = excluded.data, \
                 updated_at = excluded.updated_at"
            ),
            delete: format!("DELETE FROM {t} WHERE id = ?1"),
            count: format!("SELECT COUNT(*) FROM {t}{where_fresh}"),
        },
        delete_if_empty: format!(
            "DELETE FROM {t} WHERE id = ?1 AND state IS NULL AND data = '{{}}'"
        ),
        take: format!("DELETE FROM {t} WHERE id = ?1 RETURNING {fresh}"),
    }
}

/// The statements on a table in the layout of `aiogram-sqlalchemy-storage` (schema
/// version 1): data is JSON text, `NULL` or `''` when empty (fsmstore writes `NULL`), and
/// there is no `updated_at`.
pub(super) fn aiogram_queries(t: &str) -> SqliteQueries {
    let live = super::LIVE_TEXT_ROW;
    SqliteQueries {
        row: RowQueries {
            get_record: format!("SELECT state, data FROM {t} WHERE id = ?1"),
            get_state: format!("SELECT state FROM {t} WHERE id = ?1"),
            get_data: format!("SELECT data FROM {t} WHERE id = ?1"),
            upsert_state: format!(
                "INSERT INTO {t} (id, state, data) VALUES (?1, ?2, NULL) \
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state"
            ),
            clear_state: format!("UPDATE {t} SET state = NULL WHERE id = ?1"),
            upsert_data: format!(
                "INSERT INTO {t} (id, state, data) VALUES (?1, NULL, ?2) \
                 ON CONFLICT (id) DO UPDATE SET data = excluded.data"
            ),
            clear_data: format!("UPDATE {t} SET data = NULL WHERE id = ?1"),
            upsert_record: format!(
                "INSERT INTO {t} (id, state, data) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state, data = excluded.data"
            ),
            // Rows are emptied, never deleted (see `LIVE_TEXT_ROW`).
            delete: format!("UPDATE {t} SET state = NULL, data = NULL WHERE id = ?1"),
            count: format!("SELECT COUNT(*) FROM {t} WHERE {live}"),
        },
        delete_if_empty: format!(
            "UPDATE {t} SET data = NULL WHERE id = ?1 AND state IS NULL AND {}",
            super::EMPTY_TEXT_DATA
        ),
        take: format!(
            "UPDATE {t} SET state = NULL, data = NULL WHERE id = ?1 AND {live} RETURNING 1"
        ),
    }
}

pub(super) fn version_queries(v: &str) -> VersionQueries {
    let (insert, mark_success, set_success, delete) =
        common_version_queries(v, ["?1", "?2", "?3", "?4", "?5", "?6"]);
    VersionQueries {
        create: format!(
            "CREATE TABLE IF NOT EXISTS {v} (\
             table_name VARCHAR(63) NOT NULL, \
             version BIGINT NOT NULL, \
             description VARCHAR(255) NOT NULL, \
             installed_on INTEGER NOT NULL DEFAULT ({NOW_MS}), \
             success BOOLEAN NOT NULL, \
             checksum VARCHAR(64) NOT NULL, \
             execution_time_ms BIGINT NOT NULL, \
             PRIMARY KEY (table_name, version))"
        ),
        select_applied: format!(
            "SELECT version, description, installed_on, success, checksum, execution_time_ms \
             FROM {v} WHERE table_name = ?1 ORDER BY version"
        ),
        insert,
        mark_success,
        set_success,
        delete,
        table_exists: "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1"
            .to_owned(),
    }
}

/// Renames a state in a batch of rows (no column but `state` changes: `updated_at` kept).
fn rename_states(t: &str) -> String {
    format!("UPDATE {t} SET state = ?1 WHERE state = ?2 AND id > ?3 AND id <= ?4")
}

/// Moves the states of one group to another in a batch of rows.
fn regroup_states(t: &str) -> String {
    format!(
        "UPDATE {t} SET state = ?1 || substr(state, ?2) \
         WHERE substr(state, 1, ?3) = ?4 AND id > ?5 AND id <= ?6"
    )
}

pub(super) fn inspect_queries(t: &str, layout: crate::Layout) -> super::InspectQueries {
    let live = format!("{} AND ", super::LIVE_TEXT_ROW);
    let writes = match layout {
        crate::Layout::AiogramSqlalchemy => {
            let upsert = aiogram_queries(t).row.upsert_record;
            // An emptied row (see `LIVE_TEXT_ROW`) is no row.
            let insert_row = format!(
                "{upsert} WHERE state IS NULL AND {}",
                super::EMPTY_TEXT_DATA
            );
            super::RowWrites {
                put_row: insert_row.clone(),
                insert_row,
                replace_row: upsert,
                rewrite_row: format!("UPDATE {t} SET state = ?1, data = ?2 WHERE id = ?3"),
                delete_row_if: format!("UPDATE {t} SET state = NULL, data = NULL WHERE id = ?1"),
                rename_states: rename_states(t),
                regroup_states: regroup_states(t),
            }
        }
        _ => {
            let insert = format!(
                "INSERT INTO {t} (id, state, data, updated_at) \
                 VALUES (?1, ?2, ?3, COALESCE(?4, {NOW_MS})) ON CONFLICT (id) "
            );
            let replace_row = format!(
                "{insert}DO UPDATE SET state = excluded.state, data = excluded.data, \
                 updated_at = excluded.updated_at"
            );
            super::RowWrites {
                rewrite_row: format!("UPDATE {t} SET state = ?1, data = ?2 WHERE id = ?3"),
                delete_row_if: format!("DELETE FROM {t} WHERE id = ?1"),
                rename_states: rename_states(t),
                regroup_states: regroup_states(t),
                insert_row: format!("{insert}DO NOTHING"),
                put_row: format!("{replace_row} WHERE updated_at <= excluded.updated_at"),
                replace_row,
            }
        }
    };
    let rows = match layout {
        crate::Layout::AiogramSqlalchemy => super::RowShape {
            live: &live,
            data: "data",
            updated_ms: "NULL",
            before: "0 = 1",
        },
        _ => super::RowShape {
            live: "",
            data: "data",
            updated_ms: "updated_at",
            before: "updated_at < {cutoff}",
        },
    };
    super::inspect_queries(t, NOW_MS, rows, |n| format!("?{n}"), false, writes)
}
