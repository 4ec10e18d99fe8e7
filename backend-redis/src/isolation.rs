//! Per-key locks compatible with aiogram's `RedisEventIsolation`: the key `<id>:lock`, taken
//! with `SET key token NX PX lease` and released by a script that deletes it only while it
//! still holds the taker's token (redis-py's `Lock`), so a Python handler and a Rust
//! handler of one dialogue exclude each other.
//!
//! A holder that dies leaves the lock until its lease runs out (60 s, aiogram's default);
//! a live holder renews its lease every 20 s. What a lock is worth across a failover: Redis
//! replicates asynchronously, so a lock taken on a primary that dies before replicating it
//! is gone on the promoted replica, and a second handler may take it; fsmstore's writes
//! stay atomic, but two handlers may then run at once for one dialogue.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use fsmstore_core::{lock_timeout, Isolation, LocalIsolation, LockGuard, Result, StorageKey};

use crate::connections::Connections;
use crate::lease::Lease;

/// [`Isolation`] over `<id>:lock` keys.
pub(crate) struct RedisIsolation {
    conns: Arc<Connections>,
    prefix: String,
    local: LocalIsolation,
}

impl std::fmt::Debug for RedisIsolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisIsolation")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisIsolation {
    pub(crate) fn new(conns: Arc<Connections>, prefix: String) -> Self {
        let options = conns.config().options.clone();
        let open = Arc::clone(&conns);
        RedisIsolation {
            local: LocalIsolation::new(options).while_open(move || !open.is_closed()),
            conns,
            prefix,
        }
    }
}

/// A held lock: the Redis lease, and this process' own lock in front of it, released after
/// the lease (awaited, or dropped), so a task of this process waiting for the key finds
/// it free in Redis too instead of polling for it.
struct Held {
    lease: Option<Lease>,
    local: Option<LockGuard>,
}

impl Held {
    async fn release(mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release().await;
        }
        self.local.take();
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let (Some(lease), local) = (self.lease.take(), self.local.take()) else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    lease.release().await;
                    drop(local);
                });
            }
            // No runtime: the lease's own drop can do nothing either; it runs out.
            Err(_) => drop((lease, local)),
        }
    }
}

#[async_trait]
impl Isolation for RedisIsolation {
    async fn lock(&self, key: &StorageKey) -> Result<LockGuard> {
        let id = self.conns.config().options.row_id(key)?;
        let timeout = self.conns.config().options.isolation_timeout;
        let (local, remaining) = self.local.lock_in_front(key).await?;
        let deadline = Instant::now() + remaining;
        let lock_key = format!("{}{id}:lock", self.prefix);
        match Lease::take(&self.conns, lock_key, deadline).await? {
            Some(lease) => {
                let held = Held {
                    lease: Some(lease),
                    local: Some(local),
                };
                Ok(LockGuard::with_release(
                    move || Box::pin(held.release()),
                    None,
                ))
            }
            None => Err(lock_timeout(&id, timeout)),
        }
    }
}
