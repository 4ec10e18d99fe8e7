//! Lock statements: the migration lock ([`MigrationLock`], Galera's [`ClusterLock`]) and
//! the per-key lock ([`KeyLock`]).

use crate::dialect::Dialect;
use crate::table_name::TableName;

/// The statements that take and release the migration lock of one version table, on the
/// servers that have named locks. (SQLite has none: its lock is `BEGIN IMMEDIATE`.)
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationLock {
    /// Takes the lock (waits for it).
    pub acquire: String,
    /// PostgreSQL behind a transaction pooler: takes the lock for the current transaction
    /// (`pg_advisory_xact_lock`, released at its end), run right after `BEGIN`; empty on
    /// MySQL.
    pub acquire_in_transaction: String,
    /// Releases it.
    pub release: String,
    /// The lock's name or key, for messages.
    pub name: String,
    /// Who holds the lock: one row of one text column (a session's pid, application,
    /// client and since when), or no row.
    pub holder: String,
}

impl MigrationLock {
    /// PostgreSQL: [`MigrationLock::acquire`] waiting at most `timeout` (its
    /// `lock_timeout` covers advisory locks, SQLSTATE 55P03), the session's setting reset
    /// afterwards. One batch of statements.
    pub fn acquire_within(&self, timeout: std::time::Duration) -> String {
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128);
        format!(
            "SET lock_timeout = '{ms}ms'; {}; RESET lock_timeout",
            self.acquire
        )
    }

    /// PostgreSQL: [`MigrationLock::acquire_in_transaction`] waiting at most `timeout`, for
    /// this transaction only (`SET LOCAL`).
    pub fn acquire_in_transaction_within(&self, timeout: std::time::Duration) -> String {
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128);
        format!(
            "SET LOCAL lock_timeout = '{ms}ms'; {}",
            self.acquire_in_transaction
        )
    }

    /// PostgreSQL: a session advisory lock whose key is derived from the version table's
    /// name, released by `release` or by the session ending.
    pub fn postgres(version_table: &TableName) -> MigrationLock {
        let name = format!("fsmstore:{version_table}");
        let key = advisory_key(&name);
        // A bigint advisory key shows in pg_locks as classid (high 32 bits) and objid
        // (low 32 bits), with objsubid 1.
        let bits = u64::from_ne_bytes(key.to_ne_bytes());
        let (high, low) = (bits >> 32, bits & 0xffff_ffff);
        MigrationLock {
            acquire: format!("SELECT pg_advisory_lock({key})"),
            acquire_in_transaction: format!("SELECT pg_advisory_xact_lock({key})"),
            release: format!("SELECT pg_advisory_unlock({key})"),
            name: format!("advisory lock {key} ({name})"),
            holder: format!(
                "SELECT format('session pid %s (application %L, client %s, connected since %s, %s)', \
                 a.pid, a.application_name, coalesce(host(a.client_addr), 'local socket'), \
                 date_trunc('second', a.backend_start), a.state) \
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND l.granted AND l.classid = {high} \
                 AND l.objid = {low} AND l.objsubid = 1 LIMIT 1"
            ),
        }
    }

    /// MySQL / MariaDB: `GET_LOCK` binding the timeout in seconds, returning 1 (taken), 0
    /// (timed out) or NULL (error); `RELEASE_LOCK`.
    pub fn mysql(version_table: &TableName) -> MigrationLock {
        // A validated identifier: safe inside a string literal. MySQL refuses lock names
        // over 64 characters (error 3057): truncate; two long version tables sharing a
        // prefix then share a lock, which only serializes their migrations.
        let name: String = format!("fsmstore:{version_table}")
            .chars()
            .take(64)
            .collect();
        MigrationLock {
            acquire: format!("SELECT GET_LOCK('{name}', ?)"),
            acquire_in_transaction: String::new(),
            release: format!("SELECT RELEASE_LOCK('{name}')"),
            holder: format!(
                "SELECT CONCAT('connection ', p.ID, ' (user ', p.USER, ', client ', p.HOST, ', ', p.TIME, ' s in ', COALESCE(p.COMMAND, ''), ')') \
                 FROM information_schema.PROCESSLIST p WHERE p.ID = IS_USED_LOCK('{name}')"
            ),
            name,
        }
    }
}

/// MySQL and MariaDB: the migration lock that holds across a Galera cluster. `GET_LOCK`
/// is node-local, so two migrators on two nodes would both hold it; this lock is a row,
/// and writes of one row on two nodes conflict at commit (certification, 1213), so one
/// insert wins cluster-wide. The row carries its owner (`host:port:connection id` of the
/// node) and a lease. A migrator takes `GET_LOCK` on its node first, so a row its own node
/// owns is stale (its owner would need that `GET_LOCK`) and is taken over at once; a row
/// another node owns is taken over once its lease ran out (that node died mid-run). On a
/// single server this is one more row write per run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterLock {
    /// The lock table (`<version table>_lock`).
    pub table: TableName,
    /// `()`: creates the lock table if it does not exist.
    pub create: String,
    /// `(name, lease seconds)`: takes a free lock (duplicate key 1062 when it is held,
    /// 1213 when another node's insert won).
    pub insert: String,
    /// `(lease seconds, name)`: takes the lock over when its lease ran out or this node
    /// owns it; rows affected = whether it did.
    pub take_over: String,
    /// `(lease seconds, name)`: extends the lease this connection holds; no row affected
    /// means another migrator took it over (the lease ran out).
    pub renew: String,
    /// `(name)`: releases the lock this connection holds.
    pub release: String,
    /// `(name)` → `owner, seconds left`: for the timeout message.
    pub holder: String,
    /// `()` → this connection's owner text (`host:port:connection id`), as the lock rows
    /// record it.
    pub me: String,
    /// The lock's name: the version table's.
    pub name: String,
}

impl ClusterLock {
    /// The lock of `version_table`.
    pub fn mysql(version_table: &TableName) -> ClusterLock {
        let table = version_table.derived("lock");
        let t = table.quoted(Dialect::Mysql);
        let node = "CONCAT(@@hostname, ':', @@port, ':')";
        let me = format!("CONCAT({node}, CONNECTION_ID())");
        let lease = "CURRENT_TIMESTAMP(6) + INTERVAL ? SECOND";
        ClusterLock {
            create: format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                 name VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY, \
                 owner VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, \
                 expires_at TIMESTAMP(6) NOT NULL) ENGINE = InnoDB"
            ),
            insert: format!("INSERT INTO {t} (name, owner, expires_at) VALUES (?, {me}, {lease})"),
            take_over: format!(
                "UPDATE {t} SET owner = {me}, expires_at = {lease} \
                 WHERE name = ? AND (expires_at < CURRENT_TIMESTAMP(6) \
                 OR LEFT(owner, CHAR_LENGTH({node})) = {node})"
            ),
            renew: format!("UPDATE {t} SET expires_at = {lease} WHERE name = ? AND owner = {me}"),
            release: format!("DELETE FROM {t} WHERE name = ? AND owner = {me}"),
            holder: format!(
                "SELECT owner, TIMESTAMPDIFF(SECOND, CURRENT_TIMESTAMP(6), expires_at) FROM {t} WHERE name = ?"
            ),
            me: format!("SELECT {me}"),
            name: version_table.as_str().to_owned(),
            table,
        }
    }
}

/// The statements of a per-key lock ([`Isolation`](crate::Isolation)) held by a database
/// session, for one row id.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct KeyLock {
    /// Takes the lock. PostgreSQL: a simple-query batch (values inlined, no parameters)
    /// that waits at most the timeout (`lock_timeout`, SQLSTATE 55P03 when it runs out) and
    /// returns one row `(_, backend pid)`; the batch is one implicit transaction, so a
    /// timeout also undoes its `SET`. MySQL: `(name, timeout seconds)` →
    /// `(1 taken | 0 timed out | NULL error, connection id)`.
    pub lock: String,
    /// Releases it. PostgreSQL: a batch; MySQL: `(name)`.
    pub unlock: String,
    /// The lock's name (MySQL's `GET_LOCK`, at most 64 characters); empty on PostgreSQL.
    pub name: String,
}

impl KeyLock {
    /// A session-level advisory lock on a 64-bit hash of the table and the row id.
    pub fn postgres(table: &TableName, row_id: &str, timeout: std::time::Duration) -> KeyLock {
        let key = advisory_key(&format!("fsmstore:row:{}:{row_id}", table.as_str()));
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128);
        KeyLock {
            lock: format!(
                "SET lock_timeout = '{ms}ms'; SELECT pg_advisory_lock({key}), pg_backend_pid(); \
                 SET lock_timeout = DEFAULT"
            ),
            unlock: format!("SELECT pg_advisory_unlock({key})"),
            name: String::new(),
        }
    }

    /// The lock of [`KeyLock::postgres`] for a connection behind a transaction pooler: a
    /// transaction-level advisory lock in a transaction left open (which keeps its server
    /// connection) until `unlock` commits it. The batch returns one row `(_, backend pid)`;
    /// a timeout (55P03) leaves the transaction aborted, to be rolled back.
    pub fn postgres_in_transaction(
        table: &TableName,
        row_id: &str,
        timeout: std::time::Duration,
    ) -> KeyLock {
        let key = advisory_key(&format!("fsmstore:row:{}:{row_id}", table.as_str()));
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128);
        KeyLock {
            lock: format!(
                "BEGIN; SET LOCAL lock_timeout = '{ms}ms'; \
                 SELECT pg_advisory_xact_lock({key}), pg_backend_pid()"
            ),
            unlock: "COMMIT".to_owned(),
            name: String::new(),
        }
    }

    /// `GET_LOCK` under `fsm:<table hash>:<row id hash>` (29 characters, whatever the
    /// table and id).
    pub fn mysql(table: &TableName, row_id: &str) -> KeyLock {
        use crate::table_name::{fnv1a, fnv1a64};
        KeyLock {
            lock: "SELECT GET_LOCK(?, ?), CONNECTION_ID()".to_owned(),
            unlock: "SELECT RELEASE_LOCK(?)".to_owned(),
            name: format!(
                "fsm:{:08x}:{:016x}",
                fnv1a(table.as_str().as_bytes()),
                fnv1a64(row_id.as_bytes())
            ),
        }
    }
}

/// A stable 64-bit key for `name`: the first 8 bytes of its SHA-256.
pub(super) fn advisory_key(name: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(name.as_bytes());
    let mut bytes = [0_u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}
