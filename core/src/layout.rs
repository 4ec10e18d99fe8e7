//! [`Layout`]: which table layout a storage reads and writes.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::table_name::TableName;

/// The layout of the FSM table a storage reads and writes.
///
/// [`Layout::Fsmstore`] is fsmstore's own (the head of its migrations: data in the dialect's
/// JSON type, `updated_at`). [`Layout::AiogramSqlalchemy`] is the layout the Python library
/// `aiogram-sqlalchemy-storage` creates and uses (schema version 1): `id, state, data` with
/// data as JSON text, `''` or `NULL` for empty. In it a Python bot and a Rust bot share one
/// live table; upgrading it to the latest schema version moves it to fsmstore's layout once the last
/// Python writer has stopped (docs/migrations.md, "Moving a Python bot to Rust").
///
/// What needs `updated_at` is refused in the aiogram layout with
/// [`Error::LayoutLacks`], which names the upgrade: expiry (`ttl`), `purge --older-than`,
/// `purge --expired`, and the ages of `inspect stats` (reported as unknown).
///
/// ```
/// use fsmstore_core::{Layout, StorageOptions};
/// let options = StorageOptions::default().layout(Layout::AiogramSqlalchemy);
/// assert_eq!(options.layout.schema_version(4), 1);
/// assert_eq!("aiogram-sqlalchemy".parse::<Layout>()?, Layout::AiogramSqlalchemy);
/// # Ok::<(), fsmstore_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[non_exhaustive]
pub enum Layout {
    /// fsmstore's own layout, at the head of its migrations.
    #[default]
    Fsmstore,
    /// The layout of Python's `aiogram-sqlalchemy-storage` (schema version 1).
    AiogramSqlalchemy,
}

impl Layout {
    /// The schema version this layout reads and writes, given the head of the migrations.
    pub fn schema_version(self, head: i64) -> i64 {
        match self {
            Layout::Fsmstore => head,
            Layout::AiogramSqlalchemy => 1,
        }
    }

    /// Whether rows have `updated_at` (expiry, purging by age, ages in stats).
    pub fn has_updated_at(self) -> bool {
        self == Layout::Fsmstore
    }

    /// Succeeds when this layout can give `feature`, which needs `updated_at`.
    ///
    /// # Errors
    /// [`Error::LayoutLacks`] naming the feature and the upgrade.
    pub fn require_updated_at(self, feature: &'static str, table: &TableName) -> Result<()> {
        if self.has_updated_at() {
            return Ok(());
        }
        Err(Error::LayoutLacks {
            feature,
            table: table.to_string(),
        })
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Fsmstore => "fsmstore",
            Layout::AiogramSqlalchemy => "aiogram-sqlalchemy",
        })
    }
}

impl FromStr for Layout {
    type Err = Error;

    /// Parses `fsmstore` or `aiogram-sqlalchemy` (the `layout` URL parameter).
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fsmstore" => Ok(Layout::Fsmstore),
            // `aiogram`: aiogram's own storage of the database at hand (aiogram-sqlalchemy-storage's
            // table on SQL, `RedisStorage`'s keys on Redis).
            "aiogram" | "aiogram-sqlalchemy" | "aiogram_sqlalchemy" => {
                Ok(Layout::AiogramSqlalchemy)
            }
            other => Err(Error::Config(format!(
                "layout={other:?}: use fsmstore or aiogram (aiogram-sqlalchemy)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for layout in [Layout::Fsmstore, Layout::AiogramSqlalchemy] {
            assert_eq!(layout.to_string().parse::<Layout>().unwrap(), layout);
        }
        // `aiogram`: aiogram's own storage of the database at hand.
        assert_eq!(
            "aiogram".parse::<Layout>().unwrap(),
            Layout::AiogramSqlalchemy
        );
        let err = "aiogram-redis".parse::<Layout>().unwrap_err();
        assert!(err.to_string().contains("aiogram"), "{err}");
    }

    #[test]
    fn only_the_aiogram_layout_lacks_updated_at() {
        let table = TableName::default_table();
        assert!(Layout::Fsmstore
            .require_updated_at("expiry", &table)
            .is_ok());
        let err = Layout::AiogramSqlalchemy
            .require_updated_at("expiry (ttl)", &table)
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("expiry (ttl)"), "{text}");
        assert!(
            text.contains("upgrade it to the latest schema version"),
            "{text}"
        );
        assert_eq!(err.kind(), crate::ErrorKind::Schema);
    }
}
