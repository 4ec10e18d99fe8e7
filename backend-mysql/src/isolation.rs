//! Per-key isolation on MySQL / MariaDB: `GET_LOCK` under a name of 29 characters derived
//! from the table and the row id ([`KeyLock::mysql`]), on a connection held for the
//! guard's life, from a pool of its own (a handler holding a lock still finds connections
//! for its storage calls).
//!
//! Waiters of one key in this process queue on an in-process lock first, so only one of
//! them at a time holds a lock-pool connection. `GET_LOCK` then waits what is left of the
//! isolation timeout, rounded up to whole seconds (MySQL 8 reads the timeout as an
//! integer); 0 → [`Error::LockTimeout`]. The guard
//! runs `RELEASE_LOCK` on drop (in a task of the runtime) and the connection goes back to
//! the lock pool; if that fails, or there is no runtime, the connection is closed instead,
//! which frees the lock. A wait cancelled half-way closes its connection the same way. A
//! holder whose session dies (`KILL`, network gone) loses the lock: the server frees the
//! locks of a session that ends.

use async_trait::async_trait;
use fsmstore_core::sql::KeyLock;
use fsmstore_core::{
    lock_timeout, Error, Isolation, LocalIsolation, LockGuard, Result, StorageKey, StorageOptions,
    LOCK_ANSWER_GRACE,
};
use sqlx::mysql::{MySql, MySqlPool};
use sqlx::pool::PoolConnection;
use sqlx::{AssertSqlSafe, Row};
use std::sync::Arc;
use std::time::Instant;

use crate::connections::Connections;
use crate::error::from_sqlx;

/// [`Isolation`] over `GET_LOCK`.
struct MysqlIsolation {
    pool: MySqlPool,
    options: StorageOptions,
    /// This process's queue per key, in front of the server's lock.
    local: LocalIsolation,
}

/// The isolation of a storage on `conns`: locks on its lock pool, none after it closed.
pub(crate) fn isolation(conns: &Arc<Connections>) -> Arc<dyn Isolation> {
    let options = conns.config().options.clone();
    Arc::new(MysqlIsolation {
        pool: conns.lock_pool().clone(),
        // Closed (the lock pool closes in the background): no more locks.
        local: LocalIsolation::new(options.clone()).while_open({
            let conns = Arc::clone(conns);
            move || !conns.is_closed()
        }),
        options,
    })
}

impl std::fmt::Debug for MysqlIsolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlIsolation")
            .field("table", &self.options.table)
            .field("timeout", &self.options.isolation_timeout)
            .finish()
    }
}

/// Closes (instead of pooling) a connection whose `GET_LOCK` may still be pending.
struct Waiting(Option<PoolConnection<MySql>>);

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            close(conn);
        }
    }
}

/// Closes `conn` instead of returning it to the pool; without a runtime (sqlx's close
/// needs one) its socket is just dropped, which ends the session all the same.
fn close(mut conn: PoolConnection<MySql>) {
    if tokio::runtime::Handle::try_current().is_ok() {
        conn.close_on_drop();
    } else {
        drop(conn.detach());
    }
}

/// A held `GET_LOCK`, and this process's lock of the key (released after it).
struct Held {
    conn: Option<PoolConnection<MySql>>,
    unlock: String,
    name: String,
    _local: LockGuard,
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let (unlock, name) = (
            std::mem::take(&mut self.unlock),
            std::mem::take(&mut self.name),
        );
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let mut conn = conn;
                    let released = sqlx::query(AssertSqlSafe(unlock))
                        .bind(name)
                        .fetch_one(&mut *conn)
                        .await;
                    if released.is_err() {
                        close(conn);
                    }
                });
            }
            // No runtime to release on: ending the session frees the lock.
            Err(_) => close(conn),
        }
    }
}

#[async_trait]
impl Isolation for MysqlIsolation {
    async fn lock(&self, key: &StorageKey) -> Result<LockGuard> {
        let id = self.options.row_id(key)?;
        let timeout = self.options.isolation_timeout;
        let (local, remaining) = self.local.lock_in_front(key).await?;
        let deadline = Instant::now() + remaining;
        let statements = KeyLock::mysql(&self.options.table, &id);
        // Every wait is bounded by what is left of the isolation timeout: a lock pool used
        // up by held locks (it once waited the connect timeout and answered `Connection`),
        // `GET_LOCK` (in fractional seconds: it once rounded 300 ms up to a whole second;
        // 0 tries without waiting), and, on the client, a host gone silent.
        let conn =
            match tokio::time::timeout(self.local.connection_wait(remaining), self.pool.acquire())
                .await
            {
                Ok(conn) => conn.map_err(from_sqlx)?,
                Err(_) => return Err(lock_timeout(&id, timeout)),
            };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let mut waiting = Waiting(Some(conn));
        let conn = waiting.0.as_mut().ok_or(Error::Closed)?;
        let query = sqlx::query(AssertSqlSafe(statements.lock.clone()))
            .bind(&statements.name)
            .bind(remaining.as_secs_f64())
            .fetch_one(&mut **conn);
        // The server did not answer in time: `waiting` closes the connection.
        let Ok(row) = tokio::time::timeout(remaining + LOCK_ANSWER_GRACE, query).await else {
            return Err(lock_timeout(&id, timeout));
        };
        let row = row.map_err(from_sqlx)?;
        let taken: Option<i64> = row.try_get(0).map_err(from_sqlx)?;
        let session: u64 = row.try_get(1).map_err(from_sqlx)?;
        match taken {
            Some(1) => Ok(LockGuard::new(
                Held {
                    conn: waiting.0.take(),
                    unlock: statements.unlock,
                    name: statements.name,
                    _local: local,
                },
                i64::try_from(session).ok(),
            )),
            Some(0) => {
                // Nothing held: the connection is clean.
                drop(waiting.0.take());
                Err(lock_timeout(&id, timeout))
            }
            _ => Err(Error::database(
                false,
                format!("GET_LOCK({:?}) failed", statements.name),
            )),
        }
    }
}
