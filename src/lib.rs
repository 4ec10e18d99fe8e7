//! # fsmstore
//!
//! Persistent FSM (dialogue) state for chat bots: per conversation key a *state*
//! (`"Form:name"`) and *data* (a JSON object), in SQLite, PostgreSQL or MySQL/MariaDB behind
//! one async API, with versioned per-dialect migrations and a shared conformance suite.
//!
//! ```
//! use fsmstore::{serde_json::json, Storage, StorageKey};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let storage = fsmstore::connect("sqlite::memory:?schema=upgrade").await?;
//! let key = StorageKey::new(42, -100, 7); // bot, chat, user
//! storage.set_state(&key, Some("Form:name")).await?;
//! let patch = json!({"name": "Ann"}).as_object().cloned().unwrap_or_default();
//! let data = storage.update_data(&key, &patch).await?;
//! assert_eq!(data["name"], "Ann");
//! # Ok::<(), fsmstore::Error>(())
//! # }).unwrap();
//! ```
//!
//! Cargo features: `sqlite` (default), `full` (every backend).
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

use std::sync::Arc;

pub use fsmstore_core::*;

/// The SQLite backend.
#[cfg(feature = "sqlite")]
pub use fsmstore_sqlite as sqlite;

/// The PostgreSQL backend.
#[cfg(feature = "postgres")]
pub use fsmstore_postgres as postgres;

/// The MySQL / MariaDB backend.
#[cfg(feature = "mysql")]
pub use fsmstore_mysql as mysql;

/// The backend a URL names, by its scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scheme {
    /// `sqlite:`
    Sqlite,
    /// `postgres://` or `postgresql://`
    Postgres,
    /// `mysql://` or `mariadb://`
    Mysql,
}

impl Scheme {
    /// The scheme of `url`.
    ///
    /// # Errors
    /// [`Error::Config`] for an unknown scheme, or one whose Cargo feature is off.
    pub fn of(url: &str) -> Result<Scheme> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Scheme::Sqlite),
            "postgres" | "postgresql" => Ok(Scheme::Postgres),
            "mysql" | "mariadb" => Ok(Scheme::Mysql),
            _ => Err(Error::Config(format!(
                "unknown database URL scheme {scheme:?}: use sqlite://, postgres:// or mysql://"
            ))),
        }
    }
}

/// Opens the storage `url` names, with the options its query string sets (default: the
/// table `aiogram_fsm_data`, schema policy `Verify`).
///
/// # Errors
/// [`Error::Config`] for a bad URL; connection errors; [`Error::SchemaOutdated`] and the
/// other schema errors of the backend's `open`.
pub async fn connect(url: &str) -> Result<Arc<dyn Storage>> {
    match Scheme::of(url)? {
        #[cfg(feature = "sqlite")]
        Scheme::Sqlite => Ok(Arc::new(sqlite::SqliteStorage::connect(url).await?)),
        #[cfg(feature = "postgres")]
        Scheme::Postgres => Ok(Arc::new(postgres::PgStorage::connect(url).await?)),
        #[cfg(feature = "mysql")]
        Scheme::Mysql => Ok(Arc::new(mysql::MysqlStorage::connect(url).await?)),
        #[allow(unreachable_patterns)]
        _ => Err(feature_off(url)),
    }
}

/// Opens the storage `url` names with `options`, which replace any the URL's query sets.
///
/// # Errors
/// As [`connect`].
pub async fn connect_with(url: &str, options: StorageOptions) -> Result<Arc<dyn Storage>> {
    Ok(connect_inspect(url, options).await?)
}

/// As [`connect_with`], with the whole-table operations of [`Inspect`] (list, stats,
/// purge) for operators' tools.
///
/// # Errors
/// As [`connect`].
pub async fn connect_inspect(url: &str, options: StorageOptions) -> Result<Arc<dyn Inspect>> {
    match Scheme::of(url)? {
        #[cfg(feature = "sqlite")]
        Scheme::Sqlite => {
            let config = sqlite::SqliteConfig::from_url(url)?.options(options);
            Ok(Arc::new(sqlite::SqliteStorage::open(config).await?))
        }
        #[cfg(feature = "postgres")]
        Scheme::Postgres => {
            let config = postgres::PgConfig::from_url(url)?.options(options);
            Ok(Arc::new(postgres::PgStorage::open(config).await?))
        }
        #[cfg(feature = "mysql")]
        Scheme::Mysql => {
            let config = mysql::MysqlConfig::from_url(url)?.options(options);
            Ok(Arc::new(mysql::MysqlStorage::open(config).await?))
        }
        #[allow(unreachable_patterns)]
        _ => Err(feature_off(url)),
    }
}

/// A migrator for the FSM table of `options` in the database `url` names (no schema check:
/// this is how an outdated schema is upgraded).
///
/// # Errors
/// As [`connect`], without the schema errors.
pub async fn migrator(url: &str, options: StorageOptions) -> Result<Box<dyn Migrator>> {
    match Scheme::of(url)? {
        #[cfg(feature = "sqlite")]
        Scheme::Sqlite => {
            let config = sqlite::SqliteConfig::from_url(url)?.options(options);
            Ok(Box::new(sqlite::SqliteMigrator::open(config).await?))
        }
        #[cfg(feature = "postgres")]
        Scheme::Postgres => {
            let config = postgres::PgConfig::from_url(url)?.options(options);
            Ok(Box::new(postgres::PgMigrator::new(config)?))
        }
        #[cfg(feature = "mysql")]
        Scheme::Mysql => {
            let config = mysql::MysqlConfig::from_url(url)?.options(options);
            Ok(Box::new(mysql::MysqlMigrator::open(config).await?))
        }
        #[allow(unreachable_patterns)]
        _ => Err(feature_off(url)),
    }
}

#[allow(dead_code)]
fn feature_off(url: &str) -> Error {
    Error::Config(format!(
        "the backend for {:?} is not compiled in: enable its Cargo feature",
        url.split(':').next().unwrap_or_default()
    ))
}
