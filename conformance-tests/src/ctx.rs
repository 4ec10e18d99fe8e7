//! [`Ctx`]: what a case gets: the backend and its own tables.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use fsmstore_core::{
    Database, Inspect, Layout, MigrationSource, Migrator, SchemaPolicy, Storage, StorageOptions,
    TableName,
};

use crate::backend::Backend;

/// A case's context: the backend, and options naming tables no other case uses.
#[derive(Clone)]
pub struct Ctx {
    backend: Arc<dyn Backend>,
    options: StorageOptions,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("backend", &self.backend.name())
            .field("table", &self.options.table)
            .finish()
    }
}

impl Ctx {
    /// A context for case `name` on `backend`, with fresh table names
    /// (`fc_<case>_<unique>` and `…_ver`).
    pub fn new(backend: Arc<dyn Backend>, name: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        let unique = nanos
            ^ (u64::from(std::process::id()) << 32)
            ^ COUNTER
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let case: String = name.chars().take(30).collect();
        let table = format!("fc_{case}_{:08x}", unique as u32 ^ (unique >> 32) as u32);
        // Schema settings only for a backend with migrations: one without refuses them.
        let mut options = StorageOptions::default();
        if backend.capabilities().migrations {
            options = options.schema(SchemaPolicy::Upgrade);
            options.version_table =
                TableName::new(format!("{table}_ver")).expect("case names are identifiers");
        }
        options.table = TableName::new(table).expect("case names are identifiers");
        Ctx { backend, options }
    }

    /// This context with its options in `layout`.
    pub fn in_layout(mut self, layout: Layout) -> Self {
        self.options.layout = layout;
        self
    }

    /// The layout of this case's options.
    pub fn layout(&self) -> Layout {
        self.options.layout
    }

    /// Whether rows record their last write here: the backend keeps it and the layout has
    /// the column.
    pub fn has_updated_at(&self) -> bool {
        self.backend.capabilities().updated_at && self.options.layout.has_updated_at()
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// This case's options: its own tables, schema policy `Upgrade`.
    pub fn options(&self) -> StorageOptions {
        self.options.clone()
    }

    /// Opens a storage on this case's table, migrated to head. Panics if that fails.
    pub async fn storage(&self) -> Arc<dyn Storage> {
        self.open(self.options()).await
    }

    /// Opens the database handle with `options`. Panics if that fails.
    pub async fn database(&self, options: StorageOptions) -> Database {
        match self.backend.open_database(options).await {
            Ok(db) => db,
            Err(err) => panic!("{}: open failed: {err}", self.backend.name()),
        }
    }

    /// Opens a storage with `options`. Panics if that fails.
    pub async fn open(&self, options: StorageOptions) -> Arc<dyn Storage> {
        match self.backend.open(options).await {
            Ok(storage) => storage,
            Err(err) => panic!("{}: open failed: {err}", self.backend.name()),
        }
    }

    /// Opens a storage for whole-table operations on this case's table. Panics if that
    /// fails.
    pub async fn inspect(&self) -> Arc<dyn Inspect> {
        match self.backend.open_inspect(self.options()).await {
            Ok(storage) => storage,
            Err(err) => panic!("{}: open_inspect failed: {err}", self.backend.name()),
        }
    }

    /// A migrator on this case's table with the built-in migrations. Panics if that fails.
    pub async fn migrator(&self) -> Arc<dyn Migrator> {
        self.migrator_with(None).await
    }

    /// A migrator running `sources` instead of the built-in migrations when given.
    pub async fn migrator_with(&self, sources: Option<Vec<MigrationSource>>) -> Arc<dyn Migrator> {
        let mut options = self.options();
        if let Some(sources) = sources {
            options = options.migrations(sources);
        }
        match self.backend.migrator(options).await {
            Ok(migrator) => migrator,
            Err(err) => panic!("{}: migrator failed: {err}", self.backend.name()),
        }
    }
}
