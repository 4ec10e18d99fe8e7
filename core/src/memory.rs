//! [`MemoryStorage`]: the in-memory reference implementation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde_json::Value;

use crate::data::{merge_shallow, validate_data, validate_state, Data, Record};
use crate::error::{Error, Result};
use crate::key::StorageKey;
use crate::options::StorageOptions;
use crate::storage::Storage;

type Rows = HashMap<String, Record>;

/// Keeps everything in a `HashMap` behind a mutex. Nothing survives the process.
///
/// It is the reference the SQL backends are compared against: it passes the conformance
/// suite and shares the merge, validation and key code with them. [`MemoryStorage::reopen`]
/// gives a new handle on the same rows (what reopening a database file does).
#[derive(Debug)]
pub struct MemoryStorage {
    rows: Arc<Mutex<Rows>>,
    options: StorageOptions,
    closed: AtomicBool,
}

impl Default for MemoryStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStorage {
    /// An empty storage with default options.
    pub fn new() -> Self {
        Self::with_options(StorageOptions::default())
    }

    /// An empty storage with `options` (key builder, size limit; tables are ignored).
    pub fn with_options(options: StorageOptions) -> Self {
        MemoryStorage {
            rows: Arc::default(),
            options,
            closed: AtomicBool::new(false),
        }
    }

    /// A new, open handle on the same rows.
    pub fn reopen(&self) -> Self {
        MemoryStorage {
            rows: Arc::clone(&self.rows),
            options: self.options.clone(),
            closed: AtomicBool::new(false),
        }
    }

    /// A new, open handle on the same rows with other options (key builder, limits).
    pub fn reopen_with(&self, options: StorageOptions) -> Self {
        MemoryStorage {
            rows: Arc::clone(&self.rows),
            options,
            closed: AtomicBool::new(false),
        }
    }

    fn rows(&self) -> Result<MutexGuard<'_, Rows>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        // A panic while holding the lock can not leave a row half written: every write
        // replaces a whole record.
        Ok(self
            .rows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Runs `change` on the record of `key` and keeps the row only if it holds something.
    fn modify<T>(
        &self,
        key: &StorageKey,
        change: impl FnOnce(&str, &mut Record) -> Result<T>,
    ) -> Result<T> {
        let id = self.options.row_id(key)?;
        let mut rows = self.rows()?;
        let mut record = rows.get(&id).cloned().unwrap_or_default();
        let out = change(&id, &mut record)?;
        if record.is_empty() {
            rows.remove(&id);
        } else {
            rows.insert(id, record);
        }
        Ok(out)
    }

    fn read(&self, key: &StorageKey) -> Result<Record> {
        let id = self.options.row_id(key)?;
        Ok(self.rows()?.get(&id).cloned().unwrap_or_default())
    }
}

#[async_trait]
impl Storage for MemoryStorage {
    async fn get_state(&self, key: &StorageKey) -> Result<Option<String>> {
        Ok(self.read(key)?.state)
    }

    async fn set_state(&self, key: &StorageKey, state: Option<&str>) -> Result<()> {
        if let Some(state) = state {
            validate_state(state)?;
        }
        self.modify(key, |_, record| {
            record.state = state.map(str::to_owned);
            Ok(())
        })
    }

    async fn get_data(&self, key: &StorageKey) -> Result<Data> {
        Ok(self.read(key)?.data)
    }

    async fn set_data(&self, key: &StorageKey, data: &Data) -> Result<()> {
        let limit = self.options.max_data_bytes;
        self.modify(key, |id, record| {
            validate_data(id, data, limit)?;
            record.data = data.clone();
            Ok(())
        })
    }

    async fn update_data(&self, key: &StorageKey, patch: &Data) -> Result<Data> {
        let limit = self.options.max_data_bytes;
        self.modify(key, |id, record| {
            validate_data(id, patch, limit)?;
            merge_shallow(&mut record.data, patch);
            Ok(record.data.clone())
        })
    }

    async fn get_value(&self, key: &StorageKey, field: &str) -> Result<Option<Value>> {
        Ok(self.read(key)?.data.get(field).cloned())
    }

    async fn get_record(&self, key: &StorageKey) -> Result<Record> {
        self.read(key)
    }

    async fn clear(&self, key: &StorageKey) -> Result<()> {
        let id = self.options.row_id(key)?;
        self.rows()?.remove(&id);
        Ok(())
    }

    async fn key_count(&self) -> Result<u64> {
        Ok(self.rows()?.len() as u64)
    }

    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        Ok(())
    }
}
