//! Per-key isolation on PostgreSQL: a session-level advisory lock (`pg_advisory_lock`) on
//! a connection held for the guard's life, from a pool of its own (a handler holding a
//! lock still finds connections for its storage calls).
//!
//! Waiters of one key in this process queue on an in-process lock first, so only one of
//! them at a time holds a lock-pool connection (waiters of a busy key can not use up the
//! pool). The wait is bounded by the isolation timeout in all: in process, then on the
//! server under `lock_timeout` (SQLSTATE 55P03 → [`Error::LockTimeout`]). The
//! guard unlocks on drop (in a task of the runtime) and the connection goes back to the
//! lock pool; if unlocking fails, or there is no runtime, the connection is closed
//! instead, which ends the session and frees the lock. A wait cancelled half-way closes
//! its connection the same way. A holder whose session dies (killed, network gone) loses
//! the lock: the server frees what a session held when it ends.

use std::sync::Arc;
use std::time::Instant;

use crate::pooled::{Object, Pool};
use async_trait::async_trait;
use fsmstore_core::sql::KeyLock;
use fsmstore_core::{
    lock_timeout, Error, Isolation, LocalIsolation, LockGuard, Result, StorageKey, StorageOptions,
    LOCK_ANSWER_GRACE,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::SimpleQueryMessage;

use crate::config::Pooler;
use crate::connections::Connections;
use crate::error::{from_pg, from_pool};

/// [`Isolation`] over advisory locks.
pub(crate) struct PgIsolation {
    pub(crate) pool: Pool,
    pub(crate) options: StorageOptions,
    pub(crate) pooler: Pooler,
    /// This process's queue per key, in front of the server's lock.
    pub(crate) local: LocalIsolation,
}

impl std::fmt::Debug for PgIsolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgIsolation")
            .field("table", &self.options.table)
            .field("timeout", &self.options.isolation_timeout)
            .finish()
    }
}

/// Closes (instead of pooling) a connection whose lock request may still be pending, and
/// asks the server to cancel the request (a backend blocked in a lock wait does not notice
/// a closed socket until it gets the lock).
struct Waiting(Option<Object>);

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            let cancel = object.cancel_token();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = cancel.cancel_query(tokio_postgres::NoTls).await;
                });
            }
            drop(Object::take(object));
        }
    }
}

/// A held advisory lock, and this process's lock of the key (released after it).
struct Held {
    object: Option<Object>,
    unlock: String,
    _local: LockGuard,
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(object) = self.object.take() else {
            return;
        };
        let unlock = std::mem::take(&mut self.unlock);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if object.simple_query(&unlock).await.is_err() {
                        drop(Object::take(object));
                    }
                });
            }
            // No runtime to unlock on: ending the session frees the lock.
            Err(_) => drop(Object::take(object)),
        }
    }
}

#[async_trait]
impl Isolation for PgIsolation {
    async fn lock(&self, key: &StorageKey) -> Result<LockGuard> {
        let id = self.options.row_id(key)?;
        let timeout = self.options.isolation_timeout;
        let (local, remaining) = self.local.lock_in_front(key).await?;
        let deadline = Instant::now() + remaining;
        // Every wait is bounded by what is left of the isolation timeout: a lock pool used
        // up by held locks (it once waited the connect timeout and answered `Connection`),
        // the server's lock wait (`lock_timeout`), and, on the client, a pooler queueing
        // the statement or a host gone silent.
        let object = match tokio::time::timeout(
            self.local.connection_wait(remaining),
            self.pool.get(),
        )
        .await
        {
            Ok(object) => object.map_err(from_pool)?,
            Err(_) => return Err(lock_timeout(&id, timeout)),
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let statements = if self.pooler.unnamed_statements() {
            KeyLock::postgres_in_transaction(&self.options.table, &id, remaining)
        } else {
            KeyLock::postgres(&self.options.table, &id, remaining)
        };
        let mut waiting = Waiting(Some(object));
        let client = waiting.0.as_ref().ok_or(Error::Closed)?;
        let answer = tokio::time::timeout(
            remaining + LOCK_ANSWER_GRACE,
            client.simple_query(&statements.lock),
        )
        .await;
        // The server did not answer in time: `waiting` closes the connection and cancels
        // the request.
        let Ok(answer) = answer else {
            return Err(lock_timeout(&id, timeout));
        };
        match answer {
            Ok(messages) => {
                let session = messages.iter().find_map(|message| match message {
                    SimpleQueryMessage::Row(row) => row.get(1).and_then(|pid| pid.parse().ok()),
                    _ => None,
                });
                Ok(LockGuard::new(
                    Held {
                        object: waiting.0.take(),
                        unlock: statements.unlock,
                        _local: local,
                    },
                    session,
                ))
            }
            Err(err) if err.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                // The batch rolled back (its `SET` too): the connection is clean. Behind a
                // transaction pooler the batch's own transaction is left aborted: end it.
                if self.pooler.unnamed_statements()
                    && client.batch_execute("ROLLBACK").await.is_err()
                {
                    return Err(lock_timeout(&id, timeout));
                }
                drop(waiting.0.take());
                Err(lock_timeout(&id, timeout))
            }
            Err(err) => Err(from_pg(err)),
        }
    }
}

/// The isolation of a storage: its own pool, as large as the storage's.
pub(crate) fn isolation(conns: &Connections) -> Arc<dyn Isolation> {
    let options = &conns.config().options;
    Arc::new(PgIsolation {
        pool: conns.lock_pool().clone(),
        pooler: conns.config().pooler,
        options: options.clone(),
        local: LocalIsolation::new(options.clone()),
    })
}
