//! `Traced`'s spans and failure events under a subscriber. In its own binary, away from
//! tests that call `Traced` on threads with no subscriber: such a call may make tracing
//! cache "never" for fsmstore's callsites while a scoped subscriber is the only one.

use std::sync::{Arc, Mutex};

use fsmstore_core::{BotId, ChatId, MemoryStorage, Storage, StorageKey, Traced, UserId};
use tracing::span::{Attributes, Record as SpanRecord};
use tracing::{Event, Id, Instrument, Metadata, Subscriber};

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

/// A subscriber that takes events but no span still gets the failure event: its level
/// (no hint: trace) keeps the call wrapped, its span made and refused.
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
            assert!(matches!(err, fsmstore_core::Error::Closed), "{err:?}");
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
            let patch = fsmstore_core::data!({"password": "hunter2"});
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
