//! Where the Redis server is, and how fsmstore names its keys there.

use std::fmt;
use std::time::Duration;

use fsmstore_core::{
    query_string, DatabaseUrl, Error, Layout, Result, SchemaPolicy, StorageOptions, MAX_DURATION,
};

/// The URL parameters only the Redis backend reads.
const REDIS_PARAMETERS: [&str; 5] = [
    "state_ttl",
    "data_ttl",
    "wait_replicas",
    "wait_timeout",
    "lock_timeout",
];

/// How long a write waits for its replicas by default (`wait_timeout`).
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long `migrate` waits for the migration lock by default (`lock_timeout`).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// The parameters the `redis` crate reads itself (passed on as they are).
const DRIVER_PARAMETERS: [&str; 4] = ["protocol", "db", "user", "pass"];

/// Settings a Redis storage would ignore: it has no SQL schema. (`schema=trust`, "check
/// nothing", is what Redis does anyway, so it is accepted: the CLI's commands ask for it.)
pub(crate) const SCHEMA_SETTINGS: [&str; 2] = ["version_table", "migrations"];

/// The driver's client for `url`; its refusal is shown by category only (its detail may
/// quote the URL, password included).
fn open_client(url: &str) -> Result<redis::Client> {
    redis::Client::open(url)
        .map_err(|err| Error::Config(format!("invalid Redis URL ({})", err.category())))
}

/// The parts of a URL location naming several hosts: `//[user:pw@]h1:p1,h2:p2[/path]`.
struct Hosts<'a> {
    /// `user:pw@`, or empty.
    auth: &'a str,
    hosts: Vec<&'a str>,
    /// From the first `/` after the hosts, or empty.
    path: &'a str,
    /// The scheme of each node's own URL: `rediss` for a TLS scheme, else `redis`.
    node_scheme: &'static str,
}

impl<'a> Hosts<'a> {
    fn of(scheme: &str, location: &'a str) -> Self {
        let location = location.strip_prefix("//").unwrap_or(location);
        let (auth, rest) = match location.rfind('@') {
            Some(at) => location.split_at(at + 1),
            None => ("", location),
        };
        let (hosts, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, ""),
        };
        Hosts {
            auth,
            hosts: hosts.split(',').filter(|host| !host.is_empty()).collect(),
            path,
            node_scheme: if scheme.starts_with("rediss") {
                "rediss"
            } else {
                "redis"
            },
        }
    }
}

/// The driver URLs of the seed nodes of a cluster URL: `redis+cluster://[user:pw@]h1:p1,h2:p2`
/// (a cluster has one database: no path but `/` or `/0`).
fn cluster_nodes(scheme: &str, location: &str, driver: &[(String, String)]) -> Result<Vec<String>> {
    let Hosts {
        auth,
        hosts,
        path,
        node_scheme,
    } = Hosts::of(scheme, location);
    if !matches!(path, "" | "/" | "/0") {
        return Err(Error::Config(
            "a Redis Cluster has one database: a redis+cluster URL has no database number"
                .to_owned(),
        ));
    }
    let nodes: Vec<String> = hosts
        .iter()
        .map(|host| format!("{node_scheme}://{auth}{host}{}", query_string(driver)))
        .collect();
    if nodes.is_empty() {
        return Err(Error::Config(
            "a redis+cluster URL names no node".to_owned(),
        ));
    }
    Ok(nodes)
}

/// Where a `redis+sentinel://` URL's sentinels are, and what they watch.
#[derive(Clone)]
pub(crate) struct SentinelTarget {
    /// The sentinels' driver URLs (no credentials: those are the data nodes').
    pub(crate) sentinels: Vec<String>,
    /// The name the sentinels monitor the primary under.
    pub(crate) service: String,
    /// A driver URL holding what a connection to the primary needs besides its address:
    /// credentials, database number, protocol (may hold a password).
    pub(crate) node: String,
}

/// The parts of `redis+sentinel://[user:pw@]s1:p1,s2:p2/service[/db]`.
fn sentinel_target(
    scheme: &str,
    location: &str,
    driver: &[(String, String)],
) -> Result<SentinelTarget> {
    let Hosts {
        auth,
        hosts,
        path,
        node_scheme,
    } = Hosts::of(scheme, location);
    let mut segments = path.trim_start_matches('/').split('/');
    let service = segments.next().unwrap_or_default();
    let db = segments.next().unwrap_or("0");
    if service.is_empty() || segments.next().is_some() {
        return Err(Error::Config(
            "a redis+sentinel URL names the monitored service: redis+sentinel://host:port[,host:port…]/<service>[/<db>]".to_owned(),
        ));
    }
    let db: u32 = db.parse().map_err(|_| {
        Error::Config(format!(
            "the database number of a redis+sentinel URL is a number from 0, not {db:?}"
        ))
    })?;
    let Some(first) = hosts.first() else {
        return Err(Error::Config(
            "a redis+sentinel URL names no sentinel".to_owned(),
        ));
    };
    Ok(SentinelTarget {
        // The address is a placeholder: the sentinels name the primary's.
        node: format!("{node_scheme}://{auth}{first}/{db}{}", query_string(driver)),
        sentinels: hosts
            .iter()
            .map(|host| format!("{node_scheme}://{host}"))
            .collect(),
        service: service.to_owned(),
    })
}

/// Settings of a Redis storage.
///
/// URL forms: `redis://[user:password@]host:port/db`, `rediss://…` (TLS, feature `tls`),
/// `redis+unix:///path/to/redis.sock?db=N`, and Redis Cluster:
/// `redis+cluster://[user:password@]node1:port,node2:port` (seed nodes; the client learns
/// the rest); Redis Sentinel:
/// `redis+sentinel://[user:password@]sentinel1:port,sentinel2:port/<service>[/<db>]` (the
/// sentinels are asked where the primary of `<service>` is, and asked again when it stops
/// taking writes; the credentials are the data nodes'). Query parameters: the shared ones (`table`,
/// `layout`, `ttl`, `call_timeout`, `connect_timeout`, `isolation_timeout`, …), aiogram's
/// `state_ttl`/`data_ttl` (aiogram layout only), and the driver's `protocol`.
///
/// ```
/// use fsmstore_redis::RedisConfig;
/// let config = RedisConfig::from_url("redis://:secret@127.0.0.1:6379/2?layout=aiogram&ttl=30d").unwrap();
/// assert_eq!(config.options.layout, fsmstore_core::Layout::AiogramSqlalchemy);
/// assert!(!format!("{config:?}").contains("secret"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The URL handed to the driver (may hold a password: never shown).
    driver_url: String,
    /// `redis+cluster://`: the seed nodes' driver URLs (may hold a password).
    cluster_nodes: Option<Vec<String>>,
    /// `redis+sentinel://`: the sentinels and the service they watch.
    sentinel: Option<SentinelTarget>,
    /// The URL as it may be shown (password replaced).
    shown: String,
    /// aiogram's `state_ttl`: the state key's expiry (aiogram layout), instead of `ttl`.
    pub state_ttl: Option<Duration>,
    /// aiogram's `data_ttl`: the data key's expiry (aiogram layout), instead of `ttl`.
    pub data_ttl: Option<Duration>,
    /// `wait_replicas`: after each write, `WAIT` for this many replicas to have it (at
    /// most `wait_timeout`); a write fewer replicas confirmed is
    /// [`Error::OutcomeUnknown`]: the primary has it, a failover may lose it.
    pub wait_replicas: u32,
    /// `wait_timeout`: how long a write waits for its replicas (default 1 s).
    pub wait_timeout: Duration,
    /// `lock_timeout`: how long `migrate` waits for the migration lock (default 60 s);
    /// then [`fsmstore_core::Error::MigrationLockTimeout`].
    pub lock_timeout: Duration,
    /// The options every backend shares.
    pub options: StorageOptions,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.shown)
            .field("state_ttl", &self.state_ttl)
            .field("data_ttl", &self.data_ttl)
            .field("wait_replicas", &self.wait_replicas)
            .field("options", &self.options)
            .finish()
    }
}

impl fmt::Display for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl RedisConfig {
    /// Parses a Redis URL (see the type's docs).
    ///
    /// # Errors
    /// [`Error::Config`] for another scheme, a bad or unknown parameter (named), a
    /// setting Redis has no use for (`version_table`, `schema`), or `state_ttl`/`data_ttl`
    /// outside the aiogram layout or beside `ttl`. Messages never show the password.
    pub fn from_url(url: &str) -> Result<Self> {
        let scheme = DatabaseUrl::scheme_of(url)?;
        let mut parsed = match scheme.as_str() {
            "redis" | "rediss" | "valkey" | "valkeys" | "redis+cluster" | "rediss+cluster"
            | "redis+sentinel" | "rediss+sentinel" => DatabaseUrl::parse(url)?,
            // A socket path: no authority to check.
            "redis+unix" | "valkey+unix" | "unix" => DatabaseUrl::parse_file(url)?,
            other => {
                return Err(Error::Config(format!(
                    "not a Redis URL (scheme {other:?}): use redis://, rediss:// or redis+unix://"
                )))
            }
        };
        let state_ttl = parsed.take_duration("state_ttl", None, MAX_DURATION)?;
        let data_ttl = parsed.take_duration("data_ttl", None, MAX_DURATION)?;
        let wait_replicas: u32 = parsed.take_parsed("wait_replicas")?.unwrap_or(0);
        let wait_timeout = parsed
            .take_duration("wait_timeout", None, MAX_DURATION)?
            .unwrap_or(DEFAULT_WAIT_TIMEOUT);
        let lock_timeout = parsed
            .take_duration("lock_timeout", None, MAX_DURATION)?
            .unwrap_or(DEFAULT_LOCK_TIMEOUT);
        let driver = parsed.take_driver(&DRIVER_PARAMETERS);
        let driver_url = format!(
            "{}:{}{}",
            parsed.scheme(),
            parsed.location(),
            query_string(&driver)
        );
        let cluster_nodes = match parsed.scheme() {
            "redis+cluster" | "rediss+cluster" => {
                Some(cluster_nodes(parsed.scheme(), parsed.location(), &driver)?)
            }
            _ => None,
        };
        let sentinel = match parsed.scheme() {
            "redis+sentinel" | "rediss+sentinel" => Some(sentinel_target(
                parsed.scheme(),
                parsed.location(),
                &driver,
            )?),
            _ => None,
        };
        let mut own: Vec<&str> = REDIS_PARAMETERS.to_vec();
        own.extend(DRIVER_PARAMETERS);
        let options = parsed.finish("redis", &own)?;
        // The driver checks what it reads (host, port, database number, protocol) now,
        // not at the first call. Its message is shown without the URL.
        match (&cluster_nodes, &sentinel) {
            (Some(nodes), _) => {
                for node in nodes {
                    open_client(node)?;
                }
            }
            (None, Some(target)) => {
                for node in target.sentinels.iter().chain([&target.node]) {
                    open_client(node)?;
                }
            }
            (None, None) => {
                open_client(&driver_url)?;
            }
        }
        let config = RedisConfig {
            cluster_nodes,
            sentinel,
            shown: DatabaseUrl::redacted(url),
            driver_url,
            state_ttl,
            data_ttl,
            wait_replicas,
            wait_timeout,
            lock_timeout,
            options,
        };
        config.check()?;
        Ok(config)
    }

    /// Joins options set in code with the URL's (see [`StorageOptions::merge`]).
    ///
    /// # Errors
    /// [`Error::Config`] for a setting given differently in both, or one Redis has no use
    /// for.
    pub fn options(mut self, options: StorageOptions) -> Result<Self> {
        self.options = self.options.merge(options)?;
        self.check()?;
        Ok(self)
    }

    /// Checks the settings; `open` calls it too.
    pub(crate) fn check(&self) -> Result<()> {
        self.options.unsupported("redis", &SCHEMA_SETTINGS)?;
        if self.options.given("schema")? && self.options.schema == SchemaPolicy::Upgrade {
            return Err(Error::Config(
                "schema=upgrade on Redis: there is no schema to create; a keyspace changes layout only by `fsmstore migrate up`/`down` (schema=verify checks the recorded layout, trust checks nothing)".to_owned(),
            ));
        }
        self.options.check_limits()?;
        let split_ttl = self.state_ttl.is_some() || self.data_ttl.is_some();
        if split_ttl && self.options.layout != Layout::AiogramSqlalchemy {
            return Err(Error::Config(
                "state_ttl and data_ttl are aiogram's: use them with layout=aiogram, or ttl for one expiry per dialogue".to_owned(),
            ));
        }
        if self.wait_replicas > 0 && self.wait_timeout >= self.options.call_timeout {
            return Err(Error::Config(format!(
                "wait_timeout ({:?}) must be shorter than call_timeout ({:?}): the WAIT is a call",
                self.wait_timeout, self.options.call_timeout
            )));
        }
        if split_ttl && self.options.ttl.is_some() {
            return Err(Error::Config(
                "give either ttl (one expiry per dialogue) or aiogram's state_ttl/data_ttl, not both".to_owned(),
            ));
        }
        for ttl in [self.state_ttl, self.data_ttl, self.options.ttl]
            .into_iter()
            .flatten()
        {
            if ttl.is_zero() {
                return Err(Error::Config("a TTL must be longer than 0".to_owned()));
            }
        }
        Ok(())
    }

    /// The driver's client.
    pub(crate) fn client(&self) -> Result<redis::Client> {
        open_client(&self.driver_url)
    }

    /// The seed nodes of a `redis+cluster://` URL (`None`: one server).
    pub(crate) fn cluster_nodes(&self) -> Option<&[String]> {
        self.cluster_nodes.as_deref()
    }

    /// The sentinels of a `redis+sentinel://` URL (`None`: no sentinel).
    pub(crate) fn sentinel(&self) -> Option<&SentinelTarget> {
        self.sentinel.as_ref()
    }

    /// The prefix of every key: `<table>:` when the table was given, else none in the
    /// aiogram layout (its keys are exactly what the key builder makes, as aiogram's) and
    /// `fsmstore:` in fsmstore's.
    pub(crate) fn prefix(&self) -> String {
        self.prefix_of(self.options.layout)
    }

    /// The prefix of the keys of `layout` (see [`RedisConfig::prefix`]).
    pub(crate) fn prefix_of(&self, layout: Layout) -> String {
        let table_given = self.options.given("table").unwrap_or(false);
        match (table_given, layout) {
            (true, _) => format!("{}:", self.options.table),
            (false, Layout::AiogramSqlalchemy) => String::new(),
            (false, _) => "fsmstore:".to_owned(),
        }
    }
}
