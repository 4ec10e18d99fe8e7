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

/// Whether `err`, from waiting for a pooled connection, means the host could not be
/// reached: it refused, or the wait timed out while the pool had room to open a connection
/// (a busy pool also times out, with every connection in use: that is no reason to move).
fn connect_failed(pool: &sqlx::MySqlPool, err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut => pool.size() < pool.options().get_max_connections(),
        other => matches!(
            classify(other),
            Failure::Unreachable | Failure::ConnectionLost
        ),
    }
}

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

    /// After a connection to host `host` was lost: moves to the next host if that one takes
    /// no fresh connection either (there being another host).
    async fn move_if_down(&self, host: usize) {
        let inner = &*self.inner;
        if inner.failover.can_move()
            && inner.failover.current() == host
            && !inner.failover.answers(host).await
        {
            inner
                .failover
                .move_from(host, &[&inner.pool, &inner.lock_pool]);
        }
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
                // No fresh connection to the current host could be opened (the pool had
                // room: the wait was for connecting, not for a busy pool), or it refused:
                // the next connection goes to the next host. Lost connections alone never
                // move the storage (an idle timeout or a `KILL` ends one connection, not
                // the node).
                Err(err) if inner.failover.can_move() && connect_failed(&inner.pool, &err) => {
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
                    self.move_if_down(host).await;
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
                self.move_if_down(host).await;
            }
            match failed {
                // A Galera node cut off from the cluster still answers, but refuses every
                // statement (1047, not applied): move to the next host.
                Failed::Before(err) | Failed::Applying(err)
                    if inner.failover.can_move() && classify(&err) == Failure::Unreachable =>
                {
                    inner
                        .failover
                        .move_from(host, &[&inner.pool, &inner.lock_pool]);
                    lost = Some(err);
                }
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
