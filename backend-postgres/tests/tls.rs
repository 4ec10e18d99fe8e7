//! TLS with rustls (feature `tls`): the connection is encrypted and the certificate
//! verified. Runs against `FSMSTORE_TEST_POSTGRES_TLS_URL`, by default the local server
//! through `localhost` with Debian's snake-oil certificate as the trusted root.
//!
//! When the server is not there, or (without `FSMSTORE_TEST_POSTGRES_TLS_URL`) the local
//! one offers no TLS with that certificate, the test is listed as ignored, with the reason
//! (a failure under `CI`), never as passed (`harness = false`:
//! [`fsmstore_conformance::Suite`]). Built with the feature only (`required-features` in
//! `Cargo.toml`).

mod common;

use fsmstore_conformance::{block_on, Needs, Suite};
use fsmstore_core::sql::drop_table_if_exists;
use fsmstore_core::{
    BotId, ChatId, Dialect, SchemaPolicy, Storage, StorageKey, StorageOptions, UserId,
};
use fsmstore_postgres::{PgConfig, PgStorage};

const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

fn main() -> std::process::ExitCode {
    let needs = Needs::probe(
        &format!(
            "the local PostgreSQL has no TLS with {SNAKEOIL}; set FSMSTORE_TEST_POSTGRES_TLS_URL"
        ),
        || {
            block_on(async {
                let admin = common::admin().await?;
                tls_url(&admin).await.map(drop)
            })
        },
    );
    let mut suite = Suite::new();
    suite.test("tls_is_used_and_the_certificate_verified", &needs, || {
        block_on(tls_is_used_and_the_certificate_verified())
    });
    suite.run()
}

/// The URL of a server with TLS: `FSMSTORE_TEST_POSTGRES_TLS_URL`, or the local server
/// (`admin`'s) through `localhost` when it has TLS on and the snake-oil certificate is
/// there; else `None` with a loud skip, or a panic under `CI`.
async fn tls_url(admin: &tokio_postgres::Client) -> Option<String> {
    match std::env::var("FSMSTORE_TEST_POSTGRES_TLS_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            let ssl: String = admin.query_one("SHOW ssl", &[]).await.unwrap().get(0);
            if ssl != "on" || !std::path::Path::new(SNAKEOIL).exists() {
                if std::env::var_os("CI").is_some() {
                    panic!("the local PostgreSQL has no TLS with {SNAKEOIL} and CI is set: set FSMSTORE_TEST_POSTGRES_TLS_URL");
                }
                eprintln!("*** SKIPPED: the local PostgreSQL has no TLS with {SNAKEOIL}; set FSMSTORE_TEST_POSTGRES_TLS_URL");
                return None;
            }
            Some(format!("postgres://postgres@localhost:5432/postgres?sslmode=require&ssl_root_cert={SNAKEOIL}"))
        }
    }
}

async fn tls_is_used_and_the_certificate_verified() {
    let admin = common::admin().await.expect("probed: PostgreSQL is there");
    let url = tls_url(&admin).await.expect("probed: the server has TLS");
    let app = format!("fsmstore-tls-{}", std::process::id());
    let table = format!("tls_{}", std::process::id());
    let options = StorageOptions::default()
        .table(&table)
        .unwrap()
        .version_table(&format!("{table}_ver"))
        .unwrap()
        .schema(SchemaPolicy::Upgrade);
    let mut config = PgConfig::from_url(&url).unwrap().options(options).unwrap();
    config.pg.application_name(&app);
    let storage = PgStorage::open(config.clone())
        .await
        .expect("TLS connection");
    let key = StorageKey::new(BotId(1), ChatId(2), UserId(3));
    storage.set_state(&key, Some("secure")).await.unwrap();
    assert_eq!(
        storage.get_state(&key).await.unwrap().as_deref(),
        Some("secure")
    );
    let row = admin
        .query_one(
            "SELECT COUNT(*), COALESCE(bool_and(s.ssl), false) FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) WHERE a.application_name = $1",
            &[&app],
        )
        .await
        .unwrap();
    let (sessions, all_tls): (i64, bool) = (row.get(0), row.get(1));
    assert!(
        sessions > 0 && all_tls,
        "{sessions} sessions, all TLS: {all_tls}"
    );
    storage.close().await.unwrap();

    // Without the root that signs the server's certificate, verification fails.
    let mut untrusted = config.clone();
    untrusted.ssl_root_cert = None;
    let err = PgStorage::open(untrusted).await.unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate")
            || format!("{err:?}").contains("Certificate"),
        "{err:?}"
    );

    for t in [&config.options.table, &config.options.version_table] {
        admin
            .batch_execute(&drop_table_if_exists(Dialect::Postgres, t))
            .await
            .unwrap();
    }
}
