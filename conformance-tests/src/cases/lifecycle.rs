//! Rows live exactly as long as they hold something; the reference scenarios of aiogram
//! and teloxide.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fsmstore_core::{BotId, ChatId, Data, StorageKey, UserId};
use serde_json::json;

use super::{key, obj};
use crate::Ctx;

/// A caller that waits for a connection is served while another caller makes calls back to
/// back on the same one-connection pool: it gets in line once it has waited half the pool's
/// wait, instead of losing every wake-up to the caller that checks the connection in and
/// takes it again at once, until the pool gives up on it.
pub async fn a_caller_is_served_while_another_calls_back_to_back(ctx: Ctx) {
    // Also the bound on opening the connection (a pooler, a cluster node).
    let wait = Duration::from_secs(4);
    let db = ctx
        .database(ctx.options().pool_max(1).connect_timeout(wait))
        .await;
    let s = db.storage();
    s.set_state(&key(1), Some("Form:busy")).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let busy = {
        let (s, stop) = (Arc::clone(&s), Arc::clone(&stop));
        // No yield between calls, on purpose: the check-in and the next checkout follow
        // each other at once (the suites run on a multi-threaded runtime).
        tokio::spawn(async move {
            let mut calls = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                let state = s.get_state(&key(1)).await.unwrap();
                assert_eq!(state.as_deref(), Some("Form:busy"));
                calls += 1;
            }
            calls
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let answer = s.set_state(&key(2), Some("Form:waited")).await;
    let waited = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let calls = busy.await.unwrap();
    assert!(calls > 0, "the other caller made no call");
    assert!(
        answer.is_ok(),
        "{answer:?} after {waited:?}, while the only connection was checked in after each of \
         {calls} calls"
    );
    assert!(waited < wait, "waited {waited:?}");
    assert_eq!(
        s.get_state(&key(2)).await.unwrap().as_deref(),
        Some("Form:waited")
    );
}

/// `clear` removes state and data.
pub async fn clear_removes_state_and_data(ctx: Ctx) {
    let s = ctx.storage().await;
    s.set_state(&key(1), Some("Form:name")).await.unwrap();
    s.set_data(&key(1), &obj(json!({"a": 1}))).await.unwrap();
    assert!(
        s.clear(&key(1)).await.unwrap(),
        "clear reports the row it removed"
    );
    assert!(s.get_record(&key(1)).await.unwrap().is_empty());
    assert_eq!(s.key_count().await.unwrap(), 0);
    assert!(!s.clear(&key(1)).await.unwrap(), "nothing left to remove");
}

/// Clearing the last of state and data deletes the row, whichever goes last.
pub async fn row_holding_neither_is_deleted(ctx: Ctx) {
    let s = ctx.storage().await;
    s.set_state(&key(1), Some("S")).await.unwrap();
    s.set_state(&key(1), None).await.unwrap();
    assert_eq!(s.key_count().await.unwrap(), 0, "state cleared");

    s.set_data(&key(1), &obj(json!({"a": 1}))).await.unwrap();
    s.set_data(&key(1), &Data::new()).await.unwrap();
    assert_eq!(s.key_count().await.unwrap(), 0, "data cleared");

    s.set_state(&key(1), Some("S")).await.unwrap();
    s.update_data(&key(1), &obj(json!({"a": 1}))).await.unwrap();
    s.set_state(&key(1), None).await.unwrap();
    assert_eq!(s.key_count().await.unwrap(), 1, "data still held");
    s.set_data(&key(1), &Data::new()).await.unwrap();
    assert_eq!(s.key_count().await.unwrap(), 0, "data cleared after state");

    s.set_data(&key(1), &obj(json!({"a": 1}))).await.unwrap();
    s.set_state(&key(1), Some("S")).await.unwrap();
    s.set_data(&key(1), &Data::new()).await.unwrap();
    assert_eq!(s.key_count().await.unwrap(), 1, "state still held");
    s.set_state(&key(1), None).await.unwrap();
    assert_eq!(s.key_count().await.unwrap(), 0, "state cleared after data");
}

/// Clearing a key that was never written is fine and leaves nothing behind.
pub async fn clear_of_absent_key_is_fine(ctx: Ctx) {
    let s = ctx.storage().await;
    assert!(!s.clear(&key(1)).await.unwrap(), "no row was there");
    assert_eq!(s.key_count().await.unwrap(), 0);
    // A row holding only data is a row.
    s.set_data(&key(2), &obj(json!({"a": 1}))).await.unwrap();
    assert!(s.clear(&key(2)).await.unwrap());
}

/// `set_record` replaces state and data together (no merge); `None` with `{}` deletes the
/// row; invalid input writes nothing.
pub async fn set_record_replaces_state_and_data(ctx: Ctx) {
    let s = ctx.storage().await;
    let k = key(1);
    s.set_record(&k, Some("A"), &obj(json!({"a": 1, "b": 2})))
        .await
        .unwrap();
    let record = s.get_record(&k).await.unwrap();
    assert_eq!(record.state.as_deref(), Some("A"));
    assert_eq!(record.data, obj(json!({"a": 1, "b": 2})));

    // Replaced, not merged: `a` is gone.
    s.set_record(&k, Some("B"), &obj(json!({"b": 3})))
        .await
        .unwrap();
    let record = s.get_record(&k).await.unwrap();
    assert_eq!(record.state.as_deref(), Some("B"));
    assert_eq!(record.data, obj(json!({"b": 3})));

    // A state with no data, and data with no state, are rows.
    s.set_record(&k, Some("C"), &Data::new()).await.unwrap();
    assert_eq!(s.get_data(&k).await.unwrap(), Data::new());
    assert_eq!(s.get_state(&k).await.unwrap().as_deref(), Some("C"));
    s.set_record(&k, None, &obj(json!({"c": 1}))).await.unwrap();
    assert_eq!(s.get_state(&k).await.unwrap(), None);
    assert_eq!(s.key_count().await.unwrap(), 1);

    // Invalid input writes nothing.
    assert!(s.set_record(&k, Some(""), &Data::new()).await.is_err());
    assert!(s
        .set_record(&k, Some("D"), &obj(json!({"bad": "nul\u{0}"})))
        .await
        .is_err());
    let record = s.get_record(&k).await.unwrap();
    assert_eq!((record.state, record.data), (None, obj(json!({"c": 1}))));

    // Neither: the row goes.
    s.set_record(&k, None, &Data::new()).await.unwrap();
    assert_eq!(s.key_count().await.unwrap(), 0);
}

/// teloxide's storage test: keys 1, 11, 256 go absent → set → read → clear → absent.
pub async fn teloxide_scenario(ctx: Ctx) {
    let s = ctx.storage().await;
    for chat in [1, 11, 256] {
        let k = StorageKey::new(BotId(0), ChatId(chat), UserId(chat));
        assert!(
            s.get_record(&k).await.unwrap().is_empty(),
            "chat {chat} absent first"
        );
        s.set_state(&k, Some(&format!("Dialogue{chat}")))
            .await
            .unwrap();
        s.set_data(&k, &obj(json!({ "chat": chat }))).await.unwrap();
    }
    for chat in [1, 11, 256] {
        let k = StorageKey::new(BotId(0), ChatId(chat), UserId(chat));
        let record = s.get_record(&k).await.unwrap();
        assert_eq!(record.state, Some(format!("Dialogue{chat}")));
        assert_eq!(record.data, obj(json!({ "chat": chat })));
        s.clear(&k).await.unwrap();
        assert!(
            s.get_record(&k).await.unwrap().is_empty(),
            "chat {chat} absent after clear"
        );
    }
    assert_eq!(s.key_count().await.unwrap(), 0);
}

/// aiogram's storage test (`tests/test_fsm/storage/test_storages.py`), call for call.
pub async fn aiogram_storage_semantics(ctx: Ctx) {
    let s = ctx.storage().await;
    let k = StorageKey::new(BotId(42), ChatId(-42), UserId(42));
    // test_set_state
    assert_eq!(s.get_state(&k).await.unwrap(), None);
    s.set_state(&k, Some("state")).await.unwrap();
    assert_eq!(s.get_state(&k).await.unwrap().as_deref(), Some("state"));
    s.set_state(&k, None).await.unwrap();
    assert_eq!(s.get_state(&k).await.unwrap(), None);
    // test_set_data
    assert_eq!(s.get_data(&k).await.unwrap(), Data::new());
    assert_eq!(s.get_value(&k, "foo").await.unwrap(), None);
    s.set_data(&k, &obj(json!({"foo": "bar"}))).await.unwrap();
    assert_eq!(s.get_data(&k).await.unwrap(), obj(json!({"foo": "bar"})));
    assert_eq!(s.get_value(&k, "foo").await.unwrap(), Some(json!("bar")));
    assert_eq!(s.get_value(&k, "baz").await.unwrap(), None);
    s.set_data(&k, &Data::new()).await.unwrap();
    assert_eq!(s.get_data(&k).await.unwrap(), Data::new());
    assert_eq!(s.get_value(&k, "foo").await.unwrap(), None);
    // test_update_data
    assert_eq!(s.get_data(&k).await.unwrap(), Data::new());
    assert_eq!(
        s.update_data(&k, &obj(json!({"foo": "bar"})))
            .await
            .unwrap(),
        obj(json!({"foo": "bar"}))
    );
    assert_eq!(
        s.update_data(&k, &obj(json!({}))).await.unwrap(),
        obj(json!({"foo": "bar"}))
    );
    assert_eq!(s.get_data(&k).await.unwrap(), obj(json!({"foo": "bar"})));
    assert_eq!(
        s.update_data(&k, &obj(json!({"baz": "spam"})))
            .await
            .unwrap(),
        obj(json!({"foo": "bar", "baz": "spam"}))
    );
    assert_eq!(
        s.update_data(&k, &obj(json!({"baz": "test"})))
            .await
            .unwrap(),
        obj(json!({"foo": "bar", "baz": "test"}))
    );
    assert_eq!(
        s.get_data(&k).await.unwrap(),
        obj(json!({"foo": "bar", "baz": "test"}))
    );
}

/// Clearing the state and the data of a key at the same moment, from two tasks, leaves no
/// row (each clear alone can see the other column still set).
pub async fn clearing_state_and_data_at_once_leaves_no_row(ctx: Ctx) {
    let s = ctx.storage().await;
    for n in 1..=60 {
        s.set_record(&key(n), Some("S"), &obj(json!({"a": n})))
            .await
            .unwrap();
    }
    let tasks: Vec<_> = (1..=60)
        .map(|n| {
            let s = std::sync::Arc::clone(&s);
            tokio::spawn(async move {
                let (k, empty) = (key(n), Data::new());
                let (state, data) = tokio::join!(s.set_state(&k, None), s.set_data(&k, &empty));
                state.and(data)
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a task").unwrap();
    }
    assert_eq!(
        s.key_count().await.unwrap(),
        0,
        "rows holding nothing were left"
    );
}

/// One connection (`pool_max=1`) serves everything a handle does: calls, the whole-table
/// reads, the migrator, and calls from several tasks at once, in turn. A connection a call
/// keeps for the next one (the server backends' stash) goes to whichever caller asks next;
/// none waits for the pool's timeout (10 s here) while it sits idle.
pub async fn one_connection_serves_calls_and_whole_table_operations(ctx: Ctx) {
    let wait = Duration::from_secs(10);
    let db = ctx
        .database(ctx.options().pool_max(1).connect_timeout(wait))
        .await;
    let s = db.storage();
    let inspect = db.inspect();
    let migrator = db.migrator().ok();
    let started = Instant::now();
    for round in 0..3_i64 {
        s.set_state(&key(1), Some("Form:a")).await.unwrap();
        assert_eq!(inspect.stats().await.unwrap().rows, 1, "round {round}");
        s.update_data(&key(1), &obj(json!({"round": round})))
            .await
            .unwrap();
        if let Some(migrator) = &migrator {
            // Its reads take a connection of the same pool.
            migrator.applied().await.unwrap();
        }
        assert_eq!(
            s.get_data(&key(1)).await.unwrap(),
            obj(json!({"round": round}))
        );
        let id = db.options().row_id(&key(1)).unwrap();
        assert!(inspect.get_row(&id).await.unwrap().is_some());
    }
    let tasks: Vec<_> = (0..8_i64)
        .map(|t| {
            let s = std::sync::Arc::clone(&s);
            let inspect = std::sync::Arc::clone(&inspect);
            tokio::spawn(async move {
                for step in 0..5_i64 {
                    s.update_data(&key(100 + t), &obj(json!({ "step": step })))
                        .await
                        .unwrap();
                    inspect.stats().await.unwrap();
                }
                s.get_data(&key(100 + t)).await.unwrap()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), obj(json!({"step": 4})));
    }
    assert_eq!(inspect.stats().await.unwrap().rows, 9);
    let took = started.elapsed();
    assert!(
        took < wait,
        "one connection took {took:?}: a caller waited for the pool"
    );
}
