//! What fits in a row: unicode, large values, limits, typed data, bad input.

use fsmstore_core::{BotId, ChatId, DefaultKeyBuilder, Error, StorageExt, StorageKey, UserId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{key, obj};
use crate::Ctx;

/// Unicode in states, field names, values and key parts (business connection ids) round
/// trips unchanged, including characters outside the BMP and escapes' look-alikes.
pub async fn unicode_keys_and_values(ctx: Ctx) {
    let s = ctx
        .open(
            ctx.options()
                .key_builder(DefaultKeyBuilder::default().with_business_connection_id(true)),
        )
        .await;
    let k =
        StorageKey::new(BotId(42), ChatId(-100), UserId(7)).with_business_connection("бизнес-🚀");
    let state = "Форма:имя 🚀 名前";
    let data = obj(json!({
        "имя": "Ренé", "emoji": "👩‍👩‍👧 🇺🇦", "cjk": "漢字かな", "rtl": "مرحبا",
        "escapes": "\\u00e9 \"quoted\" \n\t", "🔑": ["ß", "ǅ"]
    }));
    s.set_state(&k, Some(state)).await.unwrap();
    s.set_data(&k, &data).await.unwrap();
    let record = s.get_record(&k).await.unwrap();
    assert_eq!(record.state.as_deref(), Some(state));
    assert_eq!(record.data, data);
    assert_eq!(
        s.get_value(&k, "🔑").await.unwrap(),
        Some(json!(["ß", "ǅ"]))
    );
    assert_eq!(
        s.get_state(&StorageKey::new(BotId(42), ChatId(-100), UserId(7)))
            .await
            .unwrap(),
        None
    );
}

/// A 1 MiB string value is stored and read back whole, also through `update_data`.
pub async fn one_mib_value(ctx: Ctx) {
    let s = ctx.storage().await;
    let big: String = "0123456789abcdef".repeat(64 * 1024);
    assert_eq!(big.len(), 1024 * 1024);
    s.set_data(&key(1), &obj(json!({"blob": big})))
        .await
        .unwrap();
    assert_eq!(
        s.get_value(&key(1), "blob").await.unwrap(),
        Some(json!(big))
    );
    let merged = s
        .update_data(&key(1), &obj(json!({"small": 1})))
        .await
        .unwrap();
    assert_eq!(merged.get("blob"), Some(&json!(big)));
    assert_eq!(s.get_data(&key(1)).await.unwrap().len(), 2);
}

/// Data over the configured limit is refused with `ValueTooLarge`; what was stored stays.
pub async fn oversized_data_is_rejected_and_nothing_lost(ctx: Ctx) {
    let s = ctx.open(ctx.options().max_data_bytes(1024)).await;
    s.set_data(&key(1), &obj(json!({"ok": "small"})))
        .await
        .unwrap();
    let big = obj(json!({"blob": "x".repeat(2048)}));
    let err = s.set_data(&key(1), &big).await.unwrap_err();
    assert!(
        matches!(err, Error::ValueTooLarge { limit: 1024, .. }),
        "{err:?}"
    );
    let err = s.update_data(&key(1), &big).await.unwrap_err();
    assert!(matches!(err, Error::ValueTooLarge { .. }), "{err:?}");
    assert_eq!(
        s.get_data(&key(1)).await.unwrap(),
        obj(json!({"ok": "small"}))
    );
    assert!(matches!(
        s.set_data(&key(2), &big).await,
        Err(Error::ValueTooLarge { .. })
    ));
    assert_eq!(s.key_count().await.unwrap(), 1);
}

/// An object with 2,000 fields round trips; replaced, merged and rewritten with as many.
pub async fn many_fields_round_trip(ctx: Ctx) {
    let s = ctx.storage().await;
    let data: fsmstore_core::Data = (0..2000)
        .map(|i| (format!("field_{i}"), json!(i)))
        .collect();
    s.set_data(&key(1), &data).await.unwrap();
    assert_eq!(s.get_data(&key(1)).await.unwrap(), data);
    // Replaced by as many other fields, merged with a patch as large, and written whole
    // with a state: none of the old fields stays, none of the new is lost (Redis' scripts
    // write these in chunks).
    let other: fsmstore_core::Data = (0..2500)
        .map(|i| (format!("other_{i}"), json!(format!("v{i}"))))
        .collect();
    s.set_state(&key(1), Some("Form:many")).await.unwrap();
    s.set_data(&key(1), &other).await.unwrap();
    assert_eq!(s.get_data(&key(1)).await.unwrap(), other);
    assert_eq!(
        s.get_state(&key(1)).await.unwrap().as_deref(),
        Some("Form:many")
    );
    let merged = s.update_data(&key(1), &data).await.unwrap();
    let mut both = other.clone();
    both.extend(data.clone());
    assert_eq!(merged, both);
    assert_eq!(s.get_data(&key(1)).await.unwrap(), both);
    s.set_record(&key(1), Some("Form:whole"), &data)
        .await
        .unwrap();
    let record = s.get_record(&key(1)).await.unwrap();
    assert_eq!(record.state.as_deref(), Some("Form:whole"));
    assert_eq!(record.data, data);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Form {
    name: String,
    age: u32,
    tags: Vec<String>,
}

/// `set_data_from` and `get_data_as` round trip a struct; `get_value_as` reads one field;
/// data that does not fit the type is a `Serialization` error.
pub async fn typed_helpers_round_trip(ctx: Ctx) {
    let s = ctx.storage().await;
    let form = Form {
        name: "Ann".into(),
        age: 30,
        tags: vec!["a".into()],
    };
    s.set_data_from(&key(1), &form).await.unwrap();
    assert_eq!(s.get_data_as::<Form>(&key(1)).await.unwrap(), form);
    assert_eq!(
        s.get_value_as::<u32>(&key(1), "age").await.unwrap(),
        Some(30)
    );
    s.update_data_from(&key(1), &json!({"age": "thirty"}))
        .await
        .unwrap();
    assert!(matches!(
        s.get_data_as::<Form>(&key(1)).await,
        Err(Error::DataMismatch { .. })
    ));
}

/// Stored data that does not fit the caller's type is `DataMismatch`, naming the row id: the
/// row is fine, the caller's type is not (not `InvalidInput`, which is about input).
pub async fn data_not_fitting_the_type_is_a_mismatch(ctx: Ctx) {
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Form {
        age: u32,
    }
    let s = ctx.storage().await;
    s.set_data(&key(1), &obj(json!({"age": "thirty"})))
        .await
        .unwrap();
    let err = s.get_data_as::<Form>(&key(1)).await.unwrap_err();
    assert_eq!(
        err.kind(),
        fsmstore_core::ErrorKind::DataMismatch,
        "{err:?}"
    );
    let id = s.options().row_id(&key(1)).unwrap();
    assert!(
        matches!(&err, Error::DataMismatch { key, .. } if *key == id),
        "{err:?}"
    );
    assert!(std::error::Error::source(&err).is_some());
    let err = s.get_value_as::<u32>(&key(1), "age").await.unwrap_err();
    assert_eq!(
        err.kind(),
        fsmstore_core::ErrorKind::DataMismatch,
        "{err:?}"
    );
}

/// Data of exactly `max_data_bytes` serialized is accepted; one byte more is refused, for
/// `set_data`, `update_data` and `transition` alike.
pub async fn data_limit_is_exact(ctx: Ctx) {
    const LIMIT: usize = 1024;
    let s = ctx.open(ctx.options().max_data_bytes(LIMIT)).await;
    // `{"a":"` + n × `x` + `"}` is n + 8 bytes.
    let sized = |n: usize| obj(json!({ "a": "x".repeat(n) }));
    assert_eq!(
        serde_json::to_string(&sized(LIMIT - 8)).unwrap().len(),
        LIMIT
    );
    s.set_data(&key(1), &sized(LIMIT - 8)).await.unwrap();
    s.update_data(&key(2), &sized(LIMIT - 8)).await.unwrap();
    s.transition(&key(3), Some("S"), &sized(LIMIT - 8))
        .await
        .unwrap();
    for result in [
        s.set_data(&key(4), &sized(LIMIT - 7)).await,
        s.update_data(&key(4), &sized(LIMIT - 7)).await.map(drop),
        s.transition(&key(4), Some("S"), &sized(LIMIT - 7))
            .await
            .map(drop),
    ] {
        assert!(
            matches!(result, Err(Error::ValueTooLarge { .. })),
            "{result:?}"
        );
    }
    assert_eq!(s.key_count().await.unwrap(), 3);
}
