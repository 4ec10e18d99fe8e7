//! Where the server is and how to connect: [`MysqlConfig`].

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use fsmstore_core::{Error, KeyBuilder, Result, SchemaPolicy, StorageOptions};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};

use crate::error::from_sqlx;

/// Query parameters of a `mysql://` URL that sqlx reads itself (TLS, charset, socket…).
const SQLX_PARAMETERS: &[&str] = &[
    "ssl-mode",
    "sslmode",
    "ssl-ca",
    "sslca",
    "ssl-cert",
    "sslcert",
    "ssl-key",
    "sslkey",
    "charset",
    "collation",
    "statement-cache-capacity",
    "socket",
    "timezone",
    "time-zone",
];

/// Settings of a MySQL / MariaDB storage.
///
/// `Debug` and `Display` never show the password.
///
/// ```
/// use fsmstore_mysql::MysqlConfig;
/// let config = MysqlConfig::from_url(
///     "mysql://bot:s3cret@db.internal:3306/bots?table=dev_fsm&pool_max=4",
/// ).unwrap();
/// assert_eq!(config.pool_max, 4);
/// assert_eq!(config.options.table.as_str(), "dev_fsm");
/// assert!(!format!("{config} {config:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct MysqlConfig {
    /// Host, port, user, password, database, TLS: sqlx's connection settings.
    pub connect: MySqlConnectOptions,
    /// The most connections the storage's pool opens. Default 10.
    pub pool_max: u32,
    /// How long opening a connection, or waiting for a free one, may take. Default 10 s.
    pub connect_timeout: Duration,
    /// How long a migrator waits for the migration lock (`GET_LOCK`). Default 60 s.
    pub lock_timeout: Duration,
    /// Tables, key layout, schema policy, limits.
    pub options: StorageOptions,
}

impl fmt::Debug for MysqlConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // MySqlConnectOptions' own Debug prints the password: list the safe fields only.
        f.debug_struct("MysqlConfig")
            .field("host", &self.connect.get_host())
            .field("port", &self.connect.get_port())
            .field("socket", &self.connect.get_socket())
            .field("username", &self.connect.get_username())
            .field("password", &"<hidden>")
            .field("database", &self.connect.get_database())
            .field("ssl_mode", &self.connect.get_ssl_mode())
            .field("pool_max", &self.pool_max)
            .field("connect_timeout", &self.connect_timeout)
            .field("lock_timeout", &self.lock_timeout)
            .field("options", &self.options)
            .finish()
    }
}

/// `mysql://user:***@host:port/database?table=…&version_table=…` (the password is never
/// shown, not even whether there is one).
impl fmt::Display for MysqlConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.connect;
        let database = c.get_database().unwrap_or("");
        write!(f, "mysql://{}:***@", c.get_username())?;
        match c.get_socket() {
            Some(socket) => write!(f, "localhost/{database}?socket={}&", socket.display())?,
            None => write!(f, "{}:{}/{database}?", c.get_host(), c.get_port())?,
        }
        write!(
            f,
            "table={}&version_table={}",
            self.options.table, self.options.version_table
        )
    }
}

impl MysqlConfig {
    /// Settings for the server `connect` names, with the defaults for the rest.
    pub fn new(connect: MySqlConnectOptions) -> Self {
        MysqlConfig {
            connect,
            pool_max: 10,
            connect_timeout: Duration::from_secs(10),
            lock_timeout: Duration::from_secs(60),
            options: StorageOptions::default(),
        }
    }

    /// Parses `mysql://user:password@host:port/database` (also `mariadb://`), with optional
    /// query parameters `table`, `version_table`, `pool_max` (default 10),
    /// `connect_timeout_ms` (default 10000), `lock_timeout_s` (default 60) and `schema`
    /// (`verify`, `upgrade`, `trust`), plus sqlx's own: `ssl-mode`, `ssl-ca`, `ssl-cert`,
    /// `ssl-key`, `charset`, `collation`, `socket`, `statement-cache-capacity`, `timezone`.
    /// Percent-encode special characters of the user and password.
    ///
    /// # Errors
    /// [`Error::Config`] for another scheme, an unknown or bad parameter;
    /// [`Error::InvalidTableName`]. Messages never contain the password.
    pub fn from_url(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("mysql://")
            .or_else(|| url.strip_prefix("mariadb://"))
            .ok_or_else(|| {
                Error::Config(format!(
                    "not a mysql:// URL (scheme {:?})",
                    url.split(':').next().unwrap_or_default()
                ))
            })?;
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if SQLX_PARAMETERS.contains(&name) {
                theirs.push(pair);
            } else {
                ours.push((name, value));
            }
        }
        let mut sqlx_url = format!("mysql://{location}");
        if !theirs.is_empty() {
            sqlx_url = format!("{sqlx_url}?{}", theirs.join("&"));
        }
        // sqlx's messages name the problem, not the URL, so they carry no password.
        let connect = MySqlConnectOptions::from_str(&sqlx_url)
            .map_err(|err| Error::Config(format!("invalid mysql:// URL: {err}")))?;
        let mut config = Self::new(connect);
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
                    "mysql URL parameter {name}={value:?} is not a number"
                ))
            })
        };
        match name {
            "pool_max" => {
                self.pool_max = u32::try_from(number(value)?)
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| Error::Config(format!("pool_max={value} must be 1 or more")))?;
            }
            "connect_timeout_ms" => self.connect_timeout = Duration::from_millis(number(value)?),
            "lock_timeout_s" => self.lock_timeout = Duration::from_secs(number(value)?),
            other => {
                return Err(Error::Config(format!(
                    "unknown mysql URL parameter {other:?} (known: table, version_table, pool_max, connect_timeout_ms, lock_timeout_s, schema, and sqlx's {})",
                    SQLX_PARAMETERS.join(", ")
                )))
            }
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

    /// Sets the version table.
    ///
    /// # Errors
    /// [`Error::InvalidTableName`].
    pub fn version_table(mut self, name: &str) -> Result<Self> {
        self.options = self.options.version_table(name)?;
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

    /// Sets the pool size (at least 1).
    pub fn pool_max(mut self, max: u32) -> Self {
        self.pool_max = max.max(1);
        self
    }

    /// Sets the connect (and pool wait) timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how long a migrator waits for the migration lock.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Replaces sqlx's connection settings (for TLS files, a socket, …).
    pub fn connect_options(mut self, connect: MySqlConnectOptions) -> Self {
        self.connect = connect;
        self
    }

    /// Replaces the shared options.
    pub fn options(mut self, options: StorageOptions) -> Self {
        self.options = options;
        self
    }

    /// Opens a pool of at most `max` connections and checks that the server answers.
    pub(crate) async fn pool(&self, max: u32) -> Result<MySqlPool> {
        MySqlPoolOptions::new()
            .max_connections(max.max(1))
            .min_connections(0)
            .acquire_timeout(self.connect_timeout)
            // Released connections are pinged by sqlx anyway; a connection that died while
            // idle costs one failed attempt, which the storage retries on another one.
            .test_before_acquire(false)
            .connect_with(self.connect.clone())
            .await
            .map_err(from_sqlx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let config = MysqlConfig::from_url(
            "mysql://bot:pw@db:3307/bots?table=t1&version_table=v1&pool_max=3&connect_timeout_ms=250&lock_timeout_s=5&schema=upgrade&ssl-mode=disabled",
        )
        .unwrap();
        assert_eq!(config.connect.get_host(), "db");
        assert_eq!(config.connect.get_port(), 3307);
        assert_eq!(config.connect.get_username(), "bot");
        assert_eq!(config.connect.get_database(), Some("bots"));
        assert_eq!(config.options.table.as_str(), "t1");
        assert_eq!(config.options.version_table.as_str(), "v1");
        assert_eq!(config.pool_max, 3);
        assert_eq!(config.connect_timeout, Duration::from_millis(250));
        assert_eq!(config.lock_timeout, Duration::from_secs(5));
        assert_eq!(config.options.schema, SchemaPolicy::Upgrade);
        let maria = MysqlConfig::from_url("mariadb://root@127.0.0.1/test").unwrap();
        assert_eq!(maria.connect.get_port(), 3306);
        assert_eq!(maria.pool_max, 10);
    }

    #[test]
    fn bad_urls_are_config_errors() {
        for url in [
            "postgres://x",
            "mysql://h/db?nope=1",
            "mysql://h/db?pool_max=x",
            "mysql://h/db?pool_max=0",
            "mysql://h/db?schema=maybe",
            "mysql://h:notaport/db",
        ] {
            assert!(
                matches!(MysqlConfig::from_url(url), Err(Error::Config(_))),
                "{url}"
            );
        }
        assert!(matches!(
            MysqlConfig::from_url("mysql://h/db?table=bad-name"),
            Err(Error::InvalidTableName { .. })
        ));
    }

    #[test]
    fn password_is_never_shown() {
        let secret = "pa%24%24w0rd-XYZZY";
        let config =
            MysqlConfig::from_url(&format!("mysql://bot:{secret}@db/bots?table=t1")).unwrap();
        let shown = format!("{config} {config:?} {config:#?}");
        assert!(!shown.contains("XYZZY"), "{shown}");
        assert!(
            shown.contains("mysql://bot:***@db:3306/bots?table=t1"),
            "{shown}"
        );
        for url in [
            format!("mysql://bot:{secret}@db/bots?nope=1"),
            format!("mysql://bot:{secret}@db:bad/bots"),
            format!("mysql://bot:{secret}@db/bots?pool_max=x"),
        ] {
            let err = MysqlConfig::from_url(&url).unwrap_err();
            assert!(!format!("{err} {err:?}").contains("XYZZY"), "{err:?}");
        }
    }
}
