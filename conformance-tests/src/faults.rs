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

/// What a call may take past its deadlines on a loaded machine.
const SILENT_SLACK: Duration = Duration::from_secs(2);

/// The silent-host check every server backend passes: `storage` writes to its host, then
/// `netns` drops every packet while writers and readers call; each call ends within
/// `deadline` (the call and connect timeouts; plus slack) with the error kind that says
/// what happened (a write `OutcomeUnknown` or a transient connection error, a read a
/// transient connection error); once the link is back the same storage writes again, and
/// every acknowledged write is there.
///
/// # Panics
/// When a check fails.
pub async fn silent_host_ends_every_call_within_its_deadline(
    storage: Arc<dyn Storage>,
    netns: &crate::netns::Netns,
    deadline: Duration,
) {
    use std::time::Instant;
    // Acknowledged writes first: each key's counter.
    let mut acknowledged = Vec::new();
    for n in 0..4 {
        for value in 0..20 {
            storage
                .set_data(&key(n), &data!({ "n": value }))
                .await
                .unwrap();
        }
        acknowledged.push(19);
    }
    netns.cut().expect("cut the link");
    // Writers and readers while nothing answers: every call ends within its deadline,
    // with the error kind that says what happened.
    let calls: Vec<_> = (0..4)
        .map(|n| {
            let storage = Arc::clone(&storage);
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for attempt in 0..3 {
                    let started = Instant::now();
                    let call = async {
                        if attempt % 2 == 0 {
                            storage
                                .set_data(&key(n), &data!({ "n": 100 + attempt }))
                                .await
                                .map(drop)
                        } else {
                            storage.get_data(&key(n)).await.map(drop)
                        }
                    };
                    // Without a deadline of its own a call would wait for the kernel to
                    // give up on the socket (many minutes): fail here instead of hanging.
                    let result = tokio::time::timeout(Duration::from_secs(30), call)
                        .await
                        .expect("a call to a silent host never ended");
                    seen.push((attempt % 2 == 0, started.elapsed(), result));
                }
                seen
            })
        })
        .collect();
    let mut kinds = Vec::new();
    for call in calls {
        for (write, took, result) in call.await.unwrap() {
            assert!(
                took < deadline + SILENT_SLACK,
                "a call took {took:?}: {result:?}"
            );
            let err = result.expect_err("nothing answers: no call succeeds");
            let kind = err.kind();
            if write {
                assert!(
                    matches!(kind, ErrorKind::OutcomeUnknown | ErrorKind::Connection),
                    "a write: {err:?}"
                );
            } else {
                assert_eq!(kind, ErrorKind::Connection, "a read: {err:?}");
            }
            assert!(
                kind == ErrorKind::OutcomeUnknown || err.is_transient(),
                "{err:?}"
            );
            kinds.push(kind);
        }
    }
    eprintln!("silent host: {} calls ended, kinds {kinds:?}", kinds.len());
    netns.restore().expect("restore the link");
    // The same storage writes again once the host answers (the dead connections were
    // closed), and every acknowledged write is there (or a later one).
    let back = Instant::now();
    loop {
        match storage.set_data(&key(9), &data!({ "back": true })).await {
            Ok(()) => break,
            Err(err) if back.elapsed() < Duration::from_secs(30) => {
                assert!(
                    err.is_transient() || err.kind() == ErrorKind::OutcomeUnknown,
                    "{err:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => panic!("the storage did not come back: {err:?}"),
        }
    }
    eprintln!(
        "silent host: writing again {:?} after the link came back",
        back.elapsed()
    );
    for (n, last) in acknowledged.into_iter().enumerate() {
        let data = storage.get_data(&key(n as i64)).await.unwrap();
        let value = data["n"].as_i64().expect("the counter");
        assert!(value >= last, "key {n}: {value} < acknowledged {last}");
    }
    storage.close().await.unwrap();
}
