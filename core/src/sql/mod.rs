//! Every SQL statement fsmstore runs, per dialect, in one place.
//!
//! Backends never write SQL text: they take their dialect's statement set
//! ([`SqliteQueries`], [`PostgresQueries`], [`MysqlQueries`]) and
//! [`VersionQueries::for_table`], and bind values.
//! Identifiers come from validated [`TableName`]s; values are always bound parameters.
//! Each field documents the parameters it binds, in order, and the columns it returns.

mod mysql;
mod postgres;
mod sqlite;

use crate::dialect::Dialect;
use crate::layout::Layout;
use crate::options::StorageOptions;
use crate::table_name::TableName;

/// The condition "the data is empty" on a text data column (the aiogram layout): Python's
/// library writes `''` for empty data, fsmstore `NULL`; `'{}'` is empty too.
const EMPTY_TEXT_DATA: &str = "(data IS NULL OR data IN ('', '{}', 'null'))";

/// The condition "the row holds a state or data" in the aiogram layout. There fsmstore
/// never deletes a row: Python's library checks that a row exists, then updates it in a
/// second statement, so a row deleted in between would take Python's acknowledged write
/// with it. A cleared row stays, empty (`NULL` state and data), and reads, counts and
/// lists as absent.
const LIVE_TEXT_ROW: &str = "NOT (state IS NULL AND (data IS NULL OR data IN ('', '{}', 'null')))";

/// The statements every dialect has on the FSM table. Each dialect's own set
/// ([`SqliteQueries`], [`PostgresQueries`], [`MysqlQueries`]) embeds it as `row` and adds
/// exactly what that dialect runs besides, so a backend never meets a statement its
/// dialect lacks.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RowQueries {
    /// `(id)` → `state, data`.
    pub get_record: String,
    /// `(id)` → `state`.
    pub get_state: String,
    /// `(id)` → `data`.
    pub get_data: String,
    /// `(id, state)`: inserts the row or replaces its state.
    pub upsert_state: String,
    /// `(id)`: clears the state (see the dialect's set for how an empty row goes).
    pub clear_state: String,
    /// `(id, data)`: inserts the row or replaces its data (data is never empty here).
    pub upsert_data: String,
    /// `(id)`: empties the data (see the dialect's set for how an empty row goes).
    pub clear_data: String,
    /// `(id, state, data)`: inserts the row or replaces state and data together
    /// ([`Storage::set_record`](crate::Storage::set_record), and the write of a
    /// `transition` after the merge where the dialect merges in Rust). Either the state is
    /// set or the data is not empty: the backend deletes the row instead when both would be
    /// empty.
    pub upsert_record: String,
    /// `(id)`: deletes the row.
    pub delete: String,
    /// `()` → number of rows.
    pub count: String,
}

/// SQLite's statements: `update_data` and `transition` read, merge and write inside one
/// `BEGIN IMMEDIATE`, which is the lock; clearing a field is followed by
/// `delete_if_empty` in the same transaction.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqliteQueries {
    /// The statements every dialect has.
    pub row: RowQueries,
    /// `(id)`: deletes the row when it holds neither state nor data.
    pub delete_if_empty: String,
    /// `(id)` → one row `(fresh)` when a row was deleted: whether it was within the TTL
    /// (always 1 without one). `clear` answers with it.
    pub take: String,
}

impl SqliteQueries {
    /// The statements on `table`.
    pub fn new(table: &TableName) -> Self {
        sqlite::queries(&table.quoted(Dialect::Sqlite), None)
    }

    /// The statements on `table` for rows that expire after `ttl`
    /// ([`StorageOptions::ttl`](crate::StorageOptions::ttl)): reads skip expired rows,
    /// writes reset what an expired row held, `delete` returns whether the row was fresh.
    pub fn with_ttl(table: &TableName, ttl: Option<std::time::Duration>) -> Self {
        sqlite::queries(&table.quoted(Dialect::Sqlite), ttl)
    }

    /// The statements for `options`: its table, TTL and [`Layout`].
    pub fn for_options(options: &StorageOptions) -> Self {
        let t = options.table.quoted(Dialect::Sqlite);
        match options.layout {
            Layout::Fsmstore => sqlite::queries(&t, options.ttl),
            Layout::AiogramSqlalchemy => sqlite::aiogram_queries(&t),
        }
    }
}

/// PostgreSQL's statements: every operation is one statement. `clear_state` and
/// `clear_data` delete the row themselves when it would hold nothing.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PostgresQueries {
    /// The statements every dialect has.
    pub row: RowQueries,
    /// `(id, field)` → the field's JSON value, SQL `NULL` when absent.
    pub get_value: String,
    /// `(id, patch)` → merged `data`: the whole shallow merge (`jsonb ||`) in one upsert.
    pub merge_data: String,
    /// `(id, state, patch)` → merged `data`: sets the state (`NULL` clears it) and merges
    /// the patch in one upsert. It never deletes: the backend runs `clear_state` instead for
    /// "no state, empty patch", the one case that can leave the row empty.
    pub transition: String,
    /// `(id)` → one row `(fresh)` when a row was deleted: whether it was within the TTL
    /// (always true without one). `clear` answers with it.
    pub take: String,
    /// `(id)` → the data the row keeps: `clear_state` for a `transition` to no state with
    /// no patch, which returns the data. Data no client can read (a number past `f64`)
    /// fails the statement (nothing written), as the other backends refuse it before
    /// writing. (`row.clear_state`, for `set_state(None)`, returns whether the data is
    /// empty and never reads it.)
    pub clear_state_data: String,
    /// `(id)`: deletes the row when it holds neither state nor data. Run after
    /// `clear_state` returned `{}` or `clear_data` returned a `NULL` state: a clear of the
    /// other column committed meanwhile, so neither statement saw the row empty.
    pub delete_if_empty: String,
}

impl PostgresQueries {
    /// The statements on `table`.
    pub fn new(table: &TableName) -> Self {
        postgres::queries(&table.quoted(Dialect::Postgres), None)
    }

    /// The statements on `table` for rows that expire after `ttl` (see
    /// [`SqliteQueries::with_ttl`]); `take` returns whether the deleted row was fresh.
    pub fn with_ttl(table: &TableName, ttl: Option<std::time::Duration>) -> Self {
        postgres::queries(&table.quoted(Dialect::Postgres), ttl)
    }

    /// The statements for `options`: its table, TTL and [`Layout`].
    pub fn for_options(options: &StorageOptions) -> Self {
        let t = options.table.quoted(Dialect::Postgres);
        match options.layout {
            Layout::Fsmstore => postgres::queries(&t, options.ttl),
            Layout::AiogramSqlalchemy => postgres::aiogram_queries(&t),
        }
    }
}

/// MySQL's and MariaDB's statements: neither server has a shallow-merge operator, so
/// `update_data` and `transition` run `lock_row`, read, merge in Rust and write in one
/// transaction; clearing a field is followed by `delete_if_empty` in the same transaction.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MysqlQueries {
    /// The statements every dialect has.
    pub row: RowQueries,
    /// `(id)`: deletes the row when it holds neither state nor data.
    pub delete_if_empty: String,
    /// `(id)`: inserts an empty row or takes an exclusive lock on the existing one, inside
    /// a transaction, before a read-merge-write.
    pub lock_row: String,
    /// `(id)`: deletes the row if it is within the TTL (any row without one); rows
    /// affected = whether `clear` found one.
    pub take: String,
    /// `(id)`: deletes the row if it expired (MySQL has no `DELETE … RETURNING`, so `clear`
    /// runs `take` then this; a row written in between is fresh and stays).
    pub delete_expired: String,
}

impl MysqlQueries {
    /// The statements on `table`.
    pub fn new(table: &TableName) -> Self {
        mysql::queries(&table.quoted(Dialect::Mysql), None)
    }

    /// The statements on `table` for rows that expire after `ttl` (see
    /// [`SqliteQueries::with_ttl`]).
    pub fn with_ttl(table: &TableName, ttl: Option<std::time::Duration>) -> Self {
        mysql::queries(&table.quoted(Dialect::Mysql), ttl)
    }

    /// The statements for `options`: its table, TTL and [`Layout`].
    pub fn for_options(options: &StorageOptions) -> Self {
        let t = options.table.quoted(Dialect::Mysql);
        match options.layout {
            Layout::Fsmstore => mysql::queries(&t, options.ttl),
            Layout::AiogramSqlalchemy => mysql::aiogram_queries(&t),
        }
    }
}

/// Whole-table statements for [`Inspect`](crate::Inspect). Rows come back as
/// `id, state, data, updated_at (unix ms)`; times are bound as unix milliseconds.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InspectQueries {
    /// `(after_id, limit)` → rows with `id > after_id`, by id.
    pub list: String,
    /// `(state, after_id, limit)` → rows in `state` with `id > after_id`, by id.
    pub list_by_state: String,
    /// `(id)` → the row.
    pub get_row: String,
    /// `()` → `state, COUNT(*)`, most common first.
    pub count_by_state: String,
    /// `()` → `COUNT(*), MIN(updated_at ms), MAX(updated_at ms)`.
    pub time_range: String,
    /// `(cutoff_ms)` → `COUNT(*)` of rows written before the cutoff.
    pub count_older: String,
    /// `(cutoff_ms, limit)`: deletes at most `limit` rows written before the cutoff.
    pub purge_batch: String,
    /// `()` → the database's clock, unix milliseconds (the expiry cutoff of `purge
    /// --expired` is taken from it, as reads and writes decide expiry with it).
    pub now_ms: String,
}

impl InspectQueries {
    /// The statements of `dialect` on `table`.
    pub fn for_table(dialect: Dialect, table: &TableName) -> InspectQueries {
        Self::for_layout(dialect, table, Layout::Fsmstore)
    }

    /// The statements of `dialect` on `table` in `layout`. In a layout without
    /// `updated_at` rows report it as `NULL` and no row is older than a cutoff (backends
    /// refuse to purge by age there before running anything).
    pub fn for_layout(dialect: Dialect, table: &TableName, layout: Layout) -> InspectQueries {
        let t = table.quoted(dialect);
        match dialect {
            Dialect::Sqlite => sqlite::inspect_queries(&t, layout),
            Dialect::Postgres => postgres::inspect_queries(&t, layout),
            Dialect::Mysql => mysql::inspect_queries(&t, layout),
        }
    }
}

/// How a table's rows look to the whole-table statements of one dialect and layout.
struct RowShape<'a> {
    /// The condition rows must meet to be listed, written as `"… AND "` (empty: every row).
    live: &'a str,
    /// The data column as the backend reads it.
    data: &'a str,
    /// `updated_at` as unix milliseconds.
    updated_ms: &'a str,
    /// "written before the cutoff" (`{cutoff}` is the bound unix ms).
    before: &'a str,
}

/// Builds [`InspectQueries`] from the row shape, the dialect's clock in unix ms, its
/// placeholders (`p(n)` is the n-th) and whether `DELETE … LIMIT` exists (MySQL; elsewhere a
/// limited id subquery, which MySQL in turn refuses).
fn inspect_queries(
    t: &str,
    now_ms: &str,
    rows: RowShape<'_>,
    p: impl Fn(usize) -> String,
    delete_limit: bool,
) -> InspectQueries {
    let RowShape {
        live,
        data,
        updated_ms,
        before,
    } = rows;
    let columns = format!("id, state, {data}, {updated_ms}");
    let older = before.replace("{cutoff}", &p(1));
    let purge_batch = if delete_limit {
        format!("DELETE FROM {t} WHERE {older} LIMIT {}", p(2))
    } else {
        // The age test again on the outer DELETE: a row rewritten between the subquery and
        // the delete (PostgreSQL rechecks only the id) is fresh and stays.
        format!(
            "DELETE FROM {t} WHERE {older} AND id IN (SELECT id FROM {t} WHERE {older} LIMIT {})",
            p(2)
        )
    };
    InspectQueries {
        list: format!(
            "SELECT {columns} FROM {t} WHERE {live}id > {} ORDER BY id LIMIT {}",
            p(1),
            p(2)
        ),
        list_by_state: format!(
            "SELECT {columns} FROM {t} WHERE {live}state = {} AND id > {} ORDER BY id LIMIT {}",
            p(1),
            p(2),
            p(3)
        ),
        get_row: format!("SELECT {columns} FROM {t} WHERE {live}id = {}", p(1)),
        count_by_state: format!(
            "SELECT state, COUNT(*) AS n FROM {t} WHERE {live}1 = 1 GROUP BY state ORDER BY n DESC, state"
        ),
        time_range: format!(
            "SELECT COUNT(*), MIN({updated_ms}), MAX({updated_ms}) FROM {t} WHERE {live}1 = 1"
        ),
        count_older: format!("SELECT COUNT(*) FROM {t} WHERE {older}"),
        purge_batch,
        now_ms: format!("SELECT {now_ms}"),
    }
}

/// Statements on the version table, which records applied migrations of any number of FSM
/// tables (its key is `(table_name, version)`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VersionQueries {
    /// `()`: creates the version table if it does not exist.
    pub create: String,
    /// `(table_name)` → `version, description, installed_on (unix ms), success, checksum,
    /// execution_time_ms`, by version.
    pub select_applied: String,
    /// `(table_name, version, description, success, checksum, execution_time_ms)`.
    pub insert: String,
    /// `(success, execution_time_ms, table_name, version)`.
    pub mark_success: String,
    /// `(success, table_name, version)`: marks a row unfinished or finished, keeping its
    /// execution time (a MySQL down step).
    pub set_success: String,
    /// `(table_name, version)`.
    pub delete: String,
    /// `(bare table name)` → `COUNT(*)`: 1 when that table exists in the current
    /// database/schema, else 0.
    pub table_exists: String,
}

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
            name: version_table.as_str().to_owned(),
            table,
        }
    }
}

/// MySQL / MariaDB: version tables made before fsmstore 0.2 compared `table_name` with the
/// server's default collation, case-insensitively (`Order` and `order` shared rows). The
/// migrator checks and, once, repairs it under its lock.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MysqlVersionRepair {
    /// `(bare version table name)` → the collation of its `table_name` column.
    pub check: String,
    /// Makes `table_name` byte-exact (`ascii_bin`; table names are ASCII identifiers).
    pub repair: String,
    /// The collation `check` returns once repaired.
    pub collation: &'static str,
}

impl MysqlVersionRepair {
    /// The statements for `version_table`.
    pub fn new(version_table: &TableName) -> Self {
        MysqlVersionRepair {
            check: "SELECT COLLATION_NAME FROM information_schema.COLUMNS \
                    WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = 'table_name'"
                .to_owned(),
            repair: format!(
                "ALTER TABLE {} MODIFY table_name VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL",
                version_table.quoted(Dialect::Mysql)
            ),
            collation: "ascii_bin",
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
fn advisory_key(name: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(name.as_bytes());
    let mut bytes = [0_u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// `DROP TABLE IF EXISTS` for `table` (cleanup of scratch tables; never run by migrations).
pub fn drop_table_if_exists(dialect: Dialect, table: &TableName) -> String {
    format!("DROP TABLE IF EXISTS {}", table.quoted(dialect))
}

impl VersionQueries {
    /// The statements of `dialect` on version table `version_table`.
    pub fn for_table(dialect: Dialect, version_table: &TableName) -> VersionQueries {
        let v = version_table.quoted(dialect);
        match dialect {
            Dialect::Sqlite => sqlite::version_queries(&v),
            Dialect::Postgres => postgres::version_queries(&v),
            Dialect::Mysql => mysql::version_queries(&v),
        }
    }
}

/// Statements shared by every dialect (standard SQL, `?`-free apart from placeholders).
fn common_version_queries(v: &str, placeholders: [&str; 6]) -> (String, String, String, String) {
    let [p1, p2, p3, p4, p5, p6] = placeholders;
    (
        format!(
            "INSERT INTO {v} (table_name, version, description, success, checksum, execution_time_ms) \
             VALUES ({p1}, {p2}, {p3}, {p4}, {p5}, {p6})"
        ),
        format!("UPDATE {v} SET success = {p1}, execution_time_ms = {p2} WHERE table_name = {p3} AND version = {p4}"),
        format!("UPDATE {v} SET success = {p1} WHERE table_name = {p2} AND version = {p3}"),
        format!("DELETE FROM {v} WHERE table_name = {p1} AND version = {p2}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_locks_are_per_table_and_row_and_fit_mysql() {
        let (a, b) = (TableName::new("a").unwrap(), TableName::new("b").unwrap());
        let timeout = std::time::Duration::from_millis(1500);
        let pg = KeyLock::postgres(&a, "fsm:1:1", timeout);
        assert!(pg
            .lock
            .starts_with("SET lock_timeout = '1500ms'; SELECT pg_advisory_lock("));
        assert_ne!(pg.lock, KeyLock::postgres(&b, "fsm:1:1", timeout).lock);
        assert_ne!(pg.lock, KeyLock::postgres(&a, "fsm:1:2", timeout).lock);
        let long = "x".repeat(255);
        let my = KeyLock::mysql(&TableName::new("t".repeat(63)).unwrap(), &long);
        assert_eq!(my.name.len(), 29);
        assert_ne!(
            KeyLock::mysql(&a, "fsm:1:1").name,
            KeyLock::mysql(&b, "fsm:1:1").name
        );
        assert_ne!(
            KeyLock::mysql(&a, "fsm:1:1").name,
            KeyLock::mysql(&a, "fsm:1:2").name
        );
    }

    #[test]
    fn advisory_keys_are_stable_and_distinct() {
        assert_eq!(advisory_key("fsmstore:a"), advisory_key("fsmstore:a"));
        assert_ne!(advisory_key("fsmstore:a"), advisory_key("fsmstore:b"));
    }

    #[test]
    fn version_statements_bind_in_the_documented_order() {
        let v = TableName::new("fsm_v").unwrap();
        assert_eq!(
            drop_table_if_exists(Dialect::Mysql, &v),
            "DROP TABLE IF EXISTS `fsm_v`"
        );
        let q = VersionQueries::for_table(Dialect::Postgres, &v);
        assert_eq!(
            q.insert,
            "INSERT INTO \"fsm_v\" (table_name, version, description, success, checksum, \
             execution_time_ms) VALUES ($1, $2, $3, $4, $5, $6)"
        );
        assert_eq!(
            q.mark_success,
            "UPDATE \"fsm_v\" SET success = $1, execution_time_ms = $2 WHERE table_name = $3 AND version = $4"
        );
        assert_eq!(
            q.set_success,
            "UPDATE \"fsm_v\" SET success = $1 WHERE table_name = $2 AND version = $3"
        );
        assert_eq!(
            q.delete,
            "DELETE FROM \"fsm_v\" WHERE table_name = $1 AND version = $2"
        );
        let q = VersionQueries::for_table(Dialect::Sqlite, &v);
        assert!(
            q.delete.ends_with("table_name = ?1 AND version = ?2"),
            "{}",
            q.delete
        );
    }

    #[test]
    fn statements_quote_the_table() {
        let table = TableName::new("fsm_x").unwrap();
        let rows = [
            (Dialect::Sqlite, SqliteQueries::new(&table).row),
            (Dialect::Postgres, PostgresQueries::new(&table).row),
            (Dialect::Mysql, MysqlQueries::new(&table).row),
        ];
        for (dialect, q) in rows {
            let quoted = table.quoted(dialect);
            for sql in [
                &q.get_record,
                &q.get_state,
                &q.upsert_state,
                &q.upsert_data,
                &q.delete,
            ] {
                assert!(sql.contains(&quoted), "{dialect}: {sql}");
            }
            let v = VersionQueries::for_table(dialect, &TableName::new("fsm_v").unwrap());
            assert!(v
                .create
                .contains(&TableName::new("fsm_v").unwrap().quoted(dialect)));
        }
    }

    #[test]
    fn mysql_lock_names_fit_get_lock() {
        let long = TableName::new("v".repeat(63)).unwrap();
        assert_eq!(MigrationLock::mysql(&long).name.chars().count(), 64);
    }
}
