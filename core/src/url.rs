//! [`DatabaseUrl`]: a database URL split once, in core, so every backend reads the shared
//! parameters the same way and refuses unknown ones the same way.

use std::str::FromStr;

use crate::error::{Error, Result};
use crate::options::{StorageOptions, SHARED_URL_PARAMETERS};

/// A database URL split into its scheme, its location, the shared options its query sets
/// and the parameters left for the backend.
///
/// A backend takes its own parameters ([`DatabaseUrl::take`]), hands its driver the ones
/// the driver reads ([`DatabaseUrl::take_driver`]), and calls [`DatabaseUrl::finish`],
/// which names any parameter nobody took. Messages name parameters, never the location:
/// it may hold a password.
///
/// ```
/// use fsmstore_core::DatabaseUrl;
/// let mut url = DatabaseUrl::parse("postgres://bot:pw@db/bots?table=t1&search_path=fsm&sslmode=require")?;
/// assert_eq!(url.scheme(), "postgres");
/// assert_eq!(url.options().table.as_str(), "t1");
/// assert_eq!(url.take("search_path").as_deref(), Some("fsm"));
/// assert_eq!(url.take_driver(&["sslmode"]), vec![("sslmode".to_owned(), "require".to_owned())]);
/// let options = url.finish("postgres", &["search_path"])?;
/// assert_eq!(options.table.as_str(), "t1");
/// # Ok::<(), fsmstore_core::Error>(())
/// ```
#[derive(Clone)]
pub struct DatabaseUrl {
    scheme: String,
    location: String,
    options: StorageOptions,
    parameters: Vec<(String, String)>,
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The location may hold a password: show only what is safe.
        f.debug_struct("DatabaseUrl")
            .field("scheme", &self.scheme)
            .field("options", &self.options)
            .field(
                "parameters",
                &self.parameters.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl DatabaseUrl {
    /// Parses a server URL, `scheme://[user[:password]@]host[:port][,host[:port]…][/path][?query]`.
    ///
    /// The split follows RFC 3986, as every URL parser does: the query starts at the first
    /// `?`, so an `@` or a `/` in a query value stays in that value. The user info and
    /// each host of the (comma-separated) host list are checked by the `url` crate, so a
    /// reserved character left unencoded in a password (`?`, `#`, `/`, `@`) is refused
    /// instead of splitting the URL somewhere else. Query names and values are
    /// percent-decoded (`%40` is `@`; a `+` stays a `+`, as libpq reads it); the shared parameters
    /// ([`SHARED_URL_PARAMETERS`]) are applied to a default [`StorageOptions`].
    ///
    /// # Errors
    /// [`Error::Config`] for a URL without a scheme, an authority the `url` crate refuses,
    /// an empty host in a host list, a fragment (`#`), a parameter given twice, or a
    /// shared parameter with a bad value (naming it); [`Error::InvalidTableName`].
    /// Messages never contain the location: it may hold a password.
    pub fn parse(url: &str) -> Result<Self> {
        let (scheme, rest) = split_scheme(url)?;
        let (location, query) = split_query(rest)?;
        check_authority(&scheme, location)?;
        Self::with_query(scheme, location, query)
    }

    /// Parses a file URL, `scheme://path`, `scheme:///absolute/path` or `scheme::memory:`,
    /// whose location is a path, not a server: it has no user info, so the query starts
    /// at the first `?`, and the path is percent-decoded (`%3F` for a `?` in a file name,
    /// `%23` for `#`, `%25` for `%`), as sqlx's SQLite URLs are.
    ///
    /// ```
    /// use fsmstore_core::DatabaseUrl;
    /// let url = DatabaseUrl::parse_file("sqlite://data/my%20bot.db?table=t1")?;
    /// assert_eq!(url.file_path()?, "data/my bot.db");
    /// assert_eq!(url.options().table.as_str(), "t1");
    /// # Ok::<(), fsmstore_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`DatabaseUrl::parse`], without the authority check.
    pub fn parse_file(url: &str) -> Result<Self> {
        let (scheme, rest) = split_scheme(url)?;
        let (location, query) = split_query(rest)?;
        Self::with_query(scheme, location, query)
    }

    /// The scheme of `url`, lower case, without parsing the rest.
    ///
    /// # Errors
    /// [`Error::Config`] for a URL without a scheme.
    pub fn scheme_of(url: &str) -> Result<String> {
        split_scheme(url).map(|(scheme, _)| scheme)
    }

    /// The value of query parameter `name` in `url`, decoded, without parsing the rest.
    ///
    /// # Errors
    /// [`Error::Config`] for a URL without a scheme or with a fragment.
    pub fn parameter_of(url: &str, name: &str) -> Result<Option<String>> {
        let (_, rest) = split_scheme(url)?;
        let (_, query) = split_query(rest)?;
        Ok(query_pairs(query)
            .find(|(n, _)| n == name)
            .map(|(_, value)| value))
    }

    /// `url` with query parameter `name` set to `value`, or removed when `value` is
    /// `None`; the location and the other parameters mean what they meant (they are
    /// re-encoded).
    ///
    /// ```
    /// use fsmstore_core::DatabaseUrl;
    /// let url = DatabaseUrl::with_parameter("sqlite://a.db?schema=upgrade&table=t", "schema", None)?;
    /// assert_eq!(url, "sqlite://a.db?table=t");
    /// let url = DatabaseUrl::with_parameter("sqlite://a.db", "mode", Some("ro"))?;
    /// assert_eq!(url, "sqlite://a.db?mode=ro");
    /// # Ok::<(), fsmstore_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] for a URL without a scheme or with a fragment.
    pub fn with_parameter(url: &str, name: &str, value: Option<&str>) -> Result<String> {
        let (scheme, rest) = split_scheme(url)?;
        let (location, query) = split_query(rest)?;
        let mut pairs: Vec<(String, String)> =
            query_pairs(query).filter(|(n, _)| n != name).collect();
        if let Some(value) = value {
            pairs.push((name.to_owned(), value.to_owned()));
        }
        Ok(if pairs.is_empty() {
            format!("{scheme}:{location}")
        } else {
            format!("{scheme}:{location}?{}", query_string(&pairs))
        })
    }

    /// `url` with its passwords replaced by `***`: the one in the user info
    /// (`user:pw@host`) and a `password=` query parameter. Split as [`DatabaseUrl::parse`]
    /// splits (the query starts at the first `?`; the user info is what comes before the
    /// last `@` of the authority), so an `@` in a query value is never taken for the end of
    /// a user info. Text that is not a URL comes back as `***`.
    pub fn redacted(url: &str) -> String {
        let Ok((scheme, rest)) = split_scheme(url) else {
            return "***".to_owned();
        };
        // A URL the parser refuses, or with an `@` in its path, may hold an unencoded `?`,
        // `/` or `@` in its password: then everything before the last `@` is user info,
        // so no part of it shows.
        let (location, query) = rest
            .split_once('?')
            .map_or((rest, None), |(l, q)| (l, Some(q)));
        let at_in_path = location
            .strip_prefix("//")
            .is_some_and(|after| split_authority(after).1.contains('@'));
        if rest.starts_with("//") && (at_in_path || DatabaseUrl::parse(url).is_err()) {
            if let Some(at) = rest.rfind('@') {
                let user_info = &rest[2..at];
                let user = user_info
                    .split_once(':')
                    .map_or(user_info, |(user, _)| user);
                let (location, query) = rest[at..]
                    .split_once('?')
                    .map_or((&rest[at..], None), |(l, q)| (l, Some(q)));
                return with_query_redacted(format!("{scheme}://{user}:***{location}"), query);
            }
        }
        let location = match location.strip_prefix("//") {
            Some(after) => {
                let (authority, path) = split_authority(after);
                let authority = match authority.rsplit_once('@') {
                    Some((user_info, hosts)) => match user_info.split_once(':') {
                        Some((user, _)) => format!("{user}:***@{hosts}"),
                        None => authority.to_owned(),
                    },
                    None => authority.to_owned(),
                };
                format!("//{authority}{path}")
            }
            None => location.to_owned(),
        };
        with_query_redacted(format!("{scheme}:{location}"), query)
    }

    fn with_query(scheme: String, location: &str, query: &str) -> Result<Self> {
        let mut options = StorageOptions::default();
        let mut parameters: Vec<(String, String)> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for (name, value) in query_pairs(query) {
            if seen.contains(&name) {
                return Err(Error::Config(format!(
                    "URL parameter {} is given twice",
                    shown_name(&name)
                )));
            }
            seen.push(name.clone());
            if !options.set_url_parameter(&name, &value)? {
                parameters.push((name, value));
            }
        }
        Ok(DatabaseUrl {
            scheme,
            location: location.to_owned(),
            options,
            parameters,
        })
    }

    /// The location of a file URL as a path: `//` removed, percent-decoded.
    ///
    /// # Errors
    /// [`Error::Config`] for a path that does not decode to UTF-8.
    pub fn file_path(&self) -> Result<String> {
        let path = self.location.strip_prefix("//").unwrap_or(&self.location);
        percent_encoding::percent_decode_str(path)
            .decode_utf8()
            .map(|path| path.into_owned())
            .map_err(|_| {
                Error::Config(format!(
                    "{} URL: the path does not decode to UTF-8",
                    self.scheme
                ))
            })
    }

    /// The scheme, lower case (`sqlite`, `postgres`, `mysql`, …).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Everything between the scheme's `:` and the query (`//user:pw@host/db`,
    /// `//path/to.db`, `:memory:`). May hold a password: never put it in a message.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The shared options the query set.
    pub fn options(&self) -> &StorageOptions {
        &self.options
    }

    /// Removes the backend parameter `name` and returns its value.
    pub fn take(&mut self, name: &str) -> Option<String> {
        let index = self.parameters.iter().position(|(n, _)| n == name)?;
        Some(self.parameters.remove(index).1)
    }

    /// Removes the backend parameter `name` and parses its value.
    ///
    /// # Errors
    /// [`Error::Config`] naming the parameter when the value does not parse.
    pub fn take_parsed<T: FromStr>(&mut self, name: &str) -> Result<Option<T>> {
        match self.take(name) {
            None => Ok(None),
            Some(value) => value.parse().map(Some).map_err(|_| {
                Error::Config(format!(
                    "URL parameter {name}={value:?} is not a valid value"
                ))
            }),
        }
    }

    /// Removes the time parameter `name` (a duration: `500ms`, `5s`, `30d`) and its older
    /// alias (`alias`, a whole number of `unit`: `busy_timeout_ms`, `lock_timeout_s`), and
    /// returns the one given, at most `max`.
    ///
    /// # Errors
    /// [`Error::Config`] naming the parameter for a bad or too long value, or when both
    /// names are given.
    pub fn take_duration(
        &mut self,
        name: &str,
        alias: Option<(&str, std::time::Duration)>,
        max: std::time::Duration,
    ) -> Result<Option<std::time::Duration>> {
        let new = self.take(name);
        let old =
            alias.and_then(|(alias, unit)| self.take(alias).map(|value| (alias, unit, value)));
        let duration = match (new, old) {
            (Some(_), Some((alias, _, _))) => {
                return Err(Error::Config(format!(
                    "URL parameters {name} and {alias} set the same thing: give one"
                )))
            }
            (Some(value), None) => crate::duration::named_duration(name, &value)?,
            (None, Some((alias, unit, value))) => {
                let count: u64 = value
                    .parse()
                    .ok()
                    .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| {
                        Error::Config(format!(
                            "URL parameter {alias}={value:?} is not a whole number"
                        ))
                    })?;
                let nanos = unit.as_nanos().saturating_mul(u128::from(count));
                std::time::Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            }
            (None, None) => return Ok(None),
        };
        crate::duration::check_duration(&format!("URL parameter {name}"), duration, max).map(Some)
    }

    /// Removes every parameter whose name is in `names` (those the driver reads itself)
    /// and returns them in URL order.
    pub fn take_driver(&mut self, names: &[&str]) -> Vec<(String, String)> {
        let (driver, rest) = std::mem::take(&mut self.parameters)
            .into_iter()
            .partition(|(name, _)| names.contains(&name.as_str()));
        self.parameters = rest;
        driver
    }

    /// The shared options, once every backend parameter was taken.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first parameter left, with the known ones
    /// (`SHARED_URL_PARAMETERS` and `own`).
    pub fn finish(self, backend: &str, own: &[&str]) -> Result<StorageOptions> {
        match self.parameters.first() {
            None => Ok(self.options),
            Some((name, _)) => Err(Error::Config(format!(
                "unknown {backend} URL parameter {} (known: {})",
                shown_name(name),
                SHARED_URL_PARAMETERS
                    .iter()
                    .chain(own)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

/// A parameter name as a message shows it: quoted when it looks like a name, withheld
/// when it does not (a `?` left unencoded in a user name starts the query early, and the
/// "name" then holds the password).
fn shown_name(name: &str) -> String {
    let plain = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if plain {
        format!("{name:?}")
    } else {
        "(a name that is not a plain word, not shown: percent-encode a ? in the user name or password as %3F)".to_owned()
    }
}

/// `base` and `query` joined, with every `password=` value (and every value holding an
/// `@`) replaced by `***`, and every
/// pair whose name is not a plain word (a `?` in a user name starts the query early: the
/// "name" then holds the password) replaced whole.
fn with_query_redacted(base: String, query: Option<&str>) -> String {
    let Some(query) = query else {
        return base;
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = decode(name);
            if shown_name(&decoded).starts_with('(') {
                "***".to_owned()
            } else if decoded.eq_ignore_ascii_case("password") || decode(value).contains('@') {
                // A value with an `@` may be the rest of a user info that an unencoded `?`
                // cut short: shown as `***`, the parameter's name kept.
                format!("{name}=***")
            } else {
                pair.to_owned()
            }
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

/// The `name=value` pairs of a query, percent-decoded. A `+` stays a `+`, as libpq and
/// tokio-postgres read it (`options=-c+x`, a password with a `+`): it is not a form.
fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
}

/// `text` percent-decoded (invalid UTF-8 replaced, so a name is still shown).
fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// `scheme` (lower case) and what follows its `:`.
fn split_scheme(url: &str) -> Result<(String, &str)> {
    let (scheme, rest) = url.split_once(':').ok_or_else(no_scheme)?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid {
        return Err(no_scheme());
    }
    Ok((scheme.to_ascii_lowercase(), rest))
}

fn no_scheme() -> Error {
    Error::Config(
        "a database URL starts with its scheme: sqlite://, postgres:// or mysql://".to_owned(),
    )
}

/// The location and the query: the query starts at the first `?` (RFC 3986). A fragment
/// is refused: nothing after a `#` would reach the database, so a `#` left unencoded in a
/// password or a value would silently cut the URL short.
fn split_query(rest: &str) -> Result<(&str, &str)> {
    if rest.contains('#') {
        return Err(Error::Config(
            "a database URL has no fragment: percent-encode a # in a password, path or value as %23"
                .to_owned(),
        ));
    }
    Ok(rest.split_once('?').unwrap_or((rest, "")))
}

/// What follows a location's `//`, split at its path: `(authority, "/path")`.
fn split_authority(after_slashes: &str) -> (&str, &str) {
    after_slashes
        .find('/')
        .map_or((after_slashes, ""), |at| after_slashes.split_at(at))
}

/// Checks the user info and every host of a server URL's authority with the `url` crate.
/// Hosts are checked one by one because a comma-separated list (PostgreSQL's several
/// hosts) is not one URL authority.
fn check_authority(scheme: &str, location: &str) -> Result<()> {
    let Some(after_slashes) = location.strip_prefix("//") else {
        return Err(Error::Config(format!(
            "a {scheme} URL names a server: {scheme}://user@host:port/database"
        )));
    };
    let (authority, _) = split_authority(after_slashes);
    let (user_info, hosts) = match authority.rsplit_once('@') {
        Some((user_info, hosts)) => (Some(user_info), hosts),
        None => (None, authority),
    };
    let invalid = |what: &str| {
        Error::Config(format!(
            "invalid {scheme} URL: {what} (percent-encode @ : / ? # and % in the user name and password)"
        ))
    };
    if let Some(user_info) = user_info {
        if user_info.contains('@') {
            return Err(invalid("an unencoded @ in the user info"));
        }
    }
    // No host (`postgres:///db?host=/run/postgresql`): the driver takes it from the query.
    if hosts.is_empty() {
        if let Some(user_info) = user_info {
            ::url::Url::parse(&format!("{scheme}://{user_info}@x/"))
                .map_err(|err| invalid(&err.to_string()))?;
        }
        return Ok(());
    }
    for host in hosts.split(',') {
        if host.is_empty() {
            return Err(invalid("an empty host in the host list"));
        }
        let candidate = match user_info {
            Some(user_info) => format!("{scheme}://{user_info}@{host}/"),
            None => format!("{scheme}://{host}/"),
        };
        let parsed = ::url::Url::parse(&candidate).map_err(|err| invalid(&err.to_string()))?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(invalid("a port without a host"));
        }
    }
    Ok(())
}

/// The characters a query name or value keeps unencoded: RFC 3986's unreserved ones.
const QUERY_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Joins `driver` parameters into a query string (`a=1&b=2`), percent-encoded, empty when
/// there are none: what [`DatabaseUrl::parse`] decoded goes back to the driver as it was
/// meant.
pub fn query_string(driver: &[(String, String)]) -> String {
    driver
        .iter()
        .map(|(name, value)| {
            format!(
                "{}={}",
                percent_encoding::utf8_percent_encode(name, QUERY_ENCODE),
                percent_encoding::utf8_percent_encode(value, QUERY_ENCODE)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_parameters_name_themselves_and_never_the_password() {
        let mut url =
            DatabaseUrl::parse("mysql://bot:hunter2@db/x?bogus=1&lock_timeout_s=5").unwrap();
        assert_eq!(url.take("lock_timeout_s").as_deref(), Some("5"));
        let err = url.finish("mysql", &["lock_timeout_s"]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("\"bogus\"") && text.contains("lock_timeout_s"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn malformed_values_and_repeats_name_the_parameter() {
        let mut url = DatabaseUrl::parse("sqlite://a.db?busy_timeout_ms=soon").unwrap();
        let err = url.take_parsed::<u64>("busy_timeout_ms").unwrap_err();
        assert!(err.to_string().contains("busy_timeout_ms"), "{err}");
        let err = DatabaseUrl::parse("sqlite://a.db?table=a&table=b").unwrap_err();
        assert!(err.to_string().contains("table"), "{err}");
        let err = DatabaseUrl::parse("postgres://h/db?pool_max=0").unwrap_err();
        assert!(err.to_string().contains("pool_max"), "{err}");
        assert!(DatabaseUrl::parse("no-scheme").is_err());
    }

    #[test]
    fn an_unencoded_reserved_character_in_the_password_is_refused_without_echoing_it() {
        for url in [
            "postgres://u:pXYZZY?q@h/db?table=t1&search_path=x",
            "postgres://u:pXYZZY?@h/db?table=t2",
            "mysql://u:pXYZZY#q@h/db?table=t1",
            "mysql://u:pXYZZY/q@h/db",
            "mysql://u:pXYZZY@q@h/db",
        ] {
            let err = DatabaseUrl::parse(url).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{url}: {err}");
            let text = err.to_string();
            assert!(!text.contains("XYZZY"), "{url}: {text}");
        }
        // A `?` in the user name starts the query (RFC 3986): the parameter "name" that
        // follows holds the password, and is not shown.
        let err = DatabaseUrl::parse("postgres://a?b:pXYZZY@h/db")
            .unwrap()
            .finish("postgres", &[])
            .unwrap_err();
        assert!(!err.to_string().contains("XYZZY"), "{err}");
        let url = DatabaseUrl::parse("postgres://u:p%3Fss%40x@h/db?table=t1").unwrap();
        assert_eq!(url.location(), "//u:p%3Fss%40x@h/db");
        assert_eq!(url.options().table.as_str(), "t1");
    }

    #[test]
    fn an_at_sign_in_the_query_stays_in_its_value() {
        // Once read as user info: the whole query was ignored, and `migrate down --to base`
        // dropped the default table instead of `scratch`.
        let mut url =
            DatabaseUrl::parse("mysql://root@host/test?table=scratch&application=ops@example.com")
                .unwrap();
        assert_eq!(url.location(), "//root@host/test");
        assert_eq!(url.options().table.as_str(), "scratch");
        assert_eq!(url.take("application").as_deref(), Some("ops@example.com"));
        let url = DatabaseUrl::parse_file("sqlite://at.db?table=scratch&x=a@b").unwrap();
        assert_eq!(url.file_path().unwrap(), "at.db");
        assert_eq!(url.options().table.as_str(), "scratch");
    }

    #[test]
    fn host_lists_refuse_empty_entries_and_keep_ports() {
        DatabaseUrl::parse("postgres://u:pw@h1:5432,h2:5433,[::1]:5434/db").unwrap();
        DatabaseUrl::parse("postgres:///db?host=/run/postgresql").unwrap();
        for url in [
            "postgres://u@h1,,h2/db",
            "postgres://u@h1,/db",
            "postgres://u@,h1/db",
            "postgres://u@:5432/db",
            "postgres://u@h1:99999/db",
            "mysql:relative/path",
        ] {
            assert!(
                matches!(DatabaseUrl::parse(url), Err(Error::Config(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn fragments_are_refused_and_file_paths_decode() {
        assert!(DatabaseUrl::parse_file("sqlite://a.db#x").is_err());
        assert!(DatabaseUrl::parse("postgres://h/db?table=a#b").is_err());
        let url = DatabaseUrl::parse_file("sqlite:///var/lib/a%3Fb%23c%25.db").unwrap();
        assert_eq!(url.file_path().unwrap(), "/var/lib/a?b#c%.db");
        let url = DatabaseUrl::parse_file("sqlite::memory:?table=t").unwrap();
        assert_eq!(url.file_path().unwrap(), ":memory:");
        assert_eq!(url.options().table.as_str(), "t");
        assert!(DatabaseUrl::parse_file("sqlite://%FF.db")
            .unwrap()
            .file_path()
            .is_err());
        assert_eq!(DatabaseUrl::scheme_of("SQLite://x").unwrap(), "sqlite");
        assert!(DatabaseUrl::scheme_of("1x://y").is_err());
    }

    #[test]
    fn a_plus_stays_a_plus_as_libpq_reads_it() {
        let mut url =
            DatabaseUrl::parse("postgres://u@h/db?application_name=a+b&options=-c%20x%3D1")
                .unwrap();
        assert_eq!(url.take("application_name").as_deref(), Some("a+b"));
        assert_eq!(url.take("options").as_deref(), Some("-c x=1"));
        let pairs = [("password".to_owned(), "a+b c".to_owned())];
        assert_eq!(query_string(&pairs), "password=a%2Bb%20c");
    }

    #[test]
    fn redacted_hides_every_password_and_keeps_the_host() {
        let shown =
            DatabaseUrl::redacted("postgres://u@h/db?application_name=ops@x&password=secret");
        assert_eq!(shown, "postgres://u@h/db?application_name=***&password=***");
        let shown = DatabaseUrl::redacted(
            "mysql://root:hunter2@h:3306/db?table=t&application=ops@example.com",
        );
        assert_eq!(shown, "mysql://root:***@h:3306/db?table=t&application=***");
        assert_eq!(
            DatabaseUrl::redacted("postgres://a:b@h1,h2/db?PassWord=x"),
            "postgres://a:***@h1,h2/db?PassWord=***"
        );
        assert_eq!(DatabaseUrl::redacted("sqlite://a.db"), "sqlite://a.db");
        assert_eq!(DatabaseUrl::redacted("no scheme here"), "***");
    }

    #[test]
    fn debug_hides_the_location() {
        let url = DatabaseUrl::parse("postgres://bot:hunter2@db/x?sslmode=require").unwrap();
        let debug = format!("{url:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(
            debug.contains("postgres") && debug.contains("sslmode"),
            "{debug}"
        );
    }

    #[test]
    fn driver_parameters_join_into_a_query_string() {
        let pairs = [
            ("sslmode".to_owned(), "require".to_owned()),
            ("a".to_owned(), "1".to_owned()),
        ];
        assert_eq!(query_string(&pairs), "sslmode=require&a=1");
        let pairs = [("application_name".to_owned(), "ops@x&y=z %".to_owned())];
        assert_eq!(
            query_string(&pairs),
            "application_name=ops%40x%26y%3Dz%20%25"
        );
        assert_eq!(query_string(&[]), "");
    }

    mod generated {
        use super::*;
        use proptest::prelude::*;

        /// Any text, weighted towards the characters URLs reserve.
        fn text() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                prop_oneof![
                    4 => proptest::sample::select(vec![
                        '@', ':', '/', '?', '#', '&', '=', '%', '+', ' ', '[', ']', ',', ';',
                        '!', '$', '\'', '(', ')', '*', '~', '.', '-', '_', '\\', '"', '<',
                        '>', '^', '`', '{', '|', '}',
                    ]),
                    4 => proptest::char::range('a', 'z'),
                    1 => any::<char>(),
                ],
                0..12,
            )
            .prop_map(|chars| chars.into_iter().collect())
        }

        fn encoded(text: &str) -> String {
            percent_encoding::utf8_percent_encode(text, QUERY_ENCODE).to_string()
        }

        proptest! {
            /// Every part percent-encoded: the URL means exactly what was encoded.
            #[test]
            fn encoded_parts_round_trip(
                user in text(), password in text(), database in text(), value in text(),
                port in 1u16..,
            ) {
                let location = format!(
                    "//{}:{}@db.example:{port}/{}",
                    encoded(&user), encoded(&password), encoded(&database)
                );
                let raw = format!("mysql:{location}?table=t_9&application={}", encoded(&value));
                let mut url = DatabaseUrl::parse(&raw).unwrap();
                prop_assert_eq!(url.location(), location.as_str());
                prop_assert_eq!(url.options().table.as_str(), "t_9");
                prop_assert_eq!(url.take("application"), Some(value.clone()));
                prop_assert_eq!(query_string(&[("a".into(), value.clone())]), format!("a={}", encoded(&value)));
            }

            /// Raw text anywhere: no panic, and what parses keeps the query's table and
            /// never shows the password in an error.
            #[test]
            fn raw_parts_never_panic_nor_lose_the_table(
                user in text(), password in text(), host in text(), value in text(),
            ) {
                let raw = format!("postgres://{user}:{password}XYZZY@{host}/db?application_name={value}&table=t_9");
                match DatabaseUrl::parse(&raw) {
                    Ok(url) => {
                        // The query is everything after the first `?`: had the user info
                        // or host held one, this table would not be read.
                        let query = raw.split_once('?').unwrap().1;
                        if !query.contains('#') && query.ends_with("&table=t_9") && !value.contains('&') {
                            prop_assert_eq!(url.options().table.as_str(), "t_9");
                        }
                    }
                    Err(err) => prop_assert!(!err.to_string().contains("XYZZY"), "{}", err),
                }
                let shown = DatabaseUrl::redacted(&raw);
                prop_assert!(!shown.contains("XYZZY"), "{}", shown);
                if let Ok(url) = DatabaseUrl::parse(&raw) {
                    if let Err(err) = url.finish("postgres", &[]) {
                        prop_assert!(!err.to_string().contains("XYZZY"), "{}", err);
                    }
                }
                let _ = DatabaseUrl::parse_file(&raw).map(|url| url.file_path());
            }

            /// `with_parameter` keeps every other parameter's meaning.
            #[test]
            fn with_parameter_keeps_the_rest(value in text(), other in text()) {
                let raw = format!("sqlite://a.db?x={}&mode={}", encoded(&value), encoded(&other));
                let set = DatabaseUrl::with_parameter(&raw, "mode", Some("ro")).unwrap();
                prop_assert_eq!(DatabaseUrl::parameter_of(&set, "x").unwrap(), Some(value));
                prop_assert_eq!(DatabaseUrl::parameter_of(&set, "mode").unwrap(), Some("ro".to_owned()));
            }
        }
    }
}
