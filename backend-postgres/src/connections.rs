//! [`Connections`]: what a PostgreSQL storage, its whole-table operations, its migrator
//! and its isolation share: the pools, the connection stash in front of the pool, the
//! settings, the closed flag, and core's [`CallRunner`] running each statement.

use std::sync::atomic::{AtomicBool, Ordering};

use deadpool_postgres::Runtime;
use fsmstore_core::{CallRunner, ConnectionStash, Error, Failure, Fault, Phase, Replay, Result};
use futures_util::future::BoxFuture;
use tokio_postgres::{Row, Statement};

use crate::config::PgConfig;
use crate::error::{classify, from_pg, from_pool};
use crate::params::{untyped, Param};
use crate::pooled::{Manager, Object, Pool};

/// The connections of one storage (or of a migrator opened on its own).
pub(crate) struct Connections {
    pool: Pool,
    /// Connections of calls that succeeded, kept for the next call ([`ConnectionStash`]):
    /// deadpool's checkout and return (its wait timeout, hooks, recycling, and the copies
    /// of their futures) cost about two thousand instructions a call, an eighth of a point
    /// read (docs/benchmarks.md). A stashed connection whose connection task ended (the
    /// server closed it) is not handed out: deadpool drops it, as its recycling would.
    stash: ConnectionStash<Object>,
    /// Connections holding per-key locks ([`fsmstore_core::Database::isolation`]).
    lock_pool: Pool,
    config: PgConfig,
    closed: AtomicBool,
    runner: CallRunner,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnections")
            .field("config", &self.config)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish()
    }
}

/// The pool for `config`: `pool_max` connections, each wait and each connect bounded by
/// `connect_timeout`. Connects lazily.
///
/// Last in, first out: a call takes the connection used last. deadpool's default (first in,
/// first out) turns sequential calls over every idle connection in turn, and each server
/// process it wakes was idle longest, its CPU cache cold and often on the other processor:
/// after 32 concurrent calls had opened ten connections, one task's point reads took
/// 34.4 µs at the median against 27.4 µs on a handle with one connection
/// (docs/benchmarks.md, "The fast read path").
fn build_pool(config: &PgConfig, size: u32) -> Result<Pool> {
    Pool::builder(Manager(crate::tls::manager(config)?))
        .queue_mode(deadpool::managed::QueueMode::Lifo)
        .max_size(size as usize)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(config.options.connect_timeout))
        .create_timeout(Some(config.options.connect_timeout))
        .build()
        .map_err(|err| Error::Config(format!("PostgreSQL pool: {err}")))
}

/// One statement on a pooled connection: the prepared statement, or `None` to run `sql`
/// unnamed (behind a transaction pooler). A plain function (no captures), so its future
/// borrows only its arguments.
pub(crate) type PgOp<T> =
    for<'c> fn(
        &'c Object,
        Option<&'c Statement>,
        &'c str,
        &'c [Param<'c>],
    ) -> BoxFuture<'c, std::result::Result<T, tokio_postgres::Error>>;

/// A write returning the rows it changed.
pub(crate) fn execute_op<'c>(
    client: &'c Object,
    statement: Option<&'c Statement>,
    sql: &'c str,
    params: &'c [Param<'c>],
) -> BoxFuture<'c, std::result::Result<u64, tokio_postgres::Error>> {
    Box::pin(async move {
        match statement {
            Some(statement) => client.execute(statement, &untyped(params)).await,
            None => client.execute_typed(sql, params).await,
        }
    })
}

fn query_opt_op<'c>(
    client: &'c Object,
    statement: Option<&'c Statement>,
    sql: &'c str,
    params: &'c [Param<'c>],
) -> BoxFuture<'c, std::result::Result<Option<Row>, tokio_postgres::Error>> {
    Box::pin(async move {
        match statement {
            Some(statement) => client.query_opt(statement, &untyped(params)).await,
            None => client.query_typed_opt(sql, params).await,
        }
    })
}

fn query_op<'c>(
    client: &'c Object,
    statement: Option<&'c Statement>,
    sql: &'c str,
    params: &'c [Param<'c>],
) -> BoxFuture<'c, std::result::Result<Vec<Row>, tokio_postgres::Error>> {
    Box::pin(async move {
        match statement {
            Some(statement) => client.query(statement, &untyped(params)).await,
            None => client.query_typed(sql, params).await,
        }
    })
}

/// `fault` of an attempt on `client`: a connection that failed or went silent is taken out
/// of the pool, never handed to the next call.
fn discard(client: Object, fault: Fault<tokio_postgres::Error>) -> Fault<tokio_postgres::Error> {
    if fault.connection_suspect() {
        drop(Object::take(client));
    }
    fault
}

impl Connections {
    /// The connections for `config`: a pool of `pool_max`, and a lock pool of
    /// `lock_pool_max` (default: as large). Connects lazily.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad pool or TLS setting.
    pub(crate) fn new(config: PgConfig) -> Result<Self> {
        let locks = config.options.lock_pool_size();
        Self::sized(config.options.pool_max, locks, config)
    }

    /// The connections for `config` with pools of `size` and `locks` (a migrator needs
    /// few).
    pub(crate) fn sized(size: u32, locks: u32, config: PgConfig) -> Result<Self> {
        config.check_pooler()?;
        Ok(Connections {
            pool: build_pool(&config, size)?,
            stash: ConnectionStash::new(
                |client, _| !client.is_closed(),
                config.options.connect_timeout,
            ),
            lock_pool: build_pool(&config, locks)?,
            runner: CallRunner::new("PostgreSQL", &config.options),
            config,
            closed: AtomicBool::new(false),
        })
    }

    /// The settings.
    pub(crate) fn config(&self) -> &PgConfig {
        &self.config
    }

    /// The pool of per-key locks.
    pub(crate) fn lock_pool(&self) -> &Pool {
        &self.lock_pool
    }

    /// Whether [`Connections::close`] ran.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Closes both pools: calls after this fail with [`Error::Closed`].
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.stash.drain();
        self.pool.close();
        self.lock_pool.close();
    }

    /// A pooled connection: a stashed one if there is one. Every caller of the pool comes
    /// here (a call's attempt, the migrator's reads, the open check), so none waits on the
    /// pool while a connection sits idle in the stash. Dropped, it goes back to the pool.
    pub(crate) async fn client(&self) -> Result<Object> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        match self.stash.checkout(|| self.pool.get()).await {
            Ok((client, _)) => Ok(client),
            Err(err) => Err(from_pool(err)),
        }
    }

    /// Runs `op` on `sql` (prepared once per connection, or an unnamed statement behind a
    /// transaction pooler) with `params`, under core's [`CallRunner`]: `replay` says
    /// whether the statement may run again after its connection was lost while it ran.
    pub(crate) async fn run<T>(
        &self,
        operation: &'static str,
        replay: Replay,
        sql: &str,
        params: &[Param<'_>],
        op: PgOp<T>,
    ) -> Result<T> {
        self.runner
            .run(operation, replay, from_pg, || self.attempt(sql, params, op))
            .await
    }

    /// One attempt on one pooled connection. A connection that failed or went silent is
    /// taken out of the pool, never handed to the next call.
    async fn attempt<T>(
        &self,
        sql: &str,
        params: &[Param<'_>],
        op: PgOp<T>,
    ) -> std::result::Result<T, Fault<tokio_postgres::Error>> {
        // Waiting for a connection already retried until the connect timeout.
        let mut client = self.client().await?;
        let runner = &self.runner;
        let fault = |error: tokio_postgres::Error, phase| {
            let failure = classify(&error);
            Fault::driver(error, failure, phase)
        };
        // Preparing runs nothing: any failure here leaves the row as it was. Behind a
        // transaction pooler nothing is prepared: the unnamed statement is parsed, bound
        // and run in one round trip, on whichever server connection it gets. A statement
        // this connection prepared and kept is found by its text, waiting for nothing; a
        // first prepare (a round trip), or one past the kept texts, runs under the
        // statement timeout.
        let unnamed = self.config.pooler.unnamed_statements();
        // One scan of the kept texts per call: the slot found here is read below.
        let kept = if unnamed { None } else { client.slot(sql) };
        let fresh = if unnamed || kept.is_some() {
            None
        } else {
            // Boxed: a first prepare is rare, and inline it made every call's future 1.1 KB
            // larger (fsmstore_conformance::footprint).
            match runner
                .within(Phase::Before, Box::pin(client.prepare_new(sql)))
                .await
            {
                Ok(Ok(statement)) => Some(statement),
                Ok(Err(error)) => return Err(discard(client, fault(error, Phase::Before))),
                Err(silent) => return Err(discard(client, silent)),
            }
        };
        let prepared = match (&fresh, kept) {
            (Some(statement), _) => Some(statement),
            (None, Some(slot)) => Some(client.kept(slot)),
            (None, None) => None,
        };
        match runner
            .within(Phase::Applying, op(&client, prepared, sql, params))
            .await
        {
            Ok(Ok(value)) => {
                self.stash.checkin(client);
                Ok(value)
            }
            Ok(Err(error)) => Err(discard(client, fault(error, Phase::Applying))),
            Err(silent) => Err(discard(client, silent)),
        }
    }

    /// `statements` in one transaction on one connection, pipelined: `BEGIN`, each
    /// statement and `COMMIT` go out at once, one round trip and one commit for all. The
    /// rows each returned, only once the commit answered.
    ///
    /// # Errors
    /// [`Error::OutcomeUnknown`] when the connection was lost or went silent (the commit may
    /// have gone through); any other error means nothing was applied: a statement the
    /// server refused aborts the transaction, and its `COMMIT` rolls back.
    pub(crate) async fn write_batch(
        &self,
        statements: &[(&str, Vec<Param<'_>>)],
    ) -> Result<Vec<Vec<Row>>> {
        self.runner
            .run("write batch", Replay::Unsafe, from_pg, || {
                self.batch_attempt(statements)
            })
            .await
    }

    async fn batch_attempt(
        &self,
        statements: &[(&str, Vec<Param<'_>>)],
    ) -> std::result::Result<Vec<Vec<Row>>, Fault<tokio_postgres::Error>> {
        let client = self.client().await?;
        let runner = &self.runner;
        let mut prepared = Vec::with_capacity(statements.len());
        for (sql, _) in statements {
            if self.config.pooler.unnamed_statements() {
                prepared.push(None);
                continue;
            }
            match runner
                .within(Phase::Before, client.prepare_cached(sql))
                .await
            {
                Ok(Ok(statement)) => prepared.push(Some(statement)),
                Ok(Err(error)) => {
                    let failure = classify(&error);
                    return Err(discard(
                        client,
                        Fault::driver(error, failure, Phase::Before),
                    ));
                }
                Err(silent) => return Err(discard(client, silent)),
            }
        }
        let values: Vec<_> = statements
            .iter()
            .map(|(_, params)| untyped(params))
            .collect();
        // Each request goes out when its future is first polled: in this order.
        let pipeline = async {
            let begin = client.batch_execute("BEGIN");
            let rows =
                futures_util::future::join_all(statements.iter().zip(&prepared).zip(&values).map(
                    |(((sql, params), statement), values)| {
                        let client = &client;
                        async move {
                            match statement {
                                Some(statement) => client.query(statement, values).await,
                                None => client.query_typed(sql, params).await,
                            }
                        }
                    },
                ));
            let commit = client.batch_execute("COMMIT");
            futures_util::future::join3(begin, rows, commit).await
        };
        let (begin, rows, commit) = match runner.within(Phase::Applying, pipeline).await {
            Ok(answers) => answers,
            Err(silent) => return Err(discard(client, silent)),
        };
        // A lost connection anywhere: the commit may have gone through.
        let lost = begin
            .as_ref()
            .err()
            .into_iter()
            .chain(rows.iter().filter_map(|row| row.as_ref().err()))
            .chain(commit.as_ref().err())
            .any(|error| classify(error) == Failure::ConnectionLost);
        if lost {
            let error = begin
                .err()
                .into_iter()
                .chain(rows.into_iter().filter_map(std::result::Result::err))
                .chain(commit.err())
                .find(|error| classify(error) == Failure::ConnectionLost);
            return Err(match error {
                Some(error) => discard(
                    client,
                    Fault::driver(error, Failure::ConnectionLost, Phase::Applying),
                ),
                None => Fault::Exhausted,
            });
        }
        if let Err(error) = begin {
            // No transaction: each statement ran on its own and committed or not. What
            // each did is not known here, so nothing is run again.
            let failure = match classify(&error) {
                Failure::SessionAborted => Failure::SessionAborted,
                _ => Failure::ConnectionLost,
            };
            let phase = match failure {
                Failure::SessionAborted => Phase::Before,
                _ => Phase::Applying,
            };
            return Err(discard(client, Fault::driver(error, failure, phase)));
        }
        let mut answers = Vec::with_capacity(rows.len());
        let mut refused = None;
        for row in rows {
            match row {
                Ok(row) => answers.push(row),
                // The first is the cause; the rest say the transaction is aborted.
                Err(error) => {
                    refused.get_or_insert(error);
                }
            }
        }
        // A refused statement aborted the transaction, and its COMMIT rolled back; a
        // refused COMMIT committed nothing either.
        if let Some(error) = refused.or(commit.err()) {
            // A statement the client itself refused (while encoding it, no SQLSTATE) was
            // never sent, and the rest of the pipeline and its COMMIT were: what committed
            // is not known.
            let (failure, phase) = if error.as_db_error().is_none() {
                (Failure::ConnectionLost, Phase::Applying)
            } else {
                (classify(&error), Phase::Before)
            };
            return Err(discard(client, Fault::driver(error, failure, phase)));
        }
        self.stash.checkin(client);
        Ok(answers)
    }

    /// A statement returning at most one row.
    pub(crate) async fn query_opt(
        &self,
        operation: &'static str,
        replay: Replay,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Option<Row>> {
        self.run(operation, replay, sql, params, query_opt_op).await
    }

    /// A write returning the rows it changed: never replayed after a loss in flight.
    pub(crate) async fn execute(
        &self,
        operation: &'static str,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<u64> {
        self.run(operation, Replay::Unsafe, sql, params, execute_op)
            .await
    }

    /// A read returning rows.
    pub(crate) async fn query(
        &self,
        operation: &'static str,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>> {
        self.run(operation, Replay::Safe, sql, params, query_op)
            .await
    }
}
