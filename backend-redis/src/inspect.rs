//! [`Inspect`] for [`RedisStorage`]: list, stats and counts by `SCAN` in bounded batches.
//! Redis keeps no write time: expiry is Redis' own TTL (`ttl=`), and what needs a write
//! time (purge by age) is refused with an error that says so, never answered wrongly.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use fsmstore_core::{Data, Error, Inspect, PutRow, Replay, Result, Storage, StoredRow, TableStats};

use crate::keyspace::ids;
use crate::storage::RedisStorage;

/// The error for a feature that needs a write time.
fn no_write_time(feature: &str) -> Error {
    Error::Config(format!(
        "{feature} needs the time each dialogue was last written, which Redis does not keep: let Redis expire dialogues instead (ttl=30d, reset by every write)"
    ))
}

#[async_trait]
impl Inspect for RedisStorage {
    async fn list_rows(
        &self,
        state: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<StoredRow>> {
        // The `limit` smallest ids after `after`, in id order, as the SQL backends list
        // them: one SCAN over the keyspace, holding at most `limit` ids.
        let rows = self.rows();
        let after = after.unwrap_or("");
        let mut listed = Vec::new();
        let mut from = after.to_owned();
        // Rows filtered out by `state` are skipped; a page is refilled until full.
        while (listed.len() as u64) < limit {
            let want = (limit - listed.len() as u64) as usize;
            let mut page: BTreeSet<String> = BTreeSet::new();
            ids(self.connections(), rows.prefix(), rows.shape(), |batch| {
                for id in batch {
                    if id.as_str() > from.as_str() {
                        page.insert(id);
                        if page.len() > want {
                            page.pop_last();
                        }
                    }
                }
                Ok(())
            })
            .await?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            for id in page {
                if let Some(row) = rows.row(&id).await? {
                    if state.is_none() || row.state.as_deref() == state {
                        listed.push(row);
                    }
                }
            }
            if state.is_none() {
                break;
            }
            from = last;
        }
        Ok(listed)
    }

    async fn ids_after(&self, after: Option<&str>) -> Result<Option<Vec<String>>> {
        // One SCAN (list_rows walks the keyspace once per page).
        let rows = self.rows();
        let after = after.unwrap_or("");
        let mut all = BTreeSet::new();
        ids(self.connections(), rows.prefix(), rows.shape(), |batch| {
            all.extend(batch.into_iter().filter(|id| id.as_str() > after));
            Ok(())
        })
        .await?;
        Ok(Some(all.into_iter().collect()))
    }

    async fn get_row(&self, id: &str) -> Result<Option<StoredRow>> {
        self.rows().row(id).await
    }

    async fn put_row(&self, row: &StoredRow, how: PutRow) -> Result<bool> {
        self.options()
            .put_row_text(&row.id, row.state.as_deref(), &row.data)?;
        // Redis keeps no write time: with a TTL the key expires when the row would have
        // at this TTL, by Redis' clock, and a row already past it is not written.
        let ttl_ms = match (self.options().ttl, row.updated_at_ms) {
            (Some(ttl), Some(at)) => {
                let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
                let left = at
                    .saturating_add(ttl)
                    .saturating_sub(self.database_now_ms().await?);
                if left <= 0 {
                    return Ok(false);
                }
                Some(left as u64)
            }
            _ => None,
        };
        // No write times to compare: only `Replace` writes over a dialogue here.
        let replace = how.with_time(row.updated_at_ms, false) == PutRow::Replace;
        self.rows()
            .put(&row.id, row.state.as_deref(), &row.data, ttl_ms, replace)
            .await
    }

    async fn rewrite_row(
        &self,
        old: &StoredRow,
        new: Option<(Option<&str>, &Data)>,
    ) -> Result<bool> {
        self.options().rewrite_text(&old.id, new)?;
        self.rows().rewrite(old, new).await
    }

    async fn stats(&self) -> Result<TableStats> {
        let rows = self.rows();
        let mut all = BTreeSet::new();
        ids(self.connections(), rows.prefix(), rows.shape(), |batch| {
            all.extend(batch);
            Ok(())
        })
        .await?;
        let mut per_state: BTreeMap<Option<String>, u64> = BTreeMap::new();
        let mut count = 0;
        for id in all {
            if let Some(row) = rows.row(&id).await? {
                count += 1;
                *per_state.entry(row.state).or_default() += 1;
            }
        }
        let mut per_state: Vec<_> = per_state.into_iter().collect();
        per_state.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(TableStats {
            rows: count,
            per_state,
            oldest_ms: None,
            newest_ms: None,
            // Redis deletes a key past its TTL itself: none is left to count.
            expired: self.config().options.ttl.map(|_| 0),
            per_state_expired: Vec::new(),
        })
    }

    async fn count_older_by_state(&self, _cutoff_ms: i64) -> Result<Vec<(Option<String>, u64)>> {
        Err(no_write_time("inspect stats --age"))
    }

    async fn database_now_ms(&self) -> Result<i64> {
        let (seconds, micros): (i64, i64) = self
            .connections()
            .call("database_now_ms", Replay::Safe, |mut conn| async move {
                redis::cmd("TIME").query_async(&mut conn).await
            })
            .await?;
        Ok(seconds.saturating_mul(1000).saturating_add(micros / 1000))
    }

    async fn count_older_than(&self, _cutoff_ms: i64) -> Result<u64> {
        Err(no_write_time("purge --older-than"))
    }

    async fn purge_older_than(&self, _cutoff_ms: i64, _batch: u64) -> Result<u64> {
        Err(no_write_time("purge --older-than"))
    }
}
