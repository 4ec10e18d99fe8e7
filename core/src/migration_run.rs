//! The migration engine every backend shares: a backend implements [`MigrationSteps`] on
//! one connection (the shape of sqlx's `Migrate`: `&mut self`, one method per database
//! action), and [`run_migration`] / [`run_stamp`] decide what runs, in which order, with
//! the lock released on every exit path.

use std::time::Instant;

use async_trait::async_trait;
use tracing::Instrument;

use crate::dialect::Dialect;
use crate::error::Result;
use crate::migrations::AppliedMigration;
use crate::migrations::MigrationSet;
use crate::migrator::MigrationReport;
use crate::planner::{Direction, MigrationPlan, MigrationStep, MigrationTarget, StampPlan};

/// The database actions of a migration run, on one connection a backend owns for the run.
///
/// Core calls them in this order: [`lock`](MigrationSteps::lock), then per planning round
/// [`begin`](MigrationSteps::begin), [`applied`](MigrationSteps::applied), and for the
/// step the planner chose [`apply`](MigrationSteps::apply) and
/// [`record`](MigrationSteps::record), then [`commit`](MigrationSteps::commit) (or
/// [`rollback`](MigrationSteps::rollback) after an error); finally
/// [`unlock`](MigrationSteps::unlock), whatever happened. Re-planning each round against
/// the version table keeps concurrent migrators correct.
///
/// # Behavior
/// * Where DDL is transactional (PostgreSQL, SQLite) `begin` … `commit` wraps the round,
///   so a step and its version row commit together. Where it is not (MySQL), `begin` and
///   `commit` do nothing and `apply` records the step as unfinished before its first
///   statement, so a half-applied step is reported as dirty.
/// * SQLite has no named lock: `lock` does nothing and `begin` is `BEGIN IMMEDIATE`.
#[async_trait]
pub trait MigrationSteps: Send {
    /// Takes the migration lock (waits for it, with the backend's timeout) and creates the
    /// version table if it is missing. All or nothing: when it fails it holds no lock (it
    /// releases what it took), since the engine calls `unlock` only after a `lock` that
    /// succeeded.
    ///
    /// # Errors
    /// A lock that could not be taken, database errors.
    async fn lock(&mut self) -> Result<()>;

    /// Releases the lock. A failure is logged, not returned: ending the session releases it.
    async fn unlock(&mut self);

    /// Starts a planning round. All or nothing: when it fails, no transaction is left open.
    ///
    /// # Errors
    /// Database errors.
    async fn begin(&mut self) -> Result<()>;

    /// Commits the round.
    ///
    /// # Errors
    /// Database errors.
    async fn commit(&mut self) -> Result<()>;

    /// Undoes the round after an error (best effort: failures are logged).
    async fn rollback(&mut self);

    /// The version-table rows of the FSM table, by version.
    ///
    /// # Errors
    /// Database errors.
    async fn applied(&mut self) -> Result<Vec<AppliedMigration>>;

    /// Runs `step`'s statements, with whatever bookkeeping must come first.
    ///
    /// # Errors
    /// [`Error::MigrationFailed`](crate::Error::MigrationFailed) (nothing changed) or
    /// [`Error::MigrationDirty`](crate::Error::MigrationDirty) (half-applied, MySQL).
    async fn apply(&mut self, step: &MigrationStep) -> Result<()>;

    /// Records `step` as done: its row inserted or marked successful with `elapsed_ms`
    /// (up), deleted (down).
    ///
    /// # Errors
    /// Database errors.
    async fn record(&mut self, step: &MigrationStep, elapsed_ms: i64) -> Result<()>;

    /// Deletes and inserts the version rows `plan` names (in one transaction where the
    /// version table is transactional).
    ///
    /// # Errors
    /// Database errors.
    async fn stamp(&mut self, plan: &StampPlan) -> Result<()>;
}

/// Moves the schema of `set` to `target` through `steps`, under the backend's lock.
/// Relative targets (`+1`, `-1`) are resolved once, against the version the run started
/// from.
///
/// # Errors
/// The planner's errors (drift, dirty, too new, a bad target), the steps' errors.
pub async fn run_migration(
    steps: &mut (dyn MigrationSteps + '_),
    set: &MigrationSet,
    target: MigrationTarget,
) -> Result<MigrationReport> {
    steps.lock().await?;
    let result = migrate_locked(steps, set, target).await;
    steps.unlock().await;
    result
}

/// Records `target` as the applied version of `set` through `steps`, under the lock,
/// without running migration SQL.
///
/// # Errors
/// [`Error::Migration`](crate::Error::Migration) for a target outside the known range;
/// the steps' errors.
pub async fn run_stamp(
    steps: &mut (dyn MigrationSteps + '_),
    set: &MigrationSet,
    target: MigrationTarget,
) -> Result<()> {
    steps.lock().await?;
    let result = async {
        steps.begin().await?;
        let stamped = async {
            let plan = StampPlan::new(set, &steps.applied().await?, target)?;
            steps.stamp(&plan).await
        }
        .await;
        finish_round(steps, stamped).await
    }
    .await;
    steps.unlock().await;
    result
}

/// What one planning round did: the version it found, the resolved target, and the step
/// it ran (none when the target was reached).
struct RoundOutcome {
    current: i64,
    target: i64,
    ran: Option<(i64, Direction, i64)>,
}

async fn migrate_locked(
    steps: &mut (dyn MigrationSteps + '_),
    set: &MigrationSet,
    target: MigrationTarget,
) -> Result<MigrationReport> {
    let first = round(steps, set, target).await?;
    let mut report = MigrationReport {
        from: first.current,
        to: first.current,
        steps: Vec::new(),
    };
    let absolute = MigrationTarget::Version(first.target);
    let mut outcome = first;
    while let Some(step) = outcome.ran {
        report.steps.push(step);
        outcome = round(steps, set, absolute).await?;
    }
    report.to = outcome.current;
    Ok(report)
}

/// One planning round between `begin` and `commit`.
async fn round(
    steps: &mut (dyn MigrationSteps + '_),
    set: &MigrationSet,
    target: MigrationTarget,
) -> Result<RoundOutcome> {
    steps.begin().await?;
    let outcome = one_round(steps, set, target).await;
    finish_round(steps, outcome).await
}

/// Commits the round after `result` succeeded, rolls it back after it failed (or after
/// the commit failed).
async fn finish_round<T>(steps: &mut (dyn MigrationSteps + '_), result: Result<T>) -> Result<T> {
    let committed = match result {
        Ok(value) => steps.commit().await.map(|()| value),
        Err(err) => Err(err),
    };
    if committed.is_err() {
        steps.rollback().await;
    }
    committed
}

/// Plans against the version table and runs the plan's first step.
async fn one_round(
    steps: &mut (dyn MigrationSteps + '_),
    set: &MigrationSet,
    target: MigrationTarget,
) -> Result<RoundOutcome> {
    let plan = MigrationPlan::new(set, &steps.applied().await?, target)?;
    let Some(step) = plan.steps.first() else {
        return Ok(RoundOutcome {
            current: plan.current,
            target: plan.target,
            ran: None,
        });
    };
    let span = tracing::info_span!(
        target: "fsmstore",
        "fsmstore.migration_step",
        table = %set.table(),
        dialect = set.dialect().map_or("none", Dialect::name),
        version = step.version,
        direction = ?step.direction,
    );
    let elapsed = async {
        let started = Instant::now();
        steps.apply(step).await?;
        let elapsed = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        steps.record(step, elapsed).await?;
        tracing::info!(target: "fsmstore", ms = elapsed, "migration step ran");
        Ok::<_, crate::Error>(elapsed)
    }
    .instrument(span)
    .await?;
    Ok(RoundOutcome {
        current: plan.current,
        target: plan.target,
        ran: Some((step.version, step.direction, elapsed)),
    })
}
