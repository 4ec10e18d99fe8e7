//! `fsmstore inspect …` and `fsmstore purge`.

use std::process::ExitCode;

use fsmstore::inspect::{now_ms, Inspect, StoredRow};
use fsmstore::SchemaPolicy;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::args::{Access, Global, InspectCommand, PurgeArgs};
use crate::output;
use crate::time::format_ms;

// Verify: inspecting a table at another version would misread it.
const POLICY: SchemaPolicy = SchemaPolicy::Verify;

fn row_json(row: &StoredRow) -> Value {
    json!({
        "id": row.id,
        "state": row.state,
        "data": Value::Object(row.data.clone()),
        "updated_at_ms": row.updated_at_ms,
        "corrupt": row.corrupt,
    })
}

/// The data column as the table shows it: the object, or why it could not be read.
fn data_cell(row: &StoredRow) -> String {
    match &row.corrupt {
        Some(reason) => format!("CORRUPT: {reason}"),
        None => Value::Object(row.data.clone()).to_string(),
    }
}

pub(crate) async fn run(global: &Global, command: InspectCommand) -> anyhow::Result<ExitCode> {
    global
        .with_database(POLICY, Access::ReadOnly, async |db| {
            show(global, &*db.inspect(), command).await
        })
        .await
}

async fn show(
    global: &Global,
    storage: &dyn Inspect,
    command: InspectCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        InspectCommand::List {
            state,
            limit,
            after,
        } => {
            let rows = storage
                .list_rows(state.as_deref(), after.as_deref(), limit)
                .await?;
            if global.json {
                output::json(&Value::Array(rows.iter().map(row_json).collect()));
            } else {
                let cells: Vec<Vec<String>> = rows
                    .iter()
                    .map(|row| {
                        vec![
                            row.id.clone(),
                            row.state.clone().unwrap_or_else(|| "-".into()),
                            row.updated_at_ms.map_or_else(|| "-".into(), format_ms),
                            output::truncate(&data_cell(row), 60),
                        ]
                    })
                    .collect();
                output::table(&["id", "state", "updated", "data"], &cells);
                let corrupt = rows.iter().filter(|row| row.corrupt.is_some()).count();
                if corrupt > 0 {
                    println!(
                        "{} ({corrupt} with data that does not read)",
                        output::count(rows.len() as u64, "row", "rows")
                    );
                } else {
                    println!("{}", output::count(rows.len() as u64, "row", "rows"));
                }
            }
        }
        InspectCommand::Get { key, parts } => {
            let key = match (key, parts.key()) {
                (Some(id), _) => id,
                (None, Some(key)) => storage.options().row_id(&key)?,
                (None, None) => anyhow::bail!("give a row id, or --chat and --user"),
            };
            let Some(row) = storage.get_row(&key).await? else {
                anyhow::bail!(
                    "no row with id {key:?} in table {} (ids look like fsm:<chat>:<user>)",
                    global.table
                );
            };
            if global.json {
                output::json(&row_json(&row));
            } else {
                println!("id:      {}", row.id);
                println!("state:   {}", row.state.as_deref().unwrap_or("-"));
                println!(
                    "updated: {}",
                    row.updated_at_ms.map_or_else(|| "-".into(), format_ms)
                );
                match &row.corrupt {
                    Some(reason) => println!("data:    CORRUPT: {reason}"),
                    None => println!(
                        "data:    {}",
                        serde_json::to_string_pretty(&Value::Object(row.data))?
                    ),
                }
            }
        }
        InspectCommand::Stats => {
            let stats = storage.stats().await?;
            // With a TTL (`?ttl=` in the URL): rows past it read as absent until purged.
            let expired = match storage.options().ttl {
                Some(_) => Some(
                    storage
                        .count_older_than(storage.expiry_cutoff_ms().await?)
                        .await?,
                ),
                None => None,
            };
            if global.json {
                output::json(&json!({
                    "rows": stats.rows,
                    "per_state": stats.per_state.iter().map(|(state, n)| json!({"state": state, "rows": n})).collect::<Vec<_>>(),
                    "oldest_ms": stats.oldest_ms,
                    "newest_ms": stats.newest_ms,
                    "expired": expired,
                }));
            } else {
                println!("table:  {}", global.table);
                println!("rows:   {}", stats.rows);
                if let (Some(expired), Some(ttl)) = (expired, storage.options().ttl) {
                    println!(
                        "expired: {expired} (not written for over {}; `fsmstore purge --expired` deletes them)",
                        fsmstore::core::format_duration(ttl)
                    );
                }
                let options = storage.options();
                if options.layout.has_updated_at() {
                    println!(
                        "oldest: {}",
                        stats.oldest_ms.map(format_ms).unwrap_or_else(|| "-".into())
                    );
                    println!(
                        "newest: {}",
                        stats.newest_ms.map(format_ms).unwrap_or_else(|| "-".into())
                    );
                } else {
                    println!(
                        "ages:   unknown: the {} layout has no updated_at (`fsmstore migrate up --table {}` adds it once no Python bot writes the table)",
                        options.layout, options.table
                    );
                }
                let cells: Vec<Vec<String>> = stats
                    .per_state
                    .iter()
                    .map(|(state, n)| {
                        vec![
                            state.clone().unwrap_or_else(|| "(data only)".into()),
                            n.to_string(),
                        ]
                    })
                    .collect();
                output::table(&["state", "rows"], &cells);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn purge(global: &Global, args: PurgeArgs) -> anyhow::Result<ExitCode> {
    let access = if args.dry_run {
        Access::ReadOnly
    } else {
        Access::Existing
    };
    global
        .with_database(POLICY, access, async |db| {
            purge_rows(global, &*db.inspect(), args).await
        })
        .await
}

async fn purge_rows(
    global: &Global,
    storage: &dyn Inspect,
    args: PurgeArgs,
) -> anyhow::Result<ExitCode> {
    let cutoff = match (args.older_than, args.expired) {
        // Saturating: an age past the epoch is a cutoff before every row, never a wrap
        // into the future (which once deleted every row). `parse_age` bounds the age.
        (Some(age), false) => {
            now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
        }
        // The storage's TTL, from the URL (`?ttl=30d`).
        (None, true) => storage.expiry_cutoff_ms().await?,
        _ => anyhow::bail!(fsmstore::Error::InvalidInput(
            "purge takes --older-than AGE or --expired".to_owned()
        )),
    };
    let total = storage.count_older_than(cutoff).await?;
    if args.dry_run {
        if global.json {
            output::json(&json!({"would_delete": total, "cutoff_ms": cutoff, "dry_run": true}));
        } else {
            println!(
                "{} not written since {} would be deleted (dry run)",
                output::count(total, "row", "rows"),
                format_ms(cutoff)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} purging [{bar:40}] {pos}/{len} rows ({per_sec}, {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let mut deleted = 0;
    loop {
        let n = storage.purge_older_than(cutoff, args.batch.max(1)).await?;
        if n == 0 {
            break;
        }
        deleted += n;
        bar.inc(n);
    }
    bar.finish_and_clear();
    if global.json {
        output::json(&json!({"deleted": deleted, "cutoff_ms": cutoff}));
    } else {
        println!(
            "deleted {} not written since {}",
            output::count(deleted, "row", "rows"),
            format_ms(cutoff)
        );
    }
    Ok(ExitCode::SUCCESS)
}
