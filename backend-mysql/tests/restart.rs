//! A private MariaDB, started by this test on its own port, socket and data directory
//! (never the shared server on 3306), is restarted in the middle of a bounded load: calls
//! fail at worst with transient errors or an unknown outcome, the same storage recovers
//! without being reopened, and no acknowledged write is lost.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fsmstore_conformance::faults::{
    free_port, private_server_unavailable, writes_survive_a_restart,
};
use fsmstore_conformance::{block_on_threads, Needs, Suite};
use fsmstore_core::{SchemaPolicy, Storage, StorageOptions};
use fsmstore_mysql::{MysqlConfig, MysqlStorage};

/// The test is listed as ignored, with the reason, when MariaDB's server binaries are not
/// installed (a failure under `CI`), never as passed; once they are, a private server that
/// does not start is a failure.
fn main() -> std::process::ExitCode {
    let installed = match server_binaries() {
        Ok(()) => Needs::Met,
        Err(why) => Needs::probe(&format!("private MariaDB: {why}"), || {
            private_server_unavailable("MariaDB", &why)
        }),
    };
    let mut suite = Suite::new().one_at_a_time();
    suite.test(
        "a_restart_mid_load_loses_no_acknowledged_write",
        &installed,
        || block_on_threads(2, a_restart_mid_load_loses_no_acknowledged_write()),
    );
    suite.run()
}

/// Whether what [`PrivateServer::start`] runs is installed: `mariadb-install-db` on `PATH`
/// and `/usr/sbin/mariadbd`; if not, what is missing.
fn server_binaries() -> Result<(), String> {
    let on_path = |program: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
    };
    if !on_path("mariadb-install-db") {
        return Err("mariadb-install-db is not on PATH".to_owned());
    }
    if !Path::new("/usr/sbin/mariadbd").is_file() {
        return Err("/usr/sbin/mariadbd is not installed".to_owned());
    }
    Ok(())
}

/// A MariaDB of this test's own, stopped on drop.
struct PrivateServer {
    dir: PathBuf,
    port: u16,
    process: Option<Child>,
}

impl PrivateServer {
    /// `mariadb-install-db` + `mariadbd`, or what went wrong.
    fn start(port: u16) -> Result<Self, String> {
        let dir =
            std::env::temp_dir().join(format!("fsmstore-maria-restart-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|err| format!("{}: {err}", dir.display()))?;
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
            return Err("mariadb-install-db failed (not root?)".to_owned());
        }
        if !server.launch() {
            return Err("mariadbd did not come up".to_owned());
        }
        Ok(server)
    }

    /// Starts `mariadbd` and waits until it greets a client (a bare TCP connect is no
    /// proof of life: the kernel completes it into the listen queue before the server
    /// accepts anything).
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
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else { return false };
        self.process = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            // Our own server, not something else on the port: it must still be running.
            let running = self
                .process
                .as_mut()
                .is_some_and(|child| matches!(child.try_wait(), Ok(None)));
            if !running {
                return false;
            }
            if greets(self.port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Stops the server (SIGTERM: a clean shutdown that ends every session; SIGKILL if it
    /// has not exited after 30 s, so a hung server cannot hang the test).
    fn shut_down(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
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

/// Whether a server on `port` sends its handshake packet (it does once it accepted the
/// connection, i.e. once it is ready for clients).
fn greets(port: u16) -> bool {
    use std::io::Read;
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).is_ok()
}

async fn a_restart_mid_load_loses_no_acknowledged_write() {
    let port = free_port();
    let server = PrivateServer::start(port)
        .unwrap_or_else(|why| panic!("the private MariaDB did not start: {why}"));
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
    // The closure gets a clone: the guard (whose drop stops the server) lives to the end.
    let restarted = Arc::clone(&server);
    let report = writes_survive_a_restart(
        storage.clone(),
        move || {
            let mut server = restarted.lock().unwrap_or_else(|e| e.into_inner());
            server.shut_down();
            server.launch()
        },
        Duration::from_millis(700),
    )
    .await;
    eprintln!("restart mid-load: {report:?}");
    storage.close().await.unwrap();
    drop(server);
}
