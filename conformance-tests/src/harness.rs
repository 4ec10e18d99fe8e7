//! A test binary that says what it did not run. [`Suite`] lists every case as a test of
//! its own (libtest-mimic, so the output and the flags are `cargo test`'s), asks each
//! backend factory once whether its server is there, and lists the cases of a missing
//! server as **ignored, with the reason** in the summary, never as passed. With `CI` set a
//! missing server is a failure (see [`unreachable()`](crate::unreachable)).
//!
//! A test file using it sets `harness = false` for itself in `Cargo.toml` and has a
//! `main`:
//!
//! ```ignore
//! fn main() -> std::process::ExitCode {
//!     let mut suite = fsmstore_conformance::Suite::new();
//!     suite.all("", my_backend);
//!     suite.run()
//! }
//! ```

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::sync::Arc;

use fsmstore_core::Layout;
use libtest_mimic::{Arguments, Failed, Trial};

use crate::backend::{Backend, Capabilities};
use crate::runner::{
    aiogram_layout_cases, aiogram_layout_own_cases, block_on, dialogue_migration_cases,
    migration_cases, run_case_in, storage_cases, storage_only_cases, stored_row_cases, take_skip,
    updated_at_cases, Case,
};

/// Whether what a group of tests needs is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Needs {
    /// It is: run the tests.
    Met,
    /// It is not: list the tests as ignored, with this reason.
    Missing(String),
    /// Finding out failed (under `CI`, a missing server panics): fail the tests with this.
    Broken(String),
}

impl Needs {
    /// What `probe` says: `Some(())` met; `None` missing, with the reason
    /// [`unreachable()`](crate::unreachable) gave (or `reason`); a panic broken.
    pub fn probe(reason: &str, probe: impl FnOnce() -> Option<()>) -> Needs {
        match std::panic::catch_unwind(AssertUnwindSafe(probe)) {
            Ok(Some(())) => Needs::Met,
            Ok(None) => Needs::Missing(take_skip().unwrap_or_else(|| reason.to_owned())),
            Err(panic) => Needs::Broken(crate::runner::panic_message(&*panic)),
        }
    }
}

/// Whether the backend `factory` makes is there, and what it declares.
fn probe<F, Fut>(factory: F) -> (Needs, Option<Capabilities>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<Arc<dyn Backend>>>,
{
    let mut declared = None;
    let needs = Needs::probe("the backend is unreachable", || {
        block_on(async {
            let backend = factory().await?;
            declared = Some(backend.capabilities());
            Some(())
        })
    });
    (needs, declared)
}

/// The tests of one binary.
#[derive(Default)]
pub struct Suite {
    trials: Vec<Trial>,
    /// Groups left out because the backend does not declare what they need.
    not_applicable: Vec<String>,
    /// Run one test at a time (unless `--test-threads` says otherwise).
    serial: bool,
}

impl Suite {
    /// An empty suite.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs its tests one at a time unless `--test-threads` says otherwise: for tests that
    /// each start servers of their own and measure pauses (killing a cluster node while
    /// another test loads both cores would measure the machine, not the code).
    pub fn one_at_a_time(mut self) -> Self {
        self.serial = true;
        self
    }

    /// The storage and schema groups on the backend `factory` makes, named `prefix` +
    /// the case's name (`"galera::"`).
    pub fn all<F, Fut>(&mut self, prefix: &str, factory: F)
    where
        F: Fn() -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Option<Arc<dyn Backend>>>,
    {
        let cases = [
            storage_cases(),
            migration_cases(),
            dialogue_migration_cases(),
        ]
        .concat();
        self.cases(prefix, &cases, Layout::Fsmstore, factory);
    }

    /// The storage group in the layout of aiogram-sqlalchemy-storage, plus that layout's
    /// own cases.
    pub fn aiogram_layout<F, Fut>(&mut self, prefix: &str, factory: F)
    where
        F: Fn() -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Option<Arc<dyn Backend>>>,
    {
        self.cases(
            prefix,
            &aiogram_layout_cases(),
            Layout::AiogramSqlalchemy,
            factory,
        );
    }

    /// The cases on rows another program wrote (SQL backends).
    pub fn stored_rows<F, Fut>(&mut self, prefix: &str, factory: F)
    where
        F: Fn() -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Option<Arc<dyn Backend>>>,
    {
        self.cases(prefix, &stored_row_cases(), Layout::Fsmstore, factory);
    }

    /// `cases` in `layout` on the backend `factory` makes. The factory is asked once,
    /// here, whether its server is there; each case asks again when it runs.
    pub fn cases<F, Fut>(&mut self, prefix: &str, cases: &[Case], layout: Layout, factory: F)
    where
        F: Fn() -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Option<Arc<dyn Backend>>>,
    {
        let (needs, _) = probe(factory.clone());
        self.listed(prefix, cases, layout, factory, &needs);
    }

    /// Every group the backend `factory` makes declares (its [`Capabilities`]): the storage
    /// group always; the cases needing `updated_at`, the schema group, the cases on rows
    /// another program wrote, and (under `prefix` + `aiogram_layout::`) the aiogram
    /// layout's, each when declared. The backend is asked once, here; a group it does not
    /// declare is not listed, and a line in the summary says so. A backend whose server is
    /// missing has every group listed as ignored, with the reason.
    ///
    /// This is how a backend crate runs the suite:
    ///
    /// ```ignore
    /// fn main() -> std::process::ExitCode {
    ///     let mut suite = fsmstore_conformance::Suite::new();
    ///     suite.backend("", my_backend);
    ///     suite.run()
    /// }
    /// ```
    pub fn backend<F, Fut>(&mut self, prefix: &str, factory: F)
    where
        F: Fn() -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Option<Arc<dyn Backend>>>,
    {
        let (needs, declared) = probe(factory.clone());
        // Not known without the server: list everything, ignored.
        let caps = declared.unwrap_or_else(Capabilities::sql);
        let mut groups = vec![storage_only_cases()];
        let mut left_out = Vec::new();
        let (expiry, purge): (Vec<Case>, Vec<Case>) = updated_at_cases()
            .into_iter()
            .partition(|case| case.group == "expiry");
        for (declared, cases, what) in [
            (caps.expiry, expiry, "expiry"),
            (caps.updated_at, purge, "updated_at"),
            (caps.migrations, migration_cases(), "migrations"),
            (
                caps.dialogue_migrations,
                dialogue_migration_cases(),
                "dialogue_migrations",
            ),
            (caps.raw_sql, stored_row_cases(), "raw_sql"),
        ] {
            if declared {
                groups.push(cases);
            } else {
                left_out.push(format!("{} ({what})", cases.len()));
            }
        }
        self.listed(
            prefix,
            &groups.concat(),
            Layout::Fsmstore,
            factory.clone(),
            &needs,
        );
        if caps.aiogram_layout {
            // The storage group in aiogram's layout; on SQL backends also that layout's
            // own cases (its table, rows Python wrote with raw SQL).
            let cases = if caps.raw_sql && caps.migrations {
                aiogram_layout_cases()
            } else {
                left_out.push(format!(
                    "{} (aiogram_layout with raw_sql and migrations)",
                    aiogram_layout_own_cases().len()
                ));
                storage_only_cases()
            };
            let layout_prefix = format!("{prefix}aiogram_layout::");
            self.listed(
                &layout_prefix,
                &cases,
                Layout::AiogramSqlalchemy,
                factory,
                &needs,
            );
        } else {
            left_out.push(format!("{} (aiogram_layout)", aiogram_layout_cases().len()));
        }
        if !left_out.is_empty() {
            self.not_applicable.push(format!(
                "{}: cases of capabilities it does not declare: {}",
                if prefix.is_empty() {
                    "the backend"
                } else {
                    prefix.trim_end_matches(':')
                },
                left_out.join(", ")
            ));
        }
    }

    /// `cases` as tests, run when `needs` is met.
    fn listed<F, Fut>(
        &mut self,
        prefix: &str,
        cases: &[Case],
        layout: Layout,
        factory: F,
        needs: &Needs,
    ) where
        F: Fn() -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Option<Arc<dyn Backend>>>,
    {
        for case in cases {
            let (factory, run, name) = (factory.clone(), case.run, case.name);
            self.test(&format!("{prefix}{name}"), needs, move || {
                block_on(async move {
                    let Some(backend) = factory().await else {
                        panic!("the backend was there when the suite started and is gone now");
                    };
                    if let Err(panic) = run_case_in(backend, layout, name, run).await {
                        std::panic::resume_unwind(panic);
                    }
                });
            });
        }
    }

    /// A test of its own, run only when `needs` is met: ignored with the reason when what
    /// it needs is missing, failed when finding out failed.
    pub fn test(&mut self, name: &str, needs: &Needs, run: impl FnOnce() + Send + 'static) {
        let trial = match needs.clone() {
            Needs::Met => Trial::test(name, move || {
                std::panic::catch_unwind(AssertUnwindSafe(run))
                    .map_err(|panic| Failed::from(crate::runner::panic_message(&*panic)))
            }),
            // Run anyway (`--ignored`): it fails, it never passes without running.
            Needs::Missing(reason) => Trial::test(name, {
                let reason = reason.clone();
                move || Err(Failed::from(format!("not run: {reason}")))
            })
            .with_ignored_flag(true)
            .with_kind(format!("skipped: {reason}")),
            Needs::Broken(message) => Trial::test(name, move || Err(Failed::from(message))),
        };
        self.trials.push(trial);
    }

    /// Runs the tests the command line selects, as `cargo test` would, and prints how
    /// many were ignored because something they need is missing.
    pub fn run(self) -> ExitCode {
        let mut arguments = Arguments::from_args();
        if self.serial && arguments.test_threads.is_none() {
            arguments.test_threads = Some(1);
        }
        let skipped = self
            .trials
            .iter()
            .filter(|trial| trial.kind().starts_with("skipped"))
            .count();
        let conclusion = libtest_mimic::run(&arguments, self.trials);
        if !arguments.list {
            for line in &self.not_applicable {
                eprintln!("not listed, {line}");
            }
        }
        if skipped > 0 && !arguments.list {
            eprintln!(
                "*** {skipped} tests did not run: listed as ignored above, with what they need ***"
            );
        }
        conclusion.exit_code()
    }
}
