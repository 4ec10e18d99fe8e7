//! Where the server is and how to connect: [`MysqlConfig`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use fsmstore_core::{query_string, DatabaseUrl, Error, Result, StorageOptions, MAX_DURATION};
use log::LevelFilter;

/// The URL parameters only this backend reads.
const MYSQL_PARAMETERS: [&str; 3] = ["lock_timeout", "lock_timeout_s", "hosts"];

/// How long waiting for a connection may take when there are other hosts to fail over to
/// (unless `connect_timeout_ms` is shorter): a dead node is left after this.
const FAILOVER_WAIT: Duration = Duration::from_secs(2);
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::ConnectOptions;

use crate::error::{from_connect, from_sqlx};

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
/// assert_eq!(config.options.pool_max, 4);
/// assert_eq!(config.options.table.as_str(), "dev_fsm");
/// assert!(!format!("{config} {config:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct MysqlConfig {
    /// Host, port, user, password, database, TLS: sqlx's connection settings.
    pub connect: MySqlConnectOptions,
    /// How long a migrator waits for the migration lock (`GET_LOCK`). Default 60 s.
    pub lock_timeout: Duration,
    /// More hosts that serve the same database, tried in order after `connect`'s when it
    /// is unreachable (`hosts=db2:3306,db3:3306`): the nodes of a Galera cluster. Every one
    /// must take writes.
    pub failover_hosts: Vec<(String, u16)>,
    /// The options every backend shares (`connect_timeout` bounds both connecting and
    /// waiting for a pooled connection).
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
            .field("lock_timeout", &self.lock_timeout)
            .field("failover_hosts", &self.failover_hosts)
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
            lock_timeout: Duration::from_secs(60),
            failover_hosts: Vec::new(),
            options: StorageOptions::default(),
        }
    }

    /// Parses `mysql://user:password@host:port/database` (also `mariadb://`), with the
    /// shared query parameters
    /// ([`SHARED_URL_PARAMETERS`](fsmstore_core::SHARED_URL_PARAMETERS)), this backend's
    /// `lock_timeout_s` (how long a migrator waits for `GET_LOCK`, default 60), and sqlx's
    /// own: `ssl-mode`, `ssl-ca`, `ssl-cert`, `ssl-key`, `charset`, `collation`, `socket`,
    /// `statement-cache-capacity`, `timezone`. Percent-encode special characters of the
    /// user and password.
    ///
    /// # Errors
    /// [`Error::Config`] for another scheme, an unknown parameter or a bad value, naming
    /// it; [`Error::InvalidTableName`]. Messages never contain the password.
    pub fn from_url(url: &str) -> Result<Self> {
        let mut url = DatabaseUrl::parse(url)?;
        if !matches!(url.scheme(), "mysql" | "mariadb") {
            return Err(Error::Config(format!(
                "not a mysql:// URL (scheme {:?})",
                url.scheme()
            )));
        }
        let driver = url.take_driver(SQLX_PARAMETERS);
        let mut sqlx_url = format!("mysql:{}", url.location());
        if !driver.is_empty() {
            sqlx_url = format!("{sqlx_url}?{}", query_string(&driver));
        }
        // sqlx's messages name the problem, not the URL, so they carry no password.
        let connect = MySqlConnectOptions::from_str(&sqlx_url)
            .map_err(|err| Error::Config(format!("invalid mysql:// URL: {err}")))?;
        let mut config = Self::new(connect);
        if let Some(timeout) = url.take_duration(
            "lock_timeout",
            Some(("lock_timeout_s", Duration::from_secs(1))),
            MAX_DURATION,
        )? {
            config.lock_timeout = timeout;
        }
        if let Some(hosts) = url.take("hosts") {
            config.failover_hosts = parse_hosts(&hosts)?;
        }
        let mut known = MYSQL_PARAMETERS.to_vec();
        known.extend(SQLX_PARAMETERS);
        config.options = url.finish("mysql", &known)?;
        Ok(config)
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

    /// The connection settings of every host: `connect`'s first, then the failover hosts.
    ///
    /// sqlx logs the text of every statement (at DEBUG, and at WARN past 1 s): a coalesced
    /// batch's text holds its values (`script.rs`), a chat's state and data, so statements
    /// are logged at TRACE only, where a reader asked for everything.
    pub(crate) fn host_options(&self) -> Vec<MySqlConnectOptions> {
        let quiet = |options: MySqlConnectOptions| {
            options
                .log_statements(LevelFilter::Trace)
                .log_slow_statements(LevelFilter::Trace, Duration::from_secs(1))
        };
        let mut all = vec![quiet(self.connect.clone())];
        for (host, port) in &self.failover_hosts {
            all.push(quiet(self.connect.clone().host(host).port(*port)));
        }
        all
    }

    /// How long waiting for a pooled connection may take: the connect timeout, shorter
    /// when there is another host to fail over to.
    pub(crate) fn acquire_timeout(&self) -> Duration {
        if self.failover_hosts.is_empty() {
            self.options.connect_timeout
        } else {
            self.options.connect_timeout.min(FAILOVER_WAIT)
        }
    }

    /// A pool that connects on first use, to `connect` (the lock pool of
    /// [`Database::isolation`](fsmstore_core::Database::isolation), on the storage's host).
    pub(crate) fn lazy_pool(&self, max: u32, connect: MySqlConnectOptions) -> MySqlPool {
        MySqlPoolOptions::new()
            .max_connections(max.max(1))
            .min_connections(0)
            .acquire_timeout(self.acquire_timeout())
            .connect_lazy_with(connect)
    }

    /// One connection to the first host that answers, and that host's index
    /// ([`MysqlConfig::host_options`]).
    ///
    /// # Errors
    /// The last host's error when none answers.
    pub(crate) async fn connect_any(&self) -> Result<(sqlx::mysql::MySqlConnection, usize)> {
        let mut last = None;
        for (index, options) in self.host_options().iter().enumerate() {
            let attempt = tokio::time::timeout(
                self.options.connect_timeout,
                <sqlx::mysql::MySqlConnection as sqlx::Connection>::connect_with(options),
            )
            .await;
            match attempt {
                Ok(Ok(conn)) => return Ok((conn, index)),
                Ok(Err(err)) => last = Some(from_connect(err)),
                Err(_) => {
                    last = Some(Error::connection(
                        format!(
                            "no answer from MySQL at {}:{} within {:?} (connect_timeout_ms)",
                            options.get_host(),
                            options.get_port(),
                            self.options.connect_timeout
                        ),
                        None,
                    ));
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::connection("no MySQL host", None)))
    }

    /// Opens a pool of at most `max` connections on the first host that answers, and that
    /// host's index. One direct connection first: a refused or failed connect then says why
    /// at once (sqlx's pool retries until its timeout and reports only "pool timed out").
    pub(crate) async fn pool_on_any(&self, max: u32) -> Result<(MySqlPool, usize)> {
        let (probe, index) = self.connect_any().await?;
        sqlx::Connection::close(probe).await.ok();
        let pool = MySqlPoolOptions::new()
            .max_connections(max.max(1))
            .min_connections(0)
            .acquire_timeout(self.acquire_timeout())
            // Released connections are pinged by sqlx anyway; a connection that died while
            // idle costs one failed attempt, which the storage retries on another one.
            .test_before_acquire(false)
            .connect_with(self.host_options()[index].clone())
            .await
            .map_err(from_sqlx)?;
        Ok((pool, index))
    }
}

/// Parses `hosts=db2:3306,db3:3306`: every entry is `host:port` (`[::1]:3306` for IPv6);
/// an empty list, an empty entry or an entry without a port is refused, never skipped or
/// given a port it did not name.
fn parse_hosts(hosts: &str) -> Result<Vec<(String, u16)>> {
    let bad = |why: &str| {
        Error::Config(format!(
            "URL parameter hosts={hosts:?}: {why}; write hosts=db2:3306,db3:3306"
        ))
    };
    if hosts.is_empty() {
        return Err(bad("the list is empty"));
    }
    hosts
        .split(',')
        .map(|entry| {
            if entry.is_empty() {
                return Err(bad("an entry is empty"));
            }
            let (name, port) = entry
                .rsplit_once(':')
                .ok_or_else(|| bad(&format!("{entry:?} has no port")))?;
            let port: u16 = port
                .parse()
                .ok()
                .filter(|port| *port > 0)
                .ok_or_else(|| bad(&format!("{entry:?} has no valid port")))?;
            let name = name
                .strip_prefix('[')
                .and_then(|name| name.strip_suffix(']'))
                .unwrap_or(name);
            if name.is_empty() || (name.contains(':') && !entry.starts_with('[')) {
                return Err(bad(&format!("{entry:?} has no valid host")));
            }
            Ok((name.to_owned(), port))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch's statement text holds chats' states and data: sqlx logs statements at
    /// TRACE only, on every host (its defaults are DEBUG, and WARN past 1 s).
    #[test]
    fn statements_are_logged_at_trace_only() {
        let config =
            MysqlConfig::from_url("mysql://bot@db:3306/bots?hosts=db2:3306,db3:3306").unwrap();
        let hosts = config.host_options();
        assert_eq!(hosts.len(), 3);
        for host in hosts {
            let debug = format!("{host:?}");
            assert!(debug.contains("statements_level: Trace"), "{debug}");
            assert!(debug.contains("slow_statements_level: Trace"), "{debug}");
        }
    }

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
        assert_eq!(config.options.pool_max, 3);
        assert_eq!(config.options.connect_timeout, Duration::from_millis(250));
        assert_eq!(config.lock_timeout, Duration::from_secs(5));
        assert_eq!(config.options.schema, fsmstore_core::SchemaPolicy::Upgrade);
        let maria = MysqlConfig::from_url("mariadb://root@127.0.0.1/test").unwrap();
        assert_eq!(maria.connect.get_port(), 3306);
        assert_eq!(maria.options.pool_max, 10);
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
    fn host_lists_name_every_port_and_refuse_empty_entries() {
        let config = MysqlConfig::from_url(
            "mysql://root@n1:3306/test?hosts=n2:3307,[::1]:3308,10.0.0.4:3309",
        )
        .unwrap();
        assert_eq!(
            config.failover_hosts,
            vec![
                ("n2".to_owned(), 3307),
                ("::1".to_owned(), 3308),
                ("10.0.0.4".to_owned(), 3309)
            ]
        );
        // Each was accepted once: an empty list, empty entries, a host whose port the URL
        // did not name.
        for hosts in [
            "", ",,", "n2:3307,", "n2", ":3307", "n2:0", "n2:x", "::1:3306",
        ] {
            let err =
                MysqlConfig::from_url(&format!("mysql://root@n1/test?hosts={hosts}")).unwrap_err();
            assert!(
                matches!(&err, Error::Config(text) if text.contains("hosts")),
                "{hosts:?}: {err}"
            );
        }
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
