//! The writes core's [`Coalescer`](fsmstore_core::coalesce::Coalescer) may put together:
//! each alone as today (its statement, or its locked merge, and its own commit), or
//! several in one transaction on one connection, one `COMMIT` for all.

use std::borrow::Cow;
use std::sync::Arc;

use fsmstore_core::coalesce::{BatchWrite, Written};
use fsmstore_core::sql::{mysql_rows, MysqlQueries};
use fsmstore_core::{plan_merge, Data, MergeWrite, NextState, Replay, Result};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use sqlx::mysql::MySqlConnection;
use sqlx::{Acquire, Row};

use crate::connections::{sql, Attempt, Connections, Staged};
use crate::statements::{data_text, execute, merge_locked, upsert_record, Merge};

/// One write of one row; borrowed on the per-call path, owned while it waits.
#[derive(Debug)]
pub(crate) enum MysqlWrite<'a> {
    /// `set_state(Some)`: core's `upsert_state`.
    SetState { id: String, state: String },
    /// `set_data` of a non-empty object (its JSON text): `upsert_data`.
    SetData { id: String, text: String },
    /// `set_record` holding something: `upsert_record`.
    SetRecord {
        id: String,
        state: Option<String>,
        text: String,
    },
    /// `update_data` (`next: None`) or `transition` (`next: Some(state)`): the locked
    /// read-merge-write.
    Merge {
        id: String,
        patch: Cow<'a, Data>,
        next: Option<Option<String>>,
    },
    /// `clear`: core's `take` (whether a fresh row was there).
    Clear { id: String },
}

impl MysqlWrite<'_> {
    /// The same write, owning what it borrowed.
    pub(crate) fn to_owned_write(&self) -> MysqlWrite<'static> {
        match self {
            MysqlWrite::SetState { id, state } => MysqlWrite::SetState {
                id: id.clone(),
                state: state.clone(),
            },
            MysqlWrite::SetData { id, text } => MysqlWrite::SetData {
                id: id.clone(),
                text: text.clone(),
            },
            MysqlWrite::SetRecord { id, state, text } => MysqlWrite::SetRecord {
                id: id.clone(),
                state: state.clone(),
                text: text.clone(),
            },
            MysqlWrite::Merge { id, patch, next } => MysqlWrite::Merge {
                id: id.clone(),
                patch: Cow::Owned(patch.clone().into_owned()),
                next: next.clone(),
            },
            MysqlWrite::Clear { id } => MysqlWrite::Clear { id: id.clone() },
        }
    }

    fn id(&self) -> &str {
        match self {
            MysqlWrite::SetState { id, .. }
            | MysqlWrite::SetData { id, .. }
            | MysqlWrite::SetRecord { id, .. }
            | MysqlWrite::Merge { id, .. }
            | MysqlWrite::Clear { id } => id,
        }
    }

    fn operation(&self) -> &'static str {
        match self {
            MysqlWrite::SetState { .. } => "set_state",
            MysqlWrite::SetData { .. } => "set_data",
            MysqlWrite::SetRecord { .. } => "set_record",
            MysqlWrite::Merge { next: None, .. } => "update_data",
            MysqlWrite::Merge { next: Some(_), .. } => "transition",
            MysqlWrite::Clear { .. } => "clear",
        }
    }

    /// The write on `conn`: alone it commits itself (autocommit, or the merge's own
    /// transaction); inside a batch's transaction it is part of it (the merge then takes a
    /// savepoint). The inner `Result` is the call's own error (stored data that is not an
    /// object).
    async fn run(&self, conn: &mut MySqlConnection, q: &MysqlQueries) -> Attempt<Result<Written>> {
        let done = |_| Ok(Written::Done);
        match self {
            MysqlWrite::SetState { id, state } => {
                execute(conn, &q.row.upsert_state, id, Some(state))
                    .await
                    .map(done)
                    .applying()
            }
            MysqlWrite::SetData { id, text } => execute(conn, &q.row.upsert_data, id, Some(text))
                .await
                .map(done)
                .applying(),
            MysqlWrite::SetRecord { id, state, text } => {
                upsert_record(conn, q, id, state.as_deref(), text)
                    .await
                    .map(done)
                    .applying()
            }
            MysqlWrite::Merge { id, patch, next } => {
                let merge = Merge {
                    sql: q,
                    id,
                    patch,
                    next: match next {
                        None => NextState::Keep,
                        Some(state) => NextState::Set(state.as_deref()),
                    },
                };
                merge_locked(conn, &merge)
                    .await
                    .map(|merged| merged.map(Written::Data))
            }
            MysqlWrite::Clear { id } => execute(conn, &q.take, id, None)
                .await
                .map(|deleted| Ok(Written::Cleared(deleted > 0)))
                .applying(),
        }
    }
}

/// The storage's writes: its connections and statements.
pub(crate) struct MysqlWriter {
    pub(crate) conns: Arc<Connections>,
    pub(crate) queries: Arc<MysqlQueries>,
}

impl MysqlWriter {
    /// `write` alone, its own commit.
    pub(crate) async fn one(&self, write: &MysqlWrite<'_>) -> Result<Written> {
        self.conns
            .call(
                write.operation(),
                Replay::Unsafe,
                (&self.queries, write),
                |conn, (q, write)| Box::pin(write.run(conn, q)),
            )
            .await?
    }
}

/// `writes` in one transaction: any failure before `COMMIT` leaves nothing applied (the
/// transaction is rolled back, or dies with its connection), so only the `COMMIT` applies.
///
/// Each kind of write is one statement for all its rows: a statement for `n` rows is the
/// one for [`padded`]`(n)` rows, the last row repeated (an upsert of the same values, a lock
/// or a read of the same row, changes nothing more), so a few statement texts per kind
/// stay prepared in the driver's cache. The merges read their rows with a locking read:
/// under `REPEATABLE READ` a plain read would see the transaction's snapshot, not what
/// another transaction committed before the lock was taken (a lost update; the conformance
/// case `writers_of_one_key_lose_nothing_in_batches` caught it in a first version).
async fn run_batch(
    conn: &mut MySqlConnection,
    q: &MysqlQueries,
    writes: &[MysqlWrite<'static>],
) -> Attempt<Vec<Result<Written>>> {
    let mut tx = conn.begin().await.before()?;
    let mut answers: Vec<Option<Result<Written>>> = writes.iter().map(|_| None).collect();
    let of = |pick: fn(&MysqlWrite<'static>) -> bool| -> Vec<usize> {
        (0..writes.len()).filter(|&i| pick(&writes[i])).collect()
    };
    // The plain upserts: each kind's rows in one statement (in chunks, see `chunks`).
    let plain: [(&str, Vec<usize>); 3] = [
        (
            &q.row.upsert_state,
            of(|w| matches!(w, MysqlWrite::SetState { .. })),
        ),
        (
            &q.row.upsert_data,
            of(|w| matches!(w, MysqlWrite::SetData { .. })),
        ),
        (
            &q.row.upsert_record,
            of(|w| matches!(w, MysqlWrite::SetRecord { .. })),
        ),
    ];
    for (statement, rows) in &plain {
        if let Some(chunk) = padded(rows) {
            let text = mysql_rows(statement, chunk.len());
            let mut query = sqlx::query(sql(&text));
            for &i in &chunk {
                query = match &writes[i] {
                    MysqlWrite::SetState { id, state } => {
                        query.bind(id.as_str()).bind(state.as_str())
                    }
                    MysqlWrite::SetData { id, text } => query.bind(id.as_str()).bind(text.as_str()),
                    MysqlWrite::SetRecord { id, state, text } => query
                        .bind(id.as_str())
                        .bind(state.as_deref())
                        .bind(text.as_str()),
                    _ => query,
                };
            }
            query.execute(&mut *tx).await.before()?;
            for &i in rows {
                answers[i] = Some(Ok(Written::Done));
            }
        }
    }
    // The merges: every row locked (inserted empty when new), read, merged in Rust and
    // written back, each step one statement for all rows.
    let merges = of(|w| matches!(w, MysqlWrite::Merge { .. }));
    if !merges.is_empty() {
        let mut stored = std::collections::HashMap::new();
        if let Some(chunk) = padded(&merges) {
            let text = mysql_rows(&q.lock_row, chunk.len());
            let mut lock = sqlx::query(sql(&text));
            for &i in &chunk {
                lock = lock.bind(writes[i].id());
            }
            lock.execute(&mut *tx).await.before()?;
            let text = mysql_rows(&q.get_records, chunk.len());
            let mut select = sqlx::query(sql(&text));
            for &i in &chunk {
                select = select.bind(writes[i].id());
            }
            for row in select.fetch_all(&mut *tx).await.before()? {
                let id: String = row.try_get_unchecked(0).before()?;
                let state: Option<String> = row.try_get(1).before()?;
                stored.insert(id, (state, data_text(&row, 2).before()?));
            }
        }
        let mut upserts: Vec<(usize, Option<String>, String)> = Vec::new();
        for &i in &merges {
            let MysqlWrite::Merge { id, patch, next } = &writes[i] else {
                continue;
            };
            let (state, text) = stored.remove(id.as_str()).unwrap_or((None, None));
            let next = match next {
                None => NextState::Keep,
                Some(state) => NextState::Set(state.as_deref()),
            };
            match plan_merge(id, state, text.as_deref(), patch, next) {
                Ok(plan) => {
                    match plan.write {
                        MergeWrite::Upsert { state, data } => upserts.push((i, state, data)),
                        MergeWrite::Delete => {
                            execute(&mut tx, &q.row.delete, id, None).await.before()?;
                        }
                    }
                    answers[i] = Some(Ok(Written::Data(plan.data)));
                }
                // Stored data that is not an object: this call's error, its row untouched
                // (the lock only inserted an empty row for a key that had none).
                Err(err) => answers[i] = Some(Err(err)),
            }
        }
        let rows: Vec<usize> = (0..upserts.len()).collect();
        if let Some(chunk) = padded(&rows) {
            let text = mysql_rows(&q.row.upsert_record, chunk.len());
            let mut query = sqlx::query(sql(&text));
            for &u in &chunk {
                let (i, state, data) = &upserts[u];
                query = query
                    .bind(writes[*i].id())
                    .bind(state.as_deref())
                    .bind(data.as_str());
            }
            query.execute(&mut *tx).await.before()?;
        }
    }
    // Clears answer whether each found its row: one statement each.
    for (i, write) in writes.iter().enumerate() {
        if answers[i].is_none() {
            answers[i] = Some(write.run(&mut tx, q).await.map_err(|f| f.uncommitted())?);
        }
    }
    tx.commit().await.applying()?;
    Ok(answers
        .into_iter()
        .map(|a| a.expect("every write answered"))
        .collect())
}

/// The row counts a batch statement is written for.
const SIZES: [usize; 12] = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64];

/// `rows` padded to the next of [`SIZES`] with its last row repeated (`None` for no rows).
fn padded(rows: &[usize]) -> Option<Vec<usize>> {
    let last = *rows.last()?;
    let size = SIZES
        .iter()
        .copied()
        .find(|&size| size >= rows.len())
        .unwrap_or(rows.len());
    let mut padded = rows.to_vec();
    padded.resize(size, last);
    Some(padded)
}

impl BatchWrite for MysqlWriter {
    type Write = MysqlWrite<'static>;

    fn row_id(write: &Self::Write) -> &str {
        write.id()
    }

    fn operation(write: &Self::Write) -> &'static str {
        write.operation()
    }

    fn write_one<'a>(&'a self, write: &'a Self::Write) -> BoxFuture<'a, Result<Written>> {
        self.one(write).boxed()
    }

    fn write_batch<'a>(
        &'a self,
        writes: &'a [Self::Write],
    ) -> BoxFuture<'a, Result<Vec<Result<Written>>>> {
        self.conns
            .call(
                "write batch",
                Replay::Unsafe,
                (&self.queries, writes),
                |conn, (q, writes)| Box::pin(run_batch(conn, q, writes)),
            )
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rows_are_padded_to_a_few_sizes_with_the_last_row() {
        assert_eq!(super::padded(&[]), None);
        assert_eq!(super::padded(&[7]), Some(vec![7]));
        assert_eq!(
            super::padded(&[1, 2, 3, 4, 5]),
            Some(vec![1, 2, 3, 4, 5, 5])
        );
        let many: Vec<usize> = (0..33).collect();
        let padded = super::padded(&many).unwrap();
        assert_eq!((padded.len(), padded[47]), (48, 32));
        assert_eq!(
            super::padded(&(0..64).collect::<Vec<_>>()).unwrap().len(),
            64
        );
    }
}
