//! What is stored in Redis, key by key: aiogram's `RedisStorage` layout byte for byte (as a
//! Python bot writes and reads it), fsmstore's own layout, expiry on the keys, and locks on
//! aiogram's `RedisEventIsolation` key. Each test uses a key prefix of its own on database
//! 7 of `FSMSTORE_TEST_REDIS_URL` and deletes only its keys.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fsmstore_core::{
    BotId, ChatId, Data, DefaultKeyBuilder, Layout, Storage, StorageKey, StorageOptions, UserId,
};
use fsmstore_redis::redis::{self, aio::MultiplexedConnection};
use fsmstore_redis::{RedisConfig, RedisStorage};
use serde_json::{json, Value};

const URL_VARIABLE: &str = "FSMSTORE_TEST_REDIS_URL";

fn url() -> String {
    std::env::var(URL_VARIABLE).unwrap_or_else(|_| "redis://127.0.0.1:6379/7".into())
}

/// A key prefix no other test uses.
fn unique_prefix(test: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "fsmt_{test}_{:x}_{}",
        nanos as u32,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A raw connection, or `None` with the reason recorded (a failure under `CI`).
async fn raw() -> Option<MultiplexedConnection> {
    let client = redis::Client::open(url().as_str()).expect("a Redis URL");
    match tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    {
        Ok(Ok(conn)) => Some(conn),
        Ok(Err(err)) => fsmstore_conformance::unreachable("Redis", URL_VARIABLE, &err),
        Err(err) => fsmstore_conformance::unreachable("Redis", URL_VARIABLE, &err),
    }
}

/// A storage whose key builder writes `<prefix>:<chat>:<user>`, as aiogram's
/// `DefaultKeyBuilder(prefix=…)`.
async fn storage(prefix: &str, layout: Layout, query: &str) -> RedisStorage {
    let options = StorageOptions::default()
        .layout(layout)
        .key_builder(DefaultKeyBuilder::default().with_prefix(prefix));
    let config = RedisConfig::from_url(&format!("{}{query}", url()))
        .unwrap()
        .options(options)
        .unwrap();
    RedisStorage::open(config).await.unwrap()
}

/// Deletes every key under `prefix`.
async fn cleanup(conn: &mut MultiplexedConnection, prefix: &str) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL")
            .arg(&keys)
            .query_async(conn)
            .await
            .unwrap();
    }
}

async fn get(conn: &mut MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query_async(conn).await.unwrap()
}

fn data(value: Value) -> Data {
    match value {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

fn key() -> StorageKey {
    StorageKey::new(BotId(42), ChatId(-100), UserId(7))
}

/// What a Python bot on aiogram's `RedisStorage` wrote (stdlib `json.dumps`: ASCII
/// escapes, `", "` and `": "` separators, a number past `u64`), merged by fsmstore: the
/// fields the patch does not name keep their text byte for byte, numbers included.
async fn aiogram_keys_are_read_and_merged_as_python_wrote_them() {
    let mut conn = raw().await.expect("Redis was there when the suite started");
    let prefix = unique_prefix("aio");
    let (state_key, data_key) = (
        format!("{prefix}:-100:7:state"),
        format!("{prefix}:-100:7:data"),
    );
    let python = r#"{"name": "\u0416\u0435\u043d\u044f", "big": 123456789012345678901234567890, "f": 0.1, "nested": {"a": [1, 2.50]}}"#;
    let _: () = redis::cmd("SET")
        .arg(&state_key)
        .arg("Form:name")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(&data_key)
        .arg(python)
        .query_async(&mut conn)
        .await
        .unwrap();
    let s = storage(&prefix, Layout::AiogramSqlalchemy, "?layout=aiogram").await;
    assert_eq!(
        s.get_state(&key()).await.unwrap().as_deref(),
        Some("Form:name")
    );
    let merged = s
        .update_data(&key(), &data(json!({"step": 2, "f": 0.25})))
        .await
        .unwrap();
    assert_eq!(merged["name"], json!("Женя"));
    assert_eq!(merged["step"], json!(2));
    let stored = get(&mut conn, &data_key).await.unwrap();
    assert!(
        stored.contains(r#""name":"\u0416\u0435\u043d\u044f""#),
        "{stored}"
    );
    assert!(
        stored.contains(r#""big":123456789012345678901234567890"#),
        "{stored}"
    );
    assert!(stored.contains(r#""nested":{"a": [1, 2.50]}"#), "{stored}");
    assert!(
        stored.contains(r#""f":0.25"#) && !stored.contains("0.1"),
        "{stored}"
    );
    // Python's json.loads reads what fsmstore wrote: it is JSON.
    serde_json::from_str::<&serde_json::value::RawValue>(&stored).expect("JSON text");
    cleanup(&mut conn, &prefix).await;
}

/// fsmstore writes what aiogram's `RedisStorage` reads: the state as plain text, the data
/// as JSON text, and an emptied part deleted (aiogram's `DEL`), so a dialogue holding
/// nothing leaves no key.
async fn aiogram_keys_written_by_fsmstore_are_what_aiogram_reads() {
    let mut conn = raw().await.expect("Redis was there when the suite started");
    let prefix = unique_prefix("aiow");
    let s = storage(&prefix, Layout::AiogramSqlalchemy, "?layout=aiogram").await;
    s.transition(&key(), Some("Form:age"), &data(json!({"age": 30})))
        .await
        .unwrap();
    let state_key = format!("{prefix}:-100:7:state");
    let data_key = format!("{prefix}:-100:7:data");
    assert_eq!(
        get(&mut conn, &state_key).await.as_deref(),
        Some("Form:age")
    );
    let text = get(&mut conn, &data_key).await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"age": 30})
    );
    s.set_data(&key(), &Data::new()).await.unwrap();
    assert_eq!(get(&mut conn, &data_key).await, None);
    s.set_state(&key(), None).await.unwrap();
    assert_eq!(get(&mut conn, &state_key).await, None);
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    cleanup(&mut conn, &prefix).await;
}

/// Stored data that is not a JSON object is corrupt, and a merge into it writes nothing.
async fn a_merge_into_corrupt_aiogram_data_writes_nothing() {
    let mut conn = raw().await.expect("Redis was there when the suite started");
    let prefix = unique_prefix("aioc");
    let data_key = format!("{prefix}:-100:7:data");
    let s = storage(&prefix, Layout::AiogramSqlalchemy, "?layout=aiogram").await;
    for bad in [
        r#"{"a": tru}"#,
        "[1, 2]",
        r#"{"a": 1"#,
        r#"{"a": NaN}"#,
        "{\"a\": 01}",
    ] {
        let _: () = redis::cmd("SET")
            .arg(&data_key)
            .arg(bad)
            .query_async(&mut conn)
            .await
            .unwrap();
        let err = s
            .transition(&key(), Some("S"), &data(json!({"b": 1})))
            .await
            .unwrap_err();
        assert_eq!(
            err.kind(),
            fsmstore_core::ErrorKind::CorruptData,
            "{bad}: {err}"
        );
        assert_eq!(get(&mut conn, &data_key).await.as_deref(), Some(bad));
        assert_eq!(
            get(&mut conn, &format!("{prefix}:-100:7:state")).await,
            None,
            "{bad}"
        );
    }
    cleanup(&mut conn, &prefix).await;
}

/// One TTL per dialogue: every write resets it on both keys. aiogram's own `state_ttl` and
/// `data_ttl` set only the TTL of the key written, as aiogram does.
async fn expiry_is_set_on_the_keys_written() {
    let mut conn = raw().await.expect("Redis was there when the suite started");
    let prefix = unique_prefix("ttl");
    let pttl = |conn: &mut MultiplexedConnection, key: String| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("PTTL")
                .arg(key)
                .query_async::<i64>(&mut conn)
                .await
                .unwrap()
        }
    };
    let (state_key, data_key) = (
        format!("{prefix}:-100:7:state"),
        format!("{prefix}:-100:7:data"),
    );
    let one = storage(&prefix, Layout::AiogramSqlalchemy, "?layout=aiogram&ttl=1h").await;
    one.set_data(&key(), &data(json!({"a": 1}))).await.unwrap();
    one.set_state(&key(), Some("S")).await.unwrap();
    for key in [&state_key, &data_key] {
        let ms = pttl(&mut conn, key.clone()).await;
        assert!((3_590_000..=3_600_000).contains(&ms), "{key}: {ms}");
    }
    cleanup(&mut conn, &prefix).await;
    let split = storage(
        &prefix,
        Layout::AiogramSqlalchemy,
        "?layout=aiogram&state_ttl=10m&data_ttl=2h",
    )
    .await;
    split
        .set_data(&key(), &data(json!({"a": 1})))
        .await
        .unwrap();
    split.set_state(&key(), Some("S")).await.unwrap();
    let state_ms = pttl(&mut conn, state_key.clone()).await;
    let data_ms = pttl(&mut conn, data_key.clone()).await;
    assert!((590_000..=600_000).contains(&state_ms), "{state_ms}");
    assert!((7_190_000..=7_200_000).contains(&data_ms), "{data_ms}");
    cleanup(&mut conn, &prefix).await;
    // fsmstore's layout: one hash, its TTL set by each write.
    let own = storage(&prefix, Layout::Fsmstore, "?ttl=30s").await;
    own.update_data(&key(), &data(json!({"a": 1})))
        .await
        .unwrap();
    let ms = pttl(&mut conn, format!("fsmstore:{prefix}:-100:7")).await;
    assert!((29_000..=30_000).contains(&ms), "{ms}");
    let _: i64 = redis::cmd("DEL")
        .arg(format!("fsmstore:{prefix}:-100:7"))
        .query_async(&mut conn)
        .await
        .unwrap();
    cleanup(&mut conn, &prefix).await;
}

/// fsmstore's layout: one hash per dialogue holding the state and each field's JSON text;
/// a dialogue holding nothing is no key.
async fn own_layout_is_one_hash_that_goes_when_empty() {
    let mut conn = raw().await.expect("Redis was there when the suite started");
    let prefix = unique_prefix("own");
    let s = storage(&prefix, Layout::Fsmstore, "").await;
    let hash_key = format!("fsmstore:{prefix}:-100:7");
    s.transition(
        &key(),
        Some("Form:name"),
        &data(json!({"n": u64::MAX, "s": "x"})),
    )
    .await
    .unwrap();
    let hash: std::collections::BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(&hash_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(hash.get("s").map(String::as_str), Some("Form:name"));
    assert_eq!(
        hash.get(".n").map(String::as_str),
        Some("18446744073709551615")
    );
    assert_eq!(hash.get(".s").map(String::as_str), Some("\"x\""));
    s.transition(&key(), None, &Data::new()).await.unwrap();
    s.set_data(&key(), &Data::new()).await.unwrap();
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&hash_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0);
}

/// A held lock is aiogram's `RedisEventIsolation` lock: `<id>:lock` holding a 32-digit
/// token with a lease, which a Python handler's `SET NX` can not take; it goes when the
/// guard drops, and before `release().await` returns.
async fn a_held_lock_is_the_key_aiogram_locks() {
    let mut conn = raw().await.expect("Redis was there when the suite started");
    let prefix = unique_prefix("lock");
    let s = storage(&prefix, Layout::AiogramSqlalchemy, "?layout=aiogram").await;
    let db = s.database().unwrap();
    let lock_key = format!("{prefix}:-100:7:lock");
    let guard = db.isolation().lock(&key()).await.unwrap();
    let token = get(&mut conn, &lock_key).await.expect("the lock key");
    assert_eq!(token.len(), 32);
    let python: Option<String> = redis::cmd("SET")
        .arg(&lock_key)
        .arg("python-token")
        .arg("NX")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(python, None, "a Python handler must not get the lock");
    drop(guard);
    for _ in 0..50 {
        if get(&mut conn, &lock_key).await.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(&mut conn, &lock_key).await, None, "released");
    // Awaited, the release is done when it returns (a process about to exit).
    let guard = db.isolation().lock(&key()).await.unwrap();
    assert!(get(&mut conn, &lock_key).await.is_some());
    guard.release().await;
    assert_eq!(
        get(&mut conn, &lock_key).await,
        None,
        "released when awaited"
    );
    // Held by a Python handler: fsmstore waits, then times out naming the key.
    let _: () = redis::cmd("SET")
        .arg(&lock_key)
        .arg("python-token")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let options = StorageOptions::default()
        .layout(Layout::AiogramSqlalchemy)
        .key_builder(DefaultKeyBuilder::default().with_prefix(&prefix))
        .isolation_timeout(Duration::from_millis(300));
    let config = RedisConfig::from_url(&format!("{}?layout=aiogram", url()))
        .unwrap()
        .options(options)
        .unwrap();
    let waiting = RedisStorage::open(config)
        .await
        .unwrap()
        .database()
        .unwrap();
    let err = waiting.isolation().lock(&key()).await.unwrap_err();
    assert_eq!(err.kind(), fsmstore_core::ErrorKind::LockTimeout, "{err}");
    assert_eq!(
        get(&mut conn, &lock_key).await.as_deref(),
        Some("python-token")
    );
    cleanup(&mut conn, &prefix).await;
}

/// `drop_table` deletes every key of the table's prefix (both layouts) and nothing else;
/// without a table it refuses, since the prefix would be keys others share.
async fn drop_table_deletes_only_its_prefix() {
    let mut conn = raw().await.expect("Redis was there when the suite started");
    let table = unique_prefix("drop");
    let other = format!("{table}_other");
    let _: () = redis::cmd("SET")
        .arg(&other)
        .arg("keep")
        .query_async(&mut conn)
        .await
        .unwrap();
    let own = RedisStorage::connect(&format!("{}?table={table}", url()))
        .await
        .unwrap();
    let aiogram = RedisStorage::connect(&format!("{}?table={table}&layout=aiogram", url()))
        .await
        .unwrap();
    own.set_state(&key(), Some("S")).await.unwrap();
    aiogram.set_state(&key(), Some("S")).await.unwrap();
    aiogram
        .set_data(&key(), &data(json!({"a": 1})))
        .await
        .unwrap();
    assert_eq!(own.drop_table().await.unwrap(), 3);
    assert_eq!(own.key_count().await.unwrap(), 0);
    assert_eq!(aiogram.key_count().await.unwrap(), 0);
    assert_eq!(get(&mut conn, &other).await.as_deref(), Some("keep"));
    let _: i64 = redis::cmd("DEL")
        .arg(&other)
        .query_async(&mut conn)
        .await
        .unwrap();
    let untabled = RedisStorage::connect(&url()).await.unwrap();
    let err = untabled.drop_table().await.unwrap_err();
    assert_eq!(err.kind(), fsmstore_core::ErrorKind::InvalidInput, "{err}");
}

/// Settings Redis has no use for are refused, named; the password never shows.
/// (`schema=verify` checks the recorded layout and `trust` nothing; `upgrade` has no
/// schema to create.)
fn settings_redis_would_ignore_are_refused() {
    for url in [
        "redis://127.0.0.1/0?schema=verify",
        "redis://127.0.0.1/0?schema=trust",
    ] {
        assert!(RedisConfig::from_url(url).is_ok(), "{url}");
    }
    for url in [
        "redis://127.0.0.1/0?version_table=v",
        "redis://127.0.0.1/0?schema=upgrade",
        "redis://127.0.0.1/0?state_ttl=1h",
        "redis://127.0.0.1/0?layout=aiogram&ttl=1h&data_ttl=1h",
        "redis://127.0.0.1/0?nope=1",
    ] {
        assert!(RedisConfig::from_url(url).is_err(), "{url}");
    }
    let err = RedisConfig::from_url("redis://:hunter2@127.0.0.1/0?bogus=1").unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let config = RedisConfig::from_url("redis://:hunter2@127.0.0.1/0").unwrap();
    assert!(!format!("{config:?} {config}").contains("hunter2"));
}

/// The data of dialogue `i` of the migration tests: numbers at the edges, unicode.
fn migration_data(i: u64) -> Value {
    json!({"i": i, "big": u64::MAX, "neg": i64::MIN, "f": f64::MAX, "tiny": 5e-324, "name": "Женя 😀"})
}

/// `migrate up` moves a keyspace written in aiogram's layout (raw, as Python writes it)
/// into fsmstore's, resumes after a run killed half-way, keeps TTLs and values by value,
/// and `migrate down` moves it back; a dialogue in both layouts is left as it is.
async fn layout_migration_moves_every_dialogue_and_back() {
    use fsmstore_core::{ErrorKind, MigrationTarget};
    const N: u64 = 20_000;
    let mut conn = raw().await.expect("checked by the suite");
    let prefix = unique_prefix("migrate");
    let aiogram = storage(&prefix, Layout::AiogramSqlalchemy, "?layout=aiogram").await;
    let own = storage(&prefix, Layout::Fsmstore, "").await;
    let key = |i: u64| StorageKey::new(BotId(1), ChatId(i as i64), UserId(7));
    // What Python's RedisStorage writes: one in three has only a state, one in three only
    // data, the rest both.
    let mut pipe = redis::pipe();
    for i in 0..N {
        let id = format!("{prefix}:{i}:7");
        if i % 3 != 1 {
            pipe.set(format!("{id}:state"), format!("Form:s{i}"))
                .ignore();
        }
        if i % 3 != 0 {
            pipe.set(format!("{id}:data"), migration_data(i).to_string())
                .ignore();
        }
    }
    pipe.pexpire(format!("{prefix}:2:7:state"), 100_000)
        .ignore();
    pipe.pexpire(format!("{prefix}:2:7:data"), 50_000).ignore();
    pipe.query_async::<()>(&mut conn).await.unwrap();
    // A key of another program that ends like aiogram's is never touched.
    let _: () = redis::cmd("SET")
        .arg(format!("other_{prefix}:state"))
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();

    let db = aiogram.database().unwrap();
    let migrator = db.migrator().unwrap();
    assert_eq!(migrator.current().await.unwrap(), 0);
    // Killed half-way: the record is dirty, some dialogues moved, none half.
    let running = {
        let migrator = std::sync::Arc::clone(&migrator);
        tokio::spawn(async move { migrator.migrate(MigrationTarget::Head).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.abort();
    assert!(
        running.await.unwrap_err().is_cancelled(),
        "the move was still running"
    );
    let err = migrator.current().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Schema, "{err}");
    let moved = own_count(&mut conn, &prefix).await;
    assert!(moved > 0 && moved < N, "{moved} moved before the kill");
    // Run again (the cancelled run released its lock; a killed process' lease lapses
    // after 60 s): it finishes the move.
    let report = migrator.migrate(MigrationTarget::Head).await.unwrap();
    assert_eq!((report.from, report.to), (1, 1));
    assert_eq!(migrator.current().await.unwrap(), 1);
    assert_eq!(own_count(&mut conn, &prefix).await, N);
    for i in [0, 1, 2, 3, N - 1] {
        assert_eq!(aiogram.get_record(&key(i)).await.unwrap().state, None);
        let record = own.get_record(&key(i)).await.unwrap();
        assert_eq!(
            record.state,
            (i % 3 != 1).then(|| format!("Form:s{i}")),
            "{i}"
        );
        let data = if i % 3 != 0 {
            migration_data(i).as_object().unwrap().clone()
        } else {
            Data::new()
        };
        assert_eq!(record.data, data, "{i}: values by value");
    }
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("fsmstore:{prefix}:2:7"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        (50_000..=100_000).contains(&ttl),
        "the longer TTL kept: {ttl}"
    );
    let other: Option<String> = redis::cmd("GET")
        .arg(format!("other_{prefix}:state"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(other.as_deref(), Some("x"));
    let history = migrator.history().await.unwrap();
    assert!(history[0].applied.as_ref().is_some_and(|row| row.success));

    // A dialogue in both layouts is refused, both copies kept.
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}:0:7:state"))
        .arg("Old")
        .query_async(&mut conn)
        .await
        .unwrap();
    let err = migrator.migrate(MigrationTarget::Base).await.unwrap_err();
    assert!(err.to_string().contains("both layouts"), "{err}");
    assert_eq!(
        own.get_state(&key(0)).await.unwrap().as_deref(),
        Some("Form:s0")
    );
    assert_eq!(
        aiogram.get_state(&key(0)).await.unwrap().as_deref(),
        Some("Old")
    );
    assert!(aiogram.clear(&key(0)).await.unwrap());

    // Down: every dialogue back in aiogram's keys, the TTL with it.
    migrator.migrate(MigrationTarget::Base).await.unwrap();
    assert_eq!(migrator.current().await.unwrap(), 0);
    assert_eq!(own_count(&mut conn, &prefix).await, 0);
    for i in [0, 1, 2, N - 1] {
        let record = aiogram.get_record(&key(i)).await.unwrap();
        assert_eq!(
            record.state,
            (i % 3 != 1).then(|| format!("Form:s{i}")),
            "{i}"
        );
        if i % 3 != 0 {
            assert_eq!(record.data, migration_data(i).as_object().unwrap().clone());
        }
    }
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}:2:7:state"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 100_000, "{ttl}");

    delete_pattern(&mut conn, &format!("{prefix}:*")).await;
    delete_pattern(&mut conn, &format!("fsmstore:{prefix}:*")).await;
    delete_pattern(&mut conn, &format!("other_{prefix}:*")).await;
    let _: () = redis::cmd("DEL")
        .arg(format!("fsmstore-migrations:fsmstore:{prefix}:"))
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// How many dialogues of `prefix` are in fsmstore's layout.
async fn own_count(conn: &mut MultiplexedConnection, prefix: &str) -> u64 {
    let mut n = 0;
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("fsmstore:{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .unwrap();
        n += keys.len() as u64;
        if next == 0 {
            return n;
        }
        cursor = next;
    }
}

/// Deletes the keys matching `pattern` (this test's own).
async fn delete_pattern(conn: &mut MultiplexedConnection, pattern: &str) {
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(&keys)
                .query_async(conn)
                .await
                .unwrap();
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// Each call's future is boxed and copied whole; the Redis storage hands each call to its
/// layout's boxed future, so its own futures are a few pointers (40 to 64 bytes). This
/// holds that outer layer only.
async fn call_futures_stay_small() {
    let storage = storage("footprint", Layout::Fsmstore, "").await;
    fsmstore_conformance::footprint::assert_call_futures_at_most(&storage, 256);
}

fn main() -> std::process::ExitCode {
    use fsmstore_conformance::{block_on, Needs, Suite};
    let redis = Needs::probe("Redis unreachable", || block_on(raw()).map(drop));
    let mut suite = Suite::new();
    suite.test(
        "aiogram_keys_are_read_and_merged_as_python_wrote_them",
        &redis,
        || block_on(aiogram_keys_are_read_and_merged_as_python_wrote_them()),
    );
    suite.test(
        "aiogram_keys_written_by_fsmstore_are_what_aiogram_reads",
        &redis,
        || block_on(aiogram_keys_written_by_fsmstore_are_what_aiogram_reads()),
    );
    suite.test(
        "a_merge_into_corrupt_aiogram_data_writes_nothing",
        &redis,
        || block_on(a_merge_into_corrupt_aiogram_data_writes_nothing()),
    );
    suite.test("call_futures_stay_small", &redis, || {
        block_on(call_futures_stay_small())
    });
    suite.test("expiry_is_set_on_the_keys_written", &redis, || {
        block_on(expiry_is_set_on_the_keys_written())
    });
    suite.test(
        "own_layout_is_one_hash_that_goes_when_empty",
        &redis,
        || block_on(own_layout_is_one_hash_that_goes_when_empty()),
    );
    suite.test("a_held_lock_is_the_key_aiogram_locks", &redis, || {
        block_on(a_held_lock_is_the_key_aiogram_locks())
    });
    suite.test("drop_table_deletes_only_its_prefix", &redis, || {
        block_on(drop_table_deletes_only_its_prefix())
    });
    suite.test(
        "layout_migration_moves_every_dialogue_and_back",
        &redis,
        || block_on(layout_migration_moves_every_dialogue_and_back()),
    );
    suite.test(
        "settings_redis_would_ignore_are_refused",
        &Needs::Met,
        settings_redis_would_ignore_are_refused,
    );
    suite.run()
}
