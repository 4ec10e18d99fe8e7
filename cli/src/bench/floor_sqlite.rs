//! The SQLite floor: rusqlite on one connection with fsmstore's PRAGMAs and core's
//! statements, and nothing else. Writes go through `spawn_blocking`; point reads
//! (`get_state`, `get_data`) run on the calling thread, the fastest a read can be (the
//! in-thread floor): fsmstore's reads are measured against that, not against the hop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context};
use fsmstore::core::sql::SqliteQueries;
use fsmstore::sqlite::rusqlite::{self, Connection, OptionalExtension, TransactionBehavior};
use fsmstore::sqlite::{SqliteConfig, SqliteLocation};
use fsmstore::{Data, TableName};

use super::floor_id;
use super::workload::Target;

pub(crate) struct SqliteFloor {
    conn: Arc<Mutex<Connection>>,
    queries: Arc<SqliteQueries>,
}

impl SqliteFloor {
    pub(crate) async fn open(url: &str, table: &TableName) -> anyhow::Result<Self> {
        let config = SqliteConfig::from_url(url)?;
        let SqliteLocation::File(path) = config.location.clone() else {
            anyhow::bail!("--floor and --prefill need a SQLite file, not an in-memory database");
        };
        let busy = config.busy_timeout;
        let conn = tokio::task::spawn_blocking(move || open_blocking(&path, busy)).await??;
        Ok(SqliteFloor {
            conn: Arc::new(Mutex::new(conn)),
            queries: Arc::new(SqliteQueries::new(table)),
        })
    }

    /// Runs `work` on the connection on tokio's blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection, &SqliteQueries) -> rusqlite::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let (conn, queries) = (Arc::clone(&self.conn), Arc::clone(&self.queries));
        let result = tokio::task::spawn_blocking(move || {
            let mut conn = conn
                .lock()
                .map_err(|_| anyhow!("connection lock poisoned"))?;
            Ok::<_, anyhow::Error>(work(&mut conn, &queries)?)
        })
        .await??;
        Ok(result)
    }

    /// Runs `work` on the connection on this thread (a point read: the in-thread floor).
    fn here<T>(
        &self,
        work: impl FnOnce(&mut Connection, &SqliteQueries) -> rusqlite::Result<T>,
    ) -> anyhow::Result<T> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| anyhow!("connection lock poisoned"))?;
        Ok(work(&mut conn, &self.queries)?)
    }

    /// Inserts `rows` rows with core's `upsert_state` (prepared once), 50 000 per
    /// transaction. Ids `fsm:{first + n}:{first + n}` interleave with the benchmark's.
    pub(crate) async fn prefill(&self, first: i64, rows: i64) -> anyhow::Result<()> {
        const BATCH: i64 = 50_000;
        let mut done = 0;
        while done < rows {
            let count = BATCH.min(rows - done);
            let start = first + done;
            self.run(move |conn, q| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    let mut insert = tx.prepare_cached(&q.row.upsert_state)?;
                    for j in start..start + count {
                        insert.execute((format!("fsm:{j}:{j}"), "Form:prefill"))?;
                    }
                }
                tx.commit()
            })
            .await
            .context("prefill")?;
            done += count;
        }
        Ok(())
    }
}

fn open_blocking(path: &std::path::Path, busy: Duration) -> anyhow::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

fn select_data(conn: &Connection, q: &SqliteQueries, id: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(&q.row.get_data)?
        .query_row([id], |row| row.get(0))
        .optional()
}

fn parse(text: Option<String>) -> anyhow::Result<Data> {
    Ok(match text {
        Some(text) => fsmstore::serde_json::from_str(&text)?,
        None => Data::new(),
    })
}

impl Target for SqliteFloor {
    async fn set_state(&self, i: i64) -> anyhow::Result<()> {
        let id = floor_id(i);
        self.run(move |conn, q| {
            conn.prepare_cached(&q.row.upsert_state)?
                .execute([&id, super::workload::STATE])
                .map(drop)
        })
        .await
    }

    async fn get_state(&self, i: i64) -> anyhow::Result<Option<String>> {
        let id = floor_id(i);
        let state: Option<Option<String>> = self.here(move |conn, q| {
            conn.prepare_cached(&q.row.get_state)?
                .query_row([&id], |row| row.get(0))
                .optional()
        })?;
        Ok(state.flatten())
    }

    async fn set_data(&self, i: i64, data: &Data) -> anyhow::Result<()> {
        let id = floor_id(i);
        let text = fsmstore::serde_json::to_string(data)?;
        self.run(move |conn, q| {
            conn.prepare_cached(&q.row.upsert_data)?
                .execute([&id, &text])
                .map(drop)
        })
        .await
    }

    async fn get_data(&self, i: i64) -> anyhow::Result<Data> {
        let id = floor_id(i);
        let text = self.here(move |conn, q| select_data(conn, q, &id))?;
        parse(text)
    }

    async fn update_data(&self, i: i64, patch: &Data) -> anyhow::Result<Data> {
        let id = floor_id(i);
        let patch = patch.clone();
        // As fsmstore: BEGIN IMMEDIATE, read, merge, write, commit.
        let (conn, queries) = (Arc::clone(&self.conn), Arc::clone(&self.queries));
        tokio::task::spawn_blocking(move || {
            let mut conn = conn
                .lock()
                .map_err(|_| anyhow!("connection lock poisoned"))?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut data = parse(select_data(&tx, &queries, &id)?)?;
            for (field, value) in &patch {
                data.insert(field.clone(), value.clone());
            }
            let text = fsmstore::serde_json::to_string(&data)?;
            tx.prepare_cached(&queries.row.upsert_data)?
                .execute([&id, &text])?;
            tx.commit()?;
            Ok(data)
        })
        .await?
    }

    async fn clear(&self, i: i64) -> anyhow::Result<()> {
        let id = floor_id(i);
        self.run(move |conn, q| conn.prepare_cached(&q.row.delete)?.execute([&id]).map(drop))
            .await
    }
}
