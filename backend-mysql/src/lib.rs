//! MySQL 8 / MariaDB 10.6+ backend of fsmstore, on sqlx (its `mysql` driver and tokio
//! runtime only).
//!
//! * `update_data` runs in one transaction: core's `lock_row` upsert takes an exclusive row
//!   lock (inserting an empty row for a key that has none), then the row is read, merged in
//!   Rust with `dict.update` semantics and written. Concurrent updates of one key queue on
//!   the row lock; a transaction InnoDB rolls back for a deadlock or a lock wait timeout is
//!   run again inside the backend, with a short jittered pause.
//! * A connection that died (server restart, `KILL`, `wait_timeout`) fails one attempt; the
//!   call runs again on another connection, so a storage recovers without being reopened.
//! * Migrations run under `GET_LOCK` on a dedicated connection; DDL commits implicitly, so
//!   each step is recorded as unfinished before it runs and a half-applied step is reported
//!   as dirty, naming the `stamp` command that repairs it.
//!
//! ```no_run
//! use fsmstore_core::{Storage, BotId, ChatId, StorageKey, UserId};
//! use fsmstore_mysql::MysqlStorage;
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let storage = MysqlStorage::connect("mysql://bot:secret@127.0.0.1:3306/bots?schema=upgrade").await?;
//! let key = StorageKey::new(BotId(42), ChatId(-100), UserId(7));
//! storage.set_state(&key, Some("Form:name")).await?;
//! assert_eq!(storage.get_state(&key).await?.as_deref(), Some("Form:name"));
//! storage.close().await?;
//! # Ok::<(), fsmstore_core::Error>(())
//! # }).unwrap();
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod config;
mod connections;
mod error;
mod failover;
mod inspect;
mod isolation;
mod migrate;
mod script;
mod statements;
mod steps;
mod storage;
mod writes;

pub use config::MysqlConfig;
pub use migrate::MysqlMigrator;
pub use storage::{galera_retry, MysqlStorage};

/// The driver, re-exported so callers need not pin it.
pub use sqlx;
