//! Validated table names.

use std::fmt;
use std::str::FromStr;

use crate::dialect::Dialect;
use crate::error::{Error, Result};

/// The FSM table's default name (the same as `aiogram-sqlalchemy-storage`'s).
pub const DEFAULT_TABLE: &str = "aiogram_fsm_data";

/// The version table's default name.
pub const DEFAULT_VERSION_TABLE: &str = "fsmstore_migrations";

const MAX_LEN: usize = 63;

/// A table name that is safe to put into SQL: `[A-Za-z_][A-Za-z0-9_]*`, at most 63
/// characters (PostgreSQL's identifier limit; MySQL allows 64).
///
/// ```
/// use fsmstore_core::{Dialect, TableName};
/// let table = TableName::new("dev_fsm").unwrap();
/// assert_eq!(table.quoted(Dialect::Mysql), "`dev_fsm`");
/// assert!(TableName::new("fsm; DROP TABLE users").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TableName(String);

/// The name, quoted (`"fsm"`): what an error message that shows a setting's value prints,
/// never the wrapper (`TableName("fsm")`).
impl fmt::Debug for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl TableName {
    /// Validates `name`.
    ///
    /// # Errors
    /// [`Error::InvalidTableName`] when `name` is empty, too long, or has a character other
    /// than ASCII letters, digits and `_` (or starts with a digit).
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let reason = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > MAX_LEN {
            Some("it is longer than 63 characters")
        } else if name.starts_with(|c: char| c.is_ascii_digit()) {
            Some("it starts with a digit")
        } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            Some("only ASCII letters, digits and '_' are allowed")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidTableName { name, reason }),
            None => Ok(TableName(name)),
        }
    }

    /// The default FSM table, `aiogram_fsm_data`.
    pub fn default_table() -> Self {
        TableName(DEFAULT_TABLE.to_owned())
    }

    /// The default version table, `fsmstore_migrations`.
    pub fn default_version_table() -> Self {
        TableName(DEFAULT_VERSION_TABLE.to_owned())
    }

    /// The bare name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name quoted for `dialect`.
    pub fn quoted(&self, dialect: Dialect) -> String {
        dialect.quote(&self.0)
    }

    /// A name derived from this one (for an index or a temporary table), kept within the
    /// length limit by shortening this name and adding a stable hash.
    pub fn derived(&self, suffix: &str) -> TableName {
        let full = format!("{}_{suffix}", self.0);
        if full.len() <= MAX_LEN {
            return TableName(full);
        }
        let hash = fnv1a(self.0.as_bytes());
        let keep = MAX_LEN - suffix.len() - 10;
        TableName(format!("{}_{hash:08x}_{suffix}", &self.0[..keep]))
    }
}

/// 32-bit FNV-1a: a stable, dependency-free hash for derived names and lock keys.
pub(crate) fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, &byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// 64-bit FNV-1a: for names that must be short but rarely collide (MySQL lock names).
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TableName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        TableName::new(s)
    }
}

impl AsRef<str> for TableName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_identifiers_and_rejects_everything_else() {
        for ok in ["aiogram_fsm_data", "_x", "T1", &"a".repeat(63)] {
            assert!(TableName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1abc",
            "a-b",
            "a b",
            "a\"b",
            "a`b",
            "fsm;drop",
            "é",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(TableName::new(bad), Err(Error::InvalidTableName { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        // From the FNV reference test suite (32-bit FNV-1a).
        assert_eq!(fnv1a(b""), 0x811c_9dc5);
        assert_eq!(fnv1a(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a(b"foobar"), 0xbf9c_f968);
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn as_ref_is_the_name() {
        let name = TableName::new("fsm_data").unwrap();
        let text: &str = name.as_ref();
        assert_eq!(text, "fsm_data");
    }

    #[test]
    fn quoting_per_dialect() {
        let table = TableName::new("fsm").unwrap();
        assert_eq!(table.quoted(Dialect::Sqlite), "\"fsm\"");
        assert_eq!(table.quoted(Dialect::Postgres), "\"fsm\"");
        assert_eq!(table.quoted(Dialect::Mysql), "`fsm`");
    }

    #[test]
    fn debug_shows_the_name_not_the_wrapper() {
        let name = TableName::new("fsm").unwrap();
        assert_eq!(format!("{name:?}"), "\"fsm\"");
    }

    #[test]
    fn derived_names_stay_valid_and_distinct() {
        let short = TableName::new("fsm").unwrap().derived("updated_at_idx");
        assert_eq!(short.as_str(), "fsm_updated_at_idx");
        let a = TableName::new("a".repeat(63))
            .unwrap()
            .derived("updated_at_idx");
        let b = TableName::new(format!("{}b", "a".repeat(62)))
            .unwrap()
            .derived("updated_at_idx");
        assert!(a.as_str().len() <= 63 && b.as_str().len() <= 63);
        assert_ne!(a, b);
        assert!(TableName::new(a.as_str()).is_ok());
    }
}
