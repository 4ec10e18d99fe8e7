//! `fsmstore bench --rename N`: a dialogue migration at scale. N dialogues in one state are
//! renamed ([`run_step`]) while a bot's workload runs on other keys of the same table; the
//! workload's latencies are measured alone first (the baseline) and then during the
//! rename, in one run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use fsmstore::dialogues::{run_step, DialogueStep, StepOptions};
use fsmstore::serde_json::{json, Value};
use fsmstore::{
    BotId, ChatId, Database, SchemaPolicy, Scheme, Storage, StorageKey, StorageOptions, UserId,
};
use futures_util::{stream, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};

/// How long the baseline workload runs alone.
const BASELINE: Duration = Duration::from_secs(5);

/// The figures of one workload phase.
struct Phase {
    calls: usize,
    seconds: f64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
}

impl Phase {
    fn of(mut latencies: Vec<Duration>, seconds: f64) -> Phase {
        latencies.sort_unstable();
        let at = |q: f64| {
            latencies
                .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1e6)
        };
        Phase {
            calls: latencies.len(),
            seconds,
            p50_us: at(0.50),
            p99_us: at(0.99),
            max_us: latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e6),
        }
    }

    fn json(&self) -> Value {
        json!({
            "calls": self.calls,
            "calls_per_sec": (self.calls as f64 / self.seconds.max(1e-9)).round(),
            "p50_us": (self.p50_us * 10.0).round() / 10.0,
            "p99_us": (self.p99_us * 10.0).round() / 10.0,
            "max_us": (self.max_us * 10.0).round() / 10.0,
        })
    }

    fn line(&self, name: &str) -> String {
        format!(
            "{name:<16} {:>9.0} calls/s  p50 {:>9.1} µs  p99 {:>9.1} µs  max {:>10.1} µs",
            self.calls as f64 / self.seconds.max(1e-9),
            self.p50_us,
            self.p99_us,
            self.max_us
        )
    }
}

/// A migrated dialogue's key: chat and user `i`.
fn stored(i: u64) -> StorageKey {
    StorageKey::new(BotId(42), ChatId(i as i64), UserId(i as i64))
}

/// A live user's key: negative chats, never among the migrated ones.
fn live(task: usize, j: u64) -> StorageKey {
    let chat = -((task as i64 + 1) * 1_000_000 + (j % 1000) as i64);
    StorageKey::new(BotId(42), ChatId(chat), UserId(chat))
}

/// `tasks` bot tasks, each writing then reading its own users until `stop`: every call's
/// latency.
async fn workload(
    storage: Arc<dyn Storage>,
    tasks: usize,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Vec<Duration>> {
    let mut handles = Vec::new();
    for task in 0..tasks {
        let (storage, stop) = (Arc::clone(&storage), Arc::clone(&stop));
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut j = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                let key = live(task, j);
                let patch = fsmstore::data!({ "step": j });
                let started = Instant::now();
                storage.transition(&key, Some("Live:step"), &patch).await?;
                latencies.push(started.elapsed());
                let started = Instant::now();
                storage.get_state(&key).await?;
                latencies.push(started.elapsed());
                j += 1;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.await??);
    }
    Ok(all)
}

pub(crate) async fn run(
    url: &str,
    n: u64,
    tasks: usize,
    concurrency: usize,
    json_out: bool,
) -> anyhow::Result<Value> {
    let pid = std::process::id();
    let keys_only = Scheme::of(url)? == Scheme::Redis;
    let table = format!("bench_{pid}_rename");
    let mut options = StorageOptions::default().table(&table)?;
    if !keys_only {
        options = options
            .version_table(&format!("{table}_ver"))?
            .schema(SchemaPolicy::Upgrade);
    }
    let db = fsmstore::open_with(url, options.clone())
        .await
        .context("open the storage")?;
    let result = measure(&db, n, tasks, concurrency, json_out).await;
    super::finish(url, &db, &options.table, result).await
}

/// A progress bar over `n` dialogues (hidden for `--json`).
fn progress_bar(n: u64, what: &str, hidden: bool) -> ProgressBar {
    let bar = if hidden {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(n)
    };
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:40}}] {{pos}}/{{len}} dialogues ({{per_sec}}, {{eta}})"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

async fn measure(
    db: &Database,
    n: u64,
    tasks: usize,
    concurrency: usize,
    json_out: bool,
) -> anyhow::Result<Value> {
    let storage = db.storage();
    let bar = progress_bar(n, "filling", json_out);
    let started = Instant::now();
    let mut fill = stream::iter(1..=n)
        .map(|i| {
            let storage = Arc::clone(&storage);
            async move {
                storage
                    .set_record(&stored(i), Some("Bench:old"), &fsmstore::data!({ "i": i }))
                    .await
            }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some(done) = fill.next().await {
        done?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let fill_seconds = started.elapsed().as_secs_f64();

    // The bot alone.
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(workload(Arc::clone(&storage), tasks, Arc::clone(&stop)));
    let started = Instant::now();
    tokio::time::sleep(BASELINE).await;
    stop.store(true, Ordering::Relaxed);
    let baseline = Phase::of(running.await??, started.elapsed().as_secs_f64());

    // The bot while the rename runs.
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(workload(Arc::clone(&storage), tasks, Arc::clone(&stop)));
    let step = DialogueStep::rename_state("Bench:old", "Bench:new")?;
    let bar = progress_bar(n, "renaming", json_out);
    let started = Instant::now();
    let inspect = db.inspect();
    let renamed = run_step(
        &*inspect,
        &step,
        &StepOptions::default().batch(1000),
        &mut |report| bar.set_position(report.changed),
    )
    .await;
    let rename_seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    bar.finish_and_clear();
    let during = Phase::of(running.await??, started.elapsed().as_secs_f64());
    let report = renamed?;
    let stats = inspect.stats().await?;
    let new = stats.fresh_in(Some("Bench:new"));
    anyhow::ensure!(
        report.changed == n && new == n && stats.fresh_in(Some("Bench:old")) == 0,
        "the rename changed {} of {n} dialogues; {new} are at the new name",
        report.changed
    );
    let value = json!({
        "backend": db.backend(),
        "dialogues": n,
        "fill_seconds": (fill_seconds * 100.0).round() / 100.0,
        // To the microsecond: a small rename takes milliseconds.
        "rename_seconds": (rename_seconds * 1e6).round() / 1e6,
        "renamed_per_sec": (n as f64 / rename_seconds.max(1e-9)).round(),
        "live_tasks": tasks,
        "baseline": baseline.json(),
        "during": during.json(),
    });
    if !json_out {
        println!(
            "{}: {n} dialogues renamed in {rename_seconds:.2} s ({:.0}/s; filled in {fill_seconds:.1} s)",
            db.backend(),
            n as f64 / rename_seconds.max(1e-9)
        );
        println!("a bot's calls on other keys, {tasks} tasks (transition, get_state):");
        println!("{}", baseline.line("alone"));
        println!("{}", during.line("during rename"));
    }
    Ok(value)
}
