//! Connection and pool settings.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use fsmstore_core::{
    check_duration, query_string, DatabaseUrl, Error, Result, StorageOptions, TableName,
};

/// The longest `statement_timeout` PostgreSQL takes: `i32::MAX` milliseconds.
pub const MAX_STATEMENT_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// The URL parameters only this backend reads.
const POSTGRES_PARAMETERS: [&str; 7] = [
    "statement_timeout",
    "lock_timeout",
    "statement_timeout_ms",
    "search_path",
    "ssl_root_cert",
    "pooler",
    "lock_timeout_s",
];

/// What stands between fsmstore and the server (`pooler` in the URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Pooler {
    /// Nothing, or a pooler in session mode: statements are prepared once per connection,
    /// locks are session-level advisory locks (`pooler=none`, the default).
    #[default]
    None,
    /// A pooler in transaction mode (PgBouncer `pool_mode = transaction`, most hosted
    /// PostgreSQL "pooled" endpoints): each transaction may run on another server
    /// connection, so fsmstore prepares nothing (unnamed statements, `query_typed`: still
    /// one round trip), the migration lock is `pg_advisory_xact_lock` inside each
    /// migration's transaction, and a per-key lock holds a transaction open (which keeps
    /// its server connection) with `pg_advisory_xact_lock` (`pooler=transaction`).
    Transaction,
}

impl Pooler {
    /// Whether statements run unnamed (nothing prepared).
    pub fn unnamed_statements(self) -> bool {
        self == Pooler::Transaction
    }
}

impl FromStr for Pooler {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" | "session" => Ok(Pooler::None),
            "transaction" => Ok(Pooler::Transaction),
            other => Err(Error::Config(format!(
                "pooler={other:?}: use transaction (PgBouncer in transaction mode) or none"
            ))),
        }
    }
}

/// The URL parameters tokio-postgres reads itself (its `connect_timeout` is fsmstore's
/// `connect_timeout_ms`).
const DRIVER_PARAMETERS: [&str; 18] = [
    "user",
    "password",
    "dbname",
    "options",
    "application_name",
    "sslmode",
    "sslnegotiation",
    "host",
    "hostaddr",
    "port",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];
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
/// assert_eq!(config.options.pool_max, 32);
/// assert_eq!(config.to_string(), "postgres://bot:***@db:5432/bots");
/// assert!(!format!("{config:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct PgConfig {
    /// The driver's connection settings (host, port, user, password, database, sslmode,
    /// application_name, …).
    pub pg: tokio_postgres::Config,
    /// Server-side `statement_timeout`, if any.
    pub statement_timeout: Option<Duration>,
    /// Server-side `search_path`: the schema that holds the tables. Default: the server's.
    pub search_path: Option<TableName>,
    /// A PEM file of extra root certificates to trust for TLS (`ssl_root_cert`).
    pub ssl_root_cert: Option<std::path::PathBuf>,
    /// A connection pooler in front of the server (`pooler=transaction` for PgBouncer in
    /// transaction mode).
    pub pooler: Pooler,
    /// How long a migrator waits for the migration lock before
    /// [`Error::MigrationLockTimeout`] naming the holder (`lock_timeout_s`, default 60 s,
    /// as MySQL's).
    pub lock_timeout: Duration,
    /// The options every backend shares (`pool_max` is the pool's size;
    /// `connect_timeout` bounds both connecting and waiting for a pooled connection).
    pub options: StorageOptions,
}

impl PgConfig {
    /// Settings for the server `pg` names, with the defaults for the rest.
    pub fn new(pg: tokio_postgres::Config) -> Self {
        PgConfig {
            pg,
            statement_timeout: None,
            search_path: None,
            ssl_root_cert: None,
            pooler: Pooler::None,
            lock_timeout: Duration::from_secs(60),
            options: StorageOptions::default(),
        }
    }

    /// Parses `postgres://user:password@host:port/database` (also `postgresql://`), with
    /// the shared query parameters
    /// ([`SHARED_URL_PARAMETERS`](fsmstore_core::SHARED_URL_PARAMETERS)), this backend's
    /// `statement_timeout_ms`, `search_path` (the schema holding the tables) and
    /// `ssl_root_cert` (a PEM file), and tokio-postgres' own (`sslmode`,
    /// `application_name`, `options`, `target_session_attrs`, keepalives, …).
    ///
    /// # Errors
    /// [`Error::Config`] for another scheme, an unknown parameter or a bad value, naming
    /// it; [`Error::InvalidTableName`]. Messages never contain the password.
    pub fn from_url(url: &str) -> Result<Self> {
        let mut url = DatabaseUrl::parse(url)?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(Error::Config(format!(
                "not a postgres:// URL (scheme {:?})",
                url.scheme()
            )));
        }
        let driver = url.take_driver(&DRIVER_PARAMETERS);
        let mut driver_url = format!("postgres:{}", url.location());
        if !driver.is_empty() {
            driver_url = format!("{driver_url}?{}", query_string(&driver));
        }
        // tokio-postgres' messages do not echo the URL, but keep only its kind anyway.
        let pg = tokio_postgres::Config::from_str(&driver_url)
            .map_err(|err| Error::Config(format!("invalid postgres URL: {err}")))?;
        if pg.get_hosts().is_empty() && pg.get_hostaddrs().is_empty() {
            return Err(Error::Config(
                "postgres URL without a host: use postgres://user@host:5432/database".to_owned(),
            ));
        }
        let mut config = PgConfig::new(pg);
        config.statement_timeout = url.take_duration(
            "statement_timeout",
            Some(("statement_timeout_ms", Duration::from_millis(1))),
            MAX_STATEMENT_TIMEOUT,
        )?;
        if let Some(schema) = url.take("search_path") {
            config.search_path = Some(TableName::new(schema)?);
        }
        config.ssl_root_cert = url.take("ssl_root_cert").map(Into::into);
        if let Some(timeout) = url.take_duration(
            "lock_timeout",
            Some(("lock_timeout_s", Duration::from_secs(1))),
            MAX_STATEMENT_TIMEOUT,
        )? {
            config.lock_timeout = timeout;
        }
        if let Some(pooler) = url.take("pooler") {
            config.pooler = pooler.parse()?;
        }
        let mut known = POSTGRES_PARAMETERS.to_vec();
        known.extend(DRIVER_PARAMETERS);
        config.options = url.finish("postgres", &known)?;
        Ok(config)
    }

    /// Sets a server-side `statement_timeout` for every session.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = Some(timeout);
        self
    }

    /// Sets the schema that holds the tables (`search_path`).
    ///
    /// # Errors
    /// [`Error::InvalidTableName`] for a name that is not a plain identifier.
    pub fn search_path(mut self, schema: &str) -> Result<Self> {
        self.search_path = Some(TableName::new(schema)?);
        Ok(self)
    }

    /// Sets how long a migrator waits for the migration lock.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Sets the pooler in front of the server.
    pub fn pooler(mut self, pooler: Pooler) -> Self {
        self.pooler = pooler;
        self
    }

    /// Session settings a transaction pooler can not carry: it does not pass the startup
    /// `options` to the server (PgBouncer refuses them), and a `SET` would stay on one
    /// server connection.
    ///
    /// # Errors
    /// [`Error::Config`] naming the setting and what to do instead.
    pub(crate) fn check_pooler(&self) -> Result<()> {
        if let Some(timeout) = self.statement_timeout {
            check_duration("statement_timeout", timeout, MAX_STATEMENT_TIMEOUT)?;
        }
        check_duration("lock_timeout", self.lock_timeout, MAX_STATEMENT_TIMEOUT)?;
        if self.pooler != Pooler::Transaction {
            return Ok(());
        }
        let refused = if self.search_path.is_some() {
            Some("search_path")
        } else if self.statement_timeout.is_some() {
            Some("statement_timeout_ms")
        } else if self.pg.get_options().is_some() {
            Some("options")
        } else {
            None
        };
        match refused {
            Some(name) => Err(Error::Config(format!(
                "{name} can not pass through a transaction pooler (pooler=transaction): set it on the role instead (`ALTER ROLE … SET …`)"
            ))),
            None => Ok(()),
        }
    }

    /// Joins `options` set in code with those the URL set (see
    /// [`StorageOptions::merge`]).
    ///
    /// # Errors
    /// [`Error::Config`] for a setting the URL and `options` give differently.
    pub fn options(mut self, options: StorageOptions) -> Result<Self> {
        self.options = self.options.merge(options)?;
        Ok(self)
    }

    /// The driver config with fsmstore's session settings applied.
    pub(crate) fn driver_config(&self) -> tokio_postgres::Config {
        let mut pg = self.pg.clone();
        // Each host of a list gets its share of the connect timeout (unless the URL's
        // `connect_timeout`, libpq's per-host seconds, says otherwise): a first host that
        // drops packets is left for the next one within the whole timeout.
        if pg.get_connect_timeout().is_none() {
            let hosts = u32::try_from(pg.get_hosts().len().max(1)).unwrap_or(u32::MAX);
            pg.connect_timeout(self.options.connect_timeout / hosts);
        }
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
            .field("statement_timeout", &self.statement_timeout)
            .field("search_path", &self.search_path)
            .field("pooler", &self.pooler)
            .field("lock_timeout", &self.lock_timeout)
            .field("options", &self.options)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooler_is_read_from_the_url_and_refuses_what_can_not_pass() {
        let config = PgConfig::from_url("postgres://u@h:6432/db?pooler=transaction").unwrap();
        assert_eq!(config.pooler, Pooler::Transaction);
        assert!(config.pooler.unnamed_statements());
        assert!(config.check_pooler().is_ok());
        assert_eq!(
            PgConfig::from_url("postgres://u@h/db").unwrap().pooler,
            Pooler::None
        );
        let err = PgConfig::from_url("postgres://u@h/db?pooler=statement")
            .expect_err("statement mode is refused");
        assert!(err.to_string().contains("pooler=\"statement\""), "{err}");
        for url in [
            "postgres://u@h/db?pooler=transaction&search_path=fsm",
            "postgres://u@h/db?pooler=transaction&statement_timeout_ms=100",
            "postgres://u@h/db?pooler=transaction&options=-c%20work_mem%3D1MB",
        ] {
            let err = PgConfig::from_url(url).unwrap().check_pooler().unwrap_err();
            assert!(err.to_string().contains("ALTER ROLE"), "{url}: {err}");
        }
        // Without a pooler they are session settings, as before.
        assert!(PgConfig::from_url("postgres://u@h/db?search_path=fsm")
            .unwrap()
            .check_pooler()
            .is_ok());
    }

    #[test]
    fn several_hosts_are_tried_in_order() {
        let config = PgConfig::from_url(
            "postgres://bot@db1:5432,db2:5433/bots?target_session_attrs=read-write",
        )
        .unwrap();
        assert_eq!(config.pg.get_hosts().len(), 2);
        assert_eq!(config.pg.get_ports(), [5432, 5433]);
        assert_eq!(config.to_string(), "postgres://bot@db1:5432,db2:5433/bots");
    }

    #[test]
    fn fsmstore_parameters_are_ours_the_rest_go_to_the_driver() {
        let config = PgConfig::from_url(
            "postgres://u:pw@h:6543/db?application_name=bot7&table=t1&schema=upgrade&statement_timeout_ms=1500&search_path=fsm",
        )
        .unwrap();
        assert_eq!(config.options.table.as_str(), "t1");
        assert_eq!(config.options.schema, fsmstore_core::SchemaPolicy::Upgrade);
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
            "postgres://u:hunter2@h/db?bogus=1",
            "postgres://u:hunter2@h/db?pool_timeout_ms=5",
            // PostgreSQL's statement_timeout is an i32 of milliseconds.
            "postgres://u:hunter2@h/db?statement_timeout_ms=2147483648",
            "postgres://u:hunter2@h1,,h2/db",
            "postgres://u:hunter2?@h/db",
        ] {
            let err = PgConfig::from_url(url).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{url}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        // `connect_timeout` takes libpq's bare seconds too; each host of a list gets its
        // share of it.
        let config = PgConfig::from_url("postgres://u@h1,h2/db?connect_timeout=3").unwrap();
        assert_eq!(
            config.driver_config().get_connect_timeout(),
            Some(&Duration::from_millis(1500))
        );
        let config = PgConfig::from_url(
            "postgres://u@h/db?statement_timeout=1500ms&lock_timeout=2m&connect_timeout=250ms",
        )
        .unwrap();
        assert_eq!(
            (
                config.statement_timeout,
                config.lock_timeout,
                config.options.connect_timeout
            ),
            (
                Some(Duration::from_millis(1500)),
                Duration::from_secs(120),
                Duration::from_millis(250)
            )
        );
        for url in [
            "postgres://u@h/db?statement_timeout=1s&statement_timeout_ms=1000",
            "postgres://u@h/db?lock_timeout=5",
            "postgres://u@h/db?connect_timeout=1s&connect_timeout_ms=1000",
        ] {
            assert!(
                matches!(PgConfig::from_url(url), Err(Error::Config(_))),
                "{url}"
            );
        }
        let config = PgConfig::from_url("postgres://u@h1,h2/db?connect_timeout_ms=4000").unwrap();
        assert_eq!(
            config.driver_config().get_connect_timeout(),
            Some(&Duration::from_secs(2))
        );
        // An `@` in a driver parameter's value stays in it, and the query is read.
        let config =
            PgConfig::from_url("postgres://u@h/db?application_name=ops@example.com&table=t_at")
                .unwrap();
        assert_eq!(config.pg.get_application_name(), Some("ops@example.com"));
        assert_eq!(config.options.table.as_str(), "t_at");
        assert!(PgConfig::from_url("postgres://h/db")
            .unwrap()
            .statement_timeout(Duration::MAX)
            .check_pooler()
            .is_err());
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
