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
//! Waiters are not served in order while they are within their *patience*: a task making
//! calls back to back takes its connection again before a waiter woken for it runs, which
//! keeps one task going on a warm connection. Handing every connection checked in to the
//! caller waiting longest was tried: at 64 tasks on distinct keys, one statement per call,
//! PostgreSQL fell from 11 917 to 3 597 calls/s and its p99 from 5.8 to 61 ms
//! (docs/benchmarks.md). But under sustained overload (more callers than connections, all
//! the time) that order alone could let a waiter end with the pool's timeout, a transient
//! `Error::Connection`, while connections were free. So a caller that has waited its
//! patience (half the pool's wait timeout) gets in line: a connection
//! checked in goes to the first in line, before the stash and before any later caller.
//! Under a load the connections keep up with nobody waits that long, and the only change is
//! the timer each wait sets (measured within the spread). Past the patience the stash
//! serves in line, the mode that cost throughput above: by then callers are already half
//! way to failing, and being served is worth more than the throughput. A caller can still
//! end with the pool's timeout when the line ahead of it is longer than the check-ins left
//! in the other half of its wait. A short fixed patience (100 ms) was tried: at 64 tasks on
//! ten connections, where a few callers wait that long, the line formed and stayed (while
//! it takes every check-in, the callers behind it wait their patience too), and p99 went
//! from 3.3–33 ms to 102–103 ms.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::{select, Either};
use tokio::sync::{oneshot, Notify};

/// The line of callers past their patience is swept of those that left (cancelled, or
/// served by the pool) when it reaches this length, and then when it has doubled since the
/// last sweep (so a long line of callers still waiting is not swept on every arrival).
const SWEEP_AT: usize = 64;

/// Connections kept between calls, most recently used last.
pub struct ConnectionStash<C> {
    slots: Mutex<Slots<C>>,
    /// Whether a stashed connection (idle this long) may serve the next call; one that may
    /// not is dropped, back to its pool.
    usable: fn(&C, Duration) -> bool,
    /// How long a caller waits before it gets in line for the next connection checked in.
    patience: Duration,
    /// Signalled when a connection is stashed while callers wait for one.
    stashed: Notify,
    /// Callers waiting in [`ConnectionStash::checkout`].
    waiting: AtomicUsize,
}

struct Slots<C> {
    connections: Vec<(C, Instant)>,
    /// Callers that have waited their patience, first come first: a connection checked in
    /// goes to the first still waiting.
    in_line: VecDeque<oneshot::Sender<C>>,
    /// The length of `in_line` at which it is swept next.
    sweep_at: usize,
    /// Set by [`ConnectionStash::drain`]: nothing is stashed afterwards.
    closed: bool,
}

/// A caller counted in [`ConnectionStash::waiting`] while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<C> std::fmt::Debug for ConnectionStash<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let slots = self.lock();
        f.debug_struct("ConnectionStash")
            .field("stashed", &slots.connections.len())
            .field("in_line", &slots.in_line.len())
            .field("patience", &self.patience)
            .field("closed", &slots.closed)
            .finish_non_exhaustive()
    }
}

impl<C> ConnectionStash<C> {
    /// An empty stash whose connections serve a call while `usable` says so, in front of a
    /// pool whose wait for a connection times out after `pool_wait`: a caller that has waited
    /// half of it gets in line for the next connection checked in, so it can still be served
    /// before the pool gives up on it.
    #[must_use]
    pub fn new(usable: fn(&C, Duration) -> bool, pool_wait: Duration) -> Self {
        ConnectionStash {
            slots: Mutex::new(Slots {
                connections: Vec::new(),
                in_line: VecDeque::new(),
                sweep_at: SWEEP_AT,
                closed: false,
            }),
            usable,
            patience: pool_wait / 2,
            stashed: Notify::new(),
            waiting: AtomicUsize::new(0),
        }
    }

    /// A connection and how long it was idle: the most recently stashed usable one, else
    /// one from `acquire` (idle for an unknown time: `Duration::MAX`). A caller waiting on
    /// the pool also takes a connection stashed meanwhile (else the stash could hold every
    /// connection while callers time out in the pool's queue); it keeps its place in the
    /// pool's queue, and the pool's wait timeout, until one of the two comes. Once it has
    /// waited the stash's patience it is in line: the next connection checked in is its own
    /// unless someone got in line before it.
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
        if let Some(stashed) = self.pop() {
            return Ok(stashed);
        }
        // Boxed: a pool's acquire future is large, and every call's future would carry it
        // (and copy it when boxed), also the calls that find a stashed connection.
        Box::pin(self.wait(acquire)).await
    }

    /// [`checkout`](Self::checkout) when the stash had nothing usable.
    async fn wait<E, A>(&self, acquire: impl FnOnce() -> A) -> std::result::Result<(C, Duration), E>
    where
        A: Future<Output = std::result::Result<C, E>>,
    {
        // Counted until this future ends, however it ends (a cancelled call too): while
        // it is counted, a check-in signals `stashed`.
        let _waiting = Waiting::enter(&self.waiting);
        // One wait on the pool for the whole checkout: its place in the queue and its
        // timeout hold across the turns below.
        let mut acquired = std::pin::pin!(acquire());
        let mut patience = std::pin::pin!(tokio::time::sleep(self.patience));
        loop {
            let stashed = self.stashed.notified();
            let mut stashed = std::pin::pin!(stashed);
            stashed.as_mut().enable();
            // Looked at after registering (and after counting this caller): a connection
            // stashed before is found here, one stashed after signals `stashed`.
            if let Some(stashed) = self.pop() {
                return Ok(stashed);
            }
            match select(acquired.as_mut(), select(stashed, patience.as_mut())).await {
                Either::Left((acquired, _)) => {
                    return acquired.map(|conn| (conn, Duration::MAX));
                }
                // Another caller may take it first: then wait on.
                Either::Right((Either::Left(_), _)) => {}
                Either::Right((Either::Right(_), _)) => break,
            }
        }
        // Waited its patience: in line for the next check-in, still in the pool's queue.
        loop {
            let handed = match self.pop_or_get_in_line() {
                Ok(Some(stashed)) => return Ok(stashed),
                Ok(None) => continue,
                Err(handed) => handed,
            };
            match select(acquired.as_mut(), handed).await {
                Either::Left((acquired, mut handed)) => {
                    // A connection handed over at the same moment is not wasted.
                    handed.close();
                    if let Ok(conn) = handed.try_recv() {
                        self.checkin(conn);
                    }
                    return acquired.map(|conn| (conn, Duration::MAX));
                }
                Either::Right((Ok(conn), _)) => {
                    if (self.usable)(&conn, Duration::ZERO) {
                        return Ok((conn, Duration::ZERO));
                    }
                    // Closed since it was checked in: back to its pool, and in line again.
                }
                // Let go of by `drain`: the pool's answer.
                Either::Right((Err(_), _)) => {
                    return acquired.await.map(|conn| (conn, Duration::MAX));
                }
            }
        }
    }

    /// The most recently stashed connection if it is usable (`Ok(None)`: it was not, and
    /// was dropped), else a place at the end of the line, in one turn of the lock so that
    /// no check-in falls between the two. A drained stash gives a place nobody will serve.
    #[allow(clippy::type_complexity)]
    fn pop_or_get_in_line(
        &self,
    ) -> std::result::Result<Option<(C, Duration)>, oneshot::Receiver<C>> {
        let mut slots = self.lock();
        let Some((conn, since)) = slots.connections.pop() else {
            let (place, handed) = oneshot::channel();
            if slots.closed {
                return Err(handed);
            }
            if slots.in_line.len() >= slots.sweep_at {
                slots.in_line.retain(|place| !place.is_closed());
                slots.sweep_at = SWEEP_AT.max(2 * slots.in_line.len());
            }
            slots.in_line.push_back(place);
            return Err(handed);
        };
        drop(slots);
        Ok(self.if_usable(conn, since))
    }

    /// The most recently stashed usable connection. Unusable ones on the way are dropped.
    fn pop(&self) -> Option<(C, Duration)> {
        loop {
            let (conn, since) = self.lock().connections.pop()?;
            if let Some(usable) = self.if_usable(conn, since) {
                return Some(usable);
            }
        }
    }

    /// A connection stashed `since`, with how long it was idle, if `usable` says it may
    /// serve a call; else `None`, and it is dropped: its pool tests or closes it.
    fn if_usable(&self, conn: C, since: Instant) -> Option<(C, Duration)> {
        let idle = since.elapsed();
        (self.usable)(&conn, idle).then_some((conn, idle))
    }

    /// Keeps the connection of a call that succeeded for the next caller: the first in line
    /// if there is one, else the stash.
    pub fn checkin(&self, conn: C) {
        let mut slots = self.lock();
        if slots.closed {
            return;
        }
        let mut conn = conn;
        while let Some(place) = slots.in_line.pop_front() {
            match place.send(conn) {
                Ok(()) => return,
                // That caller left (cancelled, or served by the pool).
                Err(back) => conn = back,
            }
        }
        slots.connections.push((conn, Instant::now()));
        drop(slots);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.stashed.notify_one();
        }
    }

    /// Hands every stashed connection back to its pool (a caller of the pool itself, beside
    /// the stash, then finds them there); the stash keeps working.
    pub fn release(&self) {
        let connections = std::mem::take(&mut self.lock().connections);
        drop(connections);
    }

    /// Hands every stashed connection back to its pool and stashes nothing more (before
    /// the pool closes: a pool may wait for every checked-out connection); callers in line
    /// wait for the pool alone.
    pub fn drain(&self) {
        let in_line = {
            let mut slots = self.lock();
            slots.closed = true;
            std::mem::take(&mut slots.in_line)
        };
        drop(in_line);
        self.release();
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
    struct Conn {
        id: usize,
        _slot: OwnedSemaphorePermit,
    }

    /// A pool wait whose half no test reaches: callers never get in line.
    const PATIENT: Duration = Duration::from_secs(3600);

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

    /// A connection from `stash`, else a new one `id` from `pool` within `wait`.
    async fn take(
        stash: &ConnectionStash<Conn>,
        pool: &Arc<Semaphore>,
        id: usize,
        wait: Duration,
    ) -> std::result::Result<(Conn, Duration), &'static str> {
        stash.checkout(|| acquire(pool, id, wait)).await
    }

    /// A task that waits for a connection from `stash` within `wait` (the pool's timeout)
    /// and checks it in again at once: its id, or the pool's error, and how long it waited.
    fn waiter(
        stash: &Arc<ConnectionStash<Conn>>,
        pool: &Arc<Semaphore>,
        wait: Duration,
    ) -> tokio::task::JoinHandle<(std::result::Result<usize, &'static str>, Duration)> {
        let (stash, pool) = (Arc::clone(stash), Arc::clone(pool));
        tokio::spawn(async move {
            let started = Instant::now();
            let outcome = take(&stash, &pool, 2, wait).await;
            let waited = started.elapsed();
            (
                outcome.map(|(conn, _)| {
                    let id = conn.id;
                    stash.checkin(conn);
                    id
                }),
                waited,
            )
        })
    }

    /// Waits (up to 5 s) until `n` callers are in line.
    async fn until_in_line(stash: &ConnectionStash<Conn>, n: usize) {
        let started = Instant::now();
        while stash.lock().in_line.len() != n {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{} in line, not {n}",
                stash.lock().in_line.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn the_last_stashed_serves_first() {
        let pool = Arc::new(Semaphore::new(2));
        let stash = ConnectionStash::new(always, PATIENT);
        let wait = Duration::from_secs(1);
        let (a, idle) = take(&stash, &pool, 1, wait).await.unwrap();
        assert_eq!(
            idle,
            Duration::MAX,
            "a fresh connection's idle time is unknown"
        );
        let (b, _) = take(&stash, &pool, 2, wait).await.unwrap();
        stash.checkin(a);
        stash.checkin(b);
        let (first, idle) = take(&stash, &pool, 9, wait).await.unwrap();
        assert_eq!(first.id, 2);
        assert!(idle < Duration::from_secs(1));
        let (second, _) = take(&stash, &pool, 9, wait).await.unwrap();
        assert_eq!(second.id, 1);
    }

    #[tokio::test]
    async fn a_caller_waiting_on_the_pool_takes_a_connection_stashed_meanwhile() {
        let pool = Arc::new(Semaphore::new(1));
        let stash = Arc::new(ConnectionStash::new(always, PATIENT));
        let wait = Duration::from_secs(5);
        let (held, _) = take(&stash, &pool, 1, wait).await.unwrap();
        let waiting = waiter(&stash, &pool, wait);
        tokio::time::sleep(Duration::from_millis(50)).await;
        stash.checkin(held);
        let (outcome, waited) = waiting.await.unwrap();
        assert_eq!(
            outcome,
            Ok(1),
            "the stashed connection, not a new one from the pool"
        );
        assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    }

    #[tokio::test]
    async fn an_unusable_connection_goes_back_to_the_pool() {
        let pool = Arc::new(Semaphore::new(1));
        let stash = ConnectionStash::new(|conn: &Conn, _| conn.id != 1, PATIENT);
        let wait = Duration::from_secs(1);
        let (a, _) = take(&stash, &pool, 1, wait).await.unwrap();
        stash.checkin(a);
        // Connection 1 is not usable: dropped, its slot free again for a fresh one.
        let (b, idle) = take(&stash, &pool, 2, wait).await.unwrap();
        assert_eq!((b.id, idle), (2, Duration::MAX));
    }

    #[tokio::test]
    async fn released_connections_serve_the_pools_own_callers() {
        let pool = Arc::new(Semaphore::new(1));
        let stash = ConnectionStash::new(always, PATIENT);
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
    async fn a_drained_stash_keeps_nothing() {
        let pool = Arc::new(Semaphore::new(1));
        let stash = ConnectionStash::new(always, PATIENT);
        let wait = Duration::from_millis(200);
        let (a, _) = take(&stash, &pool, 1, wait).await.unwrap();
        stash.drain();
        stash.checkin(a);
        assert_eq!(pool.available_permits(), 1, "dropped, not stashed");
        let (b, idle) = take(&stash, &pool, 2, wait).await.unwrap();
        assert_eq!((b.id, idle), (2, Duration::MAX));
    }

    #[tokio::test]
    async fn unusable_connections_are_passed_over_to_a_usable_one() {
        let pool = Arc::new(Semaphore::new(3));
        let stash = ConnectionStash::new(|conn: &Conn, _| conn.id == 1, PATIENT);
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
    async fn a_waiter_keeps_the_pools_timeout_across_wake_ups() {
        let pool = Arc::new(Semaphore::new(1));
        let stash = Arc::new(ConnectionStash::new(always, PATIENT));
        let (mut busy, _) = take(&stash, &pool, 1, Duration::from_secs(1))
            .await
            .unwrap();
        let waiting = waiter(&stash, &pool, Duration::from_millis(300));
        // Another caller checks its connection in and takes it back at once, every 50 ms
        // for 2 s: each check-in wakes the waiter, which finds nothing.
        let cycling = Instant::now();
        while cycling.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            stash.checkin(busy);
            busy = take(&stash, &pool, 3, Duration::from_secs(1))
                .await
                .unwrap()
                .0;
            assert_eq!(busy.id, 1);
        }
        let (outcome, waited) = waiting.await.unwrap();
        assert_eq!(outcome, Err("pool timed out"));
        assert!(
            waited < Duration::from_secs(1),
            "the pool's 300 ms wait started over on each wake-up: {waited:?}"
        );
    }

    #[tokio::test]
    async fn a_caller_past_its_patience_gets_the_next_connection_checked_in() {
        let pool = Arc::new(Semaphore::new(1));
        let stash = Arc::new(ConnectionStash::new(always, Duration::from_millis(200)));
        let (mut busy, _) = take(&stash, &pool, 1, Duration::from_secs(1))
            .await
            .unwrap();
        let waiting = waiter(&stash, &pool, Duration::from_secs(2));
        // Another caller checks its connection in and takes it back at once, every 20 ms:
        // within its patience the waiter finds nothing each time it is woken; past it, the
        // next check-in is its own, and the caller waits for it back. Without the line the
        // waiter ends with the pool's 2 s timeout.
        let cycling = Instant::now();
        let mut served_from_the_pool = 0;
        while !waiting.is_finished() && cycling.elapsed() < Duration::from_secs(3) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            stash.checkin(busy);
            let (conn, idle) = take(&stash, &pool, 3, Duration::from_secs(5))
                .await
                .unwrap();
            served_from_the_pool += usize::from(idle == Duration::MAX);
            busy = conn;
            assert_eq!(busy.id, 1, "one connection, passed back and forth");
        }
        assert_eq!(served_from_the_pool, 0);
        let (outcome, waited) = waiting.await.unwrap();
        assert_eq!(
            outcome,
            Ok(1),
            "the waiter timed out in the pool while the connection was checked in every 20 ms"
        );
        assert!(
            waited >= Duration::from_millis(100) && waited < Duration::from_millis(1500),
            "served at the first check-in after its patience: waited {waited:?}"
        );
    }

    #[tokio::test]
    async fn a_connection_checked_in_passes_over_callers_in_line_that_left() {
        let pool = Arc::new(Semaphore::new(1));
        let stash = Arc::new(ConnectionStash::new(always, Duration::from_millis(40)));
        let (held, _) = take(&stash, &pool, 1, Duration::from_secs(1))
            .await
            .unwrap();
        let left = waiter(&stash, &pool, Duration::from_secs(10));
        until_in_line(&stash, 1).await;
        left.abort();
        let _ = left.await;
        stash.checkin(held);
        assert_eq!(
            stash.lock().connections.len(),
            1,
            "stashed, not sent to nobody"
        );
        let (conn, idle) = take(&stash, &pool, 9, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(conn.id, 1);
        assert!(idle < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_drained_stash_leaves_callers_in_line_to_the_pool() {
        let pool = Arc::new(Semaphore::new(1));
        let stash = Arc::new(ConnectionStash::new(always, Duration::from_millis(40)));
        let (held, _) = take(&stash, &pool, 1, Duration::from_secs(1))
            .await
            .unwrap();
        let waiting = waiter(&stash, &pool, Duration::from_secs(5));
        until_in_line(&stash, 1).await;
        stash.drain();
        assert!(stash.lock().in_line.is_empty());
        // The connection goes back to the pool, and the pool serves the waiter a new one.
        drop(held);
        let (outcome, waited) = waiting.await.unwrap();
        assert_eq!(outcome, Ok(2));
        assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    }

    #[tokio::test]
    async fn a_caller_in_line_passes_over_a_connection_closed_since_it_was_checked_in() {
        let pool = Arc::new(Semaphore::new(2));
        let stash = Arc::new(ConnectionStash::new(
            |conn: &Conn, _| conn.id != 1,
            Duration::from_millis(40),
        ));
        let (closed, _) = take(&stash, &pool, 1, Duration::from_secs(1))
            .await
            .unwrap();
        let (good, _) = take(&stash, &pool, 3, Duration::from_secs(1))
            .await
            .unwrap();
        let waiting = waiter(&stash, &pool, Duration::from_secs(5));
        until_in_line(&stash, 1).await;
        stash.checkin(closed);
        // Handed over, found unusable, dropped: its slot serves the waiter's wait on the
        // pool, with a new connection.
        let (outcome, _) = waiting.await.unwrap();
        assert_eq!(outcome, Ok(2), "not the connection closed in the meantime");
        drop(good);
    }

    #[tokio::test]
    async fn a_cancelled_waiter_is_no_longer_counted() {
        let pool = Arc::new(Semaphore::new(1));
        let stash = Arc::new(ConnectionStash::new(always, PATIENT));
        let (held, _) = take(&stash, &pool, 1, Duration::from_secs(1))
            .await
            .unwrap();
        let waiter = {
            let (stash, pool) = (Arc::clone(&stash), Arc::clone(&pool));
            tokio::spawn(async move {
                let _ = take(&stash, &pool, 2, Duration::from_secs(10)).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(stash.waiting.load(Ordering::SeqCst), 1);
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(stash.waiting.load(Ordering::SeqCst), 0);
        drop(held);
    }
}
