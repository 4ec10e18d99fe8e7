//! `fsmstore bench --isolation`: what a per-key lock costs, beside the bare lock round
//! trips of the driver, and what it buys: lost updates of concurrent read-modify-writes of
//! one key from two handles (two pools, as two bot instances), without and with the lock.

use std::time::Instant;

use fsmstore::serde_json::{json, Value};
use fsmstore::{BotId, ChatId, Data, Database, StorageKey, UserId};
use indicatif::ProgressBar;

use super::stats::Stats;
use super::workload::Sample;
use super::Floor;
use crate::output;

/// What the isolation phases measured.
pub(crate) struct IsolationReport {
    lock: Stats,
    floor: Option<Stats>,
    tasks: usize,
    lost_without: u64,
    lost_with: u64,
    pub(crate) errors: u64,
    first_error: Option<String>,
}

fn key(i: i64) -> StorageKey {
    StorageKey::new(BotId(42), ChatId(i), UserId(i))
}

/// Lock + unlock of keys `1..=keys` for `rounds` rounds, beside the floor's bare lock
/// round trips; then `tasks` read-modify-writes of one key from `a` and `b` alternately,
/// without and with the lock.
pub(crate) async fn measure(
    a: &Database,
    b: &Database,
    floor: Option<&Floor>,
    keys: i64,
    rounds: usize,
    tasks: usize,
    bar: &ProgressBar,
) -> IsolationReport {
    let isolation = a.isolation();
    let (mut locks, mut floors) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        bar.set_message(format!("round {}/{rounds} lock", round + 1));
        let mut sample = Sample::default();
        for i in 1..=keys {
            let started = Instant::now();
            let outcome = isolation.lock(&key(i)).await.map(drop).map(|()| true);
            sample.record(started, outcome, i);
        }
        sample.nanos.sort_unstable();
        locks.push(sample);
        bar.inc(keys as u64);
        if let Some(floor) = floor.filter(|floor| floor.can_lock()) {
            let mut sample = Sample::default();
            for i in 1..=keys {
                let started = Instant::now();
                let outcome = floor
                    .lock_unlock(i)
                    .await
                    .map(|()| true)
                    .map_err(|err| fsmstore::Error::database(false, err.to_string()));
                sample.record(started, outcome, i);
            }
            sample.nanos.sort_unstable();
            floors.push(sample);
        }
        bar.inc(keys as u64);
    }
    bar.set_message("lost updates");
    let (lost_without, err_without) = lost_updates(a, b, tasks, false).await;
    let (lost_with, err_with) = lost_updates(a, b, tasks, true).await;
    let all = locks.iter().chain(&floors);
    IsolationReport {
        lock: Stats::of(&locks),
        floor: (!floors.is_empty()).then(|| Stats::of(&floors)),
        tasks,
        lost_without,
        lost_with,
        errors: all.clone().map(|s| s.errors).sum::<u64>()
            + u64::from(err_without.is_some())
            + u64::from(err_with.is_some()),
        first_error: all
            .filter_map(|s| s.first_error.clone())
            .chain(err_without)
            .chain(err_with)
            .next(),
    }
}

/// `tasks` tasks each read key 0's counter, add one and write it back, from `a` and `b`
/// alternately, all at once; the updates lost, and the first error.
async fn lost_updates(
    a: &Database,
    b: &Database,
    tasks: usize,
    locked: bool,
) -> (u64, Option<String>) {
    let counter = key(0);
    if let Err(err) = a.storage().clear(&counter).await {
        return (0, Some(err.to_string()));
    }
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let db = if t % 2 == 0 { a.clone() } else { b.clone() };
            let counter = counter.clone();
            tokio::spawn(async move {
                let _guard = if locked {
                    Some(db.isolation().lock(&counter).await?)
                } else {
                    None
                };
                let storage = db.storage();
                let data = storage.get_data(&counter).await?;
                let n = data.get("n").and_then(Value::as_i64).unwrap_or(0);
                let mut next = Data::new();
                next.insert("n".into(), json!(n + 1));
                storage.set_data(&counter, &next).await
            })
        })
        .collect();
    let (mut first_error, mut succeeded) = (None, 0_u64);
    for handle in handles {
        match handle.await {
            Ok(Ok(())) => succeeded += 1,
            Ok(Err(err)) => {
                first_error.get_or_insert(err.to_string());
            }
            Err(err) => {
                first_error.get_or_insert(format!("task: {err}"));
            }
        }
    }
    let n = match a.storage().get_data(&counter).await {
        Ok(data) => data.get("n").and_then(Value::as_i64).unwrap_or(0),
        Err(err) => return (0, Some(err.to_string())),
    };
    let _ = a.storage().clear(&counter).await;
    // Lost: acknowledged increments the counter does not show (failed tasks are errors).
    (succeeded.saturating_sub(n.max(0) as u64), first_error)
}

impl IsolationReport {
    pub(crate) fn json(&self) -> Value {
        json!({
            "lock": self.lock.json(),
            "floor_lock_unlock": self.floor.as_ref().map(Stats::json),
            "tasks": self.tasks,
            "lost_updates_without_lock": self.lost_without,
            "lost_updates_with_lock": self.lost_with,
            "errors": self.errors,
            "first_error": self.first_error,
        })
    }

    pub(crate) fn print(&self) {
        println!("\nper-key isolation (medians):");
        let mut headers = vec!["call", "ops/s", "p50 µs", "p99 µs"];
        let mut row = vec![
            "lock (unlock runs after, off the handler's path)".to_owned(),
            format!("{:.0}", self.lock.ops_per_sec),
            format!("{:.1}", self.lock.p50_us),
            format!("{:.1}", self.lock.p99_us),
        ];
        if let Some(floor) = &self.floor {
            headers.extend(["bare lock+unlock ops/s", "p50 µs"]);
            row.extend([
                format!("{:.0}", floor.ops_per_sec),
                format!("{:.1}", floor.p50_us),
            ]);
        }
        output::table(&headers, &[row]);
        println!(
            "{} read-modify-writes of one key from two handles: {} lost without the lock, {} with it",
            self.tasks, self.lost_without, self.lost_with
        );
        if let Some(err) = &self.first_error {
            println!("isolation: {} errors, first: {err}", self.errors);
        }
    }
}
