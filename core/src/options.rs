//! Options every backend shares: tables, key layout, schema policy, limits.

use std::fmt;
use std::sync::Arc;

use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::key::{DefaultKeyBuilder, KeyBuilder, StorageKey, MAX_KEY_BYTES};
use crate::migrations::{self, MigrationSet, MigrationSource};
use crate::table_name::TableName;

/// The largest data object, serialized, that a storage accepts by default: 8 MiB.
pub const DEFAULT_MAX_DATA_BYTES: usize = 8 * 1024 * 1024;

/// What opening a storage does about the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SchemaPolicy {
    /// Refuse a schema that is not at head, with an error naming the command that fixes it.
    #[default]
    Verify,
    /// Upgrade to head first (`ensure_schema`), then open.
    Upgrade,
    /// Check nothing (the caller manages the schema and takes the risk).
    Trust,
}

impl std::str::FromStr for SchemaPolicy {
    type Err = Error;

    /// Parses `verify`, `upgrade` or `trust` (the `schema` URL parameter).
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "verify" => Ok(SchemaPolicy::Verify),
            "upgrade" => Ok(SchemaPolicy::Upgrade),
            "trust" => Ok(SchemaPolicy::Trust),
            other => Err(Error::Config(format!(
                "schema={other:?}: use verify, upgrade or trust"
            ))),
        }
    }
}

/// Options every backend takes, next to its connection settings.
#[derive(Clone)]
#[non_exhaustive]
pub struct StorageOptions {
    /// The FSM table (default `aiogram_fsm_data`).
    pub table: TableName,
    /// The version table (default `fsmstore_migrations`).
    pub version_table: TableName,
    /// Turns keys into row ids (default: aiogram's layout).
    pub key_builder: Arc<dyn KeyBuilder>,
    /// What to do about the schema when opening.
    pub schema: SchemaPolicy,
    /// The largest serialized data object accepted.
    pub max_data_bytes: usize,
    /// Migrations to run instead of the built-in ones (tests and extensions).
    pub migrations: Option<Arc<Vec<MigrationSource>>>,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            table: TableName::default_table(),
            version_table: TableName::default_version_table(),
            key_builder: Arc::new(DefaultKeyBuilder::default()),
            schema: SchemaPolicy::default(),
            max_data_bytes: DEFAULT_MAX_DATA_BYTES,
            migrations: None,
        }
    }
}

impl fmt::Debug for StorageOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageOptions")
            .field("table", &self.table)
            .field("version_table", &self.version_table)
            .field("key_builder", &self.key_builder)
            .field("schema", &self.schema)
            .field("max_data_bytes", &self.max_data_bytes)
            .field("custom_migrations", &self.migrations.is_some())
            .finish()
    }
}

/// The shared URL parameters, for backends' "known parameters" messages.
pub const SHARED_URL_PARAMETERS: [&str; 3] = ["table", "version_table", "schema"];

impl StorageOptions {
    /// Sets the FSM table.
    ///
    /// # Errors
    /// [`Error::InvalidTableName`].
    pub fn table(mut self, name: &str) -> Result<Self> {
        self.table = TableName::new(name)?;
        Ok(self)
    }

    /// Sets the version table.
    ///
    /// # Errors
    /// [`Error::InvalidTableName`].
    pub fn version_table(mut self, name: &str) -> Result<Self> {
        self.version_table = TableName::new(name)?;
        Ok(self)
    }

    /// Applies URL query parameter `name=value` if it is one of the shared ones (`table`,
    /// `version_table`, `schema`); returns whether it was. Backends parse their own
    /// parameters and call this for the rest.
    ///
    /// # Errors
    /// [`Error::InvalidTableName`], or [`Error::Config`] for a bad `schema`.
    pub fn set_url_parameter(&mut self, name: &str, value: &str) -> Result<bool> {
        match name {
            "table" => self.table = TableName::new(value)?,
            "version_table" => self.version_table = TableName::new(value)?,
            "schema" => self.schema = value.parse()?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Sets the key builder.
    pub fn key_builder(mut self, builder: impl KeyBuilder + 'static) -> Self {
        self.key_builder = Arc::new(builder);
        self
    }

    /// Sets the schema policy.
    pub fn schema(mut self, policy: SchemaPolicy) -> Self {
        self.schema = policy;
        self
    }

    /// Sets the data size limit.
    pub fn max_data_bytes(mut self, limit: usize) -> Self {
        self.max_data_bytes = limit;
        self
    }

    /// Runs `sources` instead of the built-in migrations.
    pub fn migrations(mut self, sources: Vec<MigrationSource>) -> Self {
        self.migrations = Some(Arc::new(sources));
        self
    }

    /// The row id of `key`.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] from the key builder, or for an id over 255 characters.
    pub fn row_id(&self, key: &StorageKey) -> Result<String> {
        let id = self.key_builder.build(key)?;
        if id.chars().count() > MAX_KEY_BYTES {
            return Err(Error::InvalidKey(format!(
                "row id is longer than {MAX_KEY_BYTES} characters"
            )));
        }
        Ok(id)
    }

    /// The migrations for `dialect`, rendered for this FSM table.
    ///
    /// # Errors
    /// [`Error::Migration`] for a custom list that is not contiguous.
    pub fn migration_set(&self, dialect: Dialect) -> Result<MigrationSet> {
        migrations::resolve(self.migrations.as_ref(), dialect, &self.table)
    }
}
