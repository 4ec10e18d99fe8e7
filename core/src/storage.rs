//! The [`Storage`] trait and its typed helpers.

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::data::{json_type, Data, Record};
use crate::error::{Error, Result};
use crate::key::StorageKey;
use crate::options::StorageOptions;

/// Persistent FSM storage: a state and a data object per conversation key.
///
/// Object safe: bots hold an `Arc<dyn Storage>`. Every backend passes the conformance suite
/// in `fsmstore-conformance`, which enforces the behaviour written here.
///
/// The methods are `async` (through `async_trait`, which rustdoc shows desugared as
/// functions returning a boxed future). As written:
///
/// ```text
/// async fn get_state(&self, key: &StorageKey) -> Result<Option<String>>;
/// async fn set_state(&self, key: &StorageKey, state: Option<&str>) -> Result<()>;
/// async fn get_data(&self, key: &StorageKey) -> Result<Data>;
/// async fn set_data(&self, key: &StorageKey, data: &Data) -> Result<()>;
/// async fn update_data(&self, key: &StorageKey, patch: &Data) -> Result<Data>;
/// async fn transition(&self, key: &StorageKey, state: Option<&str>, patch: &Data) -> Result<Data>;
/// async fn set_record(&self, key: &StorageKey, state: Option<&str>, data: &Data) -> Result<()>;
/// async fn get_value(&self, key: &StorageKey, field: &str) -> Result<Option<Value>>;
/// async fn get_record(&self, key: &StorageKey) -> Result<Record>;
/// async fn clear(&self, key: &StorageKey) -> Result<bool>;
/// async fn key_count(&self) -> Result<u64>;
/// fn options(&self) -> &StorageOptions;
/// async fn close(&self) -> Result<()>;
/// ```
///
/// Ten are required. Three have a default that is as correct as any backend's own, with
/// no extra round trip and no lost atomicity: [`Storage::get_data`] (the data of
/// [`Storage::get_record`]), [`Storage::get_value`] (a field of [`Storage::get_data`]) and
/// [`Storage::set_state`] ([`Storage::transition`] with an empty patch). A backend
/// overrides them only to move fewer bytes.
///
/// Dropping a storage without [`Storage::close`] is fine: its connections close when the
/// last clone goes. `close` is for shutting down on purpose, so later calls fail fast.
///
/// # Input contract (every backend, decided in core before any SQL runs)
/// * A NUL character anywhere (a state, a key part such as the destiny or business
///   connection, a field name, a string value at any depth) is refused:
///   [`Error::InvalidInput`], or [`Error::InvalidKey`] for key parts. PostgreSQL can not
///   store it, so no backend does.
///   Every other character round-trips exactly, in states, ids, field names and values.
/// * Data nests at most [`MAX_DATA_DEPTH`](crate::MAX_DATA_DEPTH) (31) levels, the data
///   object itself included; deeper is [`Error::InvalidInput`] (MariaDB refuses 32).
/// * Numbers round-trip by value: every finite `f64` and every `i64`/`u64` reads back
///   equal as a number. PostgreSQL (`jsonb`) may change how a number is written: `1e16`
///   comes back as the integer `10000000000000000`, `-0.0` as `0.0`, so compare numbers
///   as numbers (`as_f64`, `as_i64`), not as `serde_json::Value` variants.
/// * Row ids compare byte for byte: keys whose ids differ only in trailing spaces or case
///   are different rows (MySQL/MariaDB since migration 4).
/// * States are 1–255 characters, ids at most 255 characters, data at most
///   `max_data_bytes` serialized.
///
/// # Behavior (every method)
/// * A row exists only while it holds a state or non-empty data; clearing both deletes it.
/// * Every call after [`Storage::close`] fails with [`Error::Closed`].
/// * Invalid input ([`Error::InvalidKey`], [`Error::InvalidInput`], [`Error::ValueTooLarge`])
///   is rejected before anything is written.
/// * A lost connection is reported with [`Error::is_transient`] `== true`; nothing is half
///   written.
#[async_trait]
pub trait Storage: Send + Sync {
    /// The state of `key`; `None` when never set or cleared.
    ///
    /// # Errors
    /// Invalid key, closed storage, database errors.
    async fn get_state(&self, key: &StorageKey) -> Result<Option<String>>;

    /// Sets the state of `key`; `None` clears it. The data is untouched.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty state or one over 255 characters; as
    /// [`Storage::get_state`].
    async fn set_state(&self, key: &StorageKey, state: Option<&str>) -> Result<()> {
        self.transition(key, state, &Data::new()).await.map(drop)
    }

    /// The data of `key`, an owned copy; `{}` when never set.
    ///
    /// # Errors
    /// [`Error::CorruptData`] when the stored value is not a JSON object; as
    /// [`Storage::get_state`].
    async fn get_data(&self, key: &StorageKey) -> Result<Data> {
        Ok(self.get_record(key).await?.data)
    }

    /// Replaces the whole data of `key`; `{}` clears it. The state is untouched.
    ///
    /// # Errors
    /// [`Error::ValueTooLarge`] over the configured limit; as [`Storage::get_state`].
    async fn set_data(&self, key: &StorageKey, data: &Data) -> Result<()>;

    /// Merges `patch` into the data of `key` like Python's `dict.update` and returns the
    /// merged object: top-level fields are replaced, `null` is stored as `null`, nested
    /// objects are replaced, not merged. An empty patch writes nothing.
    ///
    /// Atomic: concurrent updates of distinct fields of one key all survive.
    ///
    /// # Errors
    /// [`Error::ValueTooLarge`] when the patch is over the limit (the database merges, so
    /// the merged size is not checked); as
    /// [`Storage::get_data`].
    async fn update_data(&self, key: &StorageKey, patch: &Data) -> Result<Data>;

    /// Moves the dialogue of `key` to `state` (`None` clears it) and merges `patch` into
    /// its data as [`Storage::update_data`] does, atomically: one statement on
    /// PostgreSQL, one locked transaction on SQLite and MySQL. Returns the merged data.
    /// When it leaves neither state nor data, the row is deleted.
    ///
    /// This is the step from one form question to the next: without it, `update_data`
    /// then `set_state` are two writes another handler can come between.
    ///
    /// # Errors
    /// As [`Storage::set_state`] and [`Storage::update_data`]; nothing is written when
    /// either the state or the patch is invalid.
    async fn transition(&self, key: &StorageKey, state: Option<&str>, patch: &Data)
        -> Result<Data>;

    /// Replaces state and data of `key` together, in one write: the whole dialogue at once
    /// (what teloxide's `update_dialogue` stores). Unlike [`Storage::transition`] the data is
    /// replaced, not merged. `None` with `{}` deletes the row.
    ///
    /// # Errors
    /// As [`Storage::set_state`] and [`Storage::set_data`]; nothing is written when either
    /// the state or the data is invalid.
    async fn set_record(&self, key: &StorageKey, state: Option<&str>, data: &Data) -> Result<()>;

    /// The value of `field` in the data of `key`; `None` when absent (a stored `null` is
    /// `Some(Value::Null)`).
    ///
    /// # Errors
    /// As [`Storage::get_data`].
    async fn get_value(&self, key: &StorageKey, field: &str) -> Result<Option<Value>> {
        crate::data::validate_field(field)?;
        Ok(self.get_data(key).await?.remove(field))
    }

    /// State and data of `key` in one round trip.
    ///
    /// # Errors
    /// As [`Storage::get_data`].
    async fn get_record(&self, key: &StorageKey) -> Result<Record>;

    /// Clears state and data of `key` (deletes its row). Returns whether there was a row:
    /// `false` when the key held neither state nor data.
    ///
    /// # Errors
    /// As [`Storage::get_state`].
    async fn clear(&self, key: &StorageKey) -> Result<bool>;

    /// How many keys hold a state or data.
    ///
    /// # Errors
    /// Closed storage, database errors.
    async fn key_count(&self) -> Result<u64>;

    /// The options this storage was opened with (table, key layout, limits).
    fn options(&self) -> &StorageOptions;

    /// What write coalescing did since the storage opened (see
    /// [`StorageOptions::write_batches`]); `None` for a storage that does not coalesce.
    fn write_stats(&self) -> Option<crate::coalesce::CoalesceStats> {
        None
    }

    /// Releases connections. Later calls fail with [`Error::Closed`]; closing twice is fine.
    ///
    /// # Errors
    /// Database errors while shutting down.
    async fn close(&self) -> Result<()>;
}

/// Typed helpers on every [`Storage`].
///
/// ```
/// use fsmstore_core::{MemoryStorage, StorageExt, BotId, ChatId, StorageKey, UserId};
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Form { name: String, age: u32 }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let storage = MemoryStorage::new();
/// let key = StorageKey::new(BotId(1), ChatId(2), UserId(3));
/// storage.set_data_from(&key, &Form { name: "Ann".into(), age: 30 }).await?;
/// let form: Form = storage.get_data_as(&key).await?;
/// assert_eq!(form.age, 30);
/// # Ok::<(), fsmstore_core::Error>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait StorageExt: Storage {
    /// The data of `key` deserialized into `T`.
    ///
    /// # Errors
    /// [`Error::DataMismatch`] (naming the row id) when the data does not fit `T`; as
    /// [`Storage::get_data`].
    async fn get_data_as<T: DeserializeOwned>(&self, key: &StorageKey) -> Result<T> {
        let data = self.get_data(key).await?;
        crate::data::deserialize_value(&Value::Object(data))
            .map_err(|source| self.mismatch::<T>(key, source))
    }

    /// Replaces the data of `key` with `value` serialized.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `T` does not serialize to a JSON object; as
    /// [`Storage::set_data`].
    async fn set_data_from<T: Serialize + Sync>(&self, key: &StorageKey, value: &T) -> Result<()> {
        let data = object_from(value)?;
        self.set_data(key, &data).await
    }

    /// Merges `value` serialized into the data of `key`, as [`Storage::update_data`].
    ///
    /// # Errors
    /// As [`StorageExt::set_data_from`].
    async fn update_data_from<T: Serialize + Sync>(
        &self,
        key: &StorageKey,
        value: &T,
    ) -> Result<Data> {
        let patch = object_from(value)?;
        self.update_data(key, &patch).await
    }

    /// The value of `field` deserialized into `T`; `None` when absent.
    ///
    /// # Errors
    /// [`Error::DataMismatch`] (naming the row id) when the value does not fit `T`.
    async fn get_value_as<T: DeserializeOwned>(
        &self,
        key: &StorageKey,
        field: &str,
    ) -> Result<Option<T>> {
        match self.get_value(key, field).await? {
            Some(value) => crate::data::deserialize_value(&value)
                .map(Some)
                .map_err(|source| self.mismatch::<T>(key, source)),
            None => Ok(None),
        }
    }

    /// [`Error::DataMismatch`] for the row of `key` read as `T`.
    fn mismatch<T>(&self, key: &StorageKey, source: serde_json::Error) -> Error {
        Error::DataMismatch {
            key: self.options().row_id(key).unwrap_or_default(),
            type_name: std::any::type_name::<T>(),
            source,
        }
    }
}

impl<S: Storage + ?Sized> StorageExt for S {}

/// Serializes `value` and checks that it is a JSON object.
///
/// # Errors
/// [`Error::Serialization`]; [`Error::InvalidInput`] for a non-object, or for a NaN or an
/// infinity anywhere in `value` (naming where: JSON has no such number, and `serde_json`
/// would write `null`).
pub fn object_from<T: Serialize + ?Sized>(value: &T) -> Result<Data> {
    match to_json_value(value)? {
        Value::Object(map) => Ok(map),
        other => Err(Error::InvalidInput(format!(
            "data must be a JSON object, got {}",
            json_type(&other)
        ))),
    }
}

/// Serializes `value` to JSON, refusing a NaN or an infinity anywhere in it: `serde_json`
/// writes them as `null`, which would be stored (or, in a patch that leaves out nulls,
/// silently dropped) instead of what the caller had.
///
/// # Errors
/// [`Error::InvalidInput`] naming where the non-finite number is; [`Error::Serialization`].
pub fn to_json_value<T: Serialize + ?Sized>(value: &T) -> Result<Value> {
    crate::finite::check_finite(value).map_err(|path| {
        Error::InvalidInput(format!(
            "{path} is NaN or infinite, which JSON can not hold"
        ))
    })?;
    serde_json::to_value(value).map_err(Error::Serialization)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::key::{BotId, ChatId, UserId};
    use crate::memory::MemoryStorage;

    /// The typed helpers refuse non-objects in core, before any backend is called (so
    /// this is a core test, not a conformance case).
    #[tokio::test]
    async fn typed_helpers_refuse_non_objects_and_write_nothing() {
        let s = MemoryStorage::new();
        let key = StorageKey::new(BotId(1), ChatId(2), UserId(3));
        s.set_data(&key, &crate::data!({"keep": 1})).await.unwrap();
        for (bad, named) in [
            (json!([1, 2]), "an array"),
            (json!("text"), "a string"),
            (json!(3), "a number"),
            (json!(null), "null"),
            (json!(true), "a boolean"),
        ] {
            let err = s.set_data_from(&key, &bad).await.unwrap_err();
            assert!(matches!(err, Error::InvalidInput(_)), "{bad}: {err:?}");
            assert!(err.to_string().contains(named), "{err}");
            assert!(matches!(
                s.update_data_from(&key, &bad).await,
                Err(Error::InvalidInput(_))
            ));
        }
        assert_eq!(s.get_data(&key).await.unwrap(), crate::data!({"keep": 1}));
    }
}
