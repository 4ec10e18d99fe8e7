//! aiogram's `RedisStorage` layout, byte for byte: the state in `<id>:state` (plain text),
//! the data in `<id>:data` (JSON text), both deleted when emptied, so a Python bot on
//! aiogram's `RedisStorage` and a Rust bot on fsmstore share one Redis in both directions.
//!
//! Every call is one command or one script (one round trip, atomic). A merge
//! (`update_data`, `transition`) runs in Lua on the stored *text*: the script finds the
//! top-level members of the stored object without decoding their values, drops the ones
//! the patch names and appends the patch's, serialized by serde_json. Nothing decodes a
//! number (Lua's cjson would re-encode it with 14 significant digits), so every number
//! round-trips by value, also the ones a Python bot wrote. Text that is not a JSON object
//! is corrupt data, reported before anything is written.
//!
//! Expiry: with `ttl` one TTL per dialogue, reset on both keys by each write (as on every
//! backend). With aiogram's own `state_ttl`/`data_ttl` each write sets only the TTL of the
//! key it writes, as aiogram does: the state may expire before the data, or after it.

use std::sync::Arc;

use async_trait::async_trait;
use fsmstore_core::{
    parse_data, validate_data, validate_state, Data, Error, Record, Replay, Result, Storage,
    StorageKey, StorageOptions, StoredRow,
};
use redis::Script;

use crate::connections::Connections;
use crate::keyspace::Shape;
use crate::rows::Rows;

/// Lua helpers every script of this layout starts with: writing a key with its TTL, and
/// refreshing the other key's TTL under one TTL per dialogue.
const PRELUDE: &str = r"
local function put(key, value, ttl)
  if ttl ~= '0' then redis.call('SET', key, value, 'PX', ttl) else redis.call('SET', key, value) end
end
local function touch(key, ttl, both)
  if both == '1' and ttl ~= '0' then redis.call('PEXPIRE', key, ttl) end
end
";

/// The top-level members of a JSON object text, values kept as text; `nil` for text that
/// is not a JSON object. Keys are decoded (cjson decodes strings exactly); scalar values
/// are checked against JSON's grammar, containers by cjson (which never sees a number it
/// would write back).
pub(crate) const MEMBERS: &str = r"
local function ws(s, i)
  while true do
    local c = s:byte(i)
    if c == 32 or c == 9 or c == 10 or c == 13 then i = i + 1 else return i end
  end
end
local function str_end(s, i)
  i = i + 1
  while true do
    local c = s:byte(i)
    if not c then return nil end
    if c == 92 then i = i + 2 elseif c == 34 then return i + 1 else i = i + 1 end
  end
end
local function value_end(s, i)
  local c = s:byte(i)
  if not c then return nil end
  if c == 34 then return str_end(s, i) end
  if c == 123 or c == 91 then
    local start, depth = i, 0
    while true do
      c = s:byte(i)
      if not c then return nil end
      if c == 34 then
        i = str_end(s, i)
        if not i then return nil end
      else
        if c == 123 or c == 91 then depth = depth + 1
        elseif c == 125 or c == 93 then
          depth = depth - 1
          if depth == 0 then
            if not pcall(cjson.decode, s:sub(start, i)) then return nil end
            return i + 1
          end
        end
        i = i + 1
      end
    end
  end
  local j = i
  while true do
    c = s:byte(j)
    if not c or c == 44 or c == 125 or c == 93 or c == 32 or c == 9 or c == 10 or c == 13 then break end
    j = j + 1
  end
  local word = s:sub(i, j - 1)
  if word == 'true' or word == 'false' or word == 'null' then return j end
  if word:match('^%-?0$') or word:match('^%-?[1-9]%d*$') or word:match('^%-?0%.%d+$')
    or word:match('^%-?[1-9]%d*%.%d+$') or word:match('^%-?0[eE][%+%-]?%d+$')
    or word:match('^%-?[1-9]%d*[eE][%+%-]?%d+$') or word:match('^%-?0%.%d+[eE][%+%-]?%d+$')
    or word:match('^%-?[1-9]%d*%.%d+[eE][%+%-]?%d+$') then
    return j
  end
  return nil
end
local function members(s)
  local out = {}
  if not s then return out end
  local i = ws(s, 1)
  if s:byte(i) == nil then return out end
  if s:sub(i, i + 3) == 'null' and s:byte(ws(s, i + 4)) == nil then return out end
  if s:byte(i) ~= 123 then return nil end
  i = ws(s, i + 1)
  if s:byte(i) == 125 then
    if s:byte(ws(s, i + 1)) ~= nil then return nil end
    return out
  end
  while true do
    if s:byte(i) ~= 34 then return nil end
    local ke = str_end(s, i)
    if not ke then return nil end
    local ktext = s:sub(i, ke - 1)
    local ok, key = pcall(cjson.decode, ktext)
    if not ok or type(key) ~= 'string' then return nil end
    i = ws(s, ke)
    if s:byte(i) ~= 58 then return nil end
    i = ws(s, i + 1)
    local ve = value_end(s, i)
    if not ve then return nil end
    out[#out + 1] = {key, ktext, s:sub(i, ve - 1)}
    i = ws(s, ve)
    local c = s:byte(i)
    if c == 44 then
      i = ws(s, i + 1)
    elseif c == 125 then
      if s:byte(ws(s, i + 1)) ~= nil then return nil end
      return out
    else
      return nil
    end
  end
end
";

/// `KEYS` state, data; `ARGV[1]` state TTL ms (`0`: none), `ARGV[2]` data TTL ms,
/// `ARGV[3]` `1` for one TTL per dialogue; `ARGV[4]` the state (empty: delete it).
const SET_STATE: &str = r"
if ARGV[4] == '' then redis.call('DEL', KEYS[1]) else put(KEYS[1], ARGV[4], ARGV[1]) end
touch(KEYS[2], ARGV[2], ARGV[3])
return 1
";

/// `ARGV[4]` the data's JSON text (empty: delete it).
const SET_DATA: &str = r"
if ARGV[4] == '' then redis.call('DEL', KEYS[2]) else put(KEYS[2], ARGV[4], ARGV[2]) end
touch(KEYS[1], ARGV[1], ARGV[3])
return 1
";

/// `ARGV[4]` the state, `ARGV[5]` the data text (empty: delete each).
const SET_RECORD: &str = r"
if ARGV[4] == '' then redis.call('DEL', KEYS[1]) else put(KEYS[1], ARGV[4], ARGV[1]) end
if ARGV[5] == '' then redis.call('DEL', KEYS[2]) else put(KEYS[2], ARGV[5], ARGV[2]) end
return 1
";

/// `ARGV[4]` `k` keep the state, `c` delete it, `s` set it to `ARGV[5]`; `ARGV[6..]`
/// triples: the patch's key (raw), its JSON text, its value's JSON text. Returns
/// `{1, merged text}`, or `{0, reason}` with nothing written.
const MERGE: &str = r"
local stored = redis.call('GET', KEYS[2])
local old = members(stored or nil)
if not old then return {0, 'the stored data is not a JSON object'} end
local patched, parts = {}, {}
for i = 6, #ARGV, 3 do patched[ARGV[i]] = true end
for _, m in ipairs(old) do
  if not patched[m[1]] then parts[#parts + 1] = m[2] .. ':' .. m[3] end
end
for i = 6, #ARGV, 3 do parts[#parts + 1] = ARGV[i + 1] .. ':' .. ARGV[i + 2] end
local text = '{' .. table.concat(parts, ',') .. '}'
local wrote = false
if ARGV[4] == 's' then put(KEYS[1], ARGV[5], ARGV[1]); wrote = true
elseif ARGV[4] == 'c' then redis.call('DEL', KEYS[1]); wrote = true end
if #ARGV >= 6 then
  if #parts == 0 then redis.call('DEL', KEYS[2]) else put(KEYS[2], text, ARGV[2]) end
  touch(KEYS[1], ARGV[1], ARGV[3])
elseif wrote then
  touch(KEYS[2], ARGV[2], ARGV[3])
end
if #parts == 0 then return {1, '{}'} end
return {1, text}
";

/// `KEYS` state, data: `{state, data text}`.
const GET_RECORD: &str = r"
return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])}
";

/// `KEYS` state, data; `ARGV[1]`/`ARGV[3]` `1` where the state/data key was read holding
/// `ARGV[2]`/`ARGV[4]`, `0` where it was missing; `ARGV[5]` the new state and `ARGV[6]` the
/// new data text (empty: none, the key deleted). Writes only if both keys are exactly as
/// read; a key that stays keeps its expiry, a key made new takes the other's. Returns 1
/// when it wrote.
const REWRITE: &str = r"
local function same(key, present, value)
  local now = redis.call('GET', key)
  if present == '1' then return now == value else return now == false end
end
if not same(KEYS[1], ARGV[1], ARGV[2]) or not same(KEYS[2], ARGV[3], ARGV[4]) then return 0 end
local ttls = {redis.call('PTTL', KEYS[1]), redis.call('PTTL', KEYS[2])}
local other = 0
for _, t in ipairs(ttls) do if t > 0 then other = t end end
for i, value in ipairs({ARGV[5], ARGV[6]}) do
  local key = KEYS[i]
  if value == '' then redis.call('DEL', key)
  elseif ttls[i] ~= -2 then redis.call('SET', key, value, 'KEEPTTL')
  elseif other > 0 then redis.call('SET', key, value, 'PX', other)
  else redis.call('SET', key, value) end
end
return 1
";

/// The scripts, hashed once.
struct Scripts {
    set_state: Script,
    set_data: Script,
    set_record: Script,
    /// SET_RECORD where the dialogue has neither key (`put_row` without replacing).
    insert_record: Script,
    rewrite: Script,
    merge: Script,
    get_record: Script,
}

/// aiogram's layout on the connections of a storage.
pub(crate) struct AiogramLayout {
    conns: Arc<Connections>,
    prefix: String,
    scripts: Scripts,
    /// TTL ms of the state key, of the data key, and `1` for one TTL per dialogue.
    ttl: [String; 3],
}

/// The two keys of a dialogue.
struct Keys {
    state: String,
    data: String,
    id: String,
}

impl AiogramLayout {
    pub(crate) fn new(conns: Arc<Connections>, prefix: String) -> Self {
        let config = conns.config();
        let ms = |ttl: Option<std::time::Duration>| {
            ttl.map_or(0, |ttl| ttl.as_millis().max(1)).to_string()
        };
        let ttl = match config.options.ttl {
            Some(ttl) => [ms(Some(ttl)), ms(Some(ttl)), "1".to_owned()],
            None => [ms(config.state_ttl), ms(config.data_ttl), "0".to_owned()],
        };
        let with_prelude = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        AiogramLayout {
            prefix,
            ttl,
            scripts: Scripts {
                set_state: with_prelude(SET_STATE),
                set_data: with_prelude(SET_DATA),
                set_record: with_prelude(SET_RECORD),
                rewrite: Script::new(REWRITE),
                insert_record: with_prelude(&format!(
                    "if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end\n{SET_RECORD}"
                )),
                merge: Script::new(&format!("{PRELUDE}{MEMBERS}{MERGE}")),
                get_record: Script::new(GET_RECORD),
            },
            conns,
        }
    }

    fn keys_of(&self, id: String) -> Keys {
        Keys {
            state: format!("{}{id}:state", self.prefix),
            data: format!("{}{id}:data", self.prefix),
            id,
        }
    }

    fn keys(&self, key: &StorageKey) -> Result<Keys> {
        Ok(self.keys_of(self.options().row_id(key)?))
    }

    /// The state and data keys' values as stored.
    async fn raw(&self, keys: &Keys) -> Result<(Option<String>, Option<String>)> {
        self.conns
            .call("get_row", Replay::Safe, |mut conn| {
                let mut call = self.scripts.get_record.key(&keys.state);
                call.key(&keys.data);
                async move { call.invoke_async(&mut conn).await }
            })
            .await
    }

    /// Runs `script` on the keys with the TTL arguments and `args`.
    async fn write(
        &self,
        operation: &'static str,
        script: &Script,
        keys: &Keys,
        args: &[&str],
    ) -> Result<()> {
        self.write_expiring(operation, script, keys, &self.ttl, args)
            .await
            .map(drop)
    }

    /// [`write`](Self::write) with the TTL arguments `ttl`; the script's answer.
    async fn write_expiring(
        &self,
        operation: &'static str,
        script: &Script,
        keys: &Keys,
        ttl: &[String; 3],
        args: &[&str],
    ) -> Result<i64> {
        self.conns
            .write(operation, &keys.state, |mut conn| {
                let mut call = script.key(&keys.state);
                call.key(&keys.data);
                for arg in ttl.iter().map(String::as_str).chain(args.iter().copied()) {
                    call.arg(arg);
                }
                async move { call.invoke_async::<i64>(&mut conn).await }
            })
            .await
    }

    /// Runs MERGE: `state` is `None` to keep the state, `Some(None)` to delete it.
    async fn merge(
        &self,
        operation: &'static str,
        keys: &Keys,
        state: Option<Option<&str>>,
        patch: &Data,
    ) -> Result<Data> {
        let mut triples = Vec::with_capacity(patch.len());
        for (name, value) in patch {
            let name_text = serde_json::to_string(name).map_err(Error::Serialization)?;
            let value_text = serde_json::to_string(value).map_err(Error::Serialization)?;
            triples.push((name.as_str(), name_text, value_text));
        }
        let (mode, state) = match state {
            None => ("k", ""),
            Some(None) => ("c", ""),
            Some(Some(state)) => ("s", state),
        };
        let (done, text): (i64, String) = self
            .conns
            .write(operation, &keys.state, |mut conn| {
                let mut call = self.scripts.merge.key(&keys.state);
                call.key(&keys.data);
                for arg in &self.ttl {
                    call.arg(arg);
                }
                call.arg(mode).arg(state);
                for (name, name_text, value_text) in &triples {
                    call.arg(*name).arg(name_text).arg(value_text);
                }
                async move { call.invoke_async(&mut conn).await }
            })
            .await?;
        if done != 1 {
            return Err(Error::CorruptData {
                key: keys.id.clone(),
                reason: format!("{text}; nothing was written"),
            });
        }
        parse_data(&keys.id, &text)
    }

    /// GET of one key.
    async fn get(&self, operation: &'static str, key: &str) -> Result<Option<String>> {
        self.conns
            .call(operation, Replay::Safe, |mut conn| async move {
                redis::cmd("GET").arg(key).query_async(&mut conn).await
            })
            .await
    }
}

/// The stored data text of `id` as data: none is `{}`.
fn data_of(id: &str, text: Option<&str>) -> Result<Data> {
    text.map_or_else(|| Ok(Data::new()), |text| parse_data(id, text))
}

#[async_trait]
impl Storage for AiogramLayout {
    async fn get_state(&self, key: &StorageKey) -> Result<Option<String>> {
        let keys = self.keys(key)?;
        self.get("get_state", &keys.state).await
    }

    async fn set_state(&self, key: &StorageKey, state: Option<&str>) -> Result<()> {
        if let Some(state) = state {
            validate_state(state)?;
        }
        let keys = self.keys(key)?;
        let script = &self.scripts.set_state;
        self.write("set_state", script, &keys, &[state.unwrap_or("")])
            .await
    }

    async fn get_data(&self, key: &StorageKey) -> Result<Data> {
        let keys = self.keys(key)?;
        let text = self.get("get_data", &keys.data).await?;
        data_of(&keys.id, text.as_deref())
    }

    async fn set_data(&self, key: &StorageKey, data: &Data) -> Result<()> {
        let keys = self.keys(key)?;
        let text = if data.is_empty() {
            String::new()
        } else {
            validate_data(&keys.id, data, self.options().max_data_bytes)?
        };
        let script = &self.scripts.set_data;
        self.write("set_data", script, &keys, &[&text]).await
    }

    async fn update_data(&self, key: &StorageKey, patch: &Data) -> Result<Data> {
        if patch.is_empty() {
            return self.get_data(key).await;
        }
        let keys = self.keys(key)?;
        validate_data(&keys.id, patch, self.options().max_data_bytes)?;
        self.merge("update_data", &keys, None, patch).await
    }

    async fn transition(
        &self,
        key: &StorageKey,
        state: Option<&str>,
        patch: &Data,
    ) -> Result<Data> {
        let id = self.options().transition_row_id(key, state, patch)?;
        let keys = self.keys_of(id);
        self.merge("transition", &keys, Some(state), patch).await
    }

    async fn set_record(&self, key: &StorageKey, state: Option<&str>, data: &Data) -> Result<()> {
        let (id, text) = self.options().record_row_id(key, state, data)?;
        let keys = self.keys_of(id);
        let text = if data.is_empty() { "" } else { text.as_str() };
        let script = &self.scripts.set_record;
        self.write("set_record", script, &keys, &[state.unwrap_or(""), text])
            .await
    }

    async fn get_record(&self, key: &StorageKey) -> Result<Record> {
        let keys = self.keys(key)?;
        let (state, text): (Option<String>, Option<String>) = self
            .conns
            .call("get_record", Replay::Safe, |mut conn| {
                let mut call = self.scripts.get_record.key(&keys.state);
                call.key(&keys.data);
                async move { call.invoke_async(&mut conn).await }
            })
            .await?;
        Ok(Record {
            state,
            data: data_of(&keys.id, text.as_deref())?,
        })
    }

    async fn clear(&self, key: &StorageKey) -> Result<bool> {
        let keys = self.keys(key)?;
        let deleted: i64 = self
            .conns
            .write("clear", &keys.state, |mut conn| {
                let keys = &keys;
                async move {
                    redis::cmd("DEL")
                        .arg(&keys.state)
                        .arg(&keys.data)
                        .query_async(&mut conn)
                        .await
                }
            })
            .await?;
        Ok(deleted > 0)
    }

    async fn key_count(&self) -> Result<u64> {
        crate::keyspace::count(&self.conns, &self.prefix, crate::keyspace::Shape::Aiogram).await
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
impl Rows for AiogramLayout {
    fn shape(&self) -> Shape {
        Shape::Aiogram
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
        let text = if data.is_empty() {
            String::new()
        } else {
            serde_json::to_string(data).map_err(Error::Serialization)?
        };
        let keys = self.keys_of(id.to_owned());
        // A TTL carried from the source replaces `ttl=`'s on both keys.
        let ttl = match ttl_ms {
            Some(ms) => {
                let ms = ms.max(1).to_string();
                [ms.clone(), ms, self.ttl[2].clone()]
            }
            None => self.ttl.clone(),
        };
        let script = if replace {
            &self.scripts.set_record
        } else {
            &self.scripts.insert_record
        };
        let written = self
            .write_expiring(
                "put_row",
                script,
                &keys,
                &ttl,
                &[state.unwrap_or(""), &text],
            )
            .await?;
        Ok(written == 1)
    }

    async fn rewrite(&self, old: &StoredRow, new: Option<(Option<&str>, &Data)>) -> Result<bool> {
        let keys = self.keys_of(old.id.clone());
        let (state, text) = self.raw(&keys).await?;
        if state.is_none() && text.is_none() {
            return Ok(false);
        }
        let now = StoredRow::from_text(keys.id.clone(), state.clone(), text.as_deref(), None);
        if now.corrupt.is_some() || now.state != old.state || now.data != old.data {
            return Ok(false);
        }
        let (new_state, new_text) = match new {
            Some((state, data)) if !data.is_empty() => (
                state.unwrap_or(""),
                serde_json::to_string(data).map_err(Error::Serialization)?,
            ),
            Some((state, _)) => (state.unwrap_or(""), String::new()),
            None => ("", String::new()),
        };
        let present = |v: &Option<String>| if v.is_some() { "1" } else { "0" };
        let args = [
            present(&state),
            state.as_deref().unwrap_or(""),
            present(&text),
            text.as_deref().unwrap_or(""),
            new_state,
            &new_text,
        ];
        let written: i64 = self
            .conns
            .write("rewrite_row", &keys.state, |mut conn| {
                let mut call = self.scripts.rewrite.key(&keys.state);
                call.key(&keys.data);
                for arg in args {
                    call.arg(arg);
                }
                async move { call.invoke_async::<i64>(&mut conn).await }
            })
            .await?;
        Ok(written == 1)
    }

    async fn row(&self, id: &str) -> Result<Option<StoredRow>> {
        let keys = self.keys_of(id.to_owned());
        let (state, text) = self.raw(&keys).await?;
        if state.is_none() && text.is_none() {
            return Ok(None);
        }
        Ok(Some(StoredRow::from_text(
            keys.id,
            state,
            text.as_deref(),
            None,
        )))
    }
}
