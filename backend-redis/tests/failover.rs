//! A Redis primary killed under load (`kill -9`), in a Redis Cluster and behind Redis
//! Sentinel: writers on many keys go on once the replica is promoted, and every write they
//! were told succeeded is counted afterwards. Redis acknowledges a write before
//! replicating it, so some may be lost; with `wait_replicas=1` a write is acknowledged
//! only once a replica has it.
//!
//! Each run starts private servers of its own (`scripts/redis-cluster.sh`: six nodes;
//! `scripts/redis-sentinel.sh`: a primary, a replica, three sentinels; on their own ports
//! and directories) and stops them by pid. One test at a time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fsmstore_conformance::{block_on, Needs, Suite};
use fsmstore_core::{BotId, ChatId, ErrorKind, Storage, StorageKey, UserId};
use fsmstore_redis::RedisStorage;

const WRITERS: i64 = 16;

/// Which servers a run starts.
#[derive(Clone, Copy, PartialEq)]
enum Topology {
    /// Six nodes, three primaries; node 1 is a primary.
    Cluster,
    /// A primary (node 1), its replica, three sentinels.
    Sentinel,
}

/// Private servers from `first` on, stopped when dropped.
struct Cluster {
    topology: Topology,
    env: Vec<(String, String)>,
    first: u16,
}

impl Cluster {
    fn script(&self, args: &[&str]) -> bool {
        let script = match self.topology {
            Topology::Cluster => "redis-cluster.sh",
            Topology::Sentinel => "redis-sentinel.sh",
        };
        std::process::Command::new(format!(
            "{}/../scripts/{script}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .args(args)
        .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .status()
        .is_ok_and(|status| status.success())
    }

    fn start(topology: Topology, first: u16) -> Cluster {
        let variable = match topology {
            Topology::Cluster => "FSMSTORE_REDIS_CLUSTER",
            Topology::Sentinel => "FSMSTORE_REDIS_SENTINEL",
        };
        let cluster = Cluster {
            topology,
            env: vec![
                (format!("{variable}_PORT"), first.to_string()),
                (
                    format!("{variable}_DIR"),
                    format!("/tmp/fsmstore-redis-kill-{first}"),
                ),
            ],
            first,
        };
        assert!(
            cluster.script(&["start"]),
            "the private servers did not start"
        );
        cluster
    }

    fn url(&self, query: &str) -> String {
        let p = self.first;
        match self.topology {
            Topology::Cluster => format!(
                "redis+cluster://127.0.0.1:{p},127.0.0.1:{},127.0.0.1:{}?call_timeout=5s{query}",
                p + 1,
                p + 2
            ),
            Topology::Sentinel => format!(
                "redis+sentinel://127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}/fsmstore?call_timeout=5s{query}",
                p + 10,
                p + 11,
                p + 12
            ),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.script(&["stop"]);
    }
}

/// Writes under load, kills node 1 (a primary), and returns (acknowledged, lost, errors).
async fn kill_a_primary(topology: Topology, first: u16, query: &str) -> (usize, usize, usize) {
    let cluster = Cluster::start(topology, first);
    let storage = Arc::new(RedisStorage::connect(&cluster.url(query)).await.unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (storage, stop, acked, errors) = (
            Arc::clone(&storage),
            Arc::clone(&stop),
            Arc::clone(&acked),
            Arc::clone(&errors),
        );
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = StorageKey::new(BotId(1), ChatId(w), UserId(i));
                match storage.set_state(&key, Some(&format!("S{i}"))).await {
                    Ok(()) => acked.lock().unwrap().push((w, i, started.elapsed())),
                    Err(err) => {
                        errors.lock().unwrap().push(err);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed_at = started.elapsed();
    assert!(cluster.script(&["kill", "1"]), "kill node 1");
    // The operator brings the dead node back 4 s later: it rejoins as the replica of the
    // one promoted in its place (until then `wait_replicas=1` can not be met there).
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(cluster.script(&["revive", "1"]), "restart node 1");
    let mut recovered = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if cluster.script(&["status"]) {
            recovered = true;
            break;
        }
    }
    assert!(
        recovered,
        "the servers did not recover within 30 s of the revival"
    );
    let recovered_at = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let errors = std::mem::take(&mut *errors.lock().unwrap());
    for err in &errors {
        assert!(
            matches!(
                err.kind(),
                ErrorKind::Connection | ErrorKind::OutcomeUnknown
            ),
            "{err}"
        );
    }
    let mut per_second = std::collections::BTreeMap::new();
    for (_, _, at) in &acked {
        *per_second.entry(at.as_secs()).or_insert(0) += 1;
    }
    eprintln!("acknowledged per second: {per_second:?}; killed at {killed_at:?}, recovered at {recovered_at:?}");
    let mut kinds = std::collections::BTreeMap::new();
    for err in &errors {
        let text = err.to_string();
        *kinds
            .entry(text.chars().take(140).collect::<String>())
            .or_insert(0) += 1;
    }
    eprintln!("errors: {kinds:#?}");
    // Every writer went on after the failover.
    for w in 0..WRITERS {
        assert!(
            acked.iter().any(|(x, _, at)| *x == w && *at > recovered_at),
            "writer {w} wrote nothing after the failover"
        );
    }
    let mut lost = 0;
    for (w, i, _) in &acked {
        let key = StorageKey::new(BotId(1), ChatId(*w), UserId(*i));
        let state = storage.get_state(&key).await.unwrap();
        if state.as_deref() != Some(format!("S{i}").as_str()) {
            lost += 1;
        }
    }
    eprintln!(
        "{}, primary killed{}: {} writes acknowledged, {lost} lost, {} errors ({} outcome unknown)",
        match topology {
            Topology::Cluster => "redis cluster",
            Topology::Sentinel => "redis sentinel",
        },
        if query.is_empty() { "" } else { " with" },
        acked.len(),
        errors.len(),
        errors
            .iter()
            .filter(|err| err.kind() == ErrorKind::OutcomeUnknown)
            .count()
    );
    drop(storage);
    drop(cluster);
    (acked.len(), lost, errors.len())
}

fn main() -> std::process::ExitCode {
    let installed = Needs::probe("redis-server and redis-cli are not installed", || {
        let found = |bin: &str| {
            std::process::Command::new(bin)
                .arg("--version")
                .output()
                .is_ok_and(|out| out.status.success())
        };
        if found("redis-server") && found("redis-cli") {
            Some(())
        } else {
            fsmstore_conformance::unreachable("redis-server", "PATH", &"not found")
        }
    });
    let mut suite = Suite::new().one_at_a_time();
    // Each topology twice, on servers of its own: as Redis acknowledges, and waiting for a
    // replica (where an acknowledged write must survive).
    for (prefix, topology, ports) in [
        ("", Topology::Cluster, [17101, 17201]),
        ("sentinel::", Topology::Sentinel, [17401, 17501]),
    ] {
        suite.test(
            &format!("{prefix}a_killed_primary_loses_only_unreplicated_writes"),
            &installed,
            move || {
                let (acked, _lost, _) = block_on(kill_a_primary(topology, ports[0], ""));
                assert!(acked > 0);
            },
        );
        suite.test(
            &format!("{prefix}waiting_for_a_replica_loses_no_acknowledged_write"),
            &installed,
            move || {
                let (acked, lost, _) = block_on(kill_a_primary(
                    topology,
                    ports[1],
                    "&wait_replicas=1&wait_timeout=500ms",
                ));
                assert!(acked > 0);
                assert_eq!(
                    lost, 0,
                    "with wait_replicas=1 an acknowledged write survives a failover"
                );
            },
        );
    }
    suite.run()
}
