//! The whole conformance suite against the server `FSMSTORE_TEST_MYSQL_URL` names (default:
//! the local MariaDB), and on a Galera node (`FSMSTORE_TEST_GALERA_URLS`). Each case runs
//! on its own FSM and version table, dropped afterwards.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use fsmstore_conformance::{Backend, Capabilities};
use fsmstore_core::{Database, Dialect, Error, Result, StorageOptions};
use fsmstore_mysql::sqlx::{self, Row};
use fsmstore_mysql::{MysqlConfig, MysqlStorage};

struct MysqlBackend {
    config: MysqlConfig,
}

impl MysqlBackend {
    /// The server's config with the case's options; the backend's small pool is a
    /// default the case may change (`pool_max(2)`), not a setting of its own.
    fn config(&self, options: StorageOptions) -> Result<MysqlConfig> {
        let mut config = self.config.clone();
        let small = std::mem::replace(
            &mut config.options.pool_max,
            fsmstore_core::DEFAULT_POOL_MAX,
        );
        let options = if options.pool_max == fsmstore_core::DEFAULT_POOL_MAX {
            options.pool_max(small)
        } else {
            options
        };
        config.options(options)
    }
}

#[async_trait]
impl Backend for MysqlBackend {
    fn name(&self) -> String {
        "mysql".into()
    }

    async fn open_database(&self, options: StorageOptions) -> Result<Database> {
        MysqlStorage::open(self.config(options)?).await?.database()
    }

    fn dialect(&self) -> Option<Dialect> {
        Some(Dialect::Mysql)
    }

    async fn execute_raw(&self, _options: &StorageOptions, sql: &str) -> Result<()> {
        let mut conn = common::connection(&self.config).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .map(drop)
            .map_err(|err| Error::database(false, err))
    }

    async fn query_raw(&self, _options: &StorageOptions, sql: &str) -> Result<Vec<Option<String>>> {
        let mut conn = common::connection(&self.config).await?;
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&mut conn)
            .await
            .map_err(|err| Error::database(false, err))?;
        rows.iter()
            .map(|row| {
                let bytes: Option<Vec<u8>> = row
                    .try_get_unchecked(0)
                    .map_err(|err| Error::database(false, err))?;
                Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
            })
            .collect()
    }

    async fn cleanup(&self, options: &StorageOptions) -> Result<()> {
        common::drop_tables(&self.config, options).await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            collated_ids: true,
            backslash_escapes: true,
            kills_sessions: true,
            ..Capabilities::sql()
        }
    }

    async fn kill_session(&self, session: i64) -> Result<bool> {
        let mut conn = common::connection(&self.config).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("KILL {session}")))
            .execute(&mut conn)
            .await
            .map_err(|err| fsmstore_core::Error::database(false, err))?;
        Ok(true)
    }
}

async fn backend() -> Option<Arc<dyn Backend>> {
    let config = common::config()?;
    match common::reachable(&config).await {
        Ok(()) => Some(Arc::new(MysqlBackend { config })),
        Err(err) => fsmstore_conformance::unreachable("MariaDB", common::URL_VARIABLE, &err),
    }
}

/// The variable naming the Galera nodes (`scripts/galera.sh urls`), comma-separated.
const GALERA_VARIABLE: &str = "FSMSTORE_TEST_GALERA_URLS";

/// The Galera nodes' URLs (default: the cluster `scripts/galera.sh start` runs).
fn galera_urls() -> Vec<String> {
    std::env::var(GALERA_VARIABLE)
        .unwrap_or_else(|_| {
            "mysql://root@127.0.0.1:13061/test,mysql://root@127.0.0.1:13062/test,mysql://root@127.0.0.1:13063/test".into()
        })
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// The first Galera node, or `None` after a loud skip (a failure under `CI`).
async fn galera_backend() -> Option<Arc<dyn Backend>> {
    let mut config = MysqlConfig::from_url(&galera_urls()[0]).expect("a mysql:// URL");
    config.options.pool_max = 8;
    match common::reachable(&config).await {
        Ok(()) => Some(Arc::new(MysqlBackend { config })),
        Err(err) => fsmstore_conformance::unreachable("Galera", GALERA_VARIABLE, &err),
    }
}

/// The whole suite on the server; again on one node of a three-node Galera cluster
/// (`galera::`); the storage group again in the layout of Python's
/// aiogram-sqlalchemy-storage (`aiogram_layout::`). A server that is not there leaves its
/// cases listed as ignored, with the reason (`harness = false`); under `CI` they fail.
fn main() -> std::process::ExitCode {
    let mut suite = fsmstore_conformance::Suite::new();
    suite.backend("", backend);
    suite.backend("galera::", galera_backend);
    suite.run()
}
