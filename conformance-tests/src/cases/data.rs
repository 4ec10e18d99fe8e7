//! The data object: set, replace, clear, read.

use fsmstore_core::Data;
use serde_json::{json, Value};

use super::{key, obj};
use crate::Ctx;

/// A key never written has `{}`.
pub async fn data_absent_is_empty(ctx: Ctx) {
    let s = ctx.storage().await;
    assert_eq!(s.get_data(&key(1)).await.unwrap(), Data::new());
}

/// Data set is read back, every JSON type intact.
pub async fn set_data_then_get(ctx: Ctx) {
    let s = ctx.storage().await;
    let data = obj(json!({
        "name": "Ann", "age": 30, "ratio": 0.25, "big": 9007199254740993_i64, "neg": -5,
        "ok": true, "none": null, "tags": ["a", "b"], "nested": {"x": {"y": [1, {"z": false}]}}
    }));
    s.set_data(&key(1), &data).await.unwrap();
    assert_eq!(s.get_data(&key(1)).await.unwrap(), data);
}

/// `set_data` replaces the whole object: fields not in the new one are gone.
pub async fn set_data_replaces_whole_object(ctx: Ctx) {
    let s = ctx.storage().await;
    s.set_data(&key(1), &obj(json!({"a": 1, "b": 2})))
        .await
        .unwrap();
    s.set_data(&key(1), &obj(json!({"c": 3}))).await.unwrap();
    assert_eq!(s.get_data(&key(1)).await.unwrap(), obj(json!({"c": 3})));
}

/// `set_data({})` clears the data.
pub async fn set_empty_data_clears(ctx: Ctx) {
    let s = ctx.storage().await;
    s.set_data(&key(1), &obj(json!({"a": 1}))).await.unwrap();
    s.set_data(&key(1), &Data::new()).await.unwrap();
    assert_eq!(s.get_data(&key(1)).await.unwrap(), Data::new());
    s.set_data(&key(2), &Data::new()).await.unwrap();
    assert_eq!(s.get_data(&key(2)).await.unwrap(), Data::new());
}

/// Setting and clearing the data leaves the state alone.
pub async fn data_does_not_touch_state(ctx: Ctx) {
    let s = ctx.storage().await;
    s.set_state(&key(1), Some("Form:name")).await.unwrap();
    s.set_data(&key(1), &obj(json!({"a": 1}))).await.unwrap();
    assert_eq!(
        s.get_state(&key(1)).await.unwrap().as_deref(),
        Some("Form:name")
    );
    s.set_data(&key(1), &Data::new()).await.unwrap();
    assert_eq!(
        s.get_state(&key(1)).await.unwrap().as_deref(),
        Some("Form:name")
    );
    s.update_data(&key(1), &obj(json!({"b": 2}))).await.unwrap();
    assert_eq!(
        s.get_state(&key(1)).await.unwrap().as_deref(),
        Some("Form:name")
    );
}

/// `get_value`: the field's value, `None` when absent (also for an absent key), a stored
/// `null` as `Some(null)`; field names with dots and quotes are plain names.
pub async fn get_value_present_missing_and_null(ctx: Ctx) {
    let s = ctx.storage().await;
    assert_eq!(s.get_value(&key(1), "name").await.unwrap(), None);
    let data = obj(json!({"name": "Ann", "none": null, "a.b": 1, "q\"uote": 2, "n": {"x": 1}}));
    s.set_data(&key(1), &data).await.unwrap();
    assert_eq!(
        s.get_value(&key(1), "name").await.unwrap(),
        Some(json!("Ann"))
    );
    assert_eq!(s.get_value(&key(1), "missing").await.unwrap(), None);
    assert_eq!(
        s.get_value(&key(1), "none").await.unwrap(),
        Some(Value::Null)
    );
    assert_eq!(s.get_value(&key(1), "a.b").await.unwrap(), Some(json!(1)));
    assert_eq!(
        s.get_value(&key(1), "q\"uote").await.unwrap(),
        Some(json!(2))
    );
    assert_eq!(
        s.get_value(&key(1), "n").await.unwrap(),
        Some(json!({"x": 1}))
    );
    assert_eq!(s.get_value(&key(1), "a").await.unwrap(), None);
}

/// `get_record` returns state and data together, and empty for an absent key.
pub async fn get_record_returns_state_and_data(ctx: Ctx) {
    let s = ctx.storage().await;
    let empty = s.get_record(&key(1)).await.unwrap();
    assert!(empty.is_empty(), "{empty:?}");
    s.set_state(&key(1), Some("Form:name")).await.unwrap();
    s.set_data(&key(1), &obj(json!({"a": 1}))).await.unwrap();
    let record = s.get_record(&key(1)).await.unwrap();
    assert_eq!(record.state.as_deref(), Some("Form:name"));
    assert_eq!(record.data, obj(json!({"a": 1})));
}

/// The caller owns what it reads: changing it changes nothing stored.
pub async fn get_data_returns_an_owned_copy(ctx: Ctx) {
    let s = ctx.storage().await;
    s.set_data(&key(1), &obj(json!({"a": 1}))).await.unwrap();
    let mut copy = s.get_data(&key(1)).await.unwrap();
    copy.insert("b".into(), json!(2));
    assert_eq!(s.get_data(&key(1)).await.unwrap(), obj(json!({"a": 1})));
}
