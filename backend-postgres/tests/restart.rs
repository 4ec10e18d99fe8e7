//! A private PostgreSQL, started by this test on its own port and data directory (never the
//! shared server on 5432), is restarted in the middle of a bounded load: calls fail at worst
//! with transient errors or an unknown outcome, the same storage recovers without being
//! reopened, and no acknowledged write is lost.
//!
//! Where this machine can not start one (no PostgreSQL server binaries in
//! `/usr/lib/postgresql`, not root, `initdb` or `pg_ctl start` failing), the test is listed
//! as ignored, with the reason (a failure under `CI`), never as passed (`harness = false`:
//! [`fsmstore_conformance::Suite`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use fsmstore_conformance::faults::{
    free_port, private_server_unavailable, writes_survive_a_restart,
};
use fsmstore_conformance::{block_on_threads, Needs, Suite};
use fsmstore_core::{SchemaPolicy, Storage, StorageOptions};
use fsmstore_postgres::{PgConfig, PgStorage};

/// The probe starts the private server (all the test needs) and hands it to the test.
fn main() -> std::process::ExitCode {
    let mut started = None;
    let needs = Needs::probe(
        "a private PostgreSQL could not be started here (it needs PostgreSQL's server \
         binaries in /usr/lib/postgresql and root; stderr says what failed)",
        || {
            started = PrivateServer::start(free_port());
            started.is_some().then_some(())
        },
    );
    let mut suite = Suite::new().one_at_a_time();
    suite.test(
        "a_restart_mid_load_loses_no_acknowledged_write",
        &needs,
        move || {
            let server = started.expect("probed: the private PostgreSQL started");
            block_on_threads(2, a_restart_mid_load_loses_no_acknowledged_write(server))
        },
    );
    suite.run()
}

/// Where a private cluster lives and how to control it.
#[derive(Clone)]
struct Control {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

/// A PostgreSQL cluster of this test's own, stopped on drop.
struct PrivateServer {
    control: Control,
}

impl PrivateServer {
    /// `initdb` + `pg_ctl start` as the `postgres` user, or `None` when this machine can
    /// not (no PostgreSQL binaries, not root), said on stderr: the test is listed as
    /// ignored, with the reason (a panic under `CI`, so a failure).
    fn start(port: u16) -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|dirs| {
                dirs.filter_map(|entry| entry.ok())
                    .map(|entry| entry.path().join("bin"))
                    .find(|bin| bin.join("initdb").exists())
            });
        let Some(bin) = bin else {
            return skip("no PostgreSQL server binaries in /usr/lib/postgresql");
        };
        let dir = std::env::temp_dir().join(format!("fsmstore-pg-restart-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(err) = std::fs::create_dir_all(&dir) {
            return skip(&format!("can not create {}: {err}", dir.display()));
        }
        // The guard from here on: whatever fails below, its drop stops what started and
        // removes the directory.
        let server = PrivateServer {
            control: Control { bin, dir, port },
        };
        if !run("chown", &["-R", "postgres", server.control.dir.to_str()?]) {
            return skip("can not hand a data directory to the postgres user (not root?)");
        }
        let data = server.control.data();
        let initdb = server.control.bin.join("initdb");
        if !as_postgres(
            &initdb,
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        ) {
            return skip("initdb failed");
        }
        if !server.control.pg_ctl(&["start"]) {
            return skip("pg_ctl start failed");
        }
        Some(server)
    }
}

impl Control {
    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn pg_ctl(&self, action: &[&str]) -> bool {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        let data = self.data();
        let mut args = vec![
            "-D",
            data.as_str(),
            "-o",
            options.as_str(),
            "-l",
            log.as_str(),
            "-w",
        ];
        args.extend_from_slice(action);
        as_postgres(&self.bin.join("pg_ctl"), &args)
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.control.pg_ctl(&["-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.control.dir);
    }
}

fn run(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false)
}

fn as_postgres(program: &Path, args: &[&str]) -> bool {
    let mut all = vec!["-u", "postgres", "--", program.to_str().unwrap_or_default()];
    all.extend_from_slice(args);
    run("runuser", &all)
}

fn skip<T>(why: &str) -> Option<T> {
    private_server_unavailable("PostgreSQL", why)
}

/// On `server`, the private PostgreSQL the probe started (`PrivateServer::start` on a
/// free port).
async fn a_restart_mid_load_loses_no_acknowledged_write(server: PrivateServer) {
    let options = StorageOptions::default()
        .schema(SchemaPolicy::Upgrade)
        .pool_max(4);
    let config = PgConfig::from_url(&server.control.url())
        .unwrap()
        .options(options)
        .unwrap();
    let storage = Arc::new(PgStorage::open(config).await.expect("open"));
    let control = server.control.clone();
    // A fast restart: the server ends every session, then comes back.
    let report = writes_survive_a_restart(
        storage.clone(),
        move || control.pg_ctl(&["-m", "fast", "restart"]),
        Duration::from_millis(500),
    )
    .await;
    eprintln!("restart mid-load: {report:?}");
    storage.close().await.unwrap();
}
