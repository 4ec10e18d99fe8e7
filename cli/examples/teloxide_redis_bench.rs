//! teloxide's own `RedisStorage` beside fsmstore's `TeloxideStorage` on Redis, in one run,
//! through the same teloxide `Storage<D>` trait: the comparison in docs/benchmarks.md.
//!
//! ```sh
//! cargo run --release -p fsmstore-cli --example teloxide_redis_bench -- \
//!     redis://127.0.0.1:6379/13 [keys=2000] [rounds=3] [tasks=1,8,32,64]
//! ```
//!
//! Per round, each storage runs `update_dialogue`, `get_dialogue` and `remove_dialogue` on
//! chats `1..=keys`, one awaited call at a time (who goes first alternates by round); then
//! for each task count, that many tasks each run `update_dialogue` + `get_dialogue` on
//! chats of their own for a second. Prints p50/p99 per call (medians over rounds) and
//! calls/s. teloxide keys its dialogues by the bare chat id, so give it a database of its
//! own: it deletes the chats it wrote (`remove_dialogue`) and fsmstore's table afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fsmstore::teloxide::TeloxideStorage;
use serde::{Deserialize, Serialize};
use teloxide::dispatching::dialogue::serializer::Json;
use teloxide::dispatching::dialogue::{RedisStorage, Storage};
use teloxide::types::ChatId;

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

/// One storage under test, through teloxide's trait.
#[derive(Clone)]
enum Under {
    Teloxide(Arc<RedisStorage<Json>>),
    Fsmstore(Arc<TeloxideStorage>),
}

impl Under {
    fn name(&self) -> &'static str {
        match self {
            Under::Teloxide(_) => "teloxide RedisStorage",
            Under::Fsmstore(_) => "fsmstore TeloxideStorage",
        }
    }

    async fn update(&self, i: i64) {
        match self {
            Under::Teloxide(s) => Arc::clone(s)
                .update_dialogue(ChatId(i), dialogue(i))
                .await
                .unwrap(),
            Under::Fsmstore(s) => Arc::clone(s)
                .update_dialogue(ChatId(i), dialogue(i))
                .await
                .unwrap(),
        }
    }

    async fn get(&self, i: i64) {
        let got: Option<Dialogue> = match self {
            Under::Teloxide(s) => Arc::clone(s).get_dialogue(ChatId(i)).await.unwrap(),
            Under::Fsmstore(s) => Arc::clone(s).get_dialogue(ChatId(i)).await.unwrap(),
        };
        assert!(got.is_some(), "chat {i} was written");
    }

    async fn remove(&self, i: i64) {
        match self {
            Under::Teloxide(s) => {
                <RedisStorage<Json> as Storage<Dialogue>>::remove_dialogue(Arc::clone(s), ChatId(i))
                    .await
                    .unwrap()
            }
            Under::Fsmstore(s) => {
                <TeloxideStorage as Storage<Dialogue>>::remove_dialogue(Arc::clone(s), ChatId(i))
                    .await
                    .unwrap()
            }
        }
    }
}

const PHASES: [&str; 3] = ["update_dialogue", "get_dialogue", "remove_dialogue"];

/// p50 and p99 in µs, and calls/s, of one phase.
fn summary(mut nanos: Vec<u64>) -> (f64, f64, f64) {
    nanos.sort_unstable();
    let total: u64 = nanos.iter().sum();
    let at = |q: usize| nanos[(nanos.len() * q / 100).min(nanos.len() - 1)] as f64 / 1000.0;
    (at(50), at(99), nanos.len() as f64 / (total as f64 / 1e9))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn phase(under: &Under, name: &str, keys: i64) -> (f64, f64, f64) {
    let mut nanos = Vec::with_capacity(keys as usize);
    for i in 1..=keys {
        let started = Instant::now();
        match name {
            "update_dialogue" => under.update(i).await,
            "get_dialogue" => under.get(i).await,
            _ => under.remove(i).await,
        }
        nanos.push(started.elapsed().as_nanos() as u64);
    }
    summary(nanos)
}

/// Calls/s of `tasks` tasks, each running update + get on chats of its own for `window`.
async fn throughput(under: &Under, tasks: usize, window: Duration) -> f64 {
    let deadline = Instant::now() + window;
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let under = under.clone();
            tokio::spawn(async move {
                let mut calls = 0u64;
                let mut i = 0i64;
                while Instant::now() < deadline {
                    let chat = 1_000_000 + (t as i64) * 100_000 + i % 1000;
                    under.update(chat).await;
                    under.get(chat).await;
                    calls += 2;
                    i += 1;
                }
                for chat in 0..i.min(1000) {
                    under.remove(1_000_000 + (t as i64) * 100_000 + chat).await;
                }
                calls
            })
        })
        .collect();
    let started = Instant::now();
    let mut calls = 0;
    for handle in handles {
        calls += handle.await.unwrap();
    }
    // The window, not the clean-up after it.
    calls as f64
        / started
            .elapsed()
            .min(window)
            .as_secs_f64()
            .max(window.as_secs_f64())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args
        .first()
        .cloned()
        .unwrap_or_else(|| "redis://127.0.0.1:6379/13".into());
    let keys: i64 = args
        .get(1)
        .map_or(2000, |k| k.parse().expect("keys: a number"));
    let rounds: usize = args
        .get(2)
        .map_or(3, |r| r.parse().expect("rounds: a number"));
    let tasks: Vec<usize> = args
        .get(3)
        .map_or("1,8,32,64", String::as_str)
        .split(',')
        .map(|t| t.parse().expect("tasks: numbers"))
        .collect();

    let teloxide = Under::Teloxide(
        RedisStorage::open(&url, Json)
            .await
            .expect("teloxide opens"),
    );
    let table = format!("bench_teloxide_{}", std::process::id());
    let db = fsmstore::open(&format!("{url}?table={table}"))
        .await
        .expect("fsmstore opens");
    let fsmstore = Under::Fsmstore(Arc::new(TeloxideStorage::from(&db)));
    let both = [teloxide, fsmstore];

    // [storage][phase] -> per-round (p50, p99, calls/s)
    let mut figures = vec![vec![Vec::new(); PHASES.len()]; both.len()];
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            vec![0, 1]
        } else {
            vec![1, 0]
        };
        for &s in &order {
            for (p, name) in PHASES.iter().enumerate() {
                figures[s][p].push(phase(&both[s], name, keys).await);
            }
        }
    }
    println!("{keys} chats, {rounds} rounds, medians; {url}");
    println!("| call | storage | p50 µs | p99 µs | calls/s |");
    println!("|---|---|---:|---:|---:|");
    for (p, name) in PHASES.iter().enumerate() {
        for (s, under) in both.iter().enumerate() {
            let f = &figures[s][p];
            println!(
                "| {name} | {} | {:.1} | {:.1} | {:.0} |",
                under.name(),
                median(f.iter().map(|x| x.0).collect()),
                median(f.iter().map(|x| x.1).collect()),
                median(f.iter().map(|x| x.2).collect()),
            );
        }
    }
    println!();
    println!(
        "| tasks | teloxide RedisStorage calls/s | fsmstore TeloxideStorage calls/s | ratio |"
    );
    println!("|---:|---:|---:|---:|");
    for &n in &tasks {
        let mut per = [Vec::new(), Vec::new()];
        for round in 0..rounds {
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for s in order {
                per[s].push(throughput(&both[s], n, Duration::from_secs(1)).await);
            }
        }
        let (t, f) = (median(per[0].clone()), median(per[1].clone()));
        println!("| {n} | {t:.0} | {f:.0} | {:.2}× |", f / t);
    }
    fsmstore::redis::RedisStorage::connect(&format!("{url}?table={table}"))
        .await
        .expect("reopen")
        .drop_table()
        .await
        .expect("drop the bench table");
    db.close().await.ok();
}
