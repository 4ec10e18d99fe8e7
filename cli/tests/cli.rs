//! The `fsmstore` binary, driven as a user would, on SQLite and (when reachable) on the
//! local PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fsmstore::serde_json::{self, json, Value};
use fsmstore::{BotId, ChatId, StorageKey, UserId};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fsmstore-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("fsm.db").display())
}

fn fsmstore(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fsmstore"))
        .args(args)
        .args(["--url", url])
        .env_remove("DATABASE_URL")
        .output()
        .expect("run fsmstore")
}

fn ok(url: &str, args: &[&str]) -> String {
    let out = fsmstore(url, args);
    assert!(
        out.status.success(),
        "fsmstore {args:?} failed ({:?}): {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn ok_json(url: &str, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    serde_json::from_str(&ok(url, &args)).unwrap()
}

/// The applied version (`migrate current` exits 3 below head, 0 at head).
fn current(url: &str) -> i64 {
    let out = fsmstore(url, &["migrate", "current", "--json"]);
    assert!(matches!(out.status.code(), Some(0 | 3)), "{out:?}");
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    status["current"].as_i64().unwrap()
}

#[test]
fn migrate_up_down_stamp_and_history() {
    let dir = temp_dir("migrate");
    let url = sqlite_url(&dir);
    // No database yet: reading the version says so and creates nothing.
    assert_eq!(
        fsmstore(&url, &["migrate", "current"]).status.code(),
        Some(1)
    );
    assert!(!dir.join("fsm.db").exists());
    let up = ok_json(&url, &["migrate", "up", "--to", "+1"]);
    assert_eq!((up["from"].as_i64(), up["to"].as_i64()), (Some(0), Some(1)));
    ok(&url, &["migrate", "up"]);
    assert_eq!(current(&url), 4);
    let text = ok(&url, &["migrate", "up"]);
    assert!(text.contains("already at version 4"), "{text}");

    ok(&url, &["migrate", "down"]);
    ok(&url, &["migrate", "down"]);
    assert_eq!(current(&url), 2);
    let history = ok_json(&url, &["migrate", "history"]);
    let states: Vec<_> = history["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(states, ["applied", "applied", "pending", "pending"]);
    assert!(history["migrations"][0]["checksum_ok"].as_bool().unwrap());
    let text = ok(&url, &["migrate", "history"]);
    assert!(
        text.contains("seed layout") && text.contains("pending"),
        "{text}"
    );

    ok(&url, &["migrate", "stamp", "4"]);
    assert_eq!(current(&url), 4, "stamp records without running");
    ok(&url, &["migrate", "stamp", "2"]);
    ok(&url, &["migrate", "up"]);
    ok(&url, &["migrate", "down", "--to", "base"]);
    assert_eq!(current(&url), 0);
}

/// The offline script, run by hand on an empty database, leaves exactly what `migrate up`
/// leaves: the same schema and a version table fsmstore accepts.
#[test]
fn offline_sql_equals_what_up_executes() {
    let online = temp_dir("online");
    let offline = temp_dir("offline");
    ok(&sqlite_url(&online), &["migrate", "up"]);
    let script = ok(
        "sqlite://unused.db",
        &["migrate", "sql", "--dialect", "sqlite"],
    );
    assert!(
        script.contains("INSERT INTO \"fsmstore_migrations\""),
        "{script}"
    );
    let db = rusqlite::Connection::open(offline.join("fsm.db")).unwrap();
    db.execute_batch(&script).unwrap();
    drop(db);
    let schema = |dir: &Path| -> Vec<(String, String)> {
        let db = rusqlite::Connection::open(dir.join("fsm.db")).unwrap();
        let mut s = db
            .prepare("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(schema(&online), schema(&offline));
    let history = ok_json(&sqlite_url(&offline), &["migrate", "history"]);
    for m in history["migrations"].as_array().unwrap() {
        assert_eq!(m["state"], "applied", "{m}");
    }
    // A range: 3 -> 1 on PostgreSQL.
    let down = ok(
        "sqlite://unused.db",
        &[
            "migrate",
            "sql",
            "--dialect",
            "postgres",
            "--from",
            "3",
            "--to",
            "1",
        ],
    );
    assert!(
        down.contains("-- 3 down") && down.contains("-- 2 down") && !down.contains("-- 1 down"),
        "{down}"
    );
}

#[test]
fn export_writes_files_each_tool_accepts() {
    let dir = temp_dir("export");
    let sqlx = dir.join("sqlx");
    ok(
        "sqlite://unused.db",
        &[
            "migrate",
            "export",
            "--format",
            "sqlx",
            "--dialect",
            "postgres",
            "--dir",
            sqlx.to_str().unwrap(),
            "--version-offset",
            "20260000000000",
        ],
    );
    let mut names: Vec<String> = std::fs::read_dir(&sqlx)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 8, "{names:?}");
    for name in &names {
        // sqlx: <VERSION>_<DESCRIPTION>.(up|down).sql, VERSION an i64.
        let (version, rest) = name.split_once('_').unwrap();
        assert!(
            version.parse::<i64>().is_ok()
                && (rest.ends_with(".up.sql") || rest.ends_with(".down.sql")),
            "{name}"
        );
    }
    assert!(
        names[0].starts_with("20260000000001_fsmstore_seed_layout"),
        "{names:?}"
    );
    let up = std::fs::read_to_string(
        sqlx.join(
            names
                .iter()
                .find(|n| n.starts_with("20260000000002") && n.ends_with(".up.sql"))
                .unwrap(),
        ),
    )
    .unwrap();
    assert!(up.contains("JSONB"), "{up}");

    let refinery = dir.join("refinery");
    ok(
        "sqlite://unused.db",
        &[
            "migrate",
            "export",
            "--format",
            "refinery",
            "--dialect",
            "mysql",
            "--dir",
            refinery.to_str().unwrap(),
        ],
    );
    let names: Vec<String> = std::fs::read_dir(&refinery)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 4);
    for name in names {
        // refinery: [V|U]<version>__<name>.sql, name made of word characters.
        let body = name
            .strip_prefix('V')
            .and_then(|n| n.strip_suffix(".sql"))
            .unwrap();
        let (version, label) = body.split_once("__").unwrap();
        assert!(version.parse::<u32>().is_ok(), "{name}");
        assert!(
            label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{name}"
        );
    }
}

/// A table made by aiogram-sqlalchemy-storage, rows in exactly its shape, adopted with
/// `stamp 1` + `up`: every key found, states and data intact.
#[test]
fn adopting_a_python_table_keeps_every_row() {
    let dir = temp_dir("adopt");
    let db = rusqlite::Connection::open(dir.join("fsm.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE aiogram_fsm_data (id VARCHAR(255) NOT NULL, state VARCHAR, data VARCHAR, PRIMARY KEY (id));
         INSERT INTO aiogram_fsm_data VALUES ('fsm:-100:7', 'Form:name', '{\"name\": \"Ren\\u00e9\", \"tags\": [\"a\", \"b\"]}');
         INSERT INTO aiogram_fsm_data VALUES ('fsm:5:5', 'Form:age', '');
         INSERT INTO aiogram_fsm_data VALUES ('fsm:6:6', 'Form:city', NULL);
         INSERT INTO aiogram_fsm_data VALUES ('fsm:8:8', NULL, '{\"only\": \"data\", \"n\": {\"x\": null}}');
         INSERT INTO aiogram_fsm_data VALUES ('fsm:-100:9:7', 'Thread:state', '{}');",
    )
    .unwrap();
    drop(db);
    let url = sqlite_url(&dir);
    // Opening before adoption names the fix: the table is there, so not "migrate up"
    // (which refuses, below) but the stamp, or the compatible layout.
    let out = fsmstore(&url, &["inspect", "stats"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("migrate stamp 1") && stderr.contains("layout=aiogram-sqlalchemy"),
        "{stderr}"
    );
    // `up` on the unrecorded table refuses, naming the stamp (migration 1 would try to
    // create the table), and changes nothing.
    let out = fsmstore(&url, &["migrate", "up"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("migrate stamp 1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(current(&url), 0);
    // In the compatible layout the table is read as it is, before any adoption.
    let compatible = format!("{url}?layout=aiogram-sqlalchemy");
    let row = ok_json(&compatible, &["inspect", "get", "fsm:-100:7"]);
    assert_eq!(row["data"], json!({"name": "René", "tags": ["a", "b"]}));
    ok(&url, &["migrate", "stamp", "1"]);
    // Leaving version 1 says what it breaks for Python bots, and where the SQL is.
    let out = fsmstore(&url, &["migrate", "up"]);
    assert!(out.status.success());
    let warning = String::from_utf8_lossy(&out.stderr);
    assert!(
        warning.contains("leaves the aiogram-sqlalchemy layout")
            && warning.contains("migrate sql --dialect sqlite --from 1"),
        "{warning}"
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let storage = fsmstore::connect(&url).await.unwrap();
        let one = storage
            .get_record(&StorageKey::new(BotId(0), ChatId(-100), UserId(7)))
            .await
            .unwrap();
        assert_eq!(one.state.as_deref(), Some("Form:name"));
        assert_eq!(
            Value::Object(one.data),
            json!({"name": "René", "tags": ["a", "b"]})
        );
        assert_eq!(
            storage
                .get_state(&StorageKey::new(BotId(0), ChatId(5), UserId(5)))
                .await
                .unwrap()
                .as_deref(),
            Some("Form:age")
        );
        assert!(storage
            .get_data(&StorageKey::new(BotId(0), ChatId(5), UserId(5)))
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            storage
                .get_state(&StorageKey::new(BotId(0), ChatId(6), UserId(6)))
                .await
                .unwrap()
                .as_deref(),
            Some("Form:city")
        );
        let only = storage
            .get_data(&StorageKey::new(BotId(0), ChatId(8), UserId(8)))
            .await
            .unwrap();
        assert_eq!(
            Value::Object(only),
            json!({"only": "data", "n": {"x": null}})
        );
        let thread = StorageKey::new(BotId(0), ChatId(-100), UserId(7)).with_thread(9);
        assert_eq!(
            storage.get_state(&thread).await.unwrap().as_deref(),
            Some("Thread:state")
        );
        assert_eq!(storage.key_count().await.unwrap(), 5);
        // And the adopted table works for new writes.
        storage
            .update_data(
                &StorageKey::new(BotId(0), ChatId(5), UserId(5)),
                &json!({"age": 30}).as_object().unwrap().clone(),
            )
            .await
            .unwrap();
    });
}

#[test]
fn conformance_command_passes_on_a_file_and_fails_with_exit_1() {
    let dir = temp_dir("conformance");
    let out = fsmstore(&sqlite_url(&dir), &["conformance"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    assert!(
        stdout.contains("ok    keys") && stdout.contains("migrate_up_down_up"),
        "{stdout}"
    );
    // Every case dropped its scratch tables.
    let db = rusqlite::Connection::open(dir.join("fsm.db")).unwrap();
    let left: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'fc_%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);

    // A private in-memory database forgets everything between opens: the persistence
    // case must fail, and the exit code says so.
    let out = fsmstore(
        "sqlite::memory:",
        &[
            "conformance",
            "--group",
            "storage",
            "--filter",
            "persist",
            "--json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["failed"], 1);
    assert_eq!(report["cases"][0]["name"], "data_persists_across_reopen");
}

#[test]
fn demo_inspect_and_purge() {
    let dir = temp_dir("demo");
    let url = sqlite_url(&dir);
    let demo = ok_json(&url, &["demo", "--users", "40"]);
    assert_eq!(demo["rows"], 40);
    let stats = ok_json(&url, &["inspect", "stats"]);
    assert_eq!(stats["rows"], 40);
    let per_state = stats["per_state"].as_array().unwrap();
    assert_eq!(per_state.len(), 4, "{per_state:?}");
    let listed = ok_json(
        &url,
        &["inspect", "list", "--state", "Form:age", "--limit", "100"],
    );
    assert_eq!(listed.as_array().unwrap().len(), 10);
    let one = ok_json(&url, &["inspect", "get", "fsm:7:7"]);
    assert_eq!(one["data"]["name"], "user7");
    let missing = fsmstore(&url, &["inspect", "get", "fsm:999:999"]);
    assert_eq!(missing.status.code(), Some(1));

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let dry = ok_json(&url, &["purge", "--older-than", "1s", "--dry-run"]);
    assert_eq!(dry["would_delete"], 40);
    assert_eq!(
        ok_json(&url, &["inspect", "stats"])["rows"],
        40,
        "a dry run deletes nothing"
    );
    let purged = ok_json(&url, &["purge", "--older-than", "1s", "--batch", "7"]);
    assert_eq!(purged["deleted"], 40);
    assert_eq!(ok_json(&url, &["inspect", "stats"])["rows"], 0);
}

#[test]
fn errors_are_one_line_with_the_fix_and_documented_exit_codes() {
    let out = fsmstore("mongodb://localhost", &["migrate", "current"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.trim_end().lines().count() == 1,
        "{stderr}"
    );
    assert!(stderr.contains("unknown database URL scheme"), "{stderr}");

    let out = fsmstore(
        "postgres://bot:hunter2@127.0.0.1:1/x?connect_timeout_ms=300",
        &["migrate", "current"],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("check --url") && !stderr.contains("hunter2"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");

    let out = fsmstore("sqlite://x.db", &["migrate", "up", "--to", "sideways"]);
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
    let out = fsmstore(
        "sqlite://x.db",
        &["--table", "bad-name", "migrate", "current"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid table name"));
    let help = ok("sqlite://x.db", &["--help"]);
    assert!(help.contains("Exit codes") && help.contains("3  the schema needs attention"));
}

/// Exit code and stderr of a run that must fail.
fn refused(url: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = fsmstore(url, args);
    assert!(!out.status.success(), "fsmstore {args:?} succeeded");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Files in `dir`, by name.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn an_at_sign_in_the_query_is_neither_a_file_name_nor_ignored() {
    let dir = temp_dir("at-sign");
    let url = format!(
        "sqlite://{}?table=scratch&application=ops@example.com",
        dir.join("at.db").display()
    );
    // Once the whole query was ignored: the file `at.db?table=…` was created, even by the
    // read-only `migrate current`, and `migrate down --to base` dropped the default table.
    for args in [
        &["migrate", "current"][..],
        &["migrate", "down", "--to", "base"],
    ] {
        let (code, stderr) = refused(&url, args);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains("\"application\""), "{stderr}");
    }
    assert!(files_in(&dir).is_empty(), "{:?}", files_in(&dir));
    // A path with an encoded `?` and `@` is one file, and the query after it is read.
    let url = format!(
        "sqlite://{}?table=scratch",
        dir.join("a%3Fb%40c.db").display()
    );
    ok(&url, &["migrate", "up"]);
    assert_eq!(files_in(&dir), vec!["a?b@c.db".to_owned()]);
    let state = ok_json(&url, &["migrate", "current"]);
    assert_eq!(state["table"], "scratch");
}

#[test]
fn ages_and_offsets_that_do_not_fit_are_refused_never_wrapped() {
    let dir = temp_dir("wrap");
    let url = sqlite_url(&dir);
    ok_json(&url, &["demo", "--users", "30"]);
    // Once `now - age as i64` wrapped into the future and deleted every fresh row.
    for age in ["18446744073709551615ms", "36501d", "99999999999w"] {
        let (code, stderr) = refused(&url, &["purge", "--older-than", age]);
        assert_eq!(code, Some(2), "{age}: {stderr}");
        assert!(stderr.contains("36500d"), "{age}: {stderr}");
    }
    // The largest accepted age is a cutoff a century ago: nothing written now goes.
    let purged = ok_json(&url, &["purge", "--older-than", "36500d"]);
    assert_eq!(purged["deleted"], 0);
    assert_eq!(ok_json(&url, &["inspect", "stats"])["rows"], 30);
    // A TTL past the limit is refused at the URL, before anything is read as expired.
    let (code, stderr) = refused(&format!("{url}?ttl=1000000w"), &["inspect", "stats"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("36500d"), "{stderr}");

    let export = dir.join("export");
    let export = export.to_str().unwrap();
    for (offset, exit) in [("9223372036854775807", 1), ("-1", 2)] {
        let (code, stderr) = refused(
            &url,
            &[
                "migrate",
                "export",
                "--format",
                "sqlx",
                "--dialect",
                "sqlite",
                "--dir",
                export,
                "--version-offset",
                offset,
            ],
        );
        assert_eq!(code, Some(exit), "{offset}: {stderr}");
    }
    let (code, stderr) = refused(
        &url,
        &[
            "migrate",
            "export",
            "--format",
            "refinery",
            "--dialect",
            "sqlite",
            "--dir",
            export,
            "--version-offset",
            "4294967295",
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("Refinery"), "{stderr}");
    assert!(!Path::new(export).exists(), "nothing written");
}

#[test]
fn stamp_refuses_a_step_and_targets_out_of_range_exit_1_everywhere() {
    let dir = temp_dir("stamp-step");
    let url = sqlite_url(&dir);
    ok(&url, &["migrate", "up"]);
    // Once `stamp -1` recorded v3 over a v4 table; the next upgrade then failed.
    let (code, stderr) = refused(&url, &["migrate", "stamp", "-1"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("step"), "{stderr}");
    assert_eq!(current(&url), 4);
    // `sql --to 99` is the caller's input like `up --to 99`: both exit 1.
    for args in [
        &["migrate", "up", "--to", "99"][..],
        &["migrate", "sql", "--dialect", "sqlite", "--to", "99"],
    ] {
        let (code, stderr) = refused(&url, args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
    }
}

#[test]
fn purge_never_creates_a_file_and_migrate_takes_a_bot_url() {
    let dir = temp_dir("purge-missing");
    let missing = sqlite_url(&dir);
    let (code, stderr) = refused(&missing, &["purge", "--older-than", "1d"]);
    assert_eq!(code, Some(1), "{stderr}");
    let (code, stderr) = refused(&missing, &["migrate", "down"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(files_in(&dir).is_empty(), "{:?}", files_in(&dir));
    // The README's bot URL carries `schema=upgrade`: the migrate commands decide the
    // schema themselves and take that URL as it is.
    let bot_url = format!("{missing}?schema=upgrade");
    ok(&bot_url, &["migrate", "up", "--to", "2"]);
    let state = ok_json(&bot_url, &["migrate", "history"]);
    assert_eq!(state["migrations"].as_array().unwrap().len(), 4);
    assert_eq!(current(&bot_url), 2, "migrate current did not upgrade");
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::process::Stdio;
    let dir = temp_dir("pipe");
    let url = sqlite_url(&dir);
    ok_json(&url, &["demo", "--users", "20"]);
    // The reader is gone before the first line is written (`inspect list | head -0`).
    let mut child = Command::new(env!("CARGO_BIN_EXE_fsmstore"))
        .args(["inspect", "list", "--url", &url])
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn the_urls_table_is_used_and_a_different_flag_is_a_conflict() {
    let dir = temp_dir("url-table");
    let url = format!("{}?table=from_url", sqlite_url(&dir));
    ok(&url, &["migrate", "up"]);
    assert_eq!(ok_json(&url, &["migrate", "current"])["table"], "from_url");
    let (code, stderr) = refused(&url, &["--table", "other", "migrate", "current"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("table"), "{stderr}");
    // The same name in both places is one setting.
    ok(&url, &["--table", "from_url", "migrate", "current"]);
}

/// A table migrated with one version table, opened with another: not "create it" or
/// "run migrate up" (migration 1 would fail on the existing table), but "the version table
/// may be the wrong one"; `inspect` (which opens with schema=verify) exits 3 saying so. The
/// text a person reads says `30d`, `1 row` and a table's name, never `2592000s`, `1 rows`
/// or `TableName("x")`.
#[test]
fn messages_a_person_reads() {
    let dir = temp_dir("messages");
    let url = format!("{}?table=msg", sqlite_url(&dir));
    ok(&url, &["--version-table", "msg_v", "migrate", "up"]);
    let out = fsmstore(&url, &["--version-table", "other_v", "migrate", "current"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("the table exists, but version table other_v has no record of it")
            && stdout.contains("--version-table"),
        "{stdout}"
    );
    assert!(!stdout.contains("run `fsmstore migrate up`"), "{stdout}");
    let status = ok_json(&url, &["--version-table", "msg_v", "migrate", "current"]);
    assert_eq!(status["unrecorded"], false);
    let (code, stderr) = refused(&url, &["--version-table", "other_v", "inspect", "stats"]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("exists, but version table other_v records no schema version")
            && stderr.contains("made by aiogram-sqlalchemy-storage: `fsmstore")
            && !stderr.contains("(run `"),
        "{stderr}"
    );
    // --json has no single fix to run blindly.
    let out = fsmstore(
        &url,
        &["--version-table", "other_v", "--json", "inspect", "stats"],
    );
    let err: Value = serde_json::from_slice(&out.stdout)
        .or_else(|_| serde_json::from_slice(&out.stderr))
        .expect("a JSON error");
    assert_eq!(err["fix"], Value::Null, "{err}");
    assert_eq!(err["kind"], "Schema", "{err}");

    // Durations as written, counts with their noun.
    let ttl_url = format!("{url}&ttl=30d&version_table=msg_v");
    ok(&ttl_url, &["demo", "--users", "1"]);
    let stats = ok(&ttl_url, &["inspect", "stats"]);
    assert!(stats.contains("not written for over 30d"), "{stats}");
    let listed = ok(&ttl_url, &["inspect", "list"]);
    assert!(listed.trim_end().ends_with("1 row"), "{listed}");
    let purge = ok(&ttl_url, &["purge", "--older-than", "1d", "--dry-run"]);
    assert!(purge.starts_with("0 rows not written"), "{purge}");

    // A setting given twice, differently: the names, not their wrappers.
    let (code, stderr) = refused(&url, &["--table", "other", "migrate", "current"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stderr.contains("TableName("), "{stderr}");
}

/// `fsmstore states`: the listing marks what the code does not know (exit 1); a step's dry
/// run counts and writes nothing; the steps rename, regroup, reshape and drop; a bad
/// value is refused before anything is written.
#[test]
fn states_lists_marks_unknown_and_runs_steps() {
    let dir = temp_dir("states");
    let url = sqlite_url(&dir);
    ok_json(&url, &["demo", "--users", "40"]);
    let listed = ok_json(&url, &["states"]);
    assert_eq!(listed["dialogues"], 40);
    assert_eq!(listed["states"].as_array().unwrap().len(), 4, "{listed}");

    let known_file = dir.join("known.txt");
    std::fs::write(&known_file, "# the code's states\nForm:name\nForm:age\n").unwrap();
    let known = format!("@{}", known_file.display());
    let out = fsmstore(&url, &["states", "--known", &known, "--json"]);
    assert_eq!(out.status.code(), Some(1), "unknown states exit 1");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["unknown_states"], 1, "{report}");
    assert_eq!(report["unknown_dialogues"], 10, "{report}");
    let city = report["states"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["state"] == "Form:city")
        .unwrap()
        .clone();
    assert_eq!(city["known"], false);

    let dry = ok_json(
        &url,
        &["states", "rename", "Form:city", "Form:town", "--dry-run"],
    );
    assert_eq!(
        (dry["changed"].clone(), dry["dry_run"].clone()),
        (json!(10), json!(true))
    );
    assert_eq!(
        fsmstore(&url, &["states", "--known", &known]).status.code(),
        Some(1),
        "the dry run wrote nothing"
    );
    let renamed = ok_json(
        &url,
        &["states", "rename", "Form:city", "Form:age", "--batch", "3"],
    );
    assert_eq!(renamed["changed"], 10);
    let out = fsmstore(&url, &["states", "--known", &known]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("every stored state is known"));

    let grouped = ok_json(&url, &["states", "rename-group", "Form", "Signup"]);
    assert_eq!(grouped["changed"], 30);
    let field = ok_json(
        &url,
        &[
            "states",
            "rename-field",
            "name",
            "full_name",
            "--in",
            "Signup:*",
        ],
    );
    assert!(field["changed"].as_u64().unwrap() > 0, "{field}");
    let rows = ok_json(
        &url,
        &["inspect", "list", "--state", "Signup:age", "--limit", "100"],
    );
    for row in rows.as_array().unwrap() {
        assert!(row["data"]["full_name"].is_string(), "{row}");
        assert!(row["data"].get("name").is_none(), "{row}");
    }

    let out = fsmstore(&url, &["states", "default-field", "lang", "en"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not JSON"));
    let defaulted = ok_json(
        &url,
        &[
            "states",
            "default-field",
            "lang",
            "\"en\"",
            "--in",
            "Signup:age",
        ],
    );
    assert_eq!(defaulted["changed"], 20);

    let dropped = ok_json(&url, &["states", "drop", "Signup:*"]);
    assert_eq!(dropped["deleted"], 30);
    assert_eq!(ok_json(&url, &["states"])["dialogues"], 10);
    let out = fsmstore(&url, &["states", "rename", "Form:*", "Form:x"]);
    assert_eq!(out.status.code(), Some(1), "a pattern is not a state name");
    let paused = ok_json(
        &url,
        &["states", "drop", "Form:*", "--pause", "1ms", "--batch", "2"],
    );
    assert_eq!(paused["deleted"], 0);

    // The steps a bot's code ran, as recorded (the command-line steps are not).
    let empty = ok_json(&url, &["states", "history"]);
    assert_eq!(empty["steps"], json!([]), "{empty}");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use fsmstore::dialogues::{DialogueMigrations, DialogueStep, StepOptions};
            let db = fsmstore::open(&url).await.unwrap();
            let migrations = DialogueMigrations::new()
                .step(7, DialogueStep::rename_state("Form:x", "Form:y").unwrap());
            db.migrate_dialogues(&migrations, &StepOptions::default(), &mut |_, _| {})
                .await
                .unwrap();
            db.close().await.unwrap();
        });
    let history = ok_json(&url, &["states", "history"]);
    assert_eq!(history["steps"][0]["version"], 7, "{history}");
    assert_eq!(history["steps"][0]["finished"], true, "{history}");
    assert_eq!(
        history["steps"][0]["description"],
        "rename state Form:x to Form:y"
    );
    assert!(ok(&url, &["states", "history"]).contains("rename state Form:x to Form:y"));
}
