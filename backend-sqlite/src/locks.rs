//! The per-key locks of a table, shared by every handle of this process on one database:
//! the storages' isolation and the dialogue migrations' in-process lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use fsmstore_core::LocalLocks;

use crate::config::SqliteLocation;

/// The per-key locks of `table` in `location`, shared by every storage of this process on
/// the same file (or named in-memory database) and table. Per-key isolation on SQLite is
/// in-process: other processes writing the same file do not see these locks.
pub(crate) fn shared_locks(location: &SqliteLocation, table: &str) -> Arc<LocalLocks> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Weak<LocalLocks>>>> = OnceLock::new();
    let name = match location {
        SqliteLocation::File(path) => {
            let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            format!("file:{}", path.display())
        }
        SqliteLocation::SharedMemory(name) => format!("memory:{name}"),
        SqliteLocation::Memory => return Arc::default(),
    };
    // SQLite's table names ignore ASCII case: `Fsm` and `fsm` are one table, so one lock
    // registry (they once had two, and two handlers of one key did not wait for each other).
    let name = format!("{name}\0{}", table.to_ascii_lowercase());
    let mut registry = REGISTRY
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    registry.retain(|_, locks| locks.strong_count() > 0);
    if let Some(locks) = registry.get(&name).and_then(Weak::upgrade) {
        return locks;
    }
    let locks = Arc::new(LocalLocks::default());
    registry.insert(name, Arc::downgrade(&locks));
    locks
}
