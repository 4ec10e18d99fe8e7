//! # fsmstore
//!
//! Persistent FSM (dialogue) state for chat bots: per conversation key a *state*
//! (`"Form:name"`) and *data* (a JSON object), in SQLite, PostgreSQL or MySQL/MariaDB behind
//! one async API, with versioned per-dialect migrations and a shared conformance suite.
//!
//! ```
//! use fsmstore::{data, BotId, ChatId, StorageKey, UserId};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // One handle per database: the bot's storage, the operator's inspect and the
//! // migrator share its connections.
//! let db = fsmstore::open("sqlite::memory:?schema=upgrade").await?;
//! let storage = db.storage();
//! let key = StorageKey::new(BotId(42), ChatId(-100), UserId(7)); // bot, chat, user
//! storage.set_state(&key, Some("Form:name")).await?;
//! let data = storage.update_data(&key, &data!({"name": "Ann"})).await?;
//! assert_eq!(data["name"], "Ann");
//! assert_eq!(db.migrator()?.current().await?, db.migrator()?.migrations().head());
//! assert_eq!(db.inspect().stats().await?.rows, 1);
//! db.close().await?;
//! # Ok::<(), fsmstore::Error>(())
//! # }).unwrap();
//! ```
//!
//! The top level holds what a bot uses. Operators' calls live in [`inspect`], the
//! migration machinery in [`migrate`], and backend authors find the whole contract crate
//! as [`core`]. Cargo features: `sqlite` (default), `postgres`, `postgres-tls`, `mysql`,
//! `mysql-tls`, `full` (every backend).
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

use std::sync::Arc;

use fsmstore_core::DatabaseUrl;

pub use fsmstore_core::{
    data, serde_json, states, BotId, ChatId, Data, Database, DefaultKeyBuilder, Dialogue,
    DialogueState, Error, ErrorKind, IntoState, Isolation, KeyBuilder, Layout, LocalIsolation,
    LockGuard, Record, Result, SchemaPolicy, Storage, StorageExt, StorageKey, StorageOptions,
    TableName, UnknownStates, UserId, DEFAULT_DESTINY,
};

/// `fsmstore-core`, the contract crate, whole: for backend authors and tools.
pub use fsmstore_core as core;

/// Migrations: the [`Migrator`](migrate::Migrator) a [`Database`] hands out, targets,
/// reports and history, offline SQL, the planner and the engine backends drive.
pub mod migrate {
    pub use fsmstore_core::migrations::{MigrationSet, MigrationSource};
    pub use fsmstore_core::{
        offline_script, run_migration, run_stamp, AppliedMigration, Dialect, Direction,
        HistoryEntry, Migration, MigrationPlan, MigrationReport, MigrationStep, MigrationSteps,
        MigrationTarget, Migrator, SchemaStatus, StampPlan,
    };
}

/// Moving dialogues between databases, tables and layouts with their write times
/// (`fsmstore copy`), and comparing both sides.
///
/// ```
/// # #[cfg(feature = "sqlite")]
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use fsmstore::copy::{copy, verify, CopyOptions};
/// use fsmstore::{BotId, ChatId, StorageKey, UserId};
/// let from = fsmstore::open("sqlite::memory:?schema=upgrade&ttl=30d").await?;
/// let to = fsmstore::open("sqlite::memory:?schema=upgrade&ttl=30d").await?;
/// let key = StorageKey::new(BotId(42), ChatId(-100), UserId(7));
/// from.storage().set_state(&key, Some("Form:name")).await?;
/// let report = copy(&*from.inspect(), &*to.inspect(), &CopyOptions::default(), |_| {}).await?;
/// assert_eq!((report.new, report.unchanged), (1, 0));
/// assert_eq!(to.storage().get_state(&key).await?.as_deref(), Some("Form:name"));
/// assert!(verify(&*from.inspect(), &*to.inspect(), 500, 16, |_| {}).await?.clean());
/// # Ok::<(), fsmstore::Error>(())
/// # }).unwrap();
/// ```
pub mod copy {
    pub use fsmstore_core::copy::{copy, verify, CopyOptions, CopyReport, VerifyReport};
}

/// Coalesced writes: what [`StorageOptions::write_batches`] turns on, and what it did
/// ([`Storage::write_stats`]).
pub mod coalesce {
    pub use fsmstore_core::coalesce::{CoalesceStats, MAX_BATCH};
}

/// Dialogue migrations: what the next release of a bot does to the dialogues stored by the
/// last one — states renamed, regrouped or dropped, data reshaped — declared in code as
/// versioned steps and run at start-up under the migration lock
/// ([`Database::migrate_dialogues`]), or one step at a time ([`run_step`](dialogues::run_step),
/// `fsmstore states`). Each dialogue is rewritten on its own by a compare-and-write that
/// never undoes a bot's write, its TTL kept. The README's example:
///
/// ```
/// # #[cfg(feature = "sqlite")]
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use fsmstore::dialogues::{DialogueMigrations, DialogueStep, StepOptions};
/// use fsmstore::{BotId, ChatId, DialogueState, StorageKey, UnknownStates, UserId};
///
/// fsmstore::states! {
///     pub enum Signup in "Signup" {
///         Name => "name" | "nmae",   // a former name: read as Name, written as "Signup:name"
///         Age => "age",
///     }
/// }
///
/// let db = fsmstore::open("sqlite::memory:?schema=upgrade").await?;
/// let (ann, bob) = (
///     StorageKey::new(BotId(42), ChatId(1), UserId(1)),
///     StorageKey::new(BotId(42), ChatId(2), UserId(2)),
/// );
/// // Stored by the last release.
/// let old = fsmstore::data!({"nmae": "Ann", "age": "30"});
/// db.storage().set_record(&ann, Some("Form:age"), &old).await?;
/// db.storage().set_state(&bob, Some("Survey:q1")).await?;
///
/// let migrations = DialogueMigrations::new()
///     .step(1, DialogueStep::rename_state("Form:nmae", "Form:name")?)
///     .step(2, DialogueStep::rename_group("Form", "Signup")?)
///     .step(3, DialogueStep::rename_field("Signup:*", "nmae", "name")?)
///     .step(4, DialogueStep::default_field("Signup:*", "lang", "en".into())?)
///     .step(5, DialogueStep::drop_states("Survey:*", false)?) // true: keep the data, clear the state
///     .step(6, DialogueStep::map("Signup:age", "age as a number", |row| {
///         // Any change to one dialogue; it must be idempotent (checked on every dialogue).
///         if let Some(fsmstore::serde_json::Value::String(age)) = row.data.get("age") {
///             if let Ok(age) = age.parse::<u32>() {
///                 row.data.insert("age".into(), age.into());
///             }
///         }
///     })?);
/// // At start-up, after the schema: each step once, however many instances start at once.
/// let report = db.migrate_dialogues(&migrations, &StepOptions::default(), &mut |_, _| {}).await?;
/// assert_eq!(report.ran.len(), 6);
///
/// let dialogue = db.dialogue(ann.clone());
/// assert_eq!(dialogue.state_as::<Signup>().await?, Some(Signup::Age));
/// assert_eq!(
///     fsmstore::serde_json::Value::Object(dialogue.data().await?),
///     fsmstore::serde_json::json!({"name": "Ann", "age": 30, "lang": "en"}),
/// );
/// assert_eq!(db.storage().get_state(&bob).await?, None);
/// // At the next start-up nothing runs again.
/// let again = db.migrate_dialogues(&migrations, &StepOptions::default(), &mut |_, _| {}).await?;
/// assert_eq!(again.already_done, [1, 2, 3, 4, 5, 6]);
///
/// // A state the code does not know, answered by the policy the bot chose.
/// dialogue.set_state("Signup:city").await?;
/// let dialogue = dialogue.on_unknown_state(UnknownStates::Fallback("Signup:name".into()));
/// assert_eq!(dialogue.state_as::<Signup>().await?, Some(Signup::Name));
/// assert_eq!(Signup::known_names(), ["Signup:name", "Signup:age", "Signup:nmae"]);
/// # Ok::<(), fsmstore::Error>(())
/// # }).unwrap();
/// ```
pub mod dialogues {
    pub use fsmstore_core::{
        dialogue_history, ledger_name, migrate_dialogues, run_step, DialogueHistoryEntry,
        DialogueLedger, DialogueMigrationReport, DialogueMigrations, DialogueRow, DialogueStep,
        DialogueStepRun, Rewrite, StatePattern, StepOptions, StepReport, UnknownStates,
        REWRITE_ATTEMPTS,
    };
}

/// Whole-table operations for operators: list rows, stats, purge by age.
pub mod inspect {
    pub use fsmstore_core::{now_ms, Inspect, PutRow, StoredRow, TableStats};
}

/// The SQLite backend.
#[cfg(feature = "sqlite")]
pub mod sqlite {
    pub use fsmstore_sqlite::{
        rusqlite, SqliteConfig, SqliteLocation, SqliteMigrator, SqliteStorage,
    };
}

/// The PostgreSQL backend.
#[cfg(feature = "postgres")]
pub mod postgres {
    pub use fsmstore_postgres::{
        deadpool_postgres, tokio_postgres, PgConfig, PgMigrator, PgStorage, Pooler,
    };
}

/// The MySQL / MariaDB backend.
#[cfg(feature = "mysql")]
pub mod mysql {
    pub use fsmstore_mysql::{sqlx, MysqlConfig, MysqlMigrator, MysqlStorage};
}

/// The Redis backend.
#[cfg(feature = "redis")]
pub mod redis {
    pub use fsmstore_redis::{redis, RedisConfig, RedisStorage};
}

/// teloxide dialogues on fsmstore: [`TeloxideStorage`](fsmstore_teloxide::TeloxideStorage)
/// implements teloxide's `Storage<D>`.
#[cfg(feature = "teloxide")]
pub mod teloxide {
    pub use fsmstore_teloxide::{
        codec, lock_chat, ChatLock, ImportError, ImportReport, TeloxideStorage,
    };

    /// teloxide dialogues on the database `url` names (the options its query sets), keyed
    /// by chat with bot id 0: [`open`](crate::open) then [`TeloxideStorage::new`].
    ///
    /// # Errors
    /// As [`open`](crate::open).
    pub async fn open(url: &str) -> crate::Result<std::sync::Arc<TeloxideStorage>> {
        let db = crate::open(url).await?;
        Ok(std::sync::Arc::new(TeloxideStorage::from(&db)))
    }
}

/// Declares the backends, one entry each: the [`Scheme`] variant, its Cargo feature, the
/// URL schemes that name it, and its config and storage types (each with `from_url`,
/// `options`, `open` and `database`). Adding a backend is one entry here.
macro_rules! backends {
    ($(
        $(#[$doc:meta])*
        $variant:ident: $feature:literal, [$($scheme:literal),+], $config:path, $storage:path;
    )+) => {
        /// The backend a URL names, by its scheme.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum Scheme {
            $($(#[$doc])* $variant,)+
        }

        impl Scheme {
            /// The scheme of `url`.
            ///
            /// # Errors
            /// [`Error::Config`] for an unknown scheme.
            pub fn of(url: &str) -> Result<Scheme> {
                let scheme = DatabaseUrl::scheme_of(url)?;
                $(if [$($scheme),+].contains(&scheme.as_str()) {
                    return Ok(Scheme::$variant);
                })+
                let known: Vec<String> = [$($($scheme),+),+].iter().map(|s| format!("{s}://")).collect();
                Err(Error::Config(format!(
                    "unknown database URL scheme {scheme:?}: use {}",
                    known.join(", ")
                )))
            }

            /// The Cargo feature that compiles this backend in.
            pub fn feature(self) -> &'static str {
                match self {
                    $(Scheme::$variant => $feature,)+
                }
            }

            /// Opens `url` on this backend with `options` merged in.
            async fn open(self, url: &str, options: StorageOptions) -> Result<Database> {
                match self {
                    $(Scheme::$variant => {
                        #[cfg(feature = $feature)]
                        {
                            let config = <$config>::from_url(url)?.options(options)?;
                            <$storage>::open(config).await?.database()
                        }
                        #[cfg(not(feature = $feature))]
                        {
                            drop((url, options));
                            Err(self.feature_off())
                        }
                    })+
                }
            }
        }
    };
}

backends! {
    /// `sqlite:`
    Sqlite: "sqlite", ["sqlite"], fsmstore_sqlite::SqliteConfig, fsmstore_sqlite::SqliteStorage;
    /// `postgres://` or `postgresql://`
    Postgres: "postgres", ["postgres", "postgresql"], fsmstore_postgres::PgConfig, fsmstore_postgres::PgStorage;
    /// `mysql://` or `mariadb://`
    Mysql: "mysql", ["mysql", "mariadb"], fsmstore_mysql::MysqlConfig, fsmstore_mysql::MysqlStorage;
    /// `redis://`, `rediss://` or `redis+unix://`
    Redis: "redis", ["redis", "rediss", "redis+unix", "redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel", "valkey", "valkeys", "valkey+unix"], fsmstore_redis::RedisConfig, fsmstore_redis::RedisStorage;
}

impl Scheme {
    /// The error for a backend whose Cargo feature is off.
    #[allow(dead_code)]
    fn feature_off(self) -> Error {
        let feature = self.feature();
        Error::Config(format!(
            "the {feature} backend is not compiled in: enable fsmstore's Cargo feature {feature:?}"
        ))
    }
}

/// Opens the database `url` names, with the options its query sets (default: the table
/// `aiogram_fsm_data`, schema policy `verify`), and applies the schema policy.
///
/// URL forms: `sqlite://path/to/file.db`, `sqlite:///absolute.db`, `sqlite::memory:`,
/// `postgres://user:password@host/db`, `mysql://user:password@host/db`. Shared query
/// parameters: `table`, `version_table`, `schema` (`verify`, `upgrade`, `trust`),
/// `pool_max`, `connect_timeout_ms`, `max_data_bytes`, `retry_attempts`; each backend adds
/// its own.
///
/// # Errors
/// [`Error::Config`] for a bad URL or an unknown parameter (naming it); connection errors;
/// [`Error::SchemaOutdated`] (naming the command that fixes it) and the other schema
/// errors under `schema=verify`.
pub async fn open(url: &str) -> Result<Database> {
    open_with(url, StorageOptions::default()).await
}

/// [`open`] with options set in code. A setting given both in the URL and in `options`
/// must agree (see [`StorageOptions::merge`]): `open_with("sqlite://x.db?table=a",
/// options.table("b")?)` is an [`Error::Config`], never a silent choice.
///
/// # Errors
/// As [`open`].
pub async fn open_with(url: &str, options: StorageOptions) -> Result<Database> {
    Scheme::of(url)?.open(url, options).await
}

/// The one-liner for bots: [`open`]`(url)?.storage()`.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let storage = fsmstore::connect("sqlite::memory:").await?;
/// # Ok::<(), fsmstore::Error>(())
/// # }).unwrap();
/// ```
///
/// # Errors
/// As [`open`].
pub async fn connect(url: &str) -> Result<Arc<dyn Storage>> {
    Ok(open(url).await?.storage())
}
