//! The databases the adapter's tests run on: a temporary SQLite file, and the PostgreSQL,
//! MariaDB and Redis that `FSMSTORE_TEST_POSTGRES_URL`, `FSMSTORE_TEST_MYSQL_URL` and
//! `FSMSTORE_TEST_REDIS_URL` name (defaults: the local servers; Redis database 7). A server that does not answer is skipped loudly, and fails the
//! test under `CI`. Each test gets tables of its own, dropped at the end.
#![allow(dead_code)]

use fsmstore::{Database, SchemaPolicy, StorageOptions};

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

/// Every backend: SQLite (a file of this test), PostgreSQL, MariaDB.
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
            url: std::env::var("FSMSTORE_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
            file: None,
        },
        Target {
            name: "mysql",
            url: std::env::var("FSMSTORE_TEST_MYSQL_URL")
                .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into()),
            file: None,
        },
        Target {
            name: "redis",
            url: redis_url(),
            file: None,
        },
    ]
}

/// The Redis the tests use.
pub fn redis_url() -> String {
    std::env::var("FSMSTORE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/7".into())
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
/// with the same id left is dropped first); `None` (a loud skip, a failure under `CI`)
/// when its server does not answer.
pub async fn open(target: &Target, options: StorageOptions) -> Option<Database> {
    let fresh = async {
        let db = fsmstore::open_with(&target.url, options.clone()).await?;
        drop_all(&db).await?;
        db.close().await?;
        fsmstore::open_with(&target.url, options).await
    };
    match fresh.await {
        Ok(db) => Some(db),
        Err(err) if err.is_transient() && std::env::var_os("CI").is_none() => {
            eprintln!("*** SKIPPED on {}: server unreachable: {err}", target.name);
            None
        }
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
