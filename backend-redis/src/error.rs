//! Redis errors as fsmstore errors, and how each left the connection, for core's call
//! runner.

use fsmstore_core::{Error, Failure};
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// How `err` left the session:
/// * a refused connection or one that could not be made sent nothing: [`Failure::SessionAborted`]
///   (another attempt may do better, nothing was applied);
/// * a connection dropped or silent while a command was in flight: [`Failure::ConnectionLost`]
///   (the command may have been applied);
/// * a server that answered "not now" (loading its data, a replica after a failover that
///   is read-only, a cluster slot moving, a primary down): nothing was applied, another
///   attempt may find a server that takes it: [`Failure::SessionAborted`];
/// * anything else is the call's answer: [`Failure::Other`].
pub(crate) fn classify(err: &RedisError) -> Failure {
    if err.is_connection_refusal() {
        return Failure::SessionAborted;
    }
    match err.kind() {
        ErrorKind::Io => Failure::ConnectionLost,
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask,
        ) => Failure::SessionAborted,
        _ => Failure::Other,
    }
}

/// Maps a driver error: a connection that failed or a server that is not ready is a
/// transient [`Error::Connection`]; a refused login or a bad setting a permanent
/// [`Error::Config`]; anything else a permanent [`Error::Database`]. The driver's messages
/// never hold the password.
pub(crate) fn from_redis(err: RedisError) -> Error {
    match err.kind() {
        // Refused before running: nothing was written.
        ErrorKind::Server(ServerErrorKind::CrossSlot) => Error::Config(format!(
            "a call's keys fall in different hash slots of the Redis Cluster (nothing was written): aiogram's layout keeps a dialogue's state and data in two keys, so on a cluster give them one slot with a hash tag in the key builder's prefix, or use fsmstore's layout (one key per dialogue): {err}"
        )),
        ErrorKind::AuthenticationFailed => Error::Config(format!("Redis refused the login: {err}")),
        ErrorKind::InvalidClientConfig => Error::Config(format!("invalid Redis settings: {err}")),
        _ if classify(&err) != Failure::Other => Error::connection(
            format!("Redis connection failed ({})", err.category()),
            Some(Box::new(err)),
        ),
        _ => Error::database(false, err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_lost_connections_and_transient() {
        let err = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        ));
        assert_eq!(classify(&err), Failure::ConnectionLost);
        assert!(from_redis(err).is_transient());
        let refused = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        assert_eq!(classify(&refused), Failure::SessionAborted);
    }
}
