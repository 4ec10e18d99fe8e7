//! `fsmstore copy` moves a table with a TTL from SQLite to PostgreSQL and MariaDB and back:
//! state, data and write time carried (so a dialogue expires when it would have), rows past
//! the TTL left behind, `--verify` clean; run again it changes nothing, a row the bot wrote
//! at the destination since is kept unless `--replace`, and a copy killed midway finishes
//! when run again. A server that is not there lists its test as ignored with the reason (a
//! failure under `CI`), never as passed.

use std::process::{Command, ExitCode, Output, Stdio};
use std::time::{Duration, Instant};

use fsmstore::inspect::{now_ms, PutRow, StoredRow};
use fsmstore::serde_json::{json, Value};
use fsmstore::{data, BotId, ChatId, Database, StorageKey, UserId};
use fsmstore_conformance::{block_on, Suite};

mod common;

const DAY_MS: i64 = 86_400_000;

fn pg_url(table: &str) -> String {
    with_table(&common::pg_url(), table)
}

fn mysql_url(table: &str) -> String {
    with_table(&common::mysql_url(), table)
}

/// `base` on `table` (and its own version table), rows expiring after 30 days.
fn with_table(base: &str, table: &str) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}table={table}&version_table={table}_v&ttl=30d")
}

fn sqlite_url(name: &str) -> String {
    let path = std::env::temp_dir().join(format!("fsmstore-copy-{}-{name}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    format!("sqlite://{}?ttl=30d", path.display())
}

fn main() -> ExitCode {
    // Under CI a missing server fails the tests.
    let postgres = common::postgres_needs();
    let mariadb = common::mariadb_needs();
    let mut suite = Suite::new().one_at_a_time();
    suite.test("sqlite_to_postgres_and_back", &postgres, || {
        block_on(to_a_server_and_back("postgres", pg_url))
    });
    suite.test("sqlite_to_mariadb_and_back", &mariadb, || {
        block_on(to_a_server_and_back("mariadb", mysql_url))
    });
    suite.test("a_killed_copy_finishes_when_run_again", &postgres, || {
        block_on(a_killed_copy_finishes_when_run_again())
    });
    suite.run()
}

fn fsmstore(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fsmstore"))
        .args(args)
        .output()
        .expect("run fsmstore")
}

/// `fsmstore --json copy --from … --to … args…`: its exit code and report.
fn copy(from: &str, to: &str, args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["--json", "copy", "--from", from, "--to", to];
    all.extend_from_slice(args);
    let out = fsmstore(&all);
    let report = fsmstore::serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!(
            "copy {args:?}: {err}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), report)
}

/// The copy counts of a report: new, replaced, kept, unchanged, expired.
fn counts(report: &Value) -> [u64; 5] {
    ["new", "replaced", "kept", "unchanged", "expired"].map(|name| {
        report["copy"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("{report}"))
    })
}

fn key(n: i64) -> StorageKey {
    StorageKey::new(BotId(0), ChatId(n), UserId(n))
}

/// A SQLite table a bot used for a while: 40 dialogues written now, 10 written 10 days ago
/// (20 days left), 5 written 40 days ago (expired: the bot reads them as absent).
async fn source(url: &str) -> Database {
    let db = fsmstore::open(&format!("{url}&schema=upgrade"))
        .await
        .unwrap();
    let storage = db.storage();
    for n in 1..=40 {
        storage
            .transition(
                &key(n),
                Some("Form:age"),
                &data!({"name": format!("user {n}"), "n": n}),
            )
            .await
            .unwrap();
    }
    let inspect = db.inspect();
    for (first, age, state) in [
        (41, 10 * DAY_MS, "Form:city"),
        (51, 40 * DAY_MS, "Form:old"),
    ] {
        let count = if state == "Form:old" { 5 } else { 10 };
        for n in first..first + count {
            let row = StoredRow {
                id: db.storage().options().row_id(&key(n)).unwrap(),
                state: Some(state.to_owned()),
                data: data!({"n": n, "nested": {"list": [1, 2.5, "é"]}}),
                updated_at_ms: Some(now_ms() - age),
                corrupt: None,
            };
            inspect.put_row(&row, PutRow::IfAbsent).await.unwrap();
        }
    }
    assert_eq!(storage.key_count().await.unwrap(), 50, "fresh rows");
    db
}

async fn drop_tables(url: &str) {
    let db = fsmstore::open(url).await.unwrap();
    db.migrator().unwrap().drop_tables().await.unwrap();
    db.close().await.unwrap();
}

async fn to_a_server_and_back(name: &str, server: fn(&str) -> String) {
    let from = sqlite_url(&format!("{name}-from"));
    let to = server(&format!("copy_{name}_{}", std::process::id()));
    let back = sqlite_url(&format!("{name}-back"));
    let db = source(&from).await;
    let aged_id = db.storage().options().row_id(&key(45)).unwrap();
    let aged = db.inspect().get_row(&aged_id).await.unwrap().unwrap();

    // The move: 50 dialogues, the 5 expired ones left behind, both sides the same.
    let (code, report) = copy(&from, &to, &["--verify", "--batch", "7"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(counts(&report), [50, 0, 0, 0, 5], "{report}");
    assert_eq!(report["verify"]["clean"], json!(true), "{report}");
    assert_eq!(report["verify"]["same"], json!(50), "{report}");
    // The write time came along: the row expires at the server when it would have here.
    let there = fsmstore::open(&to).await.unwrap();
    let row = there.inspect().get_row(&aged_id).await.unwrap().unwrap();
    assert_eq!(row.updated_at_ms, aged.updated_at_ms);
    assert_eq!(
        (row.state, row.data),
        (aged.state.clone(), aged.data.clone())
    );
    let stats = there.inspect().stats().await.unwrap();
    assert_eq!((stats.rows, stats.expired), (50, Some(0)));
    // The source is only read.
    assert_eq!(db.inspect().stats().await.unwrap().rows, 55);

    // Again: nothing to write.
    let (code, report) = copy(&from, &to, &[]);
    assert_eq!(
        (code, counts(&report)),
        (Some(0), [0, 0, 0, 50, 5]),
        "{report}"
    );

    // The bot moved a user on at the server since: a copy keeps that step, and --verify
    // says the sides differ where they do.
    there
        .storage()
        .set_state(&key(3), Some("Form:done"))
        .await
        .unwrap();
    let (code, report) = copy(&from, &to, &["--verify"]);
    assert_eq!(code, Some(1), "verify fails: {report}");
    assert_eq!(counts(&report), [0, 0, 1, 49, 5], "{report}");
    assert_eq!(
        report["verify"]["differing"],
        json!({"count": 1, "first_ids": ["fsm:3:3"]}),
        "{report}"
    );
    assert_eq!(
        there.storage().get_state(&key(3)).await.unwrap().as_deref(),
        Some("Form:done")
    );
    // A dry run with --verify only compares.
    let (code, report) = copy(&from, &to, &["--verify", "--dry-run"]);
    assert_eq!((code, &report["copy"]), (Some(1), &Value::Null), "{report}");
    // --replace takes the source's row.
    let (code, report) = copy(&from, &to, &["--replace", "--verify"]);
    assert_eq!(
        (code, counts(&report)),
        (Some(0), [0, 1, 0, 49, 5]),
        "{report}"
    );

    // And back, into a new SQLite file: the same 50 with the same write times.
    let (code, report) = copy(&to, &back, &["--verify"]);
    assert_eq!(
        (code, counts(&report)),
        (Some(0), [50, 0, 0, 0, 0]),
        "{report}"
    );
    let home = fsmstore::open(&back).await.unwrap();
    let row = home.inspect().get_row(&aged_id).await.unwrap().unwrap();
    assert_eq!(row.updated_at_ms, aged.updated_at_ms);
    home.close().await.unwrap();

    there.close().await.unwrap();
    db.close().await.unwrap();
    drop_tables(&to).await;
}

/// A copy killed between batches leaves whole rows behind; run again it writes the rest
/// and skips what is there.
async fn a_killed_copy_finishes_when_run_again() {
    const ROWS: i64 = 20_000;
    let from = sqlite_url("killed");
    let to = pg_url(&format!("copy_killed_{}", std::process::id()));
    let db = fsmstore::open(&format!("{from}&schema=upgrade"))
        .await
        .unwrap();
    let inspect = db.inspect();
    let at = now_ms() - DAY_MS;
    for n in 0..ROWS {
        let row = StoredRow {
            id: format!("fsm:{n}:{n}"),
            state: Some("Form:name".to_owned()),
            data: data!({"n": n}),
            updated_at_ms: Some(at + n),
            corrupt: None,
        };
        inspect.put_row(&row, PutRow::IfAbsent).await.unwrap();
    }
    // Created first, so the count below can watch it fill.
    let there = fsmstore::open(&format!("{to}&schema=upgrade"))
        .await
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fsmstore"))
        .args(["copy", "--from", &from, "--to", &to, "--batch", "50"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let written = loop {
        let n = there.storage().key_count().await.unwrap();
        if n > 0 || started.elapsed() > Duration::from_secs(60) {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let left = there.storage().key_count().await.unwrap();
    assert!(
        written > 0 && left < ROWS as u64,
        "killed midway: {written} then {left} of {ROWS}"
    );
    let (code, report) = copy(&from, &to, &["--verify"]);
    assert_eq!(code, Some(0), "{report}");
    let [new, replaced, kept, unchanged, _] = counts(&report);
    assert_eq!(
        (new + unchanged, replaced, kept),
        (ROWS as u64, 0, 0),
        "{report}"
    );
    assert!(
        unchanged >= left,
        "what the first run wrote is skipped: {report}"
    );
    assert_eq!(report["verify"]["same"], json!(ROWS), "{report}");
    there.close().await.unwrap();
    db.close().await.unwrap();
    drop_tables(&to).await;
}
