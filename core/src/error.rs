//! The one error type shared by every fsmstore crate.

use std::error::Error as StdError;

/// A boxed driver error, kept as the `source` of an [`Error`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Result alias used throughout fsmstore.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in fsmstore.
///
/// Driver errors are boxed inside [`Error::Database`] and [`Error::Connection`]; branch on
/// [`Error::kind`] or [`Error::is_transient`] rather than on driver types.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A table name that is not `[A-Za-z_][A-Za-z0-9_]*` of at most 63 characters.
    #[error("invalid table name {name:?}: {reason}")]
    InvalidTableName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A key the key builder can not turn into a row id.
    #[error("invalid storage key: {0}")]
    InvalidKey(String),
    /// A state, data object or field that can not be stored; nothing was written.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Data larger than the configured limit; nothing was written.
    #[error("data for key {key:?} is {size} bytes, over the limit of {limit} bytes; nothing was written")]
    ValueTooLarge {
        /// The row id.
        key: String,
        /// Serialized size in bytes.
        size: usize,
        /// The configured limit (`StorageOptions::max_data_bytes`).
        limit: usize,
    },
    /// A typed helper could not (de)serialize the caller's type.
    #[error("could not convert data: {0}")]
    Serialization(#[source] serde_json::Error),
    /// A row whose stored data is not a JSON object (for example a hand-edited or adopted
    /// table).
    #[error("stored data for key {key:?} is not a JSON object: {reason}")]
    CorruptData {
        /// The row id.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Stored data that does not fit the type the caller reads it as (`get_data_as`,
    /// `get_value_as`, `Dialogue::data_as`): the row is fine, the caller's type is not.
    #[error("the data of row {key:?} does not fit {type_name}: {source}")]
    DataMismatch {
        /// The row id.
        key: String,
        /// The type it was read as.
        type_name: &'static str,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// A stored state that the caller's typed states ([`DialogueState`](crate::DialogueState))
    /// do not name: written by another version of the bot, or by hand.
    #[error("stored state {state:?} is not a state of {type_name}")]
    UnknownState {
        /// The stored state.
        state: String,
        /// The type it was read as.
        type_name: &'static str,
    },
    /// A call that needs an existing row found none (teloxide's `remove_dialogue` of a
    /// dialogue that is not stored, as teloxide's own storages answer).
    #[error("no dialogue is stored under row id {key:?}")]
    NotFound {
        /// The row id.
        key: String,
    },
    /// A per-key lock ([`Isolation::lock`](crate::Isolation::lock)) that did not come
    /// within the isolation timeout: another handler holds the key. Transient.
    #[error("the lock of row id {key:?} did not come within {waited:?}: another handler holds it")]
    LockTimeout {
        /// The row id.
        key: String,
        /// How long the call waited.
        waited: std::time::Duration,
    },
    /// The migration lock did not come within the migrator's lock timeout: another
    /// migrator holds it (named when the database can tell who). Transient: nothing was
    /// changed, and the same call may succeed once the holder is done.
    #[error("the migration lock {lock} did not come within {waited:?}: {}", holder.as_deref().map_or_else(|| "another migrator holds it".to_owned(), |holder| format!("held by {holder}")))]
    MigrationLockTimeout {
        /// The lock's name or key.
        lock: String,
        /// How long the call waited.
        waited: std::time::Duration,
        /// Who holds it (a server session: pid or connection, application, client,
        /// since when), when the database can tell.
        holder: Option<String>,
    },
    /// A configuration or URL that can not be used.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The storage was closed with [`Storage::close`](crate::Storage::close).
    #[error("the storage is closed; open a new one")]
    Closed,
    /// The schema is older than this code needs.
    #[error("{}", outdated_message(.table, *.current, *.required, .fix))]
    SchemaOutdated {
        /// The FSM table.
        table: String,
        /// The applied version (0 when nothing is applied).
        current: i64,
        /// The version the code needs.
        required: i64,
        /// What fixes it (a tool renders it as its own command). Boxed: errors stay small.
        fix: Box<crate::Remedy>,
    },
    /// The FSM table exists, but its version table records no schema version for it: it
    /// was migrated with another version table, or made by another program.
    #[error("table {table} exists, but version table {version_table} records no schema version for it: if fsmstore migrated it with another version table, open it with that one (version_table=…; the default is fsmstore_migrations); if aiogram-sqlalchemy-storage made it, open it with ?layout=aiogram-sqlalchemy, or {fix} and upgrade it")]
    SchemaUnrecorded {
        /// The FSM table.
        table: String,
        /// The version table that has no record of it.
        version_table: String,
        /// Recording version 1 on that version table: the fix when aiogram-sqlalchemy-storage
        /// made the table, and only then (not in [`Error::remedies`]: when the table was
        /// migrated with another version table, the fix is to open it with that one).
        fix: Box<crate::Remedy>,
    },
    /// The database holds a migration this code does not know: it was migrated by a newer
    /// fsmstore.
    #[error("table {table} is at schema version {current}, newer than this code knows (up to {known}): upgrade fsmstore, or downgrade the table to version {known} with the newer version's migrations")]
    SchemaTooNew {
        /// The FSM table.
        table: String,
        /// The applied version.
        current: i64,
        /// The newest version this code knows.
        known: i64,
    },
    /// A feature that needs the `updated_at` column, asked of a storage in the
    /// [`Layout::AiogramSqlalchemy`](crate::Layout::AiogramSqlalchemy) layout, which has none.
    #[error("{feature} needs the updated_at column, which table {table} in the aiogram-sqlalchemy layout (schema version 1) does not have: once no Python bot writes the table, upgrade it to the latest schema version and open it without layout=aiogram-sqlalchemy")]
    LayoutLacks {
        /// What was asked (`expiry (ttl)`, `purge --older-than`, …).
        feature: &'static str,
        /// The FSM table.
        table: String,
    },
    /// The table is at a schema version the storage's layout does not read or write.
    #[error("table {table} is at schema version {current}, but the {layout} layout reads and writes version {expected}: {fix}")]
    LayoutMismatch {
        /// The FSM table.
        table: String,
        /// The layout the storage was opened with.
        layout: crate::Layout,
        /// The applied version.
        current: i64,
        /// The version the layout needs.
        expected: i64,
        /// What to do.
        fix: String,
    },
    /// An applied migration whose SQL differs from the code's.
    #[error("migration {version} ({description}) was applied with checksum {applied}, but the code's SQL has checksum {expected}: the migration was edited after it ran")]
    MigrationDrift {
        /// The migration's version.
        version: i64,
        /// Its description.
        description: String,
        /// The checksum recorded in the version table.
        applied: String,
        /// The checksum of the code's SQL.
        expected: String,
    },
    /// A migration that started but did not finish (MySQL DDL commits as it goes).
    #[error("migration {version} ({description}) is dirty: it started but did not finish. Inspect the table, complete or undo the migration by hand, then {fix} if you completed it, or {undo} if you undid it")]
    MigrationDirty {
        /// The migration's version.
        version: i64,
        /// Its description.
        description: String,
        /// What records the migration as completed (a stamp at its version).
        fix: Box<crate::Remedy>,
        /// What records it as undone (a stamp at the version before).
        undo: Box<crate::Remedy>,
        /// The statement's error, when this run left the migration half-applied (`None`
        /// when a later run finds it dirty).
        #[source]
        source: Option<BoxError>,
    },
    /// A migration target outside the known range, or a version table that does not make
    /// sense.
    #[error("migration error: {0}")]
    Migration(String),
    /// A migration statement failed; the lock was released.
    #[error("migration {version} ({description}) failed: {source}")]
    MigrationFailed {
        /// The migration's version.
        version: i64,
        /// Its description.
        description: String,
        /// The database error.
        #[source]
        source: BoxError,
    },
    /// The server could not be reached or the connection was lost. Transient: retry later.
    #[error("connection error: {message}")]
    Connection {
        /// What failed (never contains a password).
        message: String,
        /// The driver error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The connection was lost after a write was sent and before its reply came: the
    /// write may or may not have been applied. Not transient: running it again blindly
    /// could overwrite a newer write of another handler. Read the key to see where it
    /// stands, then decide.
    #[error("the outcome of {operation} is unknown: the connection was lost after the write was sent ({source})")]
    OutcomeUnknown {
        /// The storage call (`set_state`, `update_data`, …).
        operation: &'static str,
        /// The driver error.
        #[source]
        source: BoxError,
    },
    /// A database error.
    #[error("database error: {source}")]
    Database {
        /// Whether retrying the same call may succeed (deadlock, serialization failure,
        /// busy database).
        transient: bool,
        /// The driver error.
        #[source]
        source: BoxError,
    },
}

/// A coarse classification of [`Error`], for callers that branch on the kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller's input or configuration is wrong.
    InvalidInput,
    /// The schema is missing, outdated, too new, drifted or dirty.
    Schema,
    /// Stored data is not what fsmstore writes.
    CorruptData,
    /// Stored data does not fit the caller's type.
    DataMismatch,
    /// The storage was closed.
    Closed,
    /// A row the call needs does not exist.
    NotFound,
    /// A per-key lock, or the migration lock, did not come in time.
    LockTimeout,
    /// The server is unreachable or the connection was lost.
    Connection,
    /// A write whose reply was lost: it may or may not have been applied.
    OutcomeUnknown,
    /// Any other database error.
    Database,
}

/// The text of [`Error::SchemaOutdated`]: a table that does not exist says so.
fn outdated_message(table: &str, current: i64, required: i64, fix: &crate::Remedy) -> String {
    if current == 0 {
        format!("table {table} has no recorded schema version (this code needs version {required}): if it does not exist yet, {fix} to create it (or open with SchemaPolicy::Upgrade); if aiogram-sqlalchemy-storage made it, record version 1 as applied first (a stamp)")
    } else {
        let python = if current == 1 {
            " If Python bots (aiogram-sqlalchemy-storage) still write it, open it with ?layout=aiogram-sqlalchemy instead: after the upgrade they can no longer write it."
        } else {
            ""
        };
        format!("table {table} is at schema version {current}, this code needs version {required}: {fix} (or open with SchemaPolicy::Upgrade).{python}")
    }
}

impl Error {
    /// The coarse kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidTableName { .. }
            | Error::InvalidKey(_)
            | Error::InvalidInput(_)
            | Error::ValueTooLarge { .. }
            | Error::Serialization(_)
            | Error::Config(_) => ErrorKind::InvalidInput,
            Error::SchemaOutdated { .. }
            | Error::SchemaUnrecorded { .. }
            | Error::SchemaTooNew { .. }
            | Error::LayoutLacks { .. }
            | Error::LayoutMismatch { .. }
            | Error::MigrationDrift { .. }
            | Error::MigrationDirty { .. }
            | Error::Migration(_)
            | Error::MigrationFailed { .. } => ErrorKind::Schema,
            Error::CorruptData { .. } | Error::UnknownState { .. } => ErrorKind::CorruptData,
            Error::DataMismatch { .. } => ErrorKind::DataMismatch,
            Error::Closed => ErrorKind::Closed,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::LockTimeout { .. } | Error::MigrationLockTimeout { .. } => {
                ErrorKind::LockTimeout
            }
            Error::Connection { .. } => ErrorKind::Connection,
            Error::OutcomeUnknown { .. } => ErrorKind::OutcomeUnknown,
            Error::Database { .. } => ErrorKind::Database,
        }
    }

    /// Whether the same call may succeed if retried: a lost or refused connection, a
    /// deadlock, a busy database.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connection { .. }
            | Error::LockTimeout { .. }
            | Error::MigrationLockTimeout { .. } => true,
            Error::Database { transient, .. } => *transient,
            _ => false,
        }
    }

    /// The same error with its remedies on `version_table`. Migrators call it on what they
    /// return; the planner that builds the remedies does not know the version table.
    pub fn for_version_table(self, version_table: &str) -> Self {
        match self {
            Error::MigrationDirty {
                version,
                description,
                fix,
                undo,
                source,
            } => Error::MigrationDirty {
                version,
                description,
                fix: Box::new(fix.with_version_table(version_table)),
                undo: Box::new(undo.with_version_table(version_table)),
                source,
            },
            Error::SchemaOutdated {
                table,
                current,
                required,
                fix,
            } => Error::SchemaOutdated {
                table,
                current,
                required,
                fix: Box::new(fix.with_version_table(version_table)),
            },
            Error::SchemaUnrecorded { table, fix, .. } => Error::SchemaUnrecorded {
                table,
                version_table: version_table.to_owned(),
                fix: Box::new(fix.with_version_table(version_table)),
            },
            other => other,
        }
    }

    /// The remedies this error carries, the one that fixes it first.
    pub fn remedies(&self) -> Vec<&crate::Remedy> {
        match self {
            Error::SchemaOutdated { fix, .. } => vec![&**fix],
            // Its `fix` is one of two causes, named in words: offered as the command to
            // run, a stamp would re-run migrations on a table another version table has
            // at head.
            Error::MigrationDirty { fix, undo, .. } => vec![&**fix, &**undo],
            _ => Vec::new(),
        }
    }

    /// A database error from any driver.
    pub fn database(transient: bool, source: impl Into<BoxError>) -> Self {
        Error::Database {
            transient,
            source: source.into(),
        }
    }

    /// A write whose reply was lost (see [`Error::OutcomeUnknown`]).
    pub fn outcome_unknown(operation: &'static str, source: impl Into<BoxError>) -> Self {
        Error::OutcomeUnknown {
            operation,
            source: source.into(),
        }
    }

    /// No answer from `server` within `deadline` (`call_timeout`): a call that may have
    /// written something (`may_have_applied`) is [`Error::OutcomeUnknown`], never replayed;
    /// any other is a transient connection error.
    pub fn no_answer(
        operation: &'static str,
        server: &str,
        deadline: std::time::Duration,
        may_have_applied: bool,
    ) -> Self {
        let message = format!("no answer from {server} within {deadline:?} (call_timeout)");
        if may_have_applied {
            Error::outcome_unknown(operation, message)
        } else {
            Error::connection(message, None)
        }
    }

    /// A connection error; `message` must not contain a password.
    pub fn connection(message: impl Into<String>, source: Option<BoxError>) -> Self {
        Error::Connection {
            message: message.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_only_for_connection_and_flagged_database_errors() {
        assert!(Error::connection("refused", None).is_transient());
        assert!(Error::database(true, "deadlock").is_transient());
        assert!(!Error::database(false, "syntax").is_transient());
        assert!(!Error::Closed.is_transient());
        assert_eq!(Error::Closed.kind(), ErrorKind::Closed);
        let unknown = Error::outcome_unknown("set_state", "broken pipe");
        assert!(!unknown.is_transient());
        assert_eq!(unknown.kind(), ErrorKind::OutcomeUnknown);
        let missing = Error::NotFound {
            key: "fsm:1:1".into(),
        };
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        assert!(missing.to_string().contains("fsm:1:1"));
    }

    #[test]
    fn an_outdated_schema_says_what_to_run() {
        let outdated = |current| Error::SchemaOutdated {
            table: "fsm".into(),
            current,
            required: 4,
            fix: Box::new(crate::Remedy::upgrade("fsm", None)),
        };
        let text = outdated(2).to_string();
        assert!(
            text.contains("at schema version 2") && text.contains("needs version 4"),
            "{text}"
        );
        assert!(
            text.contains("upgrade table fsm to the latest schema version"),
            "{text}"
        );
        assert!(!text.contains("fsmstore migrate"), "{text}");
        let text = outdated(0).to_string();
        assert!(
            text.contains("no recorded schema version") && text.contains("record version 1"),
            "{text}"
        );
    }

    #[test]
    fn fixes_name_a_custom_version_table_only() {
        let dirty = || Error::MigrationDirty {
            version: 3,
            description: "d".into(),
            fix: Box::new(crate::Remedy::stamp("fsm", 3)),
            undo: Box::new(crate::Remedy::stamp("fsm", 2)),
            source: None,
        };
        let err = dirty().for_version_table("custom_v");
        let remedies = err.remedies();
        assert_eq!(
            remedies,
            [
                &crate::Remedy::stamp("fsm", 3).with_version_table("custom_v"),
                &crate::Remedy::stamp("fsm", 2).with_version_table("custom_v"),
            ]
        );
        assert!(
            err.to_string().contains("in version table custom_v"),
            "{err}"
        );
        let err = dirty().for_version_table(crate::table_name::DEFAULT_VERSION_TABLE);
        assert_eq!(err.remedies()[0], &crate::Remedy::stamp("fsm", 3));
        assert!(!err.to_string().contains("version table"), "{err}");
    }
}
