//! A private MariaDB, started by this test on its own port, socket and data directory
//! (never the shared server on 3306), is restarted in the middle of a bounded load: calls
//! fail at worst with transient errors or an unknown outcome, the same storage recovers
//! without being reopened, and no acknowledged write is lost.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fsmstore_core::{
    data, BotId, ChatId, ErrorKind, SchemaPolicy, Storage, StorageKey, StorageOptions, UserId,
};
use fsmstore_mysql::{MysqlConfig, MysqlStorage};

const KEYS: i64 = 16;

/// A MariaDB of this test's own, stopped on drop.
struct PrivateServer {
    dir: PathBuf,
    port: u16,
    process: Option<Child>,
}

impl PrivateServer {
    /// `mariadb-install-db` + `mariadbd`, or `None` (a loud skip; a failure under `CI`).
    fn start(port: u16) -> Option<Self> {
        let dir =
            std::env::temp_dir().join(format!("fsmstore-maria-restart-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ok()?;
        let installed = Command::new("mariadb-install-db")
            .args([
                // Ignore the machine's my.cnf (it runs the shared server as another user).
                "--no-defaults",
                &format!("--datadir={}", dir.join("data").display()),
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|status| status.success())
            .unwrap_or(false);
        // The guard from here on: its drop stops what started and removes the directory.
        let mut server = PrivateServer {
            dir,
            port,
            process: None,
        };
        if !installed {
            return skip("mariadb-install-db failed (not installed, or not root?)");
        }
        if !server.launch() {
            return skip("mariadbd did not come up");
        }
        Some(server)
    }

    /// Starts `mariadbd` and waits until it accepts connections.
    fn launch(&mut self) -> bool {
        let child = Command::new("/usr/sbin/mariadbd")
            .args([
                "--no-defaults",
                &format!("--datadir={}", self.dir.join("data").display()),
                &format!("--port={}", self.port),
                "--bind-address=127.0.0.1",
                &format!("--socket={}", self.dir.join("mysqld.sock").display()),
                &format!("--pid-file={}", self.dir.join("mysqld.pid").display()),
                "--user=root",
                "--skip-log-bin",
                "--innodb-flush-log-at-trx-commit=2",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else { return false };
        self.process = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            // Our own server, not something else on the port: it must still be running.
            let running = self
                .process
                .as_mut()
                .is_some_and(|child| matches!(child.try_wait(), Ok(None)));
            if !running {
                return false;
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Stops the server (SIGTERM: a clean shutdown that ends every session).
    fn shut_down(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/mysql", self.port)
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.shut_down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn skip<T>(why: &str) -> Option<T> {
    if std::env::var_os("CI").is_some() {
        panic!("private MariaDB: {why}");
    }
    eprintln!("*** SKIPPED: private MariaDB: {why}");
    None
}

/// A port nothing listens on now (the OS picks it), never the shared servers' 5432/3306.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

fn key(i: i64) -> StorageKey {
    StorageKey::new(BotId(1), ChatId(i % KEYS), UserId(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_load_loses_no_acknowledged_write() {
    let port = free_port();
    let Some(server) = PrivateServer::start(port) else {
        return;
    };
    let server = Arc::new(Mutex::new(server));
    let url = server.lock().unwrap().url();
    let options = StorageOptions::default()
        .schema(SchemaPolicy::Upgrade)
        .pool_max(4)
        .connect_timeout(Duration::from_secs(2));
    let config = MysqlConfig::from_url(&url)
        .unwrap()
        .options(options)
        .unwrap();
    let storage = Arc::new(MysqlStorage::open(config).await.expect("open"));
    let acked = Arc::new(Mutex::new(vec![-1_i64; KEYS as usize]));
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Mutex::new((0_u64, 0_u64, 0_u64))); // ok, transient, unknown
    let writers: Vec<_> = (0..4_i64)
        .map(|w| {
            let (storage, acked, stop, counts) = (
                Arc::clone(&storage),
                Arc::clone(&acked),
                Arc::clone(&stop),
                Arc::clone(&counts),
            );
            tokio::spawn(async move {
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let result = storage
                        .set_data(&key(i), &data!({"i": i, "pair": [i, i]}))
                        .await;
                    {
                        let mut counts = counts.lock().unwrap();
                        match result {
                            Ok(()) => {
                                counts.0 += 1;
                                let slot = &mut acked.lock().unwrap()[(i % KEYS) as usize];
                                *slot = (*slot).max(i);
                            }
                            Err(err) if err.kind() == ErrorKind::OutcomeUnknown => counts.2 += 1,
                            Err(err) => {
                                assert!(err.is_transient(), "during the restart: {err:?}");
                                counts.1 += 1;
                            }
                        }
                    }
                    i += 4;
                    if i % 64 < 4 {
                        // Let the restart and the other writers in.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restarted = tokio::task::spawn_blocking({
        let server = Arc::clone(&server);
        move || {
            let mut server = server.lock().unwrap();
            server.shut_down();
            server.launch()
        }
    })
    .await
    .unwrap();
    assert!(restarted, "mariadbd did not come back");
    let before = counts.lock().unwrap().0;
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("writer panicked");
    }
    let (ok, errors, unknown) = *counts.lock().unwrap();
    eprintln!(
        "restart mid-load: {ok} acknowledged writes, {errors} transient errors, {unknown} unknown outcomes"
    );
    assert!(
        ok > before,
        "no write succeeded after the restart: the pool did not recover"
    );
    let acked = acked.lock().unwrap().clone();
    for k in 0..KEYS {
        let last = acked[k as usize];
        let got = storage.get_data(&key(k)).await.unwrap();
        let i = got["i"].as_i64().expect("written");
        assert!(
            i >= last,
            "key {k}: holds write {i}, write {last} was acknowledged"
        );
        assert_eq!(got["pair"], fsmstore_core::serde_json::json!([i, i]));
    }
    storage.close().await.unwrap();
}
