//! The schema group: migrations up and down, locking, drift, stamping, schema checks.

use std::sync::Arc;

use fsmstore_core::{
    migrations::builtin, Dialect, Direction, Error, ErrorKind, MigrationSource, MigrationTarget,
    Remedy, SchemaPolicy,
};
use serde_json::json;

use super::{key, obj};
use crate::Ctx;

/// Head → base → head: the table is created, dropped and created again, and works.
pub async fn migrate_up_down_up(ctx: Ctx) {
    let m = ctx.migrator().await;
    let head = m.migrations().head();
    let up = m.migrate(MigrationTarget::Head).await.unwrap();
    assert_eq!((up.from, up.to, up.steps.len() as i64), (0, head, head));
    assert!(up.steps.iter().all(|(_, d, _)| *d == Direction::Up));
    let s = ctx.storage().await;
    s.set_state(&key(1), Some("S")).await.unwrap();
    s.close().await.unwrap();

    let down = m.migrate(MigrationTarget::Base).await.unwrap();
    assert_eq!((down.from, down.to), (head, 0));
    assert_eq!(
        down.steps
            .iter()
            .map(|(v, d, _)| (*v, *d))
            .collect::<Vec<_>>(),
        (1..=head)
            .rev()
            .map(|v| (v, Direction::Down))
            .collect::<Vec<_>>()
    );
    assert_eq!(m.current().await.unwrap(), 0);

    m.migrate(MigrationTarget::Head).await.unwrap();
    assert_eq!(m.current().await.unwrap(), head);
    let s = ctx.storage().await;
    assert_eq!(
        s.get_state(&key(1)).await.unwrap(),
        None,
        "base dropped the rows"
    );
    s.set_state(&key(1), Some("again")).await.unwrap();
    assert_eq!(
        s.get_state(&key(1)).await.unwrap().as_deref(),
        Some("again")
    );
}

/// Down one version and up again keeps every row, state and data.
pub async fn downgrade_and_upgrade_keep_rows(ctx: Ctx) {
    let s = ctx.storage().await;
    s.set_state(&key(1), Some("Form:name")).await.unwrap();
    s.set_data(&key(1), &obj(json!({"name": "Ann", "n": {"x": [1, 2]}})))
        .await
        .unwrap();
    s.set_data(&key(2), &obj(json!({"only": "data"})))
        .await
        .unwrap();
    s.close().await.unwrap();
    let m = ctx.migrator().await;
    m.migrate(MigrationTarget::Version(1)).await.unwrap();
    assert_eq!(m.current().await.unwrap(), 1);
    m.migrate(MigrationTarget::Head).await.unwrap();
    let s = ctx.storage().await;
    let one = s.get_record(&key(1)).await.unwrap();
    assert_eq!(one.state.as_deref(), Some("Form:name"));
    assert_eq!(one.data, obj(json!({"name": "Ann", "n": {"x": [1, 2]}})));
    assert_eq!(
        s.get_data(&key(2)).await.unwrap(),
        obj(json!({"only": "data"}))
    );
    assert_eq!(s.key_count().await.unwrap(), 2);
}

/// `ensure_schema` twice: the second run does nothing.
pub async fn ensure_schema_is_idempotent(ctx: Ctx) {
    let m = ctx.migrator().await;
    let first = m.ensure_schema().await.unwrap();
    assert_eq!(first.steps.len() as i64, m.migrations().head());
    let second = m.ensure_schema().await.unwrap();
    assert!(second.steps.is_empty(), "{second:?}");
    assert_eq!(
        (second.from, second.to),
        (m.migrations().head(), m.migrations().head())
    );
}

/// Eight migrators call `ensure_schema` at once: all succeed and each migration runs once.
pub async fn concurrent_ensure_schema(ctx: Ctx) {
    let ctx = Arc::new(ctx);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let ctx = Arc::clone(&ctx);
            tokio::spawn(async move { ctx.migrator().await.ensure_schema().await })
        })
        .collect();
    let mut ran = Vec::new();
    for task in tasks {
        let report = task.await.expect("task panicked").unwrap();
        ran.extend(report.steps.iter().map(|(v, _, _)| *v));
    }
    ran.sort_unstable();
    let m = ctx.migrator().await;
    let head = m.migrations().head();
    assert_eq!(
        ran,
        (1..=head).collect::<Vec<_>>(),
        "each migration exactly once"
    );
    let applied = m.applied().await.unwrap();
    assert_eq!(applied.len() as i64, head);
    assert!(applied.iter().all(|row| row.success));
}

/// `+1` and `-1` move exactly one version each.
pub async fn relative_targets_move_one_step(ctx: Ctx) {
    let m = ctx.migrator().await;
    m.migrate(MigrationTarget::Relative(1)).await.unwrap();
    assert_eq!(m.current().await.unwrap(), 1);
    m.migrate(MigrationTarget::Relative(2)).await.unwrap();
    assert_eq!(m.current().await.unwrap(), 3);
    let report = m.migrate(MigrationTarget::Relative(-1)).await.unwrap();
    assert_eq!(report.steps.len(), 1);
    assert_eq!(m.current().await.unwrap(), 2);
    let err = m.migrate(MigrationTarget::Relative(-3)).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    assert_eq!(m.current().await.unwrap(), 2);
}

fn edited(version: i64, dialect: Dialect) -> Vec<MigrationSource> {
    let mut sources = builtin();
    let script = sources[(version - 1) as usize]
        .script_mut(dialect)
        .expect("the built-in migrations have every dialect");
    script.up = format!("{}\n-- edited after it ran\n", script.up).into();
    sources
}

/// A migration edited after it ran is drift: an error naming its version, from `status`,
/// `migrate` and opening a storage.
pub async fn drift_is_detected(ctx: Ctx) {
    let m = ctx.migrator().await;
    m.ensure_schema().await.unwrap();
    let dialect = m
        .migrations()
        .dialect()
        .expect("the migration cases run on SQL backends");
    let drifted = ctx.migrator_with(Some(edited(2, dialect))).await;
    let err = drifted.status().await.unwrap_err();
    assert!(
        matches!(err, Error::MigrationDrift { version: 2, .. }),
        "{err:?}"
    );
    let err = drifted.ensure_schema().await.unwrap_err();
    assert!(
        matches!(err, Error::MigrationDrift { version: 2, .. }),
        "{err:?}"
    );
    let opened = ctx
        .backend()
        .open(
            ctx.options()
                .migrations(edited(2, dialect))
                .schema(SchemaPolicy::Verify),
        )
        .await;
    assert!(matches!(
        opened,
        Err(Error::MigrationDrift { version: 2, .. })
    ));
    // A checkout with CRLF line endings is not drift.
    let mut crlf = builtin();
    let script = crlf[1]
        .script_mut(dialect)
        .expect("the built-in migrations have every dialect");
    script.up = script.up.replace('\n', "\r\n").into();
    assert!(ctx.migrator_with(Some(crlf)).await.status().await.is_ok());
}

/// Code that knows fewer migrations than the database holds refuses it.
pub async fn schema_newer_than_code_is_refused(ctx: Ctx) {
    let m = ctx.migrator().await;
    m.ensure_schema().await.unwrap();
    let head = m.migrations().head();
    let mut old = builtin();
    old.truncate((head - 1) as usize);
    let err = ctx
        .migrator_with(Some(old.clone()))
        .await
        .status()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::SchemaTooNew { current, known, .. } if current == head && known == head - 1),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer"), "{err}");
    let opened = ctx
        .backend()
        .open(
            ctx.options()
                .migrations(old.clone())
                .schema(SchemaPolicy::Verify),
        )
        .await;
    assert!(matches!(opened, Err(Error::SchemaTooNew { .. })));
    let upgraded = ctx.backend().open(ctx.options().migrations(old)).await;
    assert!(
        matches!(upgraded, Err(Error::SchemaTooNew { .. })),
        "Upgrade must not downgrade"
    );
}

/// Opening (policy `Verify`) on an outdated schema fails with the command that fixes it.
pub async fn outdated_schema_names_the_fix(ctx: Ctx) {
    let m = ctx.migrator().await;
    m.migrate(MigrationTarget::Version(1)).await.unwrap();
    let opened = ctx
        .backend()
        .open(ctx.options().schema(SchemaPolicy::Verify))
        .await;
    let err = opened.err().expect("opening an outdated schema must fail");
    // The remedy is a fact a tool renders as its own command: upgrade this table, on
    // this version table.
    let table = ctx.options().table.to_string();
    let version_table = ctx.options().version_table.to_string();
    assert!(
        matches!(&err, Error::SchemaOutdated { current: 1, fix, .. }
            if matches!(&**fix, Remedy::Upgrade { table: t, version_table: v, to: None } if *t == table && *v == version_table)),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("upgrade table"), "{message}");
    assert!(message.contains(ctx.options().table.as_str()), "{message}");
    let fresh = ctx
        .backend()
        .open(
            ctx.options()
                .table("fc_never_created_x")
                .unwrap()
                .schema(SchemaPolicy::Verify),
        )
        .await;
    let err = fresh.err().expect("a missing table must fail under Verify");
    assert!(
        matches!(err, Error::SchemaOutdated { current: 0, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("no recorded schema version"),
        "{err}"
    );
    // The table exists, but another version table has no record of it: not "create it"
    // (migration 1 would fail on it) but "the version table may be the wrong one".
    let other_version_table = format!("{version_table}_o");
    let elsewhere = ctx
        .backend()
        .open(
            ctx.options()
                .version_table(&other_version_table)
                .unwrap()
                .schema(SchemaPolicy::Verify),
        )
        .await;
    let err = elsewhere
        .err()
        .expect("a table unrecorded in this version table must fail under Verify");
    assert!(
        matches!(&err, Error::SchemaUnrecorded { table: t, version_table: v, fix }
            if *t == table && *v == other_version_table
                && matches!(&**fix, Remedy::Stamp { version: 1, version_table: fv, .. } if *fv == other_version_table)),
        "{err:?}"
    );
    assert_eq!(err.kind(), fsmstore_core::ErrorKind::Schema);
    assert!(err.to_string().contains("another version table"), "{err}");
}

/// Opening with policy `Upgrade` migrates an outdated schema, keeping its rows.
pub async fn upgrade_policy_migrates_on_open(ctx: Ctx) {
    let s = ctx.storage().await;
    s.set_state(&key(1), Some("Form:name")).await.unwrap();
    s.set_data(&key(1), &obj(json!({"name": "Ann"})))
        .await
        .unwrap();
    s.set_data(&key(2), &obj(json!({"only": "data"})))
        .await
        .unwrap();
    s.close().await.unwrap();
    let m = ctx.migrator().await;
    m.migrate(MigrationTarget::Version(1)).await.unwrap();
    assert_eq!(m.current().await.unwrap(), 1);
    // `ctx.storage()` opens with `SchemaPolicy::Upgrade`.
    let s = ctx.storage().await;
    assert_eq!(m.current().await.unwrap(), m.migrations().head());
    let one = s.get_record(&key(1)).await.unwrap();
    assert_eq!(one.state.as_deref(), Some("Form:name"));
    assert_eq!(one.data, obj(json!({"name": "Ann"})));
    assert_eq!(
        s.get_data(&key(2)).await.unwrap(),
        obj(json!({"only": "data"}))
    );
    s.set_state(&key(3), Some("S")).await.unwrap();
    assert_eq!(s.key_count().await.unwrap(), 3);
}

/// `stamp` records a version without running SQL: rows survive a stamp down and back.
pub async fn stamp_records_without_running(ctx: Ctx) {
    let s = ctx.storage().await;
    s.set_data(&key(1), &obj(json!({"kept": true})))
        .await
        .unwrap();
    s.close().await.unwrap();
    let m = ctx.migrator().await;
    m.stamp(MigrationTarget::Version(1)).await.unwrap();
    assert_eq!(m.current().await.unwrap(), 1);
    assert_eq!(m.applied().await.unwrap().len(), 1);
    m.stamp(MigrationTarget::Head).await.unwrap();
    assert_eq!(m.current().await.unwrap(), m.migrations().head());
    let s = ctx.open(ctx.options().schema(SchemaPolicy::Verify)).await;
    assert_eq!(
        s.get_data(&key(1)).await.unwrap(),
        obj(json!({"kept": true}))
    );
    assert!(matches!(
        m.stamp(MigrationTarget::Version(99)).await,
        Err(Error::InvalidInput(_))
    ));
}

/// `history` lists applied migrations with their checksum state and the pending ones.
pub async fn history_reports_applied_and_pending(ctx: Ctx) {
    let m = ctx.migrator().await;
    m.migrate(MigrationTarget::Version(2)).await.unwrap();
    let history = m.history().await.unwrap();
    assert_eq!(history.len() as i64, m.migrations().head());
    assert!(history[0].applied.is_some() && history[1].applied.is_some());
    assert!(history[2].applied.is_none());
    assert!(history.iter().all(|entry| entry.checksum_ok && entry.known));
    let row = history[1].applied.as_ref().unwrap();
    assert_eq!(row.checksum, m.migrations().get(2).unwrap().checksum);
    assert!(
        row.success && row.installed_on_ms > 1_600_000_000_000,
        "{row:?}"
    );
}

/// A migration that fails reports its version, leaves the schema where it was, and does
/// not keep the lock: the next run works.
pub async fn failing_migration_releases_the_lock(ctx: Ctx) {
    let mut sources = builtin();
    let failing = MigrationSource::new(sources.len() as i64 + 1, "always fails")
        .with_script_everywhere(&broken());
    sources.push(failing);
    let m = ctx.migrator_with(Some(sources.clone())).await;
    let head = builtin().len() as i64;
    let err = m.ensure_schema().await.unwrap_err();
    assert!(
        matches!(err, Error::MigrationFailed { version, .. } if version == head + 1),
        "{err:?}"
    );
    assert_eq!(ctx.migrator().await.current().await.unwrap(), head);
    // Lock released: another migrator and the same one both get through at once.
    let again = tokio::time::timeout(std::time::Duration::from_secs(20), m.ensure_schema())
        .await
        .expect("the migration lock was not released");
    assert!(
        matches!(again, Err(Error::MigrationFailed { .. })),
        "{again:?}"
    );
    let ok = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        ctx.migrator().await.ensure_schema(),
    )
    .await
    .expect("the migration lock was not released");
    ok.unwrap();
    let s = ctx.storage().await;
    s.set_state(&key(1), Some("S")).await.unwrap();
}

fn broken() -> fsmstore_core::migrations::Script {
    fsmstore_core::migrations::Script {
        up: "SELECT no_such_column FROM fsmstore_no_such_table;\n".into(),
        down: "SELECT 1;\n".into(),
    }
}

/// One handle, one pool: after `Database::close` the migrator refuses to work (no dedicated
/// connection is opened behind the closed pool), and closing a migrator closes the storage
/// it shares the pool with.
pub async fn closing_the_handle_closes_every_view(ctx: Ctx) {
    let db = ctx.database(ctx.options()).await;
    let migrator = db.migrator().expect("a migrator");
    let head = migrator.migrations().head();
    assert_eq!(migrator.current().await.unwrap(), head);
    db.close().await.unwrap();
    assert!(matches!(migrator.current().await, Err(Error::Closed)));
    assert!(matches!(
        migrator.migrate(MigrationTarget::Base).await,
        Err(Error::Closed)
    ));
    assert!(matches!(
        migrator.stamp(MigrationTarget::Version(1)).await,
        Err(Error::Closed)
    ));

    let db = ctx.database(ctx.options()).await;
    let storage = db.storage();
    storage.set_state(&key(1), Some("S")).await.unwrap();
    db.migrator().unwrap().close().await.unwrap();
    assert!(matches!(
        storage.get_state(&key(1)).await,
        Err(Error::Closed)
    ));
    // The schema and the row are intact for the next handle.
    let s = ctx.open(ctx.options().schema(SchemaPolicy::Verify)).await;
    assert_eq!(s.get_state(&key(1)).await.unwrap().as_deref(), Some("S"));
}

/// `drop_tables` removes the FSM table and the version table, whatever their version: the
/// schema reads as version 0, a `Verify` open is refused, and an `Upgrade` open starts over
/// with an empty table.
pub async fn drop_tables_removes_both_tables(ctx: Ctx) {
    let db = ctx.database(ctx.options()).await;
    db.storage().set_state(&key(1), Some("S")).await.unwrap();
    let migrator = db.migrator().expect("a migrator");
    assert_eq!(
        migrator.version_table(),
        ctx.options().version_table.as_str()
    );
    assert_eq!(
        migrator.current().await.unwrap(),
        migrator.migrations().head()
    );
    migrator.drop_tables().await.unwrap();
    assert_eq!(migrator.current().await.unwrap(), 0);
    // Twice is fine: nothing left to drop.
    migrator.drop_tables().await.unwrap();
    db.close().await.unwrap();

    let refused = ctx
        .backend()
        .open_database(ctx.options().schema(SchemaPolicy::Verify))
        .await;
    let kind = refused.as_ref().err().map(Error::kind);
    assert_eq!(
        kind,
        Some(ErrorKind::Schema),
        "Verify on dropped tables: {:?}",
        refused.err()
    );
    let s = ctx.open(ctx.options().schema(SchemaPolicy::Upgrade)).await;
    assert_eq!(s.get_state(&key(1)).await.unwrap(), None);
}
