//! fsmstore's own Redis layout: one hash per dialogue, so every call touches one key (one
//! hash slot on a cluster) and is one command or one script (one round trip, atomic).
//!
//! The hash of a dialogue holds the state in field `s` and each top-level data field
//! `name` in field `.name`, its value as JSON text written by serde_json. A merge
//! (`update_data`, `transition`) is an `HSET` of the patched fields: Redis never decodes
//! JSON, so numbers round-trip by value exactly (Lua's cjson would re-encode them with 14
//! significant digits). A dialogue holding nothing is no key: Redis deletes an empty hash.
//! With a TTL, every write resets the key's expiry in the same script.

use std::sync::Arc;

use async_trait::async_trait;
use fsmstore_core::{
    validate_data, validate_field, validate_state, Data, Error, Record, Replay, Result, Storage,
    StorageKey, StorageOptions, StoredRow,
};
use redis::Script;
use serde_json::Value;

use crate::connections::Connections;
use crate::keyspace::Shape;
use crate::rows::Rows;

/// The field holding the state.
const STATE: &str = "s";

/// `KEYS[1]` the dialogue; `ARGV[1]` TTL ms (`0`: none); `ARGV[2]` the state (empty:
/// clear it).
const SET_STATE: &str = r"
local k = KEYS[1]
if ARGV[2] == '' then redis.call('HDEL', k, 's') else redis.call('HSET', k, 's', ARGV[2]) end
if ARGV[1] ~= '0' then redis.call('PEXPIRE', k, ARGV[1]) end
return 1
";

/// `ARGV[1]` TTL ms; `ARGV[2..]` field, JSON pairs: replaces every data field.
/// (One `HDEL` and one `HSET` per thousand fields: `unpack` has a stack limit of about
/// 8 000 values.)
const SET_DATA: &str = r"
local k = KEYS[1]
local gone = {}
for _, f in ipairs(redis.call('HKEYS', k)) do
  if f ~= 's' then gone[#gone + 1] = f end
end
for i = 1, #gone, 1000 do redis.call('HDEL', k, unpack(gone, i, math.min(i + 999, #gone))) end
for i = 2, #ARGV, 2000 do redis.call('HSET', k, unpack(ARGV, i, math.min(i + 1999, #ARGV))) end
if ARGV[1] ~= '0' then redis.call('PEXPIRE', k, ARGV[1]) end
return 1
";

/// `ARGV[1]` TTL ms; `ARGV[2]` `k` keep the state, `c` clear it, `s` set it to `ARGV[3]`;
/// `ARGV[4..]` field, JSON pairs merged in. Returns the whole hash.
const MERGE: &str = r"
local k = KEYS[1]
if ARGV[2] == 's' then redis.call('HSET', k, 's', ARGV[3])
elseif ARGV[2] == 'c' then redis.call('HDEL', k, 's') end
for i = 4, #ARGV, 2000 do redis.call('HSET', k, unpack(ARGV, i, math.min(i + 1999, #ARGV))) end
if ARGV[1] ~= '0' then redis.call('PEXPIRE', k, ARGV[1]) end
return redis.call('HGETALL', k)
";

/// `ARGV[1]` TTL ms; `ARGV[2]` the state (empty: none); `ARGV[3..]` field, JSON pairs:
/// the whole dialogue replaced.
const SET_RECORD: &str = r"
local k = KEYS[1]
redis.call('DEL', k)
if ARGV[2] ~= '' then redis.call('HSET', k, 's', ARGV[2]) end
for i = 3, #ARGV, 2000 do redis.call('HSET', k, unpack(ARGV, i, math.min(i + 1999, #ARGV))) end
if ARGV[1] ~= '0' then redis.call('PEXPIRE', k, ARGV[1]) end
return 1
";

/// `ARGV[1]` n, `ARGV[2..2n+1]` the hash as read (field, value pairs); then the new state
/// (empty: none) and field, JSON pairs. Replaces the dialogue only if its hash is exactly
/// as read, keeping the key's expiry. Returns 1 when it wrote.
const REWRITE: &str = r"
local k = KEYS[1]
local n = tonumber(ARGV[1])
local now = redis.call('HGETALL', k)
if #now ~= 2 * n then return 0 end
local want = {}
for i = 2, 2 * n, 2 do want[ARGV[i]] = ARGV[i + 1] end
for i = 1, #now, 2 do
  if want[now[i]] ~= now[i + 1] then return 0 end
end
local ttl = redis.call('PTTL', k)
redis.call('DEL', k)
local s = 2 * n + 2
if ARGV[s] ~= '' then redis.call('HSET', k, 's', ARGV[s]) end
for i = s + 1, #ARGV, 2000 do redis.call('HSET', k, unpack(ARGV, i, math.min(i + 1999, #ARGV))) end
if ttl > 0 and redis.call('EXISTS', k) == 1 then redis.call('PEXPIRE', k, ttl) end
return 1
";

/// The scripts, hashed once.
struct Scripts {
    set_state: Script,
    set_data: Script,
    merge: Script,
    set_record: Script,
    /// SET_RECORD where the dialogue's key does not exist (`put_row` without replacing).
    insert_record: Script,
    rewrite: Script,
}

/// fsmstore's layout on the connections of a storage.
pub(crate) struct OwnLayout {
    conns: Arc<Connections>,
    prefix: String,
    scripts: Scripts,
}

/// The hash field of data field `name`.
fn field(name: &str) -> String {
    format!(".{name}")
}

/// `data` as hash field, JSON text pairs.
fn pairs(data: &Data) -> Result<Vec<(String, String)>> {
    data.iter()
        .map(|(name, value)| {
            let text = serde_json::to_string(value)
                .map_err(|err| Error::InvalidInput(format!("data field {name:?}: {err}")))?;
            Ok((field(name), text))
        })
        .collect()
}

/// A dialogue's hash as a record. A field that is not JSON is corrupt data.
pub(crate) fn record_of(id: &str, hash: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Record> {
    let mut record = Record::default();
    for (name, value) in hash {
        let corrupt = |reason: String| Error::CorruptData {
            key: id.to_owned(),
            reason,
        };
        let name =
            String::from_utf8(name).map_err(|_| corrupt("a field name is not UTF-8".into()))?;
        let value = String::from_utf8(value)
            .map_err(|_| corrupt(format!("field {name:?} is not UTF-8")))?;
        if name == STATE {
            record.state = Some(value);
        } else if let Some(data_field) = name.strip_prefix('.') {
            let parsed: Value = serde_json::from_str(&value)
                .map_err(|err| corrupt(format!("field {data_field:?}: {err}")))?;
            record.data.insert(data_field.to_owned(), parsed);
        }
    }
    Ok(record)
}

impl OwnLayout {
    pub(crate) fn new(conns: Arc<Connections>, prefix: String) -> Self {
        OwnLayout {
            conns,
            prefix,
            scripts: Scripts {
                set_state: Script::new(SET_STATE),
                set_data: Script::new(SET_DATA),
                merge: Script::new(MERGE),
                set_record: Script::new(SET_RECORD),
                rewrite: Script::new(REWRITE),
                insert_record: Script::new(&format!(
                    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n{SET_RECORD}"
                )),
            },
        }
    }

    /// The key and row id of `key`.
    fn key(&self, key: &StorageKey) -> Result<(String, String)> {
        let id = self.options().row_id(key)?;
        Ok((format!("{}{id}", self.prefix), id))
    }

    /// The TTL argument: milliseconds, `0` for none.
    fn ttl(&self) -> String {
        self.options()
            .ttl
            .map_or(0, |ttl| ttl.as_millis().max(1))
            .to_string()
    }

    /// Runs MERGE: `state` is `None` to keep the state, `Some(None)` to clear it.
    async fn merge(
        &self,
        operation: &'static str,
        key: &str,
        id: &str,
        state: Option<Option<&str>>,
        patch: &Data,
    ) -> Result<Data> {
        let pairs = pairs(patch)?;
        let (mode, state) = match state {
            None => ("k", ""),
            Some(None) => ("c", ""),
            Some(Some(state)) => ("s", state),
        };
        let ttl = self.ttl();
        let hash: Vec<(Vec<u8>, Vec<u8>)> = self
            .conns
            .write(operation, key, |mut conn| {
                let mut call = self.scripts.merge.key(key);
                call.arg(&ttl).arg(mode).arg(state);
                for (name, text) in &pairs {
                    call.arg(name).arg(text);
                }
                async move { call.invoke_async(&mut conn).await }
            })
            .await?;
        Ok(record_of(id, hash)?.data)
    }

    /// `script` (SET_RECORD, or its insert-only form) on row `id`: its whole dialogue
    /// replaced, expiring after `ttl` ms (`"0"`: never); the script's answer (0: the
    /// insert found the key there).
    async fn replace(
        &self,
        operation: &'static str,
        script: &Script,
        id: &str,
        state: Option<&str>,
        data: &Data,
        ttl: String,
    ) -> Result<i64> {
        let key = format!("{}{id}", self.prefix);
        let pairs = pairs(data)?;
        let state = state.unwrap_or("");
        self.conns
            .write(operation, &key, |mut conn| {
                let mut call = script.key(&key);
                call.arg(&ttl).arg(state);
                for (name, text) in &pairs {
                    call.arg(name).arg(text);
                }
                async move { call.invoke_async::<i64>(&mut conn).await }
            })
            .await
    }

    /// HGETALL of `key`.
    async fn hash(&self, operation: &'static str, key: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.conns
            .call(operation, Replay::Safe, |mut conn| async move {
                redis::cmd("HGETALL").arg(key).query_async(&mut conn).await
            })
            .await
    }
}

#[async_trait]
impl Storage for OwnLayout {
    async fn get_state(&self, key: &StorageKey) -> Result<Option<String>> {
        let (key, _) = self.key(key)?;
        self.conns
            .call("get_state", Replay::Safe, |mut conn| {
                let key = &key;
                async move {
                    redis::cmd("HGET")
                        .arg(key)
                        .arg(STATE)
                        .query_async(&mut conn)
                        .await
                }
            })
            .await
    }

    async fn set_state(&self, key: &StorageKey, state: Option<&str>) -> Result<()> {
        if let Some(state) = state {
            validate_state(state)?;
        }
        let (key, _) = self.key(key)?;
        let ttl = self.ttl();
        let state = state.unwrap_or("");
        if ttl == "0" {
            // No expiry to reset: one plain command, no script.
            let mut cmd = redis::cmd(if state.is_empty() { "HDEL" } else { "HSET" });
            cmd.arg(&key).arg(STATE);
            if !state.is_empty() {
                cmd.arg(state);
            }
            return self
                .conns
                .write("set_state", &key, |mut conn| {
                    let cmd = &cmd;
                    async move { cmd.query_async::<i64>(&mut conn).await }
                })
                .await
                .map(drop);
        }
        self.conns
            .write("set_state", &key, |mut conn| {
                let mut call = self.scripts.set_state.key(&key);
                call.arg(&ttl).arg(state);
                async move { call.invoke_async::<i64>(&mut conn).await }
            })
            .await
            .map(drop)
    }

    async fn get_data(&self, key: &StorageKey) -> Result<Data> {
        let (key, id) = self.key(key)?;
        Ok(record_of(&id, self.hash("get_data", &key).await?)?.data)
    }

    async fn set_data(&self, key: &StorageKey, data: &Data) -> Result<()> {
        let (key, id) = self.key(key)?;
        validate_data(&id, data, self.options().max_data_bytes)?;
        let pairs = pairs(data)?;
        let ttl = self.ttl();
        self.conns
            .write("set_data", &key, |mut conn| {
                let mut call = self.scripts.set_data.key(&key);
                call.arg(&ttl);
                for (name, text) in &pairs {
                    call.arg(name).arg(text);
                }
                async move { call.invoke_async::<i64>(&mut conn).await }
            })
            .await
            .map(drop)
    }

    async fn update_data(&self, key: &StorageKey, patch: &Data) -> Result<Data> {
        if patch.is_empty() {
            return self.get_data(key).await;
        }
        let (key, id) = self.key(key)?;
        validate_data(&id, patch, self.options().max_data_bytes)?;
        self.merge("update_data", &key, &id, None, patch).await
    }

    async fn transition(
        &self,
        key: &StorageKey,
        state: Option<&str>,
        patch: &Data,
    ) -> Result<Data> {
        let id = self.options().transition_row_id(key, state, patch)?;
        let key = format!("{}{id}", self.prefix);
        self.merge("transition", &key, &id, Some(state), patch)
            .await
    }

    async fn set_record(&self, key: &StorageKey, state: Option<&str>, data: &Data) -> Result<()> {
        let (id, _) = self.options().record_row_id(key, state, data)?;
        let script = &self.scripts.set_record;
        self.replace("set_record", script, &id, state, data, self.ttl())
            .await
            .map(drop)
    }

    async fn get_value(&self, key: &StorageKey, name: &str) -> Result<Option<Value>> {
        validate_field(name)?;
        let (key, id) = self.key(key)?;
        let name = field(name);
        let text: Option<String> = self
            .conns
            .call("get_value", Replay::Safe, |mut conn| {
                let (key, name) = (&key, &name);
                async move {
                    redis::cmd("HGET")
                        .arg(key)
                        .arg(name)
                        .query_async(&mut conn)
                        .await
                }
            })
            .await?;
        text.map(|text| {
            serde_json::from_str(&text).map_err(|err| Error::CorruptData {
                key: id.clone(),
                reason: format!("field {name:?}: {err}"),
            })
        })
        .transpose()
    }

    async fn get_record(&self, key: &StorageKey) -> Result<Record> {
        let (key, id) = self.key(key)?;
        record_of(&id, self.hash("get_record", &key).await?)
    }

    async fn clear(&self, key: &StorageKey) -> Result<bool> {
        let (key, _) = self.key(key)?;
        let deleted: i64 = self
            .conns
            .write("clear", &key, |mut conn| {
                let key = &key;
                async move { redis::cmd("DEL").arg(key).query_async(&mut conn).await }
            })
            .await?;
        Ok(deleted > 0)
    }

    async fn key_count(&self) -> Result<u64> {
        crate::keyspace::count(&self.conns, &self.prefix, crate::keyspace::Shape::Hashes).await
    }

    fn options(&self) -> &StorageOptions {
        &self.conns.config().options
    }

    async fn close(&self) -> Result<()> {
        self.conns.close();
        Ok(())
    }
}

#[async_trait]
impl Rows for OwnLayout {
    fn shape(&self) -> Shape {
        Shape::Hashes
    }

    fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn put(
        &self,
        id: &str,
        state: Option<&str>,
        data: &Data,
        ttl_ms: Option<u64>,
        replace: bool,
    ) -> Result<bool> {
        let ttl = ttl_ms.map_or_else(|| self.ttl(), |ms| ms.max(1).to_string());
        let script = if replace {
            &self.scripts.set_record
        } else {
            &self.scripts.insert_record
        };
        let written = self
            .replace("put_row", script, id, state, data, ttl)
            .await?;
        Ok(written == 1)
    }

    async fn rewrite(&self, old: &StoredRow, new: Option<(Option<&str>, &Data)>) -> Result<bool> {
        let key = format!("{}{}", self.prefix, old.id);
        let read = self.hash("rewrite_row", &key).await?;
        let same = !read.is_empty()
            && record_of(&old.id, read.clone())
                .is_ok_and(|now| now.state == old.state && now.data == old.data);
        if !same {
            return Ok(false);
        }
        let (state, pairs) = match new {
            Some((state, data)) => (state.unwrap_or(""), pairs(data)?),
            None => ("", Vec::new()),
        };
        let written: i64 = self
            .conns
            .write("rewrite_row", &key, |mut conn| {
                let mut call = self.scripts.rewrite.key(&key);
                call.arg(read.len());
                for (name, value) in &read {
                    call.arg(name.as_slice()).arg(value.as_slice());
                }
                call.arg(state);
                for (name, text) in &pairs {
                    call.arg(name).arg(text);
                }
                async move { call.invoke_async::<i64>(&mut conn).await }
            })
            .await?;
        Ok(written == 1)
    }

    async fn row(&self, id: &str) -> Result<Option<StoredRow>> {
        let key = format!("{}{id}", self.prefix);
        let hash = self.hash("get_row", &key).await?;
        if hash.is_empty() {
            return Ok(None);
        }
        // The data fields as one JSON object text, each value as stored: core reads it
        // (and reports what does not read) as on every backend.
        let mut state = None;
        let mut members = Vec::new();
        for (name, value) in hash {
            let name = String::from_utf8_lossy(&name).into_owned();
            let value = String::from_utf8_lossy(&value).into_owned();
            if name == STATE {
                state = Some(value);
            } else if let Some(data_field) = name.strip_prefix('.') {
                let name_text = serde_json::to_string(data_field).map_err(Error::Serialization)?;
                members.push(format!("{name_text}:{value}"));
            }
        }
        let text = format!("{{{}}}", members.join(","));
        Ok(Some(StoredRow::from_text(
            id.to_owned(),
            state,
            Some(&text),
            None,
        )))
    }
}
