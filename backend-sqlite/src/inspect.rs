//! [`Inspect`] for [`SqliteStorage`]: list, stats, purge.

use std::sync::Arc;

use async_trait::async_trait;
use fsmstore_core::sql::InspectQueries;
use fsmstore_core::{
    Data, Inspect, PutRow, Result, StateChange, StatesBatch, Storage, StoredRow, TableStats,
};
use rusqlite::{Connection, OptionalExtension, Params, Row};

use crate::error::from_sqlite;
use crate::storage::SqliteStorage;

/// `id, state, data, updated_at`: data and `updated_at` may be `NULL` in the aiogram layout.
type RawRow = (String, Option<String>, Option<String>, Option<i64>);

fn stored(row: &Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn rows(conn: &Connection, sql: &str, params: impl Params) -> Result<Vec<StoredRow>> {
    let mut statement = conn.prepare_cached(sql).map_err(from_sqlite)?;
    let raw = statement
        .query_map(params, stored)
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(from_sqlite)?;
    Ok(raw
        .into_iter()
        .map(|(id, state, data, updated_at_ms)| {
            StoredRow::from_text(id, state, data.as_deref(), updated_at_ms)
        })
        .collect())
}

impl SqliteStorage {
    async fn read_inspect<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection, &InspectQueries) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let queries = Arc::clone(&self.inspect);
        self.connections
            .read(move |conn| work(conn, &queries))
            .await
    }
}

#[async_trait]
impl Inspect for SqliteStorage {
    async fn list_rows(
        &self,
        state: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<StoredRow>> {
        let (state, after) = (
            state.map(str::to_owned),
            after.unwrap_or_default().to_owned(),
        );
        let limit = limit.min(i64::MAX as u64) as i64;
        self.read_inspect(move |conn, q| match state {
            Some(state) => rows(
                conn,
                &q.list_by_state,
                rusqlite::params![state, after, limit],
            ),
            None => rows(conn, &q.list, rusqlite::params![after, limit]),
        })
        .await
    }

    async fn get_row(&self, id: &str) -> Result<Option<StoredRow>> {
        let id = id.to_owned();
        self.read_inspect(move |conn, q| Ok(rows(conn, &q.get_row, [&id])?.pop()))
            .await
    }

    async fn put_row(&self, row: &StoredRow, how: PutRow) -> Result<bool> {
        let text = self
            .options()
            .put_row_text(&row.id, row.state.as_deref(), &row.data)?;
        let queries = Arc::clone(&self.inspect);
        let timed = self.options().layout.has_updated_at();
        let how = how.with_time(row.updated_at_ms, timed);
        let (id, state, at) = (row.id.clone(), row.state.clone(), row.updated_at_ms);
        self.connections
            .write(move |conn| {
                let sql = match how {
                    PutRow::Replace => &queries.replace_row,
                    PutRow::IfNotNewer => &queries.put_row,
                    _ => &queries.insert_row,
                };
                let mut statement = conn.prepare_cached(sql).map_err(from_sqlite)?;
                let changed = if timed {
                    statement.execute(rusqlite::params![id, state, text, at])
                } else {
                    statement.execute(rusqlite::params![id, state, text])
                }
                .map_err(from_sqlite)?;
                Ok(changed > 0)
            })
            .await
    }

    async fn rewrite_row(
        &self,
        old: &StoredRow,
        new: Option<(Option<&str>, &Data)>,
    ) -> Result<bool> {
        let new = self.options().rewrite_text(&old.id, new)?;
        let queries = Arc::clone(&self.inspect);
        let old = old.clone();
        self.connections
            .write(move |conn| {
                // The comparison and the write in one transaction of the one writer,
                // `IMMEDIATE` so no other process writes between them; compared as read
                // (state, parsed data, write time), not as text.
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(from_sqlite)?;
                let now = rows(&tx, &queries.get_row, [&old.id])?.pop();
                let same = now.is_some_and(|now| old.unchanged_in(&now));
                if !same {
                    return Ok(false);
                }
                match &new {
                    Some((state, text)) => tx
                        .prepare_cached(&queries.rewrite_row)
                        .and_then(|mut s| s.execute(rusqlite::params![state, text, old.id])),
                    None => tx
                        .prepare_cached(&queries.delete_row_if)
                        .and_then(|mut s| s.execute(rusqlite::params![old.id])),
                }
                .map_err(from_sqlite)?;
                tx.commit().map_err(from_sqlite)?;
                Ok(true)
            })
            .await
    }

    async fn rewrite_states(
        &self,
        change: &StateChange,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Option<StatesBatch>> {
        let (regroup, from, to) = change.parts();
        let (from, to) = (from.to_owned(), to.to_owned());
        let queries = Arc::clone(&self.inspect);
        let after = after.unwrap_or_default().to_owned();
        let batch = self
            .connections
            .write(move |conn| {
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(from_sqlite)?;
                let (last, rows): (Option<String>, i64) = tx
                    .prepare_cached(&queries.batch_end)
                    .and_then(|mut s| {
                        s.query_row(rusqlite::params![after, limit], |row| {
                            Ok((row.get(0)?, row.get(1)?))
                        })
                    })
                    .map_err(from_sqlite)?;
                let Some(last) = last else {
                    return Ok(StatesBatch::default());
                };
                let changed = if regroup {
                    let chars = from.chars().count() as i64;
                    tx.prepare_cached(&queries.regroup_states)
                        .and_then(|mut s| {
                            s.execute(rusqlite::params![to, chars + 1, chars, from, after, last])
                        })
                } else {
                    tx.prepare_cached(&queries.rename_states)
                        .and_then(|mut s| s.execute(rusqlite::params![to, from, after, last]))
                }
                .map_err(from_sqlite)?;
                tx.commit().map_err(from_sqlite)?;
                Ok(StatesBatch::new(rows as u64, changed as u64, Some(last)))
            })
            .await?;
        Ok(Some(batch))
    }

    async fn stats(&self) -> Result<TableStats> {
        let stats = self
            .read_inspect(|conn, q| {
                let (rows, oldest_ms, newest_ms): (i64, Option<i64>, Option<i64>) = conn
                    .query_row(&q.time_range, [], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                    })
                    .map_err(from_sqlite)?;
                let mut statement = conn
                    .prepare_cached(&q.count_by_state)
                    .map_err(from_sqlite)?;
                let per_state = statement
                    .query_map([], |row| {
                        Ok((
                            row.get::<_, Option<String>>(0)?,
                            row.get::<_, i64>(1)? as u64,
                        ))
                    })
                    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                    .map_err(from_sqlite)?;
                Ok(TableStats {
                    rows: rows as u64,
                    per_state,
                    oldest_ms,
                    newest_ms,
                    ..TableStats::default()
                })
            })
            .await?;
        fsmstore_core::with_expiry(self, stats).await
    }

    async fn count_older_by_state(&self, cutoff_ms: i64) -> Result<Vec<(Option<String>, u64)>> {
        self.options().require_updated_at("inspect stats --age")?;
        self.read_inspect(move |conn, q| {
            let mut statement = conn
                .prepare_cached(&q.count_older_by_state)
                .map_err(from_sqlite)?;
            statement
                .query_map([cutoff_ms], |row| {
                    Ok((
                        row.get::<_, Option<String>>(0)?,
                        row.get::<_, i64>(1)? as u64,
                    ))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(from_sqlite)
        })
        .await
    }

    async fn database_now_ms(&self) -> Result<i64> {
        self.read_inspect(move |conn, q| {
            conn.query_row(&q.now_ms, [], |row| row.get(0))
                .map_err(from_sqlite)
        })
        .await
    }

    async fn count_older_than(&self, cutoff_ms: i64) -> Result<u64> {
        self.options().require_updated_at("purge --older-than")?;
        self.read_inspect(move |conn, q| {
            let count: Option<i64> = conn
                .query_row(&q.count_older, [cutoff_ms], |row| row.get(0))
                .optional()
                .map_err(from_sqlite)?;
            Ok(count.unwrap_or_default() as u64)
        })
        .await
    }

    async fn purge_older_than(&self, cutoff_ms: i64, batch: u64) -> Result<u64> {
        self.options().require_updated_at("purge --older-than")?;
        let queries = Arc::clone(&self.inspect);
        let batch = batch.min(i64::MAX as u64) as i64;
        self.connections
            .write(move |conn| {
                conn.prepare_cached(&queries.purge_batch)
                    .and_then(|mut s| s.execute(rusqlite::params![cutoff_ms, batch]))
                    .map(|n| n as u64)
                    .map_err(from_sqlite)
            })
            .await
    }
}
