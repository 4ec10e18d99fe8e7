//! Per-key event isolation: a lock held around a whole handler, so two updates of one
//! conversation never interleave their read-modify-write (aiogram's `EventIsolation`).
//!
//! [`Isolation::lock`] waits for the key's lock (at most
//! [`StorageOptions::isolation_timeout`](crate::StorageOptions::isolation_timeout)) and
//! returns a [`LockGuard`] that releases it when dropped: at the end of the handler, when
//! the handler's task is cancelled, or when it panics.
//!
//! [`LocalIsolation`] is the in-process lock (SQLite and `MemoryStorage`); the PostgreSQL
//! and MySQL backends lock in the database, so every bot instance on the database is
//! isolated, and a holder that dies (connection killed, process gone) frees its locks:
//! the server ends the session. A holder of a [`LocalIsolation`] lock is a task of this
//! process: when the process dies, its locks die with it; other processes never saw them.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::key::StorageKey;
use crate::options::StorageOptions;

/// How long past the server's own lock timeout a server backend waits for the answer to
/// its lock request (a pooler's queue, a host gone silent) before it gives up itself.
pub const LOCK_ANSWER_GRACE: Duration = Duration::from_millis(250);

/// Hands out per-key locks. Object safe: `Arc<dyn Isolation>`.
#[async_trait]
pub trait Isolation: Send + Sync + fmt::Debug {
    /// Waits for the lock of `key`.
    ///
    /// # Errors
    /// [`Error::LockTimeout`] when the lock did not come within the isolation timeout;
    /// [`Error::InvalidKey`]; connection errors.
    async fn lock(&self, key: &StorageKey) -> Result<LockGuard>;
}

/// A held lock; dropping it releases the lock.
///
/// A lock whose release is a round trip (Redis' lease) is released by a task spawned on
/// drop; a process about to exit awaits [`LockGuard::release`] instead, so the lock is gone
/// before it exits rather than left until its lease runs out.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard {
    _held: Box<dyn Send + Sync>,
    release: Option<Release>,
    session: Option<i64>,
}

/// How a guard made with [`LockGuard::with_release`] releases its lock when awaited.
type Release = Box<
    dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync,
>;

impl LockGuard {
    /// A guard over `held`, whose `Drop` releases the lock. `session` is the database
    /// session holding it (PostgreSQL's backend pid, MySQL's connection id), if any.
    pub fn new(held: impl Send + Sync + 'static, session: Option<i64>) -> Self {
        LockGuard {
            _held: Box::new(held),
            release: None,
            session,
        }
    }

    /// A guard whose lock [`LockGuard::release`] releases by awaiting `release()`; dropped
    /// unreleased, it drops `release` (which owns what the lock holds, and releases it on
    /// drop as a guard made with [`LockGuard::new`] does).
    pub fn with_release<F>(release: F, session: Option<i64>) -> Self
    where
        F: FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
            + Send
            + Sync
            + 'static,
    {
        LockGuard {
            _held: Box::new(()),
            release: Some(Box::new(release)),
            session,
        }
    }

    /// Releases the lock. For a guard made with [`LockGuard::with_release`] (Redis' lease)
    /// it returns once the lock is gone from the server; dropping the guard would leave
    /// that round trip to a task of the runtime, which a process about to exit cuts short.
    /// Other guards are dropped: an in-process lock is free at once, and a server session's
    /// lock (PostgreSQL, MySQL) is freed by the server if the process exits first.
    pub async fn release(mut self) {
        if let Some(release) = self.release.take() {
            release().await;
        }
    }

    /// The database session holding the lock (`None` for an in-process lock).
    pub fn session(&self) -> Option<i64> {
        self.session
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

type Entry = Arc<tokio::sync::Mutex<()>>;

/// The locks of one table in this process: one async mutex per row id in use, removed
/// when its last holder or waiter is gone, so memory stays bounded by the keys locked or
/// waited for right now, however many keys were ever locked.
#[derive(Default)]
pub struct LocalLocks {
    entries: Mutex<HashMap<String, Entry>>,
}

impl fmt::Debug for LocalLocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalLocks")
            .field("held_or_awaited", &self.len())
            .finish()
    }
}

impl LocalLocks {
    /// Row ids with a holder or a waiter right now.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether no lock is held or waited for.
    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // The map holds no invariant a panic could break half-way.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets `id`'s entry when nobody else holds or waits for it.
    fn release(&self, id: &str) {
        let mut map = self.map();
        if map
            .get(id)
            .is_some_and(|entry| Arc::strong_count(entry) == 1)
        {
            map.remove(id);
        }
    }
}

/// The in-process [`Isolation`]: a per-row-id async mutex in [`LocalLocks`] shared by
/// every handle of one table in this process.
#[derive(Clone)]
pub struct LocalIsolation {
    locks: Arc<LocalLocks>,
    options: StorageOptions,
    /// Whether the storage is still open: a closed one hands out no locks.
    open: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

impl fmt::Debug for LocalIsolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalIsolation")
            .field("table", &self.options.table)
            .field("held_or_awaited", &self.locks.len())
            .finish()
    }
}

impl LocalIsolation {
    /// Locks of its own, for keys laid out by `options` (key builder, timeout).
    pub fn new(options: StorageOptions) -> Self {
        LocalIsolation::shared(Arc::default(), options)
    }

    /// Locks shared with every other isolation over `locks` (handles of one table).
    pub fn shared(locks: Arc<LocalLocks>, options: StorageOptions) -> Self {
        LocalIsolation {
            locks,
            options,
            open: None,
        }
    }

    /// The same isolation handing out locks only while `is_open` says the storage is
    /// open: after `close()` a lock is [`Error::Closed`], as every call is (SQLite and
    /// `MemoryStorage` once kept granting them).
    pub fn while_open(mut self, is_open: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.open = Some(Arc::new(is_open));
        self
    }

    /// How long a server lock may wait for a connection of its lock pool, with
    /// `remaining` of the isolation timeout left: that, or for a timeout of 0 (take a free
    /// key, never wait for a held one) the connect timeout, since the try still needs a
    /// connection.
    pub fn connection_wait(&self, remaining: Duration) -> Duration {
        if self.options.isolation_timeout.is_zero() {
            self.options.connect_timeout
        } else {
            remaining
        }
    }

    /// The lock table.
    pub fn locks(&self) -> &Arc<LocalLocks> {
        &self.locks
    }

    /// This process's lock of `key` (the queue in front of a server's lock, so one waiter
    /// per key per process holds a connection), and what is left of the isolation timeout
    /// for the server's lock.
    ///
    /// # Errors
    /// As [`Isolation::lock`]; [`Error::LockTimeout`] when nothing is left.
    pub async fn lock_in_front(&self, key: &StorageKey) -> Result<(LockGuard, Duration)> {
        let timeout = self.options.isolation_timeout;
        let started = std::time::Instant::now();
        let guard = self.lock(key).await?;
        let remaining = timeout.saturating_sub(started.elapsed());
        // A timeout of 0 asks for the lock only if it is free (the server backends try
        // without waiting); a longer one that ran out in this process gives up here.
        if remaining.is_zero() && !timeout.is_zero() {
            return Err(lock_timeout(&self.options.row_id(key)?, timeout));
        }
        Ok((guard, remaining))
    }
}

/// Holds a row id's mutex; on drop releases it and forgets the entry if unused.
struct LocalHeld {
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    locks: Arc<LocalLocks>,
    id: String,
}

impl Drop for LocalHeld {
    fn drop(&mut self) {
        // Release first: the guard holds a reference to the entry.
        drop(self.guard.take());
        self.locks.release(&self.id);
    }
}

/// Forgets a waiter's entry if it gave up (timed out, cancelled) and nobody else uses it.
struct Waiting<'a> {
    locks: &'a LocalLocks,
    id: &'a str,
    entry: Option<Entry>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        // `None` once the lock was taken: the guard owns the entry then.
        if self.entry.take().is_some() {
            self.locks.release(self.id);
        }
    }
}

#[async_trait]
impl Isolation for LocalIsolation {
    async fn lock(&self, key: &StorageKey) -> Result<LockGuard> {
        if self.open.as_ref().is_some_and(|is_open| !is_open()) {
            return Err(Error::Closed);
        }
        let id = self.options.row_id(key)?;
        let timeout = self.options.isolation_timeout;
        match self.lock_id(id.clone(), timeout).await? {
            Some(guard) => Ok(guard),
            None => Err(lock_timeout(&id, timeout)),
        }
    }
}

impl LocalIsolation {
    /// The lock named `id` (a row id, or a name no row id has, such as SQLite's dialogue
    /// migration lock), waiting at most `timeout`; `None` when it did not come.
    pub async fn lock_id(&self, id: String, timeout: Duration) -> Result<Option<LockGuard>> {
        let entry = Arc::clone(self.locks.map().entry(id.clone()).or_default());
        let mut waiting = Waiting {
            locks: &self.locks,
            id: &id,
            entry: Some(Arc::clone(&entry)),
        };
        let Ok(guard) = tokio::time::timeout(timeout, entry.lock_owned()).await else {
            return Ok(None);
        };
        // The guard keeps the entry alive from here.
        drop(waiting.entry.take());
        drop(waiting);
        Ok(Some(LockGuard::new(
            LocalHeld {
                guard: Some(guard),
                locks: Arc::clone(&self.locks),
                id,
            },
            None,
        )))
    }
}

/// [`Error::LockTimeout`] for row `id` after waiting `waited`.
pub fn lock_timeout(id: &str, waited: Duration) -> Error {
    Error::LockTimeout {
        key: id.to_owned(),
        waited,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BotId, ChatId, UserId};

    fn key(n: i64) -> StorageKey {
        StorageKey::new(BotId(1), ChatId(n), UserId(n))
    }

    #[tokio::test]
    async fn a_million_distinct_keys_leave_no_entry_behind() {
        let isolation = LocalIsolation::new(StorageOptions::default());
        for n in 0..1_000_000 {
            let guard = isolation.lock(&key(n)).await.unwrap();
            drop(guard);
        }
        assert!(isolation.locks().is_empty());
    }

    #[tokio::test]
    async fn a_held_key_times_out_and_a_released_one_is_free() {
        let options = StorageOptions::default().isolation_timeout(Duration::from_millis(50));
        let isolation = LocalIsolation::new(options);
        let held = isolation.lock(&key(1)).await.unwrap();
        let err = isolation.lock(&key(1)).await.unwrap_err();
        assert!(matches!(err, Error::LockTimeout { .. }), "{err:?}");
        assert!(err.is_transient());
        // The waiter that gave up left nothing behind; the holder's entry is there.
        assert_eq!(isolation.locks().len(), 1);
        drop(isolation.lock(&key(2)).await.unwrap());
        drop(held);
        assert!(isolation.locks().is_empty());
        let _again = isolation.lock(&key(1)).await.unwrap();
    }

    /// The holder goes first while a waiter is queued; then the waiter gives up before it
    /// ran again: the waiter, last to use the entry, removes it.
    #[tokio::test]
    async fn the_last_waiter_to_give_up_removes_the_entry() {
        let isolation = LocalIsolation::new(StorageOptions::default());
        let held = isolation.lock(&key(1)).await.unwrap();
        let one = key(1);
        let mut waiter = isolation.lock(&one);
        let polled = tokio::time::timeout(Duration::from_millis(10), &mut waiter).await;
        assert!(polled.is_err(), "the waiter is queued behind the holder");
        drop(held);
        assert_eq!(
            isolation.locks().len(),
            1,
            "the queued waiter keeps the entry"
        );
        drop(waiter);
        assert!(isolation.locks().is_empty());
        assert_eq!(
            format!("{:?}", isolation.locks()),
            "LocalLocks { held_or_awaited: 0 }"
        );
    }

    /// A handler that panics while holding the lock frees it (the guard drops while the
    /// task unwinds).
    #[tokio::test]
    async fn a_panicking_holder_frees_the_key() {
        let isolation = LocalIsolation::new(
            StorageOptions::default().isolation_timeout(Duration::from_secs(5)),
        );
        let holder = {
            let isolation = isolation.clone();
            tokio::spawn(async move {
                let _guard = isolation.lock(&key(1)).await.unwrap();
                panic!("the handler failed");
            })
        };
        assert!(holder.await.unwrap_err().is_panic());
        drop(
            isolation
                .lock(&key(1))
                .await
                .expect("the key is free again"),
        );
        assert!(isolation.locks().is_empty());
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaves_nothing_behind() {
        let isolation = LocalIsolation::new(StorageOptions::default());
        let held = isolation.lock(&key(1)).await.unwrap();
        let waiter = {
            let isolation = isolation.clone();
            tokio::spawn(async move { isolation.lock(&key(1)).await.map(drop) })
        };
        tokio::task::yield_now().await;
        waiter.abort();
        let _ = waiter.await;
        drop(held);
        assert!(isolation.locks().is_empty());
    }
}
