//! The workload: six per-key phases run one awaited call at a time, and a concurrency
//! phase of many `update_data` calls on one key.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use fsmstore::serde_json::{json, Value};
use fsmstore::{BotId, ChatId, Data, Storage, StorageKey, UserId};
use indicatif::ProgressBar;

use super::cpu::{Cpu, CpuClock};

/// The state every key is put in.
pub(crate) const STATE: &str = "Form:name";

/// The per-key phases, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    SetState,
    GetState,
    SetData,
    GetData,
    UpdateData,
    Clear,
}

impl Phase {
    pub(crate) const ALL: [Phase; 6] = [
        Phase::SetState,
        Phase::GetState,
        Phase::SetData,
        Phase::GetData,
        Phase::UpdateData,
        Phase::Clear,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Phase::SetState => "set_state",
            Phase::GetState => "get_state",
            Phase::SetData => "set_data",
            Phase::GetData => "get_data",
            Phase::UpdateData => "update_data",
            Phase::Clear => "clear",
        }
    }
}

/// The object `set_data` writes for key `i`.
pub(crate) fn data_for(i: i64) -> Data {
    object(json!({"name": format!("user{i}"), "age": i, "tags": ["a", "b"]}))
}

/// The patch `update_data` merges.
pub(crate) fn patch() -> Data {
    object(json!({"step": 2}))
}

fn object(value: Value) -> Data {
    match value {
        Value::Object(map) => map,
        _ => Data::new(),
    }
}

/// One side of the comparison: fsmstore, or the bare driver. Key `i` (1-based) is the
/// conversation the call is about; each side maps it to its own rows.
pub(crate) trait Target: Sync {
    fn set_state(&self, i: i64) -> impl Future<Output = anyhow::Result<()>> + Send;
    fn get_state(&self, i: i64) -> impl Future<Output = anyhow::Result<Option<String>>> + Send;
    fn set_data(&self, i: i64, data: &Data) -> impl Future<Output = anyhow::Result<()>> + Send;
    fn get_data(&self, i: i64) -> impl Future<Output = anyhow::Result<Data>> + Send;
    fn update_data(
        &self,
        i: i64,
        patch: &Data,
    ) -> impl Future<Output = anyhow::Result<Data>> + Send;
    fn clear(&self, i: i64) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// fsmstore through `Arc<dyn Storage>`, as an application holds it. Keys are built before
/// the clock starts (the caller's work); the row id is built inside the call (fsmstore's).
pub(crate) struct FsmTarget {
    pub(crate) storage: Arc<dyn Storage>,
    keys: Vec<StorageKey>,
}

impl FsmTarget {
    pub(crate) fn new(storage: Arc<dyn Storage>, keys: i64) -> Self {
        let keys = (0..=keys)
            .map(|i| StorageKey::new(BotId(42), ChatId(i), UserId(i)))
            .collect();
        FsmTarget { storage, keys }
    }

    fn key(&self, i: i64) -> &StorageKey {
        &self.keys[i as usize]
    }
}

impl Target for FsmTarget {
    async fn set_state(&self, i: i64) -> anyhow::Result<()> {
        Ok(self.storage.set_state(self.key(i), Some(STATE)).await?)
    }
    async fn get_state(&self, i: i64) -> anyhow::Result<Option<String>> {
        Ok(self.storage.get_state(self.key(i)).await?)
    }
    async fn set_data(&self, i: i64, data: &Data) -> anyhow::Result<()> {
        Ok(self.storage.set_data(self.key(i), data).await?)
    }
    async fn get_data(&self, i: i64) -> anyhow::Result<Data> {
        Ok(self.storage.get_data(self.key(i)).await?)
    }
    async fn update_data(&self, i: i64, patch: &Data) -> anyhow::Result<Data> {
        Ok(self.storage.update_data(self.key(i), patch).await?)
    }
    async fn clear(&self, i: i64) -> anyhow::Result<()> {
        self.storage.clear(self.key(i)).await?;
        Ok(())
    }
}

/// What one run of one phase measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    /// Latency of each call, nanoseconds, sorted.
    pub(crate) nanos: Vec<u64>,
    /// Calls that failed or returned something other than expected.
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    /// The scheduler's count for the process over the calls (`None` where it can not be
    /// read, and for samples that do not measure it).
    pub(crate) cpu: Option<Cpu>,
}

impl Sample {
    /// The process's CPU time per call, microseconds.
    pub(crate) fn cpu_us_per_call(&self) -> Option<f64> {
        self.per_call(self.cpu?.nanos as f64 / 1000.0)
    }

    /// Times a thread of the process was put on a CPU, per call.
    pub(crate) fn runs_per_call(&self) -> Option<f64> {
        self.per_call(self.cpu?.runs as f64)
    }

    fn per_call(&self, total: f64) -> Option<f64> {
        if self.nanos.is_empty() {
            return None;
        }
        Some(total / self.nanos.len() as f64)
    }

    /// Calls per second of call time (the checks between calls are not counted).
    pub(crate) fn ops_per_sec(&self) -> f64 {
        let total: u64 = self.nanos.iter().sum();
        if total == 0 {
            return 0.0;
        }
        self.nanos.len() as f64 * 1e9 / total as f64
    }

    /// The `pct` percentile latency in microseconds.
    pub(crate) fn percentile_us(&self, pct: usize) -> f64 {
        if self.nanos.is_empty() {
            return 0.0;
        }
        let index = (self.nanos.len() * pct / 100).min(self.nanos.len() - 1);
        self.nanos[index] as f64 / 1000.0
    }

    fn fail(&mut self, what: String) {
        self.errors += 1;
        self.first_error.get_or_insert(what);
    }

    /// Records one call of key `i` started at `started`: `Ok(false)` is a wrong answer.
    pub(crate) fn record(
        &mut self,
        started: Instant,
        outcome: Result<bool, fsmstore::Error>,
        i: i64,
    ) {
        self.nanos.push(started.elapsed().as_nanos() as u64);
        match outcome {
            Ok(true) => {}
            Ok(false) => self.fail(format!("key {i}: unexpected answer")),
            Err(err) => self.fail(format!("key {i}: {err}")),
        }
    }
}

/// How often the progress bar moves (per call would add to what is measured).
const BAR_STEP: i64 = 128;

/// Lets the calling thread leave its CPU before the CPU clock is read: the scheduler adds a
/// running thread's time at each tick and when it stops, so a thread that ran calls without
/// sleeping (in-thread SQLite reads) would show up to a tick less. Outside the calls'
/// timings.
async fn settle() {
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
}

/// Runs `phase` over keys `1..=keys`, one awaited call at a time, checking each answer.
pub(crate) async fn run_phase<T: Target>(
    target: &T,
    phase: Phase,
    keys: i64,
    bar: &ProgressBar,
) -> Sample {
    let mut sample = Sample {
        nanos: Vec::with_capacity(keys as usize),
        ..Sample::default()
    };
    let patch = patch();
    settle().await;
    let cpu = CpuClock::start();
    for i in 1..=keys {
        let data = (phase == Phase::SetData).then(|| data_for(i));
        let started = Instant::now();
        let outcome: anyhow::Result<Option<String>> = match phase {
            Phase::SetState => target.set_state(i).await.map(|()| None),
            Phase::GetState => target.get_state(i).await.map(|state| {
                (state.as_deref() != Some(STATE)).then(|| format!("get_state: {state:?}"))
            }),
            Phase::SetData => match &data {
                Some(data) => target.set_data(i, data).await.map(|()| None),
                None => Ok(None),
            },
            Phase::GetData => target.get_data(i).await.map(|data| {
                (data != data_for(i)).then(|| format!("get_data: {}", Value::Object(data)))
            }),
            Phase::UpdateData => target.update_data(i, &patch).await.map(|data| {
                (data.len() != 4 || data.get("step") != Some(&json!(2)))
                    .then(|| format!("update_data: {}", Value::Object(data)))
            }),
            Phase::Clear => target.clear(i).await.map(|()| None),
        };
        sample.nanos.push(started.elapsed().as_nanos() as u64);
        match outcome {
            Ok(None) => {}
            Ok(Some(wrong)) => sample.fail(format!("key {i}: unexpected {wrong}")),
            Err(err) => sample.fail(format!("key {i}: {}", crate::output::one_line(&err, ""))),
        }
        if i % BAR_STEP == 0 {
            bar.inc(BAR_STEP as u64);
        }
    }
    settle().await;
    sample.cpu = cpu.elapsed();
    bar.inc((keys % BAR_STEP) as u64);
    sample.nanos.sort_unstable();
    sample
}

/// The concurrency phase's outcome.
#[derive(Debug, Clone, Default)]
pub(crate) struct Concurrency {
    pub(crate) tasks: usize,
    pub(crate) lost_updates: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) millis: f64,
}

/// `tasks` tasks each merge their own field into one key at once; every field must survive.
pub(crate) async fn run_concurrency(storage: &Arc<dyn Storage>, tasks: usize) -> Concurrency {
    let key = StorageKey::new(BotId(42), ChatId(0), UserId(0));
    let mut outcome = Concurrency {
        tasks,
        ..Concurrency::default()
    };
    let note = |outcome: &mut Concurrency, err: String| {
        outcome.errors += 1;
        outcome.first_error.get_or_insert(err);
    };
    if let Err(err) = storage.clear(&key).await {
        note(&mut outcome, err.to_string());
    }
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let storage = Arc::clone(storage);
            let key = key.clone();
            tokio::spawn(async move {
                let patch = object(json!({ format!("f{t}"): t }));
                storage.update_data(&key, &patch).await.map(drop)
            })
        })
        .collect();
    for handle in handles {
        match handle.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => note(&mut outcome, err.to_string()),
            Err(err) => note(&mut outcome, format!("task: {err}")),
        }
    }
    outcome.millis = started.elapsed().as_secs_f64() * 1000.0;
    match storage.get_data(&key).await {
        Ok(data) => {
            outcome.lost_updates = (0..tasks)
                .filter(|t| data.get(&format!("f{t}")) != Some(&json!(t)))
                .count() as u64;
        }
        Err(err) => note(&mut outcome, err.to_string()),
    }
    if let Err(err) = storage.clear(&key).await {
        note(&mut outcome, err.to_string());
    }
    outcome
}

/// One round of [`run_throughput`].
pub(crate) struct ThroughputRun {
    /// Calls per second of wall time, all tasks together.
    pub(crate) calls_per_sec: f64,
    /// Each call's latency, as the calling task saw it (queueing for a connection
    /// included): its percentiles.
    pub(crate) latency: Sample,
}

/// What each task of a throughput run does, one step per key of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Workload {
    /// `set_state`, `update_data`, `get_data`: a dialogue step.
    Mixed,
    /// `set_state`, `set_data`, `update_data`: writes only.
    Writes,
    /// `get_state`, `get_data` of a key written before the clock starts.
    Reads,
}

impl Workload {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::Mixed => "mixed",
            Workload::Writes => "writes",
            Workload::Reads => "reads",
        }
    }

    pub(crate) fn calls(self) -> &'static str {
        match self {
            Workload::Mixed => "set_state, update_data, get_data",
            Workload::Writes => "set_state, set_data, update_data",
            Workload::Reads => "get_state, get_data",
        }
    }

    fn calls_per_step(self) -> i64 {
        match self {
            Workload::Mixed | Workload::Writes => 3,
            Workload::Reads => 2,
        }
    }
}

/// `tasks` tasks at once, each running `workload`'s steps on keys of its own until
/// `steps` steps were run in all: calls per second, each call's latency, errors and the
/// first error. Each handle (`handle`) has keys of its own, so handles compared in one
/// round do the same work (the first round creates the rows, later ones rewrite them).
/// The keys (negative chats, apart from the phases' keys) are left to the scratch table's
/// drop.
pub(crate) async fn run_throughput(
    storage: &Arc<dyn Storage>,
    handle: usize,
    tasks: usize,
    steps: i64,
    workload: Workload,
) -> ThroughputRun {
    let per_task = (steps / tasks as i64).max(1);
    let bot = BotId(1000 + handle as i64);
    let key = move |t: usize, i: i64| StorageKey::new(bot, ChatId(-(t as i64) - 1), UserId(i));
    let mut setup = Sample::default();
    if workload == Workload::Reads {
        for t in 0..tasks {
            for i in 0..per_task {
                let outcome = storage.set_record(&key(t, i), Some(STATE), &patch()).await;
                if let Err(err) = outcome {
                    setup.fail(format!("setup: {err}"));
                }
            }
        }
    }
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let storage = Arc::clone(storage);
            tokio::spawn(async move {
                let mut sample = Sample::default();
                let data = data_for(t as i64);
                for i in 0..per_task {
                    let key = key(t, i);
                    match workload {
                        Workload::Mixed | Workload::Writes => {
                            let at = Instant::now();
                            let outcome = storage.set_state(&key, Some(STATE)).await.map(|()| true);
                            sample.record(at, outcome, i);
                            if workload == Workload::Writes {
                                let at = Instant::now();
                                let outcome = storage.set_data(&key, &data).await.map(|()| true);
                                sample.record(at, outcome, i);
                            }
                            let at = Instant::now();
                            let outcome = storage
                                .update_data(&key, &patch())
                                .await
                                .map(|merged| merged.get("step") == Some(&json!(2)));
                            sample.record(at, outcome, i);
                            if workload == Workload::Mixed {
                                let at = Instant::now();
                                let outcome = storage.get_data(&key).await.map(|_| true);
                                sample.record(at, outcome, i);
                            }
                        }
                        Workload::Reads => {
                            let at = Instant::now();
                            let outcome = storage
                                .get_state(&key)
                                .await
                                .map(|state| state.as_deref() == Some(STATE));
                            sample.record(at, outcome, i);
                            let at = Instant::now();
                            let outcome = storage
                                .get_data(&key)
                                .await
                                .map(|data| data.get("step") == Some(&json!(2)));
                            sample.record(at, outcome, i);
                        }
                    }
                }
                sample
            })
        })
        .collect();
    let mut latency = setup;
    for handle in handles {
        match handle.await {
            Ok(sample) => {
                latency.nanos.extend(sample.nanos);
                latency.errors += sample.errors;
                if let Some(first) = sample.first_error {
                    latency.first_error.get_or_insert(first);
                }
            }
            Err(err) => {
                latency.errors += 1;
                latency.first_error.get_or_insert(format!("task: {err}"));
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    latency.nanos.sort_unstable();
    let calls = (workload.calls_per_step() * per_task * tasks as i64) as f64;
    ThroughputRun {
        calls_per_sec: calls / seconds.max(f64::EPSILON),
        latency,
    }
}
