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
    for (n, state) in [
        (1, "Form:name"),
        (2, "Form:name"),
        (3, "Form:age"),
        (9, "Form:age"),
    ] {
        let key = StorageKey::new(BotId(1), ChatId(n), UserId(n));
        db.storage().set_state(&key, Some(state)).await.unwrap();
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
    // Per state, fresh and expired apart (the bot sees fsm:9:9 only).
    let state = |name: &str| {
        stats["per_state"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["state"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {stats}"))
    };
    assert_eq!(state("Form:name")["expired"], 2);
    assert_eq!(state("Form:age")["expired"], 1);
    // The library's figures are the CLI's.
    let db = fsmstore::open(&with_ttl).await.unwrap();
    let library = db.inspect().stats().await.unwrap();
    assert_eq!(library.expired, Some(3));
    assert_eq!(library.fresh_in(Some("Form:age")), 1);
    db.close().await.unwrap();
    // The list marks what the bot no longer sees.
    let listed = fsmstore(&with_ttl, &["--json", "inspect", "list"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("JSON list");
    let flags: Vec<(String, bool)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["id"].as_str().unwrap().to_owned(),
                row["expired"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        flags,
        vec![
            ("fsm:1:1".to_owned(), true),
            ("fsm:2:2".to_owned(), true),
            ("fsm:3:3".to_owned(), true),
            ("fsm:9:9".to_owned(), false)
        ]
    );
    let text =
        String::from_utf8_lossy(&fsmstore(&with_ttl, &["inspect", "list"]).stdout).into_owned();
    assert_eq!(text.matches("(expired)").count(), 3, "{text}");
    // How long each step has waited: 1, 2 or 3 rows two hours old, one fresh.
    let aged = fsmstore(&base, &["--json", "inspect", "stats", "--age", "30m,1d"]);
    let aged: serde_json::Value = serde_json::from_slice(&aged.stdout).expect("JSON ages");
    let ages = |name: &str| -> Vec<u64> {
        aged["per_state"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["state"] == name)
            .unwrap()["ages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|bucket| bucket["rows"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(ages("Form:name"), vec![0, 2, 0], "{aged}");
    assert_eq!(ages("Form:age"), vec![1, 1, 0], "{aged}");
    let text = fsmstore(&with_ttl, &["inspect", "stats", "--age", "30m,1d"]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains("<30m")
            && text.contains("30m-1d")
            && text.contains(">=1d")
            && text.contains("fresh")
            && text.contains('█'),
        "{text}"
    );
    let refused = fsmstore(&base, &["inspect", "stats", "--age", "1d,1h"]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");

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
