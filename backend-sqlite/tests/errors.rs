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
