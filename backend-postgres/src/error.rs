//! tokio-postgres and pool errors as fsmstore errors.

use crate::pooled::PoolError;
use fsmstore_core::{Error, Failure};
use tokio_postgres::error::SqlState;

/// Classifies `err`.
pub(crate) fn classify(err: &tokio_postgres::Error) -> Failure {
    match err.code() {
        Some(code) if is_connection_state(code) => Failure::SessionAborted,
        Some(_) => Failure::Other,
        // No SQLSTATE: the connection closed, or the socket failed...
        None if err.is_closed() || io_source(err) => Failure::ConnectionLost,
        // ...or the client refused something itself (a value that does not convert, a
        // row count, a parameter count): our bug or the caller's input, not the network.
        None => Failure::Other,
    }
}

/// An error the server sent, shown with its severity, SQLSTATE and message
/// (tokio-postgres' own text is just "db error").
#[derive(Debug)]
struct ServerError(tokio_postgres::Error);

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => {
                write!(
                    f,
                    "{} {}: {}",
                    db.severity(),
                    db.code().code(),
                    db.message()
                )?;
                if let Some(detail) = db.detail() {
                    write!(f, " ({detail})")?;
                }
                Ok(())
            }
            None => write!(f, "{}", self.0),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Whether `err` was caused by an I/O error (the socket failed).
fn io_source(err: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Maps a driver error. A closed connection, an I/O failure or a server shutting the
/// session down (`pg_terminate_backend`, restart) is a transient connection error;
/// serialization failures and deadlocks are transient database errors.
pub(crate) fn from_pg(err: tokio_postgres::Error) -> Error {
    if err.is_closed() {
        return Error::connection("the PostgreSQL connection was closed", Some(Box::new(err)));
    }
    match err.code() {
        Some(code) if is_connection_state(code) => Error::connection(
            "the PostgreSQL server ended the session",
            Some(Box::new(err)),
        ),
        Some(code) => {
            let transient = *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::LOCK_NOT_AVAILABLE;
            Error::database(transient, ServerError(err))
        }
        None if classify(&err) == Failure::ConnectionLost => {
            Error::connection("PostgreSQL connection failed", Some(Box::new(err)))
        }
        // Refused by the client itself (conversion, row or parameter count): permanent.
        None => Error::database(false, err),
    }
}

/// Reports the row `id` as corrupt when `err` is the server refusing its stored text as
/// JSON (SQLSTATE 22P02, or 22P05 for a `\u0000` `JSONB` can not hold): in the aiogram layout data is text, cast to `JSONB` inside the
/// statement, so text that is not JSON fails the statement rather than the decoding.
/// Any other error is returned as it is.
pub(crate) fn corrupt_text(id: &str, err: Error) -> Error {
    let invalid_json = match &err {
        Error::Database { source, .. } => source
            .downcast_ref::<ServerError>()
            .and_then(|server| server.0.code())
            .is_some_and(|code| {
                // Not JSON; or JSON that `JSONB` can not hold (`\u0000`).
                *code == SqlState::INVALID_TEXT_REPRESENTATION
                    || *code == SqlState::UNTRANSLATABLE_CHARACTER
            }),
        _ => false,
    };
    if invalid_json {
        return Error::CorruptData {
            key: id.to_owned(),
            reason: err.to_string(),
        };
    }
    err
}

/// Whether `err` is the server's error with SQLSTATE `state`.
pub(crate) fn has_sqlstate(err: &Error, state: &SqlState) -> bool {
    match err {
        Error::Database { source, .. } => source
            .downcast_ref::<ServerError>()
            .and_then(|server| server.0.code())
            .is_some_and(|code| code == state),
        _ => false,
    }
}

fn is_connection_state(code: &SqlState) -> bool {
    // Class 08 (connection exception) and 57P0x (operator intervention: admin shutdown,
    // crash shutdown, cannot connect now).
    code.code().starts_with("08")
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
}

/// Maps a pool error: a timeout or a failed connect is transient.
pub(crate) fn from_pool(err: PoolError) -> Error {
    match err {
        PoolError::Backend(err) => from_pg(err),
        PoolError::Closed => Error::Closed,
        PoolError::Timeout(kind) => Error::connection(
            format!("no PostgreSQL connection within the pool timeout ({kind:?})"),
            None,
        ),
        other => Error::connection(format!("PostgreSQL pool: {other}"), None),
    }
}
