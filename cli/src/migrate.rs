//! `fsmstore migrate …`.

use std::process::ExitCode;

use anyhow::Context;
use fsmstore::migrate::{
    offline_script, Direction, HistoryEntry, MigrationSet, MigrationTarget, Migrator,
};
use fsmstore::{Database, SchemaPolicy, TableName};
use serde_json::json;

use crate::args::{Access, Global, MigrateCommand};
use crate::time::format_ms;
use crate::{exit, output};

pub(crate) async fn run(global: &Global, command: MigrateCommand) -> anyhow::Result<ExitCode> {
    match command {
        MigrateCommand::Sql { dialect, from, to } => {
            let table = TableName::new(&global.table)?;
            let set = MigrationSet::builtin(dialect, &table);
            let to = to.unwrap_or(set.head());
            let script = offline_script(&set, &TableName::new(&global.version_table)?, from, to)?;
            print!("{script}");
        }
        MigrateCommand::Export {
            format,
            dialect,
            dir,
            version_offset,
        } => {
            let table = TableName::new(&global.table)?;
            let set = MigrationSet::builtin(dialect, &table);
            let files = crate::export::write(&set, format, &dir, version_offset)
                .with_context(|| format!("exporting to {}", dir.display()))?;
            if global.json {
                output::json(&json!({"files": files}));
            } else {
                for file in files {
                    println!("{file}");
                }
            }
        }
        online => {
            // Trust: this is how an outdated, too new or dirty schema is looked at and
            // repaired.
            let access = match online {
                MigrateCommand::Current | MigrateCommand::History => Access::ReadOnly,
                MigrateCommand::Down { .. } => Access::Existing,
                _ => Access::ReadWrite,
            };
            return global
                .with_database(SchemaPolicy::Trust, access, async |db| {
                    run_online(global, db, online).await
                })
                .await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Before `migrate up`: refuses a table that exists with no recorded version (migration 1
/// would try to create it), and says what moving past version 1 breaks for Python bots
/// that share the table in the aiogram-sqlalchemy layout.
async fn before_up(
    global: &Global,
    migrator: &dyn Migrator,
    to: MigrationTarget,
) -> anyhow::Result<()> {
    let status = migrator.status().await?;
    if status.current == 0 && migrator.table_exists().await? {
        anyhow::bail!(
            "table {} exists but has no recorded schema version: if aiogram-sqlalchemy-storage made it, run `fsmstore migrate stamp 1 --table {}` first (opening it once with ?layout=aiogram-sqlalchemy&schema=upgrade does the same)",
            global.table,
            global.table
        );
    }
    let target = match to {
        MigrationTarget::Head => status.head,
        MigrationTarget::Base => 0,
        MigrationTarget::Version(v) => v,
        MigrationTarget::Relative(k) => status.current + k,
        MigrationTarget::AtLeast(v) => v.max(status.current),
    };
    if status.current == 1 && target >= 2 {
        let dialect = migrator.migrations().dialect();
        let effect = match dialect {
            Some(fsmstore::migrate::Dialect::Postgres) => "data becomes JSONB: aiogram-sqlalchemy-storage can then neither read the table (its json.loads gets a dict) nor write it (text into jsonb)",
            _ => "data must be a JSON object: aiogram-sqlalchemy-storage can still read the table, but its writes of empty data ('') and of a state on a new key (NULL data) fail the new check, and its other writes do not touch updated_at, so expiry and purging by age take rows it keeps writing for old ones",
        };
        eprintln!(
            "fsmstore: table {} leaves the aiogram-sqlalchemy layout (version 1): {effect}. Python bots sharing it must have stopped writing. The statements: `fsmstore migrate sql --dialect {} --from 1 --table {}`.",
            global.table,
            dialect.map_or("none", |dialect| dialect.name()),
            global.table
        );
    }
    Ok(())
}

/// The commands that read or change the database.
/// `current` and `history` exit 3 when the schema needs attention (outdated, dirty,
/// drifted, or newer than this binary), as `--help` says.
async fn run_online(
    global: &Global,
    db: &Database,
    command: MigrateCommand,
) -> anyhow::Result<ExitCode> {
    let migrator = db.migrator()?;
    if let MigrateCommand::Up { to } = &command {
        before_up(global, &*migrator, *to).await?;
    }
    match command {
        MigrateCommand::Up { to } | MigrateCommand::Down { to } => {
            let report = migrator.migrate(to).await?;
            if global.json {
                output::json(&json!({
                    "from": report.from,
                    "to": report.to,
                    "steps": report.steps.iter().map(|(version, direction, ms)| json!({
                        "version": version,
                        "direction": direction_name(*direction),
                        "ms": ms,
                    })).collect::<Vec<_>>(),
                }));
            } else if report.steps.is_empty() {
                println!("{}: already at version {}", global.table, report.to);
            } else {
                for (version, direction, ms) in &report.steps {
                    let description = migrator
                        .migrations()
                        .get(*version)
                        .map(|m| m.description.as_str())
                        .unwrap_or_default();
                    println!(
                        "{:<4} {version}  {description}  ({ms} ms)",
                        direction_name(*direction)
                    );
                }
                println!("{}: version {} -> {}", global.table, report.from, report.to);
            }
        }
        MigrateCommand::Current => {
            let status = migrator.status().await?;
            let code = if status.current < status.head {
                ExitCode::from(exit::SCHEMA)
            } else {
                ExitCode::SUCCESS
            };
            // A table there with no record in this version table: not "run migrate up"
            // (migration 1 would try to create it).
            let unrecorded = status.current == 0 && migrator.table_exists().await?;
            if global.json {
                output::json(&json!({
                    "table": status.table,
                    "current": status.current,
                    "head": status.head,
                    "unrecorded": unrecorded,
                }));
            } else {
                let note = if status.current == status.head {
                    "(head)".to_owned()
                } else if unrecorded {
                    format!(
                        "(the table exists, but version table {} has no record of it: if fsmstore migrated it with another version table, pass that one with --version-table; if aiogram-sqlalchemy-storage made it, run `fsmstore migrate stamp 1`)",
                        global.version_table
                    )
                } else {
                    format!("(head is {}: run `fsmstore migrate up`)", status.head)
                };
                println!("{}: version {} {note}", status.table, status.current);
            }
            return Ok(code);
        }
        MigrateCommand::History => return history(global, &*migrator).await,
        MigrateCommand::Stamp { version } => {
            migrator.stamp(version).await?;
            let current = migrator.current().await?;
            if global.json {
                output::json(&json!({"table": global.table, "current": current}));
            } else {
                println!(
                    "{}: stamped at version {current} (no migration SQL was run)",
                    global.table
                );
            }
        }
        // Offline commands, answered by `run` before a database is opened.
        MigrateCommand::Sql { .. } | MigrateCommand::Export { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

async fn history(global: &Global, migrator: &dyn Migrator) -> anyhow::Result<ExitCode> {
    let entries = migrator.history().await?;
    let attention = entries
        .iter()
        .any(|entry| !matches!(state(entry), "applied" | "pending"));
    let code = if attention {
        ExitCode::from(exit::SCHEMA)
    } else {
        ExitCode::SUCCESS
    };
    if global.json {
        let entries: Vec<_> = entries
            .iter()
            .map(|entry| {
                json!({
                    "version": entry.version,
                    "description": entry.description,
                    "state": state(entry),
                    "checksum_ok": entry.checksum_ok,
                    "known": entry.known,
                    "installed_on_ms": entry.applied.as_ref().map(|a| a.installed_on_ms),
                    "execution_time_ms": entry.applied.as_ref().map(|a| a.execution_time_ms),
                    "checksum": entry.applied.as_ref().map(|a| a.checksum.clone()),
                })
            })
            .collect();
        output::json(&json!({"table": global.table, "migrations": entries}));
        return Ok(code);
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|entry| {
            let applied = entry.applied.as_ref();
            vec![
                entry.version.to_string(),
                state(entry).to_owned(),
                entry.description.clone(),
                applied
                    .map(|a| format_ms(a.installed_on_ms))
                    .unwrap_or_default(),
                applied
                    .map(|a| format!("{} ms", a.execution_time_ms))
                    .unwrap_or_default(),
                applied
                    .map(|a| a.checksum[..12.min(a.checksum.len())].to_owned())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    println!("{} (version table {})", global.table, global.version_table);
    output::table(
        &[
            "version",
            "state",
            "description",
            "installed on",
            "took",
            "checksum",
        ],
        &rows,
    );
    Ok(code)
}

/// applied, pending, dirty, drifted (checksum differs) or unknown (newer than this binary).
fn state(entry: &HistoryEntry) -> &'static str {
    match &entry.applied {
        None => "pending",
        Some(row) if !row.success => "dirty",
        Some(_) if !entry.known => "unknown",
        Some(_) if !entry.checksum_ok => "drifted",
        Some(_) => "applied",
    }
}

fn direction_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Up => "up",
        Direction::Down => "down",
    }
}
