//! Whole-table statements ([`InspectQueries`]): list, stats, purge, per dialect and layout.

/// Whole-table statements for [`Inspect`](crate::Inspect). Rows come back as
/// `id, state, data, updated_at (unix ms)`; times are bound as unix milliseconds.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InspectQueries {
    /// `(after_id, limit)` → rows with `id > after_id`, by id.
    pub list: String,
    /// `(state, after_id, limit)` → rows in `state` with `id > after_id`, by id.
    pub list_by_state: String,
    /// `(id)` → the row.
    pub get_row: String,
    /// `()` → `state, COUNT(*)`, most common first.
    pub count_by_state: String,
    /// `()` → `COUNT(*), MIN(updated_at ms), MAX(updated_at ms)`.
    pub time_range: String,
    /// `(cutoff_ms)` → `COUNT(*)` of rows written before the cutoff.
    pub count_older: String,
    /// `(cutoff_ms)` → `state, COUNT(*)` of rows written before the cutoff, per state.
    pub count_older_by_state: String,
    /// `(cutoff_ms, limit)`: deletes at most `limit` rows written before the cutoff.
    pub purge_batch: String,
    /// `()` → the database's clock, unix milliseconds (the expiry cutoff of `purge
    /// --expired` is taken from it, as reads and writes decide expiry with it).
    pub now_ms: String,
    /// `(id, state, data, updated_ms)` — in a layout without `updated_at`, `(id, state,
    /// data)`: writes a row as another database held it (`fsmstore copy`), its write time
    /// included (`NULL`: the database's clock now), where there is no row
    /// ([`PutRow::IfAbsent`](crate::PutRow::IfAbsent)); in the aiogram layout also over an
    /// emptied one. Rows changed: whether it wrote. On MySQL a plain `INSERT`: a duplicate
    /// key is the row being there (then `MysqlQueries::revive_emptied` in the aiogram
    /// layout).
    pub insert_row: String,
    /// The binds of `insert_row`, a write time given: inserts the row or replaces one last
    /// written no later than it, to the millisecond
    /// ([`PutRow::IfNotNewer`](crate::PutRow::IfNotNewer)); rows changed: whether it wrote.
    /// In a layout without `updated_at`, `insert_row`. On MySQL, where a kept row and an
    /// inserted one report the same count, `insert_row` then
    /// `MysqlQueries::update_if_older` run instead.
    pub put_row: String,
    /// The binds of `insert_row`: inserts the row or replaces whatever is there
    /// ([`PutRow::Replace`](crate::PutRow::Replace)).
    pub replace_row: String,
    /// [`Inspect::rewrite_row`](crate::Inspect::rewrite_row), writing a new state and
    /// data over a row that still holds the old ones, its write time kept. PostgreSQL: one
    /// statement whose condition is the old row (data compared as `JSONB`), binds
    /// `(new_state, new_data, id, old_state, old_data, old_updated_ms)` (a layout without
    /// `updated_at` binds no time); rows changed: whether it wrote. SQLite and MySQL:
    /// `(new_state, new_data, id)`, run after the backend compared the row, read in the
    /// same transaction (`get_row_locked`), in Rust.
    pub rewrite_row: String,
    /// As `rewrite_row`, deleting the row (in the aiogram layout: emptying it): binds
    /// `(id, old_state, old_data, old_updated_ms)`; SQLite and MySQL `(id)`.
    pub delete_row_if: String,
    /// `get_row` locking the row for the transaction (MySQL: `FOR UPDATE`; elsewhere
    /// `get_row`).
    pub get_row_locked: String,
    /// `(after_id, limit)` → `MAX(id), COUNT(*)` of the next `limit` ids after `after_id`:
    /// the end of a batch of [`Inspect::rewrite_states`](crate::Inspect::rewrite_states).
    pub batch_end: String,
    /// `(new_state, old_state, after_id, last_id)`: renames a state in the rows with ids
    /// in `(after_id, last_id]`, write times kept; rows changed.
    pub rename_states: String,
    /// `(new_prefix, old_prefix_chars + 1, old_prefix_chars, old_prefix, after_id,
    /// last_id)`: states starting `old_prefix` start `new_prefix` instead, in the rows with
    /// ids in `(after_id, last_id]`, write times kept; rows changed.
    pub regroup_states: String,
}

/// The statements that write a row as given.
pub(super) struct RowWrites {
    pub(super) insert_row: String,
    pub(super) put_row: String,
    pub(super) replace_row: String,
    pub(super) rewrite_row: String,
    pub(super) delete_row_if: String,
    pub(super) rename_states: String,
    pub(super) regroup_states: String,
}

/// How a table's rows look to the whole-table statements of one dialect and layout.
pub(super) struct RowShape<'a> {
    /// The condition rows must meet to be listed, written as `"… AND "` (empty: every row).
    pub(super) live: &'a str,
    /// The data column as the backend reads it.
    pub(super) data: &'a str,
    /// `updated_at` as unix milliseconds.
    pub(super) updated_ms: &'a str,
    /// "written before the cutoff" (`{cutoff}` is the bound unix ms).
    pub(super) before: &'a str,
}

/// Builds [`InspectQueries`] from the row shape, the dialect's clock in unix ms, its
/// placeholders (`p(n)` is the n-th) and whether `DELETE … LIMIT` exists (MySQL; elsewhere a
/// limited id subquery, which MySQL in turn refuses).
pub(super) fn inspect_queries(
    t: &str,
    now_ms: &str,
    rows: RowShape<'_>,
    p: impl Fn(usize) -> String,
    delete_limit: bool,
    writes: RowWrites,
) -> InspectQueries {
    let RowShape {
        live,
        data,
        updated_ms,
        before,
    } = rows;
    let columns = format!("id, state, {data}, {updated_ms}");
    let older = before.replace("{cutoff}", &p(1));
    let purge_batch = if delete_limit {
        format!("DELETE FROM {t} WHERE {older} LIMIT {}", p(2))
    } else {
        // The age test again on the outer DELETE: a row rewritten between the subquery and
        // the delete (PostgreSQL rechecks only the id) is fresh and stays.
        format!(
            "DELETE FROM {t} WHERE {older} AND id IN (SELECT id FROM {t} WHERE {older} LIMIT {})",
            p(2)
        )
    };
    InspectQueries {
        list: format!(
            "SELECT {columns} FROM {t} WHERE {live}id > {} ORDER BY id LIMIT {}",
            p(1),
            p(2)
        ),
        list_by_state: format!(
            "SELECT {columns} FROM {t} WHERE {live}state = {} AND id > {} ORDER BY id LIMIT {}",
            p(1),
            p(2),
            p(3)
        ),
        get_row: format!("SELECT {columns} FROM {t} WHERE {live}id = {}", p(1)),
        get_row_locked: format!(
            "SELECT {columns} FROM {t} WHERE {live}id = {}{}",
            p(1),
            if delete_limit { " FOR UPDATE" } else { "" }
        ),
        count_by_state: format!(
            "SELECT state, COUNT(*) AS n FROM {t} WHERE {live}1 = 1 GROUP BY state ORDER BY n DESC, state"
        ),
        time_range: format!(
            "SELECT COUNT(*), MIN({updated_ms}), MAX({updated_ms}) FROM {t} WHERE {live}1 = 1"
        ),
        count_older: format!("SELECT COUNT(*) FROM {t} WHERE {older}"),
        count_older_by_state: format!(
            "SELECT state, COUNT(*) FROM {t} WHERE {live}{older} GROUP BY state"
        ),
        purge_batch,
        now_ms: format!("SELECT {now_ms}"),
        insert_row: writes.insert_row,
        put_row: writes.put_row,
        replace_row: writes.replace_row,
        rewrite_row: writes.rewrite_row,
        delete_row_if: writes.delete_row_if,
        batch_end: format!(
            "SELECT MAX(id), COUNT(*) FROM (SELECT id FROM {t} WHERE id > {} ORDER BY id LIMIT {}) page",
            p(1),
            p(2)
        ),
        rename_states: writes.rename_states,
        regroup_states: writes.regroup_states,
    }
}
