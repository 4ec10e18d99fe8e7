//! `fsmstore teloxide-import` on rows that teloxide's `Json` serializer wrote into
//! teloxide's own `teloxide_dialogues` table (its exact DDL), on SQLite, PostgreSQL and
//! MariaDB: every dialogue reads back through `TeloxideStorage` unchanged, the source table
//! is untouched, and rows that are not JSON are reported, not imported; and from the keys
//! teloxide's own `RedisStorage` wrote. A server that is not there lists its test as ignored
//! with the reason (a failure under `CI`), never as passed.

use std::process::{Command, ExitCode, Output};
use std::sync::Arc;

use fsmstore::mysql::sqlx;
use fsmstore::redis::redis::{self, aio::MultiplexedConnection};
use fsmstore::{SchemaPolicy, StorageOptions};
use fsmstore_conformance::{block_on, Needs, Suite};

mod common;

use common::{mysql_connect, mysql_url, pg_connect, pg_url};
use fsmstore_teloxide::{lock_chat, TeloxideStorage};
use teloxide::dispatching::dialogue::serializer::{Json, Serializer};
use teloxide::dispatching::dialogue::Storage;
use teloxide::types::ChatId;

/// The states of the example bot (teloxide's dialogue example).
#[allow(dead_code)]
#[path = "../../examples/dialogue_bot/mod.rs"]
mod dialogue_bot;

use dialogue_bot::State;

fn main() -> ExitCode {
    let postgres = common::postgres_needs();
    let mariadb = common::mariadb_needs();
    let redis = Needs::probe("Redis is unreachable", || {
        block_on(async {
            match redis_connect(&redis_source()).await {
                Ok(_) => Some(()),
                Err(err) => {
                    fsmstore_conformance::unreachable("Redis", "FSMSTORE_TEST_REDIS_URL", &err)
                }
            }
        })
    });
    let mut suite = Suite::new();
    suite.test("teloxide_rows_import_on_sqlite", &Needs::Met, || {
        block_on(teloxide_rows_import_on_sqlite())
    });
    suite.test("teloxide_rows_import_on_postgres", &postgres, || {
        block_on(teloxide_rows_import_on_postgres())
    });
    suite.test("teloxide_rows_import_on_mariadb", &mariadb, || {
        block_on(teloxide_rows_import_on_mariadb())
    });
    suite.test(
        "text_and_null_dialogues_do_not_abort_the_import",
        &Needs::Met,
        || block_on(text_and_null_dialogues_do_not_abort_the_import()),
    );
    suite.test("teloxide_redis_keys_import_on_redis", &redis, || {
        block_on(teloxide_redis_keys_import_on_redis())
    });
    suite.run()
}

/// The Redis database of the Redis test: [`TELOXIDE_REDIS_DB`] of
/// `FSMSTORE_TEST_REDIS_URL`.
fn redis_source() -> String {
    let base = std::env::var("FSMSTORE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let base = base.trim_end_matches('/').to_owned();
    format!("{base}/{TELOXIDE_REDIS_DB}")
}

/// A connection to the Redis of `url`, given five seconds.
async fn redis_connect(url: &str) -> Result<MultiplexedConnection, String> {
    let client = redis::Client::open(url).unwrap();
    match tokio::time::timeout(
        std::time::Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(err)) => Err(err.to_string()),
        Err(err) => Err(err.to_string()),
    }
}

fn dialogues() -> Vec<(i64, State)> {
    vec![
        (1, State::Start),
        (-1001, State::ReceiveFullName),
        (
            42,
            State::ReceiveAge {
                full_name: "Ann Lee".into(),
            },
        ),
        (
            7,
            State::ReceiveLocation {
                full_name: "Bo \u{1F600}".into(),
                age: 41,
            },
        ),
    ]
}

/// A dialogue the storage refuses (NUL in a value), which teloxide stored.
fn refused() -> State {
    State::ReceiveAge {
        full_name: "nul\u{0}inside".into(),
    }
}

/// What teloxide stores: `Json.serialize(&dialogue)`.
fn blob(state: &State) -> Vec<u8> {
    <Json as Serializer<State>>::serialize(&Json, state).unwrap()
}

fn fsmstore(url: &str, table: &str, args: &[&str]) -> Output {
    run(
        &[
            "--url",
            url,
            "--table",
            table,
            "--version-table",
            &format!("{table}_v"),
        ],
        args,
    )
}

fn run(global: &[&str], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fsmstore"))
        .args(global)
        .args(args)
        .output()
        .expect("run fsmstore")
}

/// The `--json` report of an import.
fn report(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!(
            "not JSON ({err}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Every dialogue of [`dialogues`] reads back through `storage` as it was written.
async fn every_dialogue_reads_back(storage: &Arc<TeloxideStorage>, url: &str) {
    for (chat, state) in dialogues() {
        let got: Option<State> = Arc::clone(storage)
            .get_dialogue(ChatId(chat))
            .await
            .unwrap();
        assert_eq!(got, Some(state), "{url}: chat {chat}");
    }
}

/// An import run again after the bot went live keeps what the FSM table holds (one chat
/// moved on, one finished: neither goes back); `--replace` overwrites. `again` runs the
/// import with extra arguments and `--json`.
async fn second_runs_keep_live_dialogues(
    storage: &Arc<TeloxideStorage>,
    again: impl Fn(&[&str]) -> Output,
) {
    let moved_on = State::ReceiveLocation {
        full_name: "Ann Lee".into(),
        age: 30,
    };
    Arc::clone(storage)
        .update_dialogue(ChatId(42), moved_on.clone())
        .await
        .unwrap();
    // (new, replaced, kept) of a report.
    let counts = |report: serde_json::Value| {
        let n = |name: &str| report[name].as_u64();
        (n("new"), n("replaced"), n("kept"))
    };
    let dry = counts(report(&again(&["--dry-run"])));
    assert_eq!(dry, (Some(0), Some(0), Some(4)), "dry run");
    let kept = counts(report(&again(&[])));
    assert_eq!(kept, (Some(0), Some(0), Some(4)), "second run");
    let now: Option<State> = Arc::clone(storage).get_dialogue(ChatId(42)).await.unwrap();
    assert_eq!(now, Some(moved_on), "a second import put a live chat back");
    let replaced = counts(report(&again(&["--replace"])));
    assert_eq!(replaced, (Some(0), Some(4), Some(0)), "--replace");
    let now: Option<State> = Arc::clone(storage).get_dialogue(ChatId(42)).await.unwrap();
    assert_eq!(
        now,
        Some(State::ReceiveAge {
            full_name: "Ann Lee".into()
        }),
        "--replace writes the source's dialogue"
    );
}

/// Migrates the FSM table, imports, and checks every dialogue through the adapter.
async fn import_and_check(url: &str, table: &str) {
    let up = fsmstore(url, table, &["migrate", "up"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let dry = fsmstore(
        url,
        table,
        &[
            "teloxide-import",
            "--from",
            &format!("{table}_src"),
            "--dry-run",
        ],
    );
    assert_eq!(dry.status.code(), Some(1), "a non-JSON row fails the run");
    let out = fsmstore(
        url,
        table,
        &["teloxide-import", "--from", &format!("{table}_src")],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stdout.contains("imported 4 dialogues") && stdout.contains("4 new, 0 replaced; 0 kept"),
        "{stdout}{stderr}"
    );
    assert!(
        stderr.contains("skipped 1 row that is not JSON") && stderr.contains("[99]"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(1));

    let options = StorageOptions::default()
        .table(table)
        .unwrap()
        .version_table(&format!("{table}_v"))
        .unwrap()
        .schema(SchemaPolicy::Verify);
    let db = fsmstore::open_with(url, options).await.unwrap();
    let storage = Arc::new(TeloxideStorage::from(&db));
    every_dialogue_reads_back(&storage, url).await;
    let row = db.inspect().get_row("fsm:42:42").await.unwrap().unwrap();
    assert_eq!(row.state.as_deref(), Some("ReceiveAge"));
    assert_eq!(db.inspect().stats().await.unwrap().rows, 4);
    let src = format!("{table}_src");
    second_runs_keep_live_dialogues(&storage, |more| {
        let mut args = vec!["--json", "teloxide-import", "--from", &src];
        args.extend_from_slice(more);
        fsmstore(url, table, &args)
    })
    .await;
    db.migrator().unwrap().drop_tables().await.unwrap();
    db.close().await.unwrap();
}

async fn teloxide_rows_import_on_sqlite() {
    let path = std::env::temp_dir().join(format!("fsmstore-tgimport-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let conn = rusqlite::Connection::open(&path).unwrap();
    // teloxide's SqliteStorage DDL, under a table name of this test.
    conn.execute_batch(
        "CREATE TABLE tgi_src (chat_id BIGINT PRIMARY KEY, dialogue BLOB NOT NULL);",
    )
    .unwrap();
    for (chat, state) in dialogues() {
        conn.execute(
            "INSERT INTO tgi_src VALUES (?1, ?2)",
            rusqlite::params![chat, blob(&state)],
        )
        .unwrap();
    }
    conn.execute("INSERT INTO tgi_src VALUES (99, x'00ff')", [])
        .unwrap();
    conn.execute("INSERT INTO tgi_src VALUES (98, ?1)", [blob(&refused())])
        .unwrap();
    drop(conn);
    import_and_check(&format!("sqlite://{}", path.display()), "tgi").await;
    let conn = rusqlite::Connection::open(&path).unwrap();
    let left: i64 = conn
        .query_row("SELECT COUNT(*) FROM tgi_src", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 6, "the source table is only read");
    drop(conn);
    std::fs::remove_file(&path).unwrap();
}

async fn teloxide_rows_import_on_postgres() {
    let url = pg_url();
    let client = pg_connect(&url)
        .await
        .unwrap_or_else(|err| panic!("PostgreSQL answered the probe, not now: {err}"));
    let table = format!("tgi_{}", std::process::id());
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {table}_src; \
             CREATE TABLE {table}_src (chat_id BIGINT PRIMARY KEY, dialogue BYTEA NOT NULL)"
        ))
        .await
        .unwrap();
    for (chat, state) in dialogues() {
        client
            .execute(
                &format!("INSERT INTO {table}_src VALUES ($1, $2)"),
                &[&chat, &blob(&state)],
            )
            .await
            .unwrap();
    }
    client
        .execute(
            &format!("INSERT INTO {table}_src VALUES (99, '\\x00ff')"),
            &[],
        )
        .await
        .unwrap();
    client
        .execute(
            &format!("INSERT INTO {table}_src VALUES (98, $1)"),
            &[&blob(&refused())],
        )
        .await
        .unwrap();
    import_and_check(&url, &table).await;
    let left: i64 = client
        .query_one(&format!("SELECT COUNT(*) FROM {table}_src"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 6, "the source table is only read");
    client
        .batch_execute(&format!("DROP TABLE {table}_src"))
        .await
        .unwrap();
}

async fn teloxide_rows_import_on_mariadb() {
    let url = mysql_url();
    let mut conn = mysql_connect(&url)
        .await
        .unwrap_or_else(|err| panic!("MariaDB answered the probe, not now: {err}"));
    let table = format!("tgi_{}", std::process::id());
    for statement in [
        format!("DROP TABLE IF EXISTS {table}_src"),
        // teloxide has no MySQL storage: its PostgreSQL DDL with MySQL's BLOB.
        format!("CREATE TABLE {table}_src (chat_id BIGINT PRIMARY KEY, dialogue BLOB NOT NULL)"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let insert = format!("INSERT INTO {table}_src VALUES (?, ?)");
    for (chat, state) in dialogues() {
        sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
            .bind(chat)
            .bind(blob(&state))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    for (chat, bytes) in [(99_i64, vec![0_u8, 0xff]), (98, blob(&refused()))] {
        sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
            .bind(chat)
            .bind(bytes)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    import_and_check(&url, &table).await;
    let (left,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {table}_src"
    )))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(left, 6, "the source table is only read");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE {table}_src")))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// A dialogue stored as TEXT (a SQLite column holds any type) is imported like a BLOB; a
/// NULL one is listed and skipped. Either once aborted the whole import.
async fn text_and_null_dialogues_do_not_abort_the_import() {
    let path = std::env::temp_dir().join(format!("fsmstore-tgtext-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE tgt_src (chat_id BIGINT PRIMARY KEY, dialogue BLOB);
         INSERT INTO tgt_src VALUES (3, NULL);",
    )
    .unwrap();
    conn.execute(
        "INSERT INTO tgt_src VALUES (1, ?1)",
        [blob(&State::ReceiveFullName)],
    )
    .unwrap();
    let text = String::from_utf8(blob(&State::ReceiveAge {
        full_name: "Text Row".into(),
    }))
    .unwrap();
    conn.execute("INSERT INTO tgt_src VALUES (2, ?1)", [text])
        .unwrap();
    drop(conn);
    let url = format!("sqlite://{}", path.display());
    assert!(fsmstore(&url, "tgt", &["migrate", "up"]).status.success());
    let out = fsmstore(&url, "tgt", &["teloxide-import", "--from", "tgt_src"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("imported 2 dialogues"), "{stdout}{stderr}");
    assert!(stderr.contains("[3]"), "{stderr}");
    let options = StorageOptions::default()
        .table("tgt")
        .unwrap()
        .version_table("tgt_v")
        .unwrap();
    let db = fsmstore::open_with(&url, options).await.unwrap();
    let storage = Arc::new(TeloxideStorage::from(&db));
    let got: Option<State> = Arc::clone(&storage).get_dialogue(ChatId(2)).await.unwrap();
    assert_eq!(
        got,
        Some(State::ReceiveAge {
            full_name: "Text Row".into()
        })
    );
    db.close().await.unwrap();
    std::fs::remove_file(&path).unwrap();
}

/// The Redis database of this test alone: teloxide's `RedisStorage` keys are bare chat ids,
/// so the import reads every chat-id key of its database.
const TELOXIDE_REDIS_DB: u8 = 12;

/// teloxide's own `RedisStorage` (teloxide's code, its `Json` serializer) writes the
/// dialogues; `fsmstore teloxide-import --source <that URL>` moves them into fsmstore's
/// layout on the same server, and each reads back through `TeloxideStorage` unchanged. Keys
/// that are not teloxide's (not a chat id in decimal, or not a string) are neither read nor
/// changed; a second run keeps what the bot changed since.
async fn teloxide_redis_keys_import_on_redis() {
    use fsmstore::redis::redis::AsyncCommands;
    let source = redis_source();
    let mut conn = redis_connect(&source)
        .await
        .unwrap_or_else(|err| panic!("Redis answered the probe, not now: {err}"));
    // Chat-id keys left by an earlier run of this test (this database is its own).
    let stale: Vec<String> = redis::cmd("KEYS")
        .arg("[-0-9]*")
        .query_async(&mut conn)
        .await
        .unwrap();
    for key in stale.iter().filter(|key| key.parse::<i64>().is_ok()) {
        let () = conn.del(key).await.unwrap();
    }

    // teloxide's own storage writes what a teloxide bot on Redis holds.
    let teloxide_storage = teloxide::dispatching::dialogue::RedisStorage::open(&source, Json)
        .await
        .unwrap();
    for (chat, state) in dialogues() {
        Arc::clone(&teloxide_storage)
            .update_dialogue(ChatId(chat), state)
            .await
            .unwrap();
    }
    Arc::clone(&teloxide_storage)
        .update_dialogue(ChatId(98), refused())
        .await
        .unwrap();
    let () = conn.set("99", [0_u8, 0xff].as_slice()).await.unwrap();
    // Not teloxide's: a zero-padded id, a hash named like a chat, another app's key.
    let pid = std::process::id();
    let others = [format!("0{pid}"), format!("tgi-other-{pid}")];
    for other in &others {
        let () = conn.set(other, "{\"Start\":null}").await.unwrap();
    }
    let hash = format!("{pid}");
    let () = conn.hset(&hash, "f", "v").await.unwrap();

    let table = format!("tgi{pid}");
    let url = format!("{source}?table={table}");
    let import = |more: &[&str]| {
        let mut args = vec!["teloxide-import", "--source", &source];
        args.extend_from_slice(more);
        run(&["--url", &url], &args)
    };
    let out = import(&[]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("imported 4 dialogues from teloxide's Redis keys")
            && stdout.contains("4 new"),
        "{stdout}{stderr}"
    );
    assert!(stderr.contains("skipped chat 98"), "{stderr}");
    assert!(stderr.contains("[99]"), "{stderr}");
    let refused_table = run(
        &["--url", &url],
        &["teloxide-import", "--source", &source, "--from", "x"],
    );
    assert_eq!(refused_table.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused_table.stderr).contains("has no table"),
        "{}",
        String::from_utf8_lossy(&refused_table.stderr)
    );

    let db = fsmstore::open(&url).await.unwrap();
    let storage = Arc::new(TeloxideStorage::from(&db));
    every_dialogue_reads_back(&storage, &url).await;
    assert_eq!(db.storage().key_count().await.unwrap(), 4);
    second_runs_keep_live_dialogues(&storage, |more| {
        let mut args = vec!["teloxide-import", "--source", &source];
        args.extend_from_slice(more);
        run(&["--url", &url, "--json"], &args)
    })
    .await;

    // The source is only read: teloxide still reads each of its dialogues.
    for (chat, state) in dialogues() {
        let got: Option<State> = Arc::clone(&teloxide_storage)
            .get_dialogue(ChatId(chat))
            .await
            .unwrap();
        assert_eq!(got, Some(state), "teloxide's chat {chat}");
    }
    for other in &others {
        let value: String = conn.get(other).await.unwrap();
        assert_eq!(value, "{\"Start\":null}");
    }
    let field: String = conn.hget(&hash, "f").await.unwrap();
    assert_eq!(field, "v");

    fsmstore::redis::RedisStorage::connect(&url)
        .await
        .unwrap()
        .drop_table()
        .await
        .unwrap();
    db.close().await.unwrap();
    let mut written: Vec<String> = dialogues()
        .iter()
        .map(|(chat, _)| chat.to_string())
        .collect();
    written.extend(["98".to_owned(), "99".to_owned(), hash]);
    written.extend(others);
    let () = conn.del(written).await.unwrap();
}
