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
    /// Splits `url` at its scheme and its query, and applies the shared parameters
    /// ([`SHARED_URL_PARAMETERS`]) to a default [`StorageOptions`].
    ///
    /// # Errors
    /// [`Error::Config`] for a URL without a scheme, a parameter given twice, or a shared
    /// parameter with a bad value (naming it); [`Error::InvalidTableName`].
    pub fn parse(url: &str) -> Result<Self> {
        let (scheme, rest) = url
            .split_once(':')
            .filter(|(scheme, _)| !scheme.is_empty())
            .ok_or_else(|| {
                Error::Config(
                    "a database URL starts with its scheme: sqlite://, postgres:// or mysql://"
                        .to_owned(),
                )
            })?;
        // The query starts after the user info: a `?` in an unencoded password must not
        // split the URL there (and land in a message as a "parameter").
        let query_from = rest.rfind('@').map_or(0, |at| at + 1);
        let (location, query) = match rest[query_from..].find('?') {
            Some(at) => (&rest[..query_from + at], &rest[query_from + at + 1..]),
            None => (rest, ""),
        };
        let mut options = StorageOptions::default();
        let mut parameters: Vec<(String, String)> = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if seen.contains(&name) {
                return Err(Error::Config(format!(
                    "URL parameter {name:?} is given twice"
                )));
            }
            seen.push(name);
            if !options.set_url_parameter(name, value)? {
                parameters.push((name.to_owned(), value.to_owned()));
            }
        }
        Ok(DatabaseUrl {
            scheme: scheme.to_ascii_lowercase(),
            location: location.to_owned(),
            options,
            parameters,
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
                "unknown {backend} URL parameter {name:?} (known: {})",
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

/// Joins `driver` parameters into a query string (`a=1&b=2`), empty when there are none.
pub fn query_string(driver: &[(String, String)]) -> String {
    driver
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
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
    fn a_question_mark_in_the_password_is_not_a_query() {
        let mut url = DatabaseUrl::parse("postgres://u:p?ss@h/db?table=t1&search_path=x").unwrap();
        assert_eq!(url.location(), "//u:p?ss@h/db");
        assert_eq!(url.options().table.as_str(), "t1");
        assert_eq!(url.take("search_path").as_deref(), Some("x"));
        let err = DatabaseUrl::parse("postgres://u:p?ss@h/db?bogus=1")
            .unwrap()
            .finish("postgres", &[])
            .unwrap_err();
        assert!(!err.to_string().contains("ss@h"), "{err}");
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
    fn a_password_ending_in_a_question_mark_stays_whole() {
        let url = DatabaseUrl::parse("postgres://u:p?@h/db?table=t2").unwrap();
        assert_eq!(url.location(), "//u:p?@h/db");
        assert_eq!(url.options().table.as_str(), "t2");
    }

    #[test]
    fn driver_parameters_join_into_a_query_string() {
        let pairs = [
            ("sslmode".to_owned(), "require".to_owned()),
            ("a".to_owned(), "1".to_owned()),
        ];
        assert_eq!(query_string(&pairs), "sslmode=require&a=1");
        assert_eq!(query_string(&[]), "");
    }
}
