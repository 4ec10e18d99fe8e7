//! A lock held in one Redis key, redis-py's `Lock` protocol (what aiogram's
//! `RedisEventIsolation` uses): `SET key token NX PX lease` to take it, a script that
//! extends the lease only while the key holds the taker's token, and one that deletes it
//! only then. A holder that dies leaves the lock until its lease runs out.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use fsmstore_core::{Replay, Result};
use redis::Script;

use crate::connections::Connections;

/// How long a lock holds without renewal: aiogram's `RedisEventIsolation` default.
pub(crate) const LEASE: Duration = Duration::from_secs(60);

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

/// The two scripts, hashed once per process.
fn scripts() -> &'static (Script, Script) {
    static SCRIPTS: OnceLock<(Script, Script)> = OnceLock::new();
    SCRIPTS.get_or_init(|| (Script::new(RELEASE), Script::new(RENEW)))
}

/// A fresh token: 32 hex digits, as redis-py's (`uuid1().hex`), unique per process and
/// call.
pub(crate) fn token() -> String {
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

/// A held lock: renews its lease while held, releases it when dropped (in the background;
/// without a runtime the lease ends it).
pub(crate) struct Lease {
    renewing: tokio::task::JoinHandle<()>,
    conns: Arc<Connections>,
    key: String,
    token: String,
}

impl Lease {
    /// Takes the lock in `key`, trying until `deadline`; `None` when it was still held by
    /// another then.
    ///
    /// # Errors
    /// Connection errors.
    pub(crate) async fn take(
        conns: &Arc<Connections>,
        key: String,
        deadline: Instant,
    ) -> Result<Option<Lease>> {
        let token = token();
        let lease_ms = LEASE.as_millis() as u64;
        loop {
            let taken: Option<String> = conns
                .call("lock", Replay::Unsafe, |mut conn| {
                    let (key, token) = (&key, &token);
                    async move {
                        redis::cmd("SET")
                            .arg(key)
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
                return Ok(None);
            }
            tokio::time::sleep(left.min(RETRY_EVERY)).await;
        }
        let renewing = tokio::spawn({
            let conns = Arc::clone(conns);
            let (key, token) = (key.clone(), token.clone());
            async move {
                loop {
                    tokio::time::sleep(RENEW_EVERY).await;
                    let renewed = conns
                        .call("renew lock", Replay::Safe, |mut conn| {
                            let mut call = scripts().1.key(&key);
                            call.arg(&token).arg(lease_ms);
                            async move { call.invoke_async::<i64>(&mut conn).await }
                        })
                        .await;
                    if !matches!(renewed, Ok(1)) {
                        tracing::warn!(lock = %key, ?renewed, "could not renew a held lock");
                        return;
                    }
                }
            }
        });
        Ok(Some(Lease {
            renewing,
            conns: Arc::clone(conns),
            key,
            token,
        }))
    }
}

impl Lease {
    /// Whether the lock is still this lease's (its key holds the token): a lease whose
    /// renewal failed may have run out, and another taken the lock.
    ///
    /// # Errors
    /// Connection errors.
    pub(crate) async fn still_held(&self) -> Result<bool> {
        let holder: Option<String> = self
            .conns
            .call("lock holder", Replay::Safe, |mut conn| {
                let key = &self.key;
                async move { redis::cmd("GET").arg(key).query_async(&mut conn).await }
            })
            .await?;
        Ok(holder.as_deref() == Some(self.token.as_str()) && !self.renewing.is_finished())
    }

    /// Releases the lock now (a process about to exit can not leave it to [`Drop`]).
    pub(crate) async fn release(mut self) {
        self.renewing.abort();
        let (key, token) = (
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.token),
        );
        unlock(&self.conns, key, token).await;
    }
}

/// Deletes `key` while it holds `token`.
async fn unlock(conns: &Connections, key: String, token: String) {
    let released = conns
        .call("unlock", Replay::Safe, |mut conn| {
            let mut call = scripts().0.key(&key);
            call.arg(&token);
            async move { call.invoke_async::<i64>(&mut conn).await }
        })
        .await;
    if !matches!(released, Ok(1)) {
        tracing::warn!(lock = %key, ?released, "the lock was not ours to release (its lease ran out)");
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewing.abort();
        if self.key.is_empty() {
            return; // released already
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (conns, key, token) = (
            Arc::clone(&self.conns),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.token),
        );
        runtime.spawn(async move { unlock(&conns, key, token).await });
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
