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
/// * no `tracing` subscriber takes debug: the most verbose level any of them reports (the
///   bound every filter gives, span-scoped directives included) is below it;
/// * and no `log` logger does: tracing's `log` feature hands records to `log` while no
///   global subscriber is set (a teloxide bot's `pretty_env_logger`), as its macros decide.
///
/// Global levels, read without a lock. A bot whose subscriber stays at info takes the
/// unwrapped path, even with `tracing_subscriber`'s bridge from `log` installed.
fn quiet() -> bool {
    tracing::level_filters::LevelFilter::current() < tracing::Level::DEBUG
        && (tracing::dispatcher::has_been_set() || log::max_level() < log::Level::Debug)
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tracing::span::{Attributes, Record as SpanRecord};
    use tracing::{Event, Id, Metadata, Subscriber};

    use super::*;
    use crate::key::{BotId, ChatId, UserId};
    use crate::memory::MemoryStorage;

    /// Collects span fields as text.
    #[derive(Default, Clone)]
    struct Fields(Arc<Mutex<Vec<String>>>);

    struct Visitor<'a>(&'a mut String);

    impl tracing::field::Visit for Visitor<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            self.0.push_str(&format!("{}={:?} ", field.name(), value));
        }
    }

    impl Subscriber for Fields {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, span: &Attributes<'_>) -> Id {
            let mut text = format!("{} ", span.metadata().target());
            span.record(&mut Visitor(&mut text));
            self.0.lock().unwrap().push(text);
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, values: &SpanRecord<'_>) {
            let mut text = String::new();
            values.record(&mut Visitor(&mut text));
            self.0.lock().unwrap().push(text);
        }
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &Event<'_>) {}
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    /// Takes events only, spans never: what a filter for failures without spans does.
    #[derive(Default, Clone)]
    struct EventsOnly(Arc<Mutex<Vec<String>>>);

    impl Subscriber for EventsOnly {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            metadata.is_event()
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &SpanRecord<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut text = String::new();
            event.record(&mut Visitor(&mut text));
            self.0.lock().unwrap().push(text);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    /// With its span filtered out a call takes the unwrapped path, which must not lose the
    /// failure event a subscriber still asks for.
    #[test]
    fn a_failure_is_recorded_when_only_events_are_enabled() {
        let events = EventsOnly::default();
        let storage = Traced::new("memory", Arc::new(MemoryStorage::new()));
        let key = StorageKey::new(BotId(42), ChatId(-100), UserId(7));
        tracing::subscriber::with_default(events.clone(), || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(async {
                storage.set_state(&key, Some("Form:a")).await.unwrap();
                assert!(events.0.lock().unwrap().is_empty(), "a success is no event");
                storage.close().await.unwrap();
                let err = storage.get_data(&key).await.unwrap_err();
                assert!(matches!(err, crate::Error::Closed), "{err:?}");
            });
        });
        let text = events.0.lock().unwrap().join("\n");
        assert!(text.contains("call failed"), "{text}");
        assert!(text.contains("kind=Closed"), "{text}");
    }

    /// A span's name and its parent's.
    type Made = (&'static str, Option<&'static str>);

    /// Names the parent of each new span: the span entered where it was made.
    #[derive(Default, Clone)]
    struct Parents {
        names: Arc<Mutex<Vec<&'static str>>>,
        entered: Arc<Mutex<Vec<u64>>>,
        made: Arc<Mutex<Vec<Made>>>,
    }

    impl Subscriber for Parents {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, span: &Attributes<'_>) -> Id {
            let mut names = self.names.lock().unwrap();
            names.push(span.metadata().name());
            let parent = self
                .entered
                .lock()
                .unwrap()
                .last()
                .map(|&id| names[id as usize - 1]);
            self.made
                .lock()
                .unwrap()
                .push((span.metadata().name(), parent));
            Id::from_u64(names.len() as u64)
        }
        fn record(&self, _: &Id, _: &SpanRecord<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &Event<'_>) {}
        fn enter(&self, id: &Id) {
            self.entered.lock().unwrap().push(id.into_u64());
        }
        fn exit(&self, _: &Id) {
            self.entered.lock().unwrap().pop();
        }
    }

    /// A call's span is made where its future is awaited, as `async_trait`'s lazy body made
    /// it: a bot that instruments the call with its handler's span gets fsmstore's span
    /// inside it (and a span-scoped filter sees that scope).
    #[test]
    fn the_span_is_made_where_the_call_is_awaited() {
        let parents = Parents::default();
        let storage = Traced::new("memory", Arc::new(MemoryStorage::new()));
        let key = StorageKey::new(BotId(42), ChatId(-100), UserId(7));
        tracing::subscriber::with_default(parents.clone(), || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let call = storage.get_state(&key);
            let handler = tracing::info_span!("handler");
            runtime.block_on(call.instrument(handler)).unwrap();
        });
        let made = parents.made.lock().unwrap().clone();
        assert_eq!(
            made,
            vec![("handler", None), ("fsmstore", Some("handler"))],
            "{made:?}"
        );
    }

    #[test]
    fn every_call_has_a_span_with_the_row_id_and_no_values() {
        let fields = Fields::default();
        let storage = Traced::new("memory", Arc::new(MemoryStorage::new()));
        let key = StorageKey::new(BotId(42), ChatId(-100), UserId(7));
        tracing::subscriber::with_default(fields.clone(), || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(async {
                storage
                    .set_state(&key, Some("Form:secret-state"))
                    .await
                    .unwrap();
                let patch = crate::data!({"password": "hunter2"});
                storage.update_data(&key, &patch).await.unwrap();
            });
        });
        let text = fields.0.lock().unwrap().join("\n");
        assert!(text.contains("fsmstore backend=\"memory\""), "{text}");
        assert!(text.contains("op=\"set_state\""), "{text}");
        assert!(text.contains("op=\"update_data\""), "{text}");
        assert!(text.contains("id=\"fsm:-100:7\""), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("secret-state"),
            "{text}"
        );
    }
}
