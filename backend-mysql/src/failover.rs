//! Moving a storage to another host when its host is unreachable (`hosts=`: the nodes of a
//! Galera cluster, every one taking writes).

use std::sync::atomic::{AtomicUsize, Ordering};

use fsmstore_core::sql::MysqlServer;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool};

/// The hosts of a storage and the one its pools connect to.
pub(crate) struct Failover {
    hosts: Vec<MySqlConnectOptions>,
    current: AtomicUsize,
}

impl Failover {
    /// `hosts` (the first is the URL's), starting on `current`.
    pub(crate) fn new(hosts: Vec<MySqlConnectOptions>, current: usize) -> Self {
        Failover {
            hosts,
            current: AtomicUsize::new(current),
        }
    }

    /// The host new connections go to.
    pub(crate) fn current(&self) -> usize {
        self.current.load(Ordering::Acquire)
    }

    /// Whether there is another host to move to.
    pub(crate) fn can_move(&self) -> bool {
        self.hosts.len() > 1
    }

    /// Whether host `index` takes a fresh connection within a second and is ready for
    /// statements (a Galera node cut off from the cluster accepts connections but is not
    /// `wsrep_ready`). Run after a connection to it failed: one lost connection
    /// (`wait_timeout`, `KILL`) is no reason to move, a host that refuses new ones is.
    pub(crate) async fn answers(&self, index: usize) -> bool {
        // Boxed: a connect's future is kilobytes, and every call's future would carry it.
        let probe = Box::pin(async {
            let mut conn = <sqlx::mysql::MySqlConnection as sqlx::Connection>::connect_with(
                &self.hosts[index],
            )
            .await?;
            // No row on a server without Galera.
            let ready: Option<(String, String)> = sqlx::query_as(MysqlServer::GALERA_READY)
                .fetch_optional(&mut conn)
                .await?;
            let _ = sqlx::Connection::close(conn).await;
            Ok::<_, sqlx::Error>(ready.is_none_or(|(_, value)| value == "ON"))
        });
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(1), probe).await,
            Ok(Ok(true))
        )
    }

    /// How many hosts there are.
    pub(crate) fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Points `pools`' new connections at the host after `from`, the host a call found
    /// unreachable, unless another call moved them already (many calls see one node die at
    /// once; only the first moves). Connections to the old host fail on their next use and
    /// are dropped.
    pub(crate) fn move_from(&self, from: usize, pools: &[&MySqlPool]) {
        if !self.can_move() {
            return;
        }
        let next = (from + 1) % self.hosts.len();
        if self
            .current
            .compare_exchange(from, next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let options = &self.hosts[next];
            tracing::warn!(
                from = %format!("{}:{}", self.hosts[from].get_host(), self.hosts[from].get_port()),
                to = %format!("{}:{}", options.get_host(), options.get_port()),
                "MySQL host unreachable; moving to the next host"
            );
            for pool in pools {
                pool.set_connect_options(options.clone());
            }
        }
    }
}
