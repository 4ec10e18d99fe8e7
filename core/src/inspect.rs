//! [`Inspect`]: operators' access to a whole table (list, stats, purge), beside the
//! per-key [`Storage`] calls bots use.

use async_trait::async_trait;

use crate::data::Data;
use crate::error::Result;
use crate::storage::Storage;

/// One row as stored: its id (the built key), state, data and last update.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    /// The row id, e.g. `fsm:-100:7`.
    pub id: String,
    /// The state.
    pub state: Option<String>,
    /// The data.
    pub data: Data,
    /// Last write, unix milliseconds (`None` in a layout without `updated_at`).
    pub updated_at_ms: Option<i64>,
    /// Why the stored data could not be read (then `data` is empty): a row another
    /// program wrote is reported here, named by its id, and never hides the other rows
    /// of a listing.
    pub corrupt: Option<String>,
}

impl StoredRow {
    /// The row `id` whose data column holds `text` as stored (`NULL`, `''` and `null`
    /// are empty data). Data that can not be read is reported in
    /// [`corrupt`](StoredRow::corrupt).
    pub fn from_text(
        id: String,
        state: Option<String>,
        text: Option<&str>,
        updated_at_ms: Option<i64>,
    ) -> StoredRow {
        let (data, corrupt) = match crate::data::parse_stored(&id, text) {
            Ok(data) => (data, None),
            Err(crate::Error::CorruptData { reason, .. }) => (Data::new(), Some(reason)),
            Err(other) => (Data::new(), Some(other.to_string())),
        };
        StoredRow {
            id,
            state,
            data,
            updated_at_ms,
            corrupt,
        }
    }
}

impl StoredRow {
    /// Whether `now`, the row read again, still holds what this one held: the same state,
    /// data and write time, and data that reads (what a compare-and-write compares,
    /// [`Inspect::rewrite_row`]).
    pub fn unchanged_in(&self, now: &StoredRow) -> bool {
        now.corrupt.is_none()
            && now.state == self.state
            && now.data == self.data
            && now.updated_at_ms == self.updated_at_ms
    }
}

/// What a table holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Rows (keys with a state or data).
    pub rows: u64,
    /// Rows per state (`None`: data only), most common first.
    pub per_state: Vec<(Option<String>, u64)>,
    /// The least recently written row's `updated_at`, unix milliseconds.
    pub oldest_ms: Option<i64>,
    /// The most recently written row's `updated_at`, unix milliseconds.
    pub newest_ms: Option<i64>,
    /// With a TTL: how many of `rows` are past it. The bot reads them as absent; they stay
    /// until purged (`purge --expired`). `None` without a TTL. Redis deletes expired keys
    /// itself: `Some(0)` there.
    pub expired: Option<u64>,
    /// With a TTL: how many rows of each state of `per_state` are past it (states with
    /// none left out), most first. Fresh rows of a state: its `per_state` count minus this.
    pub per_state_expired: Vec<(Option<String>, u64)>,
}

impl TableStats {
    /// Rows of `state` not past the TTL (all of them without one).
    pub fn fresh_in(&self, state: Option<&str>) -> u64 {
        let of = |list: &[(Option<String>, u64)]| {
            list.iter()
                .find(|(s, _)| s.as_deref() == state)
                .map_or(0, |(_, n)| *n)
        };
        of(&self.per_state).saturating_sub(of(&self.per_state_expired))
    }
}

/// `stats` with expiry counted apart: with a TTL, `expired` and `per_state_expired` from
/// [`Inspect::count_older_by_state`] at the expiry cutoff. What every backend whose rows
/// carry `updated_at` returns from [`Inspect::stats`].
///
/// # Errors
/// As [`Inspect::expiry_cutoff_ms`] and [`Inspect::count_older_by_state`].
pub async fn with_expiry<I: Inspect + ?Sized>(
    inspect: &I,
    mut stats: TableStats,
) -> Result<TableStats> {
    if inspect.options().ttl.is_none() || !inspect.options().layout.has_updated_at() {
        stats.expired = None;
        stats.per_state_expired = Vec::new();
        return Ok(stats);
    }
    let cutoff = inspect.expiry_cutoff_ms().await?;
    let mut per_state = inspect.count_older_by_state(cutoff).await?;
    per_state.retain(|(_, n)| *n > 0);
    per_state.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    stats.expired = Some(per_state.iter().map(|(_, n)| n).sum());
    stats.per_state_expired = per_state;
    Ok(stats)
}

/// A change of states alone, which an SQL backend makes in the database a batch of rows
/// per statement ([`Inspect::rewrite_states`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateChange {
    /// State `from` becomes `to`.
    Rename {
        /// The stored state.
        from: String,
        /// Its new name.
        to: String,
    },
    /// Every state starting `from` (`"Form:"`) starts `to` (`"Signup:"`) instead.
    Regroup {
        /// The stored prefix, group and `:`.
        from: String,
        /// The new prefix.
        to: String,
    },
}

impl StateChange {
    /// `(regroup, from, to)`: whether it moves a group, and what it changes into what.
    pub fn parts(&self) -> (bool, &str, &str) {
        match self {
            StateChange::Rename { from, to } => (false, from, to),
            StateChange::Regroup { from, to } => (true, from, to),
        }
    }
}

/// One batch of [`Inspect::rewrite_states`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatesBatch {
    /// Rows in the batch.
    pub rows: u64,
    /// Rows changed.
    pub changed: u64,
    /// The batch's last id (`None`: no row was after `after`).
    pub last_id: Option<String>,
}

impl StatesBatch {
    /// A batch of `rows` rows up to `last_id`, `changed` of them changed.
    pub fn new(rows: u64, changed: u64, last_id: Option<String>) -> Self {
        StatesBatch {
            rows,
            changed,
            last_id,
        }
    }
}

/// What [`Inspect::put_row`] does with a row already there./// What [`Inspect::put_row`] does with a row already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutRow {
    /// Writes only where there is no row (in the aiogram layout: or an emptied one).
    IfAbsent,
    /// Also over a row last written no later than this one, to the millisecond, where
    /// both keep a write time; otherwise as [`PutRow::IfAbsent`].
    IfNotNewer,
    /// Over whatever is there.
    Replace,
}

impl PutRow {
    /// What a row with write time `at` is written with: [`PutRow::IfNotNewer`] without a
    /// time (or in a layout without one) is [`PutRow::IfAbsent`].
    pub fn with_time(self, at: Option<i64>, layout_keeps_time: bool) -> PutRow {
        match self {
            PutRow::IfNotNewer if at.is_none() || !layout_keeps_time => PutRow::IfAbsent,
            how => how,
        }
    }
}

/// Whole-table operations for operators and tools (the CLI's `inspect` and `purge`
/// commands). Every SQL backend and [`MemoryStorage`](crate::MemoryStorage) implement it.
#[async_trait]
pub trait Inspect: Storage {
    /// Up to `limit` rows with ids greater than `after` (for paging), by id; only those
    /// in `state` when given.
    ///
    /// # Errors
    /// Database errors; [`Error::CorruptData`](crate::Error::CorruptData).
    async fn list_rows(
        &self,
        state: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<StoredRow>>;

    /// Every row id greater than `after`, in id order, read in one pass: for a store that
    /// walks its whole keyspace to list any page (Redis), where paging with
    /// [`list_rows`](Inspect::list_rows) would walk it once per page. `None` (the default,
    /// every SQL backend): page with `list_rows`. [`copy`](crate::copy::copy) and
    /// [`verify`](crate::copy::verify) use it.
    ///
    /// # Errors
    /// Database errors.
    async fn ids_after(&self, after: Option<&str>) -> Result<Option<Vec<String>>> {
        let _ = after;
        Ok(None)
    }

    /// The row with id `id` (a built key such as `fsm:-100:7`).
    ///
    /// # Errors
    /// As [`Inspect::list_rows`].
    async fn get_row(&self, id: &str) -> Result<Option<StoredRow>>;

    /// Row counts per state and the update time range.
    ///
    /// # Errors
    /// Database errors.
    async fn stats(&self) -> Result<TableStats>;

    /// How many rows were last written before `cutoff_ms` (unix milliseconds).
    ///
    /// # Errors
    /// Database errors.
    async fn count_older_than(&self, cutoff_ms: i64) -> Result<u64>;

    /// Rows written before `cutoff_ms` (unix milliseconds), per state (`None`: data only):
    /// how long users have been at each step (`inspect stats --age`), and which rows of
    /// each state are past a TTL.
    ///
    /// # Errors
    /// [`Error::LayoutLacks`](crate::Error::LayoutLacks) in a layout without `updated_at`;
    /// database errors.
    async fn count_older_by_state(&self, cutoff_ms: i64) -> Result<Vec<(Option<String>, u64)>>;

    /// Writes `row` by its id as another database held it — its state, its data and,
    /// where this layout keeps one, its write time (`updated_at_ms`; `None`: now) — what
    /// [`copy`](crate::copy::copy) writes; `how` says what happens to a row already here
    /// ([`PutRow`]): the check and the write are one statement, so a bot writing the same
    /// row meanwhile is never undone unless [`PutRow::Replace`]. Returns whether the row
    /// was written. On Redis with a TTL the key expires when `row` would have (nothing is
    /// written when it already has). The id, state and data are checked as every write
    /// checks them ([`StorageOptions::put_row_text`](crate::StorageOptions::put_row_text)).
    ///
    /// # Errors
    /// As [`StorageOptions::put_row_text`](crate::StorageOptions::put_row_text); database
    /// errors.
    async fn put_row(&self, row: &StoredRow, how: PutRow) -> Result<bool>;

    /// Rewrites row `old.id` to `new` (its state and data; `None` deletes the row) only if
    /// it still holds what `old` holds: the same state, the same data and, where the layout
    /// keeps one, the same write time to the millisecond. The check and the write are one
    /// statement (one script on Redis; on SQLite one transaction of the one writer), so a
    /// bot's write since `old` was read is never undone: then nothing is written and it
    /// returns `false` (read the row again). The write time is kept, and with it the TTL
    /// (on Redis the key's expiry): a dialogue migration ([`run_step`](crate::run_step))
    /// is not a bot's write. `new` is checked as every write checks it.
    ///
    /// # Errors
    /// As [`StorageOptions::put_row_text`](crate::StorageOptions::put_row_text); database
    /// errors.
    async fn rewrite_row(
        &self,
        old: &StoredRow,
        new: Option<(Option<&str>, &Data)>,
    ) -> Result<bool>;

    /// Makes `change` in the database to the rows with ids after `after`, up to `limit` of
    /// them in id order: one statement reads the batch's last id, one `UPDATE` changes the
    /// states in it (each row atomically, a bot's write in between never undone, write
    /// times kept). `None` (the default, Redis and the memory store): the backend has no
    /// such statement, and [`run_step`](crate::run_step) rewrites each dialogue instead.
    ///
    /// # Errors
    /// Database errors.
    async fn rewrite_states(
        &self,
        change: &StateChange,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Option<StatesBatch>> {
        let _ = (change, after, limit);
        Ok(None)
    }

    /// Deletes at most `batch` rows last written before `cutoff_ms`; returns how many.
    /// Call it until it returns 0 to purge everything (small batches keep locks short).
    ///
    /// # Errors
    /// Database errors.
    async fn purge_older_than(&self, cutoff_ms: i64, batch: u64) -> Result<u64>;

    /// The database's clock, unix milliseconds (this process's clock where the storage
    /// is in the process).
    ///
    /// # Errors
    /// Database errors.
    async fn database_now_ms(&self) -> Result<i64> {
        Ok(now_ms())
    }

    /// The cutoff of [`StorageOptions::ttl`](crate::StorageOptions::ttl) now, by the
    /// database's clock (the one reads and writes decide expiry with): rows last written
    /// before it have expired.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) when the storage has no TTL; database
    /// errors.
    async fn expiry_cutoff_ms(&self) -> Result<i64> {
        let options = self.options();
        options.require_updated_at("purge --expired")?;
        let ttl = options.ttl.ok_or_else(|| {
            crate::Error::Config("the storage has no ttl (set `ttl=30d` in the URL)".to_owned())
        })?;
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        Ok(self.database_now_ms().await?.saturating_sub(ttl_ms))
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}
