//! The state: set, overwrite, clear, validation.

use fsmstore_core::{Error, MAX_STATE_CHARS};
use serde_json::json;

use super::{key, obj};
use crate::Ctx;

/// A key never written has no state.
pub async fn state_absent_is_none(ctx: Ctx) {
    let s = ctx.storage().await;
    assert_eq!(s.get_state(&key(1)).await.unwrap(), None);
}

/// A state set is read back.
pub async fn set_state_then_get(ctx: Ctx) {
    let s = ctx.storage().await;
    s.set_state(&key(1), Some("Form:name")).await.unwrap();
    assert_eq!(
        s.get_state(&key(1)).await.unwrap().as_deref(),
        Some("Form:name")
    );
}

/// Setting a state again replaces it.
pub async fn set_state_overwrites(ctx: Ctx) {
    let s = ctx.storage().await;
    s.set_state(&key(1), Some("Form:name")).await.unwrap();
    s.set_state(&key(1), Some("Form:age")).await.unwrap();
    assert_eq!(
        s.get_state(&key(1)).await.unwrap().as_deref(),
        Some("Form:age")
    );
    assert_eq!(s.key_count().await.unwrap(), 1);
}

/// `set_state(None)` clears the state.
pub async fn set_state_none_clears(ctx: Ctx) {
    let s = ctx.storage().await;
    s.set_state(&key(1), Some("Form:name")).await.unwrap();
    s.set_state(&key(1), None).await.unwrap();
    assert_eq!(s.get_state(&key(1)).await.unwrap(), None);
    s.set_state(&key(2), None).await.unwrap();
    assert_eq!(s.get_state(&key(2)).await.unwrap(), None);
}

/// An empty state is an input error (clearing is `None`), and the old state stays.
pub async fn empty_state_is_rejected(ctx: Ctx) {
    let s = ctx.storage().await;
    s.set_state(&key(1), Some("Form:name")).await.unwrap();
    let err = s.set_state(&key(1), Some("")).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    assert_eq!(
        s.get_state(&key(1)).await.unwrap().as_deref(),
        Some("Form:name")
    );
}

/// A state of 255 characters is stored; 256 is an input error and the old state stays.
pub async fn long_state_is_rejected(ctx: Ctx) {
    let s = ctx.storage().await;
    let longest = "ж".repeat(MAX_STATE_CHARS);
    s.set_state(&key(1), Some(&longest)).await.unwrap();
    assert_eq!(s.get_state(&key(1)).await.unwrap(), Some(longest.clone()));
    let err = s
        .set_state(&key(1), Some(&"ж".repeat(MAX_STATE_CHARS + 1)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    assert_eq!(s.get_state(&key(1)).await.unwrap(), Some(longest));
}

/// Setting and clearing the state leaves the data alone.
pub async fn state_does_not_touch_data(ctx: Ctx) {
    let s = ctx.storage().await;
    let data = obj(json!({"name": "Ann"}));
    s.set_data(&key(1), &data).await.unwrap();
    s.set_state(&key(1), Some("Form:age")).await.unwrap();
    assert_eq!(s.get_data(&key(1)).await.unwrap(), data);
    s.set_state(&key(1), None).await.unwrap();
    assert_eq!(s.get_data(&key(1)).await.unwrap(), data);
}
