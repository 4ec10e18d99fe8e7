//! sqlx errors as fsmstore errors, and which of them the backend retries by itself.

use std::time::Duration;

use fsmstore_core::Error;
use sqlx::mysql::MySqlDatabaseError;

/// InnoDB chose this transaction as a deadlock victim and rolled it back.
const ER_LOCK_DEADLOCK: u16 = 1213;
/// `innodb_lock_wait_timeout` expired (the statement, or with
/// `innodb_rollback_on_timeout` the transaction, was rolled back).
const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
/// The server is shutting down.
const ER_SERVER_SHUTDOWN: u16 = 1053;
/// The statement was interrupted (`KILL QUERY`, or `KILL` during a statement on MySQL).
const ER_QUERY_INTERRUPTED: u16 = 1317;
/// MariaDB: this connection was killed (`KILL <id>`), sent to the killed session.
const ER_CONNECTION_KILLED: u16 = 1927;
/// MySQL 8.0.24+: the server closed an idle connection (`wait_timeout`).
const ER_CLIENT_INTERACTION_TIMEOUT: u16 = 4031;
/// Too many connections (server-wide or for this user).
const ER_CON_COUNT_ERROR: u16 = 1040;
const ER_TOO_MANY_USER_CONNECTIONS: u16 = 1203;
const ER_USER_LIMIT_REACHED: u16 = 1226;

/// What kind of failure a sqlx error is, for mapping and for the backend's retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The connection died (or the server is going away): the same call on a fresh
    /// connection may succeed.
    ConnectionLost,
    /// No connection could be had (refused, pool timeout, too many connections).
    Unreachable,
    /// Deadlock or lock wait timeout: the transaction was rolled back, run it again.
    LockConflict,
    /// The pool was closed by `close()`.
    Closed,
    /// Anything else: not retried.
    Other,
}

/// Classifies `err`.
pub(crate) fn classify(err: &sqlx::Error) -> Failure {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => {
            Failure::ConnectionLost
        }
        sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => Failure::Unreachable,
        sqlx::Error::PoolClosed => Failure::Closed,
        sqlx::Error::Database(db) => match db.try_downcast_ref::<MySqlDatabaseError>() {
            Some(db) => match db.number() {
                ER_LOCK_DEADLOCK | ER_LOCK_WAIT_TIMEOUT => Failure::LockConflict,
                ER_SERVER_SHUTDOWN
                | ER_QUERY_INTERRUPTED
                | ER_CONNECTION_KILLED
                | ER_CLIENT_INTERACTION_TIMEOUT => Failure::ConnectionLost,
                ER_CON_COUNT_ERROR | ER_TOO_MANY_USER_CONNECTIONS | ER_USER_LIMIT_REACHED => {
                    Failure::Unreachable
                }
                _ => Failure::Other,
            },
            None => Failure::Other,
        },
        _ => Failure::Other,
    }
}

/// Maps a sqlx error: a lost or unreachable connection is [`Error::Connection`]
/// (transient), a deadlock or lock wait timeout a transient [`Error::Database`], a closed
/// pool [`Error::Closed`], a bad URL [`Error::Config`], anything else a permanent
/// [`Error::Database`]. sqlx's messages never contain the password.
pub(crate) fn from_sqlx(err: sqlx::Error) -> Error {
    match classify(&err) {
        Failure::ConnectionLost => {
            Error::connection("lost the connection to MySQL", Some(Box::new(err)))
        }
        Failure::Unreachable => {
            Error::connection("could not get a connection to MySQL", Some(Box::new(err)))
        }
        Failure::LockConflict => Error::database(true, err),
        Failure::Closed => Error::Closed,
        Failure::Other => match err {
            sqlx::Error::Configuration(source) => {
                Error::Config(format!("invalid MySQL settings: {source}"))
            }
            other => Error::database(false, other),
        },
    }
}

/// Runs `$work` (an expression using `$conn: &mut MySqlConnection`, giving a future of
/// `sqlx::Result<T>`) on a pooled connection of `$storage`; again on another connection when
/// the first died under it, and again after a short jittered pause when InnoDB rolled it
/// back for a deadlock or a lock wait timeout (see [`retry_after`]). Every call of the
/// storage is idempotent and a failed transaction was rolled back, so running it again is
/// safe. A macro rather than a function taking an async closure: the futures must stay
/// `Send` for `async_trait`, which the compiler can not prove through `AsyncFnMut`.
macro_rules! retrying {
    ($storage:expr, |$conn:ident| $work:expr) => {{
        let inner = &*$storage.inner;
        let mut attempt = 0_u32;
        loop {
            if inner.closed.load(::std::sync::atomic::Ordering::Acquire) {
                break Err(::fsmstore_core::Error::Closed);
            }
            attempt += 1;
            // Waiting for a connection already retried until the connect timeout.
            let mut pooled = match inner.stash.checkout(&inner.pool).await {
                Ok(pooled) => pooled,
                Err(err) => break Err($crate::error::from_sqlx(err)),
            };
            let result = {
                let $conn: &mut ::sqlx::mysql::MySqlConnection = &mut pooled;
                $work.await
            };
            let err = match result {
                Ok(value) => {
                    inner.stash.checkin(pooled);
                    break Ok(value);
                }
                Err(err) => err,
            };
            // Not back on the stash: sqlx's release path tests (pings) or closes it.
            drop(pooled);
            let failure = $crate::error::classify(&err);
            match $crate::error::retry_after(failure, attempt, inner.config.options.pool_max) {
                Some(pause) => {
                    ::tracing::debug!(attempt, ?failure, error = %err, "mysql call retried");
                    if !pause.is_zero() {
                        ::tokio::time::sleep(pause).await;
                    }
                }
                None => break Err($crate::error::from_sqlx(err)),
            }
        }
    }};
}

/// How often a call is attempted at most when it meets a deadlock or a lock wait timeout.
pub(crate) const LOCK_CONFLICT_ATTEMPTS: u32 = 12;

/// Whether a call that failed with `failure` on attempt `attempt` (1-based) runs again, and
/// after which pause. Lost connections are retried at once, up to `pool_max + 1` times (a
/// pool may hold that many dead idle connections after a server restart or `KILL`); lock
/// conflicts after a short, growing, jittered pause. Every call of this backend is
/// idempotent (set, clear, or a merge that gives the same result when applied twice), so
/// running it again after an unknown outcome is safe.
pub(crate) fn retry_after(failure: Failure, attempt: u32, pool_max: u32) -> Option<Duration> {
    match failure {
        Failure::ConnectionLost if attempt <= pool_max.saturating_add(1) => Some(Duration::ZERO),
        Failure::LockConflict if attempt < LOCK_CONFLICT_ATTEMPTS => {
            let ceiling_ms = 2_u64 << attempt.min(6); // 4, 8, …, 128 ms
            Some(Duration::from_millis(1 + jitter() % ceiling_ms))
        }
        _ => None,
    }
}

/// A cheap pseudo-random number (no `rand` dependency): spreads retries of concurrent
/// deadlock victims apart.
fn jitter() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or_default();
    let mut x = STATE.fetch_add(nanos | 1, Ordering::Relaxed) ^ nanos;
    // xorshift64*
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_transient_connection_errors() {
        let err = from_sqlx(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "eof",
        )));
        assert!(matches!(err, Error::Connection { .. }) && err.is_transient());
        assert!(from_sqlx(sqlx::Error::PoolTimedOut).is_transient());
        assert!(matches!(from_sqlx(sqlx::Error::PoolClosed), Error::Closed));
        assert!(!from_sqlx(sqlx::Error::RowNotFound).is_transient());
    }

    #[test]
    fn retries_are_bounded() {
        assert_eq!(
            retry_after(Failure::ConnectionLost, 1, 4),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(Failure::ConnectionLost, 6, 4), None);
        for attempt in 1..LOCK_CONFLICT_ATTEMPTS {
            let pause = retry_after(Failure::LockConflict, attempt, 4).unwrap();
            assert!(pause <= Duration::from_millis(129), "{pause:?}");
        }
        assert_eq!(
            retry_after(Failure::LockConflict, LOCK_CONFLICT_ATTEMPTS, 4),
            None
        );
        assert_eq!(retry_after(Failure::Other, 1, 4), None);
        assert_eq!(retry_after(Failure::Unreachable, 1, 4), None);
    }
}
