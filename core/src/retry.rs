//! [`RetryPolicy`] and [`retry`]: how every backend runs a call again after the database
//! rolled it back, so callers see only what retrying could not fix.

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result};

/// How often and how patiently a storage runs a call again after a *conflict*: an error
/// for which the database rolled the call back (deadlock, serialization failure, lock
/// wait timeout, a busy SQLite file). Those are [`Error::Database`] with
/// `transient == true`; running the call again is safe because nothing of it was applied.
///
/// Not governed here, and why:
/// * a connection found dead *before* a call's write was sent is replaced inside the call
///   (at most `pool_max + 1` times), whatever the policy says;
/// * an unreachable server was already waited for up to `connect_timeout`: the call fails
///   with [`Error::Connection`];
/// * a connection lost *after* a write was sent is [`Error::OutcomeUnknown`]: never
///   replayed, since the write may have been applied and a replay could overwrite a newer
///   write.
///
/// Default: 5 attempts, pauses growing from 5 ms to at most 500 ms, each drawn at random
/// below its ceiling (full jitter), so the losers of one conflict do not collide again.
///
/// ```
/// use std::time::Duration;
/// use fsmstore_core::{RetryPolicy, StorageOptions};
/// let options = StorageOptions::default().retry(RetryPolicy::new(8, Duration::from_millis(2), Duration::from_millis(200)));
/// assert_eq!(options.retry.max_attempts, 8);
/// let never = StorageOptions::default().retry(RetryPolicy::none());
/// assert_eq!(never.retry.max_attempts, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: never retry).
    pub max_attempts: u32,
    /// The ceiling of the first pause; each later ceiling doubles.
    pub base_delay: Duration,
    /// The largest ceiling.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::new(5, Duration::from_millis(5), Duration::from_millis(500))
    }
}

impl RetryPolicy {
    /// A policy of `max_attempts` attempts (at least 1) with pauses from `base_delay` up
    /// to `max_delay`.
    pub fn new(max_attempts: u32, base_delay: Duration, max_delay: Duration) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            base_delay,
            max_delay: max_delay.max(base_delay),
        }
    }

    /// Never retry: every conflict reaches the caller.
    pub fn none() -> Self {
        RetryPolicy::new(1, Duration::ZERO, Duration::ZERO)
    }

    /// The ceiling of the pause after failed attempt `attempt` (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(20);
        self.base_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay)
    }

    /// The pause after failed attempt `attempt`: random, below [`RetryPolicy::ceiling`].
    pub fn pause(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt).as_micros() as u64;
        Duration::from_micros(if ceiling == 0 { 0 } else { jitter() % ceiling })
    }
}

/// Whether `err` is a conflict the database rolled back, so running the call again is
/// safe (see [`RetryPolicy`]).
pub fn is_conflict(err: &Error) -> bool {
    matches!(
        err,
        Error::Database {
            transient: true,
            ..
        }
    )
}

/// Runs `call` until it succeeds, fails with an error that is not a conflict
/// ([`is_conflict`]), or used up `policy.max_attempts`, pausing between attempts.
///
/// # Errors
/// The last attempt's error.
pub fn retry<'a, T, F, Fut>(
    policy: &'a RetryPolicy,
    operation: &'static str,
    call: F,
) -> impl Future<Output = Result<T>> + 'a
where
    T: 'a,
    F: FnMut() -> Fut + 'a,
    Fut: Future<Output = Result<T>> + 'a,
{
    retry_from(policy, operation, 1, call)
}

/// [`retry`], counting from `attempt` (the runs already made, plus one).
pub(crate) async fn retry_from<T, F, Fut>(
    policy: &RetryPolicy,
    operation: &'static str,
    mut attempt: u32,
    mut call: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    loop {
        match call().await {
            Err(err) if again(policy, attempt, &err) => {
                pause(policy, operation, attempt, &err).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// Whether a call whose run `attempt` failed with `err` runs again.
pub(crate) fn again(policy: &RetryPolicy, attempt: u32, err: &Error) -> bool {
    is_conflict(err) && attempt < policy.max_attempts
}

/// The pause after run `attempt` failed with the conflict `err`: a plain `Sleep` to await,
/// not one more future around it.
pub(crate) fn pause(
    policy: &RetryPolicy,
    operation: &'static str,
    attempt: u32,
    err: &Error,
) -> tokio::time::Sleep {
    let pause = policy.pause(attempt);
    tracing::debug!(operation, attempt, ?pause, error = %err, "conflict: running the call again");
    tokio::time::sleep(pause)
}

/// A cheap pseudo-random number (no `rand` dependency) to spread retries apart.
fn jitter() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or_default();
    let mut x = STATE.fetch_add(nanos | 1, Ordering::Relaxed) ^ nanos;
    // xorshift64*
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn conflict() -> Error {
        Error::database(true, "deadlock")
    }

    #[test]
    fn pauses_grow_and_stay_under_the_ceiling() {
        let policy = RetryPolicy::new(10, Duration::from_millis(4), Duration::from_millis(100));
        assert_eq!(policy.ceiling(1), Duration::from_millis(4));
        assert_eq!(policy.ceiling(3), Duration::from_millis(16));
        assert_eq!(policy.ceiling(9), Duration::from_millis(100));
        for attempt in 1..10 {
            assert!(policy.pause(attempt) < policy.ceiling(attempt));
        }
    }

    /// Pauses are spread over the whole range below the ceiling (retries of many callers
    /// must not collide), not stuck at one value.
    #[test]
    fn pauses_are_spread_below_the_ceiling() {
        let policy = RetryPolicy::new(10, Duration::from_millis(4), Duration::from_millis(100));
        let ceiling = policy.ceiling(3).as_micros() as f64;
        let pauses: Vec<f64> = (0..400)
            .map(|_| policy.pause(3).as_micros() as f64)
            .collect();
        let mean = pauses.iter().sum::<f64>() / pauses.len() as f64;
        assert!(
            (0.3 * ceiling..0.7 * ceiling).contains(&mean),
            "mean pause {mean} µs of a {ceiling} µs ceiling"
        );
        let mut distinct = pauses.clone();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        assert!(
            distinct.len() > 300,
            "only {} distinct pauses",
            distinct.len()
        );
        assert!(pauses.iter().any(|&p| p < 0.1 * ceiling));
        assert!(pauses.iter().any(|&p| p > 0.9 * ceiling));
        assert_eq!(RetryPolicy::none().pause(1), Duration::ZERO);
    }

    #[tokio::test]
    async fn conflicts_are_retried_up_to_the_limit() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy::new(3, Duration::from_micros(10), Duration::from_micros(10));
        let result: Result<()> = retry(&policy, "test", || async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(conflict())
        })
        .await;
        assert!(is_conflict(&result.unwrap_err()));
        assert_eq!(calls.load(Ordering::Relaxed), 3);

        calls.store(0, Ordering::Relaxed);
        let result = retry(&policy, "test", || async {
            match calls.fetch_add(1, Ordering::Relaxed) {
                0 => Err(conflict()),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn other_errors_and_unknown_outcomes_are_never_retried() {
        for error in [
            Error::outcome_unknown("set_state", "eof"),
            Error::connection("refused", None),
            Error::database(false, "syntax"),
        ] {
            let calls = AtomicU32::new(0);
            let kind = error.kind();
            let mut once = Some(error);
            let result: Result<()> = retry(&RetryPolicy::default(), "test", || {
                calls.fetch_add(1, Ordering::Relaxed);
                let err = once.take().unwrap_or_else(conflict);
                async move { Err(err) }
            })
            .await;
            assert_eq!(result.unwrap_err().kind(), kind);
            assert_eq!(calls.load(Ordering::Relaxed), 1);
        }
        let calls = AtomicU32::new(0);
        let _: Result<()> = retry(&RetryPolicy::none(), "test", || async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(conflict())
        })
        .await;
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }
}
