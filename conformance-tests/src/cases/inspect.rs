//! Whole-table operations: list, get by id, stats, purge.

use std::time::Duration;

use fsmstore_core::{now_ms, BotId, ChatId, StorageKey, UserId};
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
