//! The databases the adapter's tests run on: a temporary SQLite file, and the PostgreSQL,
//! MariaDB and Redis that `FSMSTORE_TEST_POSTGRES_URL`, `FSMSTORE_TEST_MYSQL_URL` and
//! `FSMSTORE_TEST_REDIS_URL` name (defaults: the local servers; Redis database 7). Each
//! test runs once per database, as a test of its own named `<test>::<database>`
//! ([`each_target`]); the tests of a server that does not answer are listed as ignored
//! with the reason (a failure under `CI`), never as passed. Each test gets tables of its
//! own, dropped at the end.
#![allow(dead_code)]

use std::time::Duration;

use fsmstore::{Database, SchemaPolicy, StorageOptions};
use fsmstore_conformance::{block_on, Needs, Suite};

/// One database under test.
pub struct Target {
    /// `sqlite`, `postgres`, `mysql` or `redis`.
    pub name: &'static str,
    /// The URL, without the table.
    pub url: String,
    /// The SQLite file, removed at the end.
    pub file: Option<std::path::PathBuf>,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
    }
}

/// Every backend: SQLite (a file of this test), PostgreSQL, MariaDB, Redis.
pub fn targets(test: &str) -> Vec<Target> {
    let file = std::env::temp_dir().join(format!(
        "fsmstore-teloxide-{}-{test}.db",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&file);
    vec![
        Target {
            name: "sqlite",
            url: format!("sqlite://{}", file.display()),
            file: Some(file),
        },
        Target {
            name: "postgres",
            url: postgres_url(),
            file: None,
        },
        Target {
            name: "mysql",
            url: mysql_url(),
            file: None,
        },
        Target {
            name: "redis",
            url: redis_url(),
            file: None,
        },
    ]
}

/// The PostgreSQL the tests use.
pub fn postgres_url() -> String {
    std::env::var("FSMSTORE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The MariaDB the tests use.
pub fn mysql_url() -> String {
    std::env::var("FSMSTORE_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// The Redis the tests use.
pub fn redis_url() -> String {
    std::env::var("FSMSTORE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/7".into())
}

/// Whether each database is there, asked once per test binary: SQLite always is;
/// PostgreSQL, MariaDB and Redis when they answer a connection (one that does not is
/// missing, with the reason; under `CI` the probe panics and its tests fail).
pub struct Servers {
    postgres: Needs,
    mysql: Needs,
    redis: Needs,
}

impl Servers {
    /// Connects to each server once.
    pub fn probe() -> Servers {
        let postgres = Needs::probe("PostgreSQL is unreachable", || {
            let config =
                fsmstore::postgres::PgConfig::from_url(&postgres_url()).expect("a PostgreSQL URL");
            block_on(async {
                match config.connect().await {
                    Ok(_) => Some(()),
                    Err(err) => fsmstore_conformance::unreachable(
                        "PostgreSQL",
                        "FSMSTORE_TEST_POSTGRES_URL",
                        &err,
                    ),
                }
            })
        });
        let mysql = Needs::probe("MariaDB is unreachable", || {
            use fsmstore::mysql::sqlx::{Connection, MySqlConnection};
            let config = fsmstore::mysql::MysqlConfig::from_url(&mysql_url()).expect("a MySQL URL");
            block_on(async {
                match MySqlConnection::connect_with(&config.connect).await {
                    Ok(_) => Some(()),
                    Err(err) => fsmstore_conformance::unreachable(
                        "MariaDB",
                        "FSMSTORE_TEST_MYSQL_URL",
                        &err,
                    ),
                }
            })
        });
        let redis = Needs::probe("Redis is unreachable", || {
            use fsmstore::redis::redis;
            let client = redis::Client::open(redis_url().as_str()).expect("a Redis URL");
            block_on(async {
                match tokio::time::timeout(
                    Duration::from_secs(5),
                    client.get_multiplexed_async_connection(),
                )
                .await
                {
                    Ok(Ok(_)) => Some(()),
                    Ok(Err(err)) => {
                        fsmstore_conformance::unreachable("Redis", "FSMSTORE_TEST_REDIS_URL", &err)
                    }
                    Err(elapsed) => fsmstore_conformance::unreachable(
                        "Redis",
                        "FSMSTORE_TEST_REDIS_URL",
                        &elapsed,
                    ),
                }
            })
        });
        Servers {
            postgres,
            mysql,
            redis,
        }
    }

    /// What a test on `target` needs.
    pub fn needs(&self, target: &Target) -> Needs {
        match target.name {
            "postgres" => self.postgres.clone(),
            "mysql" => self.mysql.clone(),
            "redis" => self.redis.clone(),
            _ => Needs::Met,
        }
    }
}

/// `test` once per target, each a test of its own named `{test}::{target}`, on targets
/// made by [`targets`]`(file)`: `run` on the target when its server is there, listed as
/// ignored with the reason when not.
pub fn each_target(suite: &mut Suite, servers: &Servers, test: &str, file: &str, run: fn(Target)) {
    for target in targets(file) {
        let needs = servers.needs(&target);
        let name = format!("{test}::{}", target.name);
        suite.test(&name, &needs, move || run(target));
    }
}

impl Target {
    /// The options of `test`'s tables on this target: names of its own, the schema
    /// created on open (Redis has none: its table is the key prefix).
    pub fn options(&self, test: &str) -> StorageOptions {
        if self.name == "redis" {
            let table = format!("tg_{test}_{}", std::process::id());
            return StorageOptions::default()
                .table(&table)
                .expect("a valid table name");
        }
        options(test)
    }
}

/// Deletes the Redis keys of table (key prefix) `table`.
async fn delete_redis_keys(table: &str) -> fsmstore::Result<()> {
    let options = StorageOptions::default().table(table)?;
    let config = fsmstore::redis::RedisConfig::from_url(&redis_url())?.options(options)?;
    fsmstore::redis::RedisStorage::open(config)
        .await?
        .drop_table()
        .await
        .map(drop)
}

/// Drops the tables of `db` (or deletes its keys on Redis).
async fn drop_all(db: &Database) -> fsmstore::Result<()> {
    if db.backend() == "redis" {
        delete_redis_keys(db.options().table.as_str()).await
    } else {
        db.migrator()?.drop_tables().await
    }
}

/// The options of `test`'s tables: names of its own, schema created on open.
pub fn options(test: &str) -> StorageOptions {
    let table = format!("tg_{test}_{}", std::process::id());
    StorageOptions::default()
        .table(&table)
        .and_then(|o| o.version_table(&format!("{table}_v")))
        .expect("valid table names")
        .schema(SchemaPolicy::Upgrade)
}

/// Opens `target` with `options` on empty tables (whatever an earlier run of a process
/// with the same id left is dropped first). A test runs only on a target whose server
/// answered [`Servers::probe`], so failing to open it fails the test.
pub async fn open(target: &Target, options: StorageOptions) -> Database {
    let fresh = async {
        let db = fsmstore::open_with(&target.url, options.clone()).await?;
        drop_all(&db).await?;
        db.close().await?;
        fsmstore::open_with(&target.url, options).await
    };
    match fresh.await {
        Ok(db) => db,
        Err(err) => panic!("opening {}: {err}", target.name),
    }
}

/// Drops the tables of `db` (unless [`keep_tables`]) and closes it.
pub async fn drop_tables(db: Database) {
    if keep_tables() {
        eprintln!("kept table {}", db.options().table.as_str());
        db.close().await.expect("close");
        return;
    }
    drop_all(&db).await.expect("drop the test's tables");
    db.close().await.expect("close");
}

pub mod bot_api;

/// Opens `target` again on the tables as they are (a second handle, a restart).
pub async fn reopen(target: &Target, options: StorageOptions) -> Database {
    fsmstore::open_with(&target.url, options)
        .await
        .expect("reopen")
}

/// Whether to keep the test's tables (`FSMSTORE_TELOXIDE_KEEP_TABLES=1`), to look at them
/// with `fsmstore inspect` afterwards.
pub fn keep_tables() -> bool {
    std::env::var_os("FSMSTORE_TELOXIDE_KEEP_TABLES").is_some()
}
