//! The contract every fsmstore backend implements.
//!
//! `fsmstore-core` holds what is common to all backends and depends on no database driver:
//!
//! * [`StorageKey`], the [`KeyBuilder`] trait and [`DefaultKeyBuilder`], which reproduces
//!   aiogram's key format so Python and Rust bots can share rows;
//! * the [`Storage`] trait (object safe: bots hold `Arc<dyn Storage>`) and the typed
//!   helpers of [`StorageExt`];
//! * [`Error`], the one error type of every backend;
//! * [`TableName`] and [`Dialect`], and the per-dialect SQL in [`sql`];
//! * the migration list ([`migrations`]), the pure migration planner ([`MigrationPlan`]) and
//!   the [`Migrator`] trait backends implement;
//! * [`MemoryStorage`], the in-memory reference implementation.
//!
//! ```
//! use fsmstore_core::{MemoryStorage, Storage, BotId, ChatId, StorageKey, UserId};
//! # tokio_test_block_on(async {
//! let storage = MemoryStorage::new();
//! let key = StorageKey::new(BotId(42), ChatId(-100), UserId(7));
//! storage.set_state(&key, Some("Form:name")).await?;
//! assert_eq!(storage.get_state(&key).await?.as_deref(), Some("Form:name"));
//! # Ok::<(), fsmstore_core::Error>(())
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod call;
pub mod coalesce;
pub mod copy;
mod data;
mod database;
mod dialect;
mod dialogue;
mod dialogue_migrations;
mod dialogue_run;
mod dialogue_steps;
pub mod dialogue_value;
mod duration;
mod error;
mod finite;
mod inspect;
mod isolation;
mod key;
mod layout;
mod memory;
mod merge;
mod migration_run;
pub mod migrations;
mod migrator;
mod offline;
mod options;
#[cfg(test)]
mod parsers_fuzzed;
mod planner;
mod remedy;
mod retry;
pub mod sql;
mod stash;
mod storage;
mod table_name;
mod traced;
mod url;

pub use call::{CallRunner, Failure, Fault, Phase, Replay};
pub use data::{
    data_from_value, deserialize_value, merge_shallow, parse_data, parse_stored, validate_data,
    validate_field, validate_state, Data, Record, MAX_DATA_DEPTH, MAX_STATE_CHARS,
};
pub use database::Database;
pub use dialect::Dialect;
pub use dialogue::{patch_from, Dialogue, DialogueState, IntoState, UnknownStates};
pub use dialogue_migrations::{
    dialogue_history, ledger_name, migrate_dialogues, DialogueHistoryEntry, DialogueLedger,
    DialogueMigrationReport, DialogueMigrations, DialogueStepRun,
};
pub use dialogue_run::{run_step, StepOptions, StepReport, REWRITE_ATTEMPTS};
pub use dialogue_steps::{DialogueRow, DialogueStep, Rewrite, StatePattern};
pub use duration::{
    check_duration, format_duration, named_duration, parse_duration, parse_duration_or_seconds,
    parse_millis, MAX_DURATION,
};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use inspect::{
    now_ms, with_expiry, Inspect, PutRow, StateChange, StatesBatch, StoredRow, TableStats,
};
pub use isolation::{
    lock_timeout, Isolation, LocalIsolation, LocalLocks, LockGuard, LOCK_ANSWER_GRACE,
};
pub use key::{
    BotId, ChatId, DefaultKeyBuilder, KeyBuilder, StorageKey, UserId, DEFAULT_DESTINY,
    MAX_KEY_BYTES,
};
pub use layout::Layout;
pub use memory::MemoryStorage;
pub use merge::{plan_merge, MergePlan, MergeWrite, NextState};
pub use migration_run::{run_migration, run_stamp, MigrationSteps};
pub use migrations::{AppliedMigration, Migration, MigrationSet, MigrationSource};
pub use migrator::{history, HistoryEntry, MigrationReport, Migrator, SchemaStatus};
pub use offline::offline_script;
pub use options::{
    SchemaPolicy, StorageOptions, DEFAULT_CALL_TIMEOUT, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_ISOLATION_TIMEOUT, DEFAULT_MAX_DATA_BYTES, DEFAULT_POOL_MAX, DEFAULT_WRITE_BATCHES,
    SHARED_URL_PARAMETERS,
};
pub use planner::{
    dirty_error, verified_version, Direction, MigrationPlan, MigrationStep, MigrationTarget,
    StampPlan,
};
pub use remedy::Remedy;
pub use retry::{is_conflict, retry, RetryPolicy};
pub use stash::ConnectionStash;
pub use storage::{object_from, to_json_value, Storage, StorageExt};
pub use table_name::{TableName, DEFAULT_TABLE, DEFAULT_VERSION_TABLE};
pub use traced::Traced;
pub use url::{query_string, DatabaseUrl};

/// Re-exported so callers can build [`Data`] without naming `serde_json` themselves.
pub use serde_json;
