//! Choosing the connection's transport: plain, or rustls when the URL asks for TLS.
//!
//! TLS is used when `sslmode=require` (with the `tls` feature). Server certificates are
//! verified against the Mozilla roots (webpki-roots) plus the PEM file named by the
//! `ssl_root_cert` URL parameter, if any. `sslmode=prefer` (the driver's default) stays
//! plain: a preference must not turn into a certificate error on a server with a
//! self-signed certificate.

use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod};
use fsmstore_core::{Error, Result};
use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;
use tokio_postgres::Client;

use crate::config::PgConfig;
use crate::error::from_pg;

fn wants_tls(config: &PgConfig) -> bool {
    config.pg.get_ssl_mode() == SslMode::Require
}

#[cfg(feature = "tls")]
fn rustls_connector(config: &PgConfig) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    use std::sync::Arc;

    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = &config.ssl_root_cert {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|err| Error::Config(format!("ssl_root_cert {}: {err}", path.display())))?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|err| Error::Config(format!("ssl_root_cert {}: {err}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| Error::Config(format!("TLS: {err}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
}

#[cfg(not(feature = "tls"))]
fn no_tls_support() -> Error {
    Error::Config(
        "sslmode=require needs TLS: enable the `tls` feature of fsmstore-postgres (fsmstore's `postgres-tls`)"
            .to_owned(),
    )
}

/// The pool's connection manager, with the transport the URL asks for.
pub(crate) fn manager(config: &PgConfig) -> Result<Manager> {
    let manager_config = ManagerConfig {
        // `Fast`: trust a connection the driver does not know to be closed; a dead one
        // fails its call with a transient error and is dropped on its next recycle.
        recycling_method: RecyclingMethod::Fast,
    };
    let pg = config.driver_config();
    if !wants_tls(config) {
        return Ok(Manager::from_config(
            pg,
            tokio_postgres::NoTls,
            manager_config,
        ));
    }
    #[cfg(feature = "tls")]
    return Ok(Manager::from_config(
        pg,
        rustls_connector(config)?,
        manager_config,
    ));
    #[cfg(not(feature = "tls"))]
    Err(no_tls_support())
}

/// A connection outside the pool (the migration lock's), and its driver task.
pub(crate) async fn connect_dedicated(config: &PgConfig) -> Result<(Client, JoinHandle<()>)> {
    let pg = config.driver_config();
    if !wants_tls(config) {
        let (client, connection) = pg.connect(tokio_postgres::NoTls).await.map_err(from_pg)?;
        return Ok((client, tokio::spawn(async move { drop(connection.await) })));
    }
    #[cfg(feature = "tls")]
    {
        let (client, connection) = pg
            .connect(rustls_connector(config)?)
            .await
            .map_err(from_pg)?;
        Ok((client, tokio::spawn(async move { drop(connection.await) })))
    }
    #[cfg(not(feature = "tls"))]
    Err(no_tls_support())
}

impl PgConfig {
    /// One connection outside any pool, with the URL's transport (TLS when it asks) and
    /// fsmstore's session settings, and the task driving it: for tools that need a raw
    /// client (the CLI reads teloxide's own table with it).
    ///
    /// # Errors
    /// Connection errors; [`Error::Config`] for TLS without the `tls` feature.
    pub async fn connect(&self) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>)> {
        connect_dedicated(self).await
    }
}
