//! Redis backend of fsmstore: where bot frameworks keep production dialogue state.
//!
//! Two layouts, both atomic and one round trip per call:
//!
//! * **fsmstore's own** (the default): one hash per dialogue, `fsmstore:<id>` (or
//!   `<table>:<id>` with `table=`), the state in field `s`, each top-level data field in
//!   field `.<name>` as JSON text. A merge is an `HSET` of the patched fields: Redis
//!   never decodes JSON, so numbers round-trip by value. Every call touches one key (one
//!   hash slot on a cluster).
//! * **aiogram's `RedisStorage`** (`layout=aiogram`): byte-identical keys, `<id>:state`
//!   (plain text) and `<id>:data` (JSON text), deleted when emptied, so a Python bot on
//!   aiogram and a Rust bot on fsmstore share one Redis. Merges run in a Lua script on the
//!   stored text without decoding a number.
//!
//! Per-key locks follow aiogram's `RedisEventIsolation` (`<id>:lock`, `SET NX PX` with a
//! token, released only by its owner). Expiry is Redis' own TTL (`ttl=`), reset by every
//! write in the same script.
//!
//! ```no_run
//! use fsmstore_core::{BotId, ChatId, Storage, StorageKey, UserId};
//! use fsmstore_redis::RedisStorage;
//! # async fn run() -> fsmstore_core::Result<()> {
//! let storage = RedisStorage::connect("redis://127.0.0.1:6379/0?ttl=30d").await?;
//! let key = StorageKey::new(BotId(42), ChatId(-100), UserId(7));
//! storage.set_state(&key, Some("Form:name")).await?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod aiogram;
mod config;
mod connections;
mod error;
mod inspect;
mod isolation;
mod keyspace;
mod lease;
mod migrate;
mod own;
mod rows;
mod storage;
mod teloxide_keys;

pub use config::{RedisConfig, DEFAULT_LOCK_TIMEOUT, DEFAULT_WAIT_TIMEOUT};
pub use storage::RedisStorage;

/// The driver, re-exported so callers need not pin it.
pub use redis;
