//! A migration whose second statement fails: MySQL has already committed the first, so the
//! migration is reported dirty (naming the version and the stamp command), stays dirty on
//! every later run, is repaired by `stamp`, and the migration lock is free throughout.

mod common;

use std::time::Duration;

use fsmstore_conformance::{block_on, block_on_threads, Needs, Suite};
use fsmstore_core::migrations::{builtin, Script};
use fsmstore_core::sql::MigrationLock;
use fsmstore_core::{
    Dialect, Error, MigrationSource, MigrationTarget, Migrator, SchemaPolicy, Storage,
};
use fsmstore_mysql::sqlx::{self, Connection};
use fsmstore_mysql::{MysqlConfig, MysqlMigrator, MysqlStorage};

/// The tests are listed as ignored, with the reason, when MariaDB is not there (a failure
/// under `CI`), never as passed.
fn main() -> std::process::ExitCode {
    let needs = Needs::probe("MariaDB is unreachable", || {
        block_on(common::server()).map(drop)
    });
    let mut suite = Suite::new();
    suite.test(
        "half_applied_migration_is_dirty_until_stamped",
        &needs,
        || block_on_threads(2, half_applied_migration_is_dirty_until_stamped()),
    );
    suite.test("failing_first_statement_leaves_no_row", &needs, || {
        block_on_threads(2, failing_first_statement_leaves_no_row())
    });
    suite.test("half_applied_downgrade_is_dirty", &needs, || {
        block_on_threads(2, half_applied_downgrade_is_dirty())
    });
    suite.test(
        "migration_in_progress_is_not_reported_dirty",
        &needs,
        || block_on_threads(2, migration_in_progress_is_not_reported_dirty()),
    );
    suite.test("a_held_migration_lock_names_its_holder", &needs, || {
        block_on_threads(2, a_held_migration_lock_names_its_holder())
    });
    suite.run()
}

/// Version 4: adds a column (commits), then fails.
fn half_failing() -> Vec<MigrationSource> {
    let script = Script {
        up: "ALTER TABLE {table} ADD COLUMN half_applied INT NULL;\n\
             SELECT no_such_column FROM fsmstore_no_such_table;\n"
            .into(),
        down: "ALTER TABLE {table} DROP COLUMN half_applied;\n".into(),
    };
    let mut sources = builtin();
    sources.push(MigrationSource::new(5, "fails half-way").with_script_everywhere(&script));
    sources
}

/// `IS_FREE_LOCK` of the migration lock, asked on a connection of its own.
async fn lock_is_free(
    config: &fsmstore_mysql::MysqlConfig,
    version_table: &fsmstore_core::TableName,
) -> bool {
    let lock = MigrationLock::mysql(version_table);
    let mut conn = common::connection(config).await.unwrap();
    let free: Option<i64> = sqlx::query_scalar("SELECT IS_FREE_LOCK(?)")
        .bind(lock.name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    free == Some(1)
}

async fn half_applied_migration_is_dirty_until_stamped() {
    let server = common::server().await.expect("probed: MariaDB is there");
    let options = common::unique_options("fm_half");
    let table = options.table.to_string();
    let config = server
        .clone()
        .options(options.clone().migrations(half_failing()))
        .unwrap();
    let migrator = MysqlMigrator::open(config.clone()).await.unwrap();

    let err = migrator.ensure_schema().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::MigrationDirty {
                version: 5,
                source: Some(_),
                ..
            }
        ),
        "the failing run keeps the statement's error: {err:?}"
    );
    // The remedies: stamp 5 (completed) or 4 (undone), on this table and version table.
    let remedies = err.remedies();
    let version_table = options.version_table.to_string();
    assert!(
        matches!(
            remedies.as_slice(),
            [
                fsmstore_core::Remedy::Stamp { table: t1, version: 5, version_table: v1 },
                fsmstore_core::Remedy::Stamp { table: t2, version: 4, version_table: v2 },
            ] if *t1 == table && *t2 == table && *v1 == version_table && *v2 == version_table
        ),
        "{remedies:?}"
    );
    assert!(lock_is_free(&server, &options.version_table).await);

    // The row stays unfinished: status, a second run and opening a storage all say dirty.
    let applied = migrator.applied().await.unwrap();
    assert_eq!(applied.len(), 5);
    assert!(!applied[4].success && applied[..4].iter().all(|row| row.success));
    assert!(matches!(
        migrator.status().await,
        Err(Error::MigrationDirty { version: 5, .. })
    ));
    let again = tokio::time::timeout(Duration::from_secs(20), migrator.ensure_schema())
        .await
        .expect("the migration lock was not released");
    assert!(
        matches!(again, Err(Error::MigrationDirty { version: 5, .. })),
        "{again:?}"
    );
    let opened = MysqlStorage::open(verify(&config)).await;
    assert!(matches!(
        opened,
        Err(Error::MigrationDirty { version: 5, .. })
    ));

    // The operator completes the migration by hand, then records it: stamp repairs the row.
    migrator.stamp(MigrationTarget::Version(5)).await.unwrap();
    assert_eq!(migrator.current().await.unwrap(), 5);
    assert!(migrator.applied().await.unwrap().iter().all(|r| r.success));

    // The lock is free: another migrator gets through at once, and the table works.
    let other = MysqlMigrator::open(config.clone()).await.unwrap();
    let report = tokio::time::timeout(Duration::from_secs(20), other.ensure_schema())
        .await
        .expect("the migration lock was not released")
        .unwrap();
    assert!(report.steps.is_empty(), "{report:?}");
    let storage = MysqlStorage::open(verify(&config)).await.unwrap();
    storage
        .set_state(
            &fsmstore_core::StorageKey::new(
                fsmstore_core::BotId(1),
                fsmstore_core::ChatId(2),
                fsmstore_core::UserId(3),
            ),
            Some("S"),
        )
        .await
        .unwrap();
    storage.close().await.unwrap();
    assert!(lock_is_free(&server, &options.version_table).await);
    common::drop_tables(&server, &options).await.unwrap();
}

async fn failing_first_statement_leaves_no_row() {
    let server = common::server().await.expect("probed: MariaDB is there");
    let options = common::unique_options("fm_first");
    let mut sources = builtin();
    sources.push(
        MigrationSource::new(5, "fails at once").with_script(
            Dialect::Mysql,
            Script {
                up: "SELECT no_such_column FROM fsmstore_no_such_table;\n\
                 ALTER TABLE {table} ADD COLUMN never INT NULL;\n"
                    .into(),
                down: "SELECT 1;\n".into(),
            },
        ),
    );
    let migrator = MysqlMigrator::open(
        server
            .clone()
            .options(options.clone().migrations(sources))
            .unwrap(),
    )
    .await
    .unwrap();
    let err = migrator.ensure_schema().await.unwrap_err();
    assert!(
        matches!(err, Error::MigrationFailed { version: 5, .. }),
        "{err:?}"
    );
    assert_eq!(migrator.current().await.unwrap(), 4, "no row for version 5");
    assert!(lock_is_free(&server, &options.version_table).await);
    common::drop_tables(&server, &options).await.unwrap();
}

async fn half_applied_downgrade_is_dirty() {
    let server = common::server().await.expect("probed: MariaDB is there");
    let options = common::unique_options("fm_down");
    let mut sources = half_failing();
    sources[4] = sources[4].clone().with_script(
        Dialect::Mysql,
        Script {
            up: "ALTER TABLE {table} ADD COLUMN half_applied INT NULL;\n".into(),
            down: "ALTER TABLE {table} DROP COLUMN half_applied;\n\
               SELECT no_such_column FROM fsmstore_no_such_table;\n"
                .into(),
        },
    );
    let migrator = MysqlMigrator::open(
        server
            .clone()
            .options(options.clone().migrations(sources))
            .unwrap(),
    )
    .await
    .unwrap();
    migrator.ensure_schema().await.unwrap();
    let err = migrator
        .migrate(MigrationTarget::Version(4))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::MigrationDirty { version: 5, .. }),
        "{err:?}"
    );
    // The column is gone: the operator records the downgrade as done.
    migrator.stamp(MigrationTarget::Version(4)).await.unwrap();
    assert_eq!(migrator.current().await.unwrap(), 4);
    common::drop_tables(&server, &options).await.unwrap();
}

/// Version 4: one slow statement (it holds the migration lock for a second).
fn slow() -> Vec<MigrationSource> {
    let script = Script {
        up: "SELECT SLEEP(1);\n".into(),
        down: "SELECT 1;\n".into(),
    };
    let mut sources = builtin();
    sources.push(MigrationSource::new(5, "slow").with_script_everywhere(&script));
    sources
}

/// While one migrator runs a migration (its row unfinished), another process asking for
/// the status waits for the lock and sees the finished migration, not a dirty one.
async fn migration_in_progress_is_not_reported_dirty() {
    let server = common::server().await.expect("probed: MariaDB is there");
    let options = common::unique_options("fm_busy").migrations(slow());
    let config = server.clone().options(options.clone()).unwrap();
    MysqlMigrator::open(config.clone())
        .await
        .unwrap()
        .migrate(MigrationTarget::Version(4))
        .await
        .unwrap();
    let running = {
        let config = config.clone();
        tokio::spawn(async move {
            let migrator = MysqlMigrator::open(config).await.unwrap();
            migrator.ensure_schema().await
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let observer = MysqlMigrator::open(config.clone()).await.unwrap();
    let status = observer.status().await;
    assert!(
        matches!(status, Ok(ref s) if s.current == 5),
        "a migration in progress was reported as {status:?}"
    );
    running.await.unwrap().unwrap();
    common::drop_tables(&server, &options).await.unwrap();
}

/// `config` opened with `SchemaPolicy::Verify`.
fn verify(config: &MysqlConfig) -> MysqlConfig {
    let mut config = config.clone();
    config.options.schema = SchemaPolicy::Verify;
    config
}

/// A migrator waits for a held `GET_LOCK` at most its lock timeout, then answers
/// `MigrationLockTimeout` naming the connection that holds it; once it is released the
/// same migrator goes through.
async fn a_held_migration_lock_names_its_holder() {
    let server = common::server().await.expect("probed: MariaDB is there");
    let options = common::unique_options("fm_held");
    let lock = MigrationLock::mysql(&options.version_table);
    let mut holder = common::connection(&server).await.unwrap();
    let taken: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 5)")
        .bind(&lock.name)
        .fetch_one(&mut holder)
        .await
        .unwrap();
    assert_eq!(taken, Some(1));
    let holder_id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
        .fetch_one(&mut holder)
        .await
        .unwrap();
    let config = server
        .clone()
        .options(options.clone())
        .unwrap()
        .lock_timeout(Duration::from_secs(1));
    let migrator = MysqlMigrator::open(config).await.unwrap();
    let err = migrator
        .migrate(MigrationTarget::Head)
        .await
        .expect_err("the lock is held");
    assert!(
        matches!(&err, Error::MigrationLockTimeout { holder: Some(h), .. } if h.contains(&format!("connection {holder_id} "))),
        "{err:?}"
    );
    assert!(err.is_transient(), "{err:?}");
    holder.close().await.ok();
    migrator.migrate(MigrationTarget::Head).await.unwrap();
    common::drop_tables(&server, &options).await.unwrap();
}
