//! [`Traced`]: one `tracing` span per storage call, around any backend. A [`Database`]
//! wraps its storage in it, so every backend reports the same spans.
//!
//! [`Database`]: crate::Database

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
async fn traced<T>(span: Span, call: impl std::future::Future<Output = Result<T>>) -> Result<T> {
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

#[async_trait]
impl Storage for Traced {
    async fn get_state(&self, key: &StorageKey) -> Result<Option<String>> {
        traced(self.span("get_state", Some(key)), self.inner.get_state(key)).await
    }

    async fn set_state(&self, key: &StorageKey, state: Option<&str>) -> Result<()> {
        traced(
            self.span("set_state", Some(key)),
            self.inner.set_state(key, state),
        )
        .await
    }

    async fn get_data(&self, key: &StorageKey) -> Result<Data> {
        traced(self.span("get_data", Some(key)), self.inner.get_data(key)).await
    }

    async fn set_data(&self, key: &StorageKey, data: &Data) -> Result<()> {
        traced(
            self.span("set_data", Some(key)),
            self.inner.set_data(key, data),
        )
        .await
    }

    async fn update_data(&self, key: &StorageKey, patch: &Data) -> Result<Data> {
        traced(
            self.span("update_data", Some(key)),
            self.inner.update_data(key, patch),
        )
        .await
    }

    async fn transition(
        &self,
        key: &StorageKey,
        state: Option<&str>,
        patch: &Data,
    ) -> Result<Data> {
        traced(
            self.span("transition", Some(key)),
            self.inner.transition(key, state, patch),
        )
        .await
    }

    async fn set_record(&self, key: &StorageKey, state: Option<&str>, data: &Data) -> Result<()> {
        traced(
            self.span("set_record", Some(key)),
            self.inner.set_record(key, state, data),
        )
        .await
    }

    async fn get_value(&self, key: &StorageKey, field: &str) -> Result<Option<Value>> {
        traced(
            self.span("get_value", Some(key)),
            self.inner.get_value(key, field),
        )
        .await
    }

    async fn get_record(&self, key: &StorageKey) -> Result<Record> {
        traced(
            self.span("get_record", Some(key)),
            self.inner.get_record(key),
        )
        .await
    }

    async fn clear(&self, key: &StorageKey) -> Result<bool> {
        traced(self.span("clear", Some(key)), self.inner.clear(key)).await
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
