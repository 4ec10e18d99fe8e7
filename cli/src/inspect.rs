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

/// A row as JSON; `expired` (with a TTL): past it, so the bot reads it as absent.
fn row_json(row: &StoredRow, cutoff: Option<i64>) -> Value {
    json!({
        "id": row.id,
        "state": row.state,
        "data": Value::Object(row.data.clone()),
        "updated_at_ms": row.updated_at_ms,
        "expired": expired(row, cutoff),
        "corrupt": row.corrupt,
    })
}

/// Whether `row` is past the TTL whose cutoff is `cutoff` (`None`: no TTL, never).
fn expired(row: &StoredRow, cutoff: Option<i64>) -> bool {
    matches!((row.updated_at_ms, cutoff), (Some(at), Some(cutoff)) if at < cutoff)
}

/// The expiry cutoff when the storage has a TTL and its rows carry `updated_at`.
async fn expiry_cutoff(storage: &dyn Inspect) -> anyhow::Result<Option<i64>> {
    let options = storage.options();
    if options.ttl.is_some() && options.layout.has_updated_at() {
        Ok(Some(storage.expiry_cutoff_ms().await?))
    } else {
        Ok(None)
    }
}

/// A bar of `n` against `max`, at most `width` cells: the funnel of `inspect stats`.
fn bar(n: u64, max: u64, width: usize) -> String {
    if max == 0 || n == 0 {
        return String::new();
    }
    let cells = ((n as f64 / max as f64) * width as f64).round().max(1.0) as usize;
    "█".repeat(cells.min(width))
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
            let cutoff = expiry_cutoff(storage).await?;
            if global.json {
                output::json(&Value::Array(
                    rows.iter().map(|row| row_json(row, cutoff)).collect(),
                ));
            } else {
                let cells: Vec<Vec<String>> = rows
                    .iter()
                    .map(|row| {
                        vec![
                            row.id.clone(),
                            row.state.clone().unwrap_or_else(|| "-".into()),
                            match row.updated_at_ms {
                                None => "-".into(),
                                Some(at) if expired(row, cutoff) => {
                                    format!("{} (expired)", format_ms(at))
                                }
                                Some(at) => format_ms(at),
                            },
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
            let cutoff = expiry_cutoff(storage).await?;
            if global.json {
                output::json(&row_json(&row, cutoff));
            } else {
                println!("id:      {}", row.id);
                println!("state:   {}", row.state.as_deref().unwrap_or("-"));
                println!(
                    "updated: {}{}",
                    row.updated_at_ms.map_or_else(|| "-".into(), format_ms),
                    if expired(&row, cutoff) {
                        " (expired: the bot reads it as absent)"
                    } else {
                        ""
                    }
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
        InspectCommand::Stats { age } => stats(global, storage, &age).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `inspect stats`: the figures, per state fresh and expired apart, as a funnel; with
/// `ages`, how many rows of each state have not been written for each age bucket.
async fn stats(
    global: &Global,
    storage: &dyn Inspect,
    ages: &[std::time::Duration],
) -> anyhow::Result<()> {
    if ages.windows(2).any(|pair| pair[0] >= pair[1]) {
        anyhow::bail!(fsmstore::Error::InvalidInput(
            "--age takes ascending ages, like 1h,1d,7d".to_owned()
        ));
    }
    let stats = storage.stats().await?;
    // Per age: rows of each state not written for at least that long.
    let mut older: Vec<Vec<(Option<String>, u64)>> = Vec::new();
    if !ages.is_empty() {
        let now = storage.database_now_ms().await?;
        for age in ages {
            let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
            older.push(
                storage
                    .count_older_by_state(now.saturating_sub(age_ms))
                    .await?,
            );
        }
    }
    let count_in = |list: &[(Option<String>, u64)], state: &Option<String>| {
        list.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n)
    };
    // Bucket i: not written for at least ages[i-1] and less than ages[i].
    let buckets = |state: &Option<String>, total: u64| -> Vec<u64> {
        let mut at_least: Vec<u64> = std::iter::once(total)
            .chain(older.iter().map(|list| count_in(list, state)))
            .collect();
        at_least.push(0);
        at_least
            .windows(2)
            .map(|w| w[0].saturating_sub(w[1]))
            .collect()
    };
    let labels: Vec<String> = {
        let shown: Vec<String> = ages
            .iter()
            .map(|a| fsmstore::core::format_duration(*a))
            .collect();
        let mut labels = Vec::new();
        for (i, age) in shown.iter().enumerate() {
            labels.push(if i == 0 {
                format!("<{age}")
            } else {
                format!("{}-{age}", shown[i - 1])
            });
        }
        if let Some(last) = shown.last() {
            labels.push(format!(">={last}"));
        }
        labels
    };
    if global.json {
        output::json(&json!({
            "rows": stats.rows,
            "per_state": stats.per_state.iter().map(|(state, n)| {
                let mut entry = json!({
                    "state": state,
                    "rows": n,
                    "expired": stats.expired.map(|_| count_in(&stats.per_state_expired, state)),
                });
                if !ages.is_empty() {
                    entry["ages"] = json!(labels.iter().zip(buckets(state, *n)).map(|(label, n)| json!({"age": label, "rows": n})).collect::<Vec<_>>());
                }
                entry
            }).collect::<Vec<_>>(),
            "oldest_ms": stats.oldest_ms,
            "newest_ms": stats.newest_ms,
            "expired": stats.expired,
        }));
        return Ok(());
    }
    println!("table:  {}", global.table);
    println!("rows:   {}", stats.rows);
    if let (Some(expired), Some(ttl)) = (stats.expired, storage.options().ttl) {
        println!(
            "expired: {expired} (not written for over {}: the bot reads them as absent; `fsmstore purge --expired` deletes them)",
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
    let with_expiry = stats.expired.is_some();
    let mut headers = vec!["state", "rows"];
    if with_expiry {
        headers.push("fresh");
        headers.push("expired");
    }
    headers.extend(labels.iter().map(String::as_str));
    headers.push("");
    let max = stats.per_state.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let cells: Vec<Vec<String>> = stats
        .per_state
        .iter()
        .map(|(state, n)| {
            let mut row = vec![
                state.clone().unwrap_or_else(|| "(data only)".into()),
                n.to_string(),
            ];
            if with_expiry {
                let expired = count_in(&stats.per_state_expired, state);
                row.push(n.saturating_sub(expired).to_string());
                row.push(expired.to_string());
            }
            if !ages.is_empty() {
                row.extend(buckets(state, *n).iter().map(u64::to_string));
            }
            row.push(bar(*n, max, 30));
            row
        })
        .collect();
    output::table(&headers, &cells);
    Ok(())
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
