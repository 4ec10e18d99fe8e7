//! The MySQL floor: sqlx on one connection (no pool), core's statements through sqlx's
//! per-connection statement cache, `update_data` as fsmstore does it: `lock_row`, read,
//! merge, write in one transaction.

use std::sync::Arc;

use anyhow::Context;
use fsmstore::core::sql::MysqlQueries;
use fsmstore::core::Dialect;
use fsmstore::mysql::sqlx::mysql::{MySqlConnection, MySqlRow};
use fsmstore::mysql::sqlx::{self, AssertSqlSafe, Connection, Row, SqlSafeStr, SqlStr};
use fsmstore::mysql::MysqlConfig;
use fsmstore::{Data, TableName};
use tokio::sync::Mutex;

use super::floor_id;
use super::workload::{Target, STATE};

pub(crate) struct MysqlFloor {
    conn: Mutex<MySqlConnection>,
    upsert_state: SqlStr,
    get_state: SqlStr,
    upsert_data: SqlStr,
    get_data: SqlStr,
    lock_row: SqlStr,
    delete: SqlStr,
    table: String,
}

fn sql(text: &str) -> SqlStr {
    AssertSqlSafe(Arc::<str>::from(text)).into_sql_str()
}

impl MysqlFloor {
    /// A bare `GET_LOCK` and `RELEASE_LOCK` of key `i` (two round trips), the floor of
    /// `Isolation::lock`.
    pub(crate) async fn lock_unlock(&self, i: i64) -> anyhow::Result<()> {
        let mut conn = self.conn.lock().await;
        let name = format!("fsm-floor:{i}");
        let taken: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 10)")
            .bind(&name)
            .fetch_one(&mut *conn)
            .await?;
        anyhow::ensure!(taken == Some(1), "GET_LOCK({name}) = {taken:?}");
        sqlx::query("SELECT RELEASE_LOCK(?)")
            .bind(&name)
            .fetch_one(&mut *conn)
            .await?;
        Ok(())
    }

    pub(crate) async fn open(url: &str, table: &TableName) -> anyhow::Result<Self> {
        let config = MysqlConfig::from_url(url)?;
        let conn = MySqlConnection::connect_with(&config.connect)
            .await
            .context("floor: connect to MySQL")?;
        let q = MysqlQueries::new(table);
        Ok(MysqlFloor {
            conn: Mutex::new(conn),
            upsert_state: sql(&q.row.upsert_state),
            get_state: sql(&q.row.get_state),
            upsert_data: sql(&q.row.upsert_data),
            get_data: sql(&q.row.get_data),
            lock_row: sql(&q.lock_row),
            delete: sql(&q.row.delete),
            table: table.quoted(Dialect::Mysql),
        })
    }

    /// Inserts `rows` rows with multi-row `INSERT`s of 1 000 rows, 50 per transaction (core
    /// has no bulk insert). Ids `fsm:{j}:{j}` interleave with the benchmark's.
    pub(crate) async fn prefill(&self, first: i64, rows: i64) -> anyhow::Result<()> {
        const ROWS: i64 = 1_000;
        const PER_TX: i64 = 50;
        let mut conn = self.conn.lock().await;
        let mut done = 0;
        while done < rows {
            let mut tx = conn.begin().await?;
            for _ in 0..PER_TX {
                let count = ROWS.min(rows - done);
                if count == 0 {
                    break;
                }
                let values = vec!["(?, 'Form:prefill', '{}')"; count as usize].join(", ");
                let text = format!(
                    "INSERT INTO {} (id, state, data) VALUES {values}",
                    self.table
                );
                let mut query = sqlx::query(AssertSqlSafe(text));
                for j in first + done..first + done + count {
                    query = query.bind(format!("fsm:{j}:{j}"));
                }
                query.execute(&mut *tx).await.context("prefill")?;
                done += count;
            }
            tx.commit().await?;
        }
        sqlx::query(AssertSqlSafe(format!("ANALYZE TABLE {}", self.table)))
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

fn data_of(row: Option<MySqlRow>) -> anyhow::Result<Data> {
    let text: Option<String> = match row {
        Some(row) => row.try_get_unchecked(0)?,
        None => None,
    };
    Ok(match text {
        Some(text) => fsmstore::serde_json::from_str(&text)?,
        None => Data::new(),
    })
}

async fn execute(
    conn: &mut MySqlConnection,
    statement: &SqlStr,
    id: &str,
    value: Option<&str>,
) -> sqlx::Result<()> {
    let mut query = sqlx::query(statement.clone()).bind(id);
    if let Some(value) = value {
        query = query.bind(value);
    }
    query.execute(&mut *conn).await.map(drop)
}

async fn select(
    conn: &mut MySqlConnection,
    statement: &SqlStr,
    id: &str,
) -> sqlx::Result<Option<MySqlRow>> {
    sqlx::query(statement.clone())
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
}

impl Target for MysqlFloor {
    async fn set_state(&self, i: i64) -> anyhow::Result<()> {
        let id = floor_id(i);
        let mut conn = self.conn.lock().await;
        Ok(execute(&mut conn, &self.upsert_state, &id, Some(STATE)).await?)
    }

    async fn get_state(&self, i: i64) -> anyhow::Result<Option<String>> {
        let id = floor_id(i);
        let mut conn = self.conn.lock().await;
        let row = select(&mut conn, &self.get_state, &id).await?;
        Ok(match row {
            Some(row) => row.try_get(0)?,
            None => None,
        })
    }

    async fn set_data(&self, i: i64, data: &Data) -> anyhow::Result<()> {
        let id = floor_id(i);
        let text = fsmstore::serde_json::to_string(data)?;
        let mut conn = self.conn.lock().await;
        Ok(execute(&mut conn, &self.upsert_data, &id, Some(&text)).await?)
    }

    async fn get_data(&self, i: i64) -> anyhow::Result<Data> {
        let id = floor_id(i);
        let mut conn = self.conn.lock().await;
        data_of(select(&mut conn, &self.get_data, &id).await?)
    }

    async fn update_data(&self, i: i64, patch: &Data) -> anyhow::Result<Data> {
        let id = floor_id(i);
        let mut conn = self.conn.lock().await;
        let mut tx = conn.begin().await?;
        execute(&mut tx, &self.lock_row, &id, None).await?;
        let mut data = data_of(select(&mut tx, &self.get_data, &id).await?)?;
        for (field, value) in patch {
            data.insert(field.clone(), value.clone());
        }
        let text = fsmstore::serde_json::to_string(&data)?;
        execute(&mut tx, &self.upsert_data, &id, Some(&text)).await?;
        tx.commit().await?;
        Ok(data)
    }

    async fn clear(&self, i: i64) -> anyhow::Result<()> {
        let id = floor_id(i);
        let mut conn = self.conn.lock().await;
        Ok(execute(&mut conn, &self.delete, &id, None).await?)
    }
}
