//! The cases, one public `async fn(Ctx)` each. Each panics with a message on failure.

pub mod adversarial;
pub mod aiogram;
pub mod coalesce;
pub mod data;
pub mod dialogues;
pub mod expiry;
pub mod inspect;
pub mod isolation;
pub mod keys;
pub mod lifecycle;
pub mod migrations;
pub mod payload;
pub mod persistence;
pub mod reference;
pub mod state;
pub mod stored;
pub mod transition;
pub mod update;

use fsmstore_core::{BotId, ChatId, Data, StorageKey, UserId};
use serde_json::Value;

/// `json!({...})` as [`Data`]; panics on a non-object (a bug in the case).
pub(crate) fn obj(value: Value) -> Data {
    match value {
        Value::Object(map) => map,
        other => panic!("case bug: {other} is not an object"),
    }
}

/// Key `n`: bot 42, chat `n`, user `n` (the benchmark's and teloxide's layout).
pub(crate) fn key(n: i64) -> StorageKey {
    StorageKey::new(BotId(42), ChatId(n), UserId(n))
}
