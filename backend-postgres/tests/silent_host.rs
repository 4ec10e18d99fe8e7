//! A PostgreSQL server that goes silent: a private server inside a network namespace of
//! this test's own, whose link is cut while writers run by dropping every packet (nothing
//! is refused or closed; the kernel would retry for many minutes). Every call returns
//! within its deadline (`call_timeout` for an answer, `connect_timeout` for a connection),
//! a write as `OutcomeUnknown` or a transient connection error, a read as a transient
//! connection error; once the link is back the same storage writes again, and no
//! acknowledged write is lost.
//!
//! Where this machine can not start one (no PostgreSQL server binaries in
//! `/usr/lib/postgresql`, no network namespace: not root or no iproute2, `initdb` or
//! `pg_ctl start` failing), the test is listed as ignored, with the reason (a failure under
//! `CI`), never as passed (`harness = false`: [`fsmstore_conformance::Suite`]).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use fsmstore_conformance::faults::{
    free_port, private_server_unavailable, silent_host_ends_every_call_within_its_deadline,
};
use fsmstore_conformance::netns::Netns;
use fsmstore_conformance::{block_on_threads, Needs, Suite};
use fsmstore_core::Storage;
use fsmstore_postgres::{PgConfig, PgStorage};

const CALL_TIMEOUT: Duration = Duration::from_millis(1500);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);

/// The probe starts the private server in its namespace (all the test needs) and hands it
/// to the test.
fn main() -> std::process::ExitCode {
    let mut started = None;
    let needs = Needs::probe(
        "a private PostgreSQL in a network namespace could not be started here (it needs \
         PostgreSQL's server binaries in /usr/lib/postgresql, root and iproute2; stderr says \
         what failed)",
        || {
            started = Server::start();
            started.is_some().then_some(())
        },
    );
    let mut suite = Suite::new().one_at_a_time();
    suite.test(
        "a_silent_host_ends_every_call_within_its_deadline",
        &needs,
        move || {
            let server = started.expect("probed: the private PostgreSQL started");
            block_on_threads(4, a_silent_host_ends_every_call_within_its_deadline(server))
        },
    );
    suite.run()
}

/// A private PostgreSQL listening inside `netns`, stopped (and its directory removed) on
/// drop.
struct Server {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    netns: Netns,
}

impl Server {
    /// Starts it, or `None` when this machine can not, said on stderr (a panic under
    /// `CI`).
    fn start() -> Option<Server> {
        let skip = |why: &str| private_server_unavailable("PostgreSQL in a network namespace", why);
        let Some(bin) = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|dirs| {
                dirs.filter_map(|entry| entry.ok())
                    .map(|entry| entry.path().join("bin"))
                    .find(|bin| bin.join("initdb").exists())
            })
        else {
            return skip("no PostgreSQL server binaries in /usr/lib/postgresql");
        };
        let netns = match Netns::create() {
            Ok(netns) => netns,
            Err(err) => return skip(&err),
        };
        let dir = std::env::temp_dir().join(format!("fsmstore-pg-silent-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(err) = std::fs::create_dir_all(&dir) {
            return skip(&format!("can not create {}: {err}", dir.display()));
        }
        let server = Server {
            bin,
            dir,
            port: free_port(),
            netns,
        };
        let dir = server.dir.to_str()?.to_owned();
        if !ok(Command::new("chown").args(["-R", "postgres", &dir])) {
            return skip("can not hand a data directory to the postgres user (not root?)");
        }
        let initdb = server.bin.join("initdb");
        if !ok(Command::new("runuser").args([
            "-u",
            "postgres",
            "--",
            initdb.to_str()?,
            "-D",
            &server.data(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ])) {
            return skip("initdb failed");
        }
        // Clients come from the host's end of the veth pair.
        let hba = server.dir.join("data").join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba)
            .map(|rules| rules + "\nhost all all 10.213.0.0/16 trust\n")
            .and_then(|rules| std::fs::write(&hba, rules));
        if let Err(err) = rules {
            return skip(&format!(
                "can not add the namespace to {}: {err}",
                hba.display()
            ));
        }
        if !server.pg_ctl(&["start"]) {
            return skip("pg_ctl start failed inside the namespace");
        }
        Some(server)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// `pg_ctl` inside the namespace, as the postgres user.
    fn pg_ctl(&self, action: &[&str]) -> bool {
        let options = format!(
            "-p {} -k {} -c listen_addresses={} -c fsync=off",
            self.port,
            self.dir.display(),
            self.netns.address()
        );
        let log = self.dir.join("server.log").display().to_string();
        let pg_ctl = self.bin.join("pg_ctl").display().to_string();
        let data = self.data();
        let mut args = vec![
            "-u", "postgres", "--", &pg_ctl, "-D", &data, "-o", &options, "-l", &log, "-w",
        ];
        args.extend_from_slice(action);
        ok(&mut self.netns.command("runuser", &args))
    }

    fn url(&self) -> String {
        format!(
            "postgres://postgres@{}:{}/postgres?schema=upgrade&pool_max=4&call_timeout_ms={}&connect_timeout_ms={}",
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
        self.pg_ctl(&["-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ok(command: &mut Command) -> bool {
    command
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false)
}

/// On `server`, the private PostgreSQL the probe started (`Server::start`).
async fn a_silent_host_ends_every_call_within_its_deadline(server: Server) {
    let storage: Arc<dyn Storage> = Arc::new(
        PgStorage::open(PgConfig::from_url(&server.url()).unwrap())
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
