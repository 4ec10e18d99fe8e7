//! The version table compares FSM table names byte for byte: `Order` and `order` are two
//! tables with two histories, also in a version table made by an older fsmstore (whose
//! `table_name` compared case-insensitively), which the migrator repairs.

mod common;

use fsmstore_conformance::{block_on, Needs, Suite};
use fsmstore_core::{MigrationTarget, Migrator, SchemaPolicy};
use fsmstore_mysql::sqlx::{self, AssertSqlSafe, Connection};
use fsmstore_mysql::MysqlMigrator;

/// The test is listed as ignored, with the reason, when MariaDB is not there (a failure
/// under `CI`), never as passed.
fn main() -> std::process::ExitCode {
    let needs = Needs::probe("MariaDB is unreachable", || {
        block_on(common::server()).map(drop)
    });
    let mut suite = Suite::new();
    suite.test(
        "table_names_differing_in_case_have_separate_histories",
        &needs,
        || block_on(table_names_differing_in_case_have_separate_histories()),
    );
    suite.run()
}

async fn table_names_differing_in_case_have_separate_histories() {
    let server = common::server().await.expect("probed: MariaDB is there");
    let base = common::unique_options("fm_case");
    let upper = format!("{}_T", base.table);
    let lower = format!("{}_t", base.table);
    let version_table = base.version_table.to_string();
    // A version table as fsmstore 0.1 made it: table_name in the default collation.
    let mut admin = common::connection(&server).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE `{version_table}` (table_name VARCHAR(63) NOT NULL, version BIGINT NOT NULL, \
         description VARCHAR(255) NOT NULL, installed_on TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
         success BOOLEAN NOT NULL, checksum VARCHAR(64) NOT NULL, execution_time_ms BIGINT NOT NULL, \
         PRIMARY KEY (table_name, version)) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
    )))
    .execute(&mut admin)
    .await
    .unwrap();

    let open = |table: String| {
        let options = base
            .clone()
            .table(&table)
            .unwrap()
            .schema(SchemaPolicy::Trust);
        let config = server.clone().options(options).unwrap();
        async move { MysqlMigrator::open(config).await.unwrap() }
    };
    let upper_migrator = open(upper.clone()).await;
    let lower_migrator = open(lower.clone()).await;
    upper_migrator.ensure_schema().await.unwrap();
    let head = upper_migrator.migrations().head();
    // Not "already at head", not drift: `order` has a history of its own.
    assert_eq!(lower_migrator.current().await.unwrap(), 0);
    let report = lower_migrator.ensure_schema().await.unwrap();
    assert_eq!((report.from, report.to), (0, head));
    // Stamping one never touches the other's rows.
    upper_migrator.stamp(MigrationTarget::Base).await.unwrap();
    assert_eq!(upper_migrator.current().await.unwrap(), 0);
    assert_eq!(lower_migrator.current().await.unwrap(), head);

    let collation: String = sqlx::query_scalar(
        "SELECT COLLATION_NAME FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = 'table_name'",
    )
    .bind(&version_table)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(collation, "ascii_bin");

    lower_migrator.drop_tables().await.unwrap();
    for table in [&upper, &version_table] {
        sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE IF EXISTS `{table}`")))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    admin.close().await.ok();
}
