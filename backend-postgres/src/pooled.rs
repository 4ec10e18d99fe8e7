//! The pool's connection: deadpool-postgres's client with the statements a call prepared
//! on it, found again by their text with no hash and no lock.
//!
//! deadpool-postgres's own `prepare_cached` hashes the whole statement text (SipHash) under
//! a read lock and clones two `Arc`s on every call: 1.26 thousand instructions a call, a
//! tenth of a point read's client side (docs/benchmarks.md, "CPU per call"). A storage runs
//! a dozen statements, each prepared once per connection; a scan that compares lengths
//! first finds one in a few dozen.

use std::ops::{Deref, DerefMut};

use deadpool::managed::{Metrics, RecycleResult};
use deadpool_postgres::ClientWrapper;
use tokio_postgres::Statement;

/// Statements kept on one connection. Past this many distinct texts (a program running
/// statements of its own through the storage's connections), the rest go through
/// deadpool-postgres's cache: the scan stays short.
const SLOTS: usize = 32;

/// deadpool-postgres's manager, making [`Client`]s.
#[derive(Debug)]
pub(crate) struct Manager(pub(crate) deadpool_postgres::Manager);

/// The pool of [`Client`]s.
pub(crate) type Pool = deadpool::managed::Pool<Manager>;

/// A pooled [`Client`].
pub(crate) type Object = deadpool::managed::Object<Manager>;

/// The error a pool wait ends with.
pub(crate) type PoolError = deadpool::managed::PoolError<tokio_postgres::Error>;

/// One connection: deadpool-postgres's client and the statements prepared on it, by text.
pub(crate) struct Client {
    client: ClientWrapper,
    prepared: Slots<Statement>,
}

/// Where a connection keeps one statement: found once per call, then read without a
/// second scan. Slots are only ever appended, so one stays valid for its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot(usize);

/// Up to [`SLOTS`] values by statement text.
struct Slots<S> {
    entries: Vec<(Box<str>, S)>,
}

impl<S> Slots<S> {
    fn new() -> Self {
        Slots {
            entries: Vec::new(),
        }
    }

    /// Where `text` is kept, if it is.
    fn position(&self, text: &str) -> Option<Slot> {
        self.entries
            .iter()
            .position(|(kept, _)| kept.len() == text.len() && **kept == *text)
            .map(Slot)
    }

    fn get(&self, slot: Slot) -> &S {
        &self.entries[slot.0].1
    }

    fn is_full(&self) -> bool {
        self.entries.len() >= SLOTS
    }

    /// Keeps `value` for `text` (not kept before) unless the slots are full.
    fn insert(&mut self, text: &str, value: S) {
        if !self.is_full() {
            self.entries.push((text.into(), value));
        }
    }
}

impl Deref for Client {
    type Target = ClientWrapper;

    fn deref(&self) -> &ClientWrapper {
        &self.client
    }
}

impl DerefMut for Client {
    fn deref_mut(&mut self) -> &mut ClientWrapper {
        &mut self.client
    }
}

impl Client {
    /// Where the statement `sql` prepared on this connection before is kept, if it was.
    pub(crate) fn slot(&self, sql: &str) -> Option<Slot> {
        self.prepared.position(sql)
    }

    /// The statement kept in `slot` (from [`Client::slot`] on this connection).
    pub(crate) fn kept(&self, slot: Slot) -> &Statement {
        self.prepared.get(slot)
    }

    /// Prepares `sql` on this connection (one round trip) and keeps it for the next call;
    /// past [`SLOTS`] texts, deadpool-postgres's cache keeps it instead.
    pub(crate) async fn prepare_new(
        &mut self,
        sql: &str,
    ) -> Result<Statement, tokio_postgres::Error> {
        if self.prepared.is_full() {
            return self.client.prepare_cached(sql).await;
        }
        let statement = self.client.prepare(sql).await?;
        self.prepared.insert(sql, statement.clone());
        Ok(statement)
    }
}

impl deadpool::managed::Manager for Manager {
    type Type = Client;
    type Error = tokio_postgres::Error;

    async fn create(&self) -> Result<Client, tokio_postgres::Error> {
        Ok(Client {
            client: self.0.create().await?,
            prepared: Slots::new(),
        })
    }

    async fn recycle(
        &self,
        client: &mut Client,
        metrics: &Metrics,
    ) -> RecycleResult<tokio_postgres::Error> {
        // `RecyclingMethod::Fast` (tls.rs): nothing runs on the connection that would drop
        // its prepared statements.
        self.0.recycle(&mut client.client, metrics).await
    }

    fn detach(&self, client: &mut Client) {
        self.0.detach(&mut client.client);
    }
}

#[cfg(test)]
mod tests {
    use super::{Slots, SLOTS};

    /// The value kept for `text`: one scan, then the slot.
    fn find<S: Copy>(slots: &Slots<S>, text: &str) -> Option<S> {
        slots.position(text).map(|slot| *slots.get(slot))
    }

    #[test]
    fn a_kept_text_is_found_and_no_other() {
        let mut slots = Slots::new();
        slots.insert("SELECT state FROM t WHERE id = $1", 1);
        slots.insert("SELECT data FROM t WHERE id = $1", 2);
        assert_eq!(find(&slots, "SELECT state FROM t WHERE id = $1"), Some(1));
        assert_eq!(find(&slots, "SELECT data FROM t WHERE id = $1"), Some(2));
        // Same length as the first, one byte apart.
        assert_eq!(find(&slots, "SELECT state FROM t WHERE id = $2"), None);
        assert_eq!(find(&slots, "SELECT state FROM t WHERE id = $"), None);
        assert_eq!(find(&slots, ""), None);
    }

    #[test]
    fn past_the_slots_nothing_more_is_kept_and_the_first_stay() {
        let mut slots = Slots::new();
        for i in 0..SLOTS {
            assert!(!slots.is_full());
            slots.insert(&format!("SELECT {i}"), i);
        }
        assert!(slots.is_full());
        slots.insert("SELECT past", usize::MAX);
        assert_eq!(find(&slots, "SELECT past"), None);
        for i in 0..SLOTS {
            assert_eq!(find(&slots, &format!("SELECT {i}")), Some(i));
        }
    }
}
