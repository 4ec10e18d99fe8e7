//! [`Inspect`] for [`MysqlStorage`]: whole-table operations for operators (list, stats,
//! purge), on core's MySQL statements.

use async_trait::async_trait;
use fsmstore_core::sql::InspectQueries;
use fsmstore_core::{
    Dialect, Error, Inspect, Layout, Result, Storage, StoredRow, TableName, TableStats,
};
use sqlx::mysql::MySqlRow;
use sqlx::{Row, SqlStr};

use crate::call::{Access, Phase};
use crate::error::from_sqlx;
use crate::storage::{sql, MysqlStorage};

/// Core's whole-table statements as sqlx strings.
pub(crate) struct InspectStatements {
    list: SqlStr,
    list_by_state: SqlStr,
    get_row: SqlStr,
    count_by_state: SqlStr,
    time_range: SqlStr,
    count_older: SqlStr,
    purge_batch: SqlStr,
    now_ms: SqlStr,
}

impl InspectStatements {
    pub(crate) fn new(table: &TableName, layout: Layout) -> Self {
        let q = InspectQueries::for_layout(Dialect::Mysql, table, layout);
        InspectStatements {
            list: sql(&q.list),
            list_by_state: sql(&q.list_by_state),
            get_row: sql(&q.get_row),
            count_by_state: sql(&q.count_by_state),
            time_range: sql(&q.time_range),
            count_older: sql(&q.count_older),
            purge_batch: sql(&q.purge_batch),
            now_ms: sql(&q.now_ms),
        }
    }
}

/// `id, state, data, updated_at ms` as a [`StoredRow`].
fn stored_row(row: &MySqlRow) -> Result<StoredRow> {
    // The id is VARBINARY (byte-exact, migration 4): decode the bytes, which are UTF-8.
    let id: Vec<u8> = row.try_get_unchecked(0).map_err(from_sqlx)?;
    let id = String::from_utf8(id).map_err(|err| Error::CorruptData {
        key: String::from_utf8_lossy(err.as_bytes()).into_owned(),
        reason: "the row id is not UTF-8".to_owned(),
    })?;
    let text: Option<String> = row.try_get_unchecked(2).map_err(from_sqlx)?;
    Ok(StoredRow::from_text(
        id,
        row.try_get(1).map_err(from_sqlx)?,
        text.as_deref(),
        row.try_get(3).map_err(from_sqlx)?,
    ))
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}

#[async_trait]
impl Inspect for MysqlStorage {
    async fn list_rows(
        &self,
        state: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<StoredRow>> {
        let args = (&self.inner.inspect, state, after.unwrap_or(""), limit);
        let rows = self
            .call(
                "list_rows",
                Access::Read,
                args,
                |conn, (q, state, after, limit)| {
                    Box::pin(async move {
                        let query = match state {
                            Some(state) => sqlx::query(q.list_by_state.clone()).bind(*state),
                            None => sqlx::query(q.list.clone()),
                        };
                        query
                            .bind(*after)
                            .bind(*limit)
                            .fetch_all(&mut *conn)
                            .await
                            .before()
                    })
                },
            )
            .await?;
        rows.iter().map(stored_row).collect()
    }

    async fn get_row(&self, id: &str) -> Result<Option<StoredRow>> {
        let args = (&self.inner.inspect, id);
        let row = self
            .call("get_row", Access::Read, args, |conn, (q, id)| {
                Box::pin(async move {
                    sqlx::query(q.get_row.clone())
                        .bind(*id)
                        .fetch_optional(&mut *conn)
                        .await
                        .before()
                })
            })
            .await?;
        row.as_ref().map(stored_row).transpose()
    }

    async fn stats(&self) -> Result<TableStats> {
        let q = &self.inner.inspect;
        let per_state: Vec<(Option<String>, i64)> = self
            .call("stats", Access::Read, q, |conn, q| {
                Box::pin(async move {
                    sqlx::query_as(q.count_by_state.clone())
                        .fetch_all(&mut *conn)
                        .await
                        .before()
                })
            })
            .await?;
        let (rows, oldest_ms, newest_ms): (i64, Option<i64>, Option<i64>) = self
            .call("stats", Access::Read, q, |conn, q| {
                Box::pin(async move {
                    sqlx::query_as(q.time_range.clone())
                        .fetch_one(&mut *conn)
                        .await
                        .before()
                })
            })
            .await?;
        Ok(TableStats {
            rows: count(rows),
            per_state: per_state
                .into_iter()
                .map(|(state, n)| (state, count(n)))
                .collect(),
            oldest_ms,
            newest_ms,
        })
    }

    async fn database_now_ms(&self) -> Result<i64> {
        self.call(
            "database_now_ms",
            Access::Read,
            &self.inner.inspect,
            |conn, q| {
                Box::pin(async move {
                    sqlx::query_scalar(q.now_ms.clone())
                        .fetch_one(&mut *conn)
                        .await
                        .before()
                })
            },
        )
        .await
    }

    async fn count_older_than(&self, cutoff_ms: i64) -> Result<u64> {
        self.options().require_updated_at("purge --older-than")?;
        let args = (&self.inner.inspect, cutoff_ms);
        let n: i64 = self
            .call(
                "count_older_than",
                Access::Read,
                args,
                |conn, (q, cutoff)| {
                    Box::pin(async move {
                        sqlx::query_scalar(q.count_older.clone())
                            .bind(*cutoff)
                            .fetch_one(&mut *conn)
                            .await
                            .before()
                    })
                },
            )
            .await?;
        Ok(count(n))
    }

    async fn purge_older_than(&self, cutoff_ms: i64, batch: u64) -> Result<u64> {
        self.options().require_updated_at("purge --older-than")?;
        let args = (&self.inner.inspect, cutoff_ms, batch);
        // Replay-safe: running the batch again only deletes more rows that are too old,
        // so a lost reply is not an unknown outcome.
        let done = self
            .call(
                "purge_older_than",
                Access::Write,
                args,
                |conn, (q, cutoff, batch)| {
                    Box::pin(async move {
                        sqlx::query(q.purge_batch.clone())
                            .bind(*cutoff)
                            .bind(*batch)
                            .execute(&mut *conn)
                            .await
                            .before()
                    })
                },
            )
            .await?;
        Ok(done.rows_affected())
    }
}
