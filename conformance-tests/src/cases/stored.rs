//! Rows another program wrote (Python's json.dumps, an operator's SQL): what fsmstore does
//! with data it can read but would not write itself, and with data it can not read. Needs
//! [`Backend::execute_raw`](crate::Backend::execute_raw), so it runs on the SQL backends,
//! in both layouts. (MySQL 8's binary `JSON` column, unlike MariaDB's text, itself keeps
//! integers past `u64` only as doubles and refuses `1e400`: these cases describe MariaDB,
//! SQLite and PostgreSQL, which CI runs.)

use fsmstore_core::{Error, ErrorKind};
use serde_json::{json, Value};

use super::aiogram::{id_of, put_row, stored_text};
use super::{key, obj};
use crate::Ctx;

/// A number `f64` can only approximate, and a float written with more digits than `f64`
/// keeps: Python's `json.dumps` writes both.
const EXACT: &str = r#"{"big": 123456789012345678901234567890, "float": 0.1000000000000000055511151231257827, "name": "Ann"}"#;

/// `update_data` and `transition` rewrite only the fields they name: the others keep the
/// digits they were stored with (SQLite and MySQL once re-encoded them through `f64`, so
/// `123456789012345678901234567890` became `1.2345678901234568e+29`).
pub async fn untouched_fields_keep_their_stored_numbers(ctx: Ctx) {
    let s = ctx.storage().await;
    let (k1, k2) = (key(1), key(2));
    for k in [&k1, &k2] {
        put_row(&ctx, &id_of(&ctx, k), Some("Form:name"), Some(EXACT)).await;
    }
    let merged = s.update_data(&k1, &obj(json!({"x": 1}))).await.unwrap();
    assert_eq!(merged["x"], 1);
    assert_eq!(merged["name"], "Ann");
    assert_eq!(merged["big"].as_f64(), Some(1.234_567_890_123_456_8e29));
    s.transition(&k2, Some("Form:age"), &obj(json!({"age": 30})))
        .await
        .unwrap();
    for k in [&k1, &k2] {
        let text = stored_text(&ctx, &id_of(&ctx, k))
            .await
            .flatten()
            .expect("the row and its data are there");
        assert!(
            text.contains("123456789012345678901234567890")
                && text.contains("0.1000000000000000055511151231257827"),
            "{}: an untouched field was re-encoded: {text}",
            ctx.backend().name()
        );
    }
    assert_eq!(s.get_state(&k2).await.unwrap().as_deref(), Some("Form:age"));
}

/// A stored number past `f64` (`1e400`) can not be read by any client: every backend
/// answers `CorruptData`, and a merge into it writes nothing (PostgreSQL once committed
/// the merge and then failed to decode what it returned: an error for a write that
/// happened).
pub async fn unreadable_numbers_are_corrupt_and_nothing_is_written(ctx: Ctx) {
    let s = ctx.storage().await;
    let k = key(3);
    let id = id_of(&ctx, &k);
    put_row(&ctx, &id, Some("Form:name"), Some(r#"{"a": 1e400}"#)).await;
    let before = stored_text(&ctx, &id).await;
    assert_corrupt(s.get_data(&k).await.map(drop), "get_data");
    assert_corrupt(s.get_record(&k).await.map(drop), "get_record");
    assert_corrupt(
        s.update_data(&k, &obj(json!({"x": 1}))).await.map(drop),
        "update_data",
    );
    assert_corrupt(
        s.transition(&k, Some("Form:age"), &obj(json!({"x": 1})))
            .await
            .map(drop),
        "transition",
    );
    assert_eq!(stored_text(&ctx, &id).await, before, "a failed merge wrote");
    assert_eq!(
        s.get_state(&k).await.unwrap().as_deref(),
        Some("Form:name"),
        "a failed transition moved the state"
    );
    // A transition to no state returns the data: refused the same way, nothing written.
    assert_corrupt(
        s.transition(&k, None, &fsmstore_core::Data::new())
            .await
            .map(drop),
        "transition to no state",
    );
    assert_eq!(s.get_state(&k).await.unwrap().as_deref(), Some("Form:name"));
    // Clearing the state alone never reads the data: it works, and the data stays.
    s.set_state(&k, None).await.unwrap();
    assert_eq!(s.get_state(&k).await.unwrap(), None);
    assert_eq!(
        stored_text(&ctx, &id).await,
        before,
        "set_state(None) kept the data"
    );
    // The way out: replacing the data or clearing the dialogue works.
    s.set_data(&k, &obj(json!({"a": 1}))).await.unwrap();
    assert_eq!(
        Value::Object(s.get_data(&k).await.unwrap()),
        json!({"a": 1})
    );
}

/// Odd text in the data column of the aiogram layout (any text goes there): `null` is
/// empty data as `''` and `NULL` are; an array, and a string holding a NUL (which
/// PostgreSQL can not hold as `JSONB`), are corrupt on every backend, and a merge into
/// them writes nothing.
pub async fn odd_stored_rows_answer_alike(ctx: Ctx) {
    let s = ctx.storage().await;
    let k = key(4);
    let id = id_of(&ctx, &k);
    put_row(&ctx, &id, Some("S"), Some("null")).await;
    assert!(
        s.get_data(&k).await.unwrap().is_empty(),
        "null is empty data"
    );
    assert_eq!(
        Value::Object(s.update_data(&k, &obj(json!({"x": 1}))).await.unwrap()),
        json!({"x": 1})
    );
    for (n, text) in [
        (5, "[]"),
        (6, "[1, 2]"),
        (7, r#"{"s": "a\u0000b"}"#),
        (8, "7"),
    ] {
        let k = key(n);
        let id = id_of(&ctx, &k);
        put_row(&ctx, &id, Some("S"), Some(text)).await;
        assert_corrupt(s.get_data(&k).await.map(drop), text);
        assert_corrupt(
            s.update_data(&k, &obj(json!({"x": 1}))).await.map(drop),
            text,
        );
        assert_eq!(
            stored_text(&ctx, &id).await.flatten().as_deref(),
            Some(text),
            "a failed merge wrote"
        );
    }
}

fn assert_corrupt(result: fsmstore_core::Result<()>, what: &str) {
    match result {
        Err(err @ Error::CorruptData { .. }) => assert_eq!(err.kind(), ErrorKind::CorruptData),
        other => panic!("{what}: expected CorruptData, got {other:?}"),
    }
}

/// A row whose data does not read is listed, named, with the reason, and the rows around
/// it are listed as usual: one bad row never breaks `list_rows` (it once failed the whole
/// listing, and `fsmstore inspect list` with it).
pub async fn one_corrupt_row_never_hides_the_others(ctx: Ctx) {
    let s = ctx.storage().await;
    let inspect = ctx.inspect().await;
    s.set_state(&key(10), Some("Form:a")).await.unwrap();
    let bad = id_of(&ctx, &key(11));
    put_row(&ctx, &bad, Some("Form:a"), Some(r#"{"a": 1e400}"#)).await;
    s.update_data(&key(12), &obj(json!({"n": 12})))
        .await
        .unwrap();
    for rows in [
        inspect.list_rows(None, None, 10).await.unwrap(),
        inspect.list_rows(Some("Form:a"), None, 10).await.unwrap(),
    ] {
        let listed: Vec<(&str, bool)> = rows
            .iter()
            .map(|row| (row.id.as_str(), row.corrupt.is_some()))
            .collect();
        assert!(listed.contains(&(bad.as_str(), true)), "{listed:?}");
        assert!(
            listed.contains(&(id_of(&ctx, &key(10)).as_str(), false)),
            "{listed:?}"
        );
    }
    let row = inspect
        .get_row(&bad)
        .await
        .unwrap()
        .expect("the row is there");
    assert!(row.data.is_empty() && row.corrupt.is_some(), "{row:?}");
    let all = inspect.list_rows(None, None, 10).await.unwrap();
    let twelve = all
        .iter()
        .find(|row| row.id == id_of(&ctx, &key(12)))
        .expect("the row after the bad one is listed");
    assert_eq!(Value::Object(twelve.data.clone()), json!({"n": 12}));
}
