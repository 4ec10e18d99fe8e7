//! [`Inspect`] for [`PgStorage`]: whole-table operations for operators (list, stats,
//! purge), on core's PostgreSQL statements.

use async_trait::async_trait;
use fsmstore_core::{
    Data, Error, Inspect, PutRow, Replay, Result, StateChange, StatesBatch, Storage, StoredRow,
    TableStats,
};
use tokio_postgres::types::Json;
use tokio_postgres::Row;

use crate::connections::execute_op;
use crate::error::from_pg;
use crate::params::p;
use crate::storage::PgStorage;

fn stored(row: &Row) -> Result<StoredRow> {
    let id: String = row.try_get(0).map_err(from_pg)?;
    // The data column as text (core's inspect statements cast it), parsed here: one row
    // that does not read is reported on its own.
    let text: Option<String> = row.try_get(2).map_err(from_pg)?;
    Ok(StoredRow::from_text(
        id,
        row.try_get(1).map_err(from_pg)?,
        text.as_deref(),
        row.try_get(3).map_err(from_pg)?,
    ))
}

#[async_trait]
impl Inspect for PgStorage {
    async fn list_rows(
        &self,
        state: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<StoredRow>> {
        let q = self.inspect_queries();
        let after = after.unwrap_or_default();
        let limit = limit.min(i64::MAX as u64) as i64;
        let rows = match state {
            Some(state) => {
                self.connections()
                    .query(
                        "list_rows",
                        &q.list_by_state,
                        &[p(&state), p(&after), p(&limit)],
                    )
                    .await?
            }
            None => {
                self.connections()
                    .query("list_rows", &q.list, &[p(&after), p(&limit)])
                    .await?
            }
        };
        rows.iter().map(stored).collect()
    }

    async fn get_row(&self, id: &str) -> Result<Option<StoredRow>> {
        let row = self
            .connections()
            .query_opt(
                "get_row",
                Replay::Safe,
                &self.inspect_queries().get_row,
                &[p(&id)],
            )
            .await?;
        row.as_ref().map(stored).transpose()
    }

    async fn put_row(&self, row: &StoredRow, how: PutRow) -> Result<bool> {
        self.options()
            .put_row_text(&row.id, row.state.as_deref(), &row.data)?;
        let q = self.inspect_queries();
        let timed = self.options().layout.has_updated_at();
        let sql = match how.with_time(row.updated_at_ms, timed) {
            PutRow::Replace => &q.replace_row,
            PutRow::IfNotNewer => &q.put_row,
            _ => &q.insert_row,
        };
        let (id, state, data) = (&row.id, &row.state, Json(&row.data));
        let at = row.updated_at_ms;
        // Replay-safe: the row as given, its write time included, written again is the
        // same row (a replayed insert finds it there and reports it kept).
        let changed = if timed {
            self.connections()
                .run(
                    "put_row",
                    Replay::Safe,
                    sql,
                    &[p(id), p(state), p(&data), p(&at)],
                    execute_op,
                )
                .await?
        } else {
            self.connections()
                .run(
                    "put_row",
                    Replay::Safe,
                    sql,
                    &[p(id), p(state), p(&data)],
                    execute_op,
                )
                .await?
        };
        Ok(changed > 0)
    }

    async fn rewrite_row(
        &self,
        old: &StoredRow,
        new: Option<(Option<&str>, &Data)>,
    ) -> Result<bool> {
        self.options().rewrite_text(&old.id, new)?;
        let q = self.inspect_queries();
        let timed = self.options().layout.has_updated_at();
        let (id, old_state, old_data) = (&old.id, &old.state, Json(&old.data));
        let at = old.updated_at_ms;
        // Replay-safe: a replayed rewrite that had been applied finds the row changed and
        // writes nothing (the runner reads it again and finds nothing left to do).
        let (new_state, new_data) = match new {
            Some((state, data)) => (state, Some(Json(data))),
            None => (None, None),
        };
        let (sql, mut params) = match &new_data {
            Some(data) => (
                &q.rewrite_row,
                vec![p(&new_state), p(data), p(id), p(old_state), p(&old_data)],
            ),
            None => (&q.delete_row_if, vec![p(id), p(old_state), p(&old_data)]),
        };
        if timed {
            params.push(p(&at));
        }
        let changed = self
            .connections()
            .run("rewrite_row", Replay::Safe, sql, &params, execute_op)
            .await?;
        Ok(changed > 0)
    }

    async fn rewrite_states(
        &self,
        change: &StateChange,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Option<StatesBatch>> {
        let (regroup, from, to) = change.parts();
        let q = self.inspect_queries();
        let after = after.unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let end = self
            .connections()
            .query_opt(
                "rewrite_states",
                Replay::Safe,
                &q.batch_end,
                &[p(&after), p(&limit)],
            )
            .await?;
        let (last, rows): (Option<String>, i64) = match end {
            Some(row) => (
                row.try_get(0).map_err(from_pg)?,
                row.try_get(1).map_err(from_pg)?,
            ),
            None => (None, 0),
        };
        let Some(last) = last else {
            return Ok(Some(StatesBatch::default()));
        };
        // Replay-safe: renaming the states of a batch again changes nothing more.
        let changed = if regroup {
            let chars = from.chars().count() as i64;
            let start = chars + 1;
            self.connections()
                .run(
                    "rewrite_states",
                    Replay::Safe,
                    &q.regroup_states,
                    &[p(&to), p(&start), p(&chars), p(&from), p(&after), p(&last)],
                    execute_op,
                )
                .await?
        } else {
            self.connections()
                .run(
                    "rewrite_states",
                    Replay::Safe,
                    &q.rename_states,
                    &[p(&to), p(&from), p(&after), p(&last)],
                    execute_op,
                )
                .await?
        };
        Ok(Some(StatesBatch::new(rows as u64, changed, Some(last))))
    }

    async fn stats(&self) -> Result<TableStats> {
        let q = self.inspect_queries();
        let range = self
            .connections()
            .query_opt("stats", Replay::Safe, &q.time_range, &[])
            .await?;
        let (rows, oldest_ms, newest_ms): (i64, Option<i64>, Option<i64>) = match range {
            Some(row) => (
                row.try_get(0).map_err(from_pg)?,
                row.try_get(1).map_err(from_pg)?,
                row.try_get(2).map_err(from_pg)?,
            ),
            None => (0, None, None),
        };
        let per_state = self
            .connections()
            .query("stats", &q.count_by_state, &[])
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get::<_, i64>(1)? as u64)))
            .collect::<std::result::Result<Vec<_>, tokio_postgres::Error>>()
            .map_err(from_pg)?;
        let stats = TableStats {
            rows: rows as u64,
            per_state,
            oldest_ms,
            newest_ms,
            ..TableStats::default()
        };
        fsmstore_core::with_expiry(self, stats).await
    }

    async fn count_older_by_state(&self, cutoff_ms: i64) -> Result<Vec<(Option<String>, u64)>> {
        self.options().require_updated_at("inspect stats --age")?;
        self.connections()
            .query(
                "count_older_by_state",
                &self.inspect_queries().count_older_by_state,
                &[p(&cutoff_ms)],
            )
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get::<_, i64>(1)? as u64)))
            .collect::<std::result::Result<Vec<_>, tokio_postgres::Error>>()
            .map_err(from_pg)
    }

    async fn database_now_ms(&self) -> Result<i64> {
        let row = self
            .connections()
            .query_opt(
                "database_now_ms",
                Replay::Safe,
                &self.inspect_queries().now_ms,
                &[],
            )
            .await?;
        match row {
            Some(row) => row.try_get(0).map_err(from_pg),
            None => Err(Error::database(false, "SELECT now() returned no row")),
        }
    }

    async fn count_older_than(&self, cutoff_ms: i64) -> Result<u64> {
        self.options().require_updated_at("purge --older-than")?;
        let row = self
            .connections()
            .query_opt(
                "count_older_than",
                Replay::Safe,
                &self.inspect_queries().count_older,
                &[p(&cutoff_ms)],
            )
            .await?;
        let count: i64 = match row {
            Some(row) => row.try_get(0).map_err(from_pg)?,
            None => 0,
        };
        Ok(count as u64)
    }

    async fn purge_older_than(&self, cutoff_ms: i64, batch: u64) -> Result<u64> {
        self.options().require_updated_at("purge --older-than")?;
        let batch = batch.min(i64::MAX as u64) as i64;
        // Replay-safe: running the batch again only deletes more rows that are too old.
        let sql = &self.inspect_queries().purge_batch;
        self.connections()
            .run(
                "purge_older_than",
                Replay::Safe,
                sql,
                &[p(&cutoff_ms), p(&batch)],
                execute_op,
            )
            .await
    }
}
