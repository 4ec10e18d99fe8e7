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

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fsmstore_core::{
    lock_timeout, Isolation, LocalIsolation, LockGuard, Replay, Result, StorageKey,
};
use redis::Script;

use crate::connections::Connections;

/// How long a lock holds without renewal: aiogram's `RedisEventIsolation` default.
const LEASE: Duration = Duration::from_secs(60);

/// How often a held lock renews its lease.
const RENEW_EVERY: Duration = Duration::from_secs(20);

/// How long a waiter sleeps between tries: redis-py's `Lock` default.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// redis-py's release: delete the lock only while it holds our token.
const RELEASE: &str = r"
local token = redis.call('get', KEYS[1])
if not token or token ~= ARGV[1] then return 0 end
redis.call('del', KEYS[1])
return 1
";

/// Extends the lease while the lock holds our token.
const RENEW: &str = r"
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('pexpire', KEYS[1], ARGV[2])
";

/// [`Isolation`] over `<id>:lock` keys.
pub(crate) struct RedisIsolation {
    conns: Arc<Connections>,
    prefix: String,
    local: LocalIsolation,
    release: Arc<Script>,
    renew: Arc<Script>,
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
            release: Arc::new(Script::new(RELEASE)),
            renew: Arc::new(Script::new(RENEW)),
        }
    }
}

/// A fresh token: 32 hex digits, as redis-py's (`uuid1().hex`), unique per process and
/// call.
fn token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let high = hasher.finish();
    hasher.write_u64(high);
    format!("{high:016x}{:016x}", hasher.finish())
}

/// A held lock: renews its lease while held, releases it when dropped.
struct Held {
    renewing: tokio::task::JoinHandle<()>,
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
    _local: LockGuard,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renewing.abort();
        if let Some(release) = self.release.take() {
            release();
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
        let token = token();
        let lease_ms = LEASE.as_millis() as u64;
        loop {
            let taken: Option<String> = self
                .conns
                .call("lock", Replay::Unsafe, |mut conn| {
                    let (lock_key, token) = (&lock_key, &token);
                    async move {
                        redis::cmd("SET")
                            .arg(lock_key)
                            .arg(token)
                            .arg("NX")
                            .arg("PX")
                            .arg(lease_ms)
                            .query_async(&mut conn)
                            .await
                    }
                })
                .await?;
            if taken.is_some() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(lock_timeout(&id, timeout));
            }
            tokio::time::sleep(left.min(RETRY_EVERY)).await;
        }
        let renewing = tokio::spawn({
            let (conns, script) = (Arc::clone(&self.conns), Arc::clone(&self.renew));
            let (lock_key, token) = (lock_key.clone(), token.clone());
            async move {
                loop {
                    tokio::time::sleep(RENEW_EVERY).await;
                    let renewed = conns
                        .call("renew lock", Replay::Safe, |mut conn| {
                            let mut call = script.key(&lock_key);
                            call.arg(&token).arg(lease_ms);
                            async move { call.invoke_async::<i64>(&mut conn).await }
                        })
                        .await;
                    if !matches!(renewed, Ok(1)) {
                        tracing::warn!(lock = %lock_key, ?renewed, "could not renew a held lock");
                        return;
                    }
                }
            }
        });
        let release = {
            let (conns, script) = (Arc::clone(&self.conns), Arc::clone(&self.release));
            move || {
                // Without a runtime the lease ends the lock.
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        let released = conns
                            .call("unlock", Replay::Safe, |mut conn| {
                                let mut call = script.key(&lock_key);
                                call.arg(&token);
                                async move { call.invoke_async::<i64>(&mut conn).await }
                            })
                            .await;
                        if !matches!(released, Ok(1)) {
                            tracing::warn!(lock = %lock_key, ?released, "the lock was not ours to release (its lease ran out)");
                        }
                    });
                }
            }
        };
        Ok(LockGuard::new(
            Held {
                renewing,
                release: Some(Box::new(release)),
                _local: local,
            },
            None,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_32_hex_digits_and_differ() {
        let (a, b) = (token(), token());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
