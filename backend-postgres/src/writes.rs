//! The writes core's [`Coalescer`](fsmstore_core::coalesce::Coalescer) may put together:
//! each alone as one statement (the per-call path), or several pipelined in one
//! transaction on one connection ([`Connections::write_batch`]).

use std::borrow::Cow;
use std::sync::Arc;

use fsmstore_core::coalesce::{BatchWrite, Written};
use fsmstore_core::sql::PostgresQueries;
use fsmstore_core::{data_from_value, Data, Error, Replay, Result};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use serde_json::Value;
use tokio_postgres::types::Json;
use tokio_postgres::Row;

use crate::connections::Connections;
use crate::error::{corrupt_text, from_pg};
use crate::params::{p, Param};

/// One write of one row; borrowed on the per-call path, owned while it waits.
#[derive(Debug)]
pub(crate) enum PgWrite<'a> {
    SetState {
        id: String,
        state: String,
    },
    SetData {
        id: String,
        data: Json<Cow<'a, Data>>,
    },
    SetRecord {
        id: String,
        state: Option<String>,
        data: Json<Cow<'a, Data>>,
    },
    UpdateData {
        id: String,
        patch: Json<Cow<'a, Data>>,
    },
    Transition {
        id: String,
        state: Option<String>,
        patch: Json<Cow<'a, Data>>,
    },
    Clear {
        id: String,
    },
}

impl<'a> PgWrite<'a> {
    fn data(&self) -> Option<&Json<Cow<'a, Data>>> {
        match self {
            PgWrite::SetData { data, .. } | PgWrite::SetRecord { data, .. } => Some(data),
            PgWrite::UpdateData { patch, .. } | PgWrite::Transition { patch, .. } => Some(patch),
            _ => None,
        }
    }
}

fn owned(data: &Json<Cow<'_, Data>>) -> Json<Cow<'static, Data>> {
    Json(Cow::Owned(data.0.clone().into_owned()))
}

impl PgWrite<'_> {
    /// The same write, owning what it borrowed.
    pub(crate) fn to_owned_write(&self) -> PgWrite<'static> {
        match self {
            PgWrite::SetState { id, state } => PgWrite::SetState {
                id: id.clone(),
                state: state.clone(),
            },
            PgWrite::SetData { id, data } => PgWrite::SetData {
                id: id.clone(),
                data: owned(data),
            },
            PgWrite::SetRecord { id, state, data } => PgWrite::SetRecord {
                id: id.clone(),
                state: state.clone(),
                data: owned(data),
            },
            PgWrite::UpdateData { id, patch } => PgWrite::UpdateData {
                id: id.clone(),
                patch: owned(patch),
            },
            PgWrite::Transition { id, state, patch } => PgWrite::Transition {
                id: id.clone(),
                state: state.clone(),
                patch: owned(patch),
            },
            PgWrite::Clear { id } => PgWrite::Clear { id: id.clone() },
        }
    }

    fn id(&self) -> &str {
        match self {
            PgWrite::SetState { id, .. }
            | PgWrite::SetData { id, .. }
            | PgWrite::SetRecord { id, .. }
            | PgWrite::UpdateData { id, .. }
            | PgWrite::Transition { id, .. }
            | PgWrite::Clear { id } => id,
        }
    }

    fn operation(&self) -> &'static str {
        match self {
            PgWrite::SetState { .. } => "set_state",
            PgWrite::SetData { .. } => "set_data",
            PgWrite::SetRecord { .. } => "set_record",
            PgWrite::UpdateData { .. } => "update_data",
            PgWrite::Transition { .. } => "transition",
            PgWrite::Clear { .. } => "clear",
        }
    }

    /// The statement (core's, the same text alone or batched) and its parameters.
    fn statement<'s>(&'s self, q: &'s PostgresQueries) -> (&'s str, Vec<Param<'s>>) {
        match self {
            PgWrite::SetState { id, state } => (&q.row.upsert_state, vec![p(id), p(state)]),
            PgWrite::SetData { id, data } => (&q.row.upsert_data, vec![p(id), p(data)]),
            PgWrite::SetRecord { id, state, data } => {
                (&q.row.upsert_record, vec![p(id), p(state), p(data)])
            }
            PgWrite::UpdateData { id, patch } => (&q.merge_data, vec![p(id), p(patch)]),
            PgWrite::Transition { id, state, patch } => {
                (&q.transition, vec![p(id), p(state), p(patch)])
            }
            PgWrite::Clear { id } => (&q.take, vec![p(id)]),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            PgWrite::SetState { .. } => Kind::SetState,
            PgWrite::SetData { .. } => Kind::SetData,
            PgWrite::SetRecord { .. } => Kind::SetRecord,
            PgWrite::UpdateData { .. } => Kind::UpdateData,
            PgWrite::Transition { .. } => Kind::Transition,
            PgWrite::Clear { .. } => Kind::Clear,
        }
    }

    fn state(&self) -> Option<&str> {
        match self {
            PgWrite::SetState { state, .. } => Some(state),
            PgWrite::SetRecord { state, .. } | PgWrite::Transition { state, .. } => {
                state.as_deref()
            }
            _ => None,
        }
    }

    /// The call's answer from the row its statement returned.
    fn answer(&self, row: Option<Row>) -> Result<Written> {
        self.answer_from(row, 0)
    }

    /// The call's answer from `row`, its value in column `column` (a batch's rows have
    /// the id first).
    fn answer_from(&self, row: Option<Row>, column: usize) -> Result<Written> {
        let id = self.id();
        match self {
            PgWrite::SetState { .. } | PgWrite::SetData { .. } | PgWrite::SetRecord { .. } => {
                Ok(Written::Done)
            }
            PgWrite::UpdateData { .. } => match row {
                Some(row) => data_of(id, &row, column).map(Written::Data),
                None => Err(Error::database(false, "INSERT … RETURNING returned no row")),
            },
            PgWrite::Transition { .. } => row
                .map_or_else(|| Ok(Data::new()), |row| data_of(id, &row, column))
                .map(Written::Data),
            // One row back when a row was deleted: whether it was fresh (an expired row is
            // absent, so clearing it finds nothing).
            PgWrite::Clear { .. } => match row {
                Some(row) => row.try_get(column).map(Written::Cleared).map_err(from_pg),
                None => Ok(Written::Cleared(false)),
            },
        }
    }

    /// Whether a refused data value is the data's fault (`\u0000`, which `JSONB` can not
    /// hold): the calls that merged always said so.
    fn names_corrupt_data(&self) -> bool {
        matches!(
            self,
            PgWrite::UpdateData { .. } | PgWrite::Transition { .. }
        )
    }
}

/// The data column of `row`. A value that does not decode (a number past `f64`, which
/// `JSONB` holds as `numeric`) is corrupt data, as on every backend: the connection is
/// fine.
pub(crate) fn data_of(id: &str, row: &Row, column: usize) -> Result<Data> {
    let value: Value = row.try_get(column).map_err(|err| Error::CorruptData {
        key: id.to_owned(),
        reason: err.to_string(),
    })?;
    data_from_value(id, value)
}

/// A kind of write: a batch writes each kind's rows in one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    SetState,
    SetData,
    SetRecord,
    UpdateData,
    Transition,
    Clear,
}

/// The writes of one kind in a batch, and their columns as arrays (one statement's
/// parameters).
struct Group<'w> {
    kind: Kind,
    /// Where each write stands in the batch.
    at: Vec<usize>,
    writes: Vec<&'w PgWrite<'static>>,
    ids: Vec<&'w str>,
    states: Vec<Option<&'w str>>,
    data: Vec<&'w Json<Cow<'static, Data>>>,
}

impl<'w> Group<'w> {
    /// The statement: the write's own for a group of one, else the kind's batch
    /// statement over the arrays.
    fn statement<'s>(&'s self, q: &'s PostgresQueries) -> (&'s str, Vec<Param<'s>>) {
        if let [one] = self.writes.as_slice() {
            return one.statement(q);
        }
        let b = &q.batch;
        let (ids, states, data) = (p(&self.ids), p(&self.states), p(&self.data));
        match self.kind {
            Kind::SetState => (&b.upsert_state, vec![ids, states]),
            Kind::SetData => (&b.upsert_data, vec![ids, data]),
            Kind::SetRecord => (&b.upsert_record, vec![ids, states, data]),
            Kind::UpdateData => (&b.merge_data, vec![ids, data]),
            Kind::Transition => (&b.transition, vec![ids, states, data]),
            Kind::Clear => (&b.take, vec![ids]),
        }
    }
}

/// The storage's writes: its connections and statements.
#[derive(Debug)]
pub(crate) struct PgWriter {
    pub(crate) conns: Arc<Connections>,
    pub(crate) queries: Arc<PostgresQueries>,
}

impl PgWriter {
    /// `write` alone: one statement, its own commit.
    pub(crate) async fn one(&self, write: &PgWrite<'_>) -> Result<Written> {
        let (sql, params) = write.statement(&self.queries);
        let row = self
            .conns
            .query_opt(write.operation(), Replay::Unsafe, sql, &params)
            .await
            .map_err(|err| {
                if write.names_corrupt_data() {
                    corrupt_text(write.id(), err)
                } else {
                    err
                }
            })?;
        write.answer(row)
    }
}

impl PgWriter {
    /// `writes` (each on another row) in one transaction, each kind in one statement.
    async fn batch(&self, writes: &[PgWrite<'static>]) -> Result<Vec<Result<Written>>> {
        let mut groups: Vec<Group<'_>> = Vec::new();
        for (at, write) in writes.iter().enumerate() {
            let kind = write.kind();
            let group = match groups.iter().position(|g| g.kind == kind) {
                Some(at) => &mut groups[at],
                None => {
                    groups.push(Group {
                        kind,
                        at: Vec::new(),
                        writes: Vec::new(),
                        ids: Vec::new(),
                        states: Vec::new(),
                        data: Vec::new(),
                    });
                    groups.last_mut().expect("just pushed")
                }
            };
            group.at.push(at);
            group.writes.push(write);
            group.ids.push(write.id());
            group.states.push(write.state());
            if let Some(data) = write.data() {
                group.data.push(data);
            }
        }
        let statements: Vec<_> = groups
            .iter()
            .map(|group| group.statement(&self.queries))
            .collect();
        let results = self.conns.write_batch(&statements).await?;
        let mut answers: Vec<Option<Result<Written>>> = writes.iter().map(|_| None).collect();
        for (group, rows) in groups.iter().zip(results) {
            if let ([one], [at]) = (group.writes.as_slice(), group.at.as_slice()) {
                answers[*at] = Some(one.answer(rows.into_iter().next()));
                continue;
            }
            let mut by_id = std::collections::HashMap::with_capacity(rows.len());
            for row in rows {
                let id: String = row.try_get(0).map_err(from_pg)?;
                by_id.insert(id, row);
            }
            for (write, &at) in group.writes.iter().zip(&group.at) {
                let row = by_id.remove(write.id());
                let answer = match group.kind {
                    Kind::SetState | Kind::SetData | Kind::SetRecord => Ok(Written::Done),
                    // An upsert returns every row it wrote: a row that did not come back
                    // under its own id (a table comparing ids otherwise than byte for
                    // byte) is not answered with a guess.
                    Kind::UpdateData | Kind::Transition if row.is_none() => {
                        Err(Error::outcome_unknown(
                            write.operation(),
                            format!(
                                "its batch committed but returned no row for id {:?}",
                                write.id()
                            ),
                        ))
                    }
                    _ => write.answer_from(row, 1),
                };
                answers[at] = Some(answer);
            }
        }
        Ok(answers
            .into_iter()
            .map(|answer| answer.expect("every write is in one group"))
            .collect())
    }
}

impl BatchWrite for PgWriter {
    type Write = PgWrite<'static>;

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
        self.batch(writes).boxed()
    }
}
