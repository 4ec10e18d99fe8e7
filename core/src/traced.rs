//! [`Traced`]: one `tracing` span per storage call, around any backend. A [`Database`]
//! wraps its storage in it, so every backend reports the same spans.
//!
//! [`Database`]: crate::Database

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tracing::{Instrument, Span};

use crate::data::{Data, Record};
use crate::error::Result;
use crate::inspect::{Inspect, PutRow, StoredRow, TableStats};
use crate::key::StorageKey;
use crate::options::StorageOptions;
use crate::storage::Storage;

/// A storage whose every call runs in a `debug` span named `fsmstore` (target
/// `fsmstore`) with the fields `backend`, `table`, `op` and, for per-key calls, `id` (the
/// row id). Data values, states and connection strings are never recorded. Without a
/// `tracing` subscriber (or with `fsmstore` filtered out) a span costs a cheap check and
/// the row id is not built.
///
/// A failed call records its error as an event inside its span.
pub struct Traced {
    inner: Arc<dyn Inspect>,
    backend: &'static str,
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl Traced {
    /// Traces every call of `inner`; `backend` names it in the spans.
    pub fn new(backend: &'static str, inner: Arc<dyn Inspect>) -> Self {
        Traced {
            inner,
            backend,
            closed: Arc::default(),
        }
    }

    /// Whether `close()` was called through this handle.
    pub(crate) fn closed_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        Arc::clone(&self.closed)
    }

    fn span(&self, op: &'static str, key: Option<&StorageKey>) -> Span {
        let span = tracing::debug_span!(
            target: "fsmstore",
            "fsmstore",
            backend = self.backend,
            table = %self.inner.options().table,
            op,
            id = tracing::field::Empty,
        );
        if let (false, Some(key)) = (span.is_disabled(), key) {
            if let Ok(id) = self.inner.options().row_id(key) {
                span.record("id", id.as_str());
            }
        }
        span
    }
}

/// Runs `call` in `span`, with an event for a failure.
async fn traced<T>(span: Span, call: impl Future<Output = Result<T>>) -> Result<T> {
    async {
        let result = call.await;
        if let Err(err) = &result {
            tracing::debug!(target: "fsmstore", kind = ?err.kind(), error = %err, "call failed");
        }
        result
    }
    .instrument(span)
    .await
}

/// The future of one per-key call. With tracing off ([`quiet`]) it is `$call` itself, the
/// backend's own boxed future: no second box, no `Instrumented` layer polled on every
/// wake-up. Otherwise it is what it always was: at its first poll, the span is made (its
/// parent and filters are those where the call is awaited, e.g. inside a handler's span)
/// and `$call` runs in it.
macro_rules! per_key {
    ($self:ident, $op:literal, $key:expr, $call:expr) => {{
        if quiet() {
            $call
        } else {
            Box::pin(async move { traced($self.span($op, Some($key)), $call).await })
        }
    }};
}

/// Whether no span or event of `fsmstore` (all at debug) could be recorded, wherever the
/// call is awaited:
/// * no `tracing` subscriber takes debug: the most verbose level any live one reports,
///   global or scoped (the bound its filters give, span-scoped directives included), is
///   below it;
/// * and no `log` logger would get the records: tracing's `log` feature hands them to `log`
///   until a global subscriber is set (always, with `log-always`): a teloxide bot's
///   `pretty_env_logger`. This is tracing's own test (`if_log_enabled!`, which its macros
///   expand to in a caller's crate), so it follows tracing's features.
///
/// Global levels, read without a lock. A bot whose subscriber stays at info takes the
/// unwrapped path, even with `tracing_subscriber`'s bridge from `log` installed (it sets
/// `log`'s level to the subscriber's). Decided when the call is made: a call made before a
/// subscriber is installed and awaited after stays unwrapped.
fn quiet() -> bool {
    let log_quiet = tracing::if_log_enabled! { tracing::Level::DEBUG, {
        tracing::log::max_level() < tracing::log::Level::Debug
    } else {
        true
    }};
    tracing::level_filters::LevelFilter::current() < tracing::Level::DEBUG && log_quiet
}

/// The boxed future every `async_trait` method returns.
type Call<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

// The per-key methods are written as `async_trait` expands them, so that they can return
// the backend's future unwrapped (see `per_key!`); the rest are plain `async fn`s.
#[async_trait]
impl Storage for Traced {
    fn get_state<'a, 'b, 'async_trait>(
        &'a self,
        key: &'b StorageKey,
    ) -> Call<'async_trait, Option<String>>
    where
        'a: 'async_trait,
        'b: 'async_trait,
        Self: 'async_trait,
    {
        per_key!(self, "get_state", key, self.inner.get_state(key))
    }

    fn set_state<'a, 'b, 'c, 'async_trait>(
        &'a self,
        key: &'b StorageKey,
        state: Option<&'c str>,
    ) -> Call<'async_trait, ()>
    where
        'a: 'async_trait,
        'b: 'async_trait,
        'c: 'async_trait,
        Self: 'async_trait,
    {
        per_key!(self, "set_state", key, self.inner.set_state(key, state))
    }

    fn get_data<'a, 'b, 'async_trait>(&'a self, key: &'b StorageKey) -> Call<'async_trait, Data>
    where
        'a: 'async_trait,
        'b: 'async_trait,
        Self: 'async_trait,
    {
        per_key!(self, "get_data", key, self.inner.get_data(key))
    }

    fn set_data<'a, 'b, 'c, 'async_trait>(
        &'a self,
        key: &'b StorageKey,
        data: &'c Data,
    ) -> Call<'async_trait, ()>
    where
        'a: 'async_trait,
        'b: 'async_trait,
        'c: 'async_trait,
        Self: 'async_trait,
    {
        per_key!(self, "set_data", key, self.inner.set_data(key, data))
    }

    fn update_data<'a, 'b, 'c, 'async_trait>(
        &'a self,
        key: &'b StorageKey,
        patch: &'c Data,
    ) -> Call<'async_trait, Data>
    where
        'a: 'async_trait,
        'b: 'async_trait,
        'c: 'async_trait,
        Self: 'async_trait,
    {
        per_key!(self, "update_data", key, self.inner.update_data(key, patch))
    }

    fn transition<'a, 'b, 'c, 'd, 'async_trait>(
        &'a self,
        key: &'b StorageKey,
        state: Option<&'c str>,
        patch: &'d Data,
    ) -> Call<'async_trait, Data>
    where
        'a: 'async_trait,
        'b: 'async_trait,
        'c: 'async_trait,
        'd: 'async_trait,
        Self: 'async_trait,
    {
        per_key!(
            self,
            "transition",
            key,
            self.inner.transition(key, state, patch)
        )
    }

    fn set_record<'a, 'b, 'c, 'd, 'async_trait>(
        &'a self,
        key: &'b StorageKey,
        state: Option<&'c str>,
        data: &'d Data,
    ) -> Call<'async_trait, ()>
    where
        'a: 'async_trait,
        'b: 'async_trait,
        'c: 'async_trait,
        'd: 'async_trait,
        Self: 'async_trait,
    {
        per_key!(
            self,
            "set_record",
            key,
            self.inner.set_record(key, state, data)
        )
    }

    fn get_value<'a, 'b, 'c, 'async_trait>(
        &'a self,
        key: &'b StorageKey,
        field: &'c str,
    ) -> Call<'async_trait, Option<Value>>
    where
        'a: 'async_trait,
        'b: 'async_trait,
        'c: 'async_trait,
        Self: 'async_trait,
    {
        per_key!(self, "get_value", key, self.inner.get_value(key, field))
    }

    fn get_record<'a, 'b, 'async_trait>(&'a self, key: &'b StorageKey) -> Call<'async_trait, Record>
    where
        'a: 'async_trait,
        'b: 'async_trait,
        Self: 'async_trait,
    {
        per_key!(self, "get_record", key, self.inner.get_record(key))
    }

    fn clear<'a, 'b, 'async_trait>(&'a self, key: &'b StorageKey) -> Call<'async_trait, bool>
    where
        'a: 'async_trait,
        'b: 'async_trait,
        Self: 'async_trait,
    {
        per_key!(self, "clear", key, self.inner.clear(key))
    }

    async fn key_count(&self) -> Result<u64> {
        traced(self.span("key_count", None), self.inner.key_count()).await
    }

    fn options(&self) -> &StorageOptions {
        self.inner.options()
    }

    fn write_stats(&self) -> Option<crate::coalesce::CoalesceStats> {
        self.inner.write_stats()
    }

    async fn close(&self) -> Result<()> {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        traced(self.span("close", None), self.inner.close()).await
    }
}

#[async_trait]
impl Inspect for Traced {
    async fn database_now_ms(&self) -> Result<i64> {
        self.inner.database_now_ms().await
    }

    async fn list_rows(
        &self,
        state: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<StoredRow>> {
        traced(
            self.span("list_rows", None),
            self.inner.list_rows(state, after, limit),
        )
        .await
    }

    async fn get_row(&self, id: &str) -> Result<Option<StoredRow>> {
        traced(self.span("get_row", None), self.inner.get_row(id)).await
    }

    async fn ids_after(&self, after: Option<&str>) -> Result<Option<Vec<String>>> {
        traced(self.span("ids_after", None), self.inner.ids_after(after)).await
    }

    async fn put_row(&self, row: &StoredRow, how: PutRow) -> Result<bool> {
        traced(self.span("put_row", None), self.inner.put_row(row, how)).await
    }

    async fn rewrite_row(
        &self,
        old: &StoredRow,
        new: Option<(Option<&str>, &Data)>,
    ) -> Result<bool> {
        traced(
            self.span("rewrite_row", None),
            self.inner.rewrite_row(old, new),
        )
        .await
    }

    async fn rewrite_states(
        &self,
        change: &crate::StateChange,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Option<crate::StatesBatch>> {
        traced(
            self.span("rewrite_states", None),
            self.inner.rewrite_states(change, after, limit),
        )
        .await
    }

    async fn stats(&self) -> Result<TableStats> {
        traced(self.span("stats", None), self.inner.stats()).await
    }

    async fn count_older_by_state(&self, cutoff_ms: i64) -> Result<Vec<(Option<String>, u64)>> {
        traced(
            self.span("count_older_by_state", None),
            self.inner.count_older_by_state(cutoff_ms),
        )
        .await
    }

    async fn count_older_than(&self, cutoff_ms: i64) -> Result<u64> {
        traced(
            self.span("count_older_than", None),
            self.inner.count_older_than(cutoff_ms),
        )
        .await
    }

    async fn purge_older_than(&self, cutoff_ms: i64, batch: u64) -> Result<u64> {
        traced(
            self.span("purge_older_than", None),
            self.inner.purge_older_than(cutoff_ms, batch),
        )
        .await
    }
}
