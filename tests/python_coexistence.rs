//! Python's `aiogram-sqlalchemy-storage` 0.2 and aiogram 3.31's `RedisStorage` (the real
//! libraries, driven by `tests/python/peer.py`) and fsmstore in the aiogram layout on one
//! live table or Redis database, on SQLite, PostgreSQL, MariaDB and Redis: each reads what
//! the other writes, for every key shape, and both write at once without losing anything
//! fsmstore acknowledged.
//!
//! The Python interpreter is `FSMSTORE_TEST_PYTHON` (a virtualenv with
//! `tests/python/requirements.txt`; `.ci/run` makes it with `scripts/python-venv.sh`).
//! Without it these tests are listed as ignored, with the reason, and fail under `CI`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use fsmstore::core::MemoryStorage;
use fsmstore::migrate::MigrationTarget;
use fsmstore::{
    BotId, ChatId, Data, Database, DefaultKeyBuilder, ErrorKind, Layout, Storage, StorageKey,
    StorageOptions, UserId,
};
use serde_json::{json, Value};

const PYTHON: &str = "FSMSTORE_TEST_PYTHON";

/// The interpreter, or `None` after a loud skip (a failure under `CI`).
fn python() -> Option<PathBuf> {
    match std::env::var_os(PYTHON) {
        Some(path) => Some(PathBuf::from(path)),
        None if std::env::var_os("CI").is_some() => {
            panic!("{PYTHON} is not set and CI is: run scripts/python-venv.sh and set it")
        }
        None => fsmstore_conformance::unreachable(
            "the Python peer",
            PYTHON,
            &"not set (scripts/python-venv.sh makes a virtualenv and prints it)",
        ),
    }
}

/// One database both sides reach: fsmstore's URL and SQLAlchemy's.
struct Target {
    name: &'static str,
    rust: String,
    python: String,
}

fn without_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

fn sqlite_target(name: &str) -> Target {
    let path = std::env::temp_dir().join(format!("fsmstore-py-{}-{name}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Target {
        name: "sqlite",
        rust: format!("sqlite://{}", path.display()),
        python: format!("sqlite+aiosqlite:///{}", path.display()),
    }
}

fn postgres_target() -> Target {
    let url = std::env::var("FSMSTORE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let base = without_query(&url).to_owned();
    let rest = base
        .strip_prefix("postgresql://")
        .or_else(|| base.strip_prefix("postgres://"))
        .expect("a postgres:// URL");
    Target {
        name: "postgres",
        python: format!("postgresql+asyncpg://{rest}"),
        rust: base,
    }
}

fn mysql_target() -> Target {
    let url = std::env::var("FSMSTORE_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let base = without_query(&url).to_owned();
    let rest = base
        .strip_prefix("mysql://")
        .or_else(|| base.strip_prefix("mariadb://"))
        .expect("a mysql:// URL");
    Target {
        name: "mysql",
        python: format!("mysql+aiomysql://{rest}?charset=utf8mb4"),
        rust: base,
    }
}

fn redis_target() -> Target {
    let url = std::env::var("FSMSTORE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/7".into());
    let base = without_query(&url).to_owned();
    Target {
        name: "redis",
        python: base.clone(),
        rust: base,
    }
}

/// A table of this test's own, shared by both sides.
struct Shared {
    python: PathBuf,
    target: Target,
    table: String,
    db: Database,
}

fn builder() -> DefaultKeyBuilder {
    DefaultKeyBuilder::default()
        .with_business_connection_id(true)
        .with_destiny(true)
}

fn options() -> StorageOptions {
    StorageOptions::default()
        .layout(Layout::AiogramSqlalchemy)
        .key_builder(builder())
}

impl Shared {
    /// Opens the table in the aiogram layout (creating it at version 1), or `None` when
    /// Python or the server is missing (loud skip; a failure under `CI`).
    async fn open(target: Target, test: &str) -> Option<Shared> {
        let python = python()?;
        let table = format!("py_{test}_{}", std::process::id());
        // On Redis the table is the key prefix; Python's key builder writes the same keys
        // (`<table>:fsm:…`).
        let url = if target.name == "redis" {
            format!("{}?table={table}", target.rust)
        } else {
            format!(
                "{}?table={table}&version_table={table}_ver&schema=upgrade",
                target.rust
            )
        };
        let db = match fsmstore::open_with(&url, options()).await {
            Ok(db) => db,
            Err(err) if err.kind() == ErrorKind::Connection => {
                return skip_server(target.name, &err);
            }
            Err(err) => panic!("{}: open: {err}", target.name),
        };
        Some(Shared {
            python,
            target,
            table,
            db,
        })
    }

    fn storage(&self) -> Arc<dyn Storage> {
        self.db.storage()
    }

    /// Runs `peer.py <command>` with `request` and returns its answer.
    fn peer(&self, command: &str, request: &Value) -> Value {
        peer(
            &self.python,
            &self.target.python,
            &self.table,
            command,
            request,
        )
    }

    async fn drop(self) {
        if self.target.name == "redis" {
            delete_keys(&self.target.rust, &self.table).await;
        } else {
            let migrator = self.db.migrator().expect("a migrator");
            migrator
                .drop_tables()
                .await
                .expect("drop the test's tables");
        }
        self.db.close().await.expect("close");
    }
}

/// Deletes the keys of table (key prefix) `table`: this test's only.
async fn delete_keys(url: &str, table: &str) {
    let options = StorageOptions::default()
        .table(table)
        .expect("a table name");
    let config = fsmstore::redis::RedisConfig::from_url(url)
        .and_then(|config| config.options(options))
        .expect("a Redis URL");
    fsmstore::redis::RedisStorage::open(config)
        .await
        .expect("Redis")
        .drop_table()
        .await
        .expect("delete the test's keys");
}

fn skip_server(name: &str, err: &fsmstore::Error) -> Option<Shared> {
    if std::env::var_os("CI").is_some() {
        panic!("{name} is unreachable ({err}) and CI is set");
    }
    eprintln!("SKIPPED: {name} is unreachable: {err}");
    None
}

fn peer(python: &PathBuf, url: &str, table: &str, command: &str, request: &Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/peer.py");
    let mut child = Command::new(python)
        .args([script, url, table, command])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("{}: {err}", python.display()));
    serde_json::to_writer(child.stdin.take().expect("stdin"), request).expect("request");
    let out = child.wait_with_output().expect("peer.py ran");
    assert!(
        out.status.success(),
        "peer.py {command} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!(
            "peer.py {command} answered {:?}: {err}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A key as JSON for peer.py, and as a [`StorageKey`].
#[derive(Clone, Debug)]
struct Key {
    chat: i64,
    user: i64,
    thread: Option<i64>,
    business: Option<&'static str>,
    destiny: &'static str,
}

impl Key {
    fn new(chat: i64, user: i64) -> Key {
        Key {
            chat,
            user,
            thread: None,
            business: None,
            destiny: "default",
        }
    }

    fn json(&self) -> Value {
        json!({"bot_id": 42, "chat_id": self.chat, "user_id": self.user,
               "thread_id": self.thread, "business_connection_id": self.business,
               "destiny": self.destiny})
    }

    fn storage_key(&self) -> StorageKey {
        let mut key = StorageKey::new(BotId(42), ChatId(self.chat), UserId(self.user))
            .for_destiny(self.destiny);
        if let Some(thread) = self.thread {
            key = key.with_thread(thread);
        }
        if let Some(business) = self.business {
            key = key.with_business_connection(business);
        }
        key
    }
}

/// One write, as both sides make it.
#[derive(Clone, Debug)]
enum Op {
    State(Option<&'static str>),
    Data(Value),
    Update(Value),
}

fn obj(value: Value) -> Data {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// Every key shape, each with the writes that make it: thread, business connection,
/// destiny, unicode, empty data, a cleared state.
fn shapes(user_base: i64) -> Vec<(Key, Vec<Op>)> {
    let u = |n| user_base + n;
    vec![
        (
            Key::new(-100, u(1)),
            vec![
                Op::State(Some("Form:name")),
                Op::Data(json!({"name": "Ann"})),
            ],
        ),
        (
            Key {
                thread: Some(55),
                ..Key::new(-100, u(2))
            },
            vec![Op::State(Some("Topic:reply")), Op::Update(json!({"n": 1}))],
        ),
        (
            Key {
                business: Some("bc-1"),
                ..Key::new(7, u(3))
            },
            vec![Op::Data(json!({"shop": true, "items": [1, 2, 3]}))],
        ),
        (
            Key {
                destiny: "album",
                ..Key::new(-100, u(4))
            },
            vec![
                Op::State(Some("Album:collect")),
                Op::Update(json!({"photos": ["a", "b"]})),
            ],
        ),
        (
            Key {
                destiny: "ключ 🔑",
                ..Key::new(-100, u(5))
            },
            vec![
                Op::State(Some("Форма:имя")),
                Op::Data(
                    json!({"имя": "Женя", "emoji": "😀", "q": "say \"hi\"", "nested": {"n": null, "f": 1.5}}),
                ),
            ],
        ),
        (
            Key::new(-100, u(6)),
            vec![
                Op::State(Some("Only:state")),
                Op::Data(json!({"x": 1})),
                Op::Data(json!({})),
            ],
        ),
        (
            Key::new(-100, u(7)),
            vec![
                Op::State(Some("Gone")),
                Op::Data(json!({"kept": "data"})),
                Op::State(None),
            ],
        ),
        (
            Key::new(-100, u(8)),
            vec![Op::State(Some("Gone")), Op::State(None)],
        ),
    ]
}

async fn apply(storage: &dyn Storage, key: &Key, op: &Op) {
    let k = key.storage_key();
    match op {
        Op::State(state) => storage.set_state(&k, *state).await.unwrap(),
        Op::Data(data) => storage.set_data(&k, &obj(data.clone())).await.unwrap(),
        Op::Update(patch) => {
            storage.update_data(&k, &obj(patch.clone())).await.unwrap();
        }
    }
}

fn python_ops(shapes: &[(Key, Vec<Op>)]) -> Value {
    let ops: Vec<Value> = shapes
        .iter()
        .flat_map(|(key, ops)| {
            ops.iter().map(move |op| match op {
                Op::State(state) => json!({"key": key.json(), "state": state}),
                Op::Data(data) => json!({"key": key.json(), "data": data}),
                Op::Update(patch) => json!({"key": key.json(), "update": patch}),
            })
        })
        .collect();
    Value::Array(ops)
}

/// What the writes leave: the same writes applied to [`MemoryStorage`].
async fn expected(shapes: &[(Key, Vec<Op>)]) -> Vec<(Option<String>, Data)> {
    let reference = MemoryStorage::with_options(options());
    let mut out = Vec::new();
    for (key, ops) in shapes {
        for op in ops {
            apply(&reference, key, op).await;
        }
        let record = reference.get_record(&key.storage_key()).await.unwrap();
        out.push((record.state, record.data));
    }
    out
}

fn python_records(answer: &Value) -> Vec<(Option<String>, Data)> {
    answer
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| {
            (
                r["state"].as_str().map(str::to_owned),
                obj(r["data"].clone()),
            )
        })
        .collect()
}

async fn shapes_round_trip(target: Target) {
    let Some(shared) = Shared::open(target, "shapes").await else {
        return;
    };
    let name = shared.target.name;
    let storage = shared.storage();

    // Python writes, fsmstore reads.
    let from_python = shapes(0);
    let answer = shared.peer("write", &python_ops(&from_python));
    assert_eq!(
        answer["acknowledged"],
        json!(python_ops(&from_python).as_array().unwrap().len())
    );
    let want = expected(&from_python).await;
    for ((key, _), want) in from_python.iter().zip(&want) {
        let got = storage.get_record(&key.storage_key()).await.unwrap();
        assert_eq!(
            (&got.state, &got.data),
            (&want.0, &want.1),
            "{name}: {key:?} written by Python"
        );
    }

    // fsmstore writes, Python reads.
    let from_rust = shapes(100);
    for (key, ops) in &from_rust {
        for op in ops {
            apply(&*storage, key, op).await;
        }
    }
    let keys: Vec<Value> = from_rust.iter().map(|(k, _)| k.json()).collect();
    let got = python_records(&shared.peer("read", &Value::Array(keys)));
    assert_eq!(got, expected(&from_rust).await, "{name}: read by Python");

    // Each updates the other's rows, and both see the merge.
    let (py_key, rs_key) = (&from_rust[0].0, &from_python[0].0);
    shared.peer(
        "write",
        &json!([{"key": py_key.json(), "update": {"by_python": "ü"}}]),
    );
    let merged = storage
        .update_data(&rs_key.storage_key(), &obj(json!({"by_rust": 1})))
        .await
        .unwrap();
    assert_eq!(merged, obj(json!({"name": "Ann", "by_rust": 1})));
    let got = python_records(&shared.peer("read", &json!([py_key.json(), rs_key.json()])));
    assert_eq!(
        got[0].1,
        obj(json!({"name": "Ann", "by_python": "ü"})),
        "{name}"
    );
    assert_eq!(
        got[1].1,
        obj(json!({"name": "Ann", "by_rust": 1})),
        "{name}"
    );
    assert_eq!(
        storage.get_data(&py_key.storage_key()).await.unwrap(),
        obj(json!({"name": "Ann", "by_python": "ü"}))
    );
    shared.drop().await;
}

/// What one side's writers acknowledged.
#[derive(Default)]
struct Acks {
    own_rounds: BTreeMap<usize, usize>,
    shared_states: BTreeSet<String>,
    shared_fields: BTreeSet<String>,
    errors: Vec<String>,
}

const TASKS: usize = 4;
const ROUNDS: usize = 25;

/// Python and fsmstore writers at once: each on keys of its own (state and data every
/// round) and all on one shared key (states, and fields merged with `update_data`).
/// Returns the counts: (side, acknowledged, lost).
async fn race(target: Target, python_updates: bool) -> Vec<(String, usize, usize)> {
    let test = if python_updates { "race_upd" } else { "race" };
    let Some(shared) = Shared::open(target, test).await else {
        return Vec::new();
    };
    let name = shared.target.name;
    let storage = shared.storage();
    let shared_key = Key::new(-500, 500);
    let py_keys: Vec<Key> = (0..TASKS as i64).map(|i| Key::new(-200, i)).collect();
    let rs_keys: Vec<Key> = (0..TASKS as i64).map(|i| Key::new(-300, i)).collect();
    let request = json!({
        "keys": py_keys.iter().map(Key::json).collect::<Vec<_>>(),
        "shared": shared_key.json(),
        "tasks": TASKS,
        "rounds": ROUNDS,
        "python_updates": python_updates,
    });
    let (python, url, table) = (
        shared.python.clone(),
        shared.target.python.clone(),
        shared.table.clone(),
    );
    let python_side =
        tokio::task::spawn_blocking(move || peer(&python, &url, &table, "race", &request));

    let rust = Arc::new(Mutex::new(Acks::default()));
    let mut writers = Vec::new();
    for (i, key) in rs_keys.iter().cloned().enumerate() {
        let (storage, rust, shared_key) =
            (Arc::clone(&storage), Arc::clone(&rust), shared_key.clone());
        writers.push(tokio::spawn(async move {
            for r in 0..ROUNDS {
                let k = key.storage_key();
                let own = async {
                    storage.set_state(&k, Some(&format!("rs:{i}:{r}"))).await?;
                    storage
                        .set_data(&k, &obj(json!({"writer": i, "round": r, "name": "Женя"})))
                        .await
                };
                match own.await {
                    Ok(()) => {
                        rust.lock().unwrap().own_rounds.insert(i, r);
                    }
                    Err(err) => rust.lock().unwrap().errors.push(err.to_string()),
                }
                let state = format!("rs:shared:{i}:{r}");
                match storage
                    .set_state(&shared_key.storage_key(), Some(&state))
                    .await
                {
                    Ok(()) => {
                        rust.lock().unwrap().shared_states.insert(state);
                    }
                    Err(err) => rust.lock().unwrap().errors.push(err.to_string()),
                }
                let field = format!("rs_{i}_{r}");
                match storage
                    .update_data(&shared_key.storage_key(), &obj(json!({ &field: r })))
                    .await
                {
                    Ok(_) => {
                        rust.lock().unwrap().shared_fields.insert(field);
                    }
                    Err(err) => rust.lock().unwrap().errors.push(err.to_string()),
                }
            }
        }));
    }
    for writer in writers {
        writer.await.expect("a Rust writer");
    }
    let answer = python_side.await.expect("the Python side");
    let python = Acks {
        own_rounds: answer["own_rounds"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(i, r)| (i.parse().unwrap(), r.as_u64().unwrap() as usize))
            .collect(),
        shared_states: strings(&answer["shared_states"]),
        shared_fields: strings(&answer["shared_fields"]),
        errors: answer["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap().to_owned())
            .collect(),
    };
    let rust = std::mem::take(&mut *rust.lock().unwrap());

    // Own keys: the last acknowledged round of every writer is what both sides read.
    let mut counts = Vec::new();
    for (side, acks, keys, prefix) in [
        ("python", &python, &py_keys, "py"),
        ("rust", &rust, &rs_keys, "rs"),
    ] {
        let mut lost = 0;
        for (i, round) in &acks.own_rounds {
            let k = keys[*i].storage_key();
            let record = storage.get_record(&k).await.unwrap();
            let want_state = format!("{prefix}:{i}:{round}");
            let want_data = obj(json!({"writer": i, "round": round, "name": "Женя"}));
            if record.state.as_deref() != Some(&want_state) || record.data != want_data {
                eprintln!("{name}: {side} key {i}: {record:?}, acknowledged round {round}");
                lost += 1;
            }
        }
        let writes = acks.own_rounds.values().map(|r| r + 1).sum::<usize>() * 2;
        counts.push((format!("{side} own keys"), writes, lost));
    }
    let final_shared = storage.get_record(&shared_key.storage_key()).await.unwrap();
    let state = final_shared
        .state
        .clone()
        .expect("the shared key has a state");
    assert!(
        python.shared_states.contains(&state) || rust.shared_states.contains(&state),
        "{name}: the shared state {state} was never written"
    );
    for (side, acks) in [("python", &python), ("rust", &rust)] {
        let lost = acks
            .shared_fields
            .iter()
            .filter(|field| !final_shared.data.contains_key(*field))
            .count();
        counts.push((
            format!("{side} shared key"),
            acks.shared_states.len() + acks.shared_fields.len(),
            lost,
        ));
    }
    eprintln!(
        "{name} (python update_data: {python_updates}): {counts:?}; errors: python {}, rust {}",
        python.errors.len(),
        rust.errors.len()
    );
    // Every write of both sides was acknowledged: nothing is lost by failing.
    for (side, acks) in [("python", &python), ("rust", &rust)] {
        assert!(
            acks.errors.is_empty(),
            "{name}: {side} errors: {:?}",
            acks.errors
        );
        let complete: BTreeMap<usize, usize> = (0..TASKS).map(|i| (i, ROUNDS - 1)).collect();
        assert_eq!(
            acks.own_rounds, complete,
            "{name}: {side} writers did not finish"
        );
    }
    for (what, _, lost) in &counts {
        if what.ends_with("own keys") || !python_updates {
            assert_eq!(
                *lost, 0,
                "{name}: {what} lost acknowledged writes: {counts:?}"
            );
        }
    }
    shared.drop().await;
    counts
}

/// aiogram's real `RedisEventIsolation` and fsmstore's locks exclude each other on one
/// dialogue: while Python holds it, fsmstore's lock times out; once Python let go,
/// fsmstore takes it; while fsmstore holds it, Python's lock gives up.
async fn locks_exclude_each_other() {
    let Some(shared) = Shared::open(redis_target(), "locks").await else {
        return;
    };
    let key = Key::new(-700, 7);
    // Python holds the lock for 1.5 s.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/peer.py");
    let mut child = Command::new(&shared.python)
        .args([script, &shared.target.python, &shared.table, "lock"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("peer.py");
    serde_json::to_writer(
        child.stdin.take().expect("stdin"),
        &json!({"key": key.json(), "hold_ms": 1500, "wait_ms": 5000}),
    )
    .expect("request");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).expect("Python's lock");
    assert_eq!(line.trim(), "locked");
    let options = options().isolation_timeout(std::time::Duration::from_millis(300));
    let url = format!("{}?table={}", shared.target.rust, shared.table);
    let waiting = fsmstore::open_with(&url, options).await.unwrap();
    let err = waiting
        .isolation()
        .lock(&key.storage_key())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockTimeout, "{err}");
    assert!(child.wait().expect("peer.py").success());
    // Python let go: fsmstore takes the lock, and Python's own gives up meanwhile.
    let guard = shared
        .db
        .isolation()
        .lock(&key.storage_key())
        .await
        .unwrap();
    let answer = shared.peer(
        "lock",
        &json!({"key": key.json(), "hold_ms": 0, "wait_ms": 300}),
    );
    assert_eq!(
        answer,
        json!({"locked": false}),
        "Python took a lock fsmstore holds"
    );
    drop(guard);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let answer = shared.peer(
        "lock",
        &json!({"key": key.json(), "hold_ms": 0, "wait_ms": 2000}),
    );
    assert_eq!(answer, json!({"locked": true}), "released for Python");
    waiting.close().await.unwrap();
    shared.drop().await;
}

fn strings(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Whether the server of `target` answers (SQLite always does).
fn reachable(target: &Target) -> Option<()> {
    if target.name == "sqlite" {
        return Some(());
    }
    let url = if target.name == "redis" {
        without_query(&target.rust).to_owned()
    } else {
        format!("{}?schema=trust", without_query(&target.rust))
    };
    match fsmstore_conformance::block_on(async {
        let db = fsmstore::open(&url).await?;
        db.close().await
    }) {
        Err(err) if err.kind() == ErrorKind::Connection => {
            fsmstore_conformance::unreachable(target.name, "FSMSTORE_TEST_*_URL", &err)
        }
        _ => Some(()),
    }
}

/// The step a team takes once the last Python writer is gone, and back: a keyspace
/// written by aiogram's real `RedisStorage` moves into fsmstore's layout with `migrate
/// up` (read there as Python wrote it), and `migrate down` moves it back, where Python
/// reads every dialogue again.
async fn redis_layout_migration_round_trips_python_keys() {
    let Some(shared) = Shared::open(redis_target(), "migrate").await else {
        return;
    };
    let mut from_python = shapes(0);
    from_python.push((
        Key::new(-100, 9),
        vec![Op::Data(
            json!({"big": u64::MAX, "neg": i64::MIN, "f": f64::MAX, "tiny": 5e-324}),
        )],
    ));
    shared.peer("write", &python_ops(&from_python));
    let want = expected(&from_python).await;
    let migrator = shared.db.migrator().unwrap();
    assert_eq!(migrator.current().await.unwrap(), 0);
    let report = migrator.migrate(MigrationTarget::Head).await.unwrap();
    assert_eq!((report.from, report.to), (0, 1));
    assert_eq!(migrator.current().await.unwrap(), 1);

    // fsmstore's layout, same table: every dialogue as Python wrote it; aiogram's keys gone.
    let own = fsmstore::open_with(
        &format!("{}?table={}", shared.target.rust, shared.table),
        StorageOptions::default().key_builder(builder()),
    )
    .await
    .unwrap();
    for ((key, _), want) in from_python.iter().zip(&want) {
        let got = own.storage().get_record(&key.storage_key()).await.unwrap();
        assert_eq!((&got.state, &got.data), (&want.0, &want.1), "{key:?}");
        let old = shared
            .storage()
            .get_record(&key.storage_key())
            .await
            .unwrap();
        assert_eq!((old.state, old.data.len()), (None, 0), "{key:?} moved");
    }
    let keys: Vec<Value> = from_python.iter().map(|(k, _)| k.json()).collect();
    let seen = python_records(&shared.peer("read", &Value::Array(keys.clone())));
    assert!(
        seen.iter()
            .all(|(state, data)| state.is_none() && data.is_empty()),
        "Python no longer sees them: {seen:?}"
    );

    // And back: Python reads them all again.
    let report = migrator.migrate(MigrationTarget::Base).await.unwrap();
    assert_eq!((report.from, report.to), (1, 0));
    assert_eq!(migrator.current().await.unwrap(), 0);
    let got = python_records(&shared.peer("read", &Value::Array(keys)));
    assert_eq!(got, want, "read by Python after migrate down");
    own.close().await.unwrap();
    migrator.drop_tables().await.unwrap();
    shared.drop().await;
}

/// Each test needs the Python peer and its server; one that is missing lists the test as
/// ignored, with the reason (`harness = false`); under `CI` it fails.
fn main() -> std::process::ExitCode {
    use fsmstore_conformance::{Needs, Suite};
    let needs = |target: fn() -> Target| {
        Needs::probe("Python peer or server missing", move || {
            python()?;
            reachable(&target())
        })
    };
    let (sqlite, postgres, mysql, redis) = (
        needs(|| sqlite_target("probe")),
        needs(postgres_target),
        needs(mysql_target),
        needs(redis_target),
    );
    let mut suite = Suite::new();
    suite.test("sqlite_shapes_round_trip", &sqlite, || {
        runtime().block_on(shapes_round_trip(sqlite_target("shapes")))
    });
    suite.test("postgres_shapes_round_trip", &postgres, || {
        runtime().block_on(shapes_round_trip(postgres_target()))
    });
    suite.test("mysql_shapes_round_trip", &mysql, || {
        runtime().block_on(shapes_round_trip(mysql_target()))
    });
    suite.test("redis_shapes_round_trip", &redis, || {
        runtime().block_on(shapes_round_trip(redis_target()))
    });
    suite.test(
        "redis_layout_migration_round_trips_python_keys",
        &redis,
        || runtime().block_on(redis_layout_migration_round_trips_python_keys()),
    );
    suite.test("redis_locks_exclude_each_other", &redis, || {
        runtime().block_on(locks_exclude_each_other())
    });
    suite.test("redis_writers_at_once", &redis, || {
        runtime().block_on(async {
            race(redis_target(), false).await;
            race(redis_target(), true).await;
        })
    });
    suite.test("sqlite_writers_at_once", &sqlite, || {
        runtime().block_on(async {
            race(sqlite_target("race"), false).await;
            race(sqlite_target("race_upd"), true).await;
        })
    });
    suite.test("postgres_writers_at_once", &postgres, || {
        runtime().block_on(async {
            race(postgres_target(), false).await;
            race(postgres_target(), true).await;
        })
    });
    suite.test("mysql_writers_at_once", &mysql, || {
        runtime().block_on(async {
            race(mysql_target(), false).await;
            race(mysql_target(), true).await;
        })
    });
    suite.run()
}
