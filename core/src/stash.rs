//! [`ConnectionStash`]: the connections of calls that succeeded, kept for the next call
//! instead of going back through the driver's pool.
//!
//! Why: a pool's checkout and return are general: sqlx pings every released MySQL
//! connection (`COM_PING`, a second round trip per call) before it can be acquired again,
//! and deadpool's checkout (its wait timeout, hooks, recycling and the copies of its
//! futures) cost PostgreSQL's point reads about two thousand instructions a call, an eighth
//! of the call (docs/benchmarks.md). A call that succeeded left its connection clean
//! (transaction committed, result read), so the next call can take it as it is; a call that
//! failed or was cancelled drops its connection, and the pool tests or closes it as before.
//! Each stashed connection still holds its pool slot, so the pool's size bounds the total;
//! every caller that needs a connection of the same pool goes through
//! [`ConnectionStash::checkout`], or one idle in the stash could make it wait for the
//! pool's timeout.
//!
//! Callers that found the stash empty wait in line: a connection checked in while they
//! wait goes to the one waiting longest, never back to the stash where the caller that
//! checked it in would take it again at once (a task making calls back to back runs its
//! next checkout before a woken waiter gets to run, so waking waiters let them time out
//! while connections were free).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::{select, Either};
use tokio::sync::oneshot;

/// Waiters' places kept before the ones of callers that left (cancelled, or served by the
/// pool) are swept out.
const SWEEP_AT: usize = 64;

/// Connections kept between calls, most recently used last, and the callers waiting for
/// one.
pub struct ConnectionStash<C> {
    slots: Mutex<Slots<C>>,
    /// Whether a stashed connection (idle this long) may serve the next call; one that may
    /// not is dropped, back to its pool.
    usable: fn(&C, Duration) -> bool,
}

struct Slots<C> {
    connections: Vec<(C, Instant)>,
    /// Callers waiting for a connection, longest first.
    waiters: VecDeque<oneshot::Sender<C>>,
    /// Set by [`ConnectionStash::drain`]: nothing is stashed or handed over afterwards.
    closed: bool,
}

impl<C> std::fmt::Debug for ConnectionStash<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let slots = self.lock();
        f.debug_struct("ConnectionStash")
            .field("stashed", &slots.connections.len())
            .field("waiters", &slots.waiters.len())
            .field("closed", &slots.closed)
            .finish_non_exhaustive()
    }
}

impl<C> ConnectionStash<C> {
    /// An empty stash whose connections serve a call while `usable` says so.
    #[must_use]
    pub fn new(usable: fn(&C, Duration) -> bool) -> Self {
        ConnectionStash {
            slots: Mutex::new(Slots {
                connections: Vec::new(),
                waiters: VecDeque::new(),
                closed: false,
            }),
            usable,
        }
    }

    /// A connection and how long it was idle: the most recently stashed usable one, else
    /// the first of the pool's (`acquire`: idle for an unknown time, `Duration::MAX`) or of
    /// the connections checked in meanwhile, which go to waiting callers in the order they
    /// came (idle for no time). One wait on the pool: its place in the pool's queue and its
    /// timeout hold until one of the two comes.
    ///
    /// # Errors
    /// `acquire`'s error (the pool's wait timed out, a connect failed).
    pub async fn checkout<E, A>(
        &self,
        acquire: impl FnOnce() -> A,
    ) -> std::result::Result<(C, Duration), E>
    where
        A: Future<Output = std::result::Result<C, E>>,
    {
        let handed = match self.pop_or_wait() {
            Ok(stashed) => return Ok(stashed),
            Err(handed) => handed,
        };
        // Boxed: a pool's acquire future is large, and every call's future would carry it
        // (and copy it when boxed), also the calls that find a stashed connection.
        Box::pin(Self::wait(handed, acquire)).await
    }

    /// [`checkout`](Self::checkout) when the stash had nothing usable: the pool's first
    /// connection or the first one handed over.
    async fn wait<E, A>(
        handed: oneshot::Receiver<C>,
        acquire: impl FnOnce() -> A,
    ) -> std::result::Result<(C, Duration), E>
    where
        A: Future<Output = std::result::Result<C, E>>,
    {
        let acquired = std::pin::pin!(acquire());
        match select(acquired, handed).await {
            // A connection handed over meanwhile, if any, is dropped with the receiver:
            // back to its pool.
            Either::Left((acquired, _)) => acquired.map(|conn| (conn, Duration::MAX)),
            Either::Right((Ok(conn), _)) => Ok((conn, Duration::ZERO)),
            // Drained (the storage is closing): the pool answers.
            Either::Right((Err(_), acquired)) => acquired.await.map(|conn| (conn, Duration::MAX)),
        }
    }

    /// The most recently stashed usable connection (unusable ones on the way are dropped:
    /// their pool tests or closes them); else this caller's place in line, taken under the
    /// same lock as the look, so a connection checked in after the look comes to it.
    fn pop_or_wait(&self) -> std::result::Result<(C, Duration), oneshot::Receiver<C>> {
        loop {
            let mut slots = self.lock();
            let Some((conn, since)) = slots.connections.pop() else {
                if slots.waiters.len() >= SWEEP_AT {
                    slots.waiters.retain(|waiter| !waiter.is_closed());
                }
                let (place, handed) = oneshot::channel();
                slots.waiters.push_back(place);
                return Err(handed);
            };
            drop(slots);
            let idle = since.elapsed();
            if (self.usable)(&conn, idle) {
                return Ok((conn, idle));
            }
        }
    }

    /// Keeps the connection of a call that succeeded: for the caller waiting longest, else
    /// for the next caller.
    pub fn checkin(&self, conn: C) {
        let mut slots = self.lock();
        if slots.closed {
            drop(slots);
            drop(conn);
            return;
        }
        let mut conn = conn;
        while let Some(waiter) = slots.waiters.pop_front() {
            match waiter.send(conn) {
                Ok(()) => return,
                // That caller left: the next one.
                Err(back) => conn = back,
            }
        }
        slots.connections.push((conn, Instant::now()));
    }

    /// Hands every stashed connection back to its pool (a caller of the pool itself, beside
    /// the stash, then finds them there); the stash keeps working.
    pub fn release(&self) {
        let connections = std::mem::take(&mut self.lock().connections);
        drop(connections);
    }

    /// Hands every stashed connection back to its pool, leaves the waiting callers to the
    /// pool, and keeps nothing more (before the pool closes: a pool may wait for every
    /// checked-out connection).
    pub fn drain(&self) {
        let mut slots = self.lock();
        slots.closed = true;
        let connections = std::mem::take(&mut slots.connections);
        let waiters = std::mem::take(&mut slots.waiters);
        drop(slots);
        drop(connections);
        drop(waiters);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots<C>> {
        // The slots hold no invariant a panic could break half-way.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::{OwnedSemaphorePermit, Semaphore};

    use super::*;

    /// A connection of a pool of `permits` slots: `id` tells connections apart.
    #[derive(Debug)]
    struct Conn {
        id: usize,
        _slot: OwnedSemaphorePermit,
    }

    fn always(_: &Conn, _: Duration) -> bool {
        true
    }

    /// A pool's acquire: a slot within `wait`, else an error.
    async fn acquire(
        pool: &Arc<Semaphore>,
        id: usize,
        wait: Duration,
    ) -> std::result::Result<Conn, &'static str> {
        match tokio::time::timeout(wait, Arc::clone(pool).acquire_owned()).await {
            Ok(Ok(slot)) => Ok(Conn { id, _slot: slot }),
            _ => Err("pool timed out"),
        }
    }

    /// A connection from `stash`, or a new one `id` from `pool`.
    async fn take(
        stash: &ConnectionStash<Conn>,
        pool: &Arc<Semaphore>,
        id: usize,
        wait: Duration,
    ) -> std::result::Result<(Conn, Duration), &'static str> {
        stash.checkout(|| acquire(pool, id, wait)).await
    }

    /// A caller waiting on `stash` in a task of its own: what it got, and how long it took.
    fn waiter(
        stash: &Arc<ConnectionStash<Conn>>,
        pool: &Arc<Semaphore>,
        id: usize,
        wait: Duration,
    ) -> tokio::task::JoinHandle<(std::result::Result<usize, &'static str>, Duration)> {
        let (stash, pool) = (Arc::clone(stash), Arc::clone(pool));
        tokio::spawn(async move {
            let started = Instant::now();
            let got = take(&stash, &pool, id, wait).await;
            (got.map(|(conn, _)| conn.id), started.elapsed())
        })
    }

    #[tokio::test]
    async fn the_last_stashed_serves_first() {
        let pool = Arc::new(Semaphore::new(2));
        let stash = ConnectionStash::new(always);
        let wait = Duration::from_secs(1);
        let (a, idle) = take(&stash, &pool, 1, wait).await.unwrap();
        assert_eq!(
            idle,
            Duration::MAX,
            "a new connection's idle time is unknown"
        );
        let (b, _) = take(&stash, &pool, 2, wait).await.unwrap();
        stash.checkin(a);
        stash.checkin(b);
        let (first, idle) = take(&stash, &pool, 9, wait).await.unwrap();
        assert_eq!(first.id, 2);
        assert!(idle < wait);
        let (second, _) = take(&stash, &pool, 9, wait).await.unwrap();
        assert_eq!(second.id, 1);
    }

    #[tokio::test]
    async fn a_caller_waiting_on_the_pool_takes_a_connection_checked_in_meanwhile() {
        let pool = Arc::new(Semaphore::new(1));
        let stash = Arc::new(ConnectionStash::new(always));
        let wait = Duration::from_secs(5);
        let (held, _) = take(&stash, &pool, 1, wait).await.unwrap();
        let waiting = waiter(&stash, &pool, 2, wait);
        tokio::time::sleep(Duration::from_millis(50)).await;
        stash.checkin(held);
        let (got, waited) = waiting.await.unwrap();
        assert_eq!(got, Ok(1), "the connection checked in, not a new one");
        assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    }

    #[tokio::test]
    async fn a_waiter_is_served_before_a_caller_that_checks_in_and_out_back_to_back() {
        let pool = Arc::new(Semaphore::new(1));
        let stash = Arc::new(ConnectionStash::new(always));
        let (busy, _) = take(&stash, &pool, 1, Duration::from_secs(1))
            .await
            .unwrap();
        let waiting = waiter(&stash, &pool, 2, Duration::from_millis(300));
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Checked in and out again at once, as a task making calls back to back does: the
        // waiter gets the connection, and the busy caller waits in line behind it, then
        // takes the pool's slot the waiter's task frees when it ends.
        stash.checkin(busy);
        let (again, _) = take(&stash, &pool, 3, Duration::from_secs(2))
            .await
            .unwrap();
        let (got, waited) = waiting.await.unwrap();
        assert_eq!(
            got,
            Ok(1),
            "the waiter timed out while the connection was free"
        );
        assert!(waited < Duration::from_secs(1), "waited {waited:?}");
        assert_eq!(again.id, 3);
    }

    #[tokio::test]
    async fn waiters_are_served_in_the_order_they_came() {
        let pool = Arc::new(Semaphore::new(1));
        let stash = Arc::new(ConnectionStash::new(always));
        let wait = Duration::from_secs(5);
        let (held, _) = take(&stash, &pool, 1, wait).await.unwrap();
        let served = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for n in 0..3 {
            let (stash, pool, served) =
                (Arc::clone(&stash), Arc::clone(&pool), Arc::clone(&served));
            tasks.push(tokio::spawn(async move {
                let (conn, _) = take(&stash, &pool, 10 + n, wait).await.unwrap();
                served.lock().unwrap().push(n);
                stash.checkin(conn);
            }));
            // Each in line before the next.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stash.checkin(held);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*served.lock().unwrap(), vec![0, 1, 2]);
    }

    #[tokio::test]
    async fn a_connection_for_a_caller_that_left_goes_to_the_next() {
        let pool = Arc::new(Semaphore::new(1));
        let stash = Arc::new(ConnectionStash::new(always));
        let wait = Duration::from_secs(5);
        let (held, _) = take(&stash, &pool, 1, wait).await.unwrap();
        let gone = waiter(&stash, &pool, 2, wait);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let next = waiter(&stash, &pool, 3, wait);
        tokio::time::sleep(Duration::from_millis(20)).await;
        gone.abort();
        let _ = gone.await;
        stash.checkin(held);
        assert_eq!(next.await.unwrap().0, Ok(1));
    }

    #[tokio::test]
    async fn a_waiter_ends_with_the_pools_timeout() {
        let pool = Arc::new(Semaphore::new(1));
        let stash = Arc::new(ConnectionStash::new(always));
        let (_held, _) = take(&stash, &pool, 1, Duration::from_secs(1))
            .await
            .unwrap();
        let (got, waited) = waiter(&stash, &pool, 2, Duration::from_millis(200))
            .await
            .unwrap();
        assert_eq!(got, Err("pool timed out"));
        assert!(waited < Duration::from_secs(1), "waited {waited:?}");
    }

    #[tokio::test]
    async fn the_places_of_callers_that_left_are_swept_out() {
        let pool = Arc::new(Semaphore::new(1));
        let stash = Arc::new(ConnectionStash::new(always));
        let (held, _) = take(&stash, &pool, 1, Duration::from_secs(1))
            .await
            .unwrap();
        // Callers that time out on the pool while nothing is checked in (a server down).
        for n in 0..(3 * SWEEP_AT) {
            let got = take(&stash, &pool, 100 + n, Duration::from_millis(1)).await;
            assert!(got.is_err());
        }
        assert!(stash.lock().waiters.len() <= SWEEP_AT, "{stash:?}");
        stash.checkin(held);
        assert_eq!(stash.lock().connections.len(), 1, "stashed, no one waits");
    }

    #[tokio::test]
    async fn unusable_connections_are_passed_over_to_a_usable_one() {
        let pool = Arc::new(Semaphore::new(3));
        let stash = ConnectionStash::new(|conn: &Conn, _| conn.id == 1);
        let wait = Duration::from_secs(1);
        let mut held = Vec::new();
        for id in 1..=3 {
            held.push(take(&stash, &pool, id, wait).await.unwrap().0);
        }
        for conn in held {
            stash.checkin(conn);
        }
        // Stashed 1, 2, 3 (3 on top): 3 and 2 are dropped on the way to 1.
        let (conn, idle) = take(&stash, &pool, 9, wait).await.unwrap();
        assert_eq!(conn.id, 1);
        assert!(idle < wait);
        assert_eq!(pool.available_permits(), 2);
    }

    #[tokio::test]
    async fn released_connections_serve_the_pools_own_callers() {
        let pool = Arc::new(Semaphore::new(1));
        let stash = ConnectionStash::new(always);
        let wait = Duration::from_millis(200);
        let (a, _) = take(&stash, &pool, 1, wait).await.unwrap();
        stash.checkin(a);
        assert!(
            acquire(&pool, 2, wait).await.is_err(),
            "the stash holds the slot"
        );
        stash.release();
        assert!(acquire(&pool, 2, wait).await.is_ok());
    }

    #[tokio::test]
    async fn a_drained_stash_keeps_nothing_and_leaves_waiters_to_the_pool() {
        let pool = Arc::new(Semaphore::new(1));
        let stash = Arc::new(ConnectionStash::new(always));
        let wait = Duration::from_secs(2);
        let (a, _) = take(&stash, &pool, 1, wait).await.unwrap();
        let waiting = waiter(&stash, &pool, 2, wait);
        tokio::time::sleep(Duration::from_millis(20)).await;
        stash.drain();
        stash.checkin(a);
        assert_eq!(stash.lock().connections.len(), 0, "dropped, not stashed");
        // The waiter got its new connection from the pool, in the slot `a` freed.
        assert_eq!(waiting.await.unwrap().0, Ok(2));
    }
}
