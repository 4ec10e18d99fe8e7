//! The connection pool of a storage (and of its migrator), with the URL's transport.

use deadpool_postgres::{Pool, Runtime};
use fsmstore_core::{Error, Result};

use crate::config::PgConfig;

/// The pool for `config`: `pool_max` connections, each wait and each connect bounded by
/// `connect_timeout`.
pub(crate) fn build_pool(config: &PgConfig) -> Result<Pool> {
    Pool::builder(crate::tls::manager(config)?)
        .max_size(config.options.pool_max as usize)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(config.options.connect_timeout))
        .create_timeout(Some(config.options.connect_timeout))
        .build()
        .map_err(|err| Error::Config(format!("PostgreSQL pool: {err}")))
}
