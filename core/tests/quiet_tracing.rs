//! With nothing that could record `fsmstore`'s debug spans and events, a call's future is the
//! backend's own, unwrapped; with a `log` logger at debug (tracing hands records to `log`
//! while no subscriber is set: a teloxide bot's `pretty_env_logger`), it is wrapped and a
//! failure reaches the logger. One test, in its own binary: the logger is the process's.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use fsmstore_core::{BotId, ChatId, Error, MemoryStorage, Storage, StorageKey, Traced, UserId};

struct Records(Mutex<Vec<String>>);

impl log::Log for Records {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {}", record.target(), record.args());
        self.0.lock().unwrap().push(line);
    }
    fn flush(&self) {}
}

/// The size of the future a call returned (behind its box).
fn size<T>(future: &Pin<Box<dyn Future<Output = T> + Send + '_>>) -> usize {
    std::mem::size_of_val(&**future)
}

#[test]
fn the_backends_future_unwrapped_only_when_nothing_could_record() {
    let inner = Arc::new(MemoryStorage::new());
    let traced = Traced::new("memory", inner.clone());
    let key = StorageKey::new(BotId(42), ChatId(-100), UserId(7));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    // No subscriber, no logger: the backend's own future, and every call answers.
    let own = size(&inner.get_state(&key));
    assert_eq!(size(&traced.get_state(&key)), own);
    assert_eq!(size(&traced.get_data(&key)), size(&inner.get_data(&key)));
    runtime.block_on(async {
        traced.set_state(&key, Some("Form:a")).await.unwrap();
        let patch = fsmstore_core::data!({"n": 1});
        assert_eq!(traced.update_data(&key, &patch).await.unwrap(), patch);
        assert_eq!(
            traced.get_state(&key).await.unwrap().as_deref(),
            Some("Form:a")
        );
        assert!(traced.clear(&key).await.unwrap());
    });

    // A logger at debug: wrapped, and the failure is logged.
    let records: &'static Records = Box::leak(Box::new(Records(Mutex::new(Vec::new()))));
    log::set_logger(records).unwrap();
    log::set_max_level(log::LevelFilter::Debug);
    assert_ne!(size(&traced.get_state(&key)), own);
    runtime.block_on(async {
        traced.close().await.unwrap();
        let err = traced.get_data(&key).await.unwrap_err();
        assert!(matches!(err, Error::Closed), "{err:?}");
    });
    let lines = records.0.lock().unwrap().join("\n");
    assert!(
        lines.contains("fsmstore call failed") && lines.contains("kind=Closed"),
        "{lines}"
    );
}
