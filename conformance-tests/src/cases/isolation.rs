//! Per-key event isolation (`Database::isolation()`): a lock around a whole handler.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fsmstore_core::{Database, ErrorKind};
use serde_json::json;

use super::{key, obj};
use crate::Ctx;

/// One read-modify-write of key 1's counter under the lock.
async fn increment(db: &Database) {
    let _guard = db.isolation().lock(&key(1)).await.expect("the lock");
    let storage = db.storage();
    let data = storage.get_data(&key(1)).await.unwrap();
    let n = data.get("n").and_then(|n| n.as_i64()).unwrap_or(0);
    // Give the other handlers every chance to interleave.
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    storage
        .set_data(&key(1), &obj(json!({ "n": n + 1 })))
        .await
        .unwrap();
}

/// Two handles (two pools, as two bot instances) run 24 read-modify-writes of one key
/// under the lock, 12 each, all at once: none is lost.
pub async fn locked_read_modify_write_loses_nothing(ctx: Ctx) {
    let (a, b) = (
        ctx.database(ctx.options()).await,
        ctx.database(ctx.options()).await,
    );
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let db = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { increment(&db).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("a handler");
    }
    let data = a.storage().get_data(&key(1)).await.unwrap();
    assert_eq!(
        data.get("n"),
        Some(&json!(24)),
        "lost updates under the lock"
    );
}

/// Holding one key's lock does not delay another key's.
pub async fn distinct_keys_do_not_wait(ctx: Ctx) {
    let db = ctx
        .database(ctx.options().isolation_timeout(Duration::from_secs(2)))
        .await;
    let isolation = db.isolation();
    let _held = isolation.lock(&key(1)).await.unwrap();
    // Key 1 stays held: had key 2 waited for it, this would time out.
    let other = isolation.lock(&key(2)).await;
    assert!(other.is_ok(), "key 2 waited for key 1: {other:?}");
}

/// A waiter times out with [`ErrorKind::LockTimeout`] (transient) after the isolation
/// timeout, not before.
pub async fn a_lock_wait_times_out(ctx: Ctx) {
    let timeout = Duration::from_millis(300);
    let db = ctx.database(ctx.options().isolation_timeout(timeout)).await;
    let _held = db.isolation().lock(&key(1)).await.unwrap();
    let other = ctx.database(ctx.options().isolation_timeout(timeout)).await;
    let started = Instant::now();
    let err = other.isolation().lock(&key(1)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockTimeout, "{err:?}");
    assert!(err.is_transient());
    // A deadline both ways: not before the timeout, and not long after it (MySQL once
    // rounded a 300 ms wait up to a whole second).
    let waited = started.elapsed();
    assert!(
        waited >= timeout - Duration::from_millis(50) && waited < timeout + DEADLINE_SLACK,
        "gave up after {waited:?}"
    );
}

/// How late past its timeout a lock call may end on a loaded machine (the client's own
/// deadline is 250 ms past the server's).
const DEADLINE_SLACK: Duration = Duration::from_millis(600);

/// `isolation_timeout` 0 asks for a free key without waiting: granted when free, refused
/// at once when held, the same on every backend (the servers once refused even a free
/// key, SQLite granted it).
pub async fn a_zero_timeout_takes_a_free_key_and_refuses_a_held_one(ctx: Ctx) {
    let options = ctx.options().isolation_timeout(Duration::ZERO);
    let (a, b) = (
        ctx.database(options.clone()).await,
        ctx.database(options).await,
    );
    let held = a.isolation().lock(&key(1)).await;
    assert!(held.is_ok(), "a free key: {held:?}");
    let started = Instant::now();
    let err = b.isolation().lock(&key(1)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockTimeout, "{err:?}");
    assert!(
        started.elapsed() < DEADLINE_SLACK,
        "waited {:?}",
        started.elapsed()
    );
    drop(held);
    // Freed: taken again (the server backends release on a task of the runtime).
    let started = Instant::now();
    loop {
        match b.isolation().lock(&key(1)).await {
            Ok(_) => break,
            Err(err) if started.elapsed() < Duration::from_secs(5) => {
                assert_eq!(err.kind(), ErrorKind::LockTimeout, "{err:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => panic!("the freed key stayed locked: {err:?}"),
        }
    }
}

/// With every connection of the lock pool holding a lock, another key's lock ends within
/// the isolation timeout, as `Ok` or `LockTimeout` — never a connection error after the
/// connect timeout (the server backends once waited 4 s for a pooled connection).
pub async fn a_used_up_lock_pool_still_answers_within_the_timeout(ctx: Ctx) {
    let timeout = Duration::from_millis(500);
    let db = ctx
        .database(
            ctx.options()
                .pool_max(2)
                .isolation_timeout(timeout)
                .connect_timeout(Duration::from_secs(10)),
        )
        .await;
    let isolation = db.isolation();
    let _one = isolation.lock(&key(1)).await.unwrap();
    let _two = isolation.lock(&key(2)).await.unwrap();
    let started = Instant::now();
    let third = isolation.lock(&key(3)).await;
    let waited = started.elapsed();
    match third {
        Ok(_) => {}
        Err(err) => assert_eq!(err.kind(), ErrorKind::LockTimeout, "{err:?}"),
    }
    assert!(waited < timeout + DEADLINE_SLACK, "waited {waited:?}");
}

/// The lock pool has a size of its own (`lock_pool_max`): a handle with two connections
/// for calls holds four keys' locks at once (on PostgreSQL and MySQL each held lock holds a
/// connection; with the lock pool as large as `pool_max` the third would time out), and
/// its calls still run meanwhile.
pub async fn the_lock_pool_has_a_size_of_its_own(ctx: Ctx) {
    let db = ctx
        .database(
            ctx.options()
                .pool_max(2)
                .lock_pool_max(4)
                .isolation_timeout(Duration::from_secs(2)),
        )
        .await;
    assert_eq!(db.options().lock_pool_size(), 4);
    let isolation = db.isolation();
    let mut held = Vec::new();
    for k in 1..=4 {
        held.push(isolation.lock(&key(k)).await.unwrap_or_else(|err| {
            panic!("lock {k} of 4 with lock_pool_max=4, pool_max=2: {err:?}")
        }));
    }
    let s = db.storage();
    s.set_state(&key(5), Some("Form:free")).await.unwrap();
    assert_eq!(
        s.get_state(&key(5)).await.unwrap().as_deref(),
        Some("Form:free")
    );
    drop(held);
}

/// A guard dropped by a cancelled task frees the key.
pub async fn a_cancelled_holder_frees_the_key(ctx: Ctx) {
    let db = ctx
        .database(ctx.options().isolation_timeout(Duration::from_secs(10)))
        .await;
    let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
    let holder = {
        let db = db.clone();
        tokio::spawn(async move {
            let _guard = db.isolation().lock(&key(1)).await.unwrap();
            let _ = locked_tx.send(());
            tokio::time::sleep(Duration::from_secs(3600)).await;
        })
    };
    locked_rx.await.expect("the holder locked");
    holder.abort();
    let _ = holder.await;
    let again = tokio::time::timeout(Duration::from_secs(10), db.isolation().lock(&key(1))).await;
    assert!(
        matches!(again, Ok(Ok(_))),
        "the key stayed locked: {again:?}"
    );
}

/// Killing the holder's database session (`pg_terminate_backend`, `KILL`) frees the key:
/// the server releases what a dead session held. Backends whose locks have no session
/// (in-process locks) skip this: their holders are tasks of this process. The PostgreSQL
/// and MariaDB suites kill the session through [`Backend::kill_session`](crate::Backend::kill_session).
pub async fn killing_the_holders_session_frees_the_key(ctx: Ctx) {
    let db = ctx
        .database(ctx.options().isolation_timeout(Duration::from_secs(10)))
        .await;
    let guard = db.isolation().lock(&key(1)).await.unwrap();
    // A backend under test that can not end sessions (in-process locks; or no admin
    // connection, as the `fsmstore conformance` command) stops here; the server
    // backends' own suites can, and then every guard must name its session.
    if !ctx.backend().capabilities().kills_sessions {
        return;
    }
    let session = guard.session().expect("a server lock names its session");
    assert!(
        ctx.backend().kill_session(session).await.unwrap(),
        "the backend could not end session {session}"
    );
    let other = ctx
        .database(ctx.options().isolation_timeout(Duration::from_secs(10)))
        .await;
    let again = other.isolation().lock(&key(1)).await;
    assert!(again.is_ok(), "the dead session's lock stayed: {again:?}");
    drop(guard);
    // The handle still works after its lock connection was killed.
    let _after = Arc::new(db.isolation().lock(&key(2)).await.unwrap());
}

/// A closed handle hands out no locks: `Closed`, as every call after `close()` (SQLite
/// and `MemoryStorage` once kept granting them).
pub async fn no_lock_after_close(ctx: Ctx) {
    let db = ctx.database(ctx.options()).await;
    db.close().await.unwrap();
    let err = db.isolation().lock(&key(1)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed, "{err:?}");
}
