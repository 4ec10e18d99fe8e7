//! Shared by the MySQL test files: the server under test, and cleanup.
#![allow(dead_code)]

use std::time::Duration;

use fsmstore_core::sql::drop_table_if_exists;
use fsmstore_core::{Dialect, Error, Result, StorageOptions};
use fsmstore_mysql::sqlx::{self, Connection};
use fsmstore_mysql::MysqlConfig;

/// The variable naming the server under test.
pub const URL_VARIABLE: &str = "FSMSTORE_TEST_MYSQL_URL";

/// The default: the local MariaDB of the development and CI machines.
pub const DEFAULT_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// The server under test, with a small pool (dozens of cases share one server).
pub fn config() -> Option<MysqlConfig> {
    let url = std::env::var(URL_VARIABLE).unwrap_or_else(|_| DEFAULT_URL.to_owned());
    match MysqlConfig::from_url(&url) {
        Ok(mut config) => {
            config.options.pool_max = 8;
            config.options.connect_timeout = Duration::from_secs(10);
            Some(config.lock_timeout(Duration::from_secs(30)))
        }
        Err(err) => panic!("{URL_VARIABLE} is not a usable mysql:// URL: {err}"),
    }
}

/// One connection to `config`'s server, or why not.
pub async fn connection(config: &MysqlConfig) -> Result<sqlx::MySqlConnection> {
    tokio::time::timeout(
        Duration::from_secs(5),
        sqlx::MySqlConnection::connect_with(&config.connect),
    )
    .await
    .map_err(|_| Error::connection("timed out connecting", None))?
    .map_err(|err| Error::connection(err.to_string(), None))
}

/// Whether the server answers.
pub async fn reachable(config: &MysqlConfig) -> Result<()> {
    connection(config).await?.close().await.ok();
    Ok(())
}

/// Drops a case's FSM table and version table.
pub async fn drop_tables(config: &MysqlConfig, options: &StorageOptions) -> Result<()> {
    let mut conn = connection(config).await?;
    let lock = options.version_table.derived("lock");
    for table in [&options.table, &options.version_table, &lock] {
        let statement = drop_table_if_exists(Dialect::Mysql, table);
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut conn)
            .await
            .map_err(|err| Error::database(false, err))?;
    }
    conn.close().await.ok();
    Ok(())
}

/// The server under test, or `None` after a loud skip (a failure under `CI`).
pub async fn server() -> Option<MysqlConfig> {
    let config = config()?;
    match reachable(&config).await {
        Ok(()) => Some(config),
        Err(err) => fsmstore_conformance::unreachable("MariaDB", URL_VARIABLE, &err),
    }
}

/// Options naming tables no other test uses (`<prefix>_<unique>` and `…_ver`).
pub fn unique_options(prefix: &str) -> StorageOptions {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let table = format!("{prefix}_{:x}_{nanos:08x}", std::process::id());
    StorageOptions::default()
        .table(&table)
        .and_then(|o| o.version_table(&format!("{table}_ver")))
        .expect("valid table names")
}
