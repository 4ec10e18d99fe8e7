//! The migration list: per-dialect `up` and `down` SQL for the FSM table, embedded in the
//! binary.
//!
//! The chain starts from the seed layout of `aiogram-sqlalchemy-storage`
//! (`id VARCHAR(255) PRIMARY KEY, state VARCHAR NULL, data VARCHAR NULL`), so a table made
//! by the Python library can be adopted: `stamp` version 1, then upgrade.
//!
//! | version | what it does |
//! |---|---|
//! | 1 | the seed layout |
//! | 2 | data becomes the dialect's JSON type, `NOT NULL DEFAULT '{}'`, objects only; `''`/`NULL` become `{}`; rows holding nothing are dropped |
//! | 3 | `updated_at`, indexed (for purge and TTL) |
//!
//! SQL templates use `{table}`, `{table_new}`, `{updated_at_idx}` and `{data_check}`,
//! replaced by validated, quoted names. A statement ends with `;` at the end of a line.

use std::borrow::Cow;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::table_name::TableName;

/// The `up` and `down` SQL templates of one migration in one dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// Applies the migration.
    pub up: Cow<'static, str>,
    /// Reverts it.
    pub down: Cow<'static, str>,
}

/// One row of the version table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    /// The migration's version.
    pub version: i64,
    /// Its description when it ran.
    pub description: String,
    /// When it ran, unix milliseconds.
    pub installed_on_ms: i64,
    /// `false` while it runs, or when it stopped half-way (MySQL): the migration is dirty.
    pub success: bool,
    /// The checksum of the SQL that ran.
    pub checksum: String,
    /// How long it took.
    pub execution_time_ms: i64,
}

/// One migration, for every dialect, before table names are filled in.
///
/// `#[non_exhaustive]`, its scripts kept by dialect: a dialect added to fsmstore adds no
/// field, so custom migrations keep compiling (one without a script for the dialect in
/// use is refused when rendered, naming both).
///
/// ```
/// use fsmstore_core::{migrations::{builtin, Script}, Dialect, MigrationSource};
/// let mut sources = builtin();
/// let script = Script { up: "ALTER TABLE {table} ADD COLUMN note TEXT;".into(), down: "ALTER TABLE {table} DROP COLUMN note;".into() };
/// sources.push(MigrationSource::new(5, "a note column").with_script(Dialect::Postgres, script));
/// assert!(sources[4].script(Dialect::Postgres).is_some());
/// assert!(sources[4].script(Dialect::Sqlite).is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationSource {
    /// 1, 2, 3, …: contiguous.
    pub version: i64,
    /// What it does, in a few words.
    pub description: Cow<'static, str>,
    /// Its script per dialect.
    scripts: Vec<(Dialect, Script)>,
}

impl MigrationSource {
    /// Migration `version`, described as `description`, with no script yet.
    pub fn new(version: i64, description: impl Into<Cow<'static, str>>) -> Self {
        MigrationSource {
            version,
            description: description.into(),
            scripts: Vec::new(),
        }
    }

    /// The same migration with `script` for `dialect` (replacing one it had).
    #[must_use]
    pub fn with_script(mut self, dialect: Dialect, script: Script) -> Self {
        self.scripts.retain(|(d, _)| *d != dialect);
        self.scripts.push((dialect, script));
        self
    }

    /// The same migration with `script` for every dialect fsmstore has.
    #[must_use]
    pub fn with_script_everywhere(self, script: &Script) -> Self {
        Dialect::ALL.iter().fold(self, |source, dialect| {
            source.with_script(*dialect, script.clone())
        })
    }

    /// The script of `dialect`, if it has one.
    pub fn script(&self, dialect: Dialect) -> Option<&Script> {
        self.scripts
            .iter()
            .find(|(d, _)| *d == dialect)
            .map(|(_, script)| script)
    }

    /// The script of `dialect`, to edit (tests build failing or drifted migrations this way).
    pub fn script_mut(&mut self, dialect: Dialect) -> Option<&mut Script> {
        self.scripts
            .iter_mut()
            .find(|(d, _)| *d == dialect)
            .map(|(_, script)| script)
    }
}

macro_rules! script {
    ($dialect:literal, $name:literal) => {
        Script {
            up: Cow::Borrowed(include_str!(concat!(
                "../migrations/",
                $dialect,
                "/",
                $name,
                ".up.sql"
            ))),
            down: Cow::Borrowed(include_str!(concat!(
                "../migrations/",
                $dialect,
                "/",
                $name,
                ".down.sql"
            ))),
        }
    };
}

macro_rules! migration {
    ($version:literal, $name:literal, $description:literal) => {
        MigrationSource::new($version, $description)
            .with_script(Dialect::Sqlite, script!("sqlite", $name))
            .with_script(Dialect::Postgres, script!("postgres", $name))
            .with_script(Dialect::Mysql, script!("mysql", $name))
    };
}

/// fsmstore's own migrations, oldest first.
pub fn builtin() -> Vec<MigrationSource> {
    vec![
        migration!(
            1,
            "0001_seed_layout",
            "seed layout (aiogram-sqlalchemy-storage)"
        ),
        migration!(2, "0002_json_data", "data as a JSON object, not null"),
        migration!(3, "0003_updated_at", "updated_at column, indexed"),
        migration!(4, "0004_exact_ids", "row ids compare byte for byte"),
    ]
}

/// One migration rendered for a dialect and a table: ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Its version.
    pub version: i64,
    /// Its description.
    pub description: String,
    /// The `up` SQL text, as rendered (comments included).
    pub up_sql: String,
    /// The `down` SQL text, as rendered.
    pub down_sql: String,
    /// The `up` statements, in order.
    pub up: Vec<String>,
    /// The `down` statements, in order.
    pub down: Vec<String>,
    /// SHA-256 (hex) of the `up` SQL with `\r` and a leading BOM removed.
    pub checksum: String,
}

/// The migrations of one FSM table in one dialect, in version order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationSet {
    /// `None`: the migrations of a keyspace that has no SQL (Redis' layouts).
    dialect: Option<Dialect>,
    table: TableName,
    migrations: Vec<Migration>,
}

impl MigrationSet {
    /// fsmstore's own migrations for `table` in `dialect`.
    pub fn builtin(dialect: Dialect, table: &TableName) -> Self {
        Self::render(&builtin(), dialect, table)
            .expect("invariant: the built-in list is contiguous from 1 (unit-tested)")
    }

    /// Renders `sources` for `table` in `dialect`.
    ///
    /// # Errors
    /// [`Error::Migration`] when the versions are not 1, 2, 3, … in order.
    pub fn render(
        sources: &[MigrationSource],
        dialect: Dialect,
        table: &TableName,
    ) -> Result<Self> {
        let names = TemplateNames::new(dialect, table);
        let mut migrations = Vec::with_capacity(sources.len());
        for (index, source) in sources.iter().enumerate() {
            let expected = index as i64 + 1;
            if source.version != expected {
                return Err(Error::Migration(format!(
                    "migration versions must be 1, 2, 3, … in order: found {} where {expected} belongs",
                    source.version
                )));
            }
            let script = source.script(dialect).ok_or_else(|| {
                Error::Migration(format!(
                    "migration {} ({}) has no {dialect} script",
                    source.version, source.description
                ))
            })?;
            let up_sql = names.fill(&script.up);
            let down_sql = names.fill(&script.down);
            migrations.push(Migration {
                version: source.version,
                description: source.description.to_string(),
                up: split_statements(&up_sql),
                down: split_statements(&down_sql),
                checksum: checksum(&up_sql),
                up_sql,
                down_sql,
            });
        }
        Ok(MigrationSet {
            dialect: Some(dialect),
            table: table.clone(),
            migrations,
        })
    }

    /// The migrations of a store without SQL (Redis: moves between key layouts), made by
    /// its backend: `up`/`down` hold a description of what each step does, the checksum
    /// is of that text.
    ///
    /// # Errors
    /// [`Error::Migration`] when the versions are not 1, 2, 3, … in order.
    pub fn keyspace(table: &TableName, migrations: Vec<Migration>) -> Result<Self> {
        for (index, migration) in migrations.iter().enumerate() {
            if migration.version != index as i64 + 1 {
                return Err(Error::Migration(format!(
                    "migration versions must be 1, 2, 3, … in order: found {} where {} belongs",
                    migration.version,
                    index + 1
                )));
            }
        }
        Ok(MigrationSet {
            dialect: None,
            table: table.clone(),
            migrations,
        })
    }

    /// The SQL dialect (`None`: a keyspace's migrations, see [`MigrationSet::keyspace`]).
    pub fn dialect(&self) -> Option<Dialect> {
        self.dialect
    }

    /// The FSM table.
    pub fn table(&self) -> &TableName {
        &self.table
    }

    /// The newest version (0 for an empty set).
    pub fn head(&self) -> i64 {
        self.migrations.len() as i64
    }

    /// Migration `version`, if known.
    pub fn get(&self, version: i64) -> Option<&Migration> {
        usize::try_from(version - 1)
            .ok()
            .and_then(|index| self.migrations.get(index))
    }

    /// Every migration, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Migration> {
        self.migrations.iter()
    }
}

/// The set a backend runs: the one in its options, rendered, or the built-in one.
pub fn resolve(
    sources: Option<&Arc<Vec<MigrationSource>>>,
    dialect: Dialect,
    table: &TableName,
) -> Result<MigrationSet> {
    match sources {
        Some(sources) => MigrationSet::render(sources, dialect, table),
        None => Ok(MigrationSet::builtin(dialect, table)),
    }
}

struct TemplateNames {
    table: String,
    table_new: String,
    updated_at_idx: String,
    data_check: String,
}

impl TemplateNames {
    fn new(dialect: Dialect, table: &TableName) -> Self {
        TemplateNames {
            table: table.quoted(dialect),
            table_new: table.derived("fsm_new").quoted(dialect),
            updated_at_idx: table.derived("updated_at_idx").quoted(dialect),
            data_check: table.derived("data_object").quoted(dialect),
        }
    }

    fn fill(&self, template: &str) -> String {
        template
            .replace("{table_new}", &self.table_new)
            .replace("{table}", &self.table)
            .replace("{updated_at_idx}", &self.updated_at_idx)
            .replace("{data_check}", &self.data_check)
    }
}

/// Splits SQL text into statements: comment lines (`--`) are dropped; a statement ends at
/// a line ending with `;`.
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with("--") {
            continue;
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(line.trim_end());
        if trimmed.ends_with(';') {
            let statement = current.trim().trim_end_matches(';').trim_end().to_owned();
            statements.push(statement);
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        statements.push(current.trim().to_owned());
    }
    statements
}

/// SHA-256 (hex) of `sql` with every `\r` and a leading byte-order mark removed, so a CRLF
/// checkout does not look like drift.
pub fn checksum(sql: &str) -> String {
    let normalized = sql
        .strip_prefix('\u{feff}')
        .unwrap_or(sql)
        .replace('\r', "");
    let digest = Sha256::digest(normalized.as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> TableName {
        TableName::new("fsm").unwrap()
    }

    #[test]
    fn builtin_list_is_contiguous_and_renders_for_every_dialect() {
        for dialect in Dialect::ALL {
            let set = MigrationSet::render(&builtin(), dialect, &table()).unwrap();
            assert_eq!(set.head(), 4);
            for migration in set.iter() {
                // A migration may be a no-op in a dialect that needs nothing (4 on SQLite
                // and PostgreSQL): then it says so in a comment.
                for (sql, statements) in [
                    (&migration.up_sql, &migration.up),
                    (&migration.down_sql, &migration.down),
                ] {
                    assert!(
                        !statements.is_empty() || sql.trim_start().starts_with("--"),
                        "{dialect} {}: {sql}",
                        migration.version
                    );
                }
                let all = format!("{}{}", migration.up_sql, migration.down_sql);
                assert!(!all.contains("{table") && !all.contains("_idx}"), "{all}");
            }
        }
    }

    #[test]
    fn seed_layout_matches_the_python_table() {
        let set = MigrationSet::builtin(Dialect::Postgres, &table());
        let seed = &set.get(1).unwrap().up[0];
        assert!(
            seed.contains("id VARCHAR(255) NOT NULL PRIMARY KEY"),
            "{seed}"
        );
        assert!(seed.contains("state VARCHAR NULL") && seed.contains("data VARCHAR NULL"));
    }

    #[test]
    fn checksum_ignores_carriage_returns_and_bom() {
        let unix = "CREATE TABLE t (id INT);\nDROP TABLE t;\n";
        let windows = "\u{feff}CREATE TABLE t (id INT);\r\nDROP TABLE t;\r\n";
        assert_eq!(checksum(unix), checksum(windows));
        assert_ne!(checksum(unix), checksum("CREATE TABLE t (id BIGINT);\n"));
        assert_eq!(checksum(unix).len(), 64);
    }

    #[test]
    fn statements_split_on_line_end_semicolons_and_skip_comments() {
        let sql =
            "-- a comment; with a semicolon;\nCREATE TABLE t (\n  a INT\n);\nUPDATE t SET a = 1;\n";
        assert_eq!(
            split_statements(sql),
            vec![
                "CREATE TABLE t (\n  a INT\n)".to_owned(),
                "UPDATE t SET a = 1".to_owned()
            ]
        );
    }

    #[test]
    fn non_contiguous_versions_are_rejected() {
        let mut sources = builtin();
        sources.remove(1);
        assert!(matches!(
            MigrationSet::render(&sources, Dialect::Sqlite, &table()),
            Err(Error::Migration(_))
        ));
    }

    #[test]
    fn checksums_differ_per_table_and_dialect() {
        let a = MigrationSet::builtin(Dialect::Sqlite, &table());
        let b = MigrationSet::builtin(Dialect::Sqlite, &TableName::new("other").unwrap());
        assert_ne!(a.get(1).unwrap().checksum, b.get(1).unwrap().checksum);
    }

    #[test]
    fn a_custom_migration_without_the_dialects_script_is_refused_by_name() {
        let mut sources = builtin();
        let script = Script {
            up: "SELECT 1;".into(),
            down: "SELECT 1;".into(),
        };
        sources
            .push(MigrationSource::new(5, "postgres only").with_script(Dialect::Postgres, script));
        let table = TableName::new("forms").unwrap();
        assert_eq!(
            MigrationSet::render(&sources, Dialect::Postgres, &table)
                .unwrap()
                .head(),
            5
        );
        let err = MigrationSet::render(&sources, Dialect::Sqlite, &table).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("migration 5") && text.contains("sqlite"),
            "{text}"
        );
    }
}
