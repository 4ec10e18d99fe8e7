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

    /// After a connection to host `host` failed: moves to the next host if that one takes
    /// no fresh connection either (there being another host); returns whether it moved.
    async fn move_if_down(&self, host: usize) -> bool {
        let inner = &*self.inner;
        if inner.failover.can_move()
            && inner.failover.current() == host
            && !inner.failover.answers(host).await
        {
            inner
                .failover
                .move_from(host, &[&inner.pool, &inner.lock_pool]);
            return true;
        }
        false
    }

    /// One attempt: a connection found dead before the call applied anything is replaced
    /// (at most `pool_max + 1` times: the pool may hold that many dead idle connections);
    /// a connection lost while applying is [`Error::OutcomeUnknown`], unless the server
    /// said it aborted the statement. With failover hosts, a host that takes no fresh
    /// connection is left for the next one (at most once per host in a call).
    async fn attempt<A: Sync, T>(
        &self,
        operation: &'static str,
        access: Access,
        args: &A,
        op: Op<A, T>,
    ) -> Result<T> {
        let inner = &*self.inner;
        let mut lost = None;
        let mut moves = 0;
        for _ in 0..=inner.config.options.pool_max {
            if inner.closed.load(std::sync::atomic::Ordering::Acquire) {
                return Err(Error::Closed);
            }
            if moves >= inner.failover.len() {
                // Every host was tried in this call.
                break;
            }
            // Waiting for a connection already retried until the connect timeout.
            let host = inner.failover.current();
            let (mut conn, idle) = match inner.stash.checkout(&inner.pool).await {
                Ok(checked_out) => checked_out,
                // No connection came: if the current host takes no fresh one either
                // (refused, silent, not ready), the next connection goes to the next host.
                // A busy pool also times out; its host still answers, and the storage stays.
                Err(err)
                    if inner.failover.can_move()
                        && matches!(
                            classify(&err),
                            Failure::Unreachable | Failure::ConnectionLost
                        ) =>
                {
                    if !self.move_if_down(host).await {
                        return Err(from_sqlx(err));
                    }
                    moves += 1;
                    lost = Some(err);
                    continue;
                }
                Err(err) => return Err(from_sqlx(err)),
            };
            // Every answer is waited for at most `call_timeout`, whatever the server does:
            // a host gone silent (packets dropped, nothing refused) is left as a dead one
            // is: its connection closed, the storage moved when the host takes no fresh one.
            let deadline = inner.config.options.call_timeout;
            if access == Access::Write && idle >= PING_AFTER_IDLE {
                let Ok(pinged) = tokio::time::timeout(deadline, conn.ping()).await else {
                    conn.close_on_drop();
                    drop(conn);
                    self.move_if_down(host).await;
                    return Err(Error::no_answer(operation, "MySQL", deadline, false));
                };
                if let Err(err) = pinged {
                    if self.move_if_down(host).await {
                        moves += 1;
                    }
                    tracing::debug!(operation, error = %err, "idle connection was dead; replaced");
                    lost = Some(err);
                    continue;
                }
            }
            let Ok(answer) = tokio::time::timeout(deadline, op(&mut conn, args)).await else {
                conn.close_on_drop();
                drop(conn);
                self.move_if_down(host).await;
                return Err(Error::no_answer(
                    operation,
                    "MySQL",
                    deadline,
                    access == Access::Write,
                ));
            };
            let failed = match answer {
                Ok(value) => {
                    inner.stash.checkin(conn);
                    return Ok(value);
                }
                Err(failed) => failed,
            };
            let (Failed::Before(err) | Failed::Applying(err)) = &failed;
            let failure = classify(err);
            if failure == Failure::Unreachable {
                // A node cut off from the cluster (1047) still answers pings: this
                // connection must not go back to the pool.
                conn.close_on_drop();
            }
            // Not back on the stash: sqlx's release path tests (pings) or closes it.
            drop(conn);
            // A lost connection alone (an idle timeout, a `KILL`) does not move the storage:
            // a host that takes no fresh connection does.
            if matches!(failure, Failure::ConnectionLost | Failure::Unreachable)
                && self.move_if_down(host).await
            {
                moves += 1;
            }
            match failed {
                // A Galera node cut off from the cluster answers, but refuses every
                // statement (1047, nothing applied): run the call again, on the next host
                // if this one is not ready.
                Failed::Before(err) | Failed::Applying(err)
                    if inner.failover.can_move() && classify(&err) == Failure::Unreachable =>
                {
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
