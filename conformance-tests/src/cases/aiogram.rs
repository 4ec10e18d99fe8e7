//! The aiogram layout ([`Layout::AiogramSqlalchemy`]): the table of Python's
//! `aiogram-sqlalchemy-storage` read and written as it is. These cases run with the case's
//! options in that layout (`conformance_suite!(aiogram_layout: …)`); rows "written by
//! Python" are put in with the backend's own SQL ([`Backend::execute_raw`]), in the exact
//! text Python's `json.dumps` writes.
//!
//! [`Backend::execute_raw`]: crate::Backend::execute_raw

use fsmstore_core::{Dialect, ErrorKind, Layout, MigrationTarget, SchemaPolicy, StorageKey};
use serde_json::{json, Value};

use super::{key, obj};
use crate::ctx::Ctx;

/// Python's `json.dumps` of `{"name": "Женя", "emoji": "😀", "n": 1.5, "list": [1, 2],
/// "nested": {"a": null}, "quote": "say \"hi\""}`: `ensure_ascii` escapes (a surrogate
/// pair for the emoji) and its `", "` / `": "` separators.
pub const PYTHON_TEXT: &str = r#"{"name": "\u0416\u0435\u043d\u044f", "emoji": "\ud83d\ude00", "n": 1.5, "list": [1, 2], "nested": {"a": null}, "quote": "say \"hi\""}"#;

/// The value of [`PYTHON_TEXT`].
pub fn python_value() -> Value {
    json!({"name": "Женя", "emoji": "😀", "n": 1.5, "list": [1, 2], "nested": {"a": null}, "quote": "say \"hi\""})
}

fn dialect(ctx: &Ctx) -> Dialect {
    ctx.backend()
        .dialect()
        .expect("the aiogram layout cases run on SQL backends")
}

/// `text` as an SQL string literal of the backend's raw statements.
fn lit(ctx: &Ctx, text: &str) -> String {
    let text = text.replace('\'', "''");
    if ctx.backend().capabilities().backslash_escapes {
        format!("'{}'", text.replace('\\', "\\\\"))
    } else {
        format!("'{text}'")
    }
}

/// `Some(text)` as a literal, `None` as `NULL`.
fn lit_or_null(ctx: &Ctx, text: Option<&str>) -> String {
    text.map_or_else(|| "NULL".to_owned(), |text| lit(ctx, text))
}

/// The case's FSM table, quoted.
fn table(ctx: &Ctx) -> String {
    ctx.options().table.quoted(dialect(ctx))
}

/// Puts a row in as Python would, without fsmstore.
pub(crate) async fn put_row(ctx: &Ctx, id: &str, state: Option<&str>, data: Option<&str>) {
    let sql = format!(
        "INSERT INTO {} (id, state, data) VALUES ({}, {}, {})",
        table(ctx),
        lit(ctx, id),
        lit_or_null(ctx, state),
        lit_or_null(ctx, data)
    );
    ctx.backend()
        .execute_raw(&ctx.options(), &sql)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"));
}

/// The data column of row `id` as stored: `None` when there is no row, `Some(None)` for
/// SQL `NULL`.
pub(crate) async fn stored_text(ctx: &Ctx, id: &str) -> Option<Option<String>> {
    let sql = format!(
        "SELECT data FROM {} WHERE id = {}",
        table(ctx),
        lit(ctx, id)
    );
    let mut rows = ctx
        .backend()
        .query_raw(&ctx.options(), &sql)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"));
    assert!(rows.len() <= 1, "{sql}: {rows:?}");
    rows.pop()
}

pub(crate) fn id_of(ctx: &Ctx, key: &StorageKey) -> String {
    ctx.options().row_id(key).expect("a valid key")
}

/// Opening with `Upgrade` creates the table at version 1 (not at head); `Verify` then
/// accepts it; fsmstore's own layout refuses it as outdated.
pub async fn opening_creates_the_table_at_version_1(ctx: Ctx) {
    assert_eq!(ctx.layout(), Layout::AiogramSqlalchemy);
    let s = ctx.storage().await;
    s.set_state(&key(1), Some("Form:name")).await.unwrap();
    assert_eq!(ctx.migrator().await.current().await.unwrap(), 1);
    let verified = ctx.open(ctx.options().schema(SchemaPolicy::Verify)).await;
    assert_eq!(
        verified.get_state(&key(1)).await.unwrap().as_deref(),
        Some("Form:name")
    );
    let err = ctx
        .backend()
        .open(
            ctx.options()
                .layout(Layout::Fsmstore)
                .schema(SchemaPolicy::Verify),
        )
        .await
        .err()
        .expect("fsmstore's layout needs head");
    assert_eq!(err.kind(), ErrorKind::Schema, "{err}");
}

/// Python writes `''` for empty data, and inserts `NULL` when it sets only a state: both
/// read as `{}`, and the row goes when its state is cleared.
pub async fn empty_and_null_text_read_as_empty_data(ctx: Ctx) {
    let s = ctx.storage().await;
    let (a, b, c) = (key(1), key(2), key(3));
    put_row(&ctx, &id_of(&ctx, &a), Some("S"), None).await;
    put_row(&ctx, &id_of(&ctx, &b), Some("S"), Some("")).await;
    put_row(&ctx, &id_of(&ctx, &c), Some("S"), Some("{}")).await;
    for k in [&a, &b, &c] {
        let record = s.get_record(k).await.unwrap();
        assert_eq!(record.state.as_deref(), Some("S"));
        assert!(record.data.is_empty(), "{record:?}");
        assert_eq!(s.get_value(k, "x").await.unwrap(), None);
    }
    assert_eq!(
        s.update_data(&b, &obj(json!({"x": 1}))).await.unwrap(),
        obj(json!({"x": 1}))
    );
    for k in [&a, &c] {
        s.set_state(k, None).await.unwrap();
        assert_eq!(s.get_record(k).await.unwrap(), Default::default());
    }
    assert_eq!(s.key_count().await.unwrap(), 1);
}

/// fsmstore empties rows and never deletes them: Python's library checks that a row exists,
/// then updates it in a second statement, so a row deleted in between would lose Python's
/// write. An emptied row reads, counts and lists as absent, and Python's update of it
/// (the second statement, run here by hand) is kept.
pub async fn rows_are_emptied_never_deleted(ctx: Ctx) {
    let s = ctx.inspect().await;
    let ks: Vec<_> = (1..=4).map(key).collect();
    for k in &ks {
        s.set_record(k, Some("S"), &obj(json!({"a": 1})))
            .await
            .unwrap();
    }
    assert!(s.clear(&ks[0]).await.unwrap(), "clear found the row");
    assert!(!s.clear(&ks[0]).await.unwrap(), "an emptied row is absent");
    s.set_state(&ks[1], None).await.unwrap();
    s.set_data(&ks[1], &obj(json!({}))).await.unwrap();
    s.set_record(&ks[2], None, &obj(json!({}))).await.unwrap();
    s.transition(&ks[3], None, &obj(json!({}))).await.unwrap();
    s.set_data(&ks[3], &obj(json!({}))).await.unwrap();
    assert_eq!(s.key_count().await.unwrap(), 0);
    assert_eq!(s.stats().await.unwrap().rows, 0);
    assert!(s.list_rows(None, None, 10).await.unwrap().is_empty());
    for k in &ks {
        let id = id_of(&ctx, k);
        assert_eq!(s.get_row(&id).await.unwrap(), None);
        assert!(
            stored_text(&ctx, &id).await.is_some(),
            "{id}: the row was deleted"
        );
        // Python's set_state after its `_exists` check: `UPDATE … WHERE id = …`.
        let sql = format!(
            "UPDATE {} SET state = {} WHERE id = {}",
            table(&ctx),
            lit(&ctx, "py"),
            lit(&ctx, &id)
        );
        ctx.backend()
            .execute_raw(&ctx.options(), &sql)
            .await
            .unwrap();
        assert_eq!(s.get_state(k).await.unwrap().as_deref(), Some("py"), "{id}");
    }
    assert_eq!(s.key_count().await.unwrap(), 4);
}

/// Python's JSON text (`ensure_ascii` escapes, surrogate pairs, its separators) reads by
/// value, and a merge keeps every field of it.
pub async fn python_json_text_reads_by_value(ctx: Ctx) {
    let s = ctx.storage().await;
    let k = key(7);
    put_row(&ctx, &id_of(&ctx, &k), Some("Form:name"), Some(PYTHON_TEXT)).await;
    assert_eq!(s.get_data(&k).await.unwrap(), obj(python_value()));
    assert_eq!(s.get_value(&k, "name").await.unwrap(), Some(json!("Женя")));
    let merged = s.update_data(&k, &obj(json!({"age": 30}))).await.unwrap();
    let mut expected = obj(python_value());
    expected.insert("age".into(), json!(30));
    assert_eq!(merged, expected);
    assert_eq!(s.get_data(&k).await.unwrap(), expected);
    assert_eq!(s.get_state(&k).await.unwrap().as_deref(), Some("Form:name"));
}

/// What fsmstore writes is the JSON text of the data (which Python's `json.loads` reads),
/// and `set_data({})` stores empty data as `NULL`.
pub async fn what_fsmstore_writes_is_json_text(ctx: Ctx) {
    let s = ctx.storage().await;
    let k = key(5);
    let id = id_of(&ctx, &k);
    let data = obj(python_value());
    s.set_data(&k, &data).await.unwrap();
    let text = stored_text(&ctx, &id).await.flatten().expect("data text");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        python_value()
    );
    s.update_data(&k, &obj(json!({"more": [true]})))
        .await
        .unwrap();
    let text = stored_text(&ctx, &id).await.flatten().expect("data text");
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["more"], json!([true]));
    assert_eq!(value["name"], json!("Женя"));
    s.set_state(&k, Some("S")).await.unwrap();
    s.set_data(&k, &obj(json!({}))).await.unwrap();
    let empty = stored_text(&ctx, &id)
        .await
        .expect("the row keeps its state");
    assert!(
        matches!(empty.as_deref(), None | Some("")),
        "empty data stored as {empty:?}"
    );
    s.transition(&k, Some("T"), &obj(json!({"a": 1})))
        .await
        .unwrap();
    let text = stored_text(&ctx, &id).await.flatten().expect("data text");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"a": 1})
    );
}

/// Text that is not a JSON object is reported as corrupt data naming the key, by reads
/// and by merges, and a merge leaves it as it was.
pub async fn text_that_is_not_json_is_corrupt_data(ctx: Ctx) {
    let s = ctx.storage().await;
    for (n, text) in [(1, "not json"), (2, "[1, 2]"), (3, "{\"a\": ")] {
        let k = key(n);
        let id = id_of(&ctx, &k);
        put_row(&ctx, &id, Some("S"), Some(text)).await;
        let err = s.get_data(&k).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CorruptData, "{text}: {err}");
        assert!(err.to_string().contains(&id), "{err}");
        let err = s.update_data(&k, &obj(json!({"x": 1}))).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CorruptData, "{text}: {err}");
        assert_eq!(
            stored_text(&ctx, &id).await,
            Some(Some(text.to_owned())),
            "a failed merge changed the row"
        );
        assert_eq!(s.get_state(&k).await.unwrap().as_deref(), Some("S"));
    }
}

/// Expiry, purging by age and the ages of stats need `updated_at`: refused (or reported
/// unknown) with the upgrade named, while the rest of inspect works.
pub async fn features_needing_updated_at_name_the_upgrade(ctx: Ctx) {
    let fix = "upgrade it to the latest schema version";
    let err = ctx
        .backend()
        .open(ctx.options().ttl(std::time::Duration::from_secs(60)))
        .await
        .err()
        .expect("a TTL needs updated_at");
    assert!(
        matches!(err, fsmstore_core::Error::LayoutLacks { .. }) && err.to_string().contains(fix),
        "{err}"
    );
    let s = ctx.inspect().await;
    s.set_state(&key(1), Some("S")).await.unwrap();
    for err in [
        s.count_older_than(0).await.unwrap_err(),
        s.purge_older_than(i64::MAX, 10).await.unwrap_err(),
        s.expiry_cutoff_ms().await.unwrap_err(),
    ] {
        assert!(
            matches!(err, fsmstore_core::Error::LayoutLacks { .. })
                && err.to_string().contains(fix),
            "{err}"
        );
    }
    assert_eq!(s.key_count().await.unwrap(), 1, "a refused purge deleted");
    let stats = s.stats().await.unwrap();
    assert_eq!(
        (stats.rows, stats.oldest_ms, stats.newest_ms),
        (1, None, None)
    );
    let row = s
        .get_row(&id_of(&ctx, &key(1)))
        .await
        .unwrap()
        .expect("the row");
    assert_eq!(row.updated_at_ms, None);
}

/// A table another program made (no version recorded) is used as it is: `Verify` reads it
/// and records nothing, `Upgrade` records version 1 without running anything.
pub async fn an_unrecorded_table_is_adopted(ctx: Ctx) {
    // The table SQLAlchemy makes for aiogram-sqlalchemy-storage's model.
    let create = format!(
        "CREATE TABLE {} (id VARCHAR(255) NOT NULL PRIMARY KEY, state VARCHAR(255) NULL, data TEXT NULL)",
        table(&ctx)
    );
    ctx.backend()
        .execute_raw(&ctx.options(), &create)
        .await
        .unwrap();
    let k = key(3);
    put_row(&ctx, &id_of(&ctx, &k), Some("Form:age"), Some(PYTHON_TEXT)).await;
    if ctx.backend().capabilities().collated_ids {
        // Made by hand in the database's collation: refused unless that compares ids
        // byte for byte (keys differing in case would share a row), with the fix named.
        let collation = ctx
            .backend()
            .query_raw(
                &ctx.options(),
                &format!(
                    "SELECT COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{}' AND COLUMN_NAME = 'id'",
                    ctx.options().table
                ),
            )
            .await
            .unwrap();
        if !collation
            .first()
            .cloned()
            .flatten()
            .unwrap_or_default()
            .ends_with("_bin")
        {
            let err = ctx
                .backend()
                .open(ctx.options().schema(SchemaPolicy::Verify))
                .await
                .err()
                .expect("a case-insensitive id column is refused");
            assert!(err.to_string().contains("COLLATE utf8mb4_bin"), "{err}");
        }
        let alter = format!(
            "ALTER TABLE {} MODIFY id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL",
            table(&ctx)
        );
        ctx.backend()
            .execute_raw(&ctx.options(), &alter)
            .await
            .unwrap();
    }
    let verified = ctx.open(ctx.options().schema(SchemaPolicy::Verify)).await;
    assert_eq!(verified.get_data(&k).await.unwrap(), obj(python_value()));
    verified.set_state(&key(4), Some("S")).await.unwrap();
    assert_eq!(ctx.migrator().await.current().await.unwrap(), 0);
    let upgraded = ctx.storage().await;
    assert_eq!(ctx.migrator().await.current().await.unwrap(), 1);
    assert_eq!(
        upgraded.get_state(&k).await.unwrap().as_deref(),
        Some("Form:age")
    );
}

/// A table fsmstore's migrations moved on is refused, with what to do.
pub async fn a_table_in_fsmstore_layout_is_refused(ctx: Ctx) {
    ctx.open(ctx.options().layout(Layout::Fsmstore)).await;
    let err = ctx
        .backend()
        .open(ctx.options())
        .await
        .err()
        .expect("the aiogram layout refuses a table at head");
    assert!(
        matches!(err, fsmstore_core::Error::LayoutMismatch { current, expected: 1, .. } if current > 1),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("without layout=aiogram-sqlalchemy"),
        "{err}"
    );
}

/// `migrate up` from a table shared in the aiogram layout keeps every key's state and data;
/// rows that hold neither (Python leaves such rows) are dropped.
pub async fn migrate_up_keeps_every_row(ctx: Ctx) {
    let s = ctx.storage().await;
    let unicode = StorageKey::new(
        fsmstore_core::BotId(42),
        fsmstore_core::ChatId(-100),
        fsmstore_core::UserId(9),
    )
    .with_thread(77);
    s.set_state(&key(1), Some("only:state")).await.unwrap();
    s.set_data(&key(2), &obj(json!({"only": "data"})))
        .await
        .unwrap();
    s.transition(&key(3), Some("both"), &obj(json!({"n": 3})))
        .await
        .unwrap();
    s.set_data(
        &unicode,
        &obj(json!({"emoji": "😀", "ж": [1, {"x": null}]})),
    )
    .await
    .unwrap();
    put_row(&ctx, &id_of(&ctx, &key(5)), Some("py"), Some(PYTHON_TEXT)).await;
    put_row(&ctx, &id_of(&ctx, &key(6)), Some("py:empty"), Some("")).await;
    put_row(&ctx, &id_of(&ctx, &key(7)), None, Some("")).await;
    put_row(&ctx, &id_of(&ctx, &key(8)), None, None).await;
    let before: Vec<_> = {
        let mut records = Vec::new();
        for k in [key(1), key(2), key(3), unicode.clone(), key(5), key(6)] {
            records.push((k.clone(), s.get_record(&k).await.unwrap()));
        }
        records
    };
    s.close().await.unwrap();
    ctx.migrator()
        .await
        .migrate(MigrationTarget::Head)
        .await
        .unwrap();
    let moved = ctx
        .open(
            ctx.options()
                .layout(Layout::Fsmstore)
                .schema(SchemaPolicy::Verify),
        )
        .await;
    for (k, record) in before {
        assert_eq!(moved.get_record(&k).await.unwrap(), record, "{k:?}");
    }
    assert_eq!(
        moved.key_count().await.unwrap(),
        6,
        "empty rows are dropped"
    );
}
