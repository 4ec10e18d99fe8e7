//! Medians over rounds, the text table and the JSON report.

use fsmstore::serde_json::{json, Value};

use super::stats::{round2, Stats};
use super::workload::{Concurrency, Phase, Sample};
use crate::output;

/// One phase: fsmstore, and the floor when measured.
pub(crate) struct PhaseReport {
    pub(crate) phase: Phase,
    pub(crate) fsm: Stats,
    pub(crate) floor: Option<Stats>,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
}

impl PhaseReport {
    pub(crate) fn new(phase: Phase, fsm: &[Sample], floor: &[Sample]) -> Self {
        let all = fsm.iter().chain(floor);
        PhaseReport {
            phase,
            fsm: Stats::of(fsm),
            floor: (!floor.is_empty()).then(|| Stats::of(floor)),
            errors: all.clone().map(|s| s.errors).sum(),
            first_error: all.filter_map(|s| s.first_error.clone()).next(),
        }
    }

    /// Its table row: phase, ops/s, p50, p99, CPU per call, then the floor's (or the plain
    /// handle's) and the ratio when there is one.
    fn row(&self) -> Vec<String> {
        let mut row = vec![self.phase.name().to_owned()];
        row.extend(cells(&self.fsm));
        if let Some(floor) = &self.floor {
            row.extend(cells(floor));
            row.push(self.ratio().map_or("-".into(), |r| format!("{r:.2}×")));
        }
        row
    }

    /// fsmstore's time per call over the floor's (median throughputs): 1.05 = 5 % slower.
    fn ratio(&self) -> Option<f64> {
        self.floor
            .as_ref()
            .filter(|floor| self.fsm.ops_per_sec > 0.0 && floor.ops_per_sec > 0.0)
            .map(|floor| floor.ops_per_sec / self.fsm.ops_per_sec)
    }
}

/// Everything a run measured.
pub(crate) struct Report {
    pub(crate) backend: String,
    pub(crate) keys: i64,
    pub(crate) rounds: usize,
    pub(crate) prefill: i64,
    pub(crate) rows_at_start: u64,
    pub(crate) phases: Vec<PhaseReport>,
    pub(crate) concurrency: Concurrency,
    /// `--teloxide`: the adapter beside the plain calls.
    pub(crate) teloxide: Vec<super::teloxide::OpReport>,
    /// `--isolation`: lock cost and lost updates without and with the lock.
    pub(crate) isolation: Option<super::isolation::IsolationReport>,
    /// `--ttl` or `--layout`: each phase through the variant handle (as `fsm`) beside the
    /// plain one (as `floor`).
    pub(crate) variants: Vec<VariantReport>,
    /// `--tasks`: dialogue steps per second with N tasks at once, per handle.
    pub(crate) throughput: Vec<Throughput>,
    /// `--workload`: what each task of `--tasks` ran.
    pub(crate) workload: super::workload::Workload,
}

/// One handle with `tasks` tasks at once: calls per second of wall time and each call's
/// latency percentiles (medians over the rounds).
pub(crate) struct Throughput {
    pub(crate) handle: String,
    pub(crate) tasks: usize,
    pub(crate) ops_per_sec: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    /// The share of writes that went in a batch of two or more (`None`: the handle does
    /// not coalesce, or wrote nothing).
    pub(crate) batched: Option<f64>,
}

impl Throughput {
    pub(crate) fn of(
        handle: String,
        tasks: usize,
        runs: &[super::workload::ThroughputRun],
    ) -> Self {
        let median = |mut values: Vec<f64>| {
            values.sort_by(f64::total_cmp);
            values.get(values.len() / 2).copied().unwrap_or_default()
        };
        Throughput {
            handle,
            tasks,
            ops_per_sec: median(runs.iter().map(|r| r.calls_per_sec).collect()),
            p50_us: median(runs.iter().map(|r| r.latency.percentile_us(50)).collect()),
            p99_us: median(runs.iter().map(|r| r.latency.percentile_us(99)).collect()),
            errors: runs.iter().map(|r| r.latency.errors).sum(),
            first_error: runs.iter().find_map(|r| r.latency.first_error.clone()),
            batched: None,
        }
    }
}

/// A variant handle's phases beside the plain handle's, in the same run.
pub(crate) struct VariantReport {
    /// What the variant is (`ttl=30d`, `layout=aiogram-sqlalchemy`, a URL).
    pub(crate) name: String,
    /// Where both handles ran.
    pub(crate) note: &'static str,
    pub(crate) phases: Vec<PhaseReport>,
}

impl Report {
    pub(crate) fn errors(&self) -> u64 {
        self.phases.iter().map(|p| p.errors).sum::<u64>()
            + self.concurrency.errors
            + self.teloxide.iter().map(|t| t.errors).sum::<u64>()
            + self.isolation.as_ref().map_or(0, |i| i.errors)
            + self
                .variants
                .iter()
                .flat_map(|v| &v.phases)
                .map(|p| p.errors)
                .sum::<u64>()
            + self.throughput.iter().map(|t| t.errors).sum::<u64>()
    }

    pub(crate) fn json(&self) -> Value {
        let c = &self.concurrency;
        json!({
            "backend": self.backend,
            "keys": self.keys,
            "rounds": self.rounds,
            "prefill": self.prefill,
            "rows_at_start": self.rows_at_start,
            "phases": self.phases.iter().map(|p| json!({
                "phase": p.phase.name(),
                "fsmstore": p.fsm.json(),
                "floor": p.floor.as_ref().map(Stats::json),
                "ratio": p.ratio().map(|r| (r * 1000.0).round() / 1000.0),
                "errors": p.errors,
                "first_error": p.first_error,
            })).collect::<Vec<_>>(),
            "concurrency": {
                "tasks": c.tasks,
                "lost_updates": c.lost_updates,
                "errors": c.errors,
                "first_error": c.first_error,
                "ms": round2(c.millis),
            },
            "teloxide": self.teloxide.iter().map(super::teloxide::OpReport::json).collect::<Vec<_>>(),
            "isolation": self.isolation.as_ref().map(super::isolation::IsolationReport::json),
            "variants": self.variants.iter().map(|v| json!({
                "name": v.name,
                "phases": v.phases.iter().map(|p| json!({
                    "phase": p.phase.name(),
                    "variant": p.fsm.json(),
                    "plain": p.floor.as_ref().map(Stats::json),
                    "ratio": p.ratio().map(|r| (r * 1000.0).round() / 1000.0),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "throughput": self.throughput.iter().map(|t| json!({
                "handle": t.handle,
                "tasks": t.tasks,
                "ops_per_sec": t.ops_per_sec.round(),
                "p50_us": round2(t.p50_us),
                "p99_us": round2(t.p99_us),
                "batched": t.batched.map(|b| (b * 1000.0).round() / 1000.0),
                "errors": t.errors,
                "first_error": t.first_error,
            })).collect::<Vec<_>>(),
            "workload": self.workload.name(),
            "errors": self.errors(),
        })
    }

    pub(crate) fn print(&self) {
        println!(
            "{} · {} keys · {} rounds (medians) · {} rows in the table at start",
            self.backend, self.keys, self.rounds, self.rows_at_start
        );
        let with_floor = self.phases.iter().any(|p| p.floor.is_some());
        let mut headers = vec!["phase", "fsmstore ops/s", "p50 µs", "p99 µs", "cpu µs"];
        if with_floor {
            headers.extend([
                "floor ops/s",
                "p50 µs",
                "p99 µs",
                "cpu µs",
                "fsmstore/floor",
            ]);
        }
        let rows: Vec<Vec<String>> = self.phases.iter().map(PhaseReport::row).collect();
        output::table(&headers, &rows);
        let c = &self.concurrency;
        println!(
            "\nconcurrency: {} tasks update_data one key: {} lost updates, {} errors, {:.1} ms",
            c.tasks, c.lost_updates, c.errors, c.millis
        );
        for p in &self.phases {
            if let Some(err) = &p.first_error {
                println!("{}: {} errors, first: {err}", p.phase.name(), p.errors);
            }
        }
        if let Some(err) = &c.first_error {
            println!("concurrency: first error: {err}");
        }
        if !self.teloxide.is_empty() {
            super::teloxide::print(&self.teloxide);
        }
        if let Some(isolation) = &self.isolation {
            isolation.print();
        }
        for variant in &self.variants {
            println!(
                "\nwith {} beside without ({}, same run, medians):",
                variant.name, variant.note
            );
            let rows: Vec<Vec<String>> = variant.phases.iter().map(PhaseReport::row).collect();
            output::table(
                &[
                    "phase",
                    "with ops/s",
                    "p50 µs",
                    "p99 µs",
                    "cpu µs",
                    "without ops/s",
                    "p50 µs",
                    "p99 µs",
                    "cpu µs",
                    "with/without",
                ],
                &rows,
            );
        }
        if !self.throughput.is_empty() {
            println!("\nthroughput ({}): {} on keys of each task's own; calls/s of wall time and each call's latency, medians over the rounds; batched: the share of writes that went in a batch:", self.workload.name(), self.workload.calls());
            let rows: Vec<Vec<String>> = self
                .throughput
                .iter()
                .map(|t| {
                    vec![
                        t.handle.clone(),
                        t.tasks.to_string(),
                        format!("{:.0}", t.ops_per_sec),
                        format!("{:.1}", t.p50_us),
                        format!("{:.1}", t.p99_us),
                        t.batched
                            .map_or_else(|| "-".to_owned(), |b| format!("{:.0}%", b * 100.0)),
                        t.errors.to_string(),
                    ]
                })
                .collect();
            output::table(
                &[
                    "handle", "tasks", "calls/s", "p50 µs", "p99 µs", "batched", "errors",
                ],
                &rows,
            );
        }
    }
}

fn cells(stats: &Stats) -> [String; 4] {
    [
        format!("{:.0}", stats.ops_per_sec),
        format!("{:.1}", stats.p50_us),
        format!("{:.1}", stats.p99_us),
        stats
            .cpu_us
            .map_or_else(|| "-".to_owned(), |cpu| format!("{cpu:.1}")),
    ]
}
