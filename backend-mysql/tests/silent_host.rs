//! A MariaDB server that goes silent: a private server inside a network namespace of this
//! test's own, whose link is cut while writers run by dropping every packet (nothing is
//! refused or closed). Every call returns within its deadline, with the error kind that
//! says what happened; once the link is back the same storage writes again, and no
//! acknowledged write is lost (`fsmstore_conformance::faults`, shared with PostgreSQL).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fsmstore_conformance::faults::{
    free_port, private_server_unavailable, silent_host_ends_every_call_within_its_deadline,
};
use fsmstore_conformance::netns::Netns;
use fsmstore_conformance::{block_on_threads, Needs, Suite};
use fsmstore_core::Storage;
use fsmstore_mysql::{MysqlConfig, MysqlStorage};

const CALL_TIMEOUT: Duration = Duration::from_millis(1500);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);

/// The test is listed as ignored, with the reason, when what it needs is missing (MariaDB's
/// server binaries; root, `ip` and `tc` for the namespace): a failure under `CI`, never a
/// pass. Once they are there, a private server that does not start is a failure.
fn main() -> std::process::ExitCode {
    let needs = match what_is_needed() {
        Ok(()) => Needs::Met,
        Err(why) => Needs::probe(
            &format!("private MariaDB in a network namespace: {why}"),
            || private_server_unavailable("MariaDB in a network namespace", &why),
        ),
    };
    let mut suite = Suite::new().one_at_a_time();
    suite.test(
        "a_silent_host_ends_every_call_within_its_deadline",
        &needs,
        || block_on_threads(4, a_silent_host_ends_every_call_within_its_deadline()),
    );
    suite.run()
}

/// Whether what [`Server::start`] needs is there: `mariadb-install-db` and `tc` on `PATH`,
/// `/usr/sbin/mariadbd`, and a network namespace (root and `ip`: one is made and removed
/// again); if not, what is missing.
fn what_is_needed() -> Result<(), String> {
    let on_path = |program: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
    };
    for program in ["mariadb-install-db", "tc"] {
        if !on_path(program) {
            return Err(format!("{program} is not on PATH"));
        }
    }
    if !Path::new("/usr/sbin/mariadbd").is_file() {
        return Err("/usr/sbin/mariadbd is not installed".to_owned());
    }
    Netns::create().map(drop)
}

/// A private MariaDB listening inside `netns`; stopped, its directory removed, on drop.
struct Server {
    dir: PathBuf,
    port: u16,
    process: Option<Child>,
    netns: Netns,
}

impl Server {
    /// The namespace, `mariadb-install-db` + `mariadbd` inside it, or what went wrong.
    fn start() -> Result<Server, String> {
        let netns = Netns::create()?;
        let dir =
            std::env::temp_dir().join(format!("fsmstore-maria-silent-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|err| format!("{}: {err}", dir.display()))?;
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
            return Err("mariadb-install-db failed (not root?)".to_owned());
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
            return Err("mariadbd did not start".to_owned());
        };
        server.process = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !server.greets() {
            if Instant::now() > deadline {
                return Err("mariadbd did not come up inside the namespace".to_owned());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
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

async fn a_silent_host_ends_every_call_within_its_deadline() {
    let server = Server::start().unwrap_or_else(|why| {
        panic!("the private MariaDB in a network namespace did not start: {why}")
    });
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
