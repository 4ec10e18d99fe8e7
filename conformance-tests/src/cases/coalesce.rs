//! Coalesced writes (`StorageOptions::write_batches`): writes that wait go together in
//! one transaction, and each call still gets its own answer.

use std::sync::Arc;

use serde_json::json;

use super::{key, obj};
use crate::Ctx;

/// 64 tasks on keys of their own, every coalesced kind of write at once: each call gets
/// its own answer (the data it merged, whether its clear found a row), and every key ends
/// as its own calls left it.
pub async fn many_writers_each_get_their_own_answer(ctx: Ctx) {
    let s = ctx.storage().await;
    let before = s.write_stats();
    let tasks: Vec<_> = (1..=64)
        .map(|n| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let k = key(n);
                s.set_state(&k, Some("Form:name")).await?;
                s.set_data(&k, &obj(json!({"n": n}))).await?;
                let merged = s.update_data(&k, &obj(json!({"m": n}))).await?;
                assert_eq!(merged, obj(json!({"n": n, "m": n})), "key {n}: update_data");
                let kept = s
                    .transition(&k, Some("Form:age"), &obj(json!({"t": n})))
                    .await?;
                assert_eq!(kept, obj(json!({"n": n, "m": n, "t": n})), "key {n}");
                if n % 4 == 0 {
                    assert!(s.clear(&k).await?, "key {n}: clear found no row");
                    assert!(!s.clear(&k).await?, "key {n}: cleared twice");
                } else if n % 4 == 1 {
                    s.set_record(&k, Some("Form:done"), &obj(json!({"r": n})))
                        .await?;
                }
                Ok::<_, fsmstore_core::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task panicked").unwrap();
    }
    for n in 1..=64 {
        let record = s.get_record(&key(n)).await.unwrap();
        let (state, data) = match n % 4 {
            0 => (None, obj(json!({}))),
            1 => (Some("Form:done"), obj(json!({"r": n}))),
            _ => (Some("Form:age"), obj(json!({"n": n, "m": n, "t": n}))),
        };
        assert_eq!(record.state.as_deref(), state, "key {n}");
        assert_eq!(record.data, data, "key {n}");
    }
    assert_eq!(s.key_count().await.unwrap(), 48);
    // A backend that coalesces put some of these 64 × 5 writes in batches.
    batched_since(&*s, before, "64 writers");
}

/// A backend that coalesces put some of the writes since `before` in batches (when its
/// `write_batches` is not 0). The stats before and after, where it keeps them.
fn batched_since(
    s: &dyn fsmstore_core::Storage,
    before: Option<fsmstore_core::coalesce::CoalesceStats>,
    writers: &str,
) -> Option<(
    fsmstore_core::coalesce::CoalesceStats,
    fsmstore_core::coalesce::CoalesceStats,
)> {
    let (before, after) = (before?, s.write_stats()?);
    if s.options().write_batches > 0 {
        assert!(
            after.batched_writes > before.batched_writes,
            "{writers} and no batch: {after:?}"
        );
    }
    Some((before, after))
}

/// Values that could end or bend a statement's text, values large enough to split a batch's
/// statements, values too large to go with the others, no state and clears, written by 48
/// tasks at once (in batches where the backend coalesces): every state and every byte of
/// data comes back as written, each merge and each clear answers its own, and no batch
/// falls back to per-call writes.
pub async fn batched_values_come_back_byte_for_byte(ctx: Ctx) {
    let s = ctx.storage().await;
    let before = s.write_stats();
    let tricky = [
        "it's \\ \"quoted\" ; -- ? /* */ `tick`",
        "\\'); DROP TABLE t; --",
        "Привет, 世界 🤖 \u{1F600}\u{200B}",
        "tab\tnewline\nreturn\r\u{7f}",
        "?",
    ];
    // Some rows far larger than a batch statement's share of its text, some large enough
    // that a few fill one.
    let (large, medium) = ("x".repeat(100 * 1024), "y".repeat(30 * 1024));
    let text_of = |n: i64| match n % 8 {
        0 => format!("{large}{n}"),
        4 => format!("{medium}{n}"),
        _ => format!("{}{n}", tricky[n as usize % tricky.len()]),
    };
    let state_of = |n: i64| format!("Form:{}", tricky[n as usize % tricky.len()]);
    let tasks: Vec<_> = (1..=48)
        .map(|n| {
            let s = Arc::clone(&s);
            let (state, text) = (state_of(n), text_of(n));
            tokio::spawn(async move {
                let k = key(n);
                s.set_state(&k, Some(&state)).await?;
                s.set_data(&k, &obj(json!({ "text": text.clone(), "n": n })))
                    .await?;
                let merged = s
                    .update_data(&k, &obj(json!({ "again": text.clone() })))
                    .await?;
                assert_eq!(
                    merged,
                    obj(json!({ "text": text.clone(), "n": n, "again": text.clone() })),
                    "key {n}: update_data"
                );
                if n % 7 == 0 {
                    assert!(s.clear(&k).await?, "key {n}: clear found no row");
                } else if n % 3 == 0 {
                    s.set_record(&k, Some(&state), &obj(json!({ "record": text })))
                        .await?;
                } else if n % 5 == 0 {
                    s.set_record(&k, None, &obj(json!({ "record": text })))
                        .await?;
                }
                Ok::<_, fsmstore_core::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task panicked").unwrap();
    }
    for n in 1..=48 {
        let (state, text) = (state_of(n), text_of(n));
        let (state, data) = if n % 7 == 0 {
            (None, obj(json!({})))
        } else if n % 3 == 0 {
            (Some(state), obj(json!({ "record": text })))
        } else if n % 5 == 0 {
            (None, obj(json!({ "record": text })))
        } else {
            (
                Some(state),
                obj(json!({ "text": text.clone(), "n": n, "again": text })),
            )
        };
        let record = s.get_record(&key(n)).await.unwrap();
        assert_eq!(record.state, state, "key {n}");
        assert_eq!(record.data, data, "key {n}");
    }
    if let Some((before, after)) = batched_since(&*s, before, "48 writers") {
        // Nothing here is refused: a batch that fell back to per-call writes would mean a
        // value broke the batch's statements.
        assert_eq!(
            after.fallbacks, before.fallbacks,
            "a batch fell back: {after:?}"
        );
    }
}

/// Writes of one key from many tasks at once: a key goes at most once in a batch, so no
/// merge is lost and every answer holds the merges before it.
pub async fn writers_of_one_key_lose_nothing_in_batches(ctx: Ctx) {
    let s = ctx.storage().await;
    let tasks: Vec<_> = (0..48)
        .map(|n| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                // Half on key 1, half on keys of their own.
                let k = if n % 2 == 0 { key(1) } else { key(100 + n) };
                let merged = s
                    .update_data(&k, &obj(json!({ format!("f{n}"): n })))
                    .await?;
                assert_eq!(merged.get(&format!("f{n}")), Some(&json!(n)));
                Ok::<_, fsmstore_core::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task panicked").unwrap();
    }
    let data = s.get_data(&key(1)).await.unwrap();
    for n in (0..48).step_by(2) {
        assert_eq!(
            data.get(&format!("f{n}")),
            Some(&json!(n)),
            "f{n} lost: {data:?}"
        );
    }
}

/// A refused write among writes that wait with it: only its own call fails and the others
/// are written (`\u0000` is refused before it reaches any database; a batch the database
/// itself refuses is tested per backend, with a constraint on the scratch table).
pub async fn a_refused_write_fails_only_its_own_call(ctx: Ctx) {
    let s = ctx.storage().await;
    let bad = 17;
    let tasks: Vec<_> = (1..=40)
        .map(|n| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let value = if n == bad {
                    json!({"text": "nul \u{0} inside"})
                } else {
                    json!({"n": n})
                };
                s.set_data(&key(n), &obj(value)).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("task panicked"));
    }
    for (i, result) in results.into_iter().enumerate() {
        let n = i as i64 + 1;
        let stored = s.get_data(&key(n)).await.unwrap();
        if n == bad {
            match result {
                Ok(()) => assert_eq!(stored.get("text"), Some(&json!("nul \u{0} inside"))),
                Err(_) => assert!(stored.is_empty(), "a refused write left {stored:?}"),
            }
        } else {
            result.unwrap_or_else(|err| panic!("key {n} failed beside the bad row: {err}"));
            assert_eq!(stored, obj(json!({"n": n})));
        }
    }
}

/// With coalescing off (`write_batches = 0`) every write runs alone.
pub async fn no_batches_when_turned_off(ctx: Ctx) {
    let s = ctx.open(ctx.options().write_batches(0)).await;
    let tasks: Vec<_> = (1..=32)
        .map(|n| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.set_state(&key(n), Some("Form:name")).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task panicked").unwrap();
    }
    if let Some(stats) = s.write_stats() {
        assert_eq!((stats.alone, stats.batches), (0, 0), "{stats:?}");
    }
    assert_eq!(s.key_count().await.unwrap(), 32);
}

/// For a backend's own test of a batch the database refuses (a constraint or trigger the
/// test added that refuses the state `"Form:refused"`): 48 writers at once, writer 30
/// writing that state. Only writer 30's call fails, with an error naming `constraint`,
/// and writes nothing; every other state is written. Returns what coalescing did.
pub async fn writers_beside_a_refused_state(
    storage: Arc<dyn fsmstore_core::Storage>,
    constraint: &str,
) -> fsmstore_core::coalesce::CoalesceStats {
    let key = |n: i64| {
        fsmstore_core::StorageKey::new(
            fsmstore_core::BotId(9),
            fsmstore_core::ChatId(n),
            fsmstore_core::UserId(n),
        )
    };
    let refused = 30;
    let tasks: Vec<_> = (1..=48)
        .map(|n| {
            let storage = Arc::clone(&storage);
            tokio::spawn(async move {
                let state = if n == refused {
                    "Form:refused"
                } else {
                    "Form:name"
                };
                storage.set_state(&key(n), Some(state)).await
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let n = i as i64 + 1;
        let result = task.await.expect("task panicked");
        if n == refused {
            let err = result.expect_err("the refused state was written");
            assert!(err.to_string().contains(constraint), "{err}");
            assert_eq!(storage.get_state(&key(n)).await.unwrap(), None);
        } else {
            result.unwrap_or_else(|err| panic!("key {n} failed beside the refused row: {err}"));
            assert_eq!(
                storage.get_state(&key(n)).await.unwrap().as_deref(),
                Some("Form:name")
            );
        }
    }
    storage.write_stats().expect("a storage that coalesces")
}
