//! SQLite backend of fsmstore: the embedded default.
//!
//! Bundled SQLite through rusqlite. Files run in WAL mode with `synchronous=NORMAL` and a
//! busy timeout; one writer connection and a few reader connections, each behind a mutex,
//! and every call runs on tokio's blocking pool (`spawn_blocking`), never on the async
//! worker threads. `:memory:` databases live in SQLite's `memdb` VFS so every connection
//! of one storage sees the same data.
//!
//! ```
//! use fsmstore_core::{SchemaPolicy, Storage, BotId, ChatId, StorageKey, UserId, StorageOptions};
//! use fsmstore_sqlite::{SqliteConfig, SqliteStorage};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // A private in-memory database gets its schema on open; a file is verified unless the
//! // URL or the config asks to upgrade (`?schema=upgrade`, `SchemaPolicy::Upgrade`).
//! let storage = SqliteStorage::connect("sqlite::memory:").await?;
//! let file = SqliteConfig::from_url("sqlite://doc-example.db")?
//!     .options(StorageOptions::default().schema(SchemaPolicy::Upgrade))?;
//! # let _ = file;
//! let key = StorageKey::new(BotId(42), ChatId(-100), UserId(7));
//! storage.set_state(&key, Some("Form:name")).await?;
//! assert_eq!(storage.get_state(&key).await?.as_deref(), Some("Form:name"));
//! # Ok::<(), fsmstore_core::Error>(())
//! # }).unwrap();
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod config;
mod connections;
mod error;
mod inspect;
mod locks;
mod migrate;
mod storage;
mod writes;

pub use config::{SqliteConfig, SqliteLocation, SqliteMode, SqliteSync, MAX_BUSY_TIMEOUT};
pub use migrate::SqliteMigrator;
pub use storage::SqliteStorage;

/// The driver, re-exported so callers need not pin it.
pub use rusqlite;

#[cfg(test)]
mod tests {
    /// Core's SQLite statements use `unixepoch('subsec')`, which SQLite has since 3.42.
    #[test]
    fn bundled_sqlite_has_unixepoch_subsec() {
        assert!(
            rusqlite::version_number() >= 3_042_000,
            "{}",
            rusqlite::version()
        );
    }
}
