//! A load for fault tests that restart a server: four writers, acknowledged writes
//! recorded, and the checks every backend must pass afterwards; and what the tests that
//! start private servers share.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fsmstore_core::{data, BotId, ChatId, ErrorKind, Storage, StorageKey, UserId};

/// A port nothing listens on now (the OS picks it), for a private server: never the
/// shared servers' 5432/3306.
///
/// # Panics
/// When the OS has no free port to give.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// A private `server` that could not be started, and `why`: `None` with a loud skip, or
/// a panic under `CI`.
///
/// # Panics
/// When `CI` is set.
pub fn private_server_unavailable<T>(server: &str, why: &str) -> Option<T> {
    if std::env::var_os("CI").is_some() {
        panic!("private {server}: {why}");
    }
    eprintln!("*** SKIPPED: private {server}: {why}");
    None
}

const KEYS: i64 = 16;
const WRITERS: i64 = 4;

/// What the writers saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestartReport {
    /// Writes acknowledged.
    pub acknowledged: u64,
    /// Writes acknowledged before the restart returned.
    pub acknowledged_before: u64,
    /// Transient errors.
    pub transient: u64,
    /// Writes whose outcome is unknown (lost reply).
    pub unknown: u64,
}

fn key(i: i64) -> StorageKey {
    StorageKey::new(BotId(1), ChatId(i % KEYS), UserId(1))
}

/// Runs four writers on `storage` (each write `{"i": i, "pair": [i, i]}`), calls `restart`
/// on a blocking thread after 300 ms, lets the writers go on for `after` and until 100
/// writes were acknowledged after the restart (at most 30 s), then checks:
/// every error was transient or `OutcomeUnknown`, writes were acknowledged after the
/// restart (recovery without reopening), and every key holds its last acknowledged write
/// or a later one, whole.
///
/// # Panics
/// When `restart` returns `false` or a check fails.
pub async fn writes_survive_a_restart(
    storage: Arc<dyn Storage>,
    restart: impl FnOnce() -> bool + Send + 'static,
    after: Duration,
) -> RestartReport {
    let acked = Arc::new(Mutex::new(vec![-1_i64; KEYS as usize]));
    let stop = Arc::new(AtomicBool::new(false));
    let report = Arc::new(Mutex::new(RestartReport::default()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (storage, acked, stop, report) = (
                Arc::clone(&storage),
                Arc::clone(&acked),
                Arc::clone(&stop),
                Arc::clone(&report),
            );
            tokio::spawn(async move {
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let result = storage
                        .set_data(&key(i), &data!({"i": i, "pair": [i, i]}))
                        .await;
                    {
                        let mut report = report.lock().unwrap_or_else(|e| e.into_inner());
                        match result {
                            Ok(()) => {
                                report.acknowledged += 1;
                                let mut acked = acked.lock().unwrap_or_else(|e| e.into_inner());
                                let slot = &mut acked[(i % KEYS) as usize];
                                *slot = (*slot).max(i);
                            }
                            Err(err) if err.kind() == ErrorKind::OutcomeUnknown => {
                                report.unknown += 1;
                            }
                            Err(err) => {
                                assert!(err.is_transient(), "during the restart: {err:?}");
                                report.transient += 1;
                            }
                        }
                    }
                    i += WRITERS;
                    if i % 64 < WRITERS {
                        // Let the restart and the other writers in.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restarted = tokio::task::spawn_blocking(restart)
        .await
        .expect("the restart panicked");
    assert!(restarted, "the server did not restart");
    let before = report
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .acknowledged;
    // Keep writing for `after`, and until 100 writes were acknowledged after the restart
    // (at most 30 s: a pool that never recovers fails below). Writers that were waiting for
    // a connection when the server went away come back only after `connect_timeout`.
    let started = std::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .acknowledged;
        let elapsed = started.elapsed();
        if (elapsed >= after && now >= before + 100) || elapsed >= Duration::from_secs(30) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("writer panicked");
    }
    let mut report = *report.lock().unwrap_or_else(|e| e.into_inner());
    report.acknowledged_before = before;
    assert!(
        report.acknowledged > before,
        "no write succeeded after the restart: the pool did not recover ({report:?})"
    );
    let acked = acked.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for k in 0..KEYS {
        let last = acked[k as usize];
        let got = storage
            .get_data(&key(k))
            .await
            .expect("read after the restart");
        let i = got["i"].as_i64().expect("written");
        assert!(
            i >= last,
            "key {k}: holds write {i}, write {last} was acknowledged"
        );
        assert_eq!(got["pair"], serde_json::json!([i, i]));
    }
    report
}
