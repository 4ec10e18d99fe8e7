//! [`RedisStorage`]: the [`Storage`] of a Redis server, in fsmstore's layout or aiogram's.

use std::sync::Arc;

use async_trait::async_trait;
use fsmstore_core::{
    Data, Database, Layout, Record, Result, SchemaPolicy, Storage, StorageKey, StorageOptions,
};
use serde_json::Value;

use crate::aiogram::AiogramLayout;
use crate::config::RedisConfig;
use crate::connections::Connections;
use crate::isolation::RedisIsolation;
use crate::migrate::LayoutMigrator;
use crate::own::OwnLayout;
use crate::rows::Rows;

/// FSM storage in Redis.
///
/// Cheap to clone: clones share one multiplexed connection, which reconnects by itself.
/// Every call is one round trip and atomic (one command or one Lua script); numbers
/// round-trip by value. See the crate docs for the two layouts.
#[derive(Clone)]
pub struct RedisStorage {
    layout: Arc<dyn Rows>,
    conns: Arc<Connections>,
}

impl std::fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStorage")
            .field("connections", &self.conns)
            .finish()
    }
}

impl RedisStorage {
    /// Connects (within `connect_timeout`).
    ///
    /// # Errors
    /// [`fsmstore_core::Error::Connection`] when the server can not be reached;
    /// [`fsmstore_core::Error::Config`] for a refused login or a setting Redis has no use for.
    pub async fn open(config: RedisConfig) -> Result<Self> {
        config.check()?;
        let prefix = config.prefix();
        let conns = Arc::new(Connections::open(config).await?);
        let layout: Arc<dyn Rows> = match conns.config().options.layout {
            Layout::AiogramSqlalchemy => Arc::new(AiogramLayout::new(Arc::clone(&conns), prefix)),
            _ => Arc::new(OwnLayout::new(Arc::clone(&conns), prefix)),
        };
        let storage = RedisStorage { layout, conns };
        // Fail now, not at the first call, if the server does not answer.
        storage.ping().await?;
        if storage.conns.config().options.schema == SchemaPolicy::Verify
            && storage.conns.config().options.given("schema")?
        {
            LayoutMigrator::new(Arc::clone(&storage.conns))?
                .verify(storage.conns.config().options.layout)
                .await?;
        }
        Ok(storage)
    }

    /// Opens `url` (see [`RedisConfig::from_url`]).
    ///
    /// # Errors
    /// As [`RedisConfig::from_url`] and [`RedisStorage::open`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::open(RedisConfig::from_url(url)?).await
    }

    /// One [`Database`] handle: the storage, its whole-keyspace operations and its
    /// per-key locks (aiogram's `RedisEventIsolation` protocol). No migrator: Redis has no
    /// schema.
    pub fn database(&self) -> Result<Database> {
        let isolation =
            RedisIsolation::new(Arc::clone(&self.conns), self.layout.prefix().to_owned());
        let migrator = LayoutMigrator::new(Arc::clone(&self.conns))?;
        Ok(
            Database::new("redis", Arc::new(self.clone()), Some(Arc::new(migrator)))
                .with_isolation(Arc::new(isolation)),
        )
    }

    /// Deletes every key of this storage's table (its key prefix, `<table>:`), of both
    /// layouts and the locks, and the records of its layout and dialogue migrations: what
    /// dropping the table and its version table is on an SQL database. Returns how many
    /// dialogue and lock keys it deleted.
    ///
    /// # Errors
    /// [`fsmstore_core::Error::Config`] when the URL or the options gave no `table` (the
    /// prefix would then be every key of aiogram's layout, or fsmstore's shared default);
    /// connection errors.
    pub async fn drop_table(&self) -> Result<u64> {
        if !self.conns.config().options.given("table")? {
            return Err(fsmstore_core::Error::Config(
                "drop_table deletes the keys of a table given with table=: without one it would delete keys other dialogues share".to_owned(),
            ));
        }
        let deleted = crate::keyspace::delete_all(&self.conns, self.layout.prefix()).await?;
        let records = LayoutMigrator::new(Arc::clone(&self.conns))?;
        fsmstore_core::Migrator::drop_tables(&records).await?;
        Ok(deleted)
    }

    /// Calls `each` with the dialogues teloxide's own `RedisStorage` keeps in this
    /// storage's database, a `SCAN` page at a time: each chat id with the bytes teloxide's
    /// serializer wrote (teloxide keys a dialogue by its chat id alone, `SET <chat_id>
    /// <bytes>`). Only string keys that are exactly a chat id in decimal are read; nothing
    /// is changed. What `fsmstore teloxide-import` reads from a Redis URL.
    ///
    /// # Errors
    /// Connection errors, and what `each` returns.
    pub async fn teloxide_dialogues(
        &self,
        each: impl FnMut(Vec<(i64, Vec<u8>)>) -> Result<()>,
    ) -> Result<()> {
        crate::teloxide_keys::dialogues(&self.conns, each).await
    }

    /// The settings this storage was opened with.
    pub fn config(&self) -> &RedisConfig {
        self.conns.config()
    }

    pub(crate) fn rows(&self) -> &dyn Rows {
        &*self.layout
    }

    pub(crate) fn connections(&self) -> &Connections {
        &self.conns
    }

    /// One `PING`: the server answers.
    async fn ping(&self) -> Result<()> {
        self.conns
            .call("open", fsmstore_core::Replay::Safe, |mut conn| async move {
                redis::cmd("PING").query_async::<String>(&mut conn).await
            })
            .await
            .map(drop)
    }
}

#[async_trait]
impl Storage for RedisStorage {
    async fn get_state(&self, key: &StorageKey) -> Result<Option<String>> {
        self.layout.get_state(key).await
    }

    async fn set_state(&self, key: &StorageKey, state: Option<&str>) -> Result<()> {
        self.layout.set_state(key, state).await
    }

    async fn get_data(&self, key: &StorageKey) -> Result<Data> {
        self.layout.get_data(key).await
    }

    async fn set_data(&self, key: &StorageKey, data: &Data) -> Result<()> {
        self.layout.set_data(key, data).await
    }

    async fn update_data(&self, key: &StorageKey, patch: &Data) -> Result<Data> {
        self.layout.update_data(key, patch).await
    }

    async fn transition(
        &self,
        key: &StorageKey,
        state: Option<&str>,
        patch: &Data,
    ) -> Result<Data> {
        self.layout.transition(key, state, patch).await
    }

    async fn set_record(&self, key: &StorageKey, state: Option<&str>, data: &Data) -> Result<()> {
        self.layout.set_record(key, state, data).await
    }

    async fn get_value(&self, key: &StorageKey, field: &str) -> Result<Option<Value>> {
        self.layout.get_value(key, field).await
    }

    async fn get_record(&self, key: &StorageKey) -> Result<Record> {
        self.layout.get_record(key).await
    }

    async fn clear(&self, key: &StorageKey) -> Result<bool> {
        self.layout.clear(key).await
    }

    async fn key_count(&self) -> Result<u64> {
        self.layout.key_count().await
    }

    fn options(&self) -> &StorageOptions {
        &self.conns.config().options
    }

    async fn close(&self) -> Result<()> {
        self.conns.close();
        Ok(())
    }
}
