//! One side's figures for one phase: medians over the rounds, and each round's p50.

use fsmstore::serde_json::{json, Value};

use super::workload::Sample;

/// One side's figures for one phase: medians over the rounds, and each round's p50.
#[derive(Debug, Clone)]
pub(crate) struct Stats {
    pub(crate) ops_per_sec: f64,
    pub(crate) p50_us: f64,
    /// Each round's p50, in the order the rounds ran (in the phases and the teloxide calls
    /// the two sides take turns going first).
    pub(crate) p50_rounds_us: Vec<f64>,
    pub(crate) p99_us: f64,
    /// The process's CPU time per call (median over the rounds), when it could be read.
    pub(crate) cpu_us: Option<f64>,
    /// Times a thread of the process was put on a CPU, per call (median over the rounds).
    pub(crate) runs: Option<f64>,
}

impl Stats {
    pub(crate) fn of(rounds: &[Sample]) -> Stats {
        Stats {
            ops_per_sec: median(rounds.iter().map(Sample::ops_per_sec)),
            p50_us: median(rounds.iter().map(|s| s.percentile_us(50))),
            p50_rounds_us: rounds.iter().map(|s| s.percentile_us(50)).collect(),
            p99_us: median(rounds.iter().map(|s| s.percentile_us(99))),
            cpu_us: median_of(rounds, Sample::cpu_us_per_call),
            runs: median_of(rounds, Sample::runs_per_call),
        }
    }

    pub(crate) fn json(&self) -> Value {
        json!({
            "ops_per_sec": round2(self.ops_per_sec),
            "p50_us": round2(self.p50_us),
            "p50_rounds_us": self.p50_rounds_us.iter().copied().map(round2).collect::<Vec<_>>(),
            "p99_us": round2(self.p99_us),
            "cpu_us": self.cpu_us.map(round2),
            "runs": self.runs.map(round2),
        })
    }
}

/// The median of a figure every round has; `None` if one round lacks it.
fn median_of(rounds: &[Sample], figure: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
    let values = rounds.iter().map(figure).collect::<Option<Vec<f64>>>()?;
    (!values.is_empty()).then(|| median(values.into_iter()))
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

pub(crate) fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}
