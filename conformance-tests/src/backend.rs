//! What the suite needs from a backend, and the in-memory reference backend.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use fsmstore_core::{Error, Inspect, MemoryStorage, Migrator, Result, Storage, StorageOptions};

/// A backend under test.
///
/// The suite passes [`StorageOptions`] naming the case's own FSM and version tables;
/// opening them twice must reach the same data (that is how persistence is tested).
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A short name for reports (`sqlite`, `postgres`, …).
    fn name(&self) -> String;

    /// Opens a storage with `options`, applying `options.schema`, with the whole-table
    /// operations of [`Inspect`] (every fsmstore backend has them; the `inspect` cases use
    /// them).
    ///
    /// # Errors
    /// Whatever opening fails with; the schema cases check these errors.
    async fn open_inspect(&self, options: StorageOptions) -> Result<Arc<dyn Inspect>>;

    /// [`Backend::open_inspect`], seen as a plain [`Storage`].
    ///
    /// # Errors
    /// As [`Backend::open_inspect`].
    async fn open(&self, options: StorageOptions) -> Result<Arc<dyn Storage>> {
        Ok(self.open_inspect(options).await?)
    }

    /// Opens a migrator for `options.table` (no schema check).
    ///
    /// # Errors
    /// Backends without a schema return [`Error::Config`]; the schema group is not run on
    /// them.
    async fn migrator(&self, options: StorageOptions) -> Result<Box<dyn Migrator>>;

    /// Drops what a case created: its FSM table and its version table.
    ///
    /// # Errors
    /// Database errors (reported, never fatal to the case).
    async fn cleanup(&self, options: &StorageOptions) -> Result<()>;
}

/// [`MemoryStorage`] as a backend: the reference every SQL backend is compared with.
/// Reopening a table returns a new handle on the same rows.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    tables: Mutex<HashMap<String, MemoryStorage>>,
}

impl MemoryBackend {
    /// A backend with no tables.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> String {
        "memory".to_owned()
    }

    async fn open_inspect(&self, options: StorageOptions) -> Result<Arc<dyn Inspect>> {
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        let storage = match tables.get(options.table.as_str()) {
            // Same rows, options of this open (key builder, limits).
            Some(existing) => existing.reopen_with(options),
            None => {
                let storage = MemoryStorage::with_options(options.clone());
                tables.insert(options.table.to_string(), storage.reopen());
                storage
            }
        };
        Ok(Arc::new(storage))
    }

    async fn migrator(&self, _options: StorageOptions) -> Result<Box<dyn Migrator>> {
        Err(Error::Config(
            "MemoryStorage has no schema to migrate".to_owned(),
        ))
    }

    async fn cleanup(&self, options: &StorageOptions) -> Result<()> {
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        tables.remove(options.table.as_str());
        Ok(())
    }
}
