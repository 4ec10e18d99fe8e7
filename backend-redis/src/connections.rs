//! [`Connections`]: what a Redis storage, its whole-keyspace operations and its isolation
//! share: one multiplexed connection that reconnects by itself (the `redis` crate's
//! `ConnectionManager`) or a cluster connection that follows the cluster's slots, the
//! settings, the closed flag, and core's [`CallRunner`] running each call. Behind Redis
//! Sentinel the connection is to the primary the sentinels name, replaced when that
//! server stops taking writes or answering.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use fsmstore_core::{CallRunner, Error, Failure, Fault, Phase, Replay, Result};
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, Cmd, FromRedisValue, IntoConnectionInfo, Pipeline, RedisFuture,
    RedisResult, Value,
};

use crate::config::{RedisConfig, SentinelTarget};
use crate::error::{classify, from_redis};

/// One server's connection, or a cluster's.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server (or the primary a URL names).
    Single(ConnectionManager),
    /// The primary the sentinels named: never reconnected to the same address by itself
    /// (a restarted node may come back as an empty primary the sentinels are about to
    /// demote); a failure asks the sentinels again.
    Primary(MultiplexedConnection),
    /// Redis Cluster: each command goes to the node of its key's slot.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Primary(conn) => conn.req_packed_command(cmd),
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
            Conn::Primary(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            Conn::Primary(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}

/// The sentinels of a storage behind Redis Sentinel.
struct Sentinels {
    client: tokio::sync::Mutex<SentinelClient>,
}

impl Sentinels {
    fn new(target: &SentinelTarget) -> Result<Self> {
        let node = target
            .node
            .as_str()
            .into_connection_info()
            .map_err(|err| Error::Config(format!("invalid Redis URL ({})", err.category())))?;
        #[allow(unused_mut)]
        let mut info = SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(node.redis_settings().clone());
        #[cfg(feature = "tls")]
        if target.node.starts_with("rediss:") {
            info = info.set_tls_mode(redis::TlsMode::Secure);
        }
        let client = SentinelClient::build(
            target.sentinels.clone(),
            target.service.clone(),
            Some(info),
            SentinelServerType::Master,
        )
        .map_err(|err| {
            Error::Config(format!(
                "invalid Redis Sentinel settings ({})",
                err.category()
            ))
        })?;
        Ok(Sentinels {
            client: tokio::sync::Mutex::new(client),
        })
    }

    /// A connection to the primary the sentinels name (the crate checks that the server
    /// says it is a primary).
    async fn primary(&self, connect: Duration) -> RedisResult<MultiplexedConnection> {
        let client = self.client.lock().await.async_get_client().await?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect))
            .set_response_timeout(None);
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

/// A connection manager for `client`: it bounds its own connects and reconnects in the
/// background after a lost connection; answers are bounded by the runner.
async fn manager(client: Client, connect: Duration) -> RedisResult<ConnectionManager> {
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect))
        .set_response_timeout(None);
    ConnectionManager::new_with_config(client, manager_config).await
}

/// Where a storage's calls go.
enum Link {
    /// One server, or a cluster: the connection reconnects (or follows the slots) by
    /// itself.
    Fixed(Conn),
    /// Behind Sentinel: the connection to the primary the sentinels named, with how many
    /// times it was replaced (a task that saw a failure on an older one does not ask
    /// again), replaced by [`Connections::follow_primary`].
    Sentinel {
        current: RwLock<(Conn, u64)>,
        /// Boxed: the driver's sentinel client is large.
        sentinels: Box<Sentinels>,
    },
}

/// What [`Connections::open`] connects to (a local of one call: its size does not matter).
#[allow(clippy::large_enum_variant)]
enum Opening<'a> {
    Cluster(&'a [String]),
    Sentinel(Box<Sentinels>),
    Single(Client),
}

/// The connections of one storage.
pub(crate) struct Connections {
    link: Link,
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
        // Built here: their errors are not the driver's.
        let opening = match (config.cluster_nodes(), config.sentinel()) {
            (Some(nodes), _) => Opening::Cluster(nodes),
            (None, Some(target)) => Opening::Sentinel(Box::new(Sentinels::new(target)?)),
            (None, None) => Opening::Single(config.client()?),
        };
        let opened = async {
            Ok::<_, redis::RedisError>(match opening {
                Opening::Cluster(nodes) => Link::Fixed(Conn::Cluster(
                    ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                        .connection_timeout(connect.min(std::time::Duration::from_secs(1)))
                        .retries(3)
                        // Every answer is bounded by the runner's `call_timeout`.
                        .response_timeout(config.options.call_timeout)
                        .build()?
                        .get_async_connection()
                        .await?,
                )),
                Opening::Single(client) => {
                    Link::Fixed(Conn::Single(manager(client, connect).await?))
                }
                Opening::Sentinel(sentinels) => Link::Sentinel {
                    current: RwLock::new((Conn::Primary(sentinels.primary(connect).await?), 0)),
                    sentinels,
                },
            })
        };
        let link = tokio::time::timeout(connect, opened)
            .await
            .map_err(|_| {
                Error::connection(
                    format!("no answer from Redis within {connect:?} (connect_timeout)"),
                    None,
                )
            })?
            .map_err(from_redis)?;
        Ok(Connections {
            link,
            runner: CallRunner::new("Redis", &config.options),
            config,
            closed: AtomicBool::new(false),
        })
    }

    /// The connection calls use now, and behind Sentinel how many times it was replaced.
    fn current(&self) -> (Conn, Option<u64>) {
        match &self.link {
            Link::Fixed(conn) => (conn.clone(), None),
            Link::Sentinel { current, .. } => {
                let current = current
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                (current.0.clone(), Some(current.1))
            }
        }
    }

    /// Behind Sentinel, after a call on connection `generation` failed (lost, or refused
    /// for want of a primary there): asks the sentinels where the primary is now and
    /// connects to it (within `connect_timeout`). When they name no primary that answers
    /// as one, the connection stays as it is and the next failure asks again.
    async fn follow_primary(&self, generation: u64) {
        let Link::Sentinel { current, sentinels } = &self.link else {
            return;
        };
        let replaced = || {
            current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .1
                != generation
        };
        let connect = self.config.options.connect_timeout;
        let moved = async {
            // Another task replaced it meanwhile.
            if replaced() {
                return Ok(None);
            }
            sentinels.primary(connect).await.map(Some)
        };
        match tokio::time::timeout(connect, moved).await {
            Ok(Ok(Some(primary))) => {
                let mut current = current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if current.1 == generation {
                    *current = (Conn::Primary(primary), generation + 1);
                    tracing::info!("fsmstore: connected to the primary Redis Sentinel names");
                }
            }
            Ok(Ok(None)) => {}
            Ok(Err(err)) => tracing::debug!("fsmstore: Redis Sentinel: no primary yet: {err}"),
            Err(_) => tracing::debug!("fsmstore: Redis Sentinel: no answer within {connect:?}"),
        }
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
        if !matches!(self.link, Link::Fixed(Conn::Cluster(_))) {
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
                let (conn, generation) = self.current();
                match self.runner.within(Phase::Applying, command(conn)).await? {
                    Ok(value) => Ok(value),
                    Err(err) => {
                        // A connection that could not be made sent nothing.
                        let phase = if err.is_connection_refusal() {
                            Phase::Before
                        } else {
                            Phase::Applying
                        };
                        let failure = classify(&err);
                        if let (Some(generation), true) = (generation, failure != Failure::Other) {
                            // Behind Sentinel: the primary may have moved, or this
                            // connection is gone. (Boxed: a rare path, kept out of every
                            // call's future.)
                            Box::pin(self.follow_primary(generation)).await;
                        }
                        Err(Fault::driver(err, failure, phase))
                    }
                }
            })
            .await
    }
}
