//! rusqlite errors as fsmstore errors.

use fsmstore_core::Error;
use rusqlite::ErrorCode;

/// Maps a rusqlite error: busy/locked databases are transient (another connection holds
/// the lock; retrying helps); everything else is permanent, including a file that can not
/// be opened, is not a database or may not be written (retrying the same call can not
/// fix it).
pub(crate) fn from_sqlite(err: rusqlite::Error) -> Error {
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::database(true, err),
        Some(
            code @ (ErrorCode::CannotOpen
            | ErrorCode::NotADatabase
            | ErrorCode::PermissionDenied
            | ErrorCode::ReadOnly
            | ErrorCode::DatabaseCorrupt),
        ) => Error::database(false, FileError { code, source: err }),
        _ => Error::database(false, err),
    }
}

/// A database file fsmstore can not use, with what to check.
#[derive(Debug)]
struct FileError {
    code: ErrorCode,
    source: rusqlite::Error,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.code {
            ErrorCode::CannotOpen => {
                "can not open the SQLite file (does it, or for a new file its folder, exist?)"
            }
            ErrorCode::NotADatabase => "the file is not a SQLite database",
            ErrorCode::PermissionDenied | ErrorCode::ReadOnly => {
                "the SQLite file is read-only here (opened with mode=ro, or the file or its folder is not writable)"
            }
            _ => "the SQLite file is corrupt",
        };
        write!(f, "{what}: {}", self.source)
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: std::os::raw::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn busy_and_locked_are_transient_the_rest_permanent() {
        assert!(from_sqlite(failure(rusqlite::ffi::SQLITE_BUSY)).is_transient());
        assert!(from_sqlite(failure(rusqlite::ffi::SQLITE_LOCKED)).is_transient());
        assert!(!from_sqlite(failure(rusqlite::ffi::SQLITE_CONSTRAINT)).is_transient());
        let readonly = from_sqlite(failure(rusqlite::ffi::SQLITE_READONLY));
        assert!(!readonly.is_transient());
        assert!(
            readonly.to_string().contains("read-only here"),
            "{readonly}"
        );
    }
}
