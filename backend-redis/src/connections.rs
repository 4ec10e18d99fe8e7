//! [`Connections`]: what a Redis storage, its whole-keyspace operations and its isolation
//! share: one multiplexed connection that reconnects by itself (the `redis` crate's
//! `ConnectionManager`), the settings, the closed flag, and core's [`CallRunner`] running
//! each call.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use fsmstore_core::{CallRunner, Error, Fault, Phase, Replay, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisResult;

use crate::config::RedisConfig;
use crate::error::{classify, from_redis};

/// The connections of one storage.
pub(crate) struct Connections {
    manager: ConnectionManager,
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
        let client = config.client()?;
        let connect = config.options.connect_timeout;
        // Every answer is bounded by the runner's `call_timeout`; the manager only bounds
        // its own connects, and reconnects in the background after a lost connection.
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect))
            .set_response_timeout(None);
        let manager = tokio::time::timeout(
            connect,
            ConnectionManager::new_with_config(client, manager_config),
        )
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
        F: Fn(ConnectionManager) -> Fut,
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
