//! TLS with rustls (feature `tls`): the connection is encrypted and the certificate
//! verified. Runs against `FSMSTORE_TEST_POSTGRES_TLS_URL`, by default the local server
//! through `localhost` with Debian's snake-oil certificate as the trusted root.
#![cfg(feature = "tls")]

mod common;

use fsmstore_core::sql::drop_table_if_exists;
use fsmstore_core::{
    BotId, ChatId, Dialect, SchemaPolicy, Storage, StorageKey, StorageOptions, UserId,
};
use fsmstore_postgres::{PgConfig, PgStorage};

const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

#[tokio::test(flavor = "multi_thread")]
async fn tls_is_used_and_the_certificate_verified() {
    let Some(admin) = common::admin().await else {
        return;
    };
    let url = match std::env::var("FSMSTORE_TEST_POSTGRES_TLS_URL") {
        Ok(url) => url,
        Err(_) => {
            let ssl: String = admin.query_one("SHOW ssl", &[]).await.unwrap().get(0);
            if ssl != "on" || !std::path::Path::new(SNAKEOIL).exists() {
                eprintln!("*** SKIPPED: the local PostgreSQL has no TLS with {SNAKEOIL}; set FSMSTORE_TEST_POSTGRES_TLS_URL");
                return;
            }
            format!("postgres://postgres@localhost:5432/postgres?sslmode=require&ssl_root_cert={SNAKEOIL}")
        }
    };
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
