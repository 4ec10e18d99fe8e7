//! Running cases: as tests (panics propagate) or as a suite (each case reported).

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fsmstore_core::Layout;

use crate::backend::Backend;
use crate::ctx::Ctx;

/// A case's future.
pub type BoxCase = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One case of the suite.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// Its group (the module in [`cases`](crate::cases)).
    pub group: &'static str,
    /// Its name.
    pub name: &'static str,
    /// Runs it.
    pub run: fn(Ctx) -> BoxCase,
}

/// The storage group's cases, in order (with those that need `updated_at`).
pub fn storage_cases() -> Vec<Case> {
    [
        crate::__storage_cases!(__registry, ()),
        crate::__updated_at_cases!(__registry, ()),
    ]
    .concat()
}

/// The storage group without the cases that need `updated_at`.
pub fn storage_only_cases() -> Vec<Case> {
    crate::__storage_cases!(__registry, ())
}

/// The storage group's cases that need `updated_at` (expiry, purge by age).
pub fn updated_at_cases() -> Vec<Case> {
    crate::__updated_at_cases!(__registry, ())
}

/// The aiogram-sqlalchemy layout's own cases (its schema, rows Python wrote): SQL backends.
pub fn aiogram_layout_own_cases() -> Vec<Case> {
    crate::__aiogram_layout_cases!(__registry, ())
}

/// The cases run in the aiogram layout: the storage group without those that need
/// `updated_at`, then the layout's own. Run them with [`run_case_in`].
pub fn aiogram_layout_cases() -> Vec<Case> {
    [
        crate::__storage_cases!(__registry, ()),
        crate::__aiogram_layout_cases!(__registry, ()),
    ]
    .concat()
}

/// The cases on rows another program wrote, put in with the backend's own SQL (SQL
/// backends, fsmstore's layout; the aiogram layout's list has them too).
pub fn stored_row_cases() -> Vec<Case> {
    crate::__stored_row_cases!(__registry, ())
}

/// The schema group's cases, in order.
pub fn migration_cases() -> Vec<Case> {
    crate::__migration_cases!(__registry, ())
}

/// The dialogue-migration group: steps declared in code, recorded and locked.
pub fn dialogue_migration_cases() -> Vec<Case> {
    crate::__dialogue_migration_cases!(__registry, ())
}

/// How one case went.
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// Its group.
    pub group: &'static str,
    /// Its name.
    pub name: &'static str,
    /// `None` when it passed, else the failure message.
    pub failure: Option<String>,
    /// How long it took.
    pub duration: Duration,
}

/// Runs `case` on its own tables, then drops them (also after a failure). Returns the
/// panic payload of a failed case.
pub async fn run_case(
    backend: Arc<dyn Backend>,
    name: &str,
    case: fn(Ctx) -> BoxCase,
) -> Result<(), Box<dyn Any + Send>> {
    run_case_in(backend, Layout::Fsmstore, name, case).await
}

/// [`run_case`] with the case's options in `layout`.
pub async fn run_case_in(
    backend: Arc<dyn Backend>,
    layout: Layout,
    name: &str,
    case: fn(Ctx) -> BoxCase,
) -> Result<(), Box<dyn Any + Send>> {
    let ctx = Ctx::new(Arc::clone(&backend), name).in_layout(layout);
    let options = ctx.options();
    let outcome = tokio::spawn(case(ctx)).await;
    if let Err(err) = backend.cleanup(&options).await {
        eprintln!(
            "fsmstore-conformance: cleanup of {} failed: {err}",
            options.table
        );
    }
    match outcome {
        Ok(()) => Ok(()),
        Err(err) if err.is_panic() => Err(err.into_panic()),
        Err(err) => Err(Box::new(format!("case was cancelled: {err}"))),
    }
}

/// Runs `cases` one after another against `backend`, calling `progress` after each.
pub async fn run_suite(
    backend: Arc<dyn Backend>,
    cases: &[Case],
    mut progress: impl FnMut(&CaseReport),
) -> Vec<CaseReport> {
    let mut reports = Vec::with_capacity(cases.len());
    for case in cases {
        let started = Instant::now();
        let outcome = run_case(Arc::clone(&backend), case.name, case.run).await;
        let report = CaseReport {
            group: case.group,
            name: case.name,
            failure: outcome.err().map(|payload| panic_message(&*payload)),
            duration: started.elapsed(),
        };
        progress(&report);
        reports.push(report);
    }
    reports
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "case panicked".to_owned())
}

/// Runs `future` on a multi-threaded runtime of its own (four workers, as the cases
/// expect).
///
/// # Panics
/// When no runtime can be built.
pub fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime for the test")
        .block_on(future)
}

/// Runs `future` to completion on a runtime of `workers` worker threads: what
/// `#[tokio::test(flavor = "multi_thread", worker_threads = N)]` gives a test (timing
/// sensitive tests keep the count they were measured with).
///
/// # Panics
/// When no runtime can be built.
pub fn block_on_threads<T>(workers: usize, future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a tokio runtime for the test")
        .block_on(future)
}

/// Runs `future` to completion on a current-thread runtime: what `#[tokio::test]` gives.
///
/// # Panics
/// When no runtime can be built.
pub fn block_on_current_thread<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime for the test")
        .block_on(future)
}

/// Runs one case as a test: builds a multi-threaded runtime, asks `factory` for the
/// backend (`None` skips), runs the case and re-raises its panic.
pub fn run_test<F, Fut>(factory: F, name: &str, case: fn(Ctx) -> BoxCase)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Option<Arc<dyn Backend>>>,
{
    run_test_in(factory, Layout::Fsmstore, name, case);
}

/// [`run_test`] with the case's options in `layout`.
pub fn run_test_in<F, Fut>(factory: F, layout: Layout, name: &str, case: fn(Ctx) -> BoxCase)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Option<Arc<dyn Backend>>>,
{
    block_on(async {
        let Some(backend) = factory().await else {
            return;
        };
        if let Err(panic) = run_case_in(backend, layout, name, case).await {
            std::panic::resume_unwind(panic);
        }
    });
}

/// Why the last factory answered `None`: set by [`unreachable()`], read by the
/// harness when it lists the tests of a missing server as ignored.
static LAST_SKIP: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

fn record_skip(reason: String) {
    if let Ok(mut last) = LAST_SKIP.lock() {
        *last = Some(reason);
    }
}

/// The reason of the last skip, taken.
pub(crate) fn take_skip() -> Option<String> {
    LAST_SKIP.lock().ok().and_then(|mut last| last.take())
}

/// What a backend factory returns when its server is unreachable: `None` (skip the test,
/// loudly on stderr), or a panic when the `CI` environment variable is set, so CI never
/// passes with the database tests skipped.
pub fn unreachable<T>(
    backend: &str,
    url_variable: &str,
    error: &dyn std::fmt::Display,
) -> Option<T> {
    if std::env::var_os("CI").is_some() {
        panic!("{backend} is unreachable ({error}) and CI is set: start the server or set {url_variable}");
    }
    eprintln!(
        "\n*** SKIPPED: {backend} is unreachable ({error}). Start it or set {url_variable}; under CI this fails. ***\n"
    );
    record_skip(format!("{backend} unreachable, set {url_variable}"));
    None
}
