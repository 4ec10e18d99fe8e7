//! The statements of one attempt of a call, on one connection: reads, single writes, and
//! the locked read-merge-write that executes core's merge plan. Each returns where it
//! failed (`before` or `applying`), for core's call runner.

use fsmstore_core::sql::MysqlQueries;
use fsmstore_core::{parse_data, plan_merge, Data, MergeWrite, NextState, Result};
use sqlx::mysql::{MySqlConnection, MySqlRow};
use sqlx::{Acquire, Row};

use crate::connections::{sql, Attempt, Staged};
use crate::error::from_sqlx;

pub(crate) fn data_column(row: &MySqlRow, index: usize, id: &str) -> Result<Data> {
    let text = data_text(row, index).map_err(from_sqlx)?;
    text.map_or_else(|| Ok(Data::new()), |text| parse_data(id, &text))
}

/// The data column's text. MariaDB's JSON is LONGTEXT, MySQL 8's a JSON column type that
/// sqlx's `String` refuses to decode: read the text unchecked (both arrive as UTF-8 text)
/// and parse it with core's rules, so bad stored data is `CorruptData` on both servers.
pub(crate) fn data_text(row: &MySqlRow, index: usize) -> sqlx::Result<Option<String>> {
    row.try_get_unchecked(index)
}

pub(crate) async fn select_row(
    conn: &mut MySqlConnection,
    statement: &str,
    id: &str,
) -> sqlx::Result<Option<MySqlRow>> {
    sqlx::query(sql(statement))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
}

/// Runs `statement` binding `id` and, when given, a second value.
pub(crate) async fn execute(
    conn: &mut MySqlConnection,
    statement: &str,
    id: &str,
    value: Option<&str>,
) -> sqlx::Result<u64> {
    let mut query = sqlx::query(sql(statement)).bind(id);
    if let Some(value) = value {
        query = query.bind(value);
    }
    Ok(query.execute(&mut *conn).await?.rows_affected())
}

/// What [`merge_locked`] merges: the statements, the row, the patch, and what becomes of
/// the state (core's [`plan_merge`] decides the write).
pub(crate) struct Merge<'a> {
    pub(crate) sql: &'a MysqlQueries,
    pub(crate) id: &'a str,
    pub(crate) patch: &'a Data,
    pub(crate) next: NextState<'a>,
}

/// `update_data` and `transition` in one transaction: core's `lock_row` upsert takes an
/// exclusive row lock from the start (inserting an empty row for a cold key, so there is no
/// shared-to-exclusive upgrade to deadlock on), then the row is read, merged in Rust with
/// `dict.update` semantics and written. Concurrent updates of one key queue on the row
/// lock. Everything before `COMMIT` is rolled back if the connection dies. The inner
/// `Result` is stored data that is not an object.
pub(crate) async fn merge_locked(
    conn: &mut MySqlConnection,
    m: &Merge<'_>,
) -> Attempt<Result<Data>> {
    let (sql, id) = (m.sql, m.id);
    let mut tx = conn.begin().await.before()?;
    execute(&mut tx, &sql.lock_row, id, None).await.before()?;
    // State and data read once under the row lock (an expired row reads as absent) and
    // written back whole: expiry is decided by this one read.
    let row = select_row(&mut tx, &sql.row.get_record, id)
        .await
        .before()?;
    let (old_state, stored) = match row {
        Some(row) => match (row.try_get(0), data_text(&row, 1)) {
            (Ok(state), Ok(stored)) => (state, stored),
            // Dropping the transaction rolls back the lock_row insert.
            (Err(err), _) | (_, Err(err)) => return Ok(Err(from_sqlx(err))),
        },
        None => (None, None),
    };
    // Core plans the write; fields the patch does not name keep their stored text.
    let plan = match plan_merge(id, old_state, stored.as_deref(), m.patch, m.next) {
        Ok(plan) => plan,
        Err(err) => return Ok(Err(err)),
    };
    match &plan.write {
        MergeWrite::Upsert { state, data } => {
            upsert_record(&mut tx, sql, id, state.as_deref(), data).await
        }
        MergeWrite::Delete => execute(&mut tx, &sql.row.delete, id, None).await,
    }
    .before()?;
    tx.commit().await.applying()?;
    Ok(Ok(plan.data))
}

/// Writes state and data of `id` together.
pub(crate) async fn upsert_record(
    conn: &mut MySqlConnection,
    sql: &MysqlQueries,
    id: &str,
    state: Option<&str>,
    data: &str,
) -> sqlx::Result<u64> {
    let query = sqlx::query(self::sql(&sql.row.upsert_record))
        .bind(id)
        .bind(state)
        .bind(data);
    Ok(query.execute(&mut *conn).await?.rows_affected())
}

/// Runs `clear` (a statement emptying state or data) and core's `delete_if_empty` in one
/// transaction, so a row holding nothing never stays behind.
pub(crate) async fn clear_field(
    conn: &mut MySqlConnection,
    sql: &MysqlQueries,
    clear: &str,
    id: &str,
) -> Attempt<()> {
    let mut tx = conn.begin().await.before()?;
    execute(&mut tx, clear, id, None).await.before()?;
    execute(&mut tx, &sql.delete_if_empty, id, None)
        .await
        .before()?;
    tx.commit().await.applying()
}
