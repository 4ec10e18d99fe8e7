//! Whole-table operations: list, get by id, stats, purge.

use std::sync::Arc;
use std::time::Duration;

use fsmstore_core::copy::{copy, verify, CopyOptions};
use fsmstore_core::{now_ms, BotId, ChatId, Inspect, PutRow, StorageKey, StoredRow, UserId};
use serde_json::json;

use super::{key, obj};
use crate::Ctx;

/// Rows are listed by id, filtered by state, and paged with `after` + `limit`.
pub async fn inspect_lists_rows_by_id_and_state(ctx: Ctx) {
    let s = ctx.inspect().await;
    for n in 1..=5 {
        s.set_state(&key(n), Some(if n % 2 == 0 { "B" } else { "A" }))
            .await
            .unwrap();
        s.update_data(&key(n), &obj(json!({ "n": n })))
            .await
            .unwrap();
    }
    let all = s.list_rows(None, None, 100).await.unwrap();
    let ids: Vec<_> = all.iter().map(|row| row.id.as_str()).collect();
    assert_eq!(ids, ["fsm:1:1", "fsm:2:2", "fsm:3:3", "fsm:4:4", "fsm:5:5"]);
    assert_eq!(all[2].data, obj(json!({"n": 3})));
    let b: Vec<_> = s
        .list_rows(Some("B"), None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(b, ["fsm:2:2", "fsm:4:4"]);
    let page = s.list_rows(None, Some("fsm:2:2"), 2).await.unwrap();
    assert_eq!(
        page.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["fsm:3:3", "fsm:4:4"]
    );
}

/// `get_row` finds a row by its built id, with state, data and a plausible update time.
pub async fn inspect_get_row_by_built_id(ctx: Ctx) {
    let s = ctx.inspect().await;
    let before = now_ms();
    s.set_state(
        &StorageKey::new(BotId(42), ChatId(-100), UserId(7)),
        Some("Form:name"),
    )
    .await
    .unwrap();
    s.set_data(
        &StorageKey::new(BotId(42), ChatId(-100), UserId(7)),
        &obj(json!({"a": 1})),
    )
    .await
    .unwrap();
    let row = s.get_row("fsm:-100:7").await.unwrap().expect("row");
    assert_eq!(row.state.as_deref(), Some("Form:name"));
    assert_eq!(row.data, obj(json!({"a": 1})));
    // A layout without `updated_at` reports none.
    if ctx.has_updated_at() {
        let at = row.updated_at_ms.expect("updated_at");
        assert!((at - before).abs() < 60_000, "{at} vs {before}");
    } else {
        assert_eq!(row.updated_at_ms, None);
    }
    assert_eq!(s.get_row("fsm:-100:8").await.unwrap(), None);
}

/// `stats` counts rows per state (data-only rows under `None`) and the time range.
pub async fn inspect_stats_counts_states(ctx: Ctx) {
    let s = ctx.inspect().await;
    let empty = s.stats().await.unwrap();
    assert_eq!((empty.rows, empty.oldest_ms), (0, None));
    for n in 1..=3 {
        s.set_state(&key(n), Some("Form:name")).await.unwrap();
    }
    s.set_state(&key(4), Some("Form:age")).await.unwrap();
    s.set_data(&key(5), &obj(json!({"only": "data"})))
        .await
        .unwrap();
    let stats = s.stats().await.unwrap();
    assert_eq!(stats.rows, 5);
    assert_eq!(stats.per_state[0], (Some("Form:name".to_owned()), 3));
    assert!(stats.per_state.contains(&(Some("Form:age".to_owned()), 1)));
    assert!(stats.per_state.contains(&(None, 1)));
    if ctx.has_updated_at() {
        let (oldest, newest) = (stats.oldest_ms.unwrap(), stats.newest_ms.unwrap());
        assert!(oldest <= newest && (newest - now_ms()).abs() < 60_000);
    } else {
        assert_eq!((stats.oldest_ms, stats.newest_ms), (None, None));
    }
}

/// Purging rows older than a cutoff removes exactly those, in batches, and no newer row.
pub async fn purge_removes_only_old_rows(ctx: Ctx) {
    let s = ctx.inspect().await;
    for n in 1..=6 {
        s.set_state(&key(n), Some("old")).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(60)).await;
    let cutoff = now_ms();
    tokio::time::sleep(Duration::from_millis(60)).await;
    for n in 7..=8 {
        s.set_state(&key(n), Some("new")).await.unwrap();
    }
    s.set_state(&key(1), Some("touched")).await.unwrap();
    // 5 old rows and 3 new ones: counting the wrong side can not pass.
    assert_eq!(s.count_older_than(cutoff).await.unwrap(), 5);
    let mut purged = Vec::new();
    // Bounded: a backend whose purge never reaches 0 fails instead of hanging.
    for _ in 0..10 {
        let n = s.purge_older_than(cutoff, 3).await.unwrap();
        assert!(n <= 3, "a batch deleted {n} > 3 rows");
        if n == 0 {
            break;
        }
        purged.push(n);
    }
    assert_eq!(purged.iter().sum::<u64>(), 5, "{purged:?}");
    assert_eq!(s.key_count().await.unwrap(), 3);
    assert_eq!(
        s.get_state(&key(1)).await.unwrap().as_deref(),
        Some("touched")
    );
    assert_eq!(s.get_state(&key(2)).await.unwrap(), None);
}

/// A row written exactly at the cutoff is not older than it: neither counted nor purged;
/// one millisecond later it is.
pub async fn a_row_at_the_cutoff_is_kept(ctx: Ctx) {
    let s = ctx.inspect().await;
    s.set_state(&key(1), Some("edge")).await.unwrap();
    let id = s.options().row_id(&key(1)).unwrap();
    let at = s
        .get_row(&id)
        .await
        .unwrap()
        .expect("the row")
        .updated_at_ms
        .expect("updated_at");
    assert_eq!(s.count_older_than(at).await.unwrap(), 0);
    assert_eq!(s.purge_older_than(at, 10).await.unwrap(), 0);
    assert_eq!(s.key_count().await.unwrap(), 1);
    assert_eq!(s.count_older_than(at + 1).await.unwrap(), 1);
    assert_eq!(s.purge_older_than(at + 1, 10).await.unwrap(), 1);
    assert_eq!(s.key_count().await.unwrap(), 0);
}

/// The row `fsm:n:n` (key `n`) as another database held it.
fn carried(ctx: &Ctx, n: i64, state: &str, at: Option<i64>) -> StoredRow {
    StoredRow {
        id: ctx.options().row_id(&key(n)).unwrap(),
        state: Some(state.to_owned()),
        data: obj(json!({"n": n, "text": "é\u{1F600}", "deep": {"list": [1, 2.5, null]}})),
        updated_at_ms: at,
        corrupt: None,
    }
}

/// `put_row` writes a row by id as another database held it, its write time included
/// where the layout keeps one: only where there is none (`IfAbsent`; an emptied aiogram
/// row is none), over a row written no later (`IfNotNewer`, to the millisecond, also
/// against a row the bot wrote with microseconds), or over anything (`Replace`); it says
/// whether it wrote. Bad input is refused and writes nothing.
pub async fn put_row_carries_the_write_time_and_keeps_a_later_row(ctx: Ctx) {
    let s = ctx.inspect().await;
    let timed = ctx.has_updated_at();
    let at = now_ms() - 3_600_000;
    let put = |n: i64, state: &'static str, at: Option<i64>, how: PutRow| {
        let (s, row) = (Arc::clone(&s), carried(&ctx, n, state, at));
        async move { s.put_row(&row, how).await.unwrap() }
    };
    let state_of = |n: i64| {
        let s = Arc::clone(&s);
        async move { s.get_state(&key(n)).await.unwrap() }
    };
    assert!(put(1, "A", Some(at), PutRow::IfAbsent).await);
    let row = s.get_row("fsm:1:1").await.unwrap().expect("the row");
    assert_eq!(row.state.as_deref(), Some("A"));
    assert_eq!(row.data, carried(&ctx, 1, "A", None).data);
    assert_eq!(row.updated_at_ms, timed.then_some(at), "the write time");
    assert_eq!(state_of(1).await.as_deref(), Some("A"));
    // A row is there: `IfAbsent` writes nothing, even a later one.
    assert!(!put(1, "Other", Some(at + 5_000), PutRow::IfAbsent).await);
    // An older one: kept by `IfNotNewer` (without write times it is `IfAbsent`).
    assert!(!put(1, "Older", Some(at - 1_000), PutRow::IfNotNewer).await);
    assert_eq!(state_of(1).await.as_deref(), Some("A"));
    // `Replace` writes it, time and all.
    assert!(put(1, "Replaced", Some(at - 1_000), PutRow::Replace).await);
    let row = s.get_row("fsm:1:1").await.unwrap().unwrap();
    assert_eq!(row.state.as_deref(), Some("Replaced"));
    assert_eq!(row.updated_at_ms, timed.then_some(at - 1_000));
    // The same millisecond is not later: written where write times say so.
    assert_eq!(
        put(1, "Same", Some(at - 1_000), PutRow::IfNotNewer).await,
        timed
    );
    let expect = if timed { "Same" } else { "Replaced" };
    assert_eq!(state_of(1).await.as_deref(), Some(expect));
    // A row the bot wrote (microseconds where the server keeps them): the millisecond
    // it lists at is not later than the row; one before it is.
    s.set_state(&key(4), Some("Bot")).await.unwrap();
    if let Some(ms) = s.get_row("fsm:4:4").await.unwrap().unwrap().updated_at_ms {
        assert!(!put(4, "Before", Some(ms - 1), PutRow::IfNotNewer).await);
        assert_eq!(state_of(4).await.as_deref(), Some("Bot"));
        assert!(put(4, "Copied", Some(ms), PutRow::IfNotNewer).await);
        assert_eq!(state_of(4).await.as_deref(), Some("Copied"));
    }
    // No write time: the database's clock now.
    assert!(put(2, "Now", None, PutRow::IfAbsent).await);
    if timed {
        let row = s.get_row("fsm:2:2").await.unwrap().unwrap();
        let written = row.updated_at_ms.expect("a write time");
        assert!((written - now_ms()).abs() < 60_000, "{written}");
    }
    // A cleared dialogue is no row (the aiogram layout keeps it emptied).
    s.clear(&key(2)).await.unwrap();
    assert!(put(2, "Again", Some(at), PutRow::IfAbsent).await);
    assert_eq!(state_of(2).await.as_deref(), Some("Again"));
    // Refused as every write is, nothing written.
    for bad in [
        StoredRow {
            state: Some(String::new()),
            ..carried(&ctx, 3, "x", Some(at))
        },
        StoredRow {
            state: None,
            data: fsmstore_core::Data::new(),
            ..carried(&ctx, 3, "x", Some(at))
        },
        StoredRow {
            id: "x".repeat(256),
            ..carried(&ctx, 3, "x", Some(at))
        },
    ] {
        let err = s.put_row(&bad, PutRow::Replace).await.unwrap_err();
        assert_eq!(err.kind(), fsmstore_core::ErrorKind::InvalidInput, "{err}");
    }
    assert_eq!(s.key_count().await.unwrap(), 3);
}

/// `copy` moves every row into this backend and back out with its write time, again
/// changes nothing, keeps a row the bot wrote since, and `verify` sees each of these.
pub async fn a_copy_moves_every_row_and_verifies(ctx: Ctx) {
    let s = ctx.inspect().await;
    let source = fsmstore_core::MemoryStorage::new();
    let base = now_ms() - 7_200_000;
    for n in 1..=23 {
        source
            .put_row(
                &carried(&ctx, n, &format!("Form:{}", n % 3), Some(base + n)),
                PutRow::IfAbsent,
            )
            .await
            .unwrap();
    }
    let options = CopyOptions::default().batch(5);
    let report = copy(&source, &*s, &options, |_| {}).await.unwrap();
    assert_eq!((report.read, report.new, report.skipped.len()), (23, 23, 0));
    assert!(verify(&source, &*s, 4, 3, |_| {}).await.unwrap().clean());
    let row = s.get_row("fsm:7:7").await.unwrap().unwrap();
    assert_eq!(row.updated_at_ms, ctx.has_updated_at().then_some(base + 7));
    // Again: every row is there already.
    let again = copy(&source, &*s, &options, |_| {}).await.unwrap();
    assert_eq!((again.unchanged, again.new, again.replaced), (23, 0, 0));
    // Back out, into an empty table.
    let back = fsmstore_core::MemoryStorage::new();
    let out = copy(&*s, &back, &options, |_| {}).await.unwrap();
    assert_eq!(out.new, 23);
    assert!(verify(&*s, &back, 4, 3, |_| {}).await.unwrap().clean());
    if ctx.has_updated_at() {
        assert!(verify(&source, &back, 50, 3, |_| {}).await.unwrap().clean());
    }
    // The bot moved on here after the copy: a copy again keeps its step.
    s.set_state(&key(3), Some("Later")).await.unwrap();
    let third = copy(&source, &*s, &options, |_| {}).await.unwrap();
    assert_eq!((third.kept, third.unchanged), (1, 22));
    assert_eq!(
        s.get_state(&key(3)).await.unwrap().as_deref(),
        Some("Later")
    );
    let checked = verify(&source, &*s, 4, 3, |_| {}).await.unwrap();
    assert_eq!(checked.differing, (1, vec!["fsm:3:3".to_owned()]));
}
