//! fsmstore on a three-node MariaDB Galera cluster (`scripts/galera.sh start`; the nodes'
//! URLs in `FSMSTORE_TEST_GALERA_URLS`, comma-separated). Every node takes writes; conflicts
//! between nodes surface as certification failures (1213) at commit. The conformance suite
//! on one node is in `conformance.rs` (module `galera`).

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use fsmstore_core::{
    BotId, ChatId, Data, MigrationTarget, Migrator, Storage, StorageKey, StorageOptions, UserId,
};
use fsmstore_mysql::{MysqlConfig, MysqlMigrator, MysqlStorage};
use serde_json::json;

const GALERA_VARIABLE: &str = "FSMSTORE_TEST_GALERA_URLS";

/// The tests of this file run one at a time: they load the cluster (and one starts a
/// cluster of its own), and timing under contention is what they observe.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The nodes' configs, or `None` after a loud skip (a failure under `CI`).
async fn nodes() -> Option<Vec<MysqlConfig>> {
    let urls = std::env::var(GALERA_VARIABLE).unwrap_or_else(|_| {
        "mysql://root@127.0.0.1:13061/test,mysql://root@127.0.0.1:13062/test,mysql://root@127.0.0.1:13063/test".into()
    });
    let mut configs = Vec::new();
    for url in urls.split(',') {
        let mut config = MysqlConfig::from_url(url).expect("a mysql:// URL");
        config.options.pool_max = 8;
        if let Err(err) = common::reachable(&config).await {
            return fsmstore_conformance::unreachable("Galera", GALERA_VARIABLE, &err);
        }
        configs.push(config);
    }
    assert!(configs.len() >= 3, "{GALERA_VARIABLE} names three nodes");
    Some(configs)
}

fn on(config: &MysqlConfig, options: &StorageOptions) -> MysqlConfig {
    config.clone().options(options.clone()).expect("options")
}

fn obj(value: serde_json::Value) -> Data {
    value.as_object().cloned().expect("an object")
}

/// 48 writers spread over the three nodes merge distinct fields into hot keys (all of
/// them on one key) and cold keys (one each) at once: every call succeeds (certification
/// conflicts are run again, the transaction having been rolled back) and every field is
/// there afterwards, read on every node.
async fn writers_on_every_node_lose_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(nodes) = nodes().await else {
        return;
    };
    // The default retry policy: on a Galera node it allows for certification conflicts.
    let options =
        common::unique_options("galera_writers").schema(fsmstore_core::SchemaPolicy::Upgrade);
    let mut storages = Vec::new();
    for node in &nodes {
        let storage = MysqlStorage::open(on(node, &options)).await.unwrap();
        assert!(storage.is_galera().await);
        assert_eq!(storage.options().retry, fsmstore_mysql::galera_retry());
        storages.push(Arc::new(storage));
    }
    const WRITERS: usize = 48;
    const ROUNDS: usize = 15;
    let hot = StorageKey::new(BotId(1), ChatId(-1), UserId(1));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let storage = Arc::clone(&storages[w % storages.len()]);
            let hot = hot.clone();
            tokio::spawn(async move {
                let cold = StorageKey::new(BotId(1), ChatId(-2), UserId(w as i64));
                let mut failures = Vec::new();
                for r in 0..ROUNDS {
                    let field = format!("w{w}_r{r}");
                    for key in [&hot, &cold] {
                        if let Err(err) = storage.update_data(key, &obj(json!({ &field: r }))).await
                        {
                            failures.push(format!("{field}: {err}"));
                        }
                    }
                }
                failures
            })
        })
        .collect();
    let mut failures = Vec::new();
    for task in tasks {
        failures.extend(task.await.unwrap());
    }
    let calls = WRITERS * ROUNDS * 2;
    eprintln!("galera writers: {calls} calls, {} failed", failures.len());
    assert!(
        failures.is_empty(),
        "{} of {calls} calls failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    // Galera applies on the other nodes asynchronously after commit: read with a causal
    // wait, as a node that must see every committed write would.
    for (n, storage) in storages.iter().enumerate() {
        let data = read_synced(&nodes[n], &options, &hot).await;
        let want: BTreeSet<String> = (0..WRITERS)
            .flat_map(|w| (0..ROUNDS).map(move |r| format!("w{w}_r{r}")))
            .collect();
        let have: BTreeSet<String> = data.keys().cloned().collect();
        let lost: Vec<_> = want.difference(&have).collect();
        assert!(
            lost.is_empty(),
            "node {n}: {} hot-key fields lost: {lost:?}",
            lost.len()
        );
        for w in 0..WRITERS {
            let cold = StorageKey::new(BotId(1), ChatId(-2), UserId(w as i64));
            assert_eq!(
                storage.get_data(&cold).await.unwrap().len(),
                ROUNDS,
                "node {n} cold {w}"
            );
        }
    }
    let migrator = MysqlMigrator::open(on(&nodes[0], &options)).await.unwrap();
    migrator.drop_tables().await.unwrap();
}

/// The data of `key` on `node` after every write committed anywhere is applied there
/// (`wsrep_sync_wait`).
async fn read_synced(node: &MysqlConfig, options: &StorageOptions, key: &StorageKey) -> Data {
    use fsmstore_mysql::sqlx::{self, Row};
    let mut conn = common::connection(node).await.unwrap();
    sqlx::raw_sql("SET SESSION wsrep_sync_wait = 1")
        .execute(&mut conn)
        .await
        .unwrap();
    let id = options.row_id(key).unwrap();
    let sql = format!(
        "SELECT data FROM {} WHERE id = ?",
        options.table.quoted(fsmstore_core::Dialect::Mysql)
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let text: String = row.try_get(0).unwrap();
    obj(serde_json::from_str(&text).unwrap())
}

/// Four migrators started at once on different nodes (one node twice) all succeed, each
/// migration is applied exactly once, and the schema ends at head on every node.
async fn migrators_on_different_nodes_apply_each_migration_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(nodes) = nodes().await else {
        return;
    };
    let options = common::unique_options("galera_migrate");
    let runs: Vec<_> = [0, 1, 2, 0]
        .into_iter()
        .map(|n| {
            let config = on(&nodes[n], &options);
            tokio::spawn(async move {
                let migrator = MysqlMigrator::open(config).await.unwrap();
                migrator.migrate(MigrationTarget::Head).await
            })
        })
        .collect();
    let mut steps = 0;
    let mut errors = Vec::new();
    for run in runs {
        match run.await.unwrap() {
            Ok(report) => steps += report.steps.len(),
            Err(err) => errors.push(err.to_string()),
        }
    }
    assert!(errors.is_empty(), "migrators failed: {errors:?}");
    let head = MysqlMigrator::open(on(&nodes[0], &options))
        .await
        .unwrap()
        .migrations()
        .head();
    assert_eq!(steps as i64, head, "each migration ran exactly once in all");
    tokio::time::sleep(Duration::from_millis(200)).await;
    for node in &nodes {
        let migrator = MysqlMigrator::open(on(node, &options)).await.unwrap();
        assert_eq!(migrator.current().await.unwrap(), head);
    }
    MysqlMigrator::open(on(&nodes[0], &options))
        .await
        .unwrap()
        .drop_tables()
        .await
        .unwrap();
}

/// The cluster migration lock's row: one left behind on this node (its migrator died; the
/// node's `GET_LOCK` proves no one here holds it) is taken over at once; one another node
/// holds with a lease left is waited for, and the timeout names its owner; once its lease
/// ran out it is taken over.
async fn a_stale_lock_row_is_taken_over_and_a_live_one_waited_for() {
    let _one = ONE_AT_A_TIME.lock().await;
    use fsmstore_mysql::sqlx;
    let Some(nodes) = nodes().await else {
        return;
    };
    let options = common::unique_options("galera_lock");
    let lock = fsmstore_core::sql::ClusterLock::mysql(&options.version_table);
    let first = MysqlMigrator::open(on(&nodes[0], &options)).await.unwrap();
    first.migrate(MigrationTarget::Version(1)).await.unwrap();
    let mut admin = common::connection(&nodes[0]).await.unwrap();
    let put = |owner: String, seconds: i64| {
        format!(
            "REPLACE INTO {} (name, owner, expires_at) VALUES ('{}', '{owner}', CURRENT_TIMESTAMP(6) + INTERVAL {seconds} SECOND)",
            lock.table, lock.name
        )
    };
    // Left behind by a dead migrator of node 1 itself, lease far off: taken over at once.
    let node1: String = sqlx::query_scalar("SELECT CONCAT(@@hostname, ':', @@port, ':')")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(put(format!("{node1}999999"), 3600)))
        .execute(&mut admin)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    first.migrate(MigrationTarget::Version(2)).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Held by another node with a lease left: waited for, then a timeout naming it.
    sqlx::raw_sql(sqlx::AssertSqlSafe(put("elsewhere:3306:42".into(), 3600)))
        .execute(&mut admin)
        .await
        .unwrap();
    let impatient =
        MysqlMigrator::open(on(&nodes[0], &options).lock_timeout(Duration::from_secs(1)))
            .await
            .unwrap();
    let err = impatient
        .migrate(MigrationTarget::Version(3))
        .await
        .expect_err("a live lease of another node is waited for");
    assert!(err.to_string().contains("elsewhere:3306:42"), "{err}");
    assert_eq!(first.current().await.unwrap(), 2, "nothing ran");
    // Its lease ran out (that node died mid-run): taken over.
    sqlx::raw_sql(sqlx::AssertSqlSafe(put("elsewhere:3306:42".into(), -1)))
        .execute(&mut admin)
        .await
        .unwrap();
    impatient.migrate(MigrationTarget::Head).await.unwrap();
    let left: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {}",
        lock.table
    )))
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(left, 0, "the lock row is released");
    first.drop_tables().await.unwrap();
}

/// A cluster of this test's own (`scripts/galera.sh` on other ports and data), stopped
/// when dropped: this test kills one of its nodes.
struct PrivateCluster {
    env: Vec<(&'static str, String)>,
}

impl PrivateCluster {
    fn script(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/galera.sh"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("run scripts/galera.sh")
    }

    /// Starts it, or `None` after a loud skip (a failure under `CI`).
    fn start() -> Option<PrivateCluster> {
        Self::start_with("failover", 14060, 4660, Vec::new())
    }

    /// Starts a cluster named `name` on client ports `port + N` and group ports
    /// `gcomm + 10N`, with `more` of galera.sh's settings (per-node addresses and network
    /// namespaces).
    fn start_with(
        name: &str,
        port: u16,
        gcomm: u16,
        more: Vec<(&'static str, String)>,
    ) -> Option<PrivateCluster> {
        let mut env = vec![
            ("FSMSTORE_GALERA_PORT", port.to_string()),
            ("FSMSTORE_GALERA_GCOMM_PORT", gcomm.to_string()),
            (
                "FSMSTORE_GALERA_DIR",
                format!("/tmp/fsmstore-galera-{name}-{}", std::process::id()),
            ),
        ];
        env.extend(more);
        let cluster = PrivateCluster { env };
        let mut out = cluster.script(&["start"]);
        if !out.status.success() {
            // A node that failed to join on a loaded machine: start over once, from empty.
            eprintln!(
                "galera: a private cluster failed to start; trying once more:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            cluster.script(&["stop"]);
            if let Some((_, dir)) = cluster
                .env
                .iter()
                .find(|(k, _)| *k == "FSMSTORE_GALERA_DIR")
            {
                let _ = std::fs::remove_dir_all(dir);
            }
            out = cluster.script(&["start"]);
        }
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr).into_owned();
            cluster.script(&["stop"]);
            return fsmstore_conformance::unreachable(
                "a private Galera cluster",
                "scripts/galera.sh",
                &why,
            );
        }
        Some(cluster)
    }

    fn urls(&self) -> Vec<String> {
        String::from_utf8(self.script(&["urls"]).stdout)
            .unwrap()
            .trim()
            .split(',')
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.script(&["stop"]);
        if let Some((_, dir)) = self.env.iter().find(|(k, _)| *k == "FSMSTORE_GALERA_DIR") {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A storage given every node (`hosts=`) keeps serving when its node is killed (kill -9)
/// in the middle of a load: the writers go on after a few seconds of transient errors at
/// most, no acknowledged write is lost, and the node, once it rejoined, serves the same
/// rows.
async fn killing_a_node_moves_the_storage_to_another() {
    let _one = ONE_AT_A_TIME.lock().await;
    use std::sync::Mutex;
    use std::time::Instant;
    let Some(cluster) = PrivateCluster::start() else {
        panic!("could not start a private Galera cluster (scripts/galera.sh): see above");
    };
    let urls = cluster.urls();
    let others: Vec<&str> = urls[1..]
        .iter()
        .map(|u| {
            u.trim_start_matches("mysql://root@")
                .trim_end_matches("/test")
        })
        .collect();
    let url = format!(
        "{}?hosts={}&table=failover&version_table=failover_ver&schema=upgrade&pool_max=8",
        urls[0],
        others.join(",")
    );
    let storage = Arc::new(MysqlStorage::connect(&url).await.unwrap());
    const WRITERS: i64 = 8;
    let acked = Arc::new(Mutex::new(Vec::<(i64, i64, Duration)>::new()));
    let errors = Arc::new(Mutex::new(Vec::<(Duration, fsmstore_core::Error)>::new()));
    let started = Instant::now();
    let load = Duration::from_secs(8);
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (storage, acked, errors) = (
                Arc::clone(&storage),
                Arc::clone(&acked),
                Arc::clone(&errors),
            );
            tokio::spawn(async move {
                let mut i = 0;
                while started.elapsed() < load {
                    let key = StorageKey::new(BotId(1), ChatId(-w - 1), UserId(i));
                    match storage.set_data(&key, &obj(json!({"w": w, "i": i}))).await {
                        Ok(()) => acked.lock().unwrap().push((w, i, started.elapsed())),
                        Err(err) => errors.lock().unwrap().push((started.elapsed(), err)),
                    }
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let killed_at = started.elapsed();
    assert!(
        cluster.script(&["kill", "1"]).status.success(),
        "kill node 1"
    );
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let errors = std::mem::take(&mut *errors.lock().unwrap());
    let after_kill = acked.len();
    let window = errors
        .iter()
        .map(|(at, _)| at.saturating_sub(killed_at))
        .max()
        .unwrap_or_default();
    eprintln!(
        "galera failover: {} writes acknowledged, {} errors, the last {:?} after the kill: {:?}",
        after_kill,
        errors.len(),
        window,
        errors
            .iter()
            .map(|(_, e)| e.to_string())
            .collect::<BTreeSet<_>>()
    );
    assert!(
        window < Duration::from_secs(5),
        "errors went on for {window:?}"
    );
    // Transient only: a write in flight on the killed node (its outcome unknown, never
    // replayed) or a connection error; nothing else.
    for (_, err) in &errors {
        assert!(
            matches!(
                err.kind(),
                fsmstore_core::ErrorKind::OutcomeUnknown | fsmstore_core::ErrorKind::Connection
            ),
            "{err}"
        );
    }
    // The longest a writer waited between two acknowledged writes (the move to the next
    // host happens once a fresh connection to the dead one fails).
    let stall = (0..WRITERS)
        .map(|w| {
            let mut times: Vec<Duration> = acked
                .iter()
                .filter(|(x, _, _)| *x == w)
                .map(|(_, _, at)| *at)
                .collect();
            times.sort();
            times
                .windows(2)
                .map(|p| p[1] - p[0])
                .max()
                .unwrap_or_default()
        })
        .max()
        .unwrap_or_default();
    eprintln!(
        "galera failover: the longest pause between a writer's acknowledged writes: {stall:?}"
    );
    assert!(stall < Duration::from_secs(5), "a writer stalled {stall:?}");
    // Every writer went on after the errors stopped.
    for w in 0..WRITERS {
        let went_on = acked
            .iter()
            .any(|(x, _, at)| *x == w && *at > killed_at + window);
        assert!(went_on, "writer {w} wrote nothing after the kill");
    }
    let mut lost = 0;
    for (w, i, _) in &acked {
        let key = StorageKey::new(BotId(1), ChatId(-w - 1), UserId(*i));
        if storage.get_data(&key).await.unwrap() != obj(json!({"w": w, "i": i})) {
            lost += 1;
        }
    }
    assert_eq!(lost, 0, "acknowledged writes lost after the kill");
    // The node comes back (state transfer) and serves the same rows.
    assert!(
        cluster.script(&["start"]).status.success(),
        "node 1 rejoins"
    );
    let node1 = MysqlStorage::connect(&format!(
        "{}?table=failover&version_table=failover_ver",
        urls[0]
    ))
    .await
    .unwrap();
    for (w, i, _) in &acked {
        let key = StorageKey::new(BotId(1), ChatId(-w - 1), UserId(*i));
        assert_eq!(
            node1.get_data(&key).await.unwrap(),
            obj(json!({"w": w, "i": i})),
            "node 1"
        );
    }
    node1.close().await.unwrap();
    storage.close().await.unwrap();
    drop(cluster);
}

/// A node that goes silent (its network namespace drops every packet: it neither refuses
/// nor closes anything, and the cluster loses it too) is left for another: calls in flight
/// end within their deadline (`call_timeout`, then a connection to the next host), the
/// writers go on on the other nodes, and no acknowledged write is lost.
async fn a_silent_node_is_left_for_another() {
    let _one = ONE_AT_A_TIME.lock().await;
    use std::sync::Mutex;
    use std::time::Instant;
    let netns = match fsmstore_conformance::netns::Netns::create() {
        Ok(netns) => netns,
        Err(err) => {
            fsmstore_conformance::faults::private_server_unavailable::<()>(
                "Galera in a network namespace",
                &err,
            );
            return;
        }
    };
    // Node 1 lives in the namespace; nodes 2 and 3 listen on the host's end of the link,
    // where node 1 reaches them.
    let Some(cluster) = PrivateCluster::start_with(
        "silent",
        15060,
        4760,
        vec![
            ("FSMSTORE_GALERA_ADDRESS_1", netns.address().to_owned()),
            ("FSMSTORE_GALERA_NETNS_1", netns.name().to_owned()),
            ("FSMSTORE_GALERA_ADDRESS_2", netns.host_address().to_owned()),
            ("FSMSTORE_GALERA_ADDRESS_3", netns.host_address().to_owned()),
        ],
    ) else {
        panic!("could not start a private Galera cluster (scripts/galera.sh): see above");
    };
    let urls = cluster.urls();
    let others: Vec<String> = urls[1..]
        .iter()
        .map(|url| {
            let rest = url.split_once('@').expect("user@host").1;
            rest.split_once('/').expect("host/db").0.to_owned()
        })
        .collect();
    let url = format!(
        "{}?hosts={}&table=silent&version_table=silent_ver&schema=upgrade&pool_max=8&call_timeout_ms=1500&connect_timeout_ms=1500",
        urls[0],
        others.join(",")
    );
    let storage: Arc<dyn Storage> = Arc::new(
        MysqlStorage::open(MysqlConfig::from_url(&url).unwrap())
            .await
            .expect("open on node 1"),
    );
    let acknowledged = Arc::new(Mutex::new(Vec::<(i64, i64)>::new()));
    let longest = Arc::new(Mutex::new(Duration::ZERO));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4_i64)
        .map(|w| {
            let (storage, acknowledged, longest, stop) = (
                Arc::clone(&storage),
                Arc::clone(&acknowledged),
                Arc::clone(&longest),
                Arc::clone(&stop),
            );
            tokio::spawn(async move {
                let mut errors = Vec::new();
                let mut value = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    value += 1;
                    let key = StorageKey::new(BotId(5), ChatId(w), UserId(w));
                    let started = Instant::now();
                    let result = tokio::time::timeout(
                        Duration::from_secs(30),
                        storage.set_data(&key, &obj(json!({ "n": value }))),
                    )
                    .await
                    .expect("a call to a silent node never ended");
                    let took = started.elapsed();
                    {
                        let mut longest = longest.lock().unwrap();
                        *longest = (*longest).max(took);
                    }
                    match result {
                        Ok(()) => acknowledged.lock().unwrap().push((w, value)),
                        Err(err) => errors.push(err),
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                errors
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = acknowledged.lock().unwrap().len();
    netns.cut().expect("cut node 1's link");
    let cut_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let during = acknowledged.lock().unwrap().len() - before;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut errors = Vec::new();
    for writer in writers {
        errors.extend(writer.await.unwrap());
    }
    netns.restore().expect("restore the link");
    let longest = *longest.lock().unwrap();
    eprintln!(
        "galera silent node: {before} writes acknowledged before the cut, {during} in the 8 s after it (cut {:?} ago), {} errors: {:?}; the longest call {longest:?}",
        cut_at.elapsed(),
        errors.len(),
        errors.iter().map(|e| e.kind()).collect::<Vec<_>>()
    );
    // Every call ended within its deadlines: the answer (1.5 s), then fresh connections to
    // the silent node and to the next one (1.5 s each at most), plus slack.
    assert!(longest < Duration::from_secs(8), "a call took {longest:?}");
    assert!(during > 0, "the writers did not go on on another node");
    for err in &errors {
        assert!(
            err.is_transient() || err.kind() == fsmstore_core::ErrorKind::OutcomeUnknown,
            "{err:?}"
        );
    }
    // Nothing acknowledged is lost: each writer's last acknowledged value (or a later
    // one) is there.
    let mut last = std::collections::BTreeMap::new();
    for (w, value) in acknowledged.lock().unwrap().iter() {
        last.insert(*w, *value);
    }
    for (w, value) in last {
        let key = StorageKey::new(BotId(5), ChatId(w), UserId(w));
        let data = storage.get_data(&key).await.unwrap();
        let stored = data["n"].as_i64().expect("the counter");
        assert!(
            stored >= value,
            "writer {w}: {stored} < acknowledged {value}"
        );
    }
    storage.close().await.unwrap();
    drop(cluster);
}

/// The tests on the shared cluster are listed as ignored, with the reason, when it is not
/// there (`harness = false`); the node-kill test starts a private cluster of its own.
fn main() -> std::process::ExitCode {
    use fsmstore_conformance::{block_on, Needs, Suite};
    let shared = Needs::probe("Galera unreachable", || block_on(nodes()).map(|_| ()));
    let mut suite = Suite::new().one_at_a_time();
    suite.test("writers_on_every_node_lose_nothing", &shared, || {
        block_on(writers_on_every_node_lose_nothing())
    });
    suite.test(
        "migrators_on_different_nodes_apply_each_migration_once",
        &shared,
        || block_on(migrators_on_different_nodes_apply_each_migration_once()),
    );
    suite.test(
        "a_stale_lock_row_is_taken_over_and_a_live_one_waited_for",
        &shared,
        || block_on(a_stale_lock_row_is_taken_over_and_a_live_one_waited_for()),
    );
    // It starts a private cluster: it needs MariaDB and the Galera library (which
    // scripts/test.sh installs).
    let installed = Needs::probe("MariaDB or Galera not installed", || {
        let found = std::path::Path::new("/usr/sbin/mariadbd").exists()
            && std::path::Path::new("/usr/lib/galera/libgalera_smm.so").exists();
        found.then_some(())
    });
    suite.test(
        "killing_a_node_moves_the_storage_to_another",
        &installed,
        || block_on(killing_a_node_moves_the_storage_to_another()),
    );
    suite.test("a_silent_node_is_left_for_another", &installed, || {
        block_on(a_silent_node_is_left_for_another())
    });
    suite.run()
}
