//! `fsmstore bench --teloxide`: what the teloxide adapter adds to the storage calls it
//! makes. Each teloxide call runs beside the plain call it turns into, on the same keys,
//! interleaved by round: `update_dialogue` / `set_record`, `get_dialogue` / `get_record`,
//! `remove_dialogue` / `clear`.

use std::sync::Arc;
use std::time::Instant;

use fsmstore::serde_json::{json, Value};
use fsmstore::teloxide::TeloxideStorage;
use fsmstore::{Data, Storage, StorageKey};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use teloxide::dispatching::dialogue::Storage as _;
use teloxide::types::ChatId;

use super::stats::Stats;
use super::workload::Sample;
use crate::output;

/// The dialogue written: a struct variant, as teloxide's dialogue example has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Dialogue {
    ReceiveAge { full_name: String },
}

fn dialogue(i: i64) -> Dialogue {
    Dialogue::ReceiveAge {
        full_name: format!("user{i}"),
    }
}

/// The state and data the plain calls write: what the adapter writes for `dialogue(i)`.
fn record(i: i64) -> (&'static str, Data) {
    let mut data = Data::new();
    data.insert("full_name".into(), json!(format!("user{i}")));
    ("ReceiveAge", data)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Update,
    Get,
    Remove,
}

impl Op {
    const ALL: [Op; 3] = [Op::Update, Op::Get, Op::Remove];

    fn names(self) -> (&'static str, &'static str) {
        match self {
            Op::Update => ("update_dialogue", "set_record"),
            Op::Get => ("get_dialogue", "get_record"),
            Op::Remove => ("remove_dialogue", "clear"),
        }
    }
}

/// One operation: the adapter's figures and the plain calls'.
pub(crate) struct OpReport {
    op: Op,
    adapter: Stats,
    plain: Stats,
    pub(crate) errors: u64,
    first_error: Option<String>,
}

impl OpReport {
    /// The adapter's time per call over the plain call's (median throughputs).
    fn ratio(&self) -> f64 {
        if self.adapter.ops_per_sec > 0.0 {
            self.plain.ops_per_sec / self.adapter.ops_per_sec
        } else {
            0.0
        }
    }

    pub(crate) fn json(&self) -> Value {
        let (adapter, plain) = self.op.names();
        json!({
            "op": adapter,
            "plain": plain,
            "adapter": self.adapter.json(),
            "plain_call": self.plain.json(),
            "ratio": (self.ratio() * 1000.0).round() / 1000.0,
            "errors": self.errors,
            "first_error": self.first_error,
        })
    }
}

/// Runs the three operations `rounds` times over keys `1..=keys`.
pub(crate) async fn measure(
    storage: &Arc<dyn Storage>,
    keys: i64,
    rounds: usize,
    bar: &ProgressBar,
) -> Vec<OpReport> {
    let adapter = Arc::new(TeloxideStorage::new(Arc::clone(storage)));
    let chat_keys: Vec<StorageKey> = (0..=keys).map(|i| adapter.key(ChatId(i))).collect();
    let mut adapter_samples = vec![Vec::new(); Op::ALL.len()];
    let mut plain_samples = vec![Vec::new(); Op::ALL.len()];
    for round in 0..rounds {
        // Alternate who goes first, so neither always meets a warmer machine.
        let adapter_first = round % 2 == 0;
        for side in [adapter_first, !adapter_first] {
            for (o, op) in Op::ALL.into_iter().enumerate() {
                bar.set_message(format!("round {}/{rounds} {}", round + 1, op.names().0));
                let sample = if side {
                    run_adapter(&adapter, op, keys).await
                } else {
                    run_plain(storage, &chat_keys, op, keys).await
                };
                bar.inc(keys as u64);
                if side {
                    adapter_samples[o].push(sample);
                } else {
                    plain_samples[o].push(sample);
                }
            }
        }
    }
    Op::ALL
        .into_iter()
        .enumerate()
        .map(|(o, op)| {
            let all = adapter_samples[o].iter().chain(&plain_samples[o]);
            OpReport {
                op,
                adapter: Stats::of(&adapter_samples[o]),
                plain: Stats::of(&plain_samples[o]),
                errors: all.clone().map(|s| s.errors).sum(),
                first_error: all.filter_map(|s| s.first_error.clone()).next(),
            }
        })
        .collect()
}

async fn run_adapter(adapter: &Arc<TeloxideStorage>, op: Op, keys: i64) -> Sample {
    let mut sample = Sample::default();
    for i in 1..=keys {
        let chat = ChatId(i);
        let started = Instant::now();
        let outcome: Result<bool, fsmstore::Error> =
            match op {
                Op::Update => Arc::clone(adapter)
                    .update_dialogue(chat, dialogue(i))
                    .await
                    .map(|()| true),
                Op::Get => Arc::clone(adapter)
                    .get_dialogue(chat)
                    .await
                    .map(|got: Option<Dialogue>| got == Some(dialogue(i))),
                Op::Remove => <TeloxideStorage as teloxide::dispatching::dialogue::Storage<
                    Dialogue,
                >>::remove_dialogue(Arc::clone(adapter), chat)
                .await
                .map(|()| true),
            };
        sample.record(started, outcome, i);
    }
    sample.nanos.sort_unstable();
    sample
}

async fn run_plain(
    storage: &Arc<dyn Storage>,
    keys_of: &[StorageKey],
    op: Op,
    keys: i64,
) -> Sample {
    let mut sample = Sample::default();
    for i in 1..=keys {
        let key = &keys_of[i as usize];
        let started = Instant::now();
        let outcome = match op {
            Op::Update => {
                let (state, data) = record(i);
                storage
                    .set_record(key, Some(state), &data)
                    .await
                    .map(|()| true)
            }
            Op::Get => storage.get_record(key).await.map(|got| {
                let (state, data) = record(i);
                got.state.as_deref() == Some(state) && got.data == data
            }),
            Op::Remove => storage.clear(key).await,
        };
        sample.record(started, outcome, i);
    }
    sample.nanos.sort_unstable();
    sample
}

/// Prints the comparison table.
pub(crate) fn print(ops: &[OpReport]) {
    println!("\nteloxide adapter beside the plain calls it makes (medians):");
    let headers = [
        "teloxide call",
        "ops/s",
        "p50 µs",
        "plain call",
        "ops/s",
        "p50 µs",
        "adapter/plain",
    ];
    let rows: Vec<Vec<String>> = ops
        .iter()
        .map(|r| {
            let (adapter, plain) = r.op.names();
            vec![
                adapter.to_owned(),
                format!("{:.0}", r.adapter.ops_per_sec),
                format!("{:.1}", r.adapter.p50_us),
                plain.to_owned(),
                format!("{:.0}", r.plain.ops_per_sec),
                format!("{:.1}", r.plain.p50_us),
                format!("{:.2}×", r.ratio()),
            ]
        })
        .collect();
    output::table(&headers, &rows);
    for r in ops {
        if let Some(err) = &r.first_error {
            println!("{}: {} errors, first: {err}", r.op.names().0, r.errors);
        }
    }
}
