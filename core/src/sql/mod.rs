//! Every SQL statement fsmstore runs, per dialect, in one place.
//!
//! Backends never write SQL text: they take their dialect's statement set
//! ([`SqliteQueries`], [`PostgresQueries`], [`MysqlQueries`]) and
//! [`VersionQueries::for_table`], and bind values.
//! Identifiers come from validated [`TableName`]s; values are always bound parameters.
//! Each field documents the parameters it binds, in order, and the columns it returns.

mod inspect;
mod locks;
mod mysql;
pub use mysql::MysqlServer;
mod postgres;
mod sqlite;
mod version;

pub use inspect::InspectQueries;
use inspect::{inspect_queries, RowShape, RowWrites};
#[cfg(test)]
use locks::advisory_key;
pub use locks::{ClusterLock, KeyLock, MigrationLock};
use version::common_version_queries;
pub use version::{drop_table_if_exists, MysqlVersionRepair, VersionQueries};

use crate::dialect::Dialect;
use crate::layout::Layout;
use crate::options::StorageOptions;
use crate::table_name::TableName;

/// The condition "the data is empty" on a text data column (the aiogram layout): Python's
/// library writes `''` for empty data, fsmstore `NULL`; `'{}'` is empty too.
const EMPTY_TEXT_DATA: &str = "(data IS NULL OR data IN ('', '{}', 'null'))";

/// The condition "the row holds a state or data" in the aiogram layout. There fsmstore
/// never deletes a row: Python's library checks that a row exists, then updates it in a
/// second statement, so a row deleted in between would take Python's acknowledged write
/// with it. A cleared row stays, empty (`NULL` state and data), and reads, counts and
/// lists as absent.
const LIVE_TEXT_ROW: &str = "NOT (state IS NULL AND (data IS NULL OR data IN ('', '{}', 'null')))";

/// The statements every dialect has on the FSM table. Each dialect's own set
/// ([`SqliteQueries`], [`PostgresQueries`], [`MysqlQueries`]) embeds it as `row` and adds
/// exactly what that dialect runs besides, so a backend never meets a statement its
/// dialect lacks.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RowQueries {
    /// `(id)` → `state, data`.
    pub get_record: String,
    /// `(id)` → `state`.
    pub get_state: String,
    /// `(id)` → `data`.
    pub get_data: String,
    /// `(id, state)`: inserts the row or replaces its state.
    pub upsert_state: String,
    /// `(id)`: clears the state (see the dialect's set for how an empty row goes).
    pub clear_state: String,
    /// `(id, data)`: inserts the row or replaces its data (data is never empty here).
    pub upsert_data: String,
    /// `(id)`: empties the data (see the dialect's set for how an empty row goes).
    pub clear_data: String,
    /// `(id, state, data)`: inserts the row or replaces state and data together
    /// ([`Storage::set_record`](crate::Storage::set_record), and the write of a
    /// `transition` after the merge where the dialect merges in Rust). Either the state is
    /// set or the data is not empty: the backend deletes the row instead when both would be
    /// empty.
    pub upsert_record: String,
    /// `(id)`: deletes the row.
    pub delete: String,
    /// `()` → number of rows.
    pub count: String,
}

/// SQLite's statements: `update_data` and `transition` read, merge and write inside one
/// `BEGIN IMMEDIATE`, which is the lock; clearing a field is followed by
/// `delete_if_empty` in the same transaction.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqliteQueries {
    /// The statements every dialect has.
    pub row: RowQueries,
    /// `(id)`: deletes the row when it holds neither state nor data.
    pub delete_if_empty: String,
    /// `(id)` → one row `(fresh)` when a row was deleted: whether it was within the TTL
    /// (always 1 without one). `clear` answers with it.
    pub take: String,
}

impl SqliteQueries {
    /// The statements on `table`.
    pub fn new(table: &TableName) -> Self {
        sqlite::queries(&table.quoted(Dialect::Sqlite), None)
    }

    /// The statements on `table` for rows that expire after `ttl`
    /// ([`StorageOptions::ttl`](crate::StorageOptions::ttl)): reads skip expired rows,
    /// writes reset what an expired row held, `delete` returns whether the row was fresh.
    pub fn with_ttl(table: &TableName, ttl: Option<std::time::Duration>) -> Self {
        sqlite::queries(&table.quoted(Dialect::Sqlite), ttl)
    }

    /// The statements for `options`: its table, TTL and [`Layout`].
    pub fn for_options(options: &StorageOptions) -> Self {
        let t = options.table.quoted(Dialect::Sqlite);
        match options.layout {
            Layout::Fsmstore => sqlite::queries(&t, options.ttl),
            Layout::AiogramSqlalchemy => sqlite::aiogram_queries(&t),
        }
    }
}

/// PostgreSQL's statements: every operation is one statement. `clear_state` and
/// `clear_data` delete the row themselves when it would hold nothing.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PostgresQueries {
    /// The statements every dialect has.
    pub row: RowQueries,
    /// `(id, field)` → the field's JSON value, SQL `NULL` when absent.
    pub get_value: String,
    /// `(id, patch)` → merged `data`: the whole shallow merge (`jsonb ||`) in one upsert.
    pub merge_data: String,
    /// `(id, state, patch)` → merged `data`: sets the state (`NULL` clears it) and merges
    /// the patch in one upsert. It never deletes: the backend runs `clear_state` instead for
    /// "no state, empty patch", the one case that can leave the row empty.
    pub transition: String,
    /// `(id)` → one row `(fresh)` when a row was deleted: whether it was within the TTL
    /// (always true without one). `clear` answers with it.
    pub take: String,
    /// `(id)` → the data the row keeps: `clear_state` for a `transition` to no state with
    /// no patch, which returns the data. Data no client can read (a number past `f64`)
    /// fails the statement (nothing written), as the other backends refuse it before
    /// writing. (`row.clear_state`, for `set_state(None)`, returns whether the data is
    /// empty and never reads it.)
    pub clear_state_data: String,
    /// `(id)`: deletes the row when it holds neither state nor data. Run after
    /// `clear_state` returned `{}` or `clear_data` returned a `NULL` state: a clear of the
    /// other column committed meanwhile, so neither statement saw the row empty.
    pub delete_if_empty: String,
    /// The same writes for many rows in one statement (coalesced writes).
    pub batch: PostgresBatchQueries,
}

/// PostgreSQL's writes of many rows in one statement: the one-row statement of the same
/// name with the same conflict clause, its rows from one array parameter per column
/// (`unnest`), a row at most once. Statements that return rows return the row's `id`
/// first.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PostgresBatchQueries {
    /// `(ids text[], states text[])`.
    pub upsert_state: String,
    /// `(ids text[], data jsonb[])`.
    pub upsert_data: String,
    /// `(ids text[], states text[], data jsonb[])`.
    pub upsert_record: String,
    /// `(ids text[], patches jsonb[])` → `(id, merged data)` per row.
    pub merge_data: String,
    /// `(ids text[], states text[], patches jsonb[])` → `(id, merged data)` per row.
    pub transition: String,
    /// `(ids text[])` → `(id, fresh)` per deleted row.
    pub take: String,
}

impl PostgresQueries {
    /// The statements on `table`.
    pub fn new(table: &TableName) -> Self {
        postgres::queries(&table.quoted(Dialect::Postgres), None)
    }

    /// The statements on `table` for rows that expire after `ttl` (see
    /// [`SqliteQueries::with_ttl`]); `take` returns whether the deleted row was fresh.
    pub fn with_ttl(table: &TableName, ttl: Option<std::time::Duration>) -> Self {
        postgres::queries(&table.quoted(Dialect::Postgres), ttl)
    }

    /// The statements for `options`: its table, TTL and [`Layout`].
    pub fn for_options(options: &StorageOptions) -> Self {
        let t = options.table.quoted(Dialect::Postgres);
        match options.layout {
            Layout::Fsmstore => postgres::queries(&t, options.ttl),
            Layout::AiogramSqlalchemy => postgres::aiogram_queries(&t),
        }
    }
}

/// MySQL's and MariaDB's statements: neither server has a shallow-merge operator, so
/// `update_data` and `transition` run `lock_row`, read, merge in Rust and write in one
/// transaction; clearing a field is followed by `delete_if_empty` in the same transaction.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MysqlQueries {
    /// The statements every dialect has.
    pub row: RowQueries,
    /// `(id)`: deletes the row when it holds neither state nor data.
    pub delete_if_empty: String,
    /// `(id)`: inserts an empty row or takes an exclusive lock on the existing one, inside
    /// a transaction, before a read-merge-write.
    pub lock_row: String,
    /// `(id)`: deletes the row if it is within the TTL (any row without one); rows
    /// affected = whether `clear` found one.
    pub take: String,
    /// `(id)`: deletes the row if it expired (MySQL has no `DELETE … RETURNING`, so `clear`
    /// runs `take` then this; a row written in between is fresh and stays).
    pub delete_expired: String,
    /// `(state, data, updated_ms, id, updated_ms)`: replaces the row's state, data and
    /// write time where it was last written no later than `updated_ms`, to the
    /// millisecond; rows matched: whether it wrote. Run by `put_row` after
    /// [`InspectQueries::insert_row`] found the row there (MySQL reports a kept row and an
    /// inserted one alike from one upsert). Matches nothing in the aiogram layout.
    pub update_if_older: String,
    /// `(state, data, id)`: writes an emptied row of the aiogram layout (which reads as
    /// absent); rows matched: whether it wrote. Matches nothing in fsmstore's layout,
    /// which deletes rows.
    pub revive_emptied: String,
    /// `(id)` → `(id, state, data)`: `get_record` with the id and a locking read (the
    /// latest committed row, whatever snapshot the transaction holds), for many rows at
    /// once (see [`mysql_rows`]).
    pub get_records: String,
}

/// `statement` for `rows` rows at once (coalesced writes): its one `VALUES (…)` tuple
/// repeated, or its `IN (?)` widened to `rows` placeholders; the parameters are each row's
/// in turn. Any other statement, or `rows` below 2, comes back as it is.
pub fn mysql_rows(statement: &str, rows: usize) -> String {
    if rows < 2 {
        return statement.to_owned();
    }
    if let Some(at) = statement.find(" IN (?)") {
        let marks = vec!["?"; rows].join(", ");
        return format!("{} IN ({marks}){}", &statement[..at], &statement[at + 7..]);
    }
    let Some(start) = statement.find(" VALUES (").map(|at| at + 8) else {
        return statement.to_owned();
    };
    let mut depth = 0usize;
    let mut end = None;
    for (offset, c) in statement[start..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    end = Some(start + offset + 1);
                    break;
                }
            }
            _ => {}
        }
    }
    let Some(end) = end else {
        return statement.to_owned();
    };
    let tuple = &statement[start..end];
    let tuples = vec![tuple; rows].join(", ");
    format!("{}{tuples}{}", &statement[..start], &statement[end..])
}

impl MysqlQueries {
    /// The statements on `table`.
    pub fn new(table: &TableName) -> Self {
        mysql::queries(&table.quoted(Dialect::Mysql), None)
    }

    /// The statements on `table` for rows that expire after `ttl` (see
    /// [`SqliteQueries::with_ttl`]).
    pub fn with_ttl(table: &TableName, ttl: Option<std::time::Duration>) -> Self {
        mysql::queries(&table.quoted(Dialect::Mysql), ttl)
    }

    /// The statements for `options`: its table, TTL and [`Layout`].
    pub fn for_options(options: &StorageOptions) -> Self {
        let t = options.table.quoted(Dialect::Mysql);
        match options.layout {
            Layout::Fsmstore => mysql::queries(&t, options.ttl),
            Layout::AiogramSqlalchemy => mysql::aiogram_queries(&t),
        }
    }
}

/// Each dialect's whole-table statements (here, beside the dialect files they dispatch to).
impl InspectQueries {
    /// The statements of `dialect` on `table`.
    pub fn for_table(dialect: Dialect, table: &TableName) -> InspectQueries {
        Self::for_layout(dialect, table, Layout::Fsmstore)
    }

    /// The statements of `dialect` on `table` in `layout`. In a layout without
    /// `updated_at` rows report it as `NULL` and no row is older than a cutoff (backends
    /// refuse to purge by age there before running anything).
    pub fn for_layout(dialect: Dialect, table: &TableName, layout: Layout) -> InspectQueries {
        let t = table.quoted(dialect);
        match dialect {
            Dialect::Sqlite => sqlite::inspect_queries(&t, layout),
            Dialect::Postgres => postgres::inspect_queries(&t, layout),
            Dialect::Mysql => mysql::inspect_queries(&t, layout),
        }
    }
}

/// Each dialect's version-table statements.
impl VersionQueries {
    /// The statements of `dialect` on version table `version_table`.
    pub fn for_table(dialect: Dialect, version_table: &TableName) -> VersionQueries {
        let v = version_table.quoted(dialect);
        match dialect {
            Dialect::Sqlite => sqlite::version_queries(&v),
            Dialect::Postgres => postgres::version_queries(&v),
            Dialect::Mysql => mysql::version_queries(&v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_locks_are_per_table_and_row_and_fit_mysql() {
        let (a, b) = (TableName::new("a").unwrap(), TableName::new("b").unwrap());
        let timeout = std::time::Duration::from_millis(1500);
        let pg = KeyLock::postgres(&a, "fsm:1:1", timeout);
        assert!(pg
            .lock
            .starts_with("SET lock_timeout = '1500ms'; SELECT pg_advisory_lock("));
        assert_ne!(pg.lock, KeyLock::postgres(&b, "fsm:1:1", timeout).lock);
        assert_ne!(pg.lock, KeyLock::postgres(&a, "fsm:1:2", timeout).lock);
        let long = "x".repeat(255);
        let my = KeyLock::mysql(&TableName::new("t".repeat(63)).unwrap(), &long);
        assert_eq!(my.name.len(), 29);
        assert_ne!(
            KeyLock::mysql(&a, "fsm:1:1").name,
            KeyLock::mysql(&b, "fsm:1:1").name
        );
        assert_ne!(
            KeyLock::mysql(&a, "fsm:1:1").name,
            KeyLock::mysql(&a, "fsm:1:2").name
        );
    }

    #[test]
    fn advisory_keys_are_stable_and_distinct() {
        assert_eq!(advisory_key("fsmstore:a"), advisory_key("fsmstore:a"));
        assert_ne!(advisory_key("fsmstore:a"), advisory_key("fsmstore:b"));
    }

    #[test]
    fn version_statements_bind_in_the_documented_order() {
        let v = TableName::new("fsm_v").unwrap();
        assert_eq!(
            drop_table_if_exists(Dialect::Mysql, &v),
            "DROP TABLE IF EXISTS `fsm_v`"
        );
        let q = VersionQueries::for_table(Dialect::Postgres, &v);
        assert_eq!(
            q.insert,
            "INSERT INTO \"fsm_v\" (table_name, version, description, success, checksum, \
             execution_time_ms) VALUES ($1, $2, $3, $4, $5, $6)"
        );
        assert_eq!(
            q.mark_success,
            "UPDATE \"fsm_v\" SET success = $1, execution_time_ms = $2 WHERE table_name = $3 AND version = $4"
        );
        assert_eq!(
            q.set_success,
            "UPDATE \"fsm_v\" SET success = $1 WHERE table_name = $2 AND version = $3"
        );
        assert_eq!(
            q.delete,
            "DELETE FROM \"fsm_v\" WHERE table_name = $1 AND version = $2"
        );
        let q = VersionQueries::for_table(Dialect::Sqlite, &v);
        assert!(
            q.delete.ends_with("table_name = ?1 AND version = ?2"),
            "{}",
            q.delete
        );
    }

    #[test]
    fn statements_quote_the_table() {
        let table = TableName::new("fsm_x").unwrap();
        let rows = [
            (Dialect::Sqlite, SqliteQueries::new(&table).row),
            (Dialect::Postgres, PostgresQueries::new(&table).row),
            (Dialect::Mysql, MysqlQueries::new(&table).row),
        ];
        for (dialect, q) in rows {
            let quoted = table.quoted(dialect);
            for sql in [
                &q.get_record,
                &q.get_state,
                &q.upsert_state,
                &q.upsert_data,
                &q.delete,
            ] {
                assert!(sql.contains(&quoted), "{dialect}: {sql}");
            }
            let v = VersionQueries::for_table(dialect, &TableName::new("fsm_v").unwrap());
            assert!(v
                .create
                .contains(&TableName::new("fsm_v").unwrap().quoted(dialect)));
        }
    }

    #[test]
    fn mysql_lock_names_fit_get_lock() {
        let long = TableName::new("v".repeat(63)).unwrap();
        assert_eq!(MigrationLock::mysql(&long).name.chars().count(), 64);
    }
}
