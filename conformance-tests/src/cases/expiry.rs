//! Expiry (`StorageOptions::ttl`): a row not written for longer than the TTL reads as
//! absent, and a write to it starts from empty, decided with the database's clock in the
//! same statement as the write. Every backend must accept a TTL.
//!
//! The TTL is 3 s. Rows are looked at right after a write (3 s of slack), a full 1.5 s past
//! the TTL, or 1 s after a rewrite (2 s of slack): a machine that stalls for less than a
//! second and a half can not turn a case.

use std::time::Duration;

use serde_json::json;

use super::{key, obj};
use crate::Ctx;

const TTL: Duration = Duration::from_millis(3000);
const PAST: Duration = Duration::from_millis(4500);

/// Past the TTL a row reads as absent everywhere: record, state, data, field, count,
/// and `clear` finds nothing.
pub async fn an_expired_row_reads_as_absent(ctx: Ctx) {
    let db = ctx.database(ctx.options().ttl(TTL)).await;
    let s = db.storage();
    s.set_record(&key(1), Some("S"), &obj(json!({"a": 1})))
        .await
        .unwrap();
    s.set_state(&key(2), Some("S")).await.unwrap();
    assert_eq!(s.get_state(&key(1)).await.unwrap().as_deref(), Some("S"));
    assert_eq!(s.key_count().await.unwrap(), 2);
    tokio::time::sleep(PAST).await;
    assert!(s.get_record(&key(1)).await.unwrap().is_empty());
    assert_eq!(s.get_state(&key(1)).await.unwrap(), None);
    assert!(s.get_data(&key(1)).await.unwrap().is_empty());
    assert_eq!(s.get_value(&key(1), "a").await.unwrap(), None);
    assert_eq!(s.key_count().await.unwrap(), 0);
    assert!(!s.clear(&key(2)).await.unwrap(), "an expired row is absent");
}

/// A write to an expired row starts from empty: `update_data` merges into `{}` and drops
/// the old state, `set_state` drops the old data, `set_data` the old state, `transition`
/// merges into `{}`; clearing what is left deletes the row.
pub async fn a_write_to_an_expired_row_starts_from_empty(ctx: Ctx) {
    let db = ctx.database(ctx.options().ttl(TTL)).await;
    let s = db.storage();
    for n in 1..=6 {
        s.set_record(&key(n), Some("Old"), &obj(json!({"old": n})))
            .await
            .unwrap();
    }
    tokio::time::sleep(PAST).await;
    let merged = s.update_data(&key(1), &obj(json!({"b": 2}))).await.unwrap();
    assert_eq!(merged, obj(json!({"b": 2})));
    assert_eq!(s.get_state(&key(1)).await.unwrap(), None);

    s.set_state(&key(2), Some("New")).await.unwrap();
    let record = s.get_record(&key(2)).await.unwrap();
    assert_eq!(
        (record.state.as_deref(), record.data.len()),
        (Some("New"), 0)
    );

    s.set_data(&key(3), &obj(json!({"c": 3}))).await.unwrap();
    let record = s.get_record(&key(3)).await.unwrap();
    assert_eq!((record.state, record.data), (None, obj(json!({"c": 3}))));

    let moved = s
        .transition(&key(4), Some("Next"), &obj(json!({"d": 4})))
        .await
        .unwrap();
    assert_eq!(moved, obj(json!({"d": 4})));

    // Clearing the state (or the data) of an expired row leaves nothing: no row.
    s.set_state(&key(5), None).await.unwrap();
    s.set_data(&key(6), &obj(json!({}))).await.unwrap();
    assert_eq!(
        s.key_count().await.unwrap(),
        4,
        "keys 1–4 written again; 5 and 6 cleared away"
    );
}

/// The same as [`a_write_to_an_expired_row_starts_from_empty`] with the writes made at
/// once, many of each kind, so they go in batches (coalesced writes): each batched write
/// starts an expired row from empty too, and a cleared expired row is not "found".
pub async fn batched_writes_to_expired_rows_start_from_empty(ctx: Ctx) {
    let db = ctx.database(ctx.options().ttl(TTL)).await;
    let s = db.storage();
    for n in 1..=40 {
        s.set_record(&key(n), Some("Old"), &obj(json!({"old": n})))
            .await
            .unwrap();
    }
    tokio::time::sleep(PAST).await;
    let tasks: Vec<_> = (1..=40)
        .map(|n| {
            let s = std::sync::Arc::clone(&s);
            tokio::spawn(async move {
                let k = key(n);
                match n % 5 {
                    0 => {
                        let merged = s.update_data(&k, &obj(json!({"b": n}))).await.unwrap();
                        assert_eq!(merged, obj(json!({"b": n})), "key {n}");
                    }
                    1 => s.set_state(&k, Some("New")).await.unwrap(),
                    2 => s.set_data(&k, &obj(json!({"c": n}))).await.unwrap(),
                    3 => {
                        let moved = s
                            .transition(&k, Some("Next"), &obj(json!({"d": n})))
                            .await
                            .unwrap();
                        assert_eq!(moved, obj(json!({"d": n})), "key {n}");
                    }
                    _ => assert!(!s.clear(&k).await.unwrap(), "key {n}: an expired row found"),
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task panicked");
    }
    for n in 1..=40 {
        let record = s.get_record(&key(n)).await.unwrap();
        let expected = match n % 5 {
            0 => (None, obj(json!({"b": n}))),
            1 => (Some("New"), obj(json!({}))),
            2 => (None, obj(json!({"c": n}))),
            3 => (Some("Next"), obj(json!({"d": n}))),
            _ => (None, obj(json!({}))),
        };
        assert_eq!((record.state.as_deref(), record.data), expected, "key {n}");
    }
    assert_eq!(s.key_count().await.unwrap(), 32);
}

/// A write keeps a row alive: rewritten every third of the TTL, it is fresh (state and
/// every field) more than a TTL after the first write.
pub async fn a_write_keeps_the_row_alive(ctx: Ctx) {
    let db = ctx.database(ctx.options().ttl(TTL)).await;
    let s = db.storage();
    s.set_state(&key(1), Some("S")).await.unwrap();
    tokio::time::sleep(TTL / 3).await;
    s.update_data(&key(1), &obj(json!({"a": 1}))).await.unwrap();
    tokio::time::sleep(TTL / 3).await;
    s.update_data(&key(1), &obj(json!({"b": 2}))).await.unwrap();
    tokio::time::sleep(TTL / 3).await;
    s.update_data(&key(1), &obj(json!({"c": 3}))).await.unwrap();
    tokio::time::sleep(TTL / 3).await;
    // 4 s after the first write, more than the TTL, 1 s after the last one.
    let record = s.get_record(&key(1)).await.unwrap();
    assert_eq!(record.state.as_deref(), Some("S"));
    assert_eq!(record.data, obj(json!({"a": 1, "b": 2, "c": 3})));
}

/// Expired rows are what the expiry cutoff counts and purges; fresh ones stay. A backend
/// that keeps no write time (its store expires rows itself) counts only the fresh ones
/// and refuses to purge by age with a configuration error that says why, never a count.
pub async fn expired_rows_are_counted_and_purged(ctx: Ctx) {
    let db = ctx.database(ctx.options().ttl(TTL)).await;
    let inspect = db.inspect();
    for n in 1..=3 {
        inspect.set_state(&key(n), Some("Old")).await.unwrap();
    }
    tokio::time::sleep(PAST).await;
    inspect.set_state(&key(4), Some("New")).await.unwrap();
    if !ctx.has_updated_at() {
        assert_eq!(inspect.key_count().await.unwrap(), 1);
        // Nothing expired is left to count: the store deleted it.
        let stats = inspect.stats().await.unwrap();
        assert_eq!((stats.rows, stats.expired), (1, Some(0)));
        let err = inspect.count_older_by_state(0).await.unwrap_err();
        assert_eq!(err.kind(), fsmstore_core::ErrorKind::InvalidInput, "{err}");
        let err = inspect
            .count_older_than(fsmstore_core::now_ms())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), fsmstore_core::ErrorKind::InvalidInput, "{err}");
        assert!(inspect
            .purge_older_than(fsmstore_core::now_ms(), 10)
            .await
            .is_err());
        return;
    }
    // The database's clock, in unix milliseconds (the local servers' clocks are this
    // machine's: a unit or epoch mistake is off by far more than a minute).
    let db_now = inspect.database_now_ms().await.unwrap();
    assert!(
        (db_now - fsmstore_core::now_ms()).abs() < 60_000,
        "database clock {db_now}"
    );
    let cutoff = inspect.expiry_cutoff_ms().await.unwrap();
    assert_eq!(inspect.count_older_than(cutoff).await.unwrap(), 3);
    // Stats count fresh and expired apart, per state: what the bot sees and what waits
    // for a purge.
    let stats = inspect.stats().await.unwrap();
    assert_eq!((stats.rows, stats.expired), (4, Some(3)), "{stats:?}");
    assert_eq!(stats.per_state_expired, vec![(Some("Old".to_owned()), 3)]);
    assert_eq!(
        (stats.fresh_in(Some("Old")), stats.fresh_in(Some("New"))),
        (0, 1)
    );
    let mut by_state = inspect.count_older_by_state(cutoff).await.unwrap();
    by_state.sort();
    assert_eq!(by_state, vec![(Some("Old".to_owned()), 3)]);
    // Everything is older than a cutoff in the future; nothing than one in the past.
    let mut all = inspect.count_older_by_state(db_now + 60_000).await.unwrap();
    all.sort();
    assert_eq!(
        all,
        vec![(Some("New".to_owned()), 1), (Some("Old".to_owned()), 3)]
    );
    assert!(inspect
        .count_older_by_state(db_now - 3_600_000)
        .await
        .unwrap()
        .is_empty());
    let mut purged = 0;
    for _ in 0..10 {
        match inspect.purge_older_than(cutoff, 2).await.unwrap() {
            0 => break,
            n => purged += n,
        }
    }
    assert_eq!(purged, 3);
    let stats = inspect.stats().await.unwrap();
    assert_eq!((stats.rows, stats.expired), (1, Some(0)));
    assert!(stats.per_state_expired.is_empty());
}

/// A copied row keeps its age: with a TTL it expires when it would have where it came
/// from (SQL: its `updated_at` is carried; Redis: the key expires then), and a row
/// already past the TTL reads as absent from the start.
pub async fn a_copied_row_expires_when_it_would_have_at_its_source(ctx: Ctx) {
    let db = ctx.database(ctx.options().ttl(TTL)).await;
    let inspect = db.inspect();
    let row = |n: i64, age: Duration| fsmstore_core::StoredRow {
        id: ctx.options().row_id(&key(n)).unwrap(),
        state: Some("Copied".to_owned()),
        data: obj(json!({"n": n})),
        updated_at_ms: Some(fsmstore_core::now_ms() - age.as_millis() as i64),
        corrupt: None,
    };
    // 1.5 s of the 3 s left, and one long gone.
    inspect
        .put_row(&row(1, TTL / 2), fsmstore_core::PutRow::IfAbsent)
        .await
        .unwrap();
    inspect
        .put_row(&row(2, TTL * 10), fsmstore_core::PutRow::IfAbsent)
        .await
        .unwrap();
    assert_eq!(
        inspect.get_state(&key(1)).await.unwrap().as_deref(),
        Some("Copied")
    );
    assert_eq!(inspect.get_state(&key(2)).await.unwrap(), None);
    tokio::time::sleep(TTL / 2 + Duration::from_millis(600)).await;
    assert_eq!(
        inspect.get_state(&key(1)).await.unwrap(),
        None,
        "the copied row's TTL started again at the copy"
    );
}

/// A step keeps each dialogue's write time, so a TTL runs from the bot's last write, not
/// from the migration.
pub async fn a_dialogue_migration_keeps_the_ttl(ctx: Ctx) {
    // Renamed 2 s into a 5 s TTL and looked at 5.7 s after the write: expired if the
    // rename kept the write time, alive until 7 s if it started the TTL again.
    const TTL: Duration = Duration::from_secs(5);
    let db = ctx.database(ctx.options().ttl(TTL)).await;
    let s = db.inspect();
    s.set_record(&key(1), Some("Form:nmae"), &obj(json!({"a": 1})))
        .await
        .unwrap();
    let written = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let step = fsmstore_core::DialogueStep::rename_state("Form:nmae", "Form:name").unwrap();
    let report = fsmstore_core::run_step(
        &*s,
        &step,
        &fsmstore_core::StepOptions::default(),
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.changed, 1, "{report:?}");
    // And a step that rewrites the dialogue itself (not a rename the database makes).
    let step =
        fsmstore_core::DialogueStep::default_field("Form:name", "lang", json!("en")).unwrap();
    let report = fsmstore_core::run_step(
        &*s,
        &step,
        &fsmstore_core::StepOptions::default(),
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.changed, 1, "{report:?}");
    assert_eq!(
        s.get_state(&key(1)).await.unwrap().as_deref(),
        Some("Form:name")
    );
    assert_eq!(
        s.get_data(&key(1)).await.unwrap(),
        obj(json!({"a": 1, "lang": "en"}))
    );
    let look = TTL + Duration::from_millis(700);
    tokio::time::sleep(look.saturating_sub(written.elapsed())).await;
    assert_eq!(
        s.get_state(&key(1)).await.unwrap(),
        None,
        "the migration started the dialogue's TTL again"
    );
}
