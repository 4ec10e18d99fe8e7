//! [`Connections`]: what a MySQL storage, its whole-table operations, its migrator and its
//! isolation share: the pools, the failover hosts, the connection stash, the closed flag,
//! and core's [`CallRunner`] running each call.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fsmstore_core::{
    CallRunner, ConnectionStash, Error, Failure, Fault, Phase, Replay, Result, StorageOptions,
};
use futures_util::future::BoxFuture;
use sqlx::mysql::{MySql, MySqlConnection, MySqlPool};
use sqlx::pool::PoolConnection;
use sqlx::{AssertSqlSafe, Connection, SqlSafeStr, SqlStr};

use crate::config::MysqlConfig;
use crate::error::{classify, from_sqlx, Failure as Kind};
use crate::failover::Failover;

/// A write on a connection idle at least this long is preceded by a ping: a connection the
/// server dropped while idle (restart, `wait_timeout`, `KILL`) is found before the write is
/// sent, so the write can go to another connection instead of ending with an unknown
/// outcome. Busy connections skip the round trip.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// A stashed connection idle longer than this goes back through sqlx's pool instead, which
/// tests it and applies its idle and lifetime limits.
const STASH_IDLE: Duration = Duration::from_secs(30);

/// A statement text from core as a sqlx string. Core builds every statement from validated,
/// quoted identifiers and binds every value, which is what `AssertSqlSafe` asserts.
pub(crate) fn sql(text: &str) -> SqlStr {
    AssertSqlSafe(Arc::<str>::from(text)).into_sql_str()
}

/// A failed step of an attempt, with the phase it failed in.
pub(crate) struct Failed {
    phase: Phase,
    error: sqlx::Error,
    /// The connection may be left in a state a later call must not see (a transaction
    /// begun in a script and not ended): it is closed, never reused.
    close: bool,
}

impl Failed {
    /// A failure in `phase` after which the connection is closed, not reused.
    pub(crate) fn closing(phase: Phase, error: sqlx::Error) -> Failed {
        Failed {
            phase,
            error,
            close: true,
        }
    }

    /// A failure in `phase`; the connection goes back through sqlx's pool, which tests it.
    pub(crate) fn at(phase: Phase, error: sqlx::Error) -> Failed {
        Failed {
            phase,
            error,
            close: false,
        }
    }
}

/// The result of one attempt of a call.
pub(crate) type Attempt<T> = std::result::Result<T, Failed>;

/// Marks where a driver result sits in a call.
pub(crate) trait Staged<T> {
    /// A statement before anything is applied.
    fn before(self) -> Attempt<T>;
    /// The statement that applies the call.
    fn applying(self) -> Attempt<T>;
}

impl<T> Staged<T> for sqlx::Result<T> {
    fn before(self) -> Attempt<T> {
        self.map_err(|error| Failed {
            phase: Phase::Before,
            error,
            close: false,
        })
    }

    fn applying(self) -> Attempt<T> {
        self.map_err(|error| Failed {
            phase: Phase::Applying,
            error,
            close: false,
        })
    }
}

/// One attempt of a call on a connection, with its arguments. A plain function of its
/// arguments (no captures), so the future borrows only the connection and the arguments.
pub(crate) type Op<A, T> = for<'c> fn(&'c mut MySqlConnection, &'c A) -> BoxFuture<'c, Attempt<T>>;

/// The connections of one storage (or of a migrator opened on its own).
pub(crate) struct Connections {
    pool: MySqlPool,
    /// Connections holding per-key locks ([`fsmstore_core::Database::isolation`]).
    lock_pool: MySqlPool,
    /// The hosts, and the one the pools connect to.
    failover: Failover,
    config: MysqlConfig,
    closed: AtomicBool,
    /// Connections of calls that succeeded, kept for the next call ([`ConnectionStash`]):
    /// sqlx pings every connection released to its pool (`COM_PING`, in a spawned task)
    /// before it can be acquired again, a second round trip per call that made calls up to
    /// 1.5x (2.5x for `update_data`) slower than the same statements on one bare connection
    /// (docs/benchmarks.md). A connection idle longer than [`STASH_IDLE`] goes back through
    /// the pool instead, which tests it and applies its idle and lifetime limits.
    stash: ConnectionStash<PoolConnection<MySql>>,
    runner: CallRunner,
}

impl Connections {
    /// Connects a pool of `size` to the first host of `config` that answers; the lock pool
    /// (`locks`) connects lazily to the same host.
    ///
    /// # Errors
    /// [`Error::Connection`] when no host can be reached.
    pub(crate) async fn open(config: MysqlConfig, size: u32, locks: u32) -> Result<Self> {
        let (pool, host) = config.pool_on_any(size).await?;
        let hosts = config.host_options();
        let lock_pool = config.lazy_pool(locks, hosts[host].clone());
        Ok(Connections {
            pool,
            lock_pool,
            failover: Failover::new(hosts, host),
            runner: CallRunner::new("MySQL", &config.options),
            stash: ConnectionStash::new(|_, idle| idle < STASH_IDLE, config.acquire_timeout()),
            config,
            closed: AtomicBool::new(false),
        })
    }

    /// Applies `options` (a retry policy decided after connecting) to calls from now on.
    pub(crate) fn set_options(&mut self, options: StorageOptions) {
        self.runner = CallRunner::new("MySQL", &options);
        self.config.options = options;
    }

    /// The settings.
    pub(crate) fn config(&self) -> &MysqlConfig {
        &self.config
    }

    /// The pool, for statements of a caller's own beside the storage's: the connections
    /// the stash kept idle go back to it first, so such a caller finds one. The storage's
    /// own statements go through [`Connections::acquire`] instead.
    pub(crate) fn pool_handed_back(&self) -> &MySqlPool {
        self.stash.release();
        &self.pool
    }

    /// A connection of the pool for a statement of the storage's own (the migrator's
    /// reads, the collation check): a stashed one if there is one. It goes back to the
    /// pool when dropped.
    ///
    /// # Errors
    /// The pool's error when none came within the connect timeout.
    pub(crate) async fn acquire(&self) -> sqlx::Result<PoolConnection<MySql>> {
        let (conn, _) = self.stash.checkout(|| self.pool.acquire()).await?;
        Ok(conn)
    }

    /// The pool of per-key locks.
    pub(crate) fn lock_pool(&self) -> &MySqlPool {
        &self.lock_pool
    }

    /// Whether [`Connections::close`] ran.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Closes the pools: calls after this fail with [`Error::Closed`].
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // sqlx's close waits for every checked-out connection: hand the stash back first.
        self.stash.drain();
        self.pool.close().await;
        // Held lock guards keep their connections until dropped: close the lock pool in
        // the background (idle connections at once, held ones when their guards go).
        let lock_pool = self.lock_pool.clone();
        tokio::spawn(async move { lock_pool.close().await });
    }

    /// Runs `op` with `args` under core's [`CallRunner`]: `replay` says whether the call
    /// may run again after its connection was lost while applying it.
    pub(crate) async fn call<A: Sync, T>(
        &self,
        operation: &'static str,
        replay: Replay,
        args: A,
        op: Op<A, T>,
    ) -> Result<T> {
        // Hosts left in this call: each is left at most once.
        let moves = AtomicUsize::new(0);
        self.runner
            .run(operation, replay, from_sqlx, || {
                self.attempt(replay, &args, op, &moves)
            })
            .await
    }

    /// After a connection to host `host` failed: moves to the next host if that one takes
    /// no fresh connection either (there being another host); returns whether it moved.
    async fn move_if_down(&self, host: usize) -> bool {
        if self.failover.can_move()
            && self.failover.current() == host
            && !self.failover.answers(host).await
        {
            self.failover
                .move_from(host, &[&self.pool, &self.lock_pool]);
            return true;
        }
        false
    }

    /// Moves from `host` if it is down, counting the move.
    async fn leave_if_down(&self, host: usize, moves: &AtomicUsize) {
        if self.move_if_down(host).await {
            moves.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One attempt on one connection (stashed or pooled). With failover hosts, a host that
    /// takes no fresh connection is left for the next one (at most once per host in a
    /// call); a connection that failed or went silent never goes back to the pool.
    async fn attempt<A: Sync, T>(
        &self,
        replay: Replay,
        args: &A,
        op: Op<A, T>,
        moves: &AtomicUsize,
    ) -> std::result::Result<T, Fault<sqlx::Error>> {
        if self.is_closed() {
            return Err(Error::Closed.into());
        }
        if moves.load(Ordering::Relaxed) >= self.failover.len() {
            // Every host was tried in this call.
            return Err(Fault::Exhausted);
        }
        // Waiting for a connection already retried until the connect timeout.
        let host = self.failover.current();
        let (mut conn, idle) = match self.stash.checkout(|| self.pool.acquire()).await {
            Ok(checked_out) => checked_out,
            // No connection came: if the current host takes no fresh one either (refused,
            // silent, not ready), the next connection goes to the next host. A busy pool
            // also times out; its host still answers, and the storage stays.
            Err(err)
                if self.failover.can_move()
                    && matches!(classify(&err), Kind::Unreachable | Kind::ConnectionLost) =>
            {
                if !self.move_if_down(host).await {
                    return Err(from_sqlx(err).into());
                }
                moves.fetch_add(1, Ordering::Relaxed);
                return Err(Fault::driver(err, Failure::ConnectionLost, Phase::Before));
            }
            Err(err) => return Err(from_sqlx(err).into()),
        };
        if replay == Replay::Unsafe && idle >= PING_AFTER_IDLE {
            // Boxed (see `ConnectionStash::checkout`): reads and busy connections skip it.
            match self
                .runner
                .within(Phase::Before, Box::pin(conn.ping()))
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    self.leave_if_down(host, moves).await;
                    return Err(Fault::driver(err, Failure::ConnectionLost, Phase::Before));
                }
                Err(silent) => {
                    // A host gone silent is left as a dead one is.
                    conn.close_on_drop();
                    drop(conn);
                    self.move_if_down(host).await;
                    return Err(silent);
                }
            }
        }
        let Failed {
            phase,
            error,
            close,
        } = match self
            .runner
            .within(Phase::Applying, op(&mut conn, args))
            .await
        {
            Ok(Ok(value)) => {
                self.stash.checkin(conn);
                return Ok(value);
            }
            Ok(Err(failed)) => failed,
            Err(silent) => {
                conn.close_on_drop();
                drop(conn);
                self.move_if_down(host).await;
                return Err(silent);
            }
        };
        let kind = classify(&error);
        if close || kind == Kind::Unreachable {
            // A node cut off from the cluster (1047) still answers pings: this connection
            // must not go back to the pool.
            conn.close_on_drop();
        }
        // Not back on the stash: sqlx's release path tests (pings) or closes it.
        drop(conn);
        // A lost connection alone (an idle timeout, a `KILL`) does not move the storage: a
        // host that takes no fresh connection does.
        if matches!(kind, Kind::ConnectionLost | Kind::Unreachable) {
            self.leave_if_down(host, moves).await;
        }
        let failure = match kind {
            Kind::ConnectionLost => Failure::ConnectionLost,
            Kind::SessionAborted => Failure::SessionAborted,
            // A Galera node cut off from the cluster answers, but refuses every statement
            // (1047, nothing applied): run the call again, on the next host if this one is
            // not ready.
            Kind::Unreachable if self.failover.can_move() => Failure::SessionAborted,
            _ => Failure::Other,
        };
        Err(Fault::driver(error, failure, phase))
    }
}
