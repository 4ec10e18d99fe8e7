//! A MariaDB server that goes silent: a private server inside a network namespace of this
//! test's own, whose link is cut while writers run by dropping every packet (nothing is
//! refused or closed). Every call returns within its deadline, with the error kind that
//! says what happened; once the link is back the same storage writes again, and no
//! acknowledged write is lost (`fsmstore_conformance::faults`, shared with PostgreSQL).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fsmstore_conformance::faults::{
    free_port, private_server_unavailable, silent_host_ends_every_call_within_its_deadline,
};
use fsmstore_conformance::netns::Netns;
use fsmstore_core::Storage;
use fsmstore_mysql::{MysqlConfig, MysqlStorage};

const CALL_TIMEOUT: Duration = Duration::from_millis(1500);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);

/// A private MariaDB listening inside `netns`; stopped, its directory removed, on drop.
struct Server {
    dir: PathBuf,
    port: u16,
    process: Option<Child>,
    netns: Netns,
}

impl Server {
    fn start() -> Option<Server> {
        let skip = |why: &str| private_server_unavailable("MariaDB in a network namespace", why);
        let netns = match Netns::create() {
            Ok(netns) => netns,
            Err(err) => return skip(&err),
        };
        let dir =
            std::env::temp_dir().join(format!("fsmstore-maria-silent-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ok()?;
        let mut server = Server {
            dir,
            port: free_port(),
            process: None,
            netns,
        };
        let installed = Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                &format!("--datadir={}", server.dir.join("data").display()),
                "--user=root",
                "--skip-test-db",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !installed {
            return skip("mariadb-install-db failed (not installed, or not root?)");
        }
        // Clients come from the host's end of the veth pair, as root with no password:
        // this server has no grants to check.
        let child = server
            .netns
            .command(
                "/usr/sbin/mariadbd",
                &[
                    "--no-defaults",
                    &format!("--datadir={}", server.dir.join("data").display()),
                    &format!("--port={}", server.port),
                    &format!("--bind-address={}", server.netns.address()),
                    &format!("--socket={}", server.dir.join("mysqld.sock").display()),
                    &format!("--pid-file={}", server.dir.join("mysqld.pid").display()),
                    "--user=root",
                    "--skip-grant-tables",
                    "--skip-log-bin",
                    "--innodb-flush-log-at-trx-commit=2",
                ],
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            return skip("mariadbd did not start");
        };
        server.process = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !server.greets() {
            if Instant::now() > deadline {
                return skip("mariadbd did not come up inside the namespace");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(server)
    }

    /// Whether the server sends its handshake packet: it accepts clients.
    fn greets(&self) -> bool {
        use std::io::Read;
        let address = format!("{}:{}", self.netns.address(), self.port);
        let Ok(address) = address.parse() else {
            return false;
        };
        let Ok(mut stream) =
            std::net::TcpStream::connect_timeout(&address, Duration::from_millis(500))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut header = [0u8; 4];
        stream.read_exact(&mut header).is_ok()
    }

    fn url(&self) -> String {
        format!(
            "mysql://root@{}:{}/mysql?schema=upgrade&pool_max=4&call_timeout_ms={}&connect_timeout_ms={}",
            self.netns.address(),
            self.port,
            CALL_TIMEOUT.as_millis(),
            CONNECT_TIMEOUT.as_millis()
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.netns.restore();
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_host_ends_every_call_within_its_deadline() {
    let Some(server) = Server::start() else {
        return;
    };
    let storage: Arc<dyn Storage> = Arc::new(
        MysqlStorage::open(MysqlConfig::from_url(&server.url()).unwrap())
            .await
            .expect("open on the private server"),
    );
    silent_host_ends_every_call_within_its_deadline(
        storage,
        &server.netns,
        CALL_TIMEOUT + CONNECT_TIMEOUT,
    )
    .await;
}
