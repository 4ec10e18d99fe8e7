//! Dialogue migrations declared in code ([`DialogueMigrations`]): ordered, versioned
//! [`DialogueStep`]s run like schema migrations — under the migration lock, each recorded
//! with its checksum in a history of its own beside the schema's ([`DialogueLedger`]),
//! drift refused, a step killed half-way resumed — by [`migrate_dialogues`].
//!
//! SQL backends record the history in the version table, under the name
//! [`ledger_name`] of the FSM table (`forms~dialogues`), so `fsmstore migrate` and
//! `history` of the schema never see it; Redis in a hash beside its layout's versions.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::{select, Either};
use sha2::{Digest, Sha256};

use crate::dialogue_run::{run_step, StepOptions, StepReport};
use crate::dialogue_steps::DialogueStep;
use crate::error::{Error, Result};
use crate::inspect::Inspect;
use crate::migrations::AppliedMigration;

/// How often a run renews the migration lock's lease while a step runs (Galera's lock row,
/// Redis' lock key).
const KEEP_EVERY: Duration = Duration::from_secs(5);

/// The name a table's dialogue history is recorded under in the version table: the table's
/// name and `~dialogues` (`~` is in no table name), shortened with a hash past 63
/// characters (the version table's `table_name` column).
pub fn ledger_name(table: &str) -> String {
    const SUFFIX: &str = "~dialogues";
    if table.len() + SUFFIX.len() <= 63 {
        return format!("{table}{SUFFIX}");
    }
    let digest = Sha256::digest(table.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let head: String = table.chars().take(63 - SUFFIX.len() - 9).collect();
    format!("{head}{SUFFIX}~{hash}")
}

/// Where a backend records dialogue migrations, and the lock they run under: the schema's
/// migration lock and version table. A backend hands one out per run
/// ([`Migrator::dialogue_ledger`](crate::Migrator::dialogue_ledger)).
#[async_trait]
pub trait DialogueLedger: Send {
    /// Takes the migration lock (waiting at most the backend's lock timeout, as a schema
    /// migration does) and creates the version table if it is missing. On SQLite, which has
    /// no named lock, each of the other calls is one `IMMEDIATE` transaction instead.
    ///
    /// # Errors
    /// [`Error::MigrationLockTimeout`]; database errors.
    async fn lock(&mut self) -> Result<()>;

    /// Releases the lock (failures are logged: ending the session releases it).
    async fn unlock(&mut self);

    /// The recorded steps, by version.
    ///
    /// # Errors
    /// Database errors.
    async fn recorded(&mut self) -> Result<Vec<AppliedMigration>>;

    /// Records step `version` as started (unfinished), unless a row for it exists. The
    /// record is durable when this returns, and the lock held.
    ///
    /// # Errors
    /// Database errors.
    async fn start(&mut self, version: i64, description: &str, checksum: &str) -> Result<()>;

    /// Records step `version` as done, in `elapsed_ms`. The record is durable when this
    /// returns, and the lock held.
    ///
    /// # Errors
    /// Database errors.
    async fn finish(&mut self, version: i64, elapsed_ms: i64) -> Result<()>;

    /// Renews the lock's lease while a step runs.
    ///
    /// # Errors
    /// The lock was lost (another migrator took it over after its lease ran out).
    async fn keep(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A bot's dialogue migrations: versioned steps, run in version order, each once.
///
/// ```
/// use fsmstore_core::{DialogueMigrations, DialogueStep};
/// let migrations = DialogueMigrations::new()
///     .step(1, DialogueStep::rename_state("Form:nmae", "Form:name")?)
///     .step(2, DialogueStep::rename_group("Form", "Signup")?)
///     .step(3, DialogueStep::default_field("Signup:*", "lang", "en".into())?);
/// assert_eq!(migrations.len(), 3);
/// # Ok::<(), fsmstore_core::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct DialogueMigrations {
    steps: BTreeMap<i64, DialogueStep>,
    refused: Vec<String>,
}

impl DialogueMigrations {
    /// No steps.
    pub fn new() -> Self {
        DialogueMigrations::default()
    }

    /// Adds `step` as version `version` (≥ 1, each version once; a mistake is reported by
    /// [`migrate_dialogues`], before anything runs).
    #[must_use]
    pub fn step(mut self, version: i64, step: DialogueStep) -> Self {
        if version < 1 {
            self.refused
                .push(format!("version {version} of \"{step}\" is not ≥ 1"));
        } else if let Some(there) = self.steps.get(&version) {
            self.refused.push(format!(
                "version {version} is declared twice: \"{there}\" and \"{step}\""
            ));
        } else {
            self.steps.insert(version, step);
        }
        self
    }

    /// How many steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The steps, by version.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &DialogueStep)> {
        self.steps.iter().map(|(v, s)| (*v, s))
    }

    /// # Errors
    /// [`Error::Migration`] naming what [`DialogueMigrations::step`] refused.
    fn check(&self) -> Result<()> {
        if self.refused.is_empty() {
            return Ok(());
        }
        Err(Error::Migration(format!(
            "dialogue migrations: {}",
            self.refused.join("; ")
        )))
    }
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DialogueStepRun {
    /// The step's version.
    pub version: i64,
    /// What it did (in a dry run: would do).
    pub report: StepReport,
    /// How long it took.
    pub elapsed_ms: i64,
    /// Whether it was recorded as started and not finished (a run killed half-way): it
    /// was finished now.
    pub resumed: bool,
}

/// What [`migrate_dialogues`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DialogueMigrationReport {
    /// The steps that ran, by version.
    pub ran: Vec<DialogueStepRun>,
    /// Versions recorded as done before this run (not run again).
    pub already_done: Vec<i64>,
    /// Versions recorded that the code does not declare (a newer release ran them);
    /// left as they are.
    pub unknown: Vec<i64>,
}

/// How a declared or recorded step stands, for `history`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DialogueHistoryEntry {
    /// The version.
    pub version: i64,
    /// The code's description, or the recorded one for a version the code lacks.
    pub description: String,
    /// Its record, when it ran (or started).
    pub recorded: Option<AppliedMigration>,
    /// Whether the code declares it.
    pub declared: bool,
    /// Whether the recorded checksum is the code's (`true` when not recorded).
    pub checksum_ok: bool,
}

/// The declared and recorded steps side by side.
pub fn dialogue_history(
    migrations: &DialogueMigrations,
    recorded: &[AppliedMigration],
) -> Vec<DialogueHistoryEntry> {
    let mut versions: BTreeMap<i64, DialogueHistoryEntry> = BTreeMap::new();
    for (version, step) in migrations.iter() {
        versions.insert(
            version,
            DialogueHistoryEntry {
                version,
                description: step.description(),
                recorded: None,
                declared: true,
                checksum_ok: true,
            },
        );
    }
    for row in recorded {
        let entry = versions
            .entry(row.version)
            .or_insert_with(|| DialogueHistoryEntry {
                version: row.version,
                description: row.description.clone(),
                recorded: None,
                declared: false,
                checksum_ok: true,
            });
        if let Some(step) = migrations.steps.get(&row.version) {
            entry.checksum_ok = step.checksum() == row.checksum;
        }
        entry.recorded = Some(row.clone());
    }
    versions.into_values().collect()
}

/// The drift of the first recorded step whose checksum is not its declaration's.
fn drift(migrations: &DialogueMigrations, recorded: &[AppliedMigration]) -> Result<()> {
    for row in recorded {
        if let Some(step) = migrations.steps.get(&row.version) {
            let expected = step.checksum();
            if expected != row.checksum {
                return Err(Error::MigrationDrift {
                    version: row.version,
                    description: format!(
                        "dialogue step \"{}\", recorded as \"{}\"",
                        step.description(),
                        row.description
                    ),
                    applied: row.checksum.clone(),
                    expected,
                });
            }
        }
    }
    Ok(())
}

/// Runs the steps of `migrations` that `ledger` has not recorded as done on the dialogues of
/// `store`, in version order, under the migration lock: each recorded as started before its
/// first dialogue changes and as done after its last, so a run killed half-way is finished
/// by the next (a step changes nothing it already changed). Many instances starting at
/// once run each step once between them. With [`StepOptions::dry_run`] nothing is written
/// or recorded and each pending step is counted against the dialogues as they are (a step
/// that depends on an earlier one's changes counts less than it will change).
///
/// `progress` gets the version and the report so far after each page.
///
/// # Errors
/// [`Error::Migration`] for mistakes in `migrations` (before anything runs) and the errors
/// of [`run_step`]; [`Error::MigrationDrift`] when a recorded step's checksum is not its
/// declaration's (the step was edited after it ran); the lock's and the database's errors.
pub async fn migrate_dialogues(
    store: &dyn Inspect,
    ledger: &mut dyn DialogueLedger,
    migrations: &DialogueMigrations,
    options: &StepOptions,
    progress: &mut (dyn FnMut(i64, &StepReport) + Send),
) -> Result<DialogueMigrationReport> {
    migrations.check()?;
    // Every step runs over every dialogue: a row id to start after is for one step run by
    // hand (`run_step`), not for a list of them.
    let options = options.clone().after(None);
    ledger.lock().await?;
    let result = migrate_locked(store, ledger, migrations, &options, progress).await;
    ledger.unlock().await;
    result
}

async fn migrate_locked(
    store: &dyn Inspect,
    ledger: &mut dyn DialogueLedger,
    migrations: &DialogueMigrations,
    options: &StepOptions,
    progress: &mut (dyn FnMut(i64, &StepReport) + Send),
) -> Result<DialogueMigrationReport> {
    let recorded = ledger.recorded().await?;
    drift(migrations, &recorded)?;
    let mut report = DialogueMigrationReport {
        unknown: recorded
            .iter()
            .filter(|row| !migrations.steps.contains_key(&row.version))
            .map(|row| row.version)
            .collect(),
        ..DialogueMigrationReport::default()
    };
    if !report.unknown.is_empty() {
        tracing::warn!(versions = ?report.unknown, "dialogue steps recorded that this code does not declare (a newer release ran them); left as they are");
    }
    for (version, step) in migrations.iter() {
        // Read again before each step: behind a transaction pooler the lock is taken anew
        // after each record, and another instance may have run this step meanwhile.
        let recorded = ledger.recorded().await?;
        drift(migrations, &recorded)?;
        let row = recorded.iter().find(|row| row.version == version);
        if row.is_some_and(|row| row.success) {
            report.already_done.push(version);
            continue;
        }
        let resumed = row.is_some();
        if !options.dry_run {
            ledger
                .start(version, &step.description(), &step.checksum())
                .await?;
            // Behind a transaction pooler recording took the lock anew: another instance
            // may have finished the step in between.
            let recorded = ledger.recorded().await?;
            if recorded
                .iter()
                .any(|row| row.version == version && row.success)
            {
                report.already_done.push(version);
                continue;
            }
        }
        let started = Instant::now();
        let step_report = {
            let mut page = |step_report: &StepReport| progress(version, step_report);
            let run = Box::pin(run_step(store, step, options, &mut page));
            let keeper = Box::pin(async {
                loop {
                    tokio::time::sleep(KEEP_EVERY).await;
                    if let Err(lost) = ledger.keep().await {
                        return lost;
                    }
                }
            });
            let finished = match select(run, keeper).await {
                Either::Left((done, _)) => done,
                Either::Right((lost, _)) => Err(lost),
            };
            finished?
        };
        let elapsed_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        if !options.dry_run {
            ledger.finish(version, elapsed_ms).await?;
        }
        tracing::info!(version, step = %step, changed = step_report.changed, deleted = step_report.deleted, elapsed_ms, dry_run = options.dry_run, "dialogue step");
        report.ran.push(DialogueStepRun {
            version,
            report: step_report,
            elapsed_ms,
            resumed,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_names_fit_the_version_table() {
        assert_eq!(ledger_name("forms"), "forms~dialogues");
        let long = "t".repeat(63);
        let name = ledger_name(&long);
        assert!(name.len() <= 63, "{name}");
        assert_ne!(name, ledger_name(&format!("{}u", "t".repeat(62))));
    }

    #[test]
    fn mistakes_in_the_declaration_are_named() {
        let step = || DialogueStep::rename_state("A:a", "A:b").unwrap();
        let ok = DialogueMigrations::new().step(1, step()).step(3, step());
        assert!(ok.check().is_ok());
        let twice = DialogueMigrations::new().step(1, step()).step(1, step());
        assert!(twice.check().unwrap_err().to_string().contains("twice"));
        let zero = DialogueMigrations::new().step(0, step());
        assert!(zero.check().is_err());
    }

    #[test]
    fn history_joins_declared_and_recorded_steps() {
        let a = DialogueStep::rename_state("A:a", "A:b").unwrap();
        let migrations = DialogueMigrations::new()
            .step(1, a.clone())
            .step(2, DialogueStep::drop_states("Old:*", false).unwrap());
        let row = |version: i64, checksum: String, success| AppliedMigration {
            version,
            description: "x".into(),
            installed_on_ms: 0,
            success,
            checksum,
            execution_time_ms: 0,
        };
        let recorded = vec![row(1, a.checksum(), true), row(7, "c".into(), true)];
        let history = dialogue_history(&migrations, &recorded);
        assert_eq!(
            history.iter().map(|e| e.version).collect::<Vec<_>>(),
            [1, 2, 7]
        );
        assert!(history[0].recorded.is_some() && history[0].checksum_ok);
        assert!(history[1].recorded.is_none() && history[1].declared);
        assert!(!history[2].declared);
        assert!(drift(&migrations, &recorded).is_ok());
        let edited = vec![row(1, "other".into(), true)];
        assert!(matches!(
            drift(&migrations, &edited),
            Err(Error::MigrationDrift { version: 1, .. })
        ));
    }
}
