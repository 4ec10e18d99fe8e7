//! Closing and reopening.

use fsmstore_core::Error;
use serde_json::json;

use super::{key, obj};
use crate::Ctx;

/// What one storage wrote, a storage opened later on the same table reads.
pub async fn data_persists_across_reopen(ctx: Ctx) {
    let first = ctx.storage().await;
    first.set_state(&key(1), Some("Form:age")).await.unwrap();
    first
        .set_data(&key(1), &obj(json!({"name": "Ann"})))
        .await
        .unwrap();
    first.close().await.unwrap();
    drop(first);
    let second = ctx.storage().await;
    let record = second.get_record(&key(1)).await.unwrap();
    assert_eq!(record.state.as_deref(), Some("Form:age"));
    assert_eq!(record.data, obj(json!({"name": "Ann"})));
}

/// Every call after `close` fails with `Error::Closed`.
pub async fn calls_after_close_fail(ctx: Ctx) {
    let s = ctx.storage().await;
    s.set_state(&key(1), Some("S")).await.unwrap();
    s.close().await.unwrap();
    let k = key(1);
    let results = [
        s.get_state(&k).await.map(drop),
        s.set_state(&k, Some("T")).await,
        s.get_data(&k).await.map(drop),
        s.set_data(&k, &obj(json!({"a": 1}))).await,
        s.update_data(&k, &obj(json!({"a": 1}))).await.map(drop),
        s.transition(&k, Some("U"), &obj(json!({"a": 1})))
            .await
            .map(drop),
        s.get_value(&k, "a").await.map(drop),
        s.get_record(&k).await.map(drop),
        s.set_record(&k, Some("V"), &obj(json!({"a": 1}))).await,
        s.clear(&k).await.map(drop),
        s.key_count().await.map(drop),
    ];
    for (i, result) in results.into_iter().enumerate() {
        assert!(matches!(result, Err(Error::Closed)), "call {i}: {result:?}");
    }
}

/// Closing twice is not an error.
pub async fn close_twice_is_fine(ctx: Ctx) {
    let s = ctx.storage().await;
    s.close().await.unwrap();
    s.close().await.unwrap();
}
