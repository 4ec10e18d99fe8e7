//! `fsmstore bench` on a SQLite file: the JSON report's shape (never its timings).

use std::process::Command;

use fsmstore::serde_json::{self, Value};

#[test]
fn bench_with_floor_reports_every_phase_and_no_lost_updates() {
    let dir = std::env::temp_dir().join(format!("fsmstore-cli-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("b.db").display());
    let out = Command::new(env!("CARGO_BIN_EXE_fsmstore"))
        .args(["bench", "--url", &url, "--keys", "50", "--concurrency", "8"])
        .args(["--floor", "--layout", "--tasks", "1,4", "--json"])
        .env_remove("DATABASE_URL")
        .output()
        .expect("run fsmstore");
    assert!(
        out.status.success(),
        "bench failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let phases = report["phases"].as_array().unwrap();
    let names: Vec<&str> = phases
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "set_state",
            "get_state",
            "set_data",
            "get_data",
            "update_data",
            "clear"
        ]
    );
    for phase in phases {
        for side in ["fsmstore", "floor"] {
            for field in ["ops_per_sec", "p50_us", "p99_us"] {
                assert!(phase[side][field].is_number(), "{side}.{field} in {phase}");
            }
            // Each round's p50 (3 rounds, the default), whose median is `p50_us`.
            let mut rounds: Vec<f64> = phase[side]["p50_rounds_us"]
                .as_array()
                .unwrap_or_else(|| panic!("{side}.p50_rounds_us in {phase}"))
                .iter()
                .map(|p| p.as_f64().unwrap())
                .collect();
            assert_eq!(rounds.len(), 3, "{side}.p50_rounds_us in {phase}");
            rounds.sort_by(f64::total_cmp);
            assert_eq!(
                rounds[1],
                phase[side]["p50_us"].as_f64().unwrap(),
                "{phase}"
            );
            // The process's CPU time and its threads' runs per call (Linux's schedstat).
            if cfg!(target_os = "linux") {
                let cpu = phase[side]["cpu_us"].as_f64().unwrap();
                assert!(cpu > 0.0, "{side}.cpu_us in {phase}");
                assert!(phase[side]["runs"].is_number(), "{side}.runs in {phase}");
            }
        }
        assert!(phase["ratio"].is_number(), "{phase}");
        assert_eq!(phase["errors"], 0, "{phase}");
    }
    // --layout: every phase in the aiogram layout beside fsmstore's, in the same run.
    assert_eq!(report["variants"][0]["name"], "layout=aiogram-sqlalchemy");
    let variant = report["variants"][0]["phases"].as_array().unwrap();
    assert_eq!(variant.len(), names.len());
    for phase in variant {
        for side in ["variant", "plain"] {
            assert!(phase[side]["p50_us"].is_number(), "{side} in {phase}");
        }
    }
    // --tasks: throughput of every handle (the plain one and the layout's) at 1 and 4 tasks.
    let throughput = report["throughput"].as_array().unwrap();
    let tasks: Vec<u64> = throughput
        .iter()
        .map(|t| t["tasks"].as_u64().unwrap())
        .collect();
    assert_eq!(tasks, [1, 4, 1, 4]);
    for t in throughput {
        assert!(t["ops_per_sec"].as_f64().unwrap() > 0.0, "{t}");
        let (p50, p99) = (t["p50_us"].as_f64().unwrap(), t["p99_us"].as_f64().unwrap());
        assert!(0.0 < p50 && p50 <= p99, "{t}");
        assert_eq!(t["errors"], 0, "{t}");
    }
    assert_eq!(report["concurrency"]["tasks"], 8);
    assert_eq!(report["concurrency"]["lost_updates"], 0);
    assert_eq!(report["concurrency"]["errors"], 0);
    assert_eq!(report["errors"], 0);
    // The scratch tables are gone: only the (empty) database file's own tables remain.
    let conn = rusqlite::Connection::open(dir.join("b.db")).unwrap();
    let tables: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name LIKE 'bench_%'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `bench --rename N`: N dialogues renamed while a bot's workload runs; the report has the
/// rename and the workload alone and during it (shape and counts, never timings).
#[test]
fn bench_rename_reports_the_rename_and_the_workload_beside_it() {
    let dir =
        std::env::temp_dir().join(format!("fsmstore-cli-bench-rename-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("b.db").display());
    let out = Command::new(env!("CARGO_BIN_EXE_fsmstore"))
        .args([
            "bench", "--url", &url, "--rename", "3000", "--tasks", "2", "--json",
        ])
        .env_remove("DATABASE_URL")
        .output()
        .expect("run fsmstore");
    assert!(
        out.status.success(),
        "bench failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["dialogues"], 3000, "{report}");
    assert!(report["rename_seconds"].as_f64().unwrap() > 0.0, "{report}");
    assert!(
        report["baseline"]["calls"].as_u64().unwrap() > 0,
        "{report}"
    );
    let (p50, p99) = (
        report["baseline"]["p50_us"].as_f64().unwrap(),
        report["baseline"]["p99_us"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99, "{report}");
    assert!(report["during"].is_object(), "{report}");
}
