//! [`CallRunner`]: the one way a server backend runs a storage call.
//!
//! Every server backend makes the same decision after a failed attempt, and makes it here:
//!
//! * a conflict the database rolled back (a transient [`Error::Database`]) runs again under
//!   the storage's [`RetryPolicy`] ([`retry`](crate::retry()));
//! * a connection lost *before* the call could apply anything, or a session the server
//!   ended and said so, is replaced: the call runs on another connection (at most
//!   `pool_max + 1` attempts: a pool may hold that many dead idle connections);
//! * a connection lost *while applying* a call that is not safe to replay
//!   ([`Replay::Unsafe`]) is [`Error::OutcomeUnknown`]: never replayed, since the write may
//!   have been applied and a replay could overwrite a newer write;
//! * no answer within `call_timeout` is [`Error::no_answer`]: unknown outcome for a write
//!   that may have been sent, a transient connection error otherwise.
//!
//! The backend supplies what only it knows: whether a call is safe to replay, how its
//! driver's errors left the connection ([`Failure`]), and at which [`Phase`] of the call
//! each step runs. What it does with a connection after a fault (close it, move to another
//! host) stays in the backend. object_store's retry, with its idempotent flag, is the
//! model.
//!
//! ```
//! use fsmstore_core::{CallRunner, Error, Failure, Fault, Phase, Replay, StorageOptions};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let runner = CallRunner::new("ExampleDB", &StorageOptions::default());
//! let attempts = std::cell::Cell::new(0);
//! // The first connection dies before the write is sent; the second one applies it.
//! let written = runner
//!     .run("set_state", Replay::Unsafe, |e: std::io::Error| Error::connection(e.to_string(), None), || async {
//!         attempts.set(attempts.get() + 1);
//!         if attempts.get() == 1 {
//!             let lost = std::io::Error::other("connection reset");
//!             return Err(Fault::driver(lost, Failure::ConnectionLost, Phase::Before));
//!         }
//!         Ok(1)
//!     })
//!     .await;
//! assert_eq!(written.unwrap(), 1);
//! assert_eq!(attempts.get(), 2);
//! # });
//! ```

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use crate::error::{BoxError, Error, Result};
use crate::options::StorageOptions;
use crate::retry::{again, pause, retry_from, RetryPolicy};

/// Whether a call may run again after its connection was lost while it was applying: a
/// read may (and so may a write whose replay changes nothing, like a purge batch); a write
/// may not, its outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Running it again is harmless.
    Safe,
    /// It may have been applied: never run again after a loss in flight.
    Unsafe,
}

/// How a driver error left the session, as the backend classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The socket closed or failed with no word from the server: what was in flight may or
    /// may not have been applied.
    ConnectionLost,
    /// The server ended the session (or refused the statement) and said so: nothing in
    /// flight was applied, and another connection may do better.
    SessionAborted,
    /// The server answered (or the client refused): this is the call's answer.
    Other,
}

/// Where in an attempt a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before anything of the call can be applied: a checkout, a ping, a prepare, a read,
    /// or a statement of a transaction the server rolls back when the connection dies.
    Before,
    /// The step that applies the call: its single write, or `COMMIT`.
    Applying,
}

/// Why one attempt of a call ended without a value.
#[derive(Debug)]
pub enum Fault<E> {
    /// An error to answer the call with as it is (a closed storage, a pool error).
    Answer(Error),
    /// A driver error at `phase`, classified by the backend.
    Driver {
        /// The driver's error.
        error: E,
        /// How it left the session.
        failure: Failure,
        /// Where in the call it happened.
        phase: Phase,
    },
    /// No answer within `call_timeout` at `phase`.
    Silent(Phase),
    /// No connection is left to try in this call (every host was tried): the call ends
    /// with the last lost connection's error.
    Exhausted,
}

impl<E> Fault<E> {
    /// A driver error at `phase`.
    pub fn driver(error: E, failure: Failure, phase: Phase) -> Self {
        Fault::Driver {
            error,
            failure,
            phase,
        }
    }

    /// Whether the connection of the attempt is suspect (lost, aborted or silent): it
    /// must not be used again.
    pub fn connection_suspect(&self) -> bool {
        match self {
            Fault::Driver { failure, .. } => *failure != Failure::Other,
            Fault::Silent(_) => true,
            Fault::Answer(_) | Fault::Exhausted => false,
        }
    }
}

impl<E> From<Error> for Fault<E> {
    fn from(err: Error) -> Self {
        Fault::Answer(err)
    }
}

/// What the runner does after a fault.
#[derive(Debug)]
enum Next<E> {
    /// Run the call again on another connection; `E` is kept for the final error.
    Again(E),
    /// Answer the call with this error.
    Fail(Error),
    /// Stop trying connections.
    Stop,
}

/// Runs a storage call's attempts (see the module docs): one per server backend, built
/// from the storage's options.
#[derive(Debug, Clone, Copy)]
pub struct CallRunner {
    server: &'static str,
    deadline: Duration,
    attempts: usize,
    retry: RetryPolicy,
}

impl CallRunner {
    /// The runner of a storage on `server` (a name for messages: `"PostgreSQL"`) with
    /// `options`' `call_timeout`, `pool_max` and retry policy.
    pub fn new(server: &'static str, options: &StorageOptions) -> Self {
        CallRunner {
            server,
            deadline: options.call_timeout,
            attempts: options.pool_max as usize + 1,
            retry: options.retry,
        }
    }

    /// How long each step is waited for (`call_timeout`).
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Waits for `step` at most `call_timeout`: [`Fault::Silent`] at `phase` when no answer
    /// came. The backend closes the attempt's connection after a silent step.
    pub async fn within<T, E, F: Future<Output = T>>(
        &self,
        phase: Phase,
        step: F,
    ) -> std::result::Result<T, Fault<E>> {
        tokio::time::timeout(self.deadline, step)
            .await
            .map_err(|_| Fault::Silent(phase))
    }

    /// Runs `attempt` until it answers: conflicts again under the retry policy, a lost
    /// connection again on another one as the module docs say, the rest mapped with
    /// `to_error`.
    ///
    /// # Errors
    /// The call's error; [`Error::OutcomeUnknown`] for a [`Replay::Unsafe`] call whose
    /// connection was lost or went silent while applying it.
    pub async fn run<T, E, F, Fut>(
        &self,
        operation: &'static str,
        replay: Replay,
        to_error: impl Fn(E) -> Error,
        attempt: F,
    ) -> Result<T>
    where
        E: Display + Into<BoxError>,
        F: Fn() -> Fut,
        Fut: Future<Output = std::result::Result<T, Fault<E>>>,
    {
        // Most calls answer on their first attempt: it is awaited here alone, so a call's
        // future holds no reconnect or retry state beside it (on MySQL a read's future
        // shrank by a quarter). What follows a fault is boxed, and decides as before.
        let fault = match attempt().await {
            Ok(value) => return Ok(value),
            Err(fault) => fault,
        };
        Box::pin(self.after_fault(operation, replay, &to_error, &attempt, fault)).await
    }

    /// The rest of the call after its first attempt failed with `fault`: the attempts left
    /// on other connections, then the retry policy over whole runs.
    async fn after_fault<T, E, F, Fut>(
        &self,
        operation: &'static str,
        replay: Replay,
        to_error: &impl Fn(E) -> Error,
        attempt: &F,
        fault: Fault<E>,
    ) -> Result<T>
    where
        E: Display + Into<BoxError>,
        F: Fn() -> Fut,
        Fut: Future<Output = std::result::Result<T, Fault<E>>>,
    {
        match self
            .connections(operation, replay, to_error, attempt, Some(fault))
            .await
        {
            Err(err) if again(&self.retry, 1, &err) => {
                pause(&self.retry, operation, 1, &err).await;
                retry_from(&self.retry, operation, 2, || {
                    self.connections(operation, replay, to_error, attempt, None)
                })
                .await
            }
            outcome => outcome,
        }
    }

    /// One run of the call: attempts on connection after connection until one answers;
    /// `first`, the fault of an attempt already made in this run.
    async fn connections<T, E, F, Fut>(
        &self,
        operation: &'static str,
        replay: Replay,
        to_error: &impl Fn(E) -> Error,
        attempt: &F,
        mut first: Option<Fault<E>>,
    ) -> Result<T>
    where
        E: Display + Into<BoxError>,
        F: Fn() -> Fut,
        Fut: Future<Output = std::result::Result<T, Fault<E>>>,
    {
        let mut lost = None;
        for _ in 0..self.attempts {
            let fault = match first.take() {
                Some(fault) => fault,
                None => match attempt().await {
                    Ok(value) => return Ok(value),
                    Err(fault) => fault,
                },
            };
            match self.decide(operation, replay, fault, to_error) {
                Next::Again(err) => {
                    tracing::debug!(operation, error = %err, "connection lost before the call applied anything; running it on another one");
                    lost = Some(err);
                }
                Next::Fail(err) => return Err(err),
                Next::Stop => break,
            }
        }
        Err(lost.map_or_else(
            || Error::connection(format!("no live {} connection", self.server), None),
            to_error,
        ))
    }

    /// The decision after `fault` (see the module docs).
    fn decide<E: Into<BoxError>>(
        &self,
        operation: &'static str,
        replay: Replay,
        fault: Fault<E>,
        to_error: &impl Fn(E) -> Error,
    ) -> Next<E> {
        match fault {
            Fault::Answer(err) => Next::Fail(err),
            Fault::Exhausted => Next::Stop,
            Fault::Silent(phase) => Next::Fail(Error::no_answer(
                operation,
                self.server,
                self.deadline,
                phase == Phase::Applying && replay == Replay::Unsafe,
            )),
            Fault::Driver {
                error,
                failure: Failure::Other,
                ..
            } => Next::Fail(to_error(error)),
            Fault::Driver {
                error,
                failure: Failure::ConnectionLost,
                phase: Phase::Applying,
            } if replay == Replay::Unsafe => Next::Fail(Error::outcome_unknown(operation, error)),
            Fault::Driver { error, .. } => Next::Again(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::error::ErrorKind;

    fn runner() -> CallRunner {
        let options = StorageOptions::default()
            .pool_max(2)
            .retry(RetryPolicy::new(3, Duration::ZERO, Duration::ZERO))
            .call_timeout(Duration::from_millis(20));
        CallRunner::new("TestDB", &options)
    }

    fn to_error(message: &'static str) -> Error {
        Error::connection(message, None)
    }

    /// Runs a call whose attempts fail with `faults` in turn, then succeed; returns the
    /// outcome and the number of attempts made.
    async fn run(replay: Replay, faults: Vec<Fault<&'static str>>) -> (Result<u32>, usize) {
        let faults = std::sync::Mutex::new(faults.into_iter());
        let made = Cell::new(0);
        let outcome = runner()
            .run("test", replay, to_error, || async {
                made.set(made.get() + 1);
                match faults.lock().unwrap().next() {
                    Some(fault) => Err(fault),
                    None => Ok(7),
                }
            })
            .await;
        (outcome, made.get())
    }

    fn lost(phase: Phase) -> Fault<&'static str> {
        Fault::driver("reset", Failure::ConnectionLost, phase)
    }

    #[tokio::test]
    async fn a_connection_lost_before_applying_is_replaced() {
        let (outcome, made) = run(Replay::Unsafe, vec![lost(Phase::Before)]).await;
        assert_eq!(outcome.unwrap(), 7);
        assert_eq!(made, 2);
    }

    #[tokio::test]
    async fn a_write_lost_in_flight_is_never_replayed() {
        let (outcome, made) = run(Replay::Unsafe, vec![lost(Phase::Applying)]).await;
        assert_eq!(outcome.unwrap_err().kind(), ErrorKind::OutcomeUnknown);
        assert_eq!(made, 1);
    }

    #[tokio::test]
    async fn a_safe_call_lost_in_flight_runs_again() {
        let (outcome, made) = run(Replay::Safe, vec![lost(Phase::Applying)]).await;
        assert_eq!(outcome.unwrap(), 7);
        assert_eq!(made, 2);
    }

    #[tokio::test]
    async fn a_session_the_server_aborted_runs_again_even_for_a_write() {
        let aborted = Fault::driver("killed", Failure::SessionAborted, Phase::Applying);
        let (outcome, made) = run(Replay::Unsafe, vec![aborted]).await;
        assert_eq!(outcome.unwrap(), 7);
        assert_eq!(made, 2);
    }

    /// Each run after a conflict gets its own connections: a first run that lost two
    /// connections and then met a conflict, a second run that lost two more and answered.
    #[tokio::test]
    async fn a_run_after_a_conflict_gets_its_own_connections() {
        let conflict = || Fault::Answer(Error::database(true, "deadlock"));
        let faults = vec![
            lost(Phase::Before),
            lost(Phase::Before),
            conflict(),
            lost(Phase::Before),
            lost(Phase::Before),
        ];
        let (outcome, made) = run(Replay::Unsafe, faults).await;
        assert_eq!(outcome.unwrap(), 7);
        assert_eq!(made, 6);
    }

    #[tokio::test]
    async fn connections_are_tried_pool_max_plus_one_times() {
        let faults = (0..5).map(|_| lost(Phase::Before)).collect();
        let (outcome, made) = run(Replay::Unsafe, faults).await;
        let err = outcome.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Connection);
        assert!(err.to_string().contains("reset"), "{err}");
        // pool_max 2: three connections per run, and a connection error is no conflict.
        assert_eq!(made, 3);
    }

    #[tokio::test]
    async fn an_answer_is_returned_at_once() {
        let answer = Fault::driver("syntax", Failure::Other, Phase::Applying);
        let (outcome, made) = run(Replay::Safe, vec![answer]).await;
        assert!(outcome.unwrap_err().to_string().contains("syntax"));
        assert_eq!(made, 1);
    }

    #[tokio::test]
    async fn a_conflict_runs_again_under_the_retry_policy() {
        let conflict = || Fault::Answer(Error::database(true, "deadlock"));
        let (outcome, made) = run(Replay::Unsafe, vec![conflict(), conflict()]).await;
        assert_eq!(outcome.unwrap(), 7);
        assert_eq!(made, 3);
        let (outcome, made) = run(Replay::Unsafe, vec![conflict(), conflict(), conflict()]).await;
        assert!(outcome.unwrap_err().is_transient());
        assert_eq!(made, 3);
    }

    #[tokio::test]
    async fn exhausted_ends_with_the_last_lost_connection() {
        let (outcome, made) = run(Replay::Safe, vec![lost(Phase::Before), Fault::Exhausted]).await;
        assert!(outcome.unwrap_err().to_string().contains("reset"));
        assert_eq!(made, 2);
        let (outcome, _) = run(Replay::Safe, vec![Fault::Exhausted]).await;
        assert!(outcome
            .unwrap_err()
            .to_string()
            .contains("no live TestDB connection"));
    }

    #[tokio::test]
    async fn silence_while_applying_a_write_is_an_unknown_outcome() {
        let runner = runner();
        let silent = || async {
            runner
                .within::<(), &str, _>(Phase::Applying, std::future::pending())
                .await
        };
        let write = runner
            .run("test", Replay::Unsafe, to_error, silent)
            .await
            .unwrap_err();
        assert_eq!(write.kind(), ErrorKind::OutcomeUnknown);
        assert!(write.to_string().contains("call_timeout"), "{write}");
        let read = runner
            .run("test", Replay::Safe, to_error, silent)
            .await
            .unwrap_err();
        assert_eq!(read.kind(), ErrorKind::Connection);
        let before = runner
            .run("test", Replay::Unsafe, to_error, || async {
                runner
                    .within::<(), &str, _>(Phase::Before, std::future::pending())
                    .await
            })
            .await
            .unwrap_err();
        assert_eq!(before.kind(), ErrorKind::Connection);
    }
}
