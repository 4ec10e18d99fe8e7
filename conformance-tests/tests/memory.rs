//! The storage group against `MemoryStorage`, the reference implementation.

use std::sync::Arc;

use fsmstore_conformance::{Backend, MemoryBackend};

async fn memory() -> Option<Arc<dyn Backend>> {
    Some(Arc::new(MemoryBackend::new()))
}

fsmstore_conformance::conformance_suite!(storage: memory);
