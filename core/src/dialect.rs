//! The SQL dialects fsmstore speaks.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A SQL dialect: decides quoting, placeholders and which SQL text a backend runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// SQLite 3.42+ (`unixepoch('subsec')`; bundled with `fsmstore-sqlite`).
    Sqlite,
    /// PostgreSQL 12+.
    Postgres,
    /// MySQL 8 and MariaDB 10.6+.
    Mysql,
}

impl Dialect {
    /// Every dialect, in a stable order.
    pub const ALL: [Dialect; 3] = [Dialect::Sqlite, Dialect::Postgres, Dialect::Mysql];

    /// The dialect's lower-case name (`sqlite`, `postgres`, `mysql`).
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
        }
    }

    /// Quotes an identifier that was already validated (see [`TableName`](crate::TableName)).
    pub(crate) fn quote(self, identifier: &str) -> String {
        match self {
            Dialect::Mysql => format!("`{identifier}`"),
            Dialect::Sqlite | Dialect::Postgres => format!("\"{identifier}\""),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dialect {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "sqlite" | "sqlite3" => Ok(Dialect::Sqlite),
            "postgres" | "postgresql" | "pg" => Ok(Dialect::Postgres),
            "mysql" | "mariadb" => Ok(Dialect::Mysql),
            other => Err(Error::Config(format!(
                "unknown dialect {other:?}: use sqlite, postgres or mysql"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_display_and_parse_back() {
        for dialect in Dialect::ALL {
            assert_eq!(dialect.to_string(), dialect.name());
            assert_eq!(dialect.name().parse::<Dialect>().unwrap(), dialect);
        }
        assert_eq!(
            Dialect::ALL.map(Dialect::name),
            ["sqlite", "postgres", "mysql"]
        );
    }
}
