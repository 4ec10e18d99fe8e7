//! Migrations of a Redis keyspace: Redis has no schema, but it has layouts. Version 0 is
//! aiogram's `RedisStorage` layout (`<p><id>:state` and `<p><id>:data` strings), version 1
//! fsmstore's own (one hash `<q><id>` per dialogue). `migrate up` moves every dialogue
//! from the first to the second, `down` back: the step a team takes once the last Python
//! writer is gone (or to go back to one).
//!
//! * Each dialogue moves in one script (atomic: never half a dialogue in each layout),
//!   keeping its remaining TTL (with two TTLs in aiogram's layout, the longer; none if
//!   either key has none) and every data value's JSON text as it is (numbers by value).
//! * A `SCAN` page at a time, a bounded number of dialogues in flight.
//! * Under a migration lock (`<version key>:lock`, a lease renewed while the move runs),
//!   waiting at most `lock_timeout`.
//! * Only the dialogues whose ids start as the key builder's do (up to its first `:`,
//!   `fsm:` by default), so other keys of the database are never touched.
//! * Recorded under a version key of its own, `fsmstore-migrations:<q><fsm:>` (a hash: version
//!   → the applied migration as JSON), outside both layouts' key patterns. The row is
//!   written *dirty* before the first dialogue moves and made clean after the last: a move
//!   killed half-way is finished by running `migrate up` (or `down`) again, as every
//!   dialogue's move is idempotent.
//! * A dialogue present in both layouts (a writer of each ran) is not moved: the run ends
//!   with an error counting them, the record stays dirty, nothing is lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fsmstore_core::migrations::checksum;
use fsmstore_core::{
    now_ms, AppliedMigration, BotId, ChatId, DialogueLedger, Direction, Error, Layout, Migration,
    MigrationPlan, MigrationReport, MigrationSet, MigrationTarget, Migrator, Replay, Result,
    SchemaStatus, StampPlan, StorageKey, TableName, UserId,
};
use futures_util::{stream, StreamExt, TryStreamExt};
use redis::Script;

use crate::aiogram::MEMBERS;
use crate::connections::Connections;
use crate::keyspace::{self, Shape};
use crate::lease::Lease;

/// Dialogues moved at once.
const IN_FLIGHT: usize = 32;

/// What version 1 does, as recorded (its checksum is of this text).
const UP: &str = "-- fsmstore Redis layout 1: every dialogue of aiogram's RedisStorage layout\n\
-- (<prefix><id>:state, <prefix><id>:data) into fsmstore's (one hash <prefix><id>:\n\
-- field s the state, field .<name> each data field's JSON text), TTL kept.\n";
const DOWN: &str = "-- back: each hash into aiogram's two keys, TTL kept.\n";

/// `KEYS` state, data, hash: moves one dialogue into its hash. Returns 1 moved, 0 nothing
/// there, -1 the hash exists too (nothing moved), -2 the data is not a JSON object.
const UP_SCRIPT: &str = r"
local st = redis.call('GET', KEYS[1])
local dt = redis.call('GET', KEYS[2])
if not st and not dt then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
local m = members(dt or nil)
if not m then return -2 end
local ttl = -1
local t1, t2 = redis.call('PTTL', KEYS[1]), redis.call('PTTL', KEYS[2])
if st and dt then
  if t1 > 0 and t2 > 0 then ttl = math.max(t1, t2) end
elseif st then ttl = t1 else ttl = t2 end
if st then redis.call('HSET', KEYS[3], 's', st) end
for _, p in ipairs(m) do redis.call('HSET', KEYS[3], '.' .. p[1], p[3]) end
if ttl > 0 and redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PEXPIRE', KEYS[3], ttl) end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
";

/// `KEYS` hash, state, data: moves one dialogue back into aiogram's keys. Returns as
/// [`UP_SCRIPT`] (-1: one of aiogram's keys exists too).
const DOWN_SCRIPT: &str = r"
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
local st, parts = nil, {}
for i = 1, #h, 2 do
  local f, v = h[i], h[i + 1]
  if f == 's' then st = v elseif f:sub(1, 1) == '.' then parts[#parts + 1] = cjson.encode(f:sub(2)) .. ':' .. v end
end
local ttl = redis.call('PTTL', KEYS[1])
local function put(key, value)
  if ttl > 0 then redis.call('SET', key, value, 'PX', ttl) else redis.call('SET', key, value) end
end
if st then put(KEYS[2], st) end
if #parts > 0 then put(KEYS[3], '{' .. table.concat(parts, ',') .. '}') end
redis.call('DEL', KEYS[1])
return 1
";

/// The layout migrator of a Redis keyspace (see the module docs).
pub(crate) struct LayoutMigrator {
    conns: Arc<Connections>,
    aiogram_prefix: String,
    own_prefix: String,
    /// What the key builder's ids start with: the text up to its first `:` (`fsm:` by
    /// default). Only dialogues whose ids start so are moved.
    id_start: String,
    version_key: String,
    set: MigrationSet,
    lock_timeout: Duration,
    up: Script,
    down: Script,
}

/// What a move did.
#[derive(Default)]
struct Moved {
    moved: u64,
    conflicts: Vec<String>,
    corrupt: Vec<String>,
}

impl LayoutMigrator {
    pub(crate) fn new(conns: Arc<Connections>) -> Result<Self> {
        let config = conns.config();
        let own_prefix = config.prefix_of(Layout::Fsmstore);
        let probe = config
            .options
            .row_id(&StorageKey::new(BotId(1), ChatId(1), UserId(1)))?;
        let id_start = probe
            .find(':')
            .map_or(String::new(), |colon| probe[..=colon].to_owned());
        let table: TableName = config.options.table.clone();
        let set = MigrationSet::keyspace(
            &table,
            vec![Migration {
                version: 1,
                description: "redis_own_layout".to_owned(),
                up_sql: UP.to_owned(),
                down_sql: DOWN.to_owned(),
                up: vec![UP.to_owned()],
                down: vec![DOWN.to_owned()],
                checksum: checksum(UP),
            }],
        )?;
        Ok(LayoutMigrator {
            aiogram_prefix: config.prefix_of(Layout::AiogramSqlalchemy),
            version_key: format!("fsmstore-migrations:{own_prefix}{id_start}"),
            id_start,
            own_prefix,
            lock_timeout: config.lock_timeout,
            set,
            up: Script::new(&format!("{MEMBERS}{UP_SCRIPT}")),
            down: Script::new(DOWN_SCRIPT),
            conns,
        })
    }

    /// The error for a move stopped half-way (its record is dirty).
    fn half_way(&self, description: &str) -> Error {
        Error::MigrationFailed {
            version: 1,
            description: format!(
                "{description}: a layout move stopped half-way (every dialogue is whole, in one layout or the other); run `fsmstore migrate up` (or `down`) again to finish it"
            ),
            source: Box::new(Error::Migration(format!(
                "{} records it as not finished",
                self.version_key
            ))),
        }
    }

    /// What opening a storage with `schema=verify` checks: that the keyspace's recorded
    /// layout is the storage's (a keyspace moved to fsmstore's layout read in aiogram's
    /// would look empty), and that no move is half-way.
    pub(crate) async fn verify(&self, layout: Layout) -> Result<()> {
        let current = self.status().await?.current;
        if current == 1 && layout == Layout::AiogramSqlalchemy {
            return Err(Error::LayoutMismatch {
                table: self.version_key.clone(),
                layout,
                current,
                expected: 0,
                fix: "`fsmstore migrate up` moved this keyspace to fsmstore's layout: open it without layout=aiogram (or move it back with `fsmstore migrate down`)".to_owned(),
            });
        }
        Ok(())
    }

    /// The version key's rows (as the SQL version tables': version → applied migration).
    async fn rows(&self) -> Result<Vec<AppliedMigration>> {
        self.rows_of(&self.version_key).await
    }

    /// The rows of version hash `key`.
    async fn rows_of(&self, key: &str) -> Result<Vec<AppliedMigration>> {
        let fields: Vec<(i64, String)> = self
            .conns
            .call("migrations", Replay::Safe, |mut conn| async move {
                redis::cmd("HGETALL").arg(key).query_async(&mut conn).await
            })
            .await?;
        let mut rows = fields
            .into_iter()
            .map(|(version, text)| {
                let row: serde_json::Value = serde_json::from_str(&text).map_err(|err| {
                    Error::Migration(format!(
                        "{key}: version {version} is not a migration record: {err}"
                    ))
                })?;
                Ok(AppliedMigration {
                    version,
                    description: row["description"].as_str().unwrap_or_default().to_owned(),
                    installed_on_ms: row["installed_on_ms"].as_i64().unwrap_or_default(),
                    success: row["success"].as_bool().unwrap_or(false),
                    checksum: row["checksum"].as_str().unwrap_or_default().to_owned(),
                    execution_time_ms: row["execution_time_ms"].as_i64().unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        rows.sort_by_key(|row| row.version);
        Ok(rows)
    }

    /// Records version 1 (`success` false: a move under way), or removes it (`None`).
    async fn record(&self, row: Option<(bool, i64)>) -> Result<()> {
        let migration = self.migration();
        let text = row.map(|(success, execution_time_ms)| {
            serde_json::json!({
                "description": migration.description,
                "installed_on_ms": now_ms(),
                "success": success,
                "checksum": migration.checksum,
                "execution_time_ms": execution_time_ms,
            })
            .to_string()
        });
        self.conns
            .call("record migration", Replay::Safe, |mut conn| {
                let text = text.clone();
                async move {
                    match text {
                        Some(text) => {
                            redis::cmd("HSET")
                                .arg(&self.version_key)
                                .arg(1)
                                .arg(text)
                                .query_async::<i64>(&mut conn)
                                .await
                        }
                        None => {
                            redis::cmd("HDEL")
                                .arg(&self.version_key)
                                .arg(1)
                                .query_async::<i64>(&mut conn)
                                .await
                        }
                    }
                }
            })
            .await
            .map(drop)
    }

    /// The migration lock, waited for at most `lock_timeout`.
    async fn lock(&self) -> Result<Lease> {
        let key = format!("{}:lock", self.version_key);
        let deadline = Instant::now() + self.lock_timeout;
        Lease::take(&self.conns, key.clone(), deadline)
            .await?
            .ok_or(Error::MigrationLockTimeout {
                lock: key,
                waited: self.lock_timeout,
                holder: None,
            })
    }

    /// Moves every dialogue of the layout `from` into the other, a `SCAN` page at a time.
    async fn run_move(&self, direction: Direction) -> Result<Moved> {
        let (prefix, shape) = match direction {
            Direction::Up => (&self.aiogram_prefix, Shape::Aiogram),
            Direction::Down => (&self.own_prefix, Shape::Hashes),
        };
        let mut done = Moved::default();
        let mut pages = keyspace::IdPages::new(&self.conns, prefix, &self.id_start, shape).await?;
        while let Some(ids) = pages.next(&self.conns).await? {
            let results: Vec<(String, i64)> = stream::iter(ids)
                .map(|id| async move {
                    let moved = self.move_one(direction, &id).await?;
                    Ok::<_, Error>((id, moved))
                })
                .buffer_unordered(IN_FLIGHT)
                .try_collect()
                .await?;
            for (id, result) in results {
                match result {
                    1 => done.moved += 1,
                    -1 => done.conflicts.push(id),
                    -2 => done.corrupt.push(id),
                    _ => {}
                }
            }
            tracing::info!(
                target: "fsmstore",
                moved = done.moved,
                "fsmstore: moving Redis dialogues ({direction:?})"
            );
        }
        Ok(done)
    }

    /// Moves dialogue `id` (replay-safe: a dialogue moved already is not there to move).
    async fn move_one(&self, direction: Direction, id: &str) -> Result<i64> {
        let (state, data, hash) = (
            format!("{}{id}:state", self.aiogram_prefix),
            format!("{}{id}:data", self.aiogram_prefix),
            format!("{}{id}", self.own_prefix),
        );
        let (script, keys) = match direction {
            Direction::Up => (&self.up, [&state, &data, &hash]),
            Direction::Down => (&self.down, [&hash, &state, &data]),
        };
        self.conns
            .call("migrate", Replay::Safe, |mut conn| {
                let mut call = script.key(keys[0]);
                call.key(keys[1]).key(keys[2]);
                async move { call.invoke_async::<i64>(&mut conn).await }
            })
            .await
    }

    /// Version 1, the one migration.
    fn migration(&self) -> &Migration {
        self.set.get(1).expect("version 1 exists")
    }

    async fn migrate_locked(&self, target: MigrationTarget) -> Result<MigrationReport> {
        let rows = self.rows().await?;
        // A move killed half-way (its record dirty) is finished here, not refused: core's
        // planner checks the record as if it had finished (drift, versions it does not
        // know), and the move runs again in the direction asked.
        let dirty = rows.iter().any(|row| !row.success);
        let finished: Vec<AppliedMigration> = rows
            .into_iter()
            .map(|row| AppliedMigration {
                success: true,
                ..row
            })
            .collect();
        let plan = MigrationPlan::new(&self.set, &finished, target)?;
        let (current, target) = (plan.current, plan.target);
        if plan.is_empty() && !dirty {
            return Ok(MigrationReport {
                from: current,
                to: current,
                steps: Vec::new(),
            });
        }
        let direction = if target == 1 {
            Direction::Up
        } else {
            Direction::Down
        };
        let started = Instant::now();
        self.record(Some((false, 0))).await?;
        let moved = self.run_move(direction).await?;
        if !moved.conflicts.is_empty() || !moved.corrupt.is_empty() {
            let mut reasons = Vec::new();
            if !moved.conflicts.is_empty() {
                reasons.push(format!(
                    "{} dialogues exist in both layouts (writers of each ran; neither copy was touched): {}",
                    moved.conflicts.len(),
                    some(&moved.conflicts)
                ));
            }
            if !moved.corrupt.is_empty() {
                reasons.push(format!(
                    "{} dialogues hold data that is not a JSON object (left where they are): {}",
                    moved.corrupt.len(),
                    some(&moved.corrupt)
                ));
            }
            return Err(Error::MigrationFailed {
                version: 1,
                description: format!(
                    "{} ({} dialogues moved; run it again once these are resolved)",
                    self.migration().description,
                    moved.moved
                ),
                source: Box::new(Error::Migration(reasons.join("; "))),
            });
        }
        let elapsed = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        match direction {
            Direction::Up => self.record(Some((true, elapsed))).await?,
            Direction::Down => self.record(None).await?,
        }
        tracing::info!(
            target: "fsmstore",
            moved = moved.moved,
            "fsmstore: Redis keyspace at layout version {target}"
        );
        Ok(MigrationReport {
            from: current,
            to: target,
            steps: vec![(1, direction, elapsed)],
        })
    }

    /// Records `target` as core's stamp planner resolves it (head, base or a version).
    async fn stamp_locked(&self, target: MigrationTarget) -> Result<()> {
        let plan = StampPlan::new(&self.set, &self.rows().await?, target)?;
        if plan.target == 1 {
            self.record(Some((true, 0))).await
        } else {
            self.record(None).await
        }
    }
}

/// The ids in an error message: the first few.
fn some(ids: &[String]) -> String {
    let mut shown: Vec<&str> = ids.iter().take(5).map(String::as_str).collect();
    if ids.len() > shown.len() {
        shown.push("…");
    }
    shown.join(", ")
}

#[async_trait]
impl Migrator for LayoutMigrator {
    fn migrations(&self) -> &MigrationSet {
        &self.set
    }

    fn version_table(&self) -> &str {
        &self.version_key
    }

    async fn applied(&self) -> Result<Vec<AppliedMigration>> {
        self.rows().await
    }

    /// As every migrator's, but a move stopped half-way names its fix: running it again.
    async fn status(&self) -> Result<SchemaStatus> {
        let rows = self.rows().await?;
        if let Some(row) = rows.iter().find(|row| !row.success) {
            return Err(self.half_way(&row.description));
        }
        SchemaStatus::new(&self.set, &self.version_key, &rows)
    }

    /// A keyspace has no table to create: `migrate up` moves whatever aiogram's layout
    /// holds, so this is always `false`.
    async fn table_exists(&self) -> Result<bool> {
        Ok(false)
    }

    async fn migrate(&self, target: MigrationTarget) -> Result<MigrationReport> {
        let lock = self.lock().await?;
        let result = self.migrate_locked(target).await;
        lock.release().await;
        result
    }

    async fn stamp(&self, target: MigrationTarget) -> Result<()> {
        let lock = self.lock().await?;
        let result = self.stamp_locked(target).await;
        lock.release().await;
        result
    }

    async fn close(&self) -> Result<()> {
        self.conns.close();
        Ok(())
    }

    async fn dialogue_ledger(&self) -> Result<Box<dyn DialogueLedger + '_>> {
        Ok(Box::new(RedisLedger {
            key: self.dialogue_key(),
            migrator: self,
            lease: None,
        }))
    }

    /// Deletes the version records (the dialogues are the storage's: see
    /// `RedisStorage::drop_table`).
    async fn drop_tables(&self) -> Result<()> {
        self.record(None).await?;
        let key = self.dialogue_key();
        self.conns
            .call("drop dialogue migrations", Replay::Safe, |mut conn| {
                let key = &key;
                async move {
                    redis::cmd("DEL")
                        .arg(key)
                        .query_async::<i64>(&mut conn)
                        .await
                }
            })
            .await
            .map(drop)
    }
}

impl LayoutMigrator {
    /// The hash recording dialogue migrations (as `version_key` the layout's).
    fn dialogue_key(&self) -> String {
        self.version_key
            .replacen("fsmstore-migrations:", "fsmstore-dialogue-migrations:", 1)
    }
}

/// Dialogue migrations' history and lock on Redis: a hash of its own beside the layout's
/// version hash (version → the record as JSON), under the layout migrations' lock.
struct RedisLedger<'m> {
    migrator: &'m LayoutMigrator,
    key: String,
    lease: Option<Lease>,
}

impl RedisLedger<'_> {
    /// Sets field `version` to `record` (only where there is none, when `if_absent`).
    async fn put(&self, version: i64, record: String, if_absent: bool) -> Result<()> {
        let command = if if_absent { "HSETNX" } else { "HSET" };
        self.migrator
            .conns
            .call("record dialogue migration", Replay::Safe, |mut conn| {
                let (key, record) = (&self.key, &record);
                async move {
                    redis::cmd(command)
                        .arg(key)
                        .arg(version)
                        .arg(record)
                        .query_async::<i64>(&mut conn)
                        .await
                }
            })
            .await
            .map(drop)
    }
}

#[async_trait]
impl DialogueLedger for RedisLedger<'_> {
    async fn lock(&mut self) -> Result<()> {
        self.lease = Some(self.migrator.lock().await?);
        Ok(())
    }

    async fn unlock(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release().await;
        }
    }

    async fn recorded(&mut self) -> Result<Vec<AppliedMigration>> {
        self.migrator.rows_of(&self.key).await
    }

    async fn keep(&mut self) -> Result<()> {
        let held = match &self.lease {
            Some(lease) => lease.still_held().await?,
            None => false,
        };
        if held {
            return Ok(());
        }
        Err(Error::Migration(format!(
            "lost the migration lock {} while a dialogue step ran (its lease could not be renewed); the next start resumes the step",
            self.key
        )))
    }

    async fn start(&mut self, version: i64, description: &str, checksum: &str) -> Result<()> {
        let record = serde_json::json!({
            "description": description,
            "installed_on_ms": now_ms(),
            "success": false,
            "checksum": checksum,
            "execution_time_ms": 0,
        });
        self.put(version, record.to_string(), true).await
    }

    async fn finish(&mut self, version: i64, elapsed_ms: i64) -> Result<()> {
        let row = self
            .recorded()
            .await?
            .into_iter()
            .find(|row| row.version == version)
            .ok_or_else(|| {
                Error::Migration(format!(
                    "{}: dialogue step {version} finished but was never recorded as started",
                    self.key
                ))
            })?;
        let record = serde_json::json!({
            "description": row.description,
            "installed_on_ms": row.installed_on_ms,
            "success": true,
            "checksum": row.checksum,
            "execution_time_ms": elapsed_ms,
        });
        self.put(version, record.to_string(), false).await
    }
}
