//! The whole conformance suite on a temporary file and on an in-memory database.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use fsmstore_conformance::{Backend, Capabilities};
use fsmstore_core::{Database, Dialect, Error, Result, SchemaPolicy, Storage, StorageOptions};
use fsmstore_sqlite::{rusqlite, SqliteConfig, SqliteStorage};

/// Each case gets its own database file in a temporary folder.
struct FileBackend {
    dir: PathBuf,
}

impl FileBackend {
    fn config(&self, options: StorageOptions) -> Result<SqliteConfig> {
        SqliteConfig::file(self.path(&options)).options(options)
    }

    fn path(&self, options: &StorageOptions) -> PathBuf {
        self.dir.join(format!("{}.db", options.table))
    }

    /// A connection of the test's own to the case's file, outside fsmstore.
    fn raw(&self, options: &StorageOptions) -> Result<rusqlite::Connection> {
        let conn = rusqlite::Connection::open(self.path(options))
            .map_err(|err| Error::database(false, err))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|err| Error::database(false, err))?;
        Ok(conn)
    }
}

#[async_trait]
impl Backend for FileBackend {
    fn name(&self) -> String {
        "sqlite-file".into()
    }

    async fn open_database(&self, options: StorageOptions) -> Result<Database> {
        SqliteStorage::open(self.config(options)?).await?.database()
    }

    fn dialect(&self) -> Option<Dialect> {
        Some(Dialect::Sqlite)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::sql()
    }

    async fn execute_raw(&self, options: &StorageOptions, sql: &str) -> Result<()> {
        self.raw(options)?
            .execute_batch(sql)
            .map_err(|err| Error::database(false, err))
    }

    async fn query_raw(&self, options: &StorageOptions, sql: &str) -> Result<Vec<Option<String>>> {
        let conn = self.raw(options)?;
        let mut statement = conn
            .prepare(sql)
            .map_err(|err| Error::database(false, err))?;
        let rows = statement
            .query_map([], |row| row.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|err| Error::database(false, err));
        rows
    }

    async fn cleanup(&self, options: &StorageOptions) -> Result<()> {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = options;
        Ok(())
    }
}

async fn file() -> Option<Arc<dyn Backend>> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("fsmstore-sqlite-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary folder");
    Some(Arc::new(FileBackend { dir }))
}

/// Each case gets a named in-memory database; a keeper connection holds it open between
/// a close and a reopen, as a file would.
#[derive(Default)]
struct MemoryBackend {
    keepers: Mutex<HashMap<String, SqliteStorage>>,
}

impl MemoryBackend {
    async fn config(&self, options: StorageOptions) -> Result<SqliteConfig> {
        let name = format!("fsmstore-test-{}-{}", std::process::id(), options.table);
        let keeper_needed = !self.keepers.lock().unwrap().contains_key(&name);
        if keeper_needed {
            let keeper = SqliteStorage::open(
                SqliteConfig::shared_memory(&name)
                    .options(options.clone().schema(SchemaPolicy::Trust))?,
            )
            .await?;
            self.keepers.lock().unwrap().insert(name.clone(), keeper);
        }
        SqliteConfig::shared_memory(name).options(options)
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> String {
        "sqlite-memory".into()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            migrations: true,
            updated_at: true,
            expiry: true,
            ..Capabilities::default()
        }
    }

    async fn open_database(&self, options: StorageOptions) -> Result<Database> {
        let config = self.config(options).await?;
        SqliteStorage::open(config).await?.database()
    }

    async fn cleanup(&self, _options: &StorageOptions) -> Result<()> {
        let keepers: Vec<_> = self
            .keepers
            .lock()
            .unwrap()
            .drain()
            .map(|(_, k)| k)
            .collect();
        for keeper in keepers {
            keeper.close().await?;
        }
        Ok(())
    }
}

async fn memory() -> Option<Arc<dyn Backend>> {
    Some(Arc::new(MemoryBackend::default()))
}

mod file {
    use super::file as backend;
    fsmstore_conformance::conformance_suite!(all: backend);
    fsmstore_conformance::conformance_suite!(stored_rows: backend);

    /// The storage group again, in the layout of Python's aiogram-sqlalchemy-storage.
    mod aiogram_layout {
        use super::backend;
        fsmstore_conformance::conformance_suite!(aiogram_layout: backend);
    }
}

mod memory {
    use super::memory as backend;
    fsmstore_conformance::conformance_suite!(all: backend);
}
