//! The password never shows: not in `Debug` or `Display` of the config, the storage or the
//! migrator, and not in the errors of a refused login or an unreachable server.

mod common;

use std::time::Duration;

use fsmstore_conformance::{block_on, Needs, Suite};
use fsmstore_core::Storage;
use fsmstore_mysql::{MysqlConfig, MysqlMigrator, MysqlStorage};

/// The tests that need MariaDB are listed as ignored, with the reason, when it is not
/// there (a failure under `CI`), never as passed.
fn main() -> std::process::ExitCode {
    let needs = Needs::probe("MariaDB is unreachable", || {
        block_on(common::server()).map(drop)
    });
    let mut suite = Suite::new();
    suite.test(
        "config_debug_and_display_hide_the_password",
        &Needs::Met,
        config_debug_and_display_hide_the_password,
    );
    suite.test("unreachable_server_hides_the_password", &Needs::Met, || {
        block_on(unreachable_server_hides_the_password())
    });
    suite.test("refused_login_hides_the_password", &needs, || {
        block_on(refused_login_hides_the_password())
    });
    suite.test(
        "storage_and_migrator_debug_hide_the_password",
        &needs,
        || block_on(storage_and_migrator_debug_hide_the_password()),
    );
    suite.run()
}

const SECRET: &str = "XYZZY-pl0ugh";

fn assert_hidden(shown: &str) {
    assert!(!shown.contains(SECRET), "the password leaked: {shown}");
}

fn config_debug_and_display_hide_the_password() {
    let config = MysqlConfig::from_url(&format!(
        "mysql://bot:{SECRET}@db.example:3306/bots?table=fsm&ssl-mode=disabled"
    ))
    .unwrap();
    assert_hidden(&format!("{config}"));
    assert_hidden(&format!("{config:?}"));
    assert_hidden(&format!("{config:#?}"));
    assert!(config
        .to_string()
        .starts_with("mysql://bot:***@db.example:3306/bots"));
}

async fn refused_login_hides_the_password() {
    let server = common::server().await.expect("probed: MariaDB is there");
    // A wrong password for the test user: the server refuses the login.
    let connect = server.connect.clone().password(SECRET);
    let mut config = server.clone().connect_options(connect);
    config.options.connect_timeout = Duration::from_secs(3);
    let err = MysqlStorage::open(config.clone()).await.unwrap_err();
    assert_hidden(&format!("{err} {err:?}"));
    eprintln!("refused login: {err}");
    assert!(
        !err.is_transient(),
        "a refused login is not transient: {err:?}"
    );
    let err = MysqlMigrator::open(config).await.unwrap_err();
    assert_hidden(&format!("{err} {err:?}"));
}

async fn unreachable_server_hides_the_password() {
    let unreachable = MysqlConfig::from_url(&format!(
        "mysql://bot:{SECRET}@127.0.0.1:9/bots?connect_timeout_ms=200"
    ))
    .unwrap();
    let err = MysqlStorage::open(unreachable).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_hidden(&format!("{err} {err:?}"));
}

async fn storage_and_migrator_debug_hide_the_password() {
    let server = common::server().await.expect("probed: MariaDB is there");
    let options = common::unique_options("fm_pw");
    let storage = MysqlStorage::open(
        server
            .clone()
            .options(options.clone().schema(fsmstore_core::SchemaPolicy::Upgrade))
            .unwrap(),
    )
    .await
    .unwrap();
    // The test server's password (if any) must not show either.
    let password_free = format!("{storage:?} {:?}", storage.migrator().unwrap());
    assert_hidden(&password_free);
    assert!(password_free.contains("***"), "{password_free}");
    storage.close().await.ok();
    common::drop_tables(&server, &options).await.unwrap();
}
