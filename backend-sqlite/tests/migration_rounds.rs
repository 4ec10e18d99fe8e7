//! A migration round that fails on SQLite leaves no transaction open on the storage's
//! writer: later writes through the same storage commit and other connections see them.

use fsmstore_core::{
    BotId, ChatId, Migrator, SchemaPolicy, Storage, StorageKey, StorageOptions, UserId,
};
use fsmstore_sqlite::{SqliteConfig, SqliteStorage};

#[tokio::test]
async fn a_round_that_fails_to_begin_leaves_the_writer_usable() {
    let dir = std::env::temp_dir().join(format!("fsmstore-rounds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rounds.db");
    let _ = std::fs::remove_file(&path);
    let options = StorageOptions::default()
        .version_table("blocked_ver")
        .unwrap()
        .schema(SchemaPolicy::Trust);
    let storage = SqliteStorage::open(SqliteConfig::file(&path).options(options.clone()).unwrap())
        .await
        .unwrap();
    // An index holds the version table's name: creating the version table fails inside the
    // round's transaction.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE other (x INTEGER); CREATE INDEX blocked_ver ON other (x);",
        )
        .unwrap();
    }
    let migrator = storage.migrator().unwrap();
    assert!(migrator.ensure_schema().await.is_err());
    // Repair the name clash and migrate on the same connections: the writer must not be
    // stuck inside the failed round's transaction.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("DROP INDEX blocked_ver;").unwrap();
    }
    migrator.ensure_schema().await.unwrap();
    let key = StorageKey::new(BotId(1), ChatId(2), UserId(3));
    storage.set_state(&key, Some("Form:name")).await.unwrap();
    // Another connection sees the commit.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let state: String = conn
        .query_row(
            "SELECT state FROM aiogram_fsm_data WHERE id = 'fsm:2:3'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(state, "Form:name");
    storage.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
