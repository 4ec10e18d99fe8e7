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
