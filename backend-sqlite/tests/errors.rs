//! Files SQLite can not use are permanent errors that say what is wrong: retrying the same
//! call can not fix them.

use fsmstore_core::{ErrorKind, SchemaPolicy, StorageOptions};
use fsmstore_sqlite::{SqliteConfig, SqliteStorage};

async fn open_error(config: SqliteConfig) -> fsmstore_core::Error {
    let options = StorageOptions::default().schema(SchemaPolicy::Upgrade);
    SqliteStorage::open(config.options(options).unwrap())
        .await
        .unwrap_err()
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_permanent() {
    let path = std::env::temp_dir().join(format!("fsmstore-not-a-db-{}", std::process::id()));
    std::fs::write(&path, "root:x:0:0:root:/root:/bin/bash\n".repeat(200)).unwrap();
    let err = open_error(SqliteConfig::file(&path)).await;
    assert!(!err.is_transient(), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Database);
    assert!(err.to_string().contains("not a SQLite database"), "{err}");
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn a_path_in_a_missing_folder_is_permanent() {
    let path = std::env::temp_dir()
        .join(format!("fsmstore-no-such-folder-{}", std::process::id()))
        .join("bot.db");
    let err = open_error(SqliteConfig::file(&path)).await;
    assert!(!err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("its folder, exist"), "{err}");
}

fn temp_file(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("fsmstore-{name}-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

/// A file opened with `mode=ro` refuses writes permanently, says why, and keeps the
/// driver's error as the source.
#[tokio::test]
async fn a_read_only_file_refuses_writes_and_says_why() {
    use fsmstore_core::{BotId, ChatId, Storage, StorageKey, UserId};
    let path = temp_file("ro");
    let options = StorageOptions::default().schema(SchemaPolicy::Upgrade);
    let storage = SqliteStorage::open(SqliteConfig::file(&path).options(options).unwrap())
        .await
        .unwrap();
    storage.close().await.unwrap();
    let config = SqliteConfig::from_url(&format!("sqlite://{}?mode=ro", path.display())).unwrap();
    let storage = SqliteStorage::open(config).await.unwrap();
    let key = StorageKey::new(BotId(1), ChatId(2), UserId(3));
    assert_eq!(storage.get_state(&key).await.unwrap(), None, "reads work");
    let err = storage.set_state(&key, Some("S")).await.unwrap_err();
    assert!(!err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("read-only here"), "{err}");
    let mut source = std::error::Error::source(&err);
    let mut depth = 0;
    while let Some(inner) = source {
        depth += 1;
        source = inner.source();
    }
    assert!(
        depth >= 2,
        "fsmstore error → file error → driver error: {depth}"
    );
    storage.close().await.unwrap();
}

/// Files run in WAL mode (readers never block the writer), as docs/architecture.md says.
#[tokio::test]
async fn files_are_switched_to_wal() {
    let path = temp_file("wal");
    let options = StorageOptions::default().schema(SchemaPolicy::Upgrade);
    let storage = SqliteStorage::open(SqliteConfig::file(&path).options(options).unwrap())
        .await
        .unwrap();
    let conn = fsmstore_sqlite::rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(conn);
    fsmstore_core::Storage::close(&storage).await.unwrap();
}

/// SQLite's table names ignore ASCII case, so `Fsm` and `fsm` are one table and share one
/// lock registry: a handler of a key on one waits for the other's (they once did not).
#[tokio::test(flavor = "multi_thread")]
async fn tables_differing_in_case_share_their_key_locks() {
    let dir = std::env::temp_dir().join(format!("fsmstore-case-locks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("fsm.db").display());
    // The second opens with `trust`: the version table records table names as written.
    let open = |table: &'static str, schema: &'static str| {
        let url = url.clone();
        async move {
            fsmstore_sqlite::SqliteStorage::open(
                fsmstore_sqlite::SqliteConfig::from_url(&format!(
                    "{url}?table={table}&schema={schema}&isolation_timeout_ms=200"
                ))
                .unwrap(),
            )
            .await
            .unwrap()
            .database()
            .unwrap()
        }
    };
    let (upper, lower) = (open("Fsm", "upgrade").await, open("fsm", "trust").await);
    let key = fsmstore_core::StorageKey::new(
        fsmstore_core::BotId(1),
        fsmstore_core::ChatId(2),
        fsmstore_core::UserId(3),
    );
    let _held = upper.isolation().lock(&key).await.unwrap();
    let err = lower.isolation().lock(&key).await.unwrap_err();
    assert_eq!(err.kind(), fsmstore_core::ErrorKind::LockTimeout, "{err:?}");
    drop(_held);
    assert!(lower.isolation().lock(&key).await.is_ok());
    std::fs::remove_dir_all(&dir).ok();
}

/// A point read runs on the calling thread only when nothing makes it wait: on a database
/// another connection holds locked, it waits out the busy timeout on the blocking pool,
/// and the runtime's one thread keeps serving other tasks meanwhile.
#[test]
fn a_locked_database_never_stalls_the_runtime() {
    use fsmstore_core::Storage;
    use std::time::{Duration, Instant};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let path = temp_file("locked-read");
        let key = fsmstore_core::StorageKey::new(
            fsmstore_core::BotId(1),
            fsmstore_core::ChatId(2),
            fsmstore_core::UserId(3),
        );
        let open = |mode: &str| {
            let config = SqliteConfig::from_url(&format!(
                "sqlite://{}?busy_timeout_ms=800&mode={mode}",
                path.display()
            ))
            .unwrap();
            let options = StorageOptions::default()
                .schema(SchemaPolicy::Upgrade)
                .retry(fsmstore_core::RetryPolicy::none());
            SqliteStorage::open(config.options(options).unwrap())
        };
        let writer = open("rwc").await.unwrap();
        writer.set_state(&key, Some("A")).await.unwrap();
        writer.close().await.unwrap();
        // A rollback journal (WAL readers never wait for a writer): a reader waits for
        // an exclusive lock there. Opened read-only, fsmstore leaves the journal as it is.
        rusqlite::Connection::open(&path)
            .unwrap()
            .pragma_update(None, "journal_mode", "DELETE")
            .unwrap();
        let storage = open("ro").await.unwrap();
        // Read on this thread: no lock in the way.
        assert_eq!(storage.get_state(&key).await.unwrap().as_deref(), Some("A"));

        // Another connection takes the file for itself.
        let holder = rusqlite::Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN EXCLUSIVE;").unwrap();
        let ticking = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let ticker = tokio::spawn({
            let ticking = std::sync::Arc::clone(&ticking);
            async move {
                let (mut last, mut longest) = (Instant::now(), Duration::ZERO);
                while ticking.load(std::sync::atomic::Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    longest = longest.max(last.elapsed());
                    last = Instant::now();
                }
                longest
            }
        });
        // The ticker runs before the read starts (a stall of the read's first attempt
        // falls between two of its ticks).
        tokio::time::sleep(Duration::from_millis(30)).await;
        let started = Instant::now();
        let read = storage.get_state(&key).await;
        let waited = started.elapsed();
        ticking.store(false, std::sync::atomic::Ordering::Relaxed);
        let longest_gap = ticker.await.unwrap();
        let err = read.expect_err("the file is locked");
        assert!(err.is_transient(), "{err:?}");
        assert!(waited >= Duration::from_millis(500), "it waited {waited:?}");
        assert!(
            longest_gap < Duration::from_millis(300),
            "the runtime stalled for {longest_gap:?} while the read waited {waited:?}"
        );
        holder.execute_batch("COMMIT;").unwrap();
        drop(holder);
        assert_eq!(storage.get_state(&key).await.unwrap().as_deref(), Some("A"));
        storage.close().await.unwrap();
    });
}

/// Coalesced writes: 48 writers at once, one of them writing a state a trigger refuses.
/// In a batch each write has a savepoint of its own: only the refused call fails, with
/// SQLite's message, and every other write of its batch commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_write_in_a_batch_fails_only_its_own_call() {
    use std::sync::Arc;

    use fsmstore_core::Storage;

    let path = temp_file("refused-batch");
    let options = StorageOptions::default().schema(SchemaPolicy::Upgrade);
    let storage = Arc::new(
        SqliteStorage::open(SqliteConfig::file(&path).options(options).unwrap())
            .await
            .unwrap(),
    );
    {
        let conn = fsmstore_sqlite::rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "CREATE TRIGGER no_refused BEFORE INSERT ON {t} WHEN NEW.state = 'Form:refused' \
             BEGIN SELECT RAISE(ABORT, 'no_refused'); END; \
             CREATE TRIGGER no_refused_update BEFORE UPDATE ON {t} WHEN NEW.state = 'Form:refused' \
             BEGIN SELECT RAISE(ABORT, 'no_refused'); END;",
            t = storage.options().table
        ))
        .unwrap();
    }
    let stats = fsmstore_conformance::cases::coalesce::writers_beside_a_refused_state(
        Arc::clone(&storage) as Arc<dyn Storage>,
        "no_refused",
    )
    .await;
    assert!(stats.batched_writes > 0, "no batch formed: {stats:?}");
    storage.close().await.unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// Each call's future is boxed and copied whole: a write's per-call path is made only when
/// it runs (not passed to the coalescer as a future, where it sat twice).
#[tokio::test]
async fn call_futures_stay_small() {
    let options = StorageOptions::default().schema(SchemaPolicy::Upgrade);
    let storage = SqliteStorage::open(SqliteConfig::memory().options(options).unwrap())
        .await
        .unwrap();
    // 536 (reads) to 864 bytes (writes; 1 680 before the coalescer took a closure).
    fsmstore_conformance::footprint::assert_call_futures_at_most(&storage, 1024);
}
