//! `fsmstore bench`: the workload on fsmstore and, with `--floor`, on the bare driver in
//! the same process, interleaved so that machine noise hits both.
//!
//! Both sides use one scratch table (`bench_<pid>`, its own version table), created with
//! `SchemaPolicy::Upgrade` and dropped afterwards. fsmstore's rows are `fsm:{i}:{i}` (key
//! `StorageKey::new(BotId(42), ChatId(i), UserId(i))`), the floor's `fsm:-{i}:{i}`, prefilled rows `fsm:{j}:{j}`
//! with `j` above the benchmark's keys, so all of them interleave in the primary key.

mod cpu;
mod floor_mysql;
mod floor_postgres;
mod floor_redis;
mod floor_sqlite;
mod isolation;
mod rename;
mod report;
mod stats;
mod teloxide;
pub(crate) mod workload;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use fsmstore::{SchemaPolicy, Scheme, StorageOptions, TableName};
use indicatif::{ProgressBar, ProgressStyle};

use self::floor_mysql::MysqlFloor;
use self::floor_postgres::PgFloor;
use self::floor_redis::RedisFloor;
use self::floor_sqlite::SqliteFloor;
use self::report::{PhaseReport, Report, Throughput, VariantReport};
use self::workload::{run_concurrency, run_phase, FsmTarget, Phase, Sample};
use crate::args::{BenchArgs, Global};
use crate::{exit, output};

/// The floor's row id for key `i`.
pub(crate) fn floor_id(i: i64) -> String {
    format!("fsm:-{i}:{i}")
}

/// The bare driver of one backend.
enum Floor {
    Sqlite(SqliteFloor),
    Postgres(PgFloor),
    Mysql(MysqlFloor),
    Redis(RedisFloor),
}

impl Floor {
    async fn open(url: &str, table: &TableName) -> anyhow::Result<Floor> {
        Ok(match Scheme::of(url)? {
            Scheme::Sqlite => Floor::Sqlite(SqliteFloor::open(url, table).await?),
            Scheme::Postgres => Floor::Postgres(PgFloor::open(url, table).await?),
            Scheme::Mysql => Floor::Mysql(MysqlFloor::open(url, table).await?),
            Scheme::Redis => Floor::Redis(RedisFloor::open(url, table).await?),
            _ => anyhow::bail!("no floor for this database"),
        })
    }

    async fn run_phase(&self, phase: Phase, keys: i64, bar: &ProgressBar) -> Sample {
        match self {
            Floor::Sqlite(f) => run_phase(f, phase, keys, bar).await,
            Floor::Postgres(f) => run_phase(f, phase, keys, bar).await,
            Floor::Mysql(f) => run_phase(f, phase, keys, bar).await,
            Floor::Redis(f) => run_phase(f, phase, keys, bar).await,
        }
    }

    /// Whether the floor has a bare lock to compare with (the servers; SQLite's locks are
    /// in-process).
    fn can_lock(&self) -> bool {
        !matches!(self, Floor::Sqlite(_))
    }

    /// A bare lock and unlock of key `i`.
    async fn lock_unlock(&self, i: i64) -> anyhow::Result<()> {
        match self {
            Floor::Sqlite(_) => Ok(()),
            Floor::Postgres(f) => f.lock_unlock(i).await,
            Floor::Mysql(f) => f.lock_unlock(i).await,
            Floor::Redis(f) => f.lock_unlock(i).await,
        }
    }

    async fn prefill(&self, first: i64, rows: i64) -> anyhow::Result<()> {
        match self {
            Floor::Sqlite(f) => f.prefill(first, rows).await,
            Floor::Postgres(f) => f.prefill(first, rows).await,
            Floor::Mysql(f) => f.prefill(first, rows).await,
            Floor::Redis(f) => f.prefill(first, rows).await,
        }
    }
}

pub(crate) async fn run(global: &Global, args: BenchArgs) -> anyhow::Result<ExitCode> {
    let (url, json) = (global.url.clone(), global.json);
    if let Some(n) = args.rename {
        let tasks = args.tasks.first().copied().unwrap_or(8).max(1);
        let concurrency = args.concurrency;
        let report =
            tokio::spawn(async move { rename::run(&url, n, tasks, concurrency, json).await })
                .await??;
        if json {
            output::json(&report);
        }
        return Ok(ExitCode::SUCCESS);
    }
    // On a runtime worker, as a bot's handlers run (not on the thread that blocks on main).
    let report = tokio::spawn(async move { bench(&url, &args).await }).await??;
    if json {
        output::json(&report.json());
    } else {
        report.print();
    }
    Ok(
        if report.errors() == 0 && report.concurrency.lost_updates == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(exit::FAILURE)
        },
    )
}

async fn bench(url: &str, args: &BenchArgs) -> anyhow::Result<Report> {
    let pid = std::process::id();
    // Redis has no schema: its scratch "table" is a key prefix, deleted afterwards.
    let keys_only = Scheme::of(url)? == Scheme::Redis;
    let options = if keys_only {
        StorageOptions::default().table(&format!("bench_{pid}"))?
    } else {
        StorageOptions::default()
            .table(&format!("bench_{pid}"))?
            .version_table(&format!("bench_{pid}_ver"))?
            .schema(SchemaPolicy::Upgrade)
    };
    let db = fsmstore::open_with(url, options.clone())
        .await
        .context("open the storage")?;
    // More handles, each with a variant (a TTL; the aiogram layout; another URL), and one
    // plain handle they are all compared with (not the first handle: a handle opened later
    // measured up to 2.7x slower on reads than the first one in the same process).
    let mut wanted: Vec<(String, &'static str, String, StorageOptions)> = Vec::new();
    if args.ttl {
        let ttl = options
            .clone()
            .ttl(std::time::Duration::from_secs(30 * 86_400));
        wanted.push(("ttl=30d".into(), "same table", url.to_owned(), ttl));
    }
    if args.layout {
        let mut python = options.clone().table(&format!("bench_{pid}_py"))?;
        if !keys_only {
            python = python.version_table(&format!("bench_{pid}_py_ver"))?;
        }
        let python = python.layout(fsmstore::Layout::AiogramSqlalchemy);
        let name = if keys_only {
            "layout=aiogram".into()
        } else {
            "layout=aiogram-sqlalchemy".into()
        };
        wanted.push((name, "a table in each layout", url.to_owned(), python));
    }
    for other in &args.beside {
        let name = redacted(other);
        wanted.push((name, "same table", other.clone(), options.clone()));
    }
    let mut variants = Vec::new();
    for (name, note, variant_url, variant_options) in wanted {
        let with = fsmstore::open_with(&variant_url, variant_options)
            .await
            .with_context(|| format!("open a handle with {name}"))?;
        variants.push(Variant { name, note, with });
    }
    let plain = if variants.is_empty() {
        None
    } else {
        Some(
            fsmstore::open_with(url, options.clone())
                .await
                .context("open a plain handle")?,
        )
    };
    let second = if args.isolation {
        Some(
            fsmstore::open_with(url, options.clone())
                .await
                .context("open a second handle")?,
        )
    } else {
        None
    };
    let beside = plain.as_ref().map(|plain| (plain, variants.as_slice()));
    let result = measure(url, args, &options, &db, second.as_ref(), beside).await;
    for variant in variants {
        // Its scratch tables: its own (the layout's), or on another server (`--beside` a
        // Galera node or another database); on the same table they are already gone or go
        // with the first handle's (dropping is idempotent).
        if keys_only {
            let table = variant.with.options().table.clone();
            floor_redis::delete_scratch(url, &table).await?;
        } else {
            variant.with.migrator()?.drop_tables().await?;
        }
        variant.with.close().await?;
    }
    if let Some(plain) = plain {
        plain.close().await?;
    }
    if let Some(second) = second {
        second.close().await?;
    }
    finish(url, &db, &options.table, result).await
}

/// Drops the scratch table of `db` (on Redis: deletes its keys), closes `db`, and returns
/// `result` — or the first error of the three.
pub(crate) async fn finish<T>(
    url: &str,
    db: &fsmstore::Database,
    table: &TableName,
    result: anyhow::Result<T>,
) -> anyhow::Result<T> {
    let dropped = if Scheme::of(url)? == Scheme::Redis {
        floor_redis::delete_scratch(url, table).await
    } else {
        async { db.migrator()?.drop_tables().await }
            .await
            .map_err(anyhow::Error::from)
    };
    let closed = db.close().await;
    let value = result?;
    dropped.context("drop the scratch tables")?;
    closed?;
    Ok(value)
}

async fn measure(
    url: &str,
    args: &BenchArgs,
    options: &StorageOptions,
    db: &fsmstore::Database,
    second: Option<&fsmstore::Database>,
    beside: Option<(&fsmstore::Database, &[Variant])>,
) -> anyhow::Result<Report> {
    let storage = &db.storage();
    let keys = args.keys.max(1);
    let rounds = args.rounds.max(1);
    let floor = if args.floor || args.prefill > 0 || args.isolation {
        Some(Floor::open(url, &options.table).await?)
    } else {
        None
    };
    if let (Some(floor), true) = (&floor, args.prefill > 0) {
        let spinner =
            ProgressBar::new_spinner().with_message(format!("prefilling {} rows", args.prefill));
        spinner.enable_steady_tick(std::time::Duration::from_millis(200));
        floor.prefill(keys + 1, args.prefill).await?;
        spinner.finish_and_clear();
    }
    let phase_floor = floor.as_ref().filter(|_| args.floor);
    let rows_at_start = storage.key_count().await?;
    let variants = beside.map_or(0, |(_, variants)| variants.len());
    let sides = 1 + usize::from(phase_floor.is_some()) + variants + usize::from(variants > 0);
    let teloxide_calls = if args.teloxide { 6 } else { 0 };
    let isolation_calls = if args.isolation { 2 } else { 0 };
    let bar = ProgressBar::new(
        (rounds * (Phase::ALL.len() * sides + teloxide_calls + isolation_calls)) as u64
            * keys as u64,
    );
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg:24} [{bar:40}] {pos}/{len} ({per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let fsm = FsmTarget::new(Arc::clone(storage), keys);
    let fsm_beside = beside.map(|(plain, variants)| {
        (
            FsmTarget::new(plain.storage(), keys),
            variants
                .iter()
                .map(|v| FsmTarget::new(v.with.storage(), keys))
                .collect::<Vec<_>>(),
        )
    });
    let mut base_samples: Vec<Vec<Sample>> = vec![Vec::new(); Phase::ALL.len()];
    let mut fsm_samples: Vec<Vec<Sample>> = vec![Vec::new(); Phase::ALL.len()];
    let mut floor_samples: Vec<Vec<Sample>> = vec![Vec::new(); Phase::ALL.len()];
    let mut variant_samples: Vec<Vec<Vec<Sample>>> =
        vec![vec![Vec::new(); Phase::ALL.len()]; variants];
    for round in 0..rounds {
        for (p, phase) in Phase::ALL.into_iter().enumerate() {
            bar.set_message(format!("round {}/{rounds} {}", round + 1, phase.name()));
            // Alternate who goes first, so neither always meets a warmer machine.
            let floor_first = round % 2 == 1;
            if let (Some(floor), true) = (phase_floor, floor_first) {
                floor_samples[p].push(floor.run_phase(phase, keys, &bar).await);
            }
            if let (Some((plain, with)), true) = (&fsm_beside, floor_first) {
                for (v, with) in with.iter().enumerate() {
                    variant_samples[v][p].push(run_phase(with, phase, keys, &bar).await);
                }
                base_samples[p].push(run_phase(plain, phase, keys, &bar).await);
            }
            fsm_samples[p].push(run_phase(&fsm, phase, keys, &bar).await);
            if let (Some(floor), false) = (phase_floor, floor_first) {
                floor_samples[p].push(floor.run_phase(phase, keys, &bar).await);
            }
            if let (Some((plain, with)), false) = (&fsm_beside, floor_first) {
                base_samples[p].push(run_phase(plain, phase, keys, &bar).await);
                for (v, with) in with.iter().enumerate() {
                    variant_samples[v][p].push(run_phase(with, phase, keys, &bar).await);
                }
            }
        }
    }
    let teloxide = if args.teloxide {
        teloxide::measure(storage, keys, rounds, &bar).await
    } else {
        Vec::new()
    };
    let isolation = match second {
        Some(second) => Some(
            isolation::measure(
                db,
                second,
                floor.as_ref(),
                keys,
                rounds,
                args.concurrency.max(2),
                &bar,
            )
            .await,
        ),
        None => None,
    };
    bar.set_message("concurrency");
    let concurrency = run_concurrency(storage, args.concurrency.max(1)).await;
    bar.finish_and_clear();
    let phases = Phase::ALL
        .into_iter()
        .enumerate()
        .map(|(p, phase)| PhaseReport::new(phase, &fsm_samples[p], &floor_samples[p]))
        .collect();
    let variants = beside
        .map(|(_, variants)| variants)
        .unwrap_or_default()
        .iter()
        .zip(&variant_samples)
        .map(|(v, samples)| VariantReport {
            name: v.name.clone(),
            note: v.note,
            phases: Phase::ALL
                .into_iter()
                .enumerate()
                .map(|(p, phase)| PhaseReport::new(phase, &samples[p], &base_samples[p]))
                .collect(),
        })
        .collect();
    // Throughput per handle at each number of tasks (medians over the rounds).
    let mut handles: Vec<(String, Arc<dyn fsmstore::Storage>)> = Vec::new();
    if !args.tasks.is_empty() {
        handles.push((redacted(url), Arc::clone(storage)));
        if let Some((_, variants)) = beside {
            for v in variants {
                handles.push((v.name.clone(), v.with.storage()));
            }
        }
    }
    // Handles take turns within each round, so they share the machine's moments.
    let mut throughput = Vec::new();
    for &tasks in &args.tasks {
        let tasks = tasks.max(1);
        bar.set_message(format!("throughput {tasks} tasks"));
        let mut runs: Vec<Vec<workload::ThroughputRun>> =
            handles.iter().map(|_| Vec::new()).collect();
        let mut batched: Vec<(u64, u64)> = vec![(0, 0); handles.len()];
        for round in 0..rounds {
            for h in 0..handles.len() {
                // Odd rounds run the handles in the other order.
                let h = if round % 2 == 1 {
                    handles.len() - 1 - h
                } else {
                    h
                };
                let handle = &handles[h].1;
                let before = handle.write_stats().unwrap_or_default();
                runs[h].push(workload::run_throughput(handle, h, tasks, keys, args.workload).await);
                let after = handle.write_stats().unwrap_or_default();
                let writes = |s: fsmstore::coalesce::CoalesceStats| s.alone + s.batched_writes;
                batched[h].0 += after.batched_writes - before.batched_writes;
                batched[h].1 += writes(after) - writes(before);
            }
        }
        for (h, (name, _)) in handles.iter().enumerate() {
            let mut entry = Throughput::of(name.clone(), tasks, &runs[h]);
            let (in_batches, writes) = batched[h];
            entry.batched = (writes > 0).then(|| in_batches as f64 / writes as f64);
            throughput.push((h, entry));
        }
    }
    // Reported per handle, each at every task count.
    throughput.sort_by_key(|(h, _)| *h);
    let throughput: Vec<Throughput> = throughput.into_iter().map(|(_, entry)| entry).collect();
    Ok(Report {
        backend: dialect_name(url),
        keys,
        rounds,
        prefill: args.prefill,
        rows_at_start,
        phases,
        concurrency,
        teloxide,
        isolation,
        variants,
        throughput,
        workload: args.workload,
    })
}

/// `--ttl`, `--layout` or `--beside URL`: a handle with the variant, measured beside a
/// plain handle.
struct Variant {
    name: String,
    note: &'static str,
    with: fsmstore::Database,
}

/// `url` without its passwords (reports name handles by their URL).
fn redacted(url: &str) -> String {
    fsmstore::core::DatabaseUrl::redacted(url)
}

/// The backend's name for the report (`sqlite`, `postgres`, `mysql`, `redis`).
fn dialect_name(url: &str) -> String {
    Scheme::of(url).map_or_else(
        |_| "database".to_owned(),
        |scheme| scheme.feature().to_owned(),
    )
}
