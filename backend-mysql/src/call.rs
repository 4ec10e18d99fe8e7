//! Running one storage call: on a stashed or pooled connection, with dead connections
//! replaced before a write is sent, conflicts run again under core's [`retry`] policy, and a
//! write whose reply was lost reported as [`Error::OutcomeUnknown`], never replayed.

use std::time::Duration;

use fsmstore_core::{retry, Error, Result, Storage};
use futures_util::future::BoxFuture;
use sqlx::mysql::MySqlConnection;
use sqlx::Connection;

use crate::error::{classify, from_sqlx, Failure};
use crate::storage::MysqlStorage;

/// A write on a connection idle at least this long is preceded by a ping: a connection the
/// server dropped while idle (restart, `wait_timeout`, `KILL`) is found before the write is
/// sent, so the write can go to another connection instead of ending with an unknown
/// outcome. Busy connections skip the round trip.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Where a failed call stopped.
pub(crate) enum Failed {
    /// Before anything was applied: a statement that writes nothing, or a statement of a
    /// transaction the server rolls back when the connection dies.
    Before(sqlx::Error),
    /// At the statement that applies the call (its single write, or `COMMIT`).
    Applying(sqlx::Error),
}

/// The result of one attempt of a call.
pub(crate) type Attempt<T> = std::result::Result<T, Failed>;

/// Marks where a driver result sits in a call.
pub(crate) trait Phase<T> {
    /// A statement before anything is applied.
    fn before(self) -> Attempt<T>;
    /// The statement that applies the call.
    fn applying(self) -> Attempt<T>;
}

impl<T> Phase<T> for sqlx::Result<T> {
    fn before(self) -> Attempt<T> {
        self.map_err(Failed::Before)
    }

    fn applying(self) -> Attempt<T> {
        self.map_err(Failed::Applying)
    }
}

/// Whether a call writes (a write after a long idle pings first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// One attempt of a call on a connection, with its arguments. A plain function of its
/// arguments (no captures), so the future borrows only the connection and the arguments.
pub(crate) type Op<A, T> = for<'c> fn(&'c mut MySqlConnection, &'c A) -> BoxFuture<'c, Attempt<T>>;

impl MysqlStorage {
    /// Runs `op` with `args`: conflicts again under the storage's retry policy, the rest as
    /// [`MysqlStorage::attempt`] decides.
    pub(crate) async fn call<A: Sync, T>(
        &self,
        operation: &'static str,
        access: Access,
        args: A,
        op: Op<A, T>,
    ) -> Result<T> {
        let policy = self.options().retry;
        retry(&policy, operation, || {
            self.attempt(operation, access, &args, op)
        })
        .await
    }

    /// One attempt: a connection found dead before the call applied anything is replaced
    /// (at most `pool_max + 1` times: the pool may hold that many dead idle connections);
    /// a connection lost while applying is [`Error::OutcomeUnknown`], unless the server
    /// said it aborted the statement.
    async fn attempt<A: Sync, T>(
        &self,
        operation: &'static str,
        access: Access,
        args: &A,
        op: Op<A, T>,
    ) -> Result<T> {
        let inner = &*self.inner;
        let mut lost = None;
        for _ in 0..=inner.config.options.pool_max {
            if inner.closed.load(std::sync::atomic::Ordering::Acquire) {
                return Err(Error::Closed);
            }
            // Waiting for a connection already retried until the connect timeout.
            let host = inner.failover.current();
            let (mut conn, idle) = match inner.stash.checkout(&inner.pool).await {
                Ok(checked_out) => checked_out,
                Err(err)
                    if inner.failover.can_move()
                        && matches!(
                            classify(&err),
                            Failure::Unreachable | Failure::ConnectionLost
                        ) =>
                {
                    // The host is down: the next connection goes to the next host.
                    inner
                        .failover
                        .move_from(host, &[&inner.pool, &inner.lock_pool]);
                    lost = Some(err);
                    continue;
                }
                Err(err) => return Err(from_sqlx(err)),
            };
            if access == Access::Write && idle >= PING_AFTER_IDLE {
                if let Err(err) = conn.ping().await {
                    inner
                        .failover
                        .move_from(host, &[&inner.pool, &inner.lock_pool]);
                    tracing::debug!(operation, error = %err, "idle connection was dead; replaced");
                    lost = Some(err);
                    continue;
                }
            }
            let failed = match op(&mut conn, args).await {
                Ok(value) => {
                    inner.stash.checkin(conn);
                    return Ok(value);
                }
                Err(failed) => failed,
            };
            // Not back on the stash: sqlx's release path tests (pings) or closes it.
            drop(conn);
            let (Failed::Before(err) | Failed::Applying(err)) = &failed;
            if classify(err) == Failure::ConnectionLost {
                // The host may be down: new connections try the next one. If it was one
                // connection, the next host serves as well (every host takes writes).
                inner
                    .failover
                    .move_from(host, &[&inner.pool, &inner.lock_pool]);
            }
            match failed {
                Failed::Before(err) | Failed::Applying(err)
                    if classify(&err) == Failure::SessionAborted =>
                {
                    tracing::debug!(operation, error = %err, "the server aborted the session; running the call on another connection");
                    lost = Some(err);
                }
                Failed::Before(err) if classify(&err) == Failure::ConnectionLost => {
                    tracing::debug!(operation, error = %err, "connection lost before the call applied anything; replaced");
                    lost = Some(err);
                }
                Failed::Applying(err) if classify(&err) == Failure::ConnectionLost => {
                    return Err(Error::outcome_unknown(operation, err));
                }
                Failed::Before(err) | Failed::Applying(err) => return Err(from_sqlx(err)),
            }
        }
        Err(lost.map_or_else(
            || Error::connection("no live MySQL connection", None),
            from_sqlx,
        ))
    }
}
