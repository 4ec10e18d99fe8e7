//! The writes core's [`Coalescer`](fsmstore_core::coalesce::Coalescer) may put together:
//! each alone as today (its statement, or its locked merge, and its own commit), or
//! several in one transaction on one connection, one `COMMIT` for all, sent as one or two
//! scripts of text statements (`script.rs`).

use std::borrow::Cow;
use std::sync::Arc;

use std::collections::HashMap;

use fsmstore_core::coalesce::{BatchWrite, Written};
use fsmstore_core::sql::{mysql_rows, MysqlQueries};
use fsmstore_core::{plan_merge, Data, MergeWrite, NextState, Phase, Replay, Result};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Row};

use crate::connections::{sql, Attempt, Connections, Failed, Staged};
use crate::script::{Script, Tag, Value};
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

/// A row whose values take more text than this is written by its own prepared statement
/// inside the batch's transaction (a hexadecimal literal doubles its bytes; a statement
/// must stay under the server's `max_allowed_packet`).
const ROW_BYTES: usize = 64 * 1024;

/// A multi-row statement's text is at most this long (or one row).
const STATEMENT_BYTES: usize = 128 * 1024;

/// A script is sent once its text would grow past this: half of the smallest
/// `max_allowed_packet` a server has had by default (1 MiB, MySQL 5.6).
const SCRIPT_BYTES: usize = 512 * 1024;

/// `writes` in one transaction, in one round trip when none is a merge and in two when
/// some are (their rows are read under lock before they are merged in Rust):
///
/// 1. `BEGIN`; one multi-row statement per kind of plain write (`upsert_state`,
///    `upsert_data`, `upsert_record`); for the merges, one `lock_row` of all their rows (an
///    empty row for a key that has none, so each is locked, and written, from the start)
///    and one locking read of them (`FOR UPDATE`: under `REPEATABLE READ` a plain read
///    would see the transaction's snapshot, not what another transaction committed before
///    the lock was taken; the conformance case `writers_of_one_key_lose_nothing_in_batches`
///    caught that lost update in a first version);
/// 2. the merged rows' `upsert_record` (and `delete` where a merge empties a row), each
///    `clear`'s `take` on its own (its affected rows answer whether it found a row), and
///    `COMMIT`.
///
/// Each step is a [`Script`]: the statements as text, sent together. A server that refuses
/// a statement runs none after it (no `COMMIT`): the transaction is rolled back and the
/// batch did not commit. A connection lost once the `COMMIT` was sent leaves the outcome
/// unknown. A row too large for a literal runs as its own prepared statement in the
/// transaction. (A `READ COMMITTED` batch whose locking read alone locked the merged rows
/// lost a field on Galera once in CI: `galera::writers_on_every_node_lose_nothing`.)
async fn run_batch(
    conn: &mut MySqlConnection,
    q: &MysqlQueries,
    writes: &[MysqlWrite<'static>],
) -> Attempt<Vec<Result<Written>>> {
    let mut run = Batch {
        conn,
        q,
        script: Script::default(),
        answers: writes.iter().map(|_| None).collect(),
        stored: HashMap::new(),
        committing: false,
    };
    match run.all(writes).await {
        Ok(()) => Ok(run
            .answers
            .into_iter()
            .map(|a| a.expect("every write answered"))
            .collect()),
        Err(error) => Err(run.failed(error).await),
    }
}

/// One batch being written.
struct Batch<'c> {
    conn: &'c mut MySqlConnection,
    q: &'c MysqlQueries,
    /// Statements not sent yet.
    script: Script,
    answers: Vec<Option<Result<Written>>>,
    /// The merges' rows as read under lock: state and data text by row id.
    stored: HashMap<String, (Option<String>, Option<String>)>,
    /// Whether the script with the `COMMIT` was sent.
    committing: bool,
}

impl Batch<'_> {
    async fn all(&mut self, writes: &[MysqlWrite<'static>]) -> sqlx::Result<()> {
        let q = self.q;
        self.add("BEGIN", &[], Tag::Plain).await?;
        // The plain writes: each kind's rows in one statement.
        type Values = for<'w> fn(&'w MysqlWrite<'static>) -> Option<Vec<Value<'w>>>;
        let kinds: [(&str, Values); 3] = [
            (&q.row.upsert_state, |w| match w {
                MysqlWrite::SetState { id, state } => {
                    Some(vec![Value::Text(id), Value::Text(state)])
                }
                _ => None,
            }),
            (&q.row.upsert_data, |w| match w {
                MysqlWrite::SetData { id, text } => Some(vec![Value::Text(id), Value::Text(text)]),
                _ => None,
            }),
            (&q.row.upsert_record, |w| match w {
                MysqlWrite::SetRecord { id, state, text } => Some(vec![
                    Value::Text(id),
                    state.as_deref().map_or(Value::Null, Value::Text),
                    Value::Text(text),
                ]),
                _ => None,
            }),
        ];
        for (statement, values) in kinds {
            let mut rows = Vec::new();
            for (i, write) in writes.iter().enumerate() {
                if let Some(row) = values(write) {
                    rows.push(row);
                    self.answers[i] = Some(Ok(Written::Done));
                }
            }
            let large = self.add_rows(statement, rows, Tag::Plain).await?;
            for row in large {
                self.prepared(statement, &row).await?;
            }
        }
        // The merges: every row locked and read in one statement each, merged in Rust.
        let merges: Vec<usize> = (0..writes.len())
            .filter(|&i| matches!(writes[i], MysqlWrite::Merge { .. }))
            .collect();
        if !merges.is_empty() {
            let ids = || -> Vec<Vec<Value<'_>>> {
                merges
                    .iter()
                    .map(|&i| vec![Value::Text(writes[i].id())])
                    .collect()
            };
            self.add_rows(&q.lock_row, ids(), Tag::Plain).await?;
            self.add_rows(&q.get_records, ids(), Tag::Rows).await?;
            self.flush().await?;
            let mut upserts = Vec::new();
            for &i in &merges {
                let MysqlWrite::Merge { id, patch, next } = &writes[i] else {
                    continue;
                };
                let (state, text) = self.stored.remove(id.as_str()).unwrap_or((None, None));
                let next = match next {
                    None => NextState::Keep,
                    Some(state) => NextState::Set(state.as_deref()),
                };
                match plan_merge(id, state, text.as_deref(), patch, next) {
                    Ok(plan) => {
                        match plan.write {
                            MergeWrite::Upsert { state, data } => upserts.push((i, state, data)),
                            MergeWrite::Delete => {
                                self.add(&q.row.delete, &[Value::Text(id)], Tag::Plain)
                                    .await?;
                            }
                        }
                        self.answers[i] = Some(Ok(Written::Data(plan.data)));
                    }
                    // Stored data that is not an object: this call's error, its row
                    // untouched (the lock only inserted an empty row for a key that had none).
                    Err(err) => self.answers[i] = Some(Err(err)),
                }
            }
            let rows = upserts
                .iter()
                .map(|(i, state, data)| {
                    vec![
                        Value::Text(writes[*i].id()),
                        state.as_deref().map_or(Value::Null, Value::Text),
                        Value::Text(data),
                    ]
                })
                .collect();
            let large = self
                .add_rows(&q.row.upsert_record, rows, Tag::Plain)
                .await?;
            for row in large {
                self.prepared(&q.row.upsert_record, &row).await?;
            }
        }
        // Clears answer whether each found its row: one statement each.
        for (i, write) in writes.iter().enumerate() {
            if let MysqlWrite::Clear { id } = write {
                self.add(&q.take, &[Value::Text(id)], Tag::Affected(i))
                    .await?;
            }
        }
        self.add("COMMIT", &[], Tag::Plain).await?;
        self.committing = true;
        self.flush().await
    }

    /// Adds one statement, sending what came before first when the script would grow past
    /// [`SCRIPT_BYTES`].
    async fn add(&mut self, statement: &str, values: &[Value<'_>], tag: Tag) -> sqlx::Result<()> {
        let size = statement.len() + values.iter().map(Value::text_len).sum::<usize>();
        if !self.script.is_empty() && self.script.len() + size > SCRIPT_BYTES {
            self.flush().await?;
        }
        self.script.add(statement, values, tag)
    }

    /// Adds `statement` for `rows`, as few statements as [`STATEMENT_BYTES`] allows; returns
    /// the rows too large for a literal (see [`ROW_BYTES`]), for prepared statements.
    async fn add_rows<'v>(
        &mut self,
        statement: &str,
        rows: Vec<Vec<Value<'v>>>,
        tag: Tag,
    ) -> sqlx::Result<Vec<Vec<Value<'v>>>> {
        let size = |row: &Vec<Value<'_>>| row.iter().map(Value::text_len).sum::<usize>() + 8;
        let (large, rows): (Vec<_>, Vec<_>) =
            rows.into_iter().partition(|row| size(row) > ROW_BYTES);
        let mut rest = rows.as_slice();
        while !rest.is_empty() {
            let mut take = 0;
            let mut bytes = statement.len();
            while take < rest.len() && (take == 0 || bytes + size(&rest[take]) <= STATEMENT_BYTES) {
                bytes += size(&rest[take]);
                take += 1;
            }
            let values: Vec<Value<'_>> = rest[..take].iter().flatten().copied().collect();
            self.add(&mysql_rows(statement, take), &values, tag).await?;
            rest = &rest[take..];
        }
        Ok(large)
    }

    /// One row of `statement` as a prepared statement, in the transaction (begun by what
    /// was added before, sent first).
    async fn prepared(&mut self, statement: &str, row: &[Value<'_>]) -> sqlx::Result<()> {
        self.flush().await?;
        let mut query = sqlx::query(sql(statement));
        for value in row {
            query = match value {
                Value::Text(text) => query.bind(*text),
                Value::Null => query.bind(None::<&str>),
            };
        }
        query.execute(&mut *self.conn).await.map(drop)
    }

    /// Sends the script, and takes in what it answered: the merges' rows, the clears'
    /// counts.
    async fn flush(&mut self) -> sqlx::Result<()> {
        if self.script.is_empty() {
            return Ok(());
        }
        let script = std::mem::take(&mut self.script);
        for answer in script.send(self.conn).await? {
            match answer.tag {
                Tag::Plain => {}
                Tag::Rows => {
                    for row in answer.rows {
                        let id: String = row.try_get_unchecked(0)?;
                        let state: Option<String> = row.try_get(1)?;
                        self.stored.insert(id, (state, data_text(&row, 2)?));
                    }
                }
                Tag::Affected(i) => {
                    self.answers[i] = Some(Ok(Written::Cleared(answer.affected > 0)));
                }
            }
        }
        Ok(())
    }

    /// What a failed batch leaves. A statement the server refused ran none after it, so no
    /// `COMMIT`: its transaction is rolled back here and the batch did not commit (the
    /// connection is closed if even that fails). Any other failure closes the connection
    /// (the server rolls back what did not commit); once the `COMMIT` was sent its outcome
    /// is unknown.
    async fn failed(&mut self, error: sqlx::Error) -> Failed {
        if matches!(error, sqlx::Error::Database(_)) {
            let rollback = sqlx::raw_sql(AssertSqlSafe("ROLLBACK"))
                .execute(&mut *self.conn)
                .await;
            return match rollback {
                Ok(_) => Failed::at(Phase::Before, error),
                Err(_) => Failed::closing(Phase::Before, error),
            };
        }
        let phase = if self.committing {
            Phase::Applying
        } else {
            Phase::Before
        };
        Failed::closing(phase, error)
    }
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
