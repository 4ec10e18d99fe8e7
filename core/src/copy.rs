//! Moving dialogues between databases, tables and layouts (`fsmstore copy`): every row of
//! one [`Inspect`] written into another with its state, data and write time, in batches,
//! idempotent, and a [`verify`] that compares both sides.
//!
//! Rows travel by their id (the built key, e.g. `fsm:-100:7`), so both sides must build
//! keys alike (the default key builder, or the same custom one). A copy reads the source
//! and never changes it.
//!
//! What a row already at the destination gets:
//!
//! - the same state, data and write time: nothing (counted `unchanged`), so running a
//!   copy again, or after it was cut short, writes only what is missing or changed;
//! - written later there than at the source (both layouts keep `updated_at`): kept, unless
//!   [`CopyOptions::replace`]; the check and the write are one statement
//!   ([`Inspect::put_row`]), so a bot writing the destination meanwhile is never undone;
//! - where either side keeps no write time (the aiogram layouts, Redis): kept unless
//!   `replace`, as the time can not say which is newer.
//!
//! Rows past the source's TTL are not copied (the bot reads them as absent). Redis keeps
//! no write time: rows read from it are written with the destination's clock at the copy.

use std::collections::HashSet;

use futures_util::stream::{self, StreamExt};

use crate::error::Result;
use crate::inspect::{Inspect, PutRow, StoredRow};

/// How [`copy`] runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CopyOptions {
    /// Rows read from the source per page (and written before the next page is read).
    pub batch: u64,
    /// Rows written at once within a page.
    pub in_flight: usize,
    /// Overwrite rows the destination holds even when written later there.
    pub replace: bool,
    /// Count what would be written; write nothing.
    pub dry_run: bool,
    /// Start after this id (a copy cut short resumes from the last page it finished).
    pub after: Option<String>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            batch: 500,
            in_flight: 16,
            replace: false,
            dry_run: false,
            after: None,
        }
    }
}

impl CopyOptions {
    /// `batch` rows per page (at least 1).
    #[must_use]
    pub fn batch(mut self, rows: u64) -> Self {
        self.batch = rows.max(1);
        self
    }

    /// Overwrite rows written later at the destination.
    #[must_use]
    pub fn replace(mut self, on: bool) -> Self {
        self.replace = on;
        self
    }

    /// Write nothing, count what would be written.
    #[must_use]
    pub fn dry_run(mut self, on: bool) -> Self {
        self.dry_run = on;
        self
    }

    /// Start after `id`.
    #[must_use]
    pub fn after(mut self, id: Option<String>) -> Self {
        self.after = id;
        self
    }
}

/// What [`copy`] did (in a dry run: would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyReport {
    /// Rows read from the source.
    pub read: u64,
    /// Written where the destination had none.
    pub new: u64,
    /// Written over a different row of the destination.
    pub replaced: u64,
    /// Left as the destination holds them: written later there, or a side without write
    /// times (see the module's rules), and no `replace`.
    pub kept: u64,
    /// Already the same at the destination.
    pub unchanged: u64,
    /// Past the source's TTL: not copied.
    pub expired: u64,
    /// Past the destination's TTL (shorter than the source's): not copied, the
    /// destination would read them as absent.
    pub expired_at_destination: u64,
    /// Rows not written, by id, and why: data the source holds but no client reads, or a
    /// row the destination refuses (its `max_data_bytes`, say).
    pub skipped: Vec<(String, String)>,
    /// The last id of the last page finished: [`CopyOptions::after`] resumes there.
    pub last_id: Option<String>,
}

/// What happens to one source row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    New,
    Replace,
    Keep,
    Unchanged,
    ExpiredThere,
}

/// Whether `a` and `b` hold the same dialogue: state and data, and the write time where
/// both keep one.
fn same(a: &StoredRow, b: &StoredRow) -> bool {
    a.state == b.state
        && a.data == b.data
        && match (a.updated_at_ms, b.updated_at_ms) {
            (Some(x), Some(y)) => x == y,
            _ => true,
        }
}

fn decide(source: &StoredRow, there: Option<&StoredRow>, replace: bool) -> Decision {
    let Some(there) = there else {
        return Decision::New;
    };
    if there.corrupt.is_none() && same(source, there) {
        return Decision::Unchanged;
    }
    if replace {
        return Decision::Replace;
    }
    match (source.updated_at_ms, there.updated_at_ms) {
        (Some(source), Some(there)) if there <= source => Decision::Replace,
        _ => Decision::Keep,
    }
}

/// The source's expiry cutoff (unix ms) when it has a TTL and keeps write times.
async fn cutoff(source: &dyn Inspect) -> Result<Option<i64>> {
    let options = source.options();
    if options.ttl.is_some() && options.layout.has_updated_at() {
        Ok(Some(source.expiry_cutoff_ms().await?))
    } else {
        Ok(None)
    }
}

/// The destination's expiry cutoff by its clock when it has a TTL (Redis included, which
/// keeps no write time but expires a copied key when the row would have).
async fn destination_cutoff(to: &dyn Inspect) -> Result<Option<i64>> {
    match to.options().ttl {
        Some(ttl) => {
            let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
            Ok(Some(to.database_now_ms().await?.saturating_sub(ttl)))
        }
        None => Ok(None),
    }
}

fn expired(row: &StoredRow, cutoff: Option<i64>) -> bool {
    matches!((row.updated_at_ms, cutoff), (Some(at), Some(cutoff)) if at < cutoff)
}

/// A side's rows a page at a time, in id order: by [`Inspect::list_rows`], or where the
/// store lists ids in one pass ([`Inspect::ids_after`]) by those ids, `in_flight` rows
/// read at once; only those in `state` when given.
pub(crate) struct Pager<'a> {
    inspect: &'a dyn Inspect,
    batch: u64,
    in_flight: usize,
    after: Option<String>,
    state: Option<String>,
    ids: Option<std::vec::IntoIter<String>>,
}

impl<'a> Pager<'a> {
    pub(crate) async fn new(
        inspect: &'a dyn Inspect,
        batch: u64,
        in_flight: usize,
        after: Option<String>,
    ) -> Result<Pager<'a>> {
        let ids = inspect.ids_after(after.as_deref()).await?;
        Ok(Pager {
            inspect,
            batch: batch.max(1),
            in_flight: in_flight.max(1),
            after,
            state: None,
            ids: ids.map(Vec::into_iter),
        })
    }

    /// Only the rows in `state` (`None`: every row).
    pub(crate) fn in_state(mut self, state: Option<&str>) -> Self {
        self.state = state.map(str::to_owned);
        self
    }

    /// The next page and the last id it covers (`None`: no more). A row gone since its id
    /// was listed is left out, so a page may be empty.
    pub(crate) async fn next(&mut self) -> Result<Option<(Vec<StoredRow>, String)>> {
        let inspect = self.inspect;
        let Some(ids) = &mut self.ids else {
            let page = inspect
                .list_rows(self.state.as_deref(), self.after.as_deref(), self.batch)
                .await?;
            let Some(last) = page.last().map(|row| row.id.clone()) else {
                return Ok(None);
            };
            self.after = Some(last.clone());
            return Ok(Some((page, last)));
        };
        let chunk: Vec<String> = ids.by_ref().take(self.batch as usize).collect();
        let Some(last) = chunk.last().cloned() else {
            return Ok(None);
        };
        let rows: Vec<Result<Option<StoredRow>>> = stream::iter(chunk)
            .map(|id| async move { inspect.get_row(&id).await })
            .buffered(self.in_flight)
            .collect()
            .await;
        let mut page = Vec::with_capacity(rows.len());
        for row in rows {
            page.extend(row?.filter(|row| {
                self.state.is_none() || row.state.as_deref() == self.state.as_deref()
            }));
        }
        self.after = Some(last.clone());
        Ok(Some((page, last)))
    }
}

/// Copies every row of `from` into `to`, a page of [`CopyOptions::batch`] rows at a time
/// in id order, calling `progress` with the report so far after each page. See the
/// module for what a row already at the destination gets.
///
/// A row the source can not read, or the destination refuses, is listed in
/// [`CopyReport::skipped`] and the copy goes on.
///
/// # Errors
/// The first database error of either side: the pages before it are written, and
/// [`CopyReport::last_id`] of the last `progress` call says where to resume.
pub async fn copy(
    from: &dyn Inspect,
    to: &dyn Inspect,
    options: &CopyOptions,
    mut progress: impl FnMut(&CopyReport) + Send,
) -> Result<CopyReport> {
    let cutoff = cutoff(from).await?;
    let there_cutoff = destination_cutoff(to).await?;
    let mut report = CopyReport {
        last_id: options.after.clone(),
        ..CopyReport::default()
    };
    let mut pages = Pager::new(
        from,
        options.batch,
        options.in_flight,
        options.after.clone(),
    )
    .await?;
    while let Some((page, last)) = pages.next().await? {
        report.read += page.len() as u64;
        let mut rows = Vec::with_capacity(page.len());
        for row in page {
            if let Some(why) = &row.corrupt {
                report
                    .skipped
                    .push((row.id.clone(), format!("the source's data: {why}")));
            } else if expired(&row, cutoff) {
                report.expired += 1;
            } else {
                rows.push(row);
            }
        }
        let outcomes: Vec<(String, Result<Decision>)> = stream::iter(rows)
            .map(|row| async move {
                let outcome = copy_row(to, &row, options, there_cutoff).await;
                (row.id, outcome)
            })
            .buffer_unordered(options.in_flight.max(1))
            .collect()
            .await;
        for (id, outcome) in outcomes {
            match outcome {
                Ok(Decision::New) => report.new += 1,
                Ok(Decision::Replace) => report.replaced += 1,
                Ok(Decision::Keep) => report.kept += 1,
                Ok(Decision::Unchanged) => report.unchanged += 1,
                Ok(Decision::ExpiredThere) => report.expired_at_destination += 1,
                Err(err) if err.kind() == crate::ErrorKind::InvalidInput => {
                    report.skipped.push((id, err.to_string()));
                }
                Err(err) => return Err(err),
            }
        }
        report.last_id = Some(last);
        progress(&report);
    }
    report.skipped.sort();
    Ok(report)
}

/// Decides and (unless a dry run) writes one row.
async fn copy_row(
    to: &dyn Inspect,
    row: &StoredRow,
    options: &CopyOptions,
    there_cutoff: Option<i64>,
) -> Result<Decision> {
    // What the destination would refuse, refused in a dry run too.
    to.options()
        .put_row_text(&row.id, row.state.as_deref(), &row.data)?;
    if expired(row, there_cutoff) {
        return Ok(Decision::ExpiredThere);
    }
    let there = to.get_row(&row.id).await?;
    let decision = decide(row, there.as_ref(), options.replace);
    // The check again in the write: a row the bot wrote since the read above stays.
    let how = match decision {
        Decision::Keep | Decision::Unchanged | Decision::ExpiredThere => return Ok(decision),
        _ if options.replace => PutRow::Replace,
        Decision::New => PutRow::IfAbsent,
        Decision::Replace => PutRow::IfNotNewer,
    };
    if options.dry_run || to.put_row(row, how).await? {
        Ok(decision)
    } else {
        Ok(Decision::Keep)
    }
}

/// How many ids a [`VerifyReport`] lists of each kind (the counts are whole).
pub const LISTED_IDS: usize = 20;

/// What [`verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Rows of the source compared (those within its TTL).
    pub compared: u64,
    /// Of them, the same at the destination (state, data, and write time where both
    /// sides keep one).
    pub same: u64,
    /// Rows of the source the destination lacks: how many, and the first ids.
    pub missing: (u64, Vec<String>),
    /// Rows the destination holds otherwise: how many, and the first ids.
    pub differing: (u64, Vec<String>),
    /// Rows (within the destination's TTL) the source lacks: how many, and the first ids.
    pub only_at_destination: (u64, Vec<String>),
}

impl VerifyReport {
    /// Whether both sides hold the same dialogues.
    pub fn clean(&self) -> bool {
        self.missing.0 == 0 && self.differing.0 == 0 && self.only_at_destination.0 == 0
    }
}

fn note(list: &mut (u64, Vec<String>), id: &str) {
    list.0 += 1;
    if list.1.len() < LISTED_IDS {
        list.1.push(id.to_owned());
    }
}

/// Compares `from` and `to` row by row: every row of the source within its TTL must be at
/// the destination with the same state, data and write time (where both keep one), and
/// the destination must hold no other row within its TTL. `progress` gets the rows read
/// so far, of both sides.
///
/// # Errors
/// Database errors of either side.
pub async fn verify(
    from: &dyn Inspect,
    to: &dyn Inspect,
    batch: u64,
    in_flight: usize,
    mut progress: impl FnMut(u64) + Send,
) -> Result<VerifyReport> {
    let batch = batch.max(1);
    let (from_cutoff, to_cutoff) = (cutoff(from).await?, cutoff(to).await?);
    let mut report = VerifyReport::default();
    let mut seen = HashSet::new();
    let mut read = 0;
    let mut pages = Pager::new(from, batch, in_flight, None).await?;
    while let Some((page, _)) = pages.next().await? {
        read += page.len() as u64;
        let rows: Vec<StoredRow> = page
            .into_iter()
            // A row past the source's TTL is absent there: the destination holding it
            // (within its own TTL) is a difference.
            .filter(|row| !expired(row, from_cutoff) && seen.insert(row.id.clone()))
            .collect();
        let found: Vec<(StoredRow, Result<Option<StoredRow>>)> = stream::iter(rows)
            .map(|row| async move {
                let there = to.get_row(&row.id).await;
                (row, there)
            })
            .buffer_unordered(in_flight.max(1))
            .collect()
            .await;
        for (row, there) in found {
            report.compared += 1;
            match there? {
                Some(there) if expired(&there, to_cutoff) => note(&mut report.missing, &row.id),
                None => note(&mut report.missing, &row.id),
                Some(there) if there.corrupt.is_none() && same(&row, &there) => report.same += 1,
                Some(_) => note(&mut report.differing, &row.id),
            }
        }
        progress(read);
    }
    // The destination's rows the source never listed.
    let mut pages = Pager::new(to, batch, in_flight, None).await?;
    while let Some((page, _)) = pages.next().await? {
        read += page.len() as u64;
        for row in &page {
            if !seen.contains(&row.id) && !expired(row, to_cutoff) {
                note(&mut report.only_at_destination, &row.id);
            }
        }
        progress(read);
    }
    for list in [
        &mut report.missing.1,
        &mut report.differing.1,
        &mut report.only_at_destination.1,
    ] {
        list.sort();
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{data, MemoryStorage, Storage, StorageOptions};

    fn row(id: &str, state: &str, at: i64) -> StoredRow {
        StoredRow {
            id: id.to_owned(),
            state: Some(state.to_owned()),
            data: data!({"n": at}),
            updated_at_ms: Some(at),
            corrupt: None,
        }
    }

    #[test]
    fn a_row_written_later_at_the_destination_is_kept_unless_replace() {
        let source = row("a", "S:1", 100);
        assert_eq!(decide(&source, None, false), Decision::New);
        assert_eq!(decide(&source, Some(&source), false), Decision::Unchanged);
        assert_eq!(
            decide(&source, Some(&row("a", "S:2", 101)), false),
            Decision::Keep
        );
        assert_eq!(
            decide(&source, Some(&row("a", "S:2", 101)), true),
            Decision::Replace
        );
        assert_eq!(
            decide(&source, Some(&row("a", "S:2", 99)), false),
            Decision::Replace
        );
        // Without a write time on one side, the destination's row stays.
        let mut timeless = row("a", "S:2", 0);
        timeless.updated_at_ms = None;
        assert_eq!(decide(&source, Some(&timeless), false), Decision::Keep);
        timeless.state = source.state.clone();
        timeless.data = source.data.clone();
        assert_eq!(decide(&source, Some(&timeless), false), Decision::Unchanged);
    }

    #[tokio::test]
    async fn a_copy_carries_write_times_resumes_and_verifies() {
        let (from, to) = (MemoryStorage::new(), MemoryStorage::new());
        for n in 0..25 {
            from.put_row(
                &row(&format!("fsm:{n:02}"), "S:a", 1_000 + n),
                PutRow::IfAbsent,
            )
            .await
            .unwrap();
        }
        // One newer at the destination, one older.
        to.put_row(&row("fsm:03", "S:later", 5_000), PutRow::IfAbsent)
            .await
            .unwrap();
        to.put_row(&row("fsm:04", "S:earlier", 10), PutRow::IfAbsent)
            .await
            .unwrap();
        let options = CopyOptions::default().batch(10);
        let mut pages = Vec::new();
        let report = copy(&from, &to, &options, |r| pages.push(r.last_id.clone()))
            .await
            .unwrap();
        assert_eq!(
            (
                report.read,
                report.new,
                report.replaced,
                report.kept,
                report.unchanged
            ),
            (25, 23, 1, 1, 0)
        );
        assert_eq!(pages.len(), 3, "{pages:?}");
        assert_eq!(report.last_id.as_deref(), Some("fsm:24"));
        assert_eq!(
            to.get_row("fsm:07").await.unwrap().unwrap().updated_at_ms,
            Some(1_007)
        );
        assert_eq!(
            to.get_row("fsm:03")
                .await
                .unwrap()
                .unwrap()
                .state
                .as_deref(),
            Some("S:later")
        );
        let checked = verify(&from, &to, 7, 4, |_| {}).await.unwrap();
        assert_eq!((checked.compared, checked.same), (25, 24));
        assert_eq!(checked.differing, (1, vec!["fsm:03".to_owned()]));
        assert!(!checked.clean());
        // Again: nothing to write. Resumed after a page: only the rest is read.
        let again = copy(&from, &to, &options, |_| {}).await.unwrap();
        assert_eq!((again.unchanged, again.kept, again.new), (24, 1, 0));
        let resumed = copy(
            &from,
            &to,
            &options.clone().after(Some("fsm:19".into())),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!((resumed.read, resumed.unchanged), (5, 5));
        // --replace takes the source's row; then both sides match, and an extra
        // destination row shows.
        let replaced = copy(&from, &to, &options.clone().replace(true), |_| {})
            .await
            .unwrap();
        assert_eq!(replaced.replaced, 1);
        assert!(verify(&from, &to, 7, 4, |_| {}).await.unwrap().clean());
        to.put_row(&row("fsm:99", "S:x", 1), PutRow::IfAbsent)
            .await
            .unwrap();
        let extra = verify(&from, &to, 7, 4, |_| {}).await.unwrap();
        assert_eq!(extra.only_at_destination, (1, vec!["fsm:99".to_owned()]));
    }

    #[tokio::test]
    async fn rows_past_a_ttl_are_not_copied_and_verify_sees_them_at_the_destination() {
        let ttl = std::time::Duration::from_secs(3_600);
        let from = MemoryStorage::with_options(StorageOptions::default().ttl(ttl));
        let to = MemoryStorage::new();
        let now = crate::now_ms();
        from.put_row(&row("fsm:old", "S:a", now - 7_200_000), PutRow::IfAbsent)
            .await
            .unwrap();
        from.put_row(&row("fsm:new", "S:a", now - 60_000), PutRow::IfAbsent)
            .await
            .unwrap();
        let report = copy(&from, &to, &CopyOptions::default(), |_| {})
            .await
            .unwrap();
        assert_eq!((report.new, report.expired), (1, 1));
        assert!(verify(&from, &to, 10, 2, |_| {}).await.unwrap().clean());
        // The destination holding a row the source has let expire: they differ.
        to.put_row(&row("fsm:old", "S:a", now - 7_200_000), PutRow::IfAbsent)
            .await
            .unwrap();
        let checked = verify(&from, &to, 10, 2, |_| {}).await.unwrap();
        assert_eq!(checked.only_at_destination, (1, vec!["fsm:old".to_owned()]));
        // A destination with a shorter TTL takes only what it would not read as expired.
        let short = MemoryStorage::with_options(
            StorageOptions::default().ttl(std::time::Duration::from_secs(30)),
        );
        let report = copy(&from, &short, &CopyOptions::default(), |_| {})
            .await
            .unwrap();
        assert_eq!((report.new, report.expired_at_destination), (0, 1));
    }

    #[tokio::test]
    async fn a_dry_run_writes_nothing_and_refused_rows_are_listed() {
        let from = MemoryStorage::new();
        let to = MemoryStorage::with_options(StorageOptions::default().max_data_bytes(16));
        from.put_row(&row("fsm:a", "S:a", 1), PutRow::IfAbsent)
            .await
            .unwrap();
        let mut big = row("fsm:b", "S:b", 2);
        big.data = data!({"text": "x".repeat(64)});
        from.put_row(&big, PutRow::IfAbsent).await.unwrap();
        let dry = copy(&from, &to, &CopyOptions::default().dry_run(true), |_| {})
            .await
            .unwrap();
        assert_eq!((dry.new, dry.skipped.len()), (1, 1));
        assert_eq!(to.key_count().await.unwrap(), 0);
        let done = copy(&from, &to, &CopyOptions::default(), |_| {})
            .await
            .unwrap();
        assert_eq!(done.new, 1);
        assert_eq!(done.skipped[0].0, "fsm:b");
        assert_eq!(to.key_count().await.unwrap(), 1);
    }
}
