//! [`Connections`]: what a Redis storage, its whole-keyspace operations and its isolation
//! share: one multiplexed connection that reconnects by itself (the `redis` crate's
//! `ConnectionManager`) or a cluster connection that follows the cluster's slots, the
//! settings, the closed flag, and core's [`CallRunner`] running each call.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use fsmstore_core::{CallRunner, Error, Fault, Phase, Replay, Result};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Value};

use crate::config::RedisConfig;
use crate::error::{classify, from_redis};

/// One server's connection, or a cluster's.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server (or the primary a URL names).
    Single(ConnectionManager),
    /// Redis Cluster: each command goes to the node of its key's slot.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}

/// The connections of one storage.
pub(crate) struct Connections {
    manager: Conn,
    config: RedisConfig,
    closed: AtomicBool,
    runner: CallRunner,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnections")
            .field("config", &self.config)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Connections {
    /// Connects, waiting at most `connect_timeout`.
    ///
    /// # Errors
    /// [`Error::Connection`] when the server can not be reached in time; [`Error::Config`]
    /// for a refused login.
    pub(crate) async fn open(config: RedisConfig) -> Result<Self> {
        let connect = config.options.connect_timeout;
        // The cluster's seed nodes, or the one server's client (built here: its error is
        // not the driver's).
        let target = match config.cluster_nodes() {
            Some(nodes) => Ok(nodes),
            None => Err(config.client()?),
        };
        let opened = async {
            match target {
                Ok(nodes) => ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .connection_timeout(connect.min(std::time::Duration::from_secs(1)))
                    .retries(3)
                    // Every answer is bounded by the runner's `call_timeout`.
                    .response_timeout(config.options.call_timeout)
                    .build()?
                    .get_async_connection()
                    .await
                    .map(Conn::Cluster),
                Err(client) => {
                    // The manager only bounds its own connects, and reconnects in the
                    // background after a lost connection.
                    let manager_config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(connect))
                        .set_response_timeout(None);
                    ConnectionManager::new_with_config(client, manager_config)
                        .await
                        .map(Conn::Single)
                }
            }
        };
        let manager = tokio::time::timeout(connect, opened)
            .await
            .map_err(|_| {
                Error::connection(
                    format!("no answer from Redis within {connect:?} (connect_timeout)"),
                    None,
                )
            })?
            .map_err(from_redis)?;
        Ok(Connections {
            manager,
            runner: CallRunner::new("Redis", &config.options),
            config,
            closed: AtomicBool::new(false),
        })
    }

    /// The settings.
    pub(crate) fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Whether [`Connections::close`] ran.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Later calls fail with [`Error::Closed`]; the connection closes with the last handle.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// The primaries' addresses of a cluster (`None`: one server), from `CLUSTER NODES`.
    pub(crate) async fn primaries(&self) -> Result<Option<Vec<(String, u16)>>> {
        if !matches!(self.manager, Conn::Cluster(_)) {
            return Ok(None);
        }
        let text: String = self
            .call("cluster nodes", Replay::Safe, |mut conn| async move {
                redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let mut primaries = Vec::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let (Some(address), Some(flags)) = (fields.get(1), fields.get(2)) else {
                continue;
            };
            if !flags.split(',').any(|flag| flag == "master") || flags.contains("fail") {
                continue;
            }
            let address = address.split('@').next().unwrap_or(address);
            if let Some((host, port)) = address.rsplit_once(':') {
                if let Ok(port) = port.parse() {
                    primaries.push((host.to_owned(), port));
                }
            }
        }
        Ok(Some(primaries))
    }

    /// Runs `cmd` on node `node` of a cluster, or on the server.
    pub(crate) async fn on_node<T: FromRedisValue>(
        &self,
        operation: &'static str,
        node: Option<&(String, u16)>,
        cmd: &Cmd,
    ) -> Result<T> {
        self.call(operation, Replay::Safe, |conn| async move {
            match (conn, node) {
                (Conn::Cluster(mut conn), Some((host, port))) => {
                    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: host.clone(),
                        port: *port,
                    });
                    let value = conn.route_command(cmd.clone(), routing).await?;
                    T::from_redis_value(value).map_err(Into::into)
                }
                (mut conn, _) => cmd.query_async(&mut conn).await,
            }
        })
        .await
    }

    /// Runs write `command` on key `key` as [`Connections::call`] does, then, with
    /// `wait_replicas`, `WAIT`s on the key's primary for that many replicas to have it.
    ///
    /// # Errors
    /// As [`Connections::call`]; [`Error::OutcomeUnknown`] when fewer replicas confirmed
    /// the write within `wait_timeout` (the primary has it; a failover now may lose it).
    pub(crate) async fn write<T, F, Fut>(
        &self,
        operation: &'static str,
        key: &str,
        command: F,
    ) -> Result<T>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let value = self.call(operation, Replay::Unsafe, command).await?;
        let (wanted, timeout) = (self.config.wait_replicas, self.config.wait_timeout);
        if wanted == 0 {
            return Ok(value);
        }
        let mut wait = redis::cmd("WAIT");
        wait.arg(wanted).arg(timeout.as_millis().max(1) as u64);
        let confirmed: std::result::Result<i64, Error> = self
            .call("wait", Replay::Safe, |conn| {
                let wait = &wait;
                async move {
                    match conn {
                        Conn::Cluster(mut conn) => {
                            let route = Route::with_key(key.as_bytes(), SlotAddr::Master);
                            let routing =
                                RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                            let value = conn.route_command(wait.clone(), routing).await?;
                            i64::from_redis_value(value).map_err(Into::into)
                        }
                        mut conn => wait.query_async(&mut conn).await,
                    }
                }
            })
            .await;
        match confirmed {
            Ok(n) if n >= i64::from(wanted) => Ok(value),
            Ok(n) => Err(Error::outcome_unknown(
                operation,
                format!("written on the primary, but {n} of {wanted} replicas confirmed it within {timeout:?} (wait_timeout): a failover now may lose it"),
            )),
            Err(err) => Err(Error::outcome_unknown(
                operation,
                format!("written on the primary; waiting for its replicas failed: {err}"),
            )),
        }
    }

    /// Runs `command` (one command, script or atomic pipeline: one round trip) under
    /// core's [`CallRunner`]: `replay` says whether it may run again after its connection
    /// was lost while it was in flight.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        operation: &'static str,
        replay: Replay,
        command: F,
    ) -> Result<T>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.runner
            .run(operation, replay, from_redis, || async {
                if self.is_closed() {
                    return Err(Fault::Answer(Error::Closed));
                }
                match self
                    .runner
                    .within(Phase::Applying, command(self.manager.clone()))
                    .await?
                {
                    Ok(value) => Ok(value),
                    Err(err) => {
                        // A connection that could not be made sent nothing.
                        let phase = if err.is_connection_refusal() {
                            Phase::Before
                        } else {
                            Phase::Applying
                        };
                        let failure = classify(&err);
                        Err(Fault::driver(err, failure, phase))
                    }
                }
            })
            .await
    }
}
