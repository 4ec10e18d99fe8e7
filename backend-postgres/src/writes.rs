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

    /// The call's answer from the row its statement returned.
    fn answer(&self, row: Option<Row>) -> Result<Written> {
        let id = self.id();
        match self {
            PgWrite::SetState { .. } | PgWrite::SetData { .. } | PgWrite::SetRecord { .. } => {
                Ok(Written::Done)
            }
            PgWrite::UpdateData { .. } => match row {
                Some(row) => data_of(id, &row, 0).map(Written::Data),
                None => Err(Error::database(false, "INSERT … RETURNING returned no row")),
            },
            PgWrite::Transition { .. } => row
                .map_or_else(|| Ok(Data::new()), |row| data_of(id, &row, 0))
                .map(Written::Data),
            // One row back when a row was deleted: whether it was fresh (an expired row is
            // absent, so clearing it finds nothing).
            PgWrite::Clear { .. } => match row {
                Some(row) => row.try_get(0).map(Written::Cleared).map_err(from_pg),
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

/// The storage's writes: its connections and statements.
#[derive(Debug)]
pub(crate) struct PgWriter {
    pub(crate) conns: Arc<Connections>,
    pub(crate) queries: PostgresQueries,
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
        async move {
            let statements: Vec<_> = writes
                .iter()
                .map(|write| write.statement(&self.queries))
                .collect();
            let rows = self.conns.write_batch(&statements).await?;
            Ok(writes
                .iter()
                .zip(rows)
                .map(|(write, row)| write.answer(row))
                .collect())
        }
        .boxed()
    }
}
