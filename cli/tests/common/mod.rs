//! Shared by the CLI's server tests: where the servers are, connections to them, and the
//! probes that list a test as ignored when its server is missing (a failure under `CI`).
#![allow(dead_code)]

use fsmstore::mysql::sqlx;
use fsmstore::postgres::tokio_postgres;
use fsmstore_conformance::{block_on, unreachable, Needs};

/// The PostgreSQL the tests use.
pub fn pg_url() -> String {
    std::env::var("FSMSTORE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The MariaDB the tests use.
pub fn mysql_url() -> String {
    std::env::var("FSMSTORE_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// A connection to the PostgreSQL of `url`, its driving task spawned.
pub async fn pg_connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let config = fsmstore::postgres::PgConfig::from_url(url).expect("postgres URL");
    let (client, connection) = config.pg.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// A connection to the MariaDB of `url`.
pub async fn mysql_connect(url: &str) -> Result<sqlx::MySqlConnection, sqlx::Error> {
    use sqlx::Connection;
    let config = fsmstore::mysql::MysqlConfig::from_url(url).expect("mysql URL");
    sqlx::MySqlConnection::connect_with(&config.connect).await
}

/// Whether [`pg_url`] answers.
pub fn postgres_needs() -> Needs {
    Needs::probe("PostgreSQL is unreachable", || {
        block_on(async {
            match pg_connect(&pg_url()).await {
                Ok(_) => Some(()),
                Err(err) => unreachable("PostgreSQL", "FSMSTORE_TEST_POSTGRES_URL", &err),
            }
        })
    })
}

/// Whether [`mysql_url`] answers.
pub fn mariadb_needs() -> Needs {
    Needs::probe("MariaDB is unreachable", || {
        block_on(async {
            match mysql_connect(&mysql_url()).await {
                Ok(_) => Some(()),
                Err(err) => unreachable("MariaDB", "FSMSTORE_TEST_MYSQL_URL", &err),
            }
        })
    })
}
