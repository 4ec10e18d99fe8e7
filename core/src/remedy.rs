//! [`Remedy`]: what fixes a schema problem, as facts. A library caller reads them typed;
//! a tool renders them as its own command (the CLI as its `migrate` commands, with the
//! user's own URL, table and version table).

use std::fmt;

use crate::table_name::DEFAULT_VERSION_TABLE;

/// What fixes a schema problem. Carried by [`Error::SchemaOutdated`](crate::Error::SchemaOutdated)
/// and [`Error::MigrationDirty`](crate::Error::MigrationDirty); shown in their messages in
/// words, never as a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Remedy {
    /// Run the migrations of `table` up to version `to` (the latest when `None`).
    Upgrade {
        /// The FSM table.
        table: String,
        /// Its version table.
        version_table: String,
        /// The version to reach; `None`: the latest this code knows.
        to: Option<i64>,
    },
    /// Record `version` as the applied version of `table` without running anything (after
    /// completing or undoing a half-applied migration by hand).
    Stamp {
        /// The FSM table.
        table: String,
        /// Its version table.
        version_table: String,
        /// The version to record.
        version: i64,
    },
}

impl Remedy {
    /// Upgrading `table` (version table: the default until
    /// [`Remedy::with_version_table`]).
    pub fn upgrade(table: &str, to: Option<i64>) -> Remedy {
        Remedy::Upgrade {
            table: table.to_owned(),
            version_table: DEFAULT_VERSION_TABLE.to_owned(),
            to,
        }
    }

    /// Stamping `table` at `version`.
    pub fn stamp(table: &str, version: i64) -> Remedy {
        Remedy::Stamp {
            table: table.to_owned(),
            version_table: DEFAULT_VERSION_TABLE.to_owned(),
            version,
        }
    }

    /// The same remedy on `version_table`.
    #[must_use]
    pub fn with_version_table(self, version_table: &str) -> Remedy {
        match self {
            Remedy::Upgrade { table, to, .. } => Remedy::Upgrade {
                table,
                version_table: version_table.to_owned(),
                to,
            },
            Remedy::Stamp { table, version, .. } => Remedy::Stamp {
                table,
                version_table: version_table.to_owned(),
                version,
            },
        }
    }

    /// The FSM table it is about.
    pub fn table(&self) -> &str {
        match self {
            Remedy::Upgrade { table, .. } | Remedy::Stamp { table, .. } => table,
        }
    }

    /// The version table it is about.
    pub fn version_table(&self) -> &str {
        match self {
            Remedy::Upgrade { version_table, .. } | Remedy::Stamp { version_table, .. } => {
                version_table
            }
        }
    }
}

impl fmt::Display for Remedy {
    /// In words: "upgrade table forms to the latest schema version", "record version 3 as
    /// applied to table forms (a stamp: nothing is run)", with the version table when it
    /// is not the default.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Remedy::Upgrade {
                table, to: None, ..
            } => write!(f, "upgrade table {table} to the latest schema version")?,
            Remedy::Upgrade {
                table,
                to: Some(to),
                ..
            } => write!(f, "upgrade table {table} to schema version {to}")?,
            Remedy::Stamp { table, version, .. } => write!(
                f,
                "record version {version} as applied to table {table} (a stamp: nothing is run)"
            )?,
        }
        if self.version_table() != DEFAULT_VERSION_TABLE {
            write!(f, " in version table {}", self.version_table())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remedies_read_as_words_with_their_tables() {
        assert_eq!(
            Remedy::upgrade("forms", None).to_string(),
            "upgrade table forms to the latest schema version"
        );
        assert_eq!(
            Remedy::upgrade("forms", Some(1))
                .with_version_table("v_custom")
                .to_string(),
            "upgrade table forms to schema version 1 in version table v_custom"
        );
        let stamp = Remedy::stamp("forms", 3).with_version_table("v_custom");
        assert_eq!(
            (stamp.table(), stamp.version_table()),
            ("forms", "v_custom")
        );
        assert!(stamp.to_string().starts_with("record version 3 as applied"));
        assert!(!stamp.to_string().contains("fsmstore"));
    }
}
