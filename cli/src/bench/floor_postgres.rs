//! The PostgreSQL floor: tokio-postgres on one connection, core's statements prepared once.

use anyhow::Context;
use fsmstore::core::sql::PostgresQueries;
use fsmstore::core::Dialect;
use fsmstore::postgres::tokio_postgres::types::Json;
use fsmstore::postgres::tokio_postgres::{Client, NoTls, Statement};
use fsmstore::postgres::PgConfig;
use fsmstore::{Data, TableName};

use super::floor_id;
use super::workload::{Target, STATE};

pub(crate) struct PgFloor {
    client: Client,
    upsert_state: Statement,
    get_state: Statement,
    upsert_data: Statement,
    get_data: Statement,
    merge_data: Statement,
    delete: Statement,
    table: String,
}

impl PgFloor {
    /// A bare advisory lock and unlock of key `i` (two round trips), the floor of
    /// `Isolation::lock`.
    pub(crate) async fn lock_unlock(&self, i: i64) -> anyhow::Result<()> {
        self.client
            .query_one("SELECT pg_advisory_lock($1)", &[&i])
            .await?;
        self.client
            .query_one("SELECT pg_advisory_unlock($1)", &[&i])
            .await?;
        Ok(())
    }

    pub(crate) async fn open(url: &str, table: &TableName) -> anyhow::Result<Self> {
        let config = PgConfig::from_url(url)?;
        if config.pooler == fsmstore::postgres::Pooler::Transaction {
            anyhow::bail!(
                "--floor, --prefill and --isolation measure the bare driver (prepared statements, session advisory locks), which a transaction pooler can not carry: give --url the server itself and the pooler with --beside"
            );
        }
        let mut pg = config.pg.clone();
        if let Some(schema) = &config.search_path {
            pg.options(format!("-c search_path={schema}"));
        }
        let (client, connection) = pg
            .connect(NoTls)
            .await
            .context("floor: connect to PostgreSQL (no TLS)")?;
        tokio::spawn(async move { drop(connection.await) });
        let q = PostgresQueries::new(table);
        Ok(PgFloor {
            upsert_state: client.prepare(&q.row.upsert_state).await?,
            get_state: client.prepare(&q.row.get_state).await?,
            upsert_data: client.prepare(&q.row.upsert_data).await?,
            get_data: client.prepare(&q.row.get_data).await?,
            merge_data: client.prepare(&q.merge_data).await?,
            delete: client.prepare(&q.row.delete).await?,
            table: table.quoted(Dialect::Postgres),
            client,
        })
    }

    /// Inserts `rows` rows in one statement per 100 000 (server-side `generate_series`;
    /// core has no bulk insert). Ids `fsm:{j}:{j}` interleave with the benchmark's.
    pub(crate) async fn prefill(&self, first: i64, rows: i64) -> anyhow::Result<()> {
        const BATCH: i64 = 100_000;
        let sql = format!(
            "INSERT INTO {} (id, state) SELECT 'fsm:' || g || ':' || g, 'Form:prefill' \
             FROM generate_series($1::BIGINT, $2::BIGINT) AS g",
            self.table
        );
        let mut done = 0;
        while done < rows {
            let count = BATCH.min(rows - done);
            let start = first + done;
            self.client
                .execute(&sql, &[&start, &(start + count - 1)])
                .await
                .context("prefill")?;
            done += count;
        }
        self.client
            .batch_execute(&format!("ANALYZE {}", self.table))
            .await?;
        Ok(())
    }
}

fn data_of(value: Option<fsmstore::serde_json::Value>) -> anyhow::Result<Data> {
    match value {
        Some(fsmstore::serde_json::Value::Object(map)) => Ok(map),
        None | Some(fsmstore::serde_json::Value::Null) => Ok(Data::new()),
        Some(other) => anyhow::bail!("stored data is not an object: {other}"),
    }
}

impl Target for PgFloor {
    async fn set_state(&self, i: i64) -> anyhow::Result<()> {
        let id = floor_id(i);
        self.client
            .execute(&self.upsert_state, &[&id, &STATE])
            .await?;
        Ok(())
    }

    async fn get_state(&self, i: i64) -> anyhow::Result<Option<String>> {
        let id = floor_id(i);
        let row = self.client.query_opt(&self.get_state, &[&id]).await?;
        Ok(match row {
            Some(row) => row.try_get(0)?,
            None => None,
        })
    }

    async fn set_data(&self, i: i64, data: &Data) -> anyhow::Result<()> {
        let id = floor_id(i);
        self.client
            .execute(&self.upsert_data, &[&id, &Json(data)])
            .await?;
        Ok(())
    }

    async fn get_data(&self, i: i64) -> anyhow::Result<Data> {
        let id = floor_id(i);
        let row = self.client.query_opt(&self.get_data, &[&id]).await?;
        data_of(row.map(|row| row.try_get(0)).transpose()?)
    }

    async fn update_data(&self, i: i64, patch: &Data) -> anyhow::Result<Data> {
        let id = floor_id(i);
        let row = self
            .client
            .query_one(&self.merge_data, &[&id, &Json(patch)])
            .await?;
        data_of(Some(row.try_get(0)?))
    }

    async fn clear(&self, i: i64) -> anyhow::Result<()> {
        let id = floor_id(i);
        self.client.execute(&self.delete, &[&id]).await?;
        Ok(())
    }
}
