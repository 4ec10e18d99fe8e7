//! sqlx errors as fsmstore errors, and what kind of failure each is for `call.rs`.

use fsmstore_core::Error;
use sqlx::mysql::MySqlDatabaseError;

/// InnoDB chose this transaction as a deadlock victim and rolled it back.
pub(crate) const ER_LOCK_DEADLOCK: u16 = 1213;
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
/// Galera: "WSREP has not yet prepared node for application use": a node cut off from the
/// cluster (or still joining) refuses statements; nothing was applied.
const ER_UNKNOWN_COM_ERROR: u16 = 1047;

/// The server's error number of `err`, if the server sent one.
pub(crate) fn error_number(err: &sqlx::Error) -> Option<u16> {
    match err {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(MySqlDatabaseError::number),
        _ => None,
    }
}

/// A duplicate key.
pub(crate) const ER_DUP_ENTRY: u16 = 1062;

/// What kind of failure a sqlx error is, for mapping and for `call.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The socket failed (I/O or protocol error): whatever was sent may or may not have
    /// been executed.
    ConnectionLost,
    /// The server ended the session or aborted the statement and said so (`KILL`,
    /// shutdown, an idle disconnect): the statement was not applied.
    SessionAborted,
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
                | ER_CLIENT_INTERACTION_TIMEOUT => Failure::SessionAborted,
                ER_CON_COUNT_ERROR
                | ER_TOO_MANY_USER_CONNECTIONS
                | ER_USER_LIMIT_REACHED
                | ER_UNKNOWN_COM_ERROR => Failure::Unreachable,
                _ => Failure::Other,
            },
            None => Failure::Other,
        },
        _ => Failure::Other,
    }
}

/// Maps an error of opening a connection: the server's refusal of the login or of the
/// database name is permanent; a socket that could not connect (or a TLS handshake that
/// failed) is a transient connection error that says why ("Connection refused").
pub(crate) fn from_connect(err: sqlx::Error) -> Error {
    match &err {
        sqlx::Error::Io(_) => Error::connection("could not connect to MySQL", Some(Box::new(err))),
        _ => from_sqlx(err),
    }
}

/// Maps a sqlx error: a lost or unreachable connection is [`Error::Connection`]
/// (transient), a deadlock or lock wait timeout a transient [`Error::Database`], a closed
/// pool [`Error::Closed`], a bad URL [`Error::Config`], anything else a permanent
/// [`Error::Database`]. sqlx's messages never contain the password.
pub(crate) fn from_sqlx(err: sqlx::Error) -> Error {
    match classify(&err) {
        Failure::ConnectionLost | Failure::SessionAborted => {
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
}
