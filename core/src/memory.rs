//! [`MemoryStorage`]: the in-memory reference implementation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::data::{merge_shallow, validate_data, Data, Record};
use crate::error::{Error, Result};
use crate::inspect::{now_ms, Inspect, PutRow, StoredRow, TableStats};
use crate::key::StorageKey;
use crate::options::StorageOptions;
use crate::storage::Storage;

/// Each row with its last write, unix milliseconds.
type Rows = HashMap<String, (Record, i64)>;

/// Keeps everything in a `HashMap` behind a mutex. Nothing survives the process.
///
/// It is the reference the SQL backends are compared against: it passes the conformance
/// suite and shares the merge, validation and key code with them. [`MemoryStorage::reopen`]
/// gives a new handle on the same rows (what reopening a database file does).
#[derive(Debug)]
pub struct MemoryStorage {
    rows: Arc<Mutex<Rows>>,
    options: StorageOptions,
    closed: Arc<AtomicBool>,
}

impl Default for MemoryStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStorage {
    /// A check whether this handle was closed, for an isolation of its keys
    /// ([`LocalIsolation::while_open`](crate::LocalIsolation::while_open)).
    pub fn open_check(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let closed = Arc::clone(&self.closed);
        move || !closed.load(Ordering::Acquire)
    }

    /// An empty storage with default options.
    pub fn new() -> Self {
        Self::with_options(StorageOptions::default())
    }

    /// An empty storage with `options` (key builder, size limit; tables are ignored).
    pub fn with_options(options: StorageOptions) -> Self {
        MemoryStorage {
            rows: Arc::default(),
            options,
            closed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A new, open handle on the same rows.
    pub fn reopen(&self) -> Self {
        MemoryStorage {
            rows: Arc::clone(&self.rows),
            options: self.options.clone(),
            closed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A new, open handle on the same rows with other options (key builder, limits).
    pub fn reopen_with(&self, options: StorageOptions) -> Self {
        MemoryStorage {
            rows: Arc::clone(&self.rows),
            options,
            closed: Arc::new(AtomicBool::new(false)),
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
        // An expired row is absent: the write starts from empty.
        let mut record = rows
            .get(&id)
            .filter(|(_, at)| self.fresh(*at))
            .map(|(r, _)| r.clone())
            .unwrap_or_default();
        let out = change(&id, &mut record)?;
        if record.is_empty() {
            rows.remove(&id);
        } else {
            rows.insert(id, (record, now_ms()));
        }
        Ok(out)
    }

    fn read(&self, key: &StorageKey) -> Result<Record> {
        let id = self.options.row_id(key)?;
        Ok(self
            .rows()?
            .get(&id)
            .filter(|(_, at)| self.fresh(*at))
            .map(|(r, _)| r.clone())
            .unwrap_or_default())
    }

    /// Whether a row written at `at` (unix ms) is within the TTL (always, without one).
    fn fresh(&self, at: i64) -> bool {
        self.options.ttl.is_none_or(|ttl| {
            now_ms().saturating_sub(at) <= i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
        })
    }
}

#[async_trait]
impl Storage for MemoryStorage {
    async fn get_state(&self, key: &StorageKey) -> Result<Option<String>> {
        Ok(self.read(key)?.state)
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
        if patch.is_empty() {
            // Writes nothing, so `updated_at` stays as it was.
            return Ok(self.read(key)?.data);
        }
        let limit = self.options.max_data_bytes;
        self.modify(key, |id, record| {
            validate_data(id, patch, limit)?;
            merge_shallow(&mut record.data, patch);
            Ok(record.data.clone())
        })
    }

    async fn transition(
        &self,
        key: &StorageKey,
        state: Option<&str>,
        patch: &Data,
    ) -> Result<Data> {
        self.options.transition_row_id(key, state, patch)?;
        self.modify(key, |_, record| {
            record.state = state.map(str::to_owned);
            merge_shallow(&mut record.data, patch);
            Ok(record.data.clone())
        })
    }

    async fn set_record(&self, key: &StorageKey, state: Option<&str>, data: &Data) -> Result<()> {
        self.options.record_row_id(key, state, data)?;
        self.modify(key, |_, record| {
            record.state = state.map(str::to_owned);
            record.data = data.clone();
            Ok(())
        })
    }

    async fn get_record(&self, key: &StorageKey) -> Result<Record> {
        self.read(key)
    }

    async fn clear(&self, key: &StorageKey) -> Result<bool> {
        let id = self.options.row_id(key)?;
        let removed = self.rows()?.remove(&id);
        Ok(removed.is_some_and(|(_, at)| self.fresh(at)))
    }

    async fn key_count(&self) -> Result<u64> {
        Ok(self
            .rows()?
            .values()
            .filter(|(_, at)| self.fresh(*at))
            .count() as u64)
    }

    fn options(&self) -> &StorageOptions {
        &self.options
    }

    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        Ok(())
    }
}

fn stored(id: &str, (record, updated_at_ms): &(Record, i64)) -> StoredRow {
    StoredRow {
        id: id.to_owned(),
        state: record.state.clone(),
        data: record.data.clone(),
        updated_at_ms: Some(*updated_at_ms),
        corrupt: None,
    }
}

#[async_trait]
impl Inspect for MemoryStorage {
    async fn list_rows(
        &self,
        state: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<StoredRow>> {
        let rows = self.rows()?;
        let mut ids: Vec<&String> = rows
            .iter()
            .filter(|(id, (record, _))| {
                after.is_none_or(|after| id.as_str() > after)
                    && state.is_none_or(|state| record.state.as_deref() == Some(state))
            })
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        Ok(ids
            .into_iter()
            .take(limit as usize)
            .map(|id| stored(id, &rows[id]))
            .collect())
    }

    async fn get_row(&self, id: &str) -> Result<Option<StoredRow>> {
        Ok(self.rows()?.get(id).map(|row| stored(id, row)))
    }

    async fn put_row(&self, row: &StoredRow, how: PutRow) -> Result<bool> {
        self.options
            .put_row_text(&row.id, row.state.as_deref(), &row.data)?;
        let at = row.updated_at_ms.unwrap_or_else(now_ms);
        let mut rows = self.rows()?;
        let there = rows.get(&row.id).map(|(_, there)| *there);
        let write = match (how.with_time(row.updated_at_ms, true), there) {
            (_, None) | (PutRow::Replace, _) => true,
            (PutRow::IfNotNewer, Some(there)) => there <= at,
            _ => false,
        };
        if write {
            let record = Record {
                state: row.state.clone(),
                data: row.data.clone(),
            };
            rows.insert(row.id.clone(), (record, at));
        }
        Ok(write)
    }

    async fn rewrite_row(
        &self,
        old: &StoredRow,
        new: Option<(Option<&str>, &Data)>,
    ) -> Result<bool> {
        self.options.rewrite_text(&old.id, new)?;
        let mut rows = self.rows()?;
        let same = rows.get(&old.id).is_some_and(|(record, at)| {
            record.state == old.state
                && record.data == old.data
                && old.updated_at_ms.is_none_or(|old_at| old_at == *at)
        });
        if !same {
            return Ok(false);
        }
        match new {
            None => {
                rows.remove(&old.id);
            }
            Some((state, data)) => {
                if let Some((record, _)) = rows.get_mut(&old.id) {
                    record.state = state.map(str::to_owned);
                    record.data = data.clone();
                }
            }
        }
        Ok(true)
    }

    async fn stats(&self) -> Result<TableStats> {
        // The lock released before the expiry count takes it again.
        let stats = {
            let rows = self.rows()?;
            let mut per_state: HashMap<Option<String>, u64> = HashMap::new();
            for (record, _) in rows.values() {
                *per_state.entry(record.state.clone()).or_default() += 1;
            }
            let mut per_state: Vec<_> = per_state.into_iter().collect();
            per_state.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            TableStats {
                rows: rows.len() as u64,
                per_state,
                oldest_ms: rows.values().map(|(_, t)| *t).min(),
                newest_ms: rows.values().map(|(_, t)| *t).max(),
                ..TableStats::default()
            }
        };
        crate::inspect::with_expiry(self, stats).await
    }

    async fn count_older_by_state(&self, cutoff_ms: i64) -> Result<Vec<(Option<String>, u64)>> {
        let mut per_state: HashMap<Option<String>, u64> = HashMap::new();
        for (record, t) in self.rows()?.values() {
            if *t < cutoff_ms {
                *per_state.entry(record.state.clone()).or_default() += 1;
            }
        }
        Ok(per_state.into_iter().collect())
    }

    async fn count_older_than(&self, cutoff_ms: i64) -> Result<u64> {
        Ok(self
            .rows()?
            .values()
            .filter(|(_, t)| *t < cutoff_ms)
            .count() as u64)
    }

    async fn purge_older_than(&self, cutoff_ms: i64, batch: u64) -> Result<u64> {
        let mut rows = self.rows()?;
        let old: Vec<String> = rows
            .iter()
            .filter(|(_, (_, t))| *t < cutoff_ms)
            .map(|(id, _)| id.clone())
            .take(batch as usize)
            .collect();
        for id in &old {
            rows.remove(id);
        }
        Ok(old.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_the_ones_given() {
        let options = StorageOptions::default().table("mem_t").unwrap();
        let storage = MemoryStorage::with_options(options);
        assert_eq!(Storage::options(&storage).table.as_str(), "mem_t");
    }
}

#[cfg(test)]
mod expiry_tests {
    use super::*;
    use crate::{BotId, ChatId, UserId};
    use serde_json::json;
    use serde_json::Value;
    use std::time::Duration;

    fn key(n: i64) -> StorageKey {
        StorageKey::new(BotId(1), ChatId(n), UserId(n))
    }

    fn data(value: Value) -> Data {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    /// Rows past the TTL read as absent, and a write to one starts from empty.
    #[tokio::test]
    async fn expired_rows_read_as_absent_and_writes_start_from_empty() {
        let ttl = Duration::from_millis(300);
        let storage = MemoryStorage::with_options(StorageOptions::default().ttl(ttl));
        for n in 1..=4 {
            storage
                .set_record(&key(n), Some("S"), &data(json!({"a": 1})))
                .await
                .unwrap();
        }
        assert_eq!(
            storage.get_state(&key(1)).await.unwrap().as_deref(),
            Some("S")
        );
        assert_eq!(storage.key_count().await.unwrap(), 4);
        tokio::time::sleep(ttl + Duration::from_millis(200)).await;

        assert!(storage.get_record(&key(1)).await.unwrap().is_empty());
        assert_eq!(storage.get_value(&key(1), "a").await.unwrap(), None);
        assert_eq!(storage.key_count().await.unwrap(), 0);
        assert!(
            !storage.clear(&key(1)).await.unwrap(),
            "an expired row is absent"
        );
        let merged = storage
            .update_data(&key(2), &data(json!({"b": 2})))
            .await
            .unwrap();
        assert_eq!(Value::Object(merged), json!({"b": 2}));
        assert_eq!(storage.get_state(&key(2)).await.unwrap(), None);
        storage.set_state(&key(3), Some("T")).await.unwrap();
        assert!(storage.get_data(&key(3)).await.unwrap().is_empty());
        let moved = storage
            .transition(&key(4), Some("U"), &data(json!({"c": 3})))
            .await
            .unwrap();
        assert_eq!(Value::Object(moved), json!({"c": 3}));
        assert_eq!(storage.key_count().await.unwrap(), 3);
        let cutoff = storage.expiry_cutoff_ms().await.unwrap();
        assert!(cutoff <= now_ms() - 300);
    }

    #[test]
    fn ttl_comes_from_the_url_and_durations_parse() {
        use crate::{parse_duration, DatabaseUrl};
        let url = DatabaseUrl::parse("sqlite://a.db?ttl=30m").unwrap();
        assert_eq!(url.options().ttl, Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(
            parse_duration("2w").unwrap(),
            Duration::from_secs(1_209_600)
        );
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("3y").is_err());
        assert!(DatabaseUrl::parse("sqlite://a.db?ttl=0s").is_err());
    }

    #[tokio::test]
    async fn no_ttl_no_cutoff() {
        assert!(MemoryStorage::new().expiry_cutoff_ms().await.is_err());
    }
}
