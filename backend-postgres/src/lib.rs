//! PostgreSQL backend of fsmstore: the one a team runs many bot instances against.
//!
//! tokio-postgres with a deadpool pool. `data` is `JSONB`; every operation is one round
//! trip over a statement prepared once per connection and cached; `update_data` is a
//! single `INSERT … ON CONFLICT … SET data = data || patch … RETURNING data`. Migrations
//! run under a PostgreSQL advisory lock held by a dedicated connection, each migration and
//! its bookkeeping row in one transaction.
//!
//! ```no_run
//! use fsmstore_core::{SchemaPolicy, Storage, BotId, ChatId, StorageKey, UserId, StorageOptions};
//! use fsmstore_postgres::{PgConfig, PgStorage};
//! # async fn run() -> fsmstore_core::Result<()> {
//! let config = PgConfig::from_url("postgres://bot:secret@db.internal/bots?pool_max=16")?
//!     .options(StorageOptions::default().schema(SchemaPolicy::Upgrade))?;
//! let storage = PgStorage::open(config).await?;
//! storage.set_state(&StorageKey::new(BotId(42), ChatId(-100), UserId(7)), Some("Form:name")).await?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod config;
mod connections;
mod error;
mod inspect;
mod isolation;
mod migrate;
mod params;
mod pooled;
mod storage;
mod tls;
mod writes;

pub use config::{PgConfig, Pooler, MAX_STATEMENT_TIMEOUT};
pub use migrate::PgMigrator;
pub use storage::PgStorage;

/// The drivers, re-exported so callers need not pin them.
pub use deadpool_postgres;
pub use tokio_postgres;
