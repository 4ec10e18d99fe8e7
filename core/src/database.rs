//! [`Database`]: one handle per database and FSM table, handing out every view of it over
//! one pool.

use std::sync::Arc;

use crate::dialogue::Dialogue;
use crate::error::{Error, Result};
use crate::inspect::Inspect;
use crate::isolation::{Isolation, LocalIsolation};
use crate::key::StorageKey;
use crate::migrator::Migrator;
use crate::options::StorageOptions;
use crate::storage::Storage;
use crate::traced::Traced;

/// One database and FSM table, opened once: the bot's [`Storage`], the operator's
/// [`Inspect`] and the [`Migrator`], all over the same connections.
///
/// Cheap to clone (clones share everything). Open one with `fsmstore::open(url)` or a
/// backend's `database()`; a backend outside this workspace builds one with
/// [`Database::new`].
///
/// Closing: [`Database::close`] closes the pool, and with it every view handed out.
/// Dropping the last handle and view without closing is fine too: the connections are
/// closed when the pool is dropped (pending statements finish or are cut off by the
/// server; nothing acknowledged is lost).
///
/// ```
/// use fsmstore_core::{Database, MemoryStorage, BotId, ChatId, StorageKey, UserId};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let db = Database::new("memory", std::sync::Arc::new(MemoryStorage::new()), None);
/// let storage = db.storage();
/// storage.set_state(&StorageKey::new(BotId(1), ChatId(2), UserId(3)), Some("Form:name")).await?;
/// assert_eq!(db.inspect().stats().await?.rows, 1);
/// assert!(db.migrator().is_err()); // an in-memory store has no schema
/// # Ok::<(), fsmstore_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Database {
    backend: &'static str,
    storage: Arc<dyn Inspect>,
    migrator: Option<Arc<dyn Migrator>>,
    isolation: Arc<dyn Isolation>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("backend", &self.backend)
            .field("table", &self.storage.options().table)
            .field("migrations", &self.migrator.is_some())
            .finish()
    }
}

impl Database {
    /// A handle over `storage` and, for a backend with a schema, its `migrator` (which
    /// must share the storage's connections). `backend` names it in messages and in the
    /// `tracing` spans every call of the storage runs in (see [`Traced`]).
    pub fn new(
        backend: &'static str,
        storage: Arc<dyn Inspect>,
        migrator: Option<Arc<dyn Migrator>>,
    ) -> Self {
        let traced = Traced::new(backend, storage);
        let closed = traced.closed_flag();
        // Closed through this handle: no more locks either.
        let isolation = Arc::new(
            LocalIsolation::new(traced.options().clone())
                .while_open(move || !closed.load(std::sync::atomic::Ordering::Acquire)),
        );
        Database {
            backend,
            storage: Arc::new(traced),
            migrator,
            isolation,
        }
    }

    /// The same handle with `isolation` handing out its per-key locks. Each backend's
    /// `database()` sets its own (see [`Database::isolation`]); a handle built with
    /// [`Database::new`] alone has a [`LocalIsolation`] of its own.
    #[must_use]
    pub fn with_isolation(mut self, isolation: Arc<dyn Isolation>) -> Self {
        self.isolation = isolation;
        self
    }

    /// The per-key locks: hold one around a handler so two updates of one conversation
    /// never interleave (see [`Isolation`]). What they are depends on the backend:
    ///
    /// | backend | locks | shared by |
    /// |---|---|---|
    /// | PostgreSQL | `PgIsolation`: session advisory locks, one lock-pool connection each (`lock_pool_max`) | every instance on the database |
    /// | MySQL / MariaDB | `GET_LOCK`, one lock-pool connection each (`lock_pool_max`) | every instance on the server |
    /// | Redis | aiogram's `RedisEventIsolation` keys (`<id>:lock`, a lease) | every instance on the server, Python handlers too |
    /// | SQLite, `MemoryStorage` | [`LocalIsolation`]: an async mutex per key | every handle of the file and table in this process |
    pub fn isolation(&self) -> Arc<dyn Isolation> {
        Arc::clone(&self.isolation)
    }

    /// The backend's name (`sqlite`, `postgres`, `mysql`, …).
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// The options the database was opened with.
    pub fn options(&self) -> &StorageOptions {
        self.storage.options()
    }

    /// The per-key storage bots use.
    pub fn storage(&self) -> Arc<dyn Storage> {
        self.storage.clone()
    }

    /// The dialogue of `key`: state, data, typed patches and atomic transitions.
    pub fn dialogue(&self, key: StorageKey) -> Dialogue {
        Dialogue::new(self.storage(), key)
    }

    /// The whole-table operations operators use (list, stats, purge).
    pub fn inspect(&self) -> Arc<dyn Inspect> {
        Arc::clone(&self.storage)
    }

    /// The migrator of the FSM table, reading through the same pool (each migration run
    /// takes the backend's lock on a connection of its own).
    ///
    /// # Errors
    /// [`Error::Config`] for a backend without a schema (an in-memory or key-value store).
    pub fn migrator(&self) -> Result<Arc<dyn Migrator>> {
        self.migrator.clone().ok_or_else(|| {
            Error::Config(format!(
                "the {} backend has no schema to migrate",
                self.backend
            ))
        })
    }

    /// Runs the bot's dialogue migrations that have not run on this table
    /// ([`migrate_dialogues`](crate::migrate_dialogues)): call it at start-up, after the
    /// schema is at head; many instances starting at once run each step once.
    ///
    /// # Errors
    /// As [`migrate_dialogues`](crate::migrate_dialogues); [`Error::Config`] for a handle
    /// without a migrator.
    pub async fn migrate_dialogues(
        &self,
        migrations: &crate::DialogueMigrations,
        options: &crate::StepOptions,
        progress: &mut (dyn FnMut(i64, &crate::StepReport) + Send),
    ) -> Result<crate::DialogueMigrationReport> {
        let migrator = self.migrator()?;
        let mut ledger = migrator.dialogue_ledger().await?;
        crate::migrate_dialogues(&*self.storage, &mut *ledger, migrations, options, progress).await
    }

    /// The declared dialogue migrations beside the recorded ones
    /// ([`dialogue_history`](crate::dialogue_history)).
    ///
    /// # Errors
    /// As [`Database::migrate_dialogues`], without the lock.
    pub async fn dialogue_history(
        &self,
        migrations: &crate::DialogueMigrations,
    ) -> Result<Vec<crate::DialogueHistoryEntry>> {
        let migrator = self.migrator()?;
        let mut ledger = migrator.dialogue_ledger().await?;
        let recorded = ledger.recorded().await?;
        Ok(crate::dialogue_history(migrations, &recorded))
    }

    /// Closes the pool: every view handed out fails with [`Error::Closed`] afterwards.
    /// Closing twice is fine.
    ///
    /// # Errors
    /// Database errors while shutting down.
    pub async fn close(&self) -> Result<()> {
        self.storage.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BotId, ChatId, MemoryStorage, UserId};

    #[tokio::test]
    async fn the_handle_names_its_backend_and_closes_its_views() {
        let options = StorageOptions::default().table("forms").unwrap();
        let db = Database::new(
            "memory",
            Arc::new(MemoryStorage::with_options(options)),
            None,
        );
        assert_eq!(db.backend(), "memory");
        assert_eq!(db.options().table.as_str(), "forms");
        let debug = format!("{db:?}");
        assert!(
            debug.contains("memory") && debug.contains("forms"),
            "{debug}"
        );
        let Err(err) = db.migrator() else {
            panic!("an in-memory store has no migrator")
        };
        let err = err.to_string();
        assert!(err.contains("memory backend has no schema"), "{err}");
        let key = StorageKey::new(BotId(1), ChatId(2), UserId(3));
        db.dialogue(key.clone()).set_state("S").await.unwrap();
        db.close().await.unwrap();
        assert!(matches!(
            db.storage().get_state(&key).await,
            Err(Error::Closed)
        ));
    }
}
