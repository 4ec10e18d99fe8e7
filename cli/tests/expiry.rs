//! `fsmstore inspect stats` counts expired rows and `fsmstore purge --expired` deletes
//! them, with the TTL from the URL.

use std::process::Command;
use std::time::Duration;

use fsmstore::{BotId, ChatId, StorageKey, UserId};

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
    for n in 1..=3 {
        let key = StorageKey::new(BotId(1), ChatId(n), UserId(n));
        db.storage().set_state(&key, Some("Old")).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let key = StorageKey::new(BotId(1), ChatId(9), UserId(9));
    db.storage().set_state(&key, Some("New")).await.unwrap();
    db.close().await.unwrap();

    let with_ttl = format!("{base}?ttl=1s");
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
