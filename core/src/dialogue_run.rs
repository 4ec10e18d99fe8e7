//! [`run_step`]: one [`DialogueStep`] applied to every stored dialogue of a table, a page
//! at a time, each dialogue rewritten on its own with [`Inspect::rewrite_row`] — the check
//! that it is still what was read and the write are one statement (one script on Redis),
//! so a bot writing the same dialogue meanwhile is never undone: the runner reads it again
//! and applies the step to what the bot wrote. Write times (and so TTLs) are kept.

use futures_util::stream::{self, StreamExt};

use crate::copy::Pager;
use crate::dialogue_steps::{DialogueStep, Rewrite};
use crate::error::{Error, Result};
use crate::inspect::{Inspect, StateChange, StoredRow};

/// How many times one dialogue is read again when a bot keeps writing it between the
/// runner's read and its write, before the run stops with [`Error::Migration`].
pub const REWRITE_ATTEMPTS: u32 = 32;

/// How [`run_step`] goes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StepOptions {
    /// Dialogues read per page.
    pub batch: u64,
    /// Dialogues rewritten at once within a page.
    pub in_flight: usize,
    /// Count what would change; write nothing.
    pub dry_run: bool,
    /// Start after this row id (a run cut short resumes from the last page it finished;
    /// starting from the beginning is as right, only slower, since a step changes nothing
    /// it already changed).
    pub after: Option<String>,
    /// A wait between pages: a gentler step beside a busy bot (zero: none).
    pub pause: std::time::Duration,
}

impl Default for StepOptions {
    fn default() -> Self {
        StepOptions {
            batch: 500,
            in_flight: 16,
            dry_run: false,
            after: None,
            pause: std::time::Duration::ZERO,
        }
    }
}

impl StepOptions {
    /// `batch` dialogues per page.
    pub fn batch(mut self, batch: u64) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Count, write nothing.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Start after row id `after`.
    pub fn after(mut self, after: Option<String>) -> Self {
        self.after = after;
        self
    }

    /// Wait `pause` between pages.
    pub fn pause(mut self, pause: std::time::Duration) -> Self {
        self.pause = pause;
        self
    }

    /// `in_flight` dialogues rewritten at once.
    pub fn in_flight(mut self, in_flight: usize) -> Self {
        self.in_flight = in_flight.max(1);
        self
    }
}

/// What a step did (in a dry run: would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StepReport {
    /// The step, in words.
    pub description: String,
    /// Dialogues read (where the database renames states itself, a batch of rows at a
    /// time: the rows of the batches, in any state).
    pub examined: u64,
    /// Dialogues rewritten (state or data changed).
    pub changed: u64,
    /// Dialogues deleted.
    pub deleted: u64,
    /// Times a dialogue was written by someone else between the runner's read and its
    /// write, and was read again.
    pub raced: u64,
    /// Rows whose data could not be read, left as they are: `(row id, why)`.
    pub skipped: Vec<(String, String)>,
    /// The last row id of the last page done (where to resume).
    pub last_id: Option<String>,
    /// Whether nothing was written.
    pub dry_run: bool,
}

impl StepReport {
    /// Dialogues the step changed or deleted.
    pub fn touched(&self) -> u64 {
        self.changed + self.deleted
    }
}

/// What happened to one dialogue.
enum Outcome {
    Kept,
    Changed,
    Deleted,
}

/// Applies `step` to every dialogue of `store` (only those in its one state, where it has
/// one), `options.batch` at a time in row-id order, calling `progress` after each page.
///
/// # Errors
/// [`Error::Migration`] for a closure step that is not idempotent or writes what no write
/// accepts, and for a dialogue rewritten by others [`REWRITE_ATTEMPTS`] times in a row;
/// database errors. The pages before the error are done; running the step again finishes
/// the job.
pub async fn run_step(
    store: &dyn Inspect,
    step: &DialogueStep,
    options: &StepOptions,
    progress: &mut (dyn FnMut(&StepReport) + Send),
) -> Result<StepReport> {
    let mut report = StepReport {
        description: step.description(),
        last_id: options.after.clone(),
        dry_run: options.dry_run,
        ..StepReport::default()
    };
    if let (false, Some(change)) = (options.dry_run, step.state_change()) {
        if in_database(store, &change, options, &mut report, progress).await? {
            return Ok(report);
        }
    }
    let mut pages = Pager::new(
        store,
        options.batch,
        options.in_flight,
        options.after.clone(),
    )
    .await?
    .in_state(step.only_state());
    while let Some((page, last)) = pages.next().await? {
        report.examined += page.len() as u64;
        let mut rows = Vec::with_capacity(page.len());
        for row in page {
            match &row.corrupt {
                Some(why) => report.skipped.push((row.id.clone(), why.clone())),
                None => rows.push(row),
            }
        }
        let outcomes: Vec<Result<(Outcome, u64)>> = stream::iter(rows)
            .map(|row| rewrite(store, step, row, options.dry_run))
            .buffer_unordered(options.in_flight.max(1))
            .collect()
            .await;
        for outcome in outcomes {
            let (outcome, raced) = outcome?;
            report.raced += raced;
            match outcome {
                Outcome::Kept => {}
                Outcome::Changed => report.changed += 1,
                Outcome::Deleted => report.deleted += 1,
            }
        }
        report.last_id = Some(last);
        progress(&report);
        pause(options).await;
    }
    Ok(report)
}

/// The wait between pages of [`StepOptions::pause`].
async fn pause(options: &StepOptions) {
    if !options.pause.is_zero() {
        tokio::time::sleep(options.pause).await;
    }
}

/// A change of states alone made by the database a batch at a time
/// ([`Inspect::rewrite_states`]); `false` when the store has no such statement.
async fn in_database(
    store: &dyn Inspect,
    change: &StateChange,
    options: &StepOptions,
    report: &mut StepReport,
    progress: &mut (dyn FnMut(&StepReport) + Send),
) -> Result<bool> {
    let mut after = options.after.clone();
    loop {
        let Some(batch) = store
            .rewrite_states(change, after.as_deref(), options.batch)
            .await?
        else {
            return Ok(false);
        };
        let Some(last) = batch.last_id else {
            return Ok(true);
        };
        report.examined += batch.rows;
        report.changed += batch.changed;
        report.last_id = Some(last.clone());
        after = Some(last);
        progress(report);
        pause(options).await;
    }
}

/// Applies `step` to `row` and writes the result if the row is still as read; else reads it
/// again and starts over. The outcome and how many times it was read again.
async fn rewrite(
    store: &dyn Inspect,
    step: &DialogueStep,
    mut row: StoredRow,
    dry_run: bool,
) -> Result<(Outcome, u64)> {
    let mut raced = 0;
    loop {
        let rewrite = step
            .apply(row.state.as_deref(), &row.data)
            .map_err(|err| match err {
                Error::Migration(message) => {
                    Error::Migration(format!("dialogue {}: {message}", row.id))
                }
                other => other,
            })?;
        let (new, outcome) = match &rewrite {
            Rewrite::Keep => return Ok((Outcome::Kept, raced)),
            Rewrite::Write { state, data } => (Some((state.as_deref(), data)), Outcome::Changed),
            Rewrite::Delete => (None, Outcome::Deleted),
        };
        if dry_run {
            return Ok((outcome, raced));
        }
        if store.rewrite_row(&row, new).await? {
            return Ok((outcome, raced));
        }
        raced += 1;
        if raced >= u64::from(REWRITE_ATTEMPTS) {
            return Err(Error::Migration(format!(
                "dialogue {} was written by others {raced} times while step \"{}\" tried to \
                 rewrite it; run the step again (it changes nothing it already changed)",
                row.id,
                step.description()
            )));
        }
        match store.get_row(&row.id).await? {
            Some(now) if now.corrupt.is_none() => row = now,
            // Deleted meanwhile (nothing to do), or its data no longer reads (left alone,
            // as a listing would have).
            _ => return Ok((Outcome::Kept, raced)),
        }
    }
}
