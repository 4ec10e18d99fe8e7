//! [`ConnectionStash`]: the connections of calls that succeeded, kept for the next call
//! instead of going back through sqlx's pool.
//!
//! Why: sqlx pings every released connection (`COM_PING`, in a spawned task) before it can
//! be acquired again. For one-statement calls that is a second round trip per call, and on
//! a small machine the ping's client and server work made calls up to 1.5x (2.5x for
//! `update_data`) slower than the same statements on one bare connection
//! (`docs/benchmarks.md`). A call that succeeded left its connection clean (transaction
//! committed, result read), so the ping tells nothing; a call that failed or was cancelled
//! drops its connection and sqlx tests or closes it as before. Each stashed connection still
//! holds its pool slot, so `pool_max` bounds the total.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::mysql::{MySql, MySqlPool};
use sqlx::pool::PoolConnection;
use tokio::sync::Notify;

/// A stashed connection idle longer than this goes back through sqlx's pool instead, which
/// tests it and applies its idle and lifetime limits.
const STASH_IDLE: Duration = Duration::from_secs(30);

/// Connections kept between calls, most recently used last.
#[derive(Default)]
pub(crate) struct ConnectionStash {
    slots: Mutex<Slots>,
    /// Signalled when a connection is stashed while callers wait for one.
    stashed: Notify,
    /// Callers waiting in [`ConnectionStash::checkout`].
    waiting: AtomicUsize,
}

#[derive(Default)]
struct Slots {
    connections: Vec<(PoolConnection<MySql>, Instant)>,
    /// Set by [`ConnectionStash::drain`]: nothing is stashed afterwards.
    closed: bool,
}

impl ConnectionStash {
    /// A connection and how long it was idle: the most recently stashed one, else one from
    /// `pool` (idle for an unknown time: `Duration::MAX`). A caller waiting on the pool also
    /// takes a connection stashed meanwhile (else the stash could hold every connection
    /// while callers time out in the pool's queue).
    pub(crate) async fn checkout(
        &self,
        pool: &MySqlPool,
    ) -> sqlx::Result<(PoolConnection<MySql>, Duration)> {
        if let Some(stashed) = self.pop() {
            return Ok(stashed);
        }
        // Boxed: the pool's acquire future is large, and every call's future would carry
        // it (and copy it when boxed), also the calls that find a stashed connection.
        Box::pin(self.wait(pool)).await
    }

    /// [`checkout`](Self::checkout) when the stash was empty.
    async fn wait(&self, pool: &MySqlPool) -> sqlx::Result<(PoolConnection<MySql>, Duration)> {
        loop {
            if let Some(stashed) = self.pop() {
                return Ok(stashed);
            }
            let stashed = self.stashed.notified();
            tokio::pin!(stashed);
            stashed.as_mut().enable();
            self.waiting.fetch_add(1, Ordering::SeqCst);
            // Again after registering: one stashed between the first look and now.
            let outcome = match self.pop() {
                Some(stashed) => Some(Ok(stashed)),
                None => tokio::select! {
                    acquired = pool.acquire() => Some(acquired.map(|conn| (conn, Duration::MAX))),
                    () = &mut stashed => None,
                },
            };
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            if let Some(outcome) = outcome {
                return outcome;
            }
        }
    }

    fn pop(&self) -> Option<(PoolConnection<MySql>, Duration)> {
        let (conn, since) = self.lock().connections.pop()?;
        let idle = since.elapsed();
        // Too long idle: dropping hands it to sqlx's pool, which pings it on the way.
        (idle < STASH_IDLE).then_some((conn, idle))
    }

    /// Keeps the connection of a call that succeeded for the next call.
    pub(crate) fn checkin(&self, conn: PoolConnection<MySql>) {
        let mut slots = self.lock();
        if slots.closed {
            return;
        }
        slots.connections.push((conn, Instant::now()));
        drop(slots);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.stashed.notify_one();
        }
    }

    /// Hands every stashed connection back to the pool and stashes nothing more (sqlx's
    /// `close` waits for every checked-out connection).
    pub(crate) fn drain(&self) {
        let mut slots = self.lock();
        slots.closed = true;
        let connections = std::mem::take(&mut slots.connections);
        drop(slots);
        drop(connections);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        // The slots hold no invariant a panic could break half-way.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}
