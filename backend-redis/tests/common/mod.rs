//! The conformance backend of a Redis URL (one server, a cluster, or through sentinel):
//! each case opens the URL with the case's options, and cleans up the keys of its table
//! (its key prefix) only.

use async_trait::async_trait;
use fsmstore_conformance::{Backend, Capabilities};
use fsmstore_core::{Database, Result, StorageOptions};
use fsmstore_redis::{RedisConfig, RedisStorage};

/// The storages of `url`.
pub struct UrlBackend {
    /// The backend's name in the summary.
    pub name: &'static str,
    pub url: String,
    /// Whether aiogram's layout runs too (not on a cluster: two keys, two slots).
    pub aiogram_layout: bool,
}

#[async_trait]
impl Backend for UrlBackend {
    fn name(&self) -> String {
        self.name.into()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            expiry: true,
            dialogue_migrations: true,
            aiogram_layout: self.aiogram_layout,
            ..Capabilities::default()
        }
    }

    async fn open_database(&self, options: StorageOptions) -> Result<Database> {
        let config = RedisConfig::from_url(&self.url)?.options(options)?;
        RedisStorage::open(config).await?.database()
    }

    async fn cleanup(&self, options: &StorageOptions) -> Result<()> {
        // Every key of the case is under its table's prefix.
        let config = RedisConfig::from_url(&self.url)?.options(options.clone())?;
        RedisStorage::open(config)
            .await?
            .drop_table()
            .await
            .map(drop)
    }
}
