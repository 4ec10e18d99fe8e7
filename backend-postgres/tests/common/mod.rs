//! The local server the tests run against, and the suite's backend.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use async_trait::async_trait;
use fsmstore_conformance::{Backend, Capabilities};
use fsmstore_core::sql::drop_table_if_exists;
use fsmstore_core::{Database, Dialect, Result, StorageOptions};
use fsmstore_postgres::{PgConfig, PgStorage};

pub const URL_VARIABLE: &str = "FSMSTORE_TEST_POSTGRES_URL";

pub fn url() -> String {
    std::env::var(URL_VARIABLE)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A connection for the test itself (DDL cleanup, killing sessions), or `None` with a
/// loud skip when the server is unreachable (a failure under `CI`).
pub async fn admin() -> Option<tokio_postgres::Client> {
    let config = PgConfig::from_url(&url()).expect("FSMSTORE_TEST_POSTGRES_URL is a postgres URL");
    match config.pg.connect(tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Some(client)
        }
        Err(err) => fsmstore_conformance::unreachable("PostgreSQL", URL_VARIABLE, &err),
    }
}

pub struct PgBackend {
    admin: tokio_postgres::Client,
    /// Where storages connect: the server, or a pooler in front of it.
    url: String,
    name: &'static str,
}

impl PgBackend {
    /// The server's config with the case's options, in a pool of 8 unless the case asks
    /// for another size.
    fn config(&self, options: StorageOptions) -> Result<PgConfig> {
        let config = PgConfig::from_url(&self.url).expect("valid URL");
        let options = if options.pool_max == fsmstore_core::DEFAULT_POOL_MAX {
            options.pool_max(8)
        } else {
            options
        };
        config.options(options)
    }
}

#[async_trait]
impl Backend for PgBackend {
    fn name(&self) -> String {
        self.name.into()
    }

    async fn open_database(&self, options: StorageOptions) -> Result<Database> {
        PgStorage::open(self.config(options)?).await?.database()
    }

    async fn cleanup(&self, options: &StorageOptions) -> Result<()> {
        for table in [&options.table, &options.version_table] {
            let sql = drop_table_if_exists(Dialect::Postgres, table);
            self.admin
                .batch_execute(&sql)
                .await
                .map_err(|err| fsmstore_core::Error::database(false, err))?;
        }
        Ok(())
    }

    fn dialect(&self) -> Option<Dialect> {
        Some(Dialect::Postgres)
    }

    async fn execute_raw(&self, _options: &StorageOptions, sql: &str) -> Result<()> {
        self.admin
            .batch_execute(sql)
            .await
            .map_err(|err| fsmstore_core::Error::database(false, err))
    }

    async fn query_raw(&self, _options: &StorageOptions, sql: &str) -> Result<Vec<Option<String>>> {
        let messages = self
            .admin
            .simple_query(sql)
            .await
            .map_err(|err| fsmstore_core::Error::database(false, err))?;
        Ok(messages
            .iter()
            .filter_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
                _ => None,
            })
            .collect())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            kills_sessions: true,
            ..Capabilities::sql()
        }
    }

    async fn kill_session(&self, session: i64) -> Result<bool> {
        let pid = i32::try_from(session).expect("a backend pid");
        let row = self
            .admin
            .query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .map_err(|err| fsmstore_core::Error::database(false, err))?;
        Ok(row.get(0))
    }
}

pub async fn backend() -> Option<Arc<dyn Backend>> {
    let admin = admin().await?;
    Some(Arc::new(PgBackend {
        admin,
        url: url(),
        name: "postgres",
    }))
}

pub const PGBOUNCER_VARIABLE: &str = "FSMSTORE_TEST_PGBOUNCER_URL";

/// PgBouncer in transaction mode in front of the server (`scripts/pgbouncer.sh start`),
/// with `pooler=transaction` added.
pub fn pgbouncer_url() -> String {
    let url = std::env::var(PGBOUNCER_VARIABLE)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:6432/postgres".into());
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}pooler=transaction")
}

/// Storages through PgBouncer, cleanup and session kills on the server itself; `None`
/// with a loud skip when PgBouncer is not running (a failure under `CI`).
pub async fn pgbouncer_backend() -> Option<Arc<dyn Backend>> {
    let admin = admin().await?;
    let url = pgbouncer_url();
    let config = PgConfig::from_url(&url).expect("FSMSTORE_TEST_PGBOUNCER_URL is a postgres URL");
    if let Err(err) = config.pg.connect(tokio_postgres::NoTls).await {
        return fsmstore_conformance::unreachable("PgBouncer", PGBOUNCER_VARIABLE, &err);
    }
    Some(Arc::new(PgBackend {
        admin,
        url,
        name: "postgres-pgbouncer",
    }))
}
