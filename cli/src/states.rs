//! `fsmstore states`: the stored states with their counts (and which the code does not
//! know), and the declarative dialogue steps run by hand ([`fsmstore::dialogues::run_step`]).

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::Context;
use fsmstore::dialogues::{run_step, DialogueStep, StepOptions, StepReport};
use fsmstore::inspect::Inspect;
use fsmstore::SchemaPolicy;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::args::{Access, Global, StatesArgs, StatesCommand, StepRunArgs};
use crate::output;

/// The schema must be at head: a step writes rows as the code of this version does.
const POLICY: SchemaPolicy = SchemaPolicy::Verify;

pub(crate) async fn run(global: &Global, args: StatesArgs) -> anyhow::Result<ExitCode> {
    match args.step {
        None => {
            let known = args.known.as_deref().map(known_states).transpose()?;
            global
                .with_database(POLICY, Access::ReadOnly, async |db| {
                    list(global, &*db.inspect(), known.as_ref()).await
                })
                .await
        }
        Some(StatesCommand::History) => {
            global
                .with_database(POLICY, Access::ReadOnly, async |db| {
                    history(global, db).await
                })
                .await
        }
        Some(command) => {
            if args.known.is_some() {
                anyhow::bail!(fsmstore::Error::InvalidInput(
                    "--known goes with the listing (`fsmstore states --known …`), not with a step"
                        .to_owned()
                ));
            }
            let (step, run) = step_of(command)?;
            let access = if run.dry_run {
                Access::ReadOnly
            } else {
                Access::Existing
            };
            global
                .with_database(POLICY, access, async |db| {
                    run_one(global, &*db.inspect(), &step, &run).await
                })
                .await
        }
    }
}

/// The states `--known` names: a comma-separated list, or `@FILE`, one per line.
fn known_states(spec: &str) -> anyhow::Result<BTreeSet<String>> {
    let text = match spec.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the known states from {path}"))?,
        None => spec.replace(',', "\n"),
    };
    let states: BTreeSet<String> = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    if states.is_empty() {
        anyhow::bail!(fsmstore::Error::InvalidInput(format!(
            "--known {spec} names no state"
        )));
    }
    Ok(states)
}

async fn list(
    global: &Global,
    inspect: &dyn Inspect,
    known: Option<&BTreeSet<String>>,
) -> anyhow::Result<ExitCode> {
    let stats = inspect.stats().await?;
    let is_known = |state: &Option<String>| match (known, state) {
        (None, _) | (_, None) => true,
        (Some(known), Some(state)) => known.contains(state),
    };
    let unknown: u64 = stats
        .per_state
        .iter()
        .filter(|(state, _)| !is_known(state))
        .map(|(_, n)| n)
        .sum();
    let unknown_states = stats
        .per_state
        .iter()
        .filter(|(state, _)| !is_known(state))
        .count();
    if global.json {
        let states: Vec<Value> = stats
            .per_state
            .iter()
            .map(|(state, count)| {
                let mut entry = json!({"state": state, "count": count});
                if known.is_some() {
                    entry["known"] = json!(is_known(state));
                }
                entry
            })
            .collect();
        let mut report = json!({
            "table": global.table,
            "dialogues": stats.rows,
            "states": states,
        });
        if known.is_some() {
            report["unknown_states"] = json!(unknown_states);
            report["unknown_dialogues"] = json!(unknown);
        }
        output::json(&report);
    } else {
        println!(
            "table {}: {} in {}",
            global.table,
            output::count(stats.rows, "dialogue", "dialogues"),
            output::count(stats.per_state.len() as u64, "state", "states")
        );
        let rows: Vec<Vec<String>> = stats
            .per_state
            .iter()
            .map(|(state, count)| {
                let mut row = vec![
                    state
                        .clone()
                        .unwrap_or_else(|| "(no state: data only)".to_owned()),
                    count.to_string(),
                ];
                if known.is_some() {
                    row.push(if is_known(state) { "" } else { "UNKNOWN" }.to_owned());
                }
                row
            })
            .collect();
        let headers: &[&str] = if known.is_some() {
            &["STATE", "DIALOGUES", "CODE"]
        } else {
            &["STATE", "DIALOGUES"]
        };
        output::table(headers, &rows);
        if known.is_some() {
            if unknown_states == 0 {
                println!("every stored state is known to the code");
            } else {
                println!(
                    "{} the code does not know, holding {}: rename them to states it knows (`fsmstore states rename OLD NEW`), give the code their names as former names (`Name => \"name\" | \"old\"`), or drop them (`fsmstore states drop PATTERN`)",
                    output::count(unknown_states as u64, "state", "states"),
                    output::count(unknown, "dialogue", "dialogues")
                );
            }
        }
    }
    Ok(if unknown_states == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::FAILURE)
    })
}

/// The recorded dialogue steps.
async fn history(global: &Global, db: &fsmstore::Database) -> anyhow::Result<ExitCode> {
    let migrator = db.migrator()?;
    let mut ledger = migrator.dialogue_ledger().await?;
    let recorded = ledger.recorded().await?;
    if global.json {
        let steps: Vec<Value> = recorded
            .iter()
            .map(|row| {
                json!({
                    "version": row.version,
                    "description": row.description,
                    "installed_on_ms": row.installed_on_ms,
                    "finished": row.success,
                    "checksum": row.checksum,
                    "execution_time_ms": row.execution_time_ms,
                })
            })
            .collect();
        output::json(&json!({"table": global.table, "steps": steps}));
    } else if recorded.is_empty() {
        println!("no dialogue step has run on table {}", global.table);
    } else {
        let rows: Vec<Vec<String>> = recorded
            .iter()
            .map(|row| {
                vec![
                    row.version.to_string(),
                    row.description.clone(),
                    crate::time::format_ms(row.installed_on_ms),
                    if row.success {
                        format!("{} ms", row.execution_time_ms)
                    } else {
                        "NOT FINISHED (resumed at the bot's next start)".to_owned()
                    },
                    row.checksum.chars().take(12).collect(),
                ]
            })
            .collect();
        output::table(&["VERSION", "STEP", "STARTED", "TOOK", "CHECKSUM"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

/// The step a subcommand names, and how to run it.
fn step_of(command: StatesCommand) -> anyhow::Result<(DialogueStep, StepRunArgs)> {
    Ok(match command {
        StatesCommand::History => anyhow::bail!("`states history` is not a step"),
        StatesCommand::Rename { old, new, run } => (DialogueStep::rename_state(&old, &new)?, run),
        StatesCommand::RenameGroup { old, new, run } => {
            (DialogueStep::rename_group(&old, &new)?, run)
        }
        StatesCommand::Drop {
            pattern,
            keep_data,
            run,
        } => (DialogueStep::drop_states(&pattern, keep_data)?, run),
        StatesCommand::RenameField {
            old,
            new,
            states,
            run,
        } => (DialogueStep::rename_field(&states, &old, &new)?, run),
        StatesCommand::DropField { field, states, run } => {
            (DialogueStep::drop_field(&states, &field)?, run)
        }
        StatesCommand::DefaultField {
            field,
            value,
            states,
            run,
        } => {
            let value: Value = serde_json::from_str(&value).map_err(|err| {
                fsmstore::Error::InvalidInput(format!(
                    "the value {value:?} is not JSON ({err}); a text is written with quotes: '\"en\"'"
                ))
            })?;
            (DialogueStep::default_field(&states, &field, value)?, run)
        }
    })
}

async fn run_one(
    global: &Global,
    inspect: &dyn Inspect,
    step: &DialogueStep,
    run: &StepRunArgs,
) -> anyhow::Result<ExitCode> {
    let total = match step.only_state() {
        Some(state) => {
            let stats = inspect.stats().await?;
            stats
                .per_state
                .iter()
                .find(|(s, _)| s.as_deref() == Some(state))
                .map_or(0, |(_, n)| *n)
        }
        None => inspect.stats().await?.rows,
    };
    let options = StepOptions::default()
        .batch(run.batch)
        .dry_run(run.dry_run)
        .after(run.after.clone())
        .pause(run.pause.unwrap_or_default());
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {} [{{bar:40}}] {{pos}}/{{len}} dialogues ({{per_sec}}, {{eta}})",
            if run.dry_run { "counting" } else { "migrating" }
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let started = std::time::Instant::now();
    let mut resume = run.after.clone();
    let done = run_step(inspect, step, &options, &mut |report: &StepReport| {
        bar.set_position(report.examined);
        resume.clone_from(&report.last_id);
    })
    .await;
    bar.finish_and_clear();
    let report = done.with_context(|| match &resume {
        Some(id) => format!(
            "the step stopped; every dialogue up to {id:?} is done: run it again (it changes nothing it changed) or resume with --after {id:?}"
        ),
        None => "the step stopped before its first batch was done".to_owned(),
    })?;
    let elapsed = started.elapsed();
    if global.json {
        output::json(&json!({
            "step": report.description,
            "dry_run": report.dry_run,
            "examined": report.examined,
            "changed": report.changed,
            "deleted": report.deleted,
            "raced": report.raced,
            "skipped": report.skipped.iter().map(|(id, why)| json!({"id": id, "why": why})).collect::<Vec<_>>(),
            "elapsed_ms": elapsed.as_millis() as u64,
        }));
    } else {
        let (changed, deleted) = if report.dry_run {
            ("would change", "would be deleted")
        } else {
            ("changed", "deleted")
        };
        println!(
            "{}: {} {changed}, {deleted}: {} ({} read in {:.1} s{})",
            report.description,
            output::count(report.changed, "dialogue", "dialogues"),
            report.deleted,
            report.examined,
            elapsed.as_secs_f64(),
            if report.dry_run {
                ", dry run: nothing written"
            } else {
                ""
            }
        );
        if report.raced > 0 {
            println!(
                "{} written by the bot meanwhile, read again and done over what it wrote",
                output::count(report.raced, "dialogue was", "dialogues were")
            );
        }
        for (id, why) in &report.skipped {
            println!("skipped {id}: its stored data does not read ({why})");
        }
    }
    Ok(if report.skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::FAILURE)
    })
}
