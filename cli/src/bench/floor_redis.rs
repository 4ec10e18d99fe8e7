//! The Redis floor: the `redis` crate's bare commands on one multiplexed connection, the
//! least a driver does for each call of fsmstore's layout (one hash per dialogue): `HSET`,
//! `HGET`, `HGETALL`, an atomic `HSET` + `HGETALL` pipeline for a merge, `DEL`. No script,
//! no TTL, no validation: what fsmstore adds on top is what the ratio shows.

use anyhow::Context;
use fsmstore::redis::redis::aio::MultiplexedConnection;
use fsmstore::redis::redis::{self, AsyncCommands};
use fsmstore::{Data, TableName};

use super::floor_id;
use super::workload::{Target, STATE};

pub(crate) struct RedisFloor {
    conn: MultiplexedConnection,
    prefix: String,
}

/// The driver's URL of `url`: fsmstore's parameters removed.
fn driver_url(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_owned()
}

impl RedisFloor {
    pub(crate) async fn open(url: &str, table: &TableName) -> anyhow::Result<Self> {
        let client = redis::Client::open(driver_url(url).as_str()).context("floor: Redis URL")?;
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .context("floor: connect to Redis")?;
        Ok(RedisFloor {
            conn,
            prefix: format!("{table}:"),
        })
    }

    fn key(&self, i: i64) -> String {
        format!("{}{}", self.prefix, floor_id(i))
    }

    /// A bare lock and unlock of key `i` (`SET NX PX`, then `DEL`), the floor of
    /// `Isolation::lock`.
    pub(crate) async fn lock_unlock(&self, i: i64) -> anyhow::Result<()> {
        let key = format!("{}:lock", self.key(i));
        let mut conn = self.conn.clone();
        let _: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg("token")
            .arg("NX")
            .arg("PX")
            .arg(60_000)
            .query_async(&mut conn)
            .await?;
        let _: i64 = conn.del(&key).await?;
        Ok(())
    }

    /// Writes `rows` dialogues `fsm:{j}:{j}` from `first` on, 1000 per pipeline.
    pub(crate) async fn prefill(&self, first: i64, rows: i64) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let mut done = 0;
        while done < rows {
            let mut pipe = redis::pipe();
            for j in first + done..first + (done + 1000).min(rows) {
                pipe.hset(format!("{}fsm:{j}:{j}", self.prefix), "s", "Form:prefill")
                    .ignore();
            }
            pipe.query_async::<()>(&mut conn).await.context("prefill")?;
            done += 1000;
        }
        Ok(())
    }
}

/// A dialogue's hash fields as data.
fn data_of(hash: Vec<(String, String)>) -> anyhow::Result<Data> {
    let mut data = Data::new();
    for (name, text) in hash {
        if let Some(field) = name.strip_prefix('.') {
            data.insert(field.to_owned(), fsmstore::serde_json::from_str(&text)?);
        }
    }
    Ok(data)
}

/// `data` as hash field, JSON text pairs.
fn pairs(data: &Data) -> anyhow::Result<Vec<(String, String)>> {
    data.iter()
        .map(|(name, value)| Ok((format!(".{name}"), fsmstore::serde_json::to_string(value)?)))
        .collect()
}

impl Target for RedisFloor {
    async fn set_state(&self, i: i64) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let _: i64 = conn.hset(self.key(i), "s", STATE).await?;
        Ok(())
    }

    async fn get_state(&self, i: i64) -> anyhow::Result<Option<String>> {
        let mut conn = self.conn.clone();
        Ok(conn.hget(self.key(i), "s").await?)
    }

    async fn set_data(&self, i: i64, data: &Data) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let _: () = conn.hset_multiple(self.key(i), &pairs(data)?).await?;
        Ok(())
    }

    async fn get_data(&self, i: i64) -> anyhow::Result<Data> {
        let mut conn = self.conn.clone();
        data_of(conn.hgetall(self.key(i)).await?)
    }

    async fn update_data(&self, i: i64, patch: &Data) -> anyhow::Result<Data> {
        let mut conn = self.conn.clone();
        let key = self.key(i);
        let (hash,): (Vec<(String, String)>,) = redis::pipe()
            .atomic()
            .hset_multiple(&key, &pairs(patch)?)
            .ignore()
            .hgetall(&key)
            .query_async(&mut conn)
            .await?;
        data_of(hash)
    }

    async fn clear(&self, i: i64) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let _: i64 = conn.del(self.key(i)).await?;
        Ok(())
    }
}

/// Deletes every key of the scratch table (its key prefix).
pub(crate) async fn delete_scratch(url: &str, table: &TableName) -> anyhow::Result<()> {
    let options = fsmstore::StorageOptions::default().table(table.as_str())?;
    let config = fsmstore::redis::RedisConfig::from_url(url)?.options(options)?;
    fsmstore::redis::RedisStorage::open(config)
        .await?
        .drop_table()
        .await?;
    Ok(())
}
