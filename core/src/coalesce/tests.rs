//! The queue's rules, on a backend that keeps rows in memory and records each batch.

use std::collections::HashMap;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::Semaphore;

use super::*;

/// A write: row `id` gets `value`; `"bad"` is refused, `"lost"` loses the batch's reply.
struct Put {
    id: String,
    value: String,
}

#[derive(Default)]
struct Rows {
    rows: StdMutex<HashMap<String, String>>,
    /// The rows of the batches running now, and whether two batches ever shared one.
    in_flight: StdMutex<Vec<String>>,
    shared: std::sync::atomic::AtomicBool,
    /// How long each write (alone or a batch) takes.
    delay: Duration,
    /// The ids of each batch, as it ran.
    batches: StdMutex<Vec<Vec<String>>>,
    /// Holds every write until a permit is added.
    gate: Option<Arc<Semaphore>>,
}

impl Rows {
    async fn pass(&self) {
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("open gate").forget();
        }
    }
    fn value(&self, id: &str) -> Option<String> {
        self.rows.lock().unwrap().get(id).cloned()
    }
}

impl BatchWrite for Rows {
    type Write = Put;
    fn row_id(write: &Put) -> &str {
        &write.id
    }
    fn operation(_: &Put) -> &'static str {
        "set_state"
    }
    fn write_one<'a>(&'a self, write: &'a Put) -> BoxFuture<'a, Result<Written>> {
        async move {
            self.pass().await;
            tokio::time::sleep(self.delay).await;
            if write.value == "bad" {
                return Err(Error::database(false, "bad row"));
            }
            self.rows
                .lock()
                .unwrap()
                .insert(write.id.clone(), write.value.clone());
            Ok(Written::Done)
        }
        .boxed()
    }
    fn write_batch<'a>(&'a self, writes: &'a [Put]) -> BoxFuture<'a, Result<Vec<Result<Written>>>> {
        async move {
            {
                let mut in_flight = self.in_flight.lock().unwrap();
                if writes.iter().any(|w| in_flight.contains(&w.id)) {
                    self.shared.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                in_flight.extend(writes.iter().map(|w| w.id.clone()));
            }
            tokio::time::sleep(self.delay).await;
            self.in_flight
                .lock()
                .unwrap()
                .retain(|id| writes.iter().all(|w| &w.id != id));
            self.pass().await;
            let ids: Vec<String> = writes.iter().map(|w| w.id.clone()).collect();
            let mut unique = ids.clone();
            unique.dedup();
            assert_eq!(unique, ids, "a row twice in a batch, or rows out of order");
            self.batches.lock().unwrap().push(ids);
            if writes.iter().any(|w| w.value == "bad") {
                return Err(Error::database(false, "bad row in the batch"));
            }
            if writes.iter().any(|w| w.value == "lost") {
                return Err(Error::outcome_unknown("batch", "connection lost"));
            }
            let mut rows = self.rows.lock().unwrap();
            for write in writes {
                rows.insert(write.id.clone(), write.value.clone());
            }
            Ok(writes.iter().map(|_| Ok(Written::Done)).collect())
        }
        .boxed()
    }
}

async fn put(queue: &Arc<Coalescer<Rows>>, id: &str, value: &str) -> Result<()> {
    let (id, value) = (id.to_owned(), value.to_owned());
    let alone = {
        let put = Put {
            id: id.clone(),
            value: value.clone(),
        };
        let queue = Arc::clone(queue);
        move || async move {
            queue
                .backend()
                .write_one(&put)
                .await
                .and_then(<()>::from_written)
        }
    };
    queue.write(alone, || Put { id, value }).await
}

fn gated() -> (Arc<Semaphore>, Rows) {
    let gate = Arc::new(Semaphore::new(0));
    let rows = Rows {
        gate: Some(Arc::clone(&gate)),
        ..Rows::default()
    };
    (gate, rows)
}

/// Lets every write through once `waiting` writes are queued.
async fn open_when_queued(queue: &Arc<Coalescer<Rows>>, gate: &Semaphore, waiting: usize) {
    for _ in 0..2000 {
        if queue.lock().pending.len() >= waiting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(queue.lock().pending.len() >= waiting, "writes never queued");
    gate.add_permits(10_000);
}

#[tokio::test]
async fn a_lone_writer_runs_alone_every_time() {
    let queue = Coalescer::new(Rows::default(), 2);
    for i in 0..50 {
        put(&queue, &format!("r{i}"), "v").await.unwrap();
    }
    let stats = queue.stats();
    assert_eq!((stats.alone, stats.batches), (50, 0));
    assert!(queue.backend().batches.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_writes_go_in_one_batch_each_answered() {
    let (gate, rows) = gated();
    let queue = Coalescer::new(rows, 1);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let queue = Arc::clone(&queue);
            tokio::spawn(async move { put(&queue, &format!("r{i:02}"), &format!("v{i}")).await })
        })
        .collect();
    open_when_queued(&queue, &gate, 19).await;
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    for i in 0..20 {
        assert_eq!(
            queue.backend().value(&format!("r{i:02}")),
            Some(format!("v{i}"))
        );
    }
    let stats = queue.stats();
    assert_eq!(
        (stats.alone, stats.batches, stats.batched_writes),
        (1, 1, 19)
    );
    assert_eq!(queue.lock().running, 0, "the slot was given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_row_fails_only_its_own_call() {
    let (gate, rows) = gated();
    let queue = Coalescer::new(rows, 1);
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let queue = Arc::clone(&queue);
            let value = if i == 3 {
                "bad".to_owned()
            } else {
                format!("v{i}")
            };
            tokio::spawn(async move { put(&queue, &format!("r{i}"), &value).await })
        })
        .collect();
    open_when_queued(&queue, &gate, 5).await;
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        if i == 3 {
            assert_eq!(result.unwrap_err().kind(), ErrorKind::Database);
            assert_eq!(queue.backend().value("r3"), None);
        } else {
            result.unwrap();
            assert_eq!(
                queue.backend().value(&format!("r{i}")),
                Some(format!("v{i}"))
            );
        }
    }
    assert_eq!(queue.stats().fallbacks, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_outcome_reaches_every_call_of_the_batch_and_nothing_runs_again() {
    let (gate, rows) = gated();
    let queue = Coalescer::new(rows, 1);
    let tasks: Vec<_> = (0..5)
        .map(|i| {
            let queue = Arc::clone(&queue);
            let value = if i == 4 {
                "lost".to_owned()
            } else {
                format!("v{i}")
            };
            tokio::spawn(async move { put(&queue, &format!("r{i}"), &value).await })
        })
        .collect();
    open_when_queued(&queue, &gate, 4).await;
    let results: Vec<_> = futures_util::future::join_all(tasks).await;
    // The first ran alone; the other four shared the lost batch.
    results[0].as_ref().unwrap().as_ref().unwrap();
    for result in &results[1..] {
        let err = result.as_ref().unwrap().as_ref().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::OutcomeUnknown);
        assert!(err.to_string().contains("set_state"), "{err}");
    }
    assert_eq!(queue.stats().fallbacks, 0);
    assert_eq!(queue.backend().batches.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_is_written_once_per_batch_in_the_order_asked() {
    let (gate, rows) = gated();
    let queue = Coalescer::new(rows, 1);
    let first = {
        let queue = Arc::clone(&queue);
        tokio::spawn(async move { put(&queue, "other", "x").await })
    };
    // Queued one after another: r gets 1, 2, 3 in this order.
    let mut tasks = Vec::new();
    for value in ["1", "2", "3"] {
        let queue2 = Arc::clone(&queue);
        tasks.push(tokio::spawn(async move { put(&queue2, "r", value).await }));
        let before = tasks.len();
        while queue.lock().pending.len() < before {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    gate.add_permits(10_000);
    first.await.unwrap().unwrap();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(queue.backend().value("r"), Some("3".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gives_up_while_queued_writes_nothing() {
    let (gate, rows) = gated();
    let queue = Coalescer::new(rows, 1);
    let first = {
        let queue = Arc::clone(&queue);
        tokio::spawn(async move { put(&queue, "a", "x").await })
    };
    let gone = {
        let queue = Arc::clone(&queue);
        tokio::spawn(async move { put(&queue, "b", "y").await })
    };
    while queue.lock().pending.is_empty() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    gone.abort();
    assert!(gone.await.unwrap_err().is_cancelled());
    gate.add_permits(10_000);
    first.await.unwrap().unwrap();
    // The queue emptied and the slot came back.
    for _ in 0..1000 {
        if queue.lock().running == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(queue.lock().running, 0);
    assert_eq!(queue.backend().value("b"), None);
}

#[tokio::test]
async fn no_batches_asked_means_every_write_alone() {
    let queue = Coalescer::new(Rows::default(), 0);
    let ids: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
    let writes = ids.iter().map(|id| put(&queue, id, "v"));
    for result in futures_util::future::join_all(writes).await {
        result.unwrap();
    }
    assert_eq!(queue.stats(), CoalesceStats::default());
    assert_eq!(queue.backend().rows.lock().unwrap().len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_batches_never_write_one_row_at_once() {
    let rows = Rows {
        delay: Duration::from_millis(2),
        ..Rows::default()
    };
    let queue = Coalescer::new(rows, 3);
    // 6 rows, each written by 20 tasks: every batch would like a row another one has.
    let tasks: Vec<_> = (0..120)
        .map(|i| {
            let queue = Arc::clone(&queue);
            tokio::spawn(async move { put(&queue, &format!("r{}", i % 6), &format!("v{i}")).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert!(queue.stats().batches > 1, "{:?}", queue.stats());
    assert!(
        !queue
            .backend()
            .shared
            .load(std::sync::atomic::Ordering::SeqCst),
        "two batches wrote one row at once"
    );
    assert!(queue.lock().busy.is_empty());
}
