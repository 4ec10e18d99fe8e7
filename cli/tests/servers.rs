//! The `fsmstore` binary against the local PostgreSQL (`FSMSTORE_TEST_POSTGRES_URL`) and
//! MariaDB (`FSMSTORE_TEST_MYSQL_URL`): migrations, adoption of a Python table, and the
//! conformance command. A server that is not there lists its tests as ignored with the
//! reason (a failure under `CI`), never as passed.

use std::process::{Command, ExitCode, Output};

use fsmstore::mysql::sqlx;
use fsmstore::postgres::tokio_postgres;
use fsmstore::serde_json::{json, Value};
use fsmstore::{BotId, ChatId, StorageKey, StorageOptions, UserId};
use fsmstore_conformance::{block_on, Suite};

mod common;

use common::{mysql_connect, mysql_url, pg_connect, pg_url};

fn main() -> ExitCode {
    let postgres = common::postgres_needs();
    let mariadb = common::mariadb_needs();
    let mut suite = Suite::new();
    suite.test("postgres_migrations_and_python_adoption", &postgres, || {
        block_on(postgres_migrations_and_python_adoption())
    });
    suite.test("conformance_command_against_postgres", &postgres, || {
        block_on(conformance_command_against_postgres())
    });
    suite.test("mariadb_migrations_and_python_adoption", &mariadb, || {
        block_on(mariadb_migrations_and_python_adoption())
    });
    suite.test("conformance_command_against_mariadb", &mariadb, || {
        block_on(conformance_command_against_mariadb())
    });
    suite.test(
        "an_at_sign_in_a_postgres_query_keeps_the_table",
        &postgres,
        || block_on(an_at_sign_in_a_postgres_query_keeps_the_table()),
    );
    suite.run()
}

/// The admin connection of a test that runs because PostgreSQL answered the probe.
async fn pg_admin() -> tokio_postgres::Client {
    pg_connect(&pg_url())
        .await
        .unwrap_or_else(|err| panic!("PostgreSQL answered the probe, not now: {err}"))
}

/// The admin connection of a test that runs because MariaDB answered the probe.
async fn mysql_admin() -> sqlx::MySqlConnection {
    mysql_connect(&mysql_url())
        .await
        .unwrap_or_else(|err| panic!("MariaDB answered the probe, not now: {err}"))
}

async fn mysql_exec(conn: &mut sqlx::MySqlConnection, sql: String) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(conn)
        .await
        .unwrap();
}

fn fsmstore(url: &str, table: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fsmstore"))
        .args(args)
        .args([
            "--url",
            url,
            "--table",
            table,
            "--version-table",
            &format!("{table}_ver"),
        ])
        .output()
        .expect("run fsmstore")
}

fn ok(url: &str, table: &str, args: &[&str]) -> String {
    let out = fsmstore(url, table, args);
    assert!(
        out.status.success(),
        "fsmstore {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// After `stamp 1` + `up`, the four Python-shaped rows read back through the default key
/// builder: state and data intact, `''` and `NULL` data as `{}`.
async fn assert_adopted(url: &str, table: &str) {
    let options = StorageOptions::default()
        .table(table)
        .unwrap()
        .version_table(&format!("{table}_ver"))
        .unwrap();
    let storage = fsmstore::open_with(url, options).await.unwrap().storage();
    let record = storage
        .get_record(&StorageKey::new(BotId(0), ChatId(-100), UserId(7)))
        .await
        .unwrap();
    assert_eq!(record.state.as_deref(), Some("Form:name"));
    assert_eq!(Value::Object(record.data), json!({"name": "René"}));
    let age = storage
        .get_record(&StorageKey::new(BotId(0), ChatId(5), UserId(5)))
        .await
        .unwrap();
    assert_eq!(age.state.as_deref(), Some("Form:age"));
    assert!(age.data.is_empty());
    let city = storage
        .get_record(&StorageKey::new(BotId(0), ChatId(6), UserId(6)))
        .await
        .unwrap();
    assert_eq!(city.state.as_deref(), Some("Form:city"));
    assert!(city.data.is_empty());
    let only = storage
        .get_data(&StorageKey::new(BotId(0), ChatId(8), UserId(8)))
        .await
        .unwrap();
    assert_eq!(Value::Object(only), json!({"only": "data"}));
    assert_eq!(storage.key_count().await.unwrap(), 4);
    storage.close().await.unwrap();
}

async fn postgres_migrations_and_python_adoption() {
    let admin = pg_admin().await;
    let url = pg_url();
    let table = format!("py_adopt_{}", std::process::id());
    admin
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {table}; DROP TABLE IF EXISTS {table}_ver;
             CREATE TABLE {table} (id VARCHAR(255) NOT NULL, state VARCHAR, data VARCHAR, PRIMARY KEY (id));
             INSERT INTO {table} VALUES ('fsm:-100:7', 'Form:name', '{{\"name\": \"Ren\\u00e9\"}}');
             INSERT INTO {table} VALUES ('fsm:5:5', 'Form:age', '');
             INSERT INTO {table} VALUES ('fsm:6:6', 'Form:city', NULL);
             INSERT INTO {table} VALUES ('fsm:8:8', NULL, '{{\"only\": \"data\"}}');"
        ))
        .await
        .unwrap();
    let out = fsmstore(&url, &table, &["inspect", "stats"]);
    assert_eq!(out.status.code(), Some(3), "outdated schema exits 3");
    ok(&url, &table, &["migrate", "stamp", "1"]);
    ok(&url, &table, &["migrate", "up"]);
    let history = ok(&url, &table, &["migrate", "history"]);
    assert_eq!(history.matches("applied").count(), 4, "{history}");

    assert_adopted(&url, &table).await;

    // Down and up again keep the rows; base drops the table.
    ok(&url, &table, &["migrate", "down", "--to", "1"]);
    ok(&url, &table, &["migrate", "up"]);
    let stats = ok(&url, &table, &["inspect", "stats", "--json"]);
    assert!(stats.contains("\"rows\": 4"), "{stats}");
    ok(&url, &table, &["migrate", "down", "--to", "base"]);
    admin
        .batch_execute(&format!("DROP TABLE IF EXISTS {table}_ver"))
        .await
        .unwrap();
}

async fn conformance_command_against_postgres() {
    let admin = pg_admin().await;
    let out = fsmstore(&pg_url(), "aiogram_fsm_data", &["conformance"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    let left: i64 = admin
        .query_one(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name LIKE 'fc\\_%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "scratch tables left behind");
}

/// MariaDB: a hand-made table in the seed layout (aiogram-sqlalchemy-storage cannot create
/// one on MySQL: `VARCHAR` without a length), rows in the Python shapes, adopted.
async fn mariadb_migrations_and_python_adoption() {
    let mut admin = mysql_admin().await;
    let url = mysql_url();
    let table = format!("py_adopt_{}", std::process::id());
    mysql_exec(
        &mut admin,
        format!("DROP TABLE IF EXISTS {table}, {table}_ver"),
    )
    .await;
    mysql_exec(
        &mut admin,
        format!(
            "CREATE TABLE {table} (id VARCHAR(255) NOT NULL PRIMARY KEY, state VARCHAR(255) NULL, data TEXT NULL) \
             CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        ),
    )
    .await;
    mysql_exec(
        &mut admin,
        format!(
            "INSERT INTO {table} VALUES ('fsm:-100:7', 'Form:name', '{{\"name\": \"Ren\\\\u00e9\"}}'), \
             ('fsm:5:5', 'Form:age', ''), ('fsm:6:6', 'Form:city', NULL), ('fsm:8:8', NULL, '{{\"only\": \"data\"}}')"
        ),
    )
    .await;
    ok(&url, &table, &["migrate", "stamp", "1"]);
    ok(&url, &table, &["migrate", "up"]);
    assert_adopted(&url, &table).await;
    let history = ok(&url, &table, &["migrate", "history", "--json"]);
    assert_eq!(history.matches("\"applied\"").count(), 4, "{history}");
    ok(&url, &table, &["migrate", "down", "--to", "base"]);
    // The version table and the cluster migration lock's table beside it.
    mysql_exec(
        &mut admin,
        format!("DROP TABLE IF EXISTS {table}_ver, {table}_ver_lock"),
    )
    .await;
}

async fn conformance_command_against_mariadb() {
    let _admin = mysql_admin().await;
    let out = fsmstore(&mysql_url(), "aiogram_fsm_data", &["conformance"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

/// An `@` in a query value is that value's: the query is read, not dropped. Once
/// `application_name=ops@example.com` made fsmstore ignore the whole query, so `table=`
/// was lost and the default table was migrated (and, by `down --to base`, dropped).
async fn an_at_sign_in_a_postgres_query_keeps_the_table() {
    let admin = pg_admin().await;
    let table = format!("at_sign_{}", std::process::id());
    let url = format!(
        "{}?table={table}&version_table={table}_ver&application_name=ops@example.com",
        pg_url()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_fsmstore"))
        .args(["migrate", "up", "--url", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let exists = |name: String| {
        let admin = &admin;
        async move {
            admin
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
                .await
                .unwrap()
                .get::<_, bool>(0)
        }
    };
    assert!(exists(table.clone()).await, "the URL's table was created");
    let out = Command::new(env!("CARGO_BIN_EXE_fsmstore"))
        .args(["migrate", "down", "--to", "base", "--url", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!exists(table.clone()).await, "the URL's table was dropped");
    admin
        .batch_execute(&format!("DROP TABLE IF EXISTS {table}_ver"))
        .await
        .unwrap();
}
