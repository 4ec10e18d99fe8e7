//! Coalesced writes: when several writes wait on one backend, they go together in one
//! transaction (one commit), each caller answered on its own, only after the commit.
//!
//! A write that finds fewer than [`StorageOptions::write_batches`] batches running and
//! nobody waiting runs alone, on the per-call path, exactly as without coalescing: a lone
//! writer pays two uncontended lock operations, no timer and no extra task. A write that
//! finds them all running waits in a queue; whoever finishes takes what is queued (at
//! most [`MAX_BATCH`] writes, a row at most once) and runs it as one batch
//! ([`BatchWrite::write_batch`]) on a task of its own, so a caller that gives up never
//! cuts a batch short for the others. Nothing is waited for that is not already queued.
//!
//! A batch that fails without applying anything (a bad row, a deadlock) falls back to
//! per-call writes ([`BatchWrite::write_one`]), in order, so one bad row fails only its
//! own call. A batch whose outcome is unknown (the connection was lost after the commit
//! was sent) answers each of its calls with [`Error::OutcomeUnknown`] under the call's
//! own operation name: it is never run again. A storage that is closed, or a server that
//! can not be reached, answers each call with that error.
//!
//! [`StorageOptions::write_batches`]: crate::StorageOptions::write_batches

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

use crate::data::Data;
use crate::error::{Error, ErrorKind, Result};

/// The most writes one batch takes.
pub const MAX_BATCH: usize = 64;

/// What a coalesced write answers: each storage call's own answer type.
#[derive(Debug, Clone, PartialEq)]
pub enum Written {
    /// A write answering nothing (`set_state`, `set_data`, `set_record`).
    Done,
    /// `clear`: whether a row was there.
    Cleared(bool),
    /// `update_data`, `transition`: the data after the write.
    Data(Data),
}

/// A storage call's answer, as a [`Written`] and back.
pub trait Answer: Sized + Send + 'static {
    /// This answer as a [`Written`].
    fn into_written(self) -> Written;
    /// The answer of a call, from what its write answered.
    ///
    /// # Errors
    /// [`Error::Database`] when the write answered another kind (a backend's bug).
    fn from_written(written: Written) -> Result<Self>;
}

fn mismatch(written: &Written) -> Error {
    Error::database(
        false,
        format!("a coalesced write answered {written:?}, which is not its call's kind"),
    )
}

impl Answer for () {
    fn into_written(self) -> Written {
        Written::Done
    }
    fn from_written(written: Written) -> Result<Self> {
        match written {
            Written::Done => Ok(()),
            other => Err(mismatch(&other)),
        }
    }
}

impl Answer for bool {
    fn into_written(self) -> Written {
        Written::Cleared(self)
    }
    fn from_written(written: Written) -> Result<Self> {
        match written {
            Written::Cleared(was) => Ok(was),
            other => Err(mismatch(&other)),
        }
    }
}

impl Answer for Data {
    fn into_written(self) -> Written {
        Written::Data(self)
    }
    fn from_written(written: Written) -> Result<Self> {
        match written {
            Written::Data(data) => Ok(data),
            other => Err(mismatch(&other)),
        }
    }
}

/// A backend's writes, one at a time and as a batch.
pub trait BatchWrite: Send + Sync + 'static {
    /// One write, owned (it waits in the queue).
    type Write: Send + Sync + 'static;

    /// The row `write` changes: a row is written at most once per batch.
    fn row_id(write: &Self::Write) -> &str;

    /// The storage call of `write` (`set_state`, …), for errors.
    fn operation(write: &Self::Write) -> &'static str;

    /// `write` on its own: the per-call path, its own statement and commit.
    fn write_one<'a>(&'a self, write: &'a Self::Write) -> BoxFuture<'a, Result<Written>>;

    /// `writes` (two or more, each on another row, in row order) in one transaction.
    /// `Ok` only after the commit, with one answer per write in order; `Err` when the
    /// transaction did not commit ([`Error::OutcomeUnknown`] when that is not known).
    fn write_batch<'a>(
        &'a self,
        writes: &'a [Self::Write],
    ) -> BoxFuture<'a, Result<Vec<Result<Written>>>>;
}

/// What a storage's coalescing did since it opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CoalesceStats {
    /// Writes that ran alone, on the per-call path.
    pub alone: u64,
    /// Batches of two writes or more that committed together.
    pub batches: u64,
    /// Writes answered by those batches.
    pub batched_writes: u64,
    /// Batches that did not commit and ran again as per-call writes.
    pub fallbacks: u64,
}

#[derive(Default)]
struct Counters {
    alone: AtomicU64,
    batches: AtomicU64,
    batched_writes: AtomicU64,
    fallbacks: AtomicU64,
}

struct Pending<W> {
    write: W,
    answer: oneshot::Sender<Result<Written>>,
}

struct Queue<W> {
    pending: VecDeque<Pending<W>>,
    /// Writes running alone and batch tasks running: at most `limit`.
    running: usize,
    /// The rows of the batches running: a write of one of them waits for the next batch,
    /// so two batches never hold locks on one row (and never wait for each other).
    busy: HashSet<String>,
}

/// The write queue of one storage (see the module docs).
pub struct Coalescer<B: BatchWrite> {
    backend: B,
    limit: usize,
    queue: Mutex<Queue<B::Write>>,
    counters: Counters,
    /// The runtime the storage was opened on: batches are spawned there when a write
    /// ends outside any runtime.
    runtime: Option<tokio::runtime::Handle>,
}

impl<B: BatchWrite> std::fmt::Debug for Coalescer<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("limit", &self.limit)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<B: BatchWrite> Coalescer<B> {
    /// The queue of `backend`, with at most `limit` batches running at once (`0`: every
    /// write runs alone).
    pub fn new(backend: B, limit: u32) -> Arc<Self> {
        Arc::new(Coalescer {
            backend,
            limit: limit as usize,
            queue: Mutex::new(Queue {
                pending: VecDeque::new(),
                running: 0,
                busy: HashSet::new(),
            }),
            counters: Counters::default(),
            runtime: tokio::runtime::Handle::try_current().ok(),
        })
    }

    /// The backend's writes.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// What coalescing did so far.
    pub fn stats(&self) -> CoalesceStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        CoalesceStats {
            alone: get(&self.counters.alone),
            batches: get(&self.counters.batches),
            batched_writes: get(&self.counters.batched_writes),
            fallbacks: get(&self.counters.fallbacks),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue<B::Write>> {
        // The queue is consistent at every await point: a panic elsewhere leaves it usable.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs one write: `alone()` (the per-call path) when a batch slot is free and nobody
    /// waits, else `queued()` in the next batch. `alone` makes its future only when it runs:
    /// a future passed by value would sit in this one's twice (argument and await), and
    /// every call's boxed future is copied whole.
    ///
    /// # Errors
    /// The write's own error; [`Error::OutcomeUnknown`] when its batch's outcome is not
    /// known, or the batch's task ended without answering.
    pub async fn write<T: Answer, F: Future<Output = Result<T>>>(
        self: &Arc<Self>,
        alone: impl FnOnce() -> F,
        queued: impl FnOnce() -> B::Write,
    ) -> Result<T> {
        if self.limit == 0 {
            return alone().await;
        }
        let slot_taken = {
            let mut queue = self.lock();
            let free = queue.running < self.limit && queue.pending.is_empty();
            if free {
                queue.running += 1;
            }
            free
        };
        let waiting = if slot_taken {
            None
        } else {
            // Copied outside the lock; a slot freed meanwhile starts a batch below.
            let write = queued();
            let operation = B::operation(&write);
            let (answer, receiver) = oneshot::channel();
            let mut queue = self.lock();
            queue.pending.push_back(Pending { write, answer });
            let start = queue.running < self.limit;
            if start {
                queue.running += 1;
            }
            Some((receiver, operation, start))
        };
        match waiting {
            None => {
                self.counters.alone.fetch_add(1, Ordering::Relaxed);
                let _slot = AloneSlot(Arc::clone(self));
                alone().await
            }
            Some((receiver, operation, start)) => {
                if start {
                    self.spawn_batches();
                }
                match receiver.await {
                    Ok(answer) => answer.and_then(T::from_written),
                    Err(_) => Err(Error::outcome_unknown(
                        operation,
                        "the task running its batch ended without an answer",
                    )),
                }
            }
        }
    }

    /// Starts a batch task holding one running slot (taken by the caller).
    fn spawn_batches(self: &Arc<Self>) {
        let slot = BatchSlot {
            coalescer: Arc::clone(self),
            finished: false,
        };
        let task = async move {
            let mut slot = slot;
            slot.coalescer.run_batches().await;
            slot.finished = true;
        };
        // On the caller's runtime when its workers poll tasks on their own; a current-thread
        // runtime polls them only inside its `block_on`, which may have returned for good:
        // then the storage's own runtime.
        let current = tokio::runtime::Handle::try_current().ok();
        let runtime = match current {
            Some(handle)
                if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                Some(handle)
            }
            current => self.runtime.clone().or(current),
        };
        match runtime {
            Some(runtime) => drop(runtime.spawn(task)),
            // No runtime at all: dropping the task answers what waits (see `BatchSlot`).
            None => drop(task),
        }
    }

    /// Runs batches until nothing waits that it may take; gives its slot back then.
    async fn run_batches(&self) {
        loop {
            let (batch, rows) = {
                let mut queue = self.lock();
                let Queue { pending, busy, .. } = &mut *queue;
                let batch = take_batch::<B>(pending, busy);
                if batch.is_empty() {
                    queue.running -= 1;
                    return;
                }
                let rows: Vec<String> = batch
                    .iter()
                    .map(|p| B::row_id(&p.write).to_owned())
                    .collect();
                queue.busy.extend(rows.iter().cloned());
                (batch, rows)
            };
            let done = BusyRows {
                coalescer: self,
                rows,
            };
            self.run_batch(batch).await;
            drop(done);
        }
    }

    async fn run_batch(&self, mut batch: Vec<Pending<B::Write>>) {
        if batch.len() == 1 {
            let Some(one) = batch.pop() else { return };
            self.counters.alone.fetch_add(1, Ordering::Relaxed);
            let answer = self.backend.write_one(&one.write).await;
            drop(one.answer.send(answer));
            return;
        }
        // Rows in one order (two batches never share a row: see `Queue::busy`).
        batch.sort_by(|a, b| B::row_id(&a.write).cmp(B::row_id(&b.write)));
        let (writes, answers): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|p| (p.write, p.answer)).unzip();
        match self.backend.write_batch(&writes).await {
            Ok(results) if results.len() == writes.len() => {
                self.counters.batches.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .batched_writes
                    .fetch_add(writes.len() as u64, Ordering::Relaxed);
                for (answer, result) in answers.into_iter().zip(results) {
                    drop(answer.send(result));
                }
            }
            Ok(results) => {
                let message = format!(
                    "a batch of {} writes answered {} of them",
                    writes.len(),
                    results.len()
                );
                for (write, answer) in writes.iter().zip(answers) {
                    let error = Error::outcome_unknown(B::operation(write), message.clone());
                    drop(answer.send(Err(error)));
                }
            }
            Err(error) => match error.kind() {
                // It may have committed: never run again.
                ErrorKind::OutcomeUnknown => {
                    let message = error.to_string();
                    for (write, answer) in writes.iter().zip(answers) {
                        let error = Error::outcome_unknown(B::operation(write), message.clone());
                        drop(answer.send(Err(error)));
                    }
                }
                // Every call would meet the same: answer each with it at once.
                ErrorKind::Closed | ErrorKind::Connection => {
                    let closed = error.kind() == ErrorKind::Closed;
                    let message = error.to_string();
                    for answer in answers {
                        let error = if closed {
                            Error::Closed
                        } else {
                            Error::connection(message.clone(), None)
                        };
                        drop(answer.send(Err(error)));
                    }
                }
                // Rolled back: each write on its own, so a bad row fails only its call.
                _ => {
                    self.counters.fallbacks.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(writes = writes.len(), %error, "a coalesced batch did not commit; writing each on its own");
                    for (write, answer) in writes.iter().zip(answers) {
                        if answer.is_closed() {
                            continue;
                        }
                        let result = self.backend.write_one(write).await;
                        drop(answer.send(result));
                    }
                }
            },
        }
    }

    /// A slot given back: the next batch takes it when writes wait.
    fn release(self: &Arc<Self>) {
        let waiting = {
            let mut queue = self.lock();
            if queue.pending.is_empty() {
                queue.running -= 1;
                false
            } else {
                true
            }
        };
        if waiting {
            self.spawn_batches();
        }
    }
}

/// The rows of a running batch, given back when it ends (or its task is dropped).
struct BusyRows<'a, B: BatchWrite> {
    coalescer: &'a Coalescer<B>,
    rows: Vec<String>,
}

impl<B: BatchWrite> Drop for BusyRows<'_, B> {
    fn drop(&mut self) {
        let mut queue = self.coalescer.lock();
        for row in &self.rows {
            queue.busy.remove(row);
        }
    }
}

/// The next batch: up to [`MAX_BATCH`] writes, a row at most once and none of a batch
/// running (a later write of a row waits for the next batch, in order), leaving out
/// writes whose caller is gone (never written).
fn take_batch<B: BatchWrite>(
    pending: &mut VecDeque<Pending<B::Write>>,
    busy: &HashSet<String>,
) -> Vec<Pending<B::Write>> {
    let mut batch: Vec<Pending<B::Write>> = Vec::new();
    let mut rest = VecDeque::new();
    while let Some(next) = pending.pop_front() {
        if next.answer.is_closed() {
            continue;
        }
        let id = B::row_id(&next.write);
        let fits = batch.len() < MAX_BATCH
            && !busy.contains(id)
            && batch.iter().all(|p| B::row_id(&p.write) != id);
        // A row waiting behind an earlier write of the same row keeps its place after it.
        let behind = rest
            .iter()
            .any(|p: &Pending<B::Write>| B::row_id(&p.write) == id);
        if fits && !behind {
            batch.push(next);
        } else {
            rest.push_back(next);
        }
    }
    *pending = rest;
    batch
}

/// The slot of a write running alone: given back when it ends (or its caller gives up).
struct AloneSlot<B: BatchWrite>(Arc<Coalescer<B>>);

impl<B: BatchWrite> Drop for AloneSlot<B> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// The slot of a batch task. A task dropped before it finished (its runtime shut down,
/// or a backend panicked) gives the slot back and answers every waiting write with an
/// error instead of starting another task.
struct BatchSlot<B: BatchWrite> {
    coalescer: Arc<Coalescer<B>>,
    finished: bool,
}

impl<B: BatchWrite> Drop for BatchSlot<B> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let dropped: Vec<_> = {
            let mut queue = self.coalescer.lock();
            queue.running -= 1;
            queue.pending.drain(..).collect()
        };
        // Their senders go: each caller gets an unknown outcome.
        drop(dropped);
    }
}

#[cfg(test)]
mod tests;
