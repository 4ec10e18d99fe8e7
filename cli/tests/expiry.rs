//! `fsmstore inspect stats` counts expired rows and `fsmstore purge --expired` deletes
//! them, with the TTL from the URL.

use fsmstore::{BotId, ChatId, StorageKey, UserId};
use std::process::Command;

fn fsmstore(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fsmstore"))
        .args(["--url", url])
        .args(args)
        .output()
        .expect("run fsmstore")
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_count_and_purge_deletes_expired_rows() {
    let path = std::env::temp_dir().join(format!("fsmstore-expiry-cli-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let base = format!("sqlite://{}", path.display());
    let db = fsmstore::open(&format!("{base}?schema=upgrade"))
        .await
        .unwrap();
    for n in [1, 2, 3, 9] {
        let key = StorageKey::new(BotId(1), ChatId(n), UserId(n));
        db.storage().set_state(&key, Some("S")).await.unwrap();
    }
    db.close().await.unwrap();
    // Three rows written two hours ago (no waiting: the clock of the test is the file's).
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE aiogram_fsm_data SET updated_at = updated_at - 7200000 WHERE id <> 'fsm:9:9'",
        [],
    )
    .unwrap();
    drop(conn);

    let with_ttl = format!("{base}?ttl=1h");
    let stats = fsmstore(&with_ttl, &["--json", "inspect", "stats"]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).expect("JSON stats");
    assert_eq!(
        (stats["rows"].as_u64(), stats["expired"].as_u64()),
        (Some(4), Some(3)),
        "{stats}"
    );

    let dry = fsmstore(&with_ttl, &["purge", "--expired", "--dry-run"]);
    assert!(
        String::from_utf8_lossy(&dry.stdout).contains("3 rows"),
        "{dry:?}"
    );
    let purged = fsmstore(&with_ttl, &["purge", "--expired"]);
    assert!(purged.status.success(), "{purged:?}");
    assert!(
        String::from_utf8_lossy(&purged.stdout).contains("deleted 3 rows"),
        "{purged:?}"
    );

    let stats = fsmstore(&with_ttl, &["--json", "inspect", "stats"]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).expect("JSON stats");
    assert_eq!(
        (stats["rows"].as_u64(), stats["expired"].as_u64()),
        (Some(1), Some(0))
    );

    // Without a TTL there is nothing to call expired: a clear error, exit 1.
    let refused = fsmstore(&base, &["purge", "--expired"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("ttl"),
        "{refused:?}"
    );
    let _ = std::fs::remove_file(&path);
}
