//! What `fsmstore --help` promises: exit codes (one test each), fixes that run as printed,
//! JSON errors, read-only commands that never create a database file, and passwords that
//! never show in any output of any command.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fsmstore::serde_json::{self, Value};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fsmstore-contract-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("fsm.db").display())
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fsmstore"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .output()
        .expect("run fsmstore")
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn exit_0_on_success() {
    let url = sqlite_url(&temp_dir("exit0"));
    let out = run(&["--url", &url, "migrate", "up"]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let out = run(&["--url", &url, "migrate", "current"]);
    assert_eq!(code(&out), Some(0), "at head: {}", text(&out));
}

#[test]
fn exit_1_on_bad_input_or_an_unreachable_database() {
    let url = sqlite_url(&temp_dir("exit1"));
    let out = run(&["--url", &url, "migrate", "up", "--to", "99"]);
    assert_eq!(
        code(&out),
        Some(1),
        "a target past head is bad input: {}",
        text(&out)
    );
    let out = run(&[
        "--url",
        "postgres://u@127.0.0.1:1/x?connect_timeout_ms=300",
        "migrate",
        "current",
    ]);
    assert_eq!(code(&out), Some(1), "{}", text(&out));
}

#[test]
fn exit_2_on_an_invalid_command_line() {
    let out = run(&["migrate", "up", "--to", "sideways"]);
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    let out = run(&["no-such-command"]);
    assert_eq!(code(&out), Some(2), "{}", text(&out));
}

#[test]
fn exit_3_when_the_schema_needs_attention() {
    let dir = temp_dir("exit3");
    let url = sqlite_url(&dir);
    assert_eq!(
        code(&run(&["--url", &url, "migrate", "up", "--to", "1"])),
        Some(0)
    );
    let out = run(&["--url", &url, "migrate", "current"]);
    assert_eq!(code(&out), Some(3), "outdated: {}", text(&out));
    let out = run(&["--url", &url, "inspect", "stats"]);
    assert_eq!(code(&out), Some(3), "{}", text(&out));
    // A dirty migration: history says so and exits 3.
    let db = rusqlite::Connection::open(dir.join("fsm.db")).unwrap();
    db.execute(
        "UPDATE fsmstore_migrations SET success = 0 WHERE version = 1",
        [],
    )
    .unwrap();
    drop(db);
    let out = run(&["--url", &url, "migrate", "history"]);
    assert_eq!(code(&out), Some(3), "dirty: {}", text(&out));
    assert!(text(&out).contains("dirty"), "{}", text(&out));
}

#[test]
fn the_printed_fix_runs_as_printed_with_url_and_tables() {
    let dir = temp_dir("fix");
    let url = sqlite_url(&dir);
    let tables = ["--table", "shop_fsm", "--version-table", "shop_versions"];
    let with = |args: &[&str]| {
        let mut all = vec!["--url", url.as_str()];
        all.extend_from_slice(&tables);
        all.extend_from_slice(args);
        run(&all)
    };
    assert_eq!(code(&with(&["migrate", "up", "--to", "1"])), Some(0));
    let out = with(&["--json", "inspect", "stats"]);
    assert_eq!(code(&out), Some(3));
    let error: Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert_eq!(error["kind"], "Schema", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("shop_fsm"),
        "{error}"
    );
    let fix = error["fix"].as_str().expect("a fix").to_owned();
    assert!(
        fix.contains("--version-table shop_versions") && fix.contains("--url"),
        "{fix}"
    );
    // Run it exactly as printed (a shell would strip the quotes around the URL).
    let words: Vec<String> = fix
        .split_whitespace()
        .skip(1)
        .map(|w| w.trim_matches('\'').to_owned())
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let out = run(&words);
    assert_eq!(code(&out), Some(0), "{fix}: {}", text(&out));
    assert_eq!(code(&with(&["inspect", "stats"])), Some(0));
}

#[test]
fn read_only_commands_never_create_a_database_file() {
    let dir = temp_dir("ro");
    let path = dir.join("missing.db");
    let url = format!("sqlite://{}", path.display());
    for args in [
        vec!["migrate", "current"],
        vec!["migrate", "history"],
        vec!["inspect", "stats"],
        vec!["inspect", "list"],
        vec!["purge", "--older-than", "1d", "--dry-run"],
    ] {
        let mut all = vec!["--url", url.as_str()];
        all.extend_from_slice(&args);
        let out = run(&all);
        assert_eq!(code(&out), Some(1), "{args:?}: {}", text(&out));
        assert!(!path.exists(), "{args:?} created {}", path.display());
    }
    // And an existing database is inspected through a read-only connection.
    let url = sqlite_url(&dir);
    assert_eq!(code(&run(&["--url", &url, "migrate", "up"])), Some(0));
    let ro = format!("{url}?mode=ro");
    assert_eq!(code(&run(&["--url", &ro, "inspect", "stats"])), Some(0));
    let out = run(&["--url", &ro, "demo", "--users", "1"]);
    assert_ne!(code(&out), Some(0), "a write through mode=ro must fail");
}

/// Every command, run with a password in the URL (in the user info, and as PostgreSQL's
/// `password=` parameter), never prints the password (on PostgreSQL, whose trust
/// authentication accepts any password).
#[test]
fn no_command_prints_the_password() {
    let secret = "SEKRET-pw-4711";
    let base = std::env::var("FSMSTORE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut urls = Vec::new();
    if let Some((user, host)) = base.split_once('@') {
        if !user.contains(':') {
            urls.push(format!("{user}:{secret}@{host}"));
        }
    }
    let separator = if base.contains('?') { '&' } else { '?' };
    urls.push(format!("{base}{separator}password={secret}"));
    let table = format!("pw_{}", std::process::id());
    let version_table = format!("{table}_ver");
    let mut reached = false;
    for url in &urls {
        let commands: Vec<Vec<&str>> = vec![
            vec!["migrate", "up"],
            vec!["migrate", "current"],
            vec!["migrate", "history"],
            vec!["migrate", "stamp", "1"],
            vec!["migrate", "current"],
            vec!["--json", "inspect", "stats"],
            vec!["inspect", "stats"],
            vec!["migrate", "up"],
            vec!["inspect", "list"],
            vec!["inspect", "get", "fsm:1:1"],
            vec!["purge", "--older-than", "1d", "--dry-run"],
            vec!["purge", "--older-than", "1d"],
            vec!["demo", "--users", "2"],
            vec!["conformance", "--filter", "state_absent_is_none"],
            vec!["bench", "--keys", "3", "--rounds", "1"],
            vec!["migrate", "down", "--to", "base"],
        ];
        for args in commands {
            let mut all = vec![
                "--url",
                url.as_str(),
                "--table",
                table.as_str(),
                "--version-table",
                version_table.as_str(),
            ];
            all.extend_from_slice(&args);
            let out = run(&all);
            let shown = text(&out);
            if args == ["migrate", "up"] && code(&out) == Some(0) {
                reached = true;
            }
            assert!(
                !shown.contains(secret),
                "{args:?} printed the password: {shown}"
            );
        }
    }
    if reached {
        // The version table outlives `migrate down --to base`: drop it.
        let _ = Command::new("psql")
            .args([
                base.as_str(),
                "-qc",
                &format!("DROP TABLE IF EXISTS {version_table}"),
            ])
            .output();
    } else if std::env::var_os("CI").is_some() {
        panic!("PostgreSQL unreachable under CI");
    } else {
        eprintln!("*** SKIPPED: PostgreSQL unreachable, password check ran on error paths only");
    }
    // Refused logins and unreachable servers too.
    for url in [
        format!("mysql://root:{secret}@127.0.0.1:3306/test"),
        format!("postgres://nobody:{secret}@127.0.0.1:1/x?connect_timeout_ms=300"),
        format!("mysql://root:{secret}@127.0.0.1:9/test?connect_timeout_ms=300"),
    ] {
        for args in [
            vec!["migrate", "current"],
            vec!["--json", "inspect", "stats"],
        ] {
            let mut all = vec!["--url", url.as_str()];
            all.extend_from_slice(&args);
            let out = run(&all);
            assert!(
                !text(&out).contains(secret),
                "{url} {args:?}: {}",
                text(&out)
            );
        }
    }
}

#[test]
fn inspect_get_takes_a_row_id_or_the_key_parts() {
    let dir = temp_dir("get");
    let url = sqlite_url(&dir);
    assert_eq!(code(&run(&["--url", &url, "migrate", "up"])), Some(0));
    let db = rusqlite::Connection::open(dir.join("fsm.db")).unwrap();
    db.execute_batch(
        "INSERT INTO aiogram_fsm_data (id, state, data, updated_at) VALUES
         ('fsm:-100:7', 'Form:name', '{\"a\":1}', 0),
         ('fsm:-100:9:7:album', 'Album:photos', '{}', 0);",
    )
    .unwrap();
    drop(db);
    let by_parts = run(&[
        "--url", &url, "--json", "inspect", "get", "--chat", "-100", "--user", "7",
    ]);
    assert_eq!(code(&by_parts), Some(0), "{}", text(&by_parts));
    let row: Value = serde_json::from_slice(&by_parts.stdout).unwrap();
    assert_eq!(row["id"], "fsm:-100:7");
    assert_eq!(row["state"], "Form:name");
    let by_id = run(&["--url", &url, "--json", "inspect", "get", "fsm:-100:7"]);
    assert_eq!(by_id.stdout, by_parts.stdout);
    // A destiny needs a key layout that includes it: the default one refuses it clearly.
    let out = run(&[
        "--url",
        &url,
        "inspect",
        "get",
        "--chat",
        "-100",
        "--user",
        "7",
        "--thread",
        "9",
        "--destiny",
        "album",
    ]);
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    assert!(text(&out).contains("destiny"), "{}", text(&out));
    let out = run(&["--url", &url, "inspect", "get", "--chat", "-100"]);
    assert_eq!(
        code(&out),
        Some(2),
        "--chat without --user is a usage error"
    );
}

#[test]
fn conformance_drops_the_tables_of_failed_cases_too() {
    let dir = temp_dir("conformance-fail");
    // A data limit in the URL makes the large-payload cases fail after creating tables.
    let url = format!("{}?max_data_bytes=64", sqlite_url(&dir));
    let out = run(&[
        "--url",
        &url,
        "conformance",
        "--group",
        "storage",
        "--filter",
        "one_mib",
    ]);
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    assert!(text(&out).contains("FAIL"), "{}", text(&out));
    let db = rusqlite::Connection::open(dir.join("fsm.db")).unwrap();
    let left: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'fc_%'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(left, 0, "failed cases left their scratch tables");
}
