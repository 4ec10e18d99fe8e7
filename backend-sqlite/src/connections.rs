//! One writer and a few readers, each behind a mutex, used from tokio's blocking pool —
//! and, for a point read while a connection is idle, from the calling thread.
//!
//! Why not a general pool: SQLite allows one writer at a time anyway, so a single writer
//! connection behind a mutex serializes writes in-process without `SQLITE_BUSY` retries,
//! while WAL lets readers run beside it. A call costs one `spawn_blocking` plus an
//! uncontended mutex: the same as the bare `spawn_blocking` floor. A point read
//! ([`Connections::try_read_here`]) skips the hop when it can not wait: a free connection,
//! and SQLite told not to wait for a lock (busy timeout 0 for that read), so a busy
//! database sends it to the blocking pool instead of stalling the runtime.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fsmstore_core::{Error, Result};
use rusqlite::{Connection, OpenFlags};

use crate::config::{SqliteConfig, SqliteMode, SqliteSync};
use crate::error::{from_join, from_sqlite};

type Slot = Mutex<Option<Connection>>;

/// The connections of one storage (or migrator).
pub(crate) struct Connections {
    writer: Slot,
    readers: Vec<Slot>,
    next_reader: AtomicUsize,
    closed: AtomicBool,
    /// The URL's busy timeout: what every connection waits for a lock, except a read on
    /// the calling thread (which waits for none).
    busy_timeout: Duration,
}

impl Connections {
    /// Opens the writer and the readers (blocking: call from `spawn_blocking`).
    fn open_blocking(config: &SqliteConfig) -> Result<Self> {
        let (target, is_file) = config.open_target();
        let open = || -> Result<Connection> {
            let access = match config.mode {
                SqliteMode::ReadWriteCreate => {
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
                }
                SqliteMode::ReadWrite => OpenFlags::SQLITE_OPEN_READ_WRITE,
                SqliteMode::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY,
            };
            let flags = access | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let conn = Connection::open_with_flags(&target, flags).map_err(from_sqlite)?;
            conn.busy_timeout(config.busy_timeout)
                .map_err(from_sqlite)?;
            if is_file && config.mode != SqliteMode::ReadOnly {
                // WAL: readers never block the writer; NORMAL: durable across application
                // crashes, may lose the last commits on power loss (the usual WAL trade);
                // FULL (`synchronous=full`): durable across power loss too.
                enable_wal(&conn, config.busy_timeout)?;
                let synchronous = match config.synchronous {
                    SqliteSync::Normal => "NORMAL",
                    SqliteSync::Full => "FULL",
                };
                conn.pragma_update(None, "synchronous", synchronous)
                    .map_err(from_sqlite)?;
            }
            conn.set_prepared_statement_cache_capacity(32);
            Ok(conn)
        };
        let writer = open()?;
        let reader_count = if is_file { config.readers() } else { 0 };
        let readers = (0..reader_count)
            .map(|_| open().map(|conn| Mutex::new(Some(conn))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Connections {
            writer: Mutex::new(Some(writer)),
            readers,
            next_reader: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            busy_timeout: config.busy_timeout,
        })
    }

    /// Opens the connections on the blocking pool.
    pub(crate) async fn open(config: &SqliteConfig) -> Result<Arc<Self>> {
        let config = config.clone();
        tokio::task::spawn_blocking(move || Connections::open_blocking(&config).map(Arc::new))
            .await
            .map_err(from_join)?
    }

    /// Runs `work` on the writer connection, on the blocking pool.
    pub(crate) async fn write<T, F>(self: &Arc<Self>, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || with_slot(lock(&this.writer), work))
            .await
            .map_err(from_join)?
    }

    /// Runs `work` on an idle connection for reading (see the comment inside).
    pub(crate) async fn read<T, F>(self: &Arc<Self>, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        if self.readers.is_empty() {
            return self.write(work).await;
        }
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let count = this.readers.len();
            // Take the first idle connection, the writer first, in a fixed order (not
            // round-robin): each SQLite connection has its own page cache, and under light
            // load the writer's is the warmest (it just wrote those pages), so a read right
            // after a write costs what it costs on one bare connection (`fsmstore bench`:
            // get_state 1.09-1.16x of the floor through a reader, ~1.0x this way). A read
            // holds the writer for microseconds; when it is busy, readers serve (WAL), and
            // when all are busy the read waits for the reader in turn.
            let guard = std::iter::once(&this.writer)
                .chain(this.readers.iter())
                .find_map(|slot| slot.try_lock().ok())
                .unwrap_or_else(|| {
                    let start = this.next_reader.fetch_add(1, Ordering::Relaxed);
                    lock(&this.readers[start % count])
                });
            with_slot(guard, work)
        })
        .await
        .map_err(from_join)?
    }

    /// Runs `work`, a point read, on this thread when a connection is idle, without
    /// waiting for anything: `None` when no connection is free or SQLite would have to
    /// wait for a lock (the busy timeout is 0 for this read: SQLite answers `SQLITE_BUSY`
    /// at once); the caller then reads on the blocking pool as every other call does. What
    /// it saves is the hop to the blocking pool and back, most of a cached read's time.
    pub(crate) fn try_read_here<T>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T>,
    ) -> Option<Result<T>> {
        if self.is_closed() {
            return None;
        }
        // The same order as `read`: the writer's page cache is the warmest.
        let mut guard = std::iter::once(&self.writer)
            .chain(self.readers.iter())
            .find_map(|slot| slot.try_lock().ok())?;
        let conn = guard.as_mut()?;
        conn.busy_timeout(Duration::ZERO).ok()?;
        let result = work(conn);
        if conn.busy_timeout(self.busy_timeout).is_err() {
            // A connection that can not wait again would fail later calls: let it go.
            guard.take();
        }
        match result {
            // Busy or locked: the blocking pool waits for it.
            Err(Error::Database {
                transient: true, ..
            }) => None,
            done => Some(done),
        }
    }

    /// Closes every connection; later calls fail with [`Error::Closed`].
    pub(crate) async fn close(self: &Arc<Self>) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            for slot in std::iter::once(&this.writer).chain(this.readers.iter()) {
                if let Some(conn) = lock(slot).take() {
                    conn.close().map_err(|(_, err)| from_sqlite(err))?;
                }
            }
            Ok(())
        })
        .await
        .map_err(from_join)?
    }

    /// Whether [`Connections::close`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Switches a file to WAL. The busy handler does not cover this pragma: when several
/// connections open a brand-new file at once, the switch can fail with `SQLITE_BUSY` right
/// away, so retry until the busy timeout (WAL is persistent: once one connection switched,
/// the others find it set).
fn enable_wal(conn: &Connection, timeout: std::time::Duration) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Ok(()) => return Ok(()),
            Err(err)
                if err.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(err) => return Err(from_sqlite(err)),
        }
    }
}

fn lock(slot: &Slot) -> MutexGuard<'_, Option<Connection>> {
    // A panic inside `work` leaves the connection usable: `Idle` (below) rolls back what
    // it left open.
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `work` on the slot's connection and leaves the connection with no transaction
/// open, whatever `work` did (returned, failed or panicked): a transaction begun by hand
/// (a coalesced batch's `BEGIN IMMEDIATE`) and left open would make every later write on
/// this connection part of it, answered but never committed. When even `ROLLBACK` fails
/// the connection is closed: later calls fail with [`Error::Closed`] instead of writing
/// into a transaction nobody commits.
fn with_slot<T>(
    mut guard: MutexGuard<'_, Option<Connection>>,
    work: impl FnOnce(&mut Connection) -> Result<T>,
) -> Result<T> {
    struct Idle<'g, 'c>(&'g mut MutexGuard<'c, Option<Connection>>);
    impl Drop for Idle<'_, '_> {
        fn drop(&mut self) {
            let open = self.0.as_ref().is_some_and(|conn| !conn.is_autocommit());
            if open {
                let rolled_back = self.0.as_ref().is_some_and(|conn| {
                    conn.execute_batch("ROLLBACK").is_ok() && conn.is_autocommit()
                });
                if !rolled_back {
                    tracing::error!("a SQLite connection kept a transaction open and could not roll it back: closing it");
                    self.0.take();
                }
            }
        }
    }
    let idle = Idle(&mut guard);
    match idle.0.as_mut() {
        Some(conn) => work(conn),
        None => Err(Error::Closed),
    }
}
