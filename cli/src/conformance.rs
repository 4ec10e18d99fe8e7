//! `fsmstore conformance`: the suite against the user's own database.

use std::process::ExitCode;
use std::sync::Arc;

use async_trait::async_trait;
use fsmstore::{Database, Result, SchemaPolicy, StorageOptions};
use fsmstore_conformance::{migration_cases, run_suite, storage_cases, Backend, Capabilities};
use serde_json::json;

use crate::args::{Access, ConformanceArgs, Global, Group};
use crate::{exit, output};

/// Any database fsmstore reaches by URL; each case's scratch tables are dropped after it.
struct UrlBackend {
    url: String,
}

#[async_trait]
impl Backend for UrlBackend {
    fn capabilities(&self) -> Capabilities {
        // Every SQL backend; this command runs no raw SQL and ends no sessions.
        Capabilities {
            migrations: true,
            updated_at: true,
            expiry: true,
            ..Capabilities::default()
        }
    }

    fn name(&self) -> String {
        fsmstore::Scheme::of(&self.url)
            .map(|scheme| format!("{scheme:?}").to_lowercase())
            .unwrap_or_else(|_| "database".into())
    }

    async fn open_database(&self, options: StorageOptions) -> Result<Database> {
        fsmstore::open_with(&self.url, options).await
    }

    async fn cleanup(&self, options: &StorageOptions) -> Result<()> {
        let db = self
            .open_database(options.clone().schema(SchemaPolicy::Trust))
            .await?;
        let dropped = async { db.migrator()?.drop_tables().await }.await;
        db.close().await?;
        dropped
    }
}

pub(crate) async fn run(global: &Global, args: ConformanceArgs) -> anyhow::Result<ExitCode> {
    // Fail early, with the usual message, when the database is unreachable.
    global
        .with_database(SchemaPolicy::Trust, Access::ReadWrite, async |db| {
            Ok(db.migrator()?.applied().await?)
        })
        .await?;
    let mut cases = match args.group {
        Group::Storage => storage_cases(),
        Group::Migrations => migration_cases(),
        Group::All => [storage_cases(), migration_cases()].concat(),
    };
    if let Some(filter) = &args.filter {
        cases.retain(|case| case.name.contains(filter.as_str()));
    }
    let backend: Arc<dyn Backend> = Arc::new(UrlBackend {
        url: global.url.clone(),
    });
    // A failing case panics; its message goes into the report, not onto stderr.
    std::panic::set_hook(Box::new(|_| {}));
    let json_mode = global.json;
    let reports = run_suite(backend, &cases, |report| {
        if !json_mode {
            let verdict = if report.failure.is_some() {
                "FAIL"
            } else {
                "ok"
            };
            println!(
                "{verdict:<4}  {:<12} {:<48} {:>7.1} ms",
                report.group,
                report.name,
                report.duration.as_secs_f64() * 1000.0
            );
            if let Some(failure) = &report.failure {
                println!("      {}", failure.replace('\n', "\n      "));
            }
        }
    })
    .await;
    let failed = reports.iter().filter(|r| r.failure.is_some()).count();
    if json_mode {
        output::json(&json!({
            "passed": reports.len() - failed,
            "failed": failed,
            "cases": reports.iter().map(|r| json!({
                "group": r.group,
                "name": r.name,
                "passed": r.failure.is_none(),
                "failure": r.failure,
                "ms": r.duration.as_secs_f64() * 1000.0,
            })).collect::<Vec<_>>(),
        }));
    } else {
        println!(
            "\n{} passed, {failed} failed, {} cases",
            reports.len() - failed,
            reports.len()
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::FAILURE)
    })
}
