//! Connection and pool settings.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use fsmstore_core::{Error, KeyBuilder, Result, SchemaPolicy, StorageOptions, TableName};
use tokio_postgres::config::Host;

/// Settings of a PostgreSQL storage.
///
/// `Debug` and `Display` never show the password.
///
/// ```
/// use fsmstore_postgres::PgConfig;
/// let config = PgConfig::from_url(
///     "postgres://bot:s3cret@db:5432/bots?pool_max=32&search_path=fsm&table=prod_fsm",
/// ).unwrap();
/// assert_eq!(config.pool_max, 32);
/// assert_eq!(config.to_string(), "postgres://bot:***@db:5432/bots");
/// assert!(!format!("{config:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct PgConfig {
    /// The driver's connection settings (host, port, user, password, database, sslmode,
    /// application_name, …).
    pub pg: tokio_postgres::Config,
    /// Most connections in the pool. Default 16.
    pub pool_max: usize,
    /// How long a call waits for a free connection. Default 30 s.
    pub pool_timeout: Duration,
    /// How long connecting may take. Default 5 s.
    pub connect_timeout: Duration,
    /// Server-side `statement_timeout`, if any.
    pub statement_timeout: Option<Duration>,
    /// Server-side `search_path`: the schema that holds the tables. Default: the server's.
    pub search_path: Option<TableName>,
    /// A PEM file of extra root certificates to trust for TLS (`ssl_root_cert`).
    pub ssl_root_cert: Option<std::path::PathBuf>,
    /// Tables, key layout, schema policy, limits.
    pub options: StorageOptions,
}

impl PgConfig {
    /// Settings for `pg` with the defaults above.
    pub fn new(pg: tokio_postgres::Config) -> Self {
        PgConfig {
            pg,
            pool_max: 16,
            pool_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            statement_timeout: None,
            search_path: None,
            ssl_root_cert: None,
            options: StorageOptions::default(),
        }
    }

    /// Parses `postgres://user:password@host:port/database?…`. fsmstore's own query
    /// parameters are `table`, `version_table`, `pool_max`, `pool_timeout_ms`,
    /// `connect_timeout_ms`, `statement_timeout_ms`, `search_path`, `ssl_root_cert` (a PEM
    /// file of roots to trust besides the Mozilla ones) and `schema` (`verify`, `upgrade`,
    /// `trust`); every other one (`sslmode`, `application_name`, …) goes to tokio-postgres.
    /// `sslmode=require` connects with TLS (the `tls` feature) and verifies the server.
    ///
    /// # Errors
    /// [`Error::Config`] for a malformed URL or parameter (the message never contains the
    /// password); [`Error::InvalidTableName`].
    pub fn from_url(url: &str) -> Result<Self> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(Error::Config("not a postgres:// URL".to_owned()));
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut ours = Vec::new();
        let mut driver = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "table"
                | "version_table"
                | "pool_max"
                | "pool_timeout_ms"
                | "connect_timeout_ms"
                | "statement_timeout_ms"
                | "search_path"
                | "schema"
                | "ssl_root_cert" => ours.push((name, value)),
                _ => driver.push(pair),
            }
        }
        let driver_url = if driver.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", driver.join("&"))
        };
        // tokio-postgres' messages do not echo the URL, but keep only its kind anyway.
        let pg = tokio_postgres::Config::from_str(&driver_url)
            .map_err(|err| Error::Config(format!("invalid postgres URL: {err}")))?;
        let mut config = PgConfig::new(pg);
        for (name, value) in ours {
            config = config.apply_parameter(name, value)?;
        }
        Ok(config)
    }

    fn apply_parameter(mut self, name: &str, value: &str) -> Result<Self> {
        if self.options.set_url_parameter(name, value)? {
            return Ok(self);
        }
        let number = |value: &str| {
            value.parse::<u64>().map_err(|_| {
                Error::Config(format!(
                    "postgres URL parameter {name}={value:?} is not a number"
                ))
            })
        };
        match name {
            "pool_max" => self.pool_max = number(value)?.max(1) as usize,
            "pool_timeout_ms" => self.pool_timeout = Duration::from_millis(number(value)?),
            "connect_timeout_ms" => self.connect_timeout = Duration::from_millis(number(value)?),
            "statement_timeout_ms" => {
                self.statement_timeout = Some(Duration::from_millis(number(value)?));
            }
            "search_path" => self.search_path = Some(TableName::new(value)?),
            "ssl_root_cert" => self.ssl_root_cert = Some(value.into()),
            _ => {}
        }
        Ok(self)
    }

    /// Sets the FSM table.
    ///
    /// # Errors
    /// [`Error::InvalidTableName`].
    pub fn table(mut self, name: &str) -> Result<Self> {
        self.options = self.options.table(name)?;
        Ok(self)
    }

    /// Sets what opening does about the schema.
    pub fn schema(mut self, policy: SchemaPolicy) -> Self {
        self.options.schema = policy;
        self
    }

    /// Sets the key builder.
    pub fn key_builder(mut self, builder: impl KeyBuilder + 'static) -> Self {
        self.options.key_builder = Arc::new(builder);
        self
    }

    /// Sets the pool size.
    pub fn pool_max(mut self, connections: usize) -> Self {
        self.pool_max = connections.max(1);
        self
    }

    /// Sets the server-side statement timeout.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = Some(timeout);
        self
    }

    /// Sets the schema (`search_path`) that holds the tables.
    ///
    /// # Errors
    /// [`Error::InvalidTableName`] for a name that is not a plain identifier.
    pub fn search_path(mut self, schema: &str) -> Result<Self> {
        self.search_path = Some(TableName::new(schema)?);
        Ok(self)
    }

    /// Replaces the shared options.
    pub fn options(mut self, options: StorageOptions) -> Self {
        self.options = options;
        self
    }

    /// The driver config with fsmstore's session settings applied.
    pub(crate) fn driver_config(&self) -> tokio_postgres::Config {
        let mut pg = self.pg.clone();
        pg.connect_timeout(self.connect_timeout);
        let mut session = pg.get_options().unwrap_or_default().to_owned();
        if let Some(schema) = &self.search_path {
            session.push_str(&format!(" -c search_path={schema}"));
        }
        if let Some(timeout) = self.statement_timeout {
            session.push_str(&format!(" -c statement_timeout={}", timeout.as_millis()));
        }
        if !session.trim().is_empty() {
            pg.options(session.trim());
        }
        if pg.get_application_name().is_none() {
            pg.application_name("fsmstore");
        }
        pg
    }
}

impl fmt::Display for PgConfig {
    /// `postgres://user:***@host:port/database`: the password is never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("postgres://")?;
        if let Some(user) = self.pg.get_user() {
            f.write_str(user)?;
            if self.pg.get_password().is_some() {
                f.write_str(":***")?;
            }
            f.write_str("@")?;
        }
        let ports = self.pg.get_ports();
        for (i, host) in self.pg.get_hosts().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match host {
                Host::Tcp(name) => f.write_str(name)?,
                Host::Unix(path) => write!(f, "{}", path.display())?,
            }
            if let Some(port) = ports.get(i).or(ports.first()) {
                write!(f, ":{port}")?;
            }
        }
        write!(f, "/{}", self.pg.get_dbname().unwrap_or_default())
    }
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &self.to_string())
            .field("pool_max", &self.pool_max)
            .field("pool_timeout", &self.pool_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("search_path", &self.search_path)
            .field("options", &self.options)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsmstore_parameters_are_ours_the_rest_go_to_the_driver() {
        let config = PgConfig::from_url(
            "postgres://u:pw@h:6543/db?application_name=bot7&table=t1&schema=upgrade&statement_timeout_ms=1500&search_path=fsm",
        )
        .unwrap();
        assert_eq!(config.options.table.as_str(), "t1");
        assert_eq!(config.options.schema, SchemaPolicy::Upgrade);
        assert_eq!(config.statement_timeout, Some(Duration::from_millis(1500)));
        let driver = config.driver_config();
        assert_eq!(driver.get_application_name(), Some("bot7"));
        assert_eq!(
            driver.get_options(),
            Some("-c search_path=fsm -c statement_timeout=1500")
        );
        assert_eq!(driver.get_ports(), &[6543]);
    }

    #[test]
    fn bad_urls_are_config_errors_without_the_password() {
        for url in [
            "mysql://x",
            "postgres://u:hunter2@h/db?pool_max=many",
            "postgres://u:hunter2@h/db?schema=maybe",
        ] {
            let err = PgConfig::from_url(url).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{url}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        assert!(matches!(
            PgConfig::from_url("postgres://h/db?search_path=a;b"),
            Err(Error::InvalidTableName { .. })
        ));
    }

    #[test]
    fn password_never_shows() {
        let config = PgConfig::from_url("postgres://bot:hunter2@db/bots").unwrap();
        assert_eq!(config.to_string(), "postgres://bot:***@db:5432/bots");
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(!format!("{config:#?}").contains("hunter2"));
    }
}
