//! rusqlite errors as fsmstore errors.

use fsmstore_core::Error;
use rusqlite::ErrorCode;

/// Maps a rusqlite error: busy/locked databases are transient, a file that can not be
/// opened is a connection error, everything else a database error.
pub(crate) fn from_sqlite(err: rusqlite::Error) -> Error {
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::database(true, err),
        Some(ErrorCode::CannotOpen | ErrorCode::NotADatabase | ErrorCode::PermissionDenied) => {
            Error::connection("could not open the SQLite database", Some(Box::new(err)))
        }
        _ => Error::database(false, err),
    }
}

/// A task of the blocking pool that panicked or was cancelled.
pub(crate) fn from_join(err: tokio::task::JoinError) -> Error {
    if err.is_panic() {
        Error::database(false, format!("SQLite call panicked: {err}"))
    } else {
        Error::connection("SQLite call was cancelled (runtime shutting down)", None)
    }
}
