//! A writer process killed with SIGKILL mid-run loses no acknowledged write, and the file
//! passes `PRAGMA integrity_check`. The test runs itself again as the writer (the child is
//! this same test binary, selected by an environment variable).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use fsmstore_core::{BotId, ChatId, SchemaPolicy, Storage, StorageKey, StorageOptions, UserId};
use fsmstore_sqlite::{SqliteConfig, SqliteStorage};

const CHILD: &str = "FSMSTORE_KILL_WRITER_DIR";
const KEYS: i64 = 40;

fn key(i: i64) -> StorageKey {
    StorageKey::new(BotId(1), ChatId(i % KEYS), UserId(1))
}

async fn open(dir: &std::path::Path) -> SqliteStorage {
    let options = StorageOptions::default().schema(SchemaPolicy::Upgrade);
    SqliteStorage::open(
        SqliteConfig::file(dir.join("fsm.db"))
            .options(options)
            .unwrap(),
    )
    .await
    .unwrap()
}

/// The writer: writes forever, logging each write after it was acknowledged.
#[tokio::test]
async fn writer_child() {
    let Some(dir) = std::env::var_os(CHILD).map(PathBuf::from) else {
        return; // run as an ordinary test: nothing to do
    };
    let storage = open(&dir).await;
    let mut acks = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("acks"))
        .unwrap();
    for i in 0.. {
        let state = format!("S{i}");
        storage.set_state(&key(i), Some(&state)).await.unwrap();
        let patch = fsmstore_core::data!({ "i": i, "pair": [i, i] });
        storage.update_data(&key(i), &patch).await.unwrap();
        writeln!(acks, "{i}").unwrap();
        acks.flush().unwrap();
    }
}

#[tokio::test]
async fn killed_writer_loses_no_acknowledged_write() {
    if std::env::var_os(CHILD).is_some() {
        return; // in the child, only the writer runs
    }
    let dir = std::env::temp_dir().join(format!("fsmstore-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Create the schema first, so the child only writes.
    open(&dir).await.close().await.unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "writer_child", "--nocapture"])
        .env(CHILD, &dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Let it write for a while, then SIGKILL it mid-transaction.
    let acks_path = dir.join("acks");
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let acked = std::fs::read_to_string(&acks_path).unwrap_or_default();
        if acked.lines().count() > 300 {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let acked: Vec<i64> = std::fs::read_to_string(&acks_path)
        .unwrap()
        .lines()
        .filter_map(|line| line.parse().ok())
        .collect();
    assert!(
        acked.len() > 50,
        "the writer acknowledged only {} writes",
        acked.len()
    );
    let last = *acked.last().unwrap();
    eprintln!("writer killed after {} acknowledged writes", acked.len());
    let storage = open(&dir).await;
    // Every key holds its last acknowledged write, or a later one that landed before the
    // kill; a row is never half written.
    for k in 0..KEYS.min(last + 1) {
        let last_acked = acked.iter().copied().filter(|i| i % KEYS == k).max();
        let Some(last_acked) = last_acked else {
            continue;
        };
        let record = storage.get_record(&key(k)).await.unwrap();
        let i = record.data["i"].as_i64().expect("data written");
        assert!(
            i >= last_acked,
            "key {k}: data of write {i}, acknowledged {last_acked}"
        );
        assert_eq!(
            record.data["pair"],
            fsmstore_core::serde_json::json!([i, i])
        );
        let state: i64 = record.state.unwrap()[1..].parse().unwrap();
        assert!(
            state >= last_acked,
            "key {k}: state S{state}, acknowledged {last_acked}"
        );
    }
    storage.close().await.unwrap();
    let conn = rusqlite::Connection::open(dir.join("fsm.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(conn);
    let _ = std::fs::remove_dir_all(&dir);
}
