//! [`Inspect`] for [`MysqlStorage`]: whole-table operations for operators (list, stats,
//! purge), on core's MySQL statements.

use async_trait::async_trait;
use fsmstore_core::sql::{InspectQueries, MysqlQueries};
use fsmstore_core::{
    Data, Error, Inspect, PutRow, Replay, Result, StateChange, StatesBatch, Storage, StoredRow,
    TableStats,
};
use sqlx::mysql::{MySqlConnection, MySqlRow};
use sqlx::{Acquire, Row};

use crate::connections::{sql, Staged};
use crate::error::{error_number, from_sqlx, ER_DUP_ENTRY};
use crate::storage::MysqlStorage;

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
        let args = (self.inspect_queries(), state, after.unwrap_or(""), limit);
        let rows = self
            .connections()
            .call(
                "list_rows",
                Replay::Safe,
                args,
                |conn, (q, state, after, limit)| {
                    Box::pin(async move {
                        let query = match state {
                            Some(state) => sqlx::query(sql(&q.list_by_state)).bind(*state),
                            None => sqlx::query(sql(&q.list)),
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
        let args = (self.inspect_queries(), id);
        let row = self
            .connections()
            .call("get_row", Replay::Safe, args, |conn, (q, id)| {
                Box::pin(async move {
                    sqlx::query(sql(&q.get_row))
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
        let q = self.inspect_queries();
        let per_state: Vec<(Option<String>, i64)> = self
            .connections()
            .call("stats", Replay::Safe, q, |conn, q| {
                Box::pin(async move {
                    sqlx::query_as(sql(&q.count_by_state))
                        .fetch_all(&mut *conn)
                        .await
                        .before()
                })
            })
            .await?;
        let (rows, oldest_ms, newest_ms): (i64, Option<i64>, Option<i64>) = self
            .connections()
            .call("stats", Replay::Safe, q, |conn, q| {
                Box::pin(async move {
                    sqlx::query_as(sql(&q.time_range))
                        .fetch_one(&mut *conn)
                        .await
                        .before()
                })
            })
            .await?;
        let stats = TableStats {
            rows: count(rows),
            per_state: per_state
                .into_iter()
                .map(|(state, n)| (state, count(n)))
                .collect(),
            oldest_ms,
            newest_ms,
            ..TableStats::default()
        };
        fsmstore_core::with_expiry(self, stats).await
    }

    async fn count_older_by_state(&self, cutoff_ms: i64) -> Result<Vec<(Option<String>, u64)>> {
        self.options().require_updated_at("inspect stats --age")?;
        let args = (self.inspect_queries(), cutoff_ms);
        let per_state: Vec<(Option<String>, i64)> = self
            .connections()
            .call(
                "count_older_by_state",
                Replay::Safe,
                args,
                |conn, (q, cutoff)| {
                    Box::pin(async move {
                        sqlx::query_as(sql(&q.count_older_by_state))
                            .bind(*cutoff)
                            .fetch_all(&mut *conn)
                            .await
                            .before()
                    })
                },
            )
            .await?;
        Ok(per_state
            .into_iter()
            .map(|(state, n)| (state, count(n)))
            .collect())
    }

    async fn database_now_ms(&self) -> Result<i64> {
        self.connections()
            .call(
                "database_now_ms",
                Replay::Safe,
                self.inspect_queries(),
                |conn, q| {
                    Box::pin(async move {
                        sqlx::query_scalar(sql(&q.now_ms))
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
        let args = (self.inspect_queries(), cutoff_ms);
        let n: i64 = self
            .connections()
            .call(
                "count_older_than",
                Replay::Safe,
                args,
                |conn, (q, cutoff)| {
                    Box::pin(async move {
                        sqlx::query_scalar(sql(&q.count_older))
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

    async fn put_row(&self, row: &StoredRow, how: PutRow) -> Result<bool> {
        let text = self
            .options()
            .put_row_text(&row.id, row.state.as_deref(), &row.data)?;
        let id = self.exact(row.id.clone())?;
        let timed = self.options().layout.has_updated_at();
        let how = how.with_time(row.updated_at_ms, timed);
        // The write time is bound only where the layout keeps one.
        let at = timed.then_some(row.updated_at_ms);
        let args = Put {
            inspect: self.inspect_queries(),
            rows: self.row_queries(),
            id,
            state: row.state.clone(),
            text,
            at,
            how,
        };
        // Replay-safe: the row as given, its write time included, written again is the
        // same row (a replayed insert finds it there and reports it kept).
        self.connections()
            .call("put_row", Replay::Safe, args, |conn, put| {
                Box::pin(async move { put.run(conn).await.applying() })
            })
            .await
    }

    async fn rewrite_row(
        &self,
        old: &StoredRow,
        new: Option<(Option<&str>, &Data)>,
    ) -> Result<bool> {
        let new = self.options().rewrite_text(&old.id, new)?;
        let id = self.exact(old.id.clone())?;
        let args = (self.inspect_queries(), new, id, old.clone());
        // One transaction: the row read `FOR UPDATE` and compared as read (state, parsed
        // data, write time), then written by id; a bot's write waits for the commit or
        // came first and is seen. Replay-safe: a replayed rewrite that had been applied
        // finds the row changed and writes nothing (the runner reads it again).
        self.connections()
            .call(
                "rewrite_row",
                Replay::Safe,
                args,
                |conn, (q, new, id, old)| {
                    Box::pin(async move {
                        let mut tx = conn.begin().await.before()?;
                        let now = sqlx::query(sql(&q.get_row_locked))
                            .bind(id.as_str())
                            .fetch_optional(&mut *tx)
                            .await
                            .before()?;
                        let same = now
                            .as_ref()
                            .and_then(|row| stored_row(row).ok())
                            .is_some_and(|now| old.unchanged_in(&now));
                        if !same {
                            tx.rollback().await.before()?;
                            return Ok(false);
                        }
                        match new {
                            Some((state, text)) => sqlx::query(sql(&q.rewrite_row))
                                .bind(state.as_deref())
                                .bind(text.as_str())
                                .bind(id.as_str()),
                            None => sqlx::query(sql(&q.delete_row_if)).bind(id.as_str()),
                        }
                        .execute(&mut *tx)
                        .await
                        .before()?;
                        tx.commit().await.applying()?;
                        Ok(true)
                    })
                },
            )
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
        let after = after.unwrap_or_default().to_owned();
        let args = (self.inspect_queries(), after.clone(), limit);
        let (last, rows): (Option<Vec<u8>>, i64) = self
            .connections()
            .call(
                "rewrite_states",
                Replay::Safe,
                args,
                |conn, (q, after, limit)| {
                    Box::pin(async move {
                        sqlx::query_as(sql(&q.batch_end))
                            .bind(after.as_str())
                            .bind(*limit)
                            .fetch_one(&mut *conn)
                            .await
                            .before()
                    })
                },
            )
            .await?;
        let Some(last) = last else {
            return Ok(Some(StatesBatch::default()));
        };
        let last = String::from_utf8(last).map_err(|err| Error::CorruptData {
            key: String::from_utf8_lossy(err.as_bytes()).into_owned(),
            reason: "the row id is not UTF-8".to_owned(),
        })?;
        let args = (
            self.inspect_queries(),
            regroup,
            from,
            to,
            after,
            last.clone(),
        );
        // Replay-safe: renaming the states of a batch again changes nothing more.
        let done = self
            .connections()
            .call(
                "rewrite_states",
                Replay::Safe,
                args,
                |conn, (q, regroup, from, to, after, last)| {
                    Box::pin(async move {
                        let query = if *regroup {
                            let chars = from.chars().count() as i64;
                            sqlx::query(sql(&q.regroup_states))
                                .bind(to.as_str())
                                .bind(chars + 1)
                                .bind(chars)
                                .bind(from.as_str())
                        } else {
                            sqlx::query(sql(&q.rename_states))
                                .bind(to.as_str())
                                .bind(from.as_str())
                        };
                        query
                            .bind(after.as_str())
                            .bind(last.as_str())
                            .execute(&mut *conn)
                            .await
                            .applying()
                    })
                },
            )
            .await?;
        Ok(Some(StatesBatch::new(
            u64::try_from(rows).unwrap_or_default(),
            done.rows_affected(),
            Some(last),
        )))
    }

    async fn purge_older_than(&self, cutoff_ms: i64, batch: u64) -> Result<u64> {
        self.options().require_updated_at("purge --older-than")?;
        let args = (self.inspect_queries(), cutoff_ms, batch);
        // Replay-safe: running the batch again only deletes more rows that are too old,
        // so a lost reply is not an unknown outcome.
        let done = self
            .connections()
            .call(
                "purge_older_than",
                Replay::Safe,
                args,
                |conn, (q, cutoff, batch)| {
                    Box::pin(async move {
                        sqlx::query(sql(&q.purge_batch))
                            .bind(*cutoff)
                            .bind(*batch)
                            .execute(&mut *conn)
                            .await
                            .applying()
                    })
                },
            )
            .await?;
        Ok(done.rows_affected())
    }
}

/// One `put_row`: its statements and binds.
struct Put<'a> {
    inspect: &'a InspectQueries,
    rows: &'a MysqlQueries,
    id: String,
    state: Option<String>,
    text: String,
    /// `Some` where the layout keeps a write time.
    at: Option<Option<i64>>,
    how: PutRow,
}

impl Put<'_> {
    /// Writes the row; whether it did. MySQL reports an upsert that kept the row as it
    /// reports an insert (sqlx asks for found rows), so a plain `INSERT` runs first and a
    /// duplicate key means the row is there: then the conditional `UPDATE`, whose matched
    /// rows say whether it wrote.
    async fn run(&self, conn: &mut MySqlConnection) -> sqlx::Result<bool> {
        let insert = |sql| {
            let query = sqlx::query(self::sql(sql))
                .bind(self.id.as_str())
                .bind(self.state.as_deref())
                .bind(self.text.as_str());
            match self.at {
                Some(at) => query.bind(at),
                None => query,
            }
        };
        if self.how == PutRow::Replace {
            insert(&self.inspect.replace_row)
                .execute(&mut *conn)
                .await?;
            return Ok(true);
        }
        match insert(&self.inspect.insert_row).execute(&mut *conn).await {
            Ok(_) => Ok(true),
            Err(err) if error_number(&err) == Some(ER_DUP_ENTRY) => {
                let update = match (self.how, self.at) {
                    (PutRow::IfNotNewer, Some(at)) => sqlx::query(sql(&self.rows.update_if_older))
                        .bind(self.state.as_deref())
                        .bind(self.text.as_str())
                        .bind(at)
                        .bind(self.id.as_str())
                        .bind(at),
                    _ => sqlx::query(sql(&self.rows.revive_emptied))
                        .bind(self.state.as_deref())
                        .bind(self.text.as_str())
                        .bind(self.id.as_str()),
                };
                Ok(update.execute(&mut *conn).await?.rows_affected() > 0)
            }
            Err(err) => Err(err),
        }
    }
}
