//! `update_data`: shallow merge, atomicity under concurrency.

use std::sync::Arc;

use fsmstore_core::{Data, Storage, StorageKey};
use serde_json::json;

use super::{key, obj};
use crate::Ctx;

/// Updating an absent key creates it with the patch.
pub async fn update_data_on_absent_key_creates(ctx: Ctx) {
    let s = ctx.storage().await;
    let merged = s.update_data(&key(1), &obj(json!({"a": 1}))).await.unwrap();
    assert_eq!(merged, obj(json!({"a": 1})));
    assert_eq!(s.get_data(&key(1)).await.unwrap(), obj(json!({"a": 1})));
}

/// New fields join the old ones; the merged object is returned.
pub async fn update_data_merges_and_returns(ctx: Ctx) {
    let s = ctx.storage().await;
    s.set_data(&key(1), &obj(json!({"a": 1}))).await.unwrap();
    let merged = s.update_data(&key(1), &obj(json!({"b": 2}))).await.unwrap();
    assert_eq!(merged, obj(json!({"a": 1, "b": 2})));
    assert_eq!(s.get_data(&key(1)).await.unwrap(), merged);
}

/// A field in the patch replaces the old value, whatever its type.
pub async fn update_data_overwrites_top_level_fields(ctx: Ctx) {
    let s = ctx.storage().await;
    s.set_data(&key(1), &obj(json!({"a": 1, "b": "x"})))
        .await
        .unwrap();
    let merged = s
        .update_data(&key(1), &obj(json!({"a": [1, 2], "b": 3})))
        .await
        .unwrap();
    assert_eq!(merged, obj(json!({"a": [1, 2], "b": 3})));
}

/// An empty patch returns the data and writes nothing (no row for an absent key).
pub async fn update_data_empty_patch_writes_nothing(ctx: Ctx) {
    let s = ctx.storage().await;
    assert_eq!(
        s.update_data(&key(1), &Data::new()).await.unwrap(),
        Data::new()
    );
    assert_eq!(s.key_count().await.unwrap(), 0);
    s.set_data(&key(2), &obj(json!({"a": 1}))).await.unwrap();
    assert_eq!(
        s.update_data(&key(2), &Data::new()).await.unwrap(),
        obj(json!({"a": 1}))
    );
}

/// `null` in a patch is stored as `null`, not a deletion (unlike JSON merge patch).
pub async fn update_data_keeps_null(ctx: Ctx) {
    let s = ctx.storage().await;
    s.set_data(&key(1), &obj(json!({"a": 1, "b": 2})))
        .await
        .unwrap();
    let merged = s
        .update_data(&key(1), &obj(json!({"a": null})))
        .await
        .unwrap();
    assert_eq!(merged, obj(json!({"a": null, "b": 2})));
    assert_eq!(
        s.get_data(&key(1)).await.unwrap(),
        obj(json!({"a": null, "b": 2}))
    );
}

/// Nested objects are replaced, not merged (Python's `dict.update`).
pub async fn update_data_replaces_nested_objects(ctx: Ctx) {
    let s = ctx.storage().await;
    s.set_data(&key(1), &obj(json!({"n": {"x": 1, "y": 2}, "k": 0})))
        .await
        .unwrap();
    let merged = s
        .update_data(&key(1), &obj(json!({"n": {"z": 3}})))
        .await
        .unwrap();
    assert_eq!(merged, obj(json!({"n": {"z": 3}, "k": 0})));
    assert_eq!(s.get_data(&key(1)).await.unwrap(), merged);
}

const WRITERS: usize = 64;

async fn update_concurrently(s: Arc<dyn Storage>, k: &StorageKey) {
    let tasks: Vec<_> = (0..WRITERS)
        .map(|i| {
            let (s, k) = (Arc::clone(&s), k.clone());
            tokio::spawn(
                async move { s.update_data(&k, &obj(json!({ format!("f{i}"): i }))).await },
            )
        })
        .collect();
    let mut errors = Vec::new();
    for task in tasks {
        if let Err(err) = task.await.expect("task panicked") {
            errors.push(err.to_string());
        }
    }
    assert!(
        errors.is_empty(),
        "{} of {WRITERS} updates failed: {errors:?}",
        errors.len()
    );
    let data = s.get_data(k).await.unwrap();
    let lost: Vec<_> = (0..WRITERS)
        .filter(|i| data.get(&format!("f{i}")) != Some(&json!(i)))
        .collect();
    assert!(lost.is_empty(), "lost updates of fields {lost:?}");
}

/// 64 concurrent updates of distinct fields of a key that does not exist yet: none fails,
/// none is lost.
pub async fn concurrent_update_data_cold_key(ctx: Ctx) {
    let s = ctx.storage().await;
    update_concurrently(Arc::clone(&s), &key(1)).await;
    assert_eq!(s.get_data(&key(1)).await.unwrap().len(), WRITERS);
}

/// The same on a key that already has a state and data: both survive.
pub async fn concurrent_update_data_warm_key(ctx: Ctx) {
    let s = ctx.storage().await;
    s.set_state(&key(1), Some("Form:name")).await.unwrap();
    s.set_data(&key(1), &obj(json!({"base": true})))
        .await
        .unwrap();
    update_concurrently(Arc::clone(&s), &key(1)).await;
    assert_eq!(
        s.get_value(&key(1), "base").await.unwrap(),
        Some(json!(true))
    );
    assert_eq!(
        s.get_state(&key(1)).await.unwrap().as_deref(),
        Some("Form:name")
    );
}

/// 32 tasks, each its own key, set a state and update data at once: every key ends whole.
pub async fn concurrent_writers_on_distinct_keys(ctx: Ctx) {
    let s = ctx.storage().await;
    let tasks: Vec<_> = (1..=32)
        .map(|n| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                s.set_state(&key(n), Some("Form:name")).await?;
                s.update_data(&key(n), &obj(json!({"n": n}))).await?;
                s.update_data(&key(n), &obj(json!({"m": n}))).await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task panicked").unwrap();
    }
    for n in 1..=32 {
        let record = s.get_record(&key(n)).await.unwrap();
        assert_eq!(record.state.as_deref(), Some("Form:name"));
        assert_eq!(record.data, obj(json!({"n": n, "m": n})));
    }
    assert_eq!(s.key_count().await.unwrap(), 32);
}
