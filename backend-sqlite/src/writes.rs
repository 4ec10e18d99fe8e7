//! The writer's calls as core's [`Coalescer`](fsmstore_core::coalesce::Coalescer) runs
//! them: alone, each in its own hop to the blocking pool and its own commit; or several
//! in one hop and one `BEGIN IMMEDIATE` … `COMMIT`, each inside a savepoint of its own, so
//! a write that fails rolls back only itself.

use std::ops::Deref;
use std::sync::Arc;

use fsmstore_core::coalesce::{BatchWrite, Written};
use fsmstore_core::sql::SqliteQueries;
use fsmstore_core::{retry, Result, RetryPolicy};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use rusqlite::{Connection, Savepoint, Transaction, TransactionBehavior};

use crate::connections::Connections;
use crate::error::from_sqlite;

/// What a write does on the writer connection, answering `T`.
pub(crate) type WorkOf<T> = dyn Fn(&mut Connection, &SqliteQueries) -> Result<T> + Send + Sync;

/// A write as a batch runs it.
pub(crate) type Work = WorkOf<Written>;

/// One write of one row.
pub(crate) struct SqliteWrite {
    pub(crate) id: String,
    pub(crate) operation: &'static str,
    pub(crate) work: Arc<Work>,
}

/// The storage's writes: the writer connection and the statements.
pub(crate) struct SqliteWriter {
    pub(crate) connections: Arc<Connections>,
    pub(crate) queries: Arc<SqliteQueries>,
    pub(crate) retry: RetryPolicy,
}

impl SqliteWriter {
    /// `work` alone on the writer, again under the retry policy when the database was busy
    /// (`SQLITE_BUSY` after the busy timeout: nothing was applied). SQLite is in-process:
    /// there is no lost reply, so no unknown outcome.
    pub(crate) async fn one<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: Arc<WorkOf<T>>,
    ) -> Result<T> {
        retry(&self.retry, operation, || {
            let (work, queries) = (Arc::clone(&work), Arc::clone(&self.queries));
            self.connections.write(move |conn| work(conn, &queries))
        })
        .await
    }
}

const SAVEPOINT: &str = "fsmstore_write";

impl BatchWrite for SqliteWriter {
    type Write = SqliteWrite;

    fn row_id(write: &SqliteWrite) -> &str {
        &write.id
    }

    fn operation(write: &SqliteWrite) -> &'static str {
        write.operation
    }

    fn write_one<'a>(&'a self, write: &'a SqliteWrite) -> BoxFuture<'a, Result<Written>> {
        self.one(write.operation, Arc::clone(&write.work)).boxed()
    }

    fn write_batch<'a>(
        &'a self,
        writes: &'a [SqliteWrite],
    ) -> BoxFuture<'a, Result<Vec<Result<Written>>>> {
        let works: Vec<Arc<Work>> = writes.iter().map(|w| Arc::clone(&w.work)).collect();
        let queries = Arc::clone(&self.queries);
        self.connections
            .write(move |conn| {
                conn.execute_batch("BEGIN IMMEDIATE").map_err(from_sqlite)?;
                let answers: rusqlite::Result<Vec<_>> = works
                    .iter()
                    .map(|work| {
                        conn.execute_batch(&format!("SAVEPOINT {SAVEPOINT}"))?;
                        let answer = work(conn, &queries);
                        let end = if answer.is_ok() {
                            format!("RELEASE {SAVEPOINT}")
                        } else {
                            format!("ROLLBACK TO {SAVEPOINT}; RELEASE {SAVEPOINT}")
                        };
                        conn.execute_batch(&end)?;
                        Ok(answer)
                    })
                    .collect();
                // On an error (or a panic) the connection's slot rolls back what is open
                // (`connections::with_slot`): nothing of the batch stays, and each write
                // runs again on its own.
                answers
                    .and_then(|answers| conn.execute_batch("COMMIT").map(|()| answers))
                    .map_err(from_sqlite)
            })
            .boxed()
    }
}

/// The transaction of one write: its own `BEGIN IMMEDIATE` when it runs alone, or a
/// savepoint inside a batch's transaction (which already holds the write lock).
pub(crate) enum WriteTx<'c> {
    Own(Transaction<'c>),
    InBatch(Savepoint<'c>),
}

impl WriteTx<'_> {
    pub(crate) fn begin(conn: &mut Connection) -> Result<WriteTx<'_>> {
        if conn.is_autocommit() {
            conn.transaction_with_behavior(TransactionBehavior::Immediate)
                .map(WriteTx::Own)
        } else {
            conn.savepoint().map(WriteTx::InBatch)
        }
        .map_err(from_sqlite)
    }

    pub(crate) fn commit(self) -> Result<()> {
        match self {
            WriteTx::Own(tx) => tx.commit(),
            WriteTx::InBatch(savepoint) => savepoint.commit(),
        }
        .map_err(from_sqlite)
    }
}

impl Deref for WriteTx<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        match self {
            WriteTx::Own(tx) => tx,
            WriteTx::InBatch(savepoint) => savepoint,
        }
    }
}
