//! Checks before any I/O: the options as a whole when a backend opens, and each call's key,
//! state and data.

use super::StorageOptions;
use crate::dialect::Dialect;
use crate::duration::{check_duration, MAX_DURATION};
use crate::error::{Error, Result};
use crate::key::{StorageKey, MAX_KEY_BYTES};
use crate::migrations::{self, MigrationSet};

impl StorageOptions {
    /// Succeeds when this storage's layout can give `feature`, which needs `updated_at`
    /// (see [`Layout::require_updated_at`]).
    ///
    /// # Errors
    /// [`Error::LayoutLacks`] naming the feature, the table and the upgrade.
    pub fn require_updated_at(&self, feature: &'static str) -> Result<()> {
        self.layout.require_updated_at(feature, &self.table)
    }

    /// Checks that the options fit together; every SQL backend's `open` calls it.
    ///
    /// # Errors
    /// As [`StorageOptions::check_limits`]; [`Error::LayoutLacks`] for a TTL in a table
    /// layout without `updated_at`.
    pub fn check(&self) -> Result<()> {
        self.check_limits()?;
        if self.ttl.is_some() {
            self.require_updated_at("expiry (ttl)")?;
        }
        Ok(())
    }

    /// Checks every duration against [`MAX_DURATION`] and refuses a zero `call_timeout` or
    /// `ttl`: what every backend checks (a store that expires keys itself, such as Redis,
    /// takes a TTL in any layout).
    ///
    /// # Errors
    /// [`Error::Config`] naming the setting.
    pub fn check_limits(&self) -> Result<()> {
        check_duration("connect_timeout", self.connect_timeout, MAX_DURATION)?;
        check_duration("call_timeout", self.call_timeout, MAX_DURATION)?;
        if self.call_timeout.is_zero() {
            return Err(Error::Config(
                "call_timeout must be longer than 0".to_owned(),
            ));
        }
        check_duration("isolation_timeout", self.isolation_timeout, MAX_DURATION)?;
        if let Some(ttl) = self.ttl {
            check_duration("ttl", ttl, MAX_DURATION)?;
            if ttl.is_zero() {
                return Err(Error::Config("ttl must be longer than 0".to_owned()));
            }
        }
        Ok(())
    }

    /// The row id of `key`.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] from the key builder, or for an id over 255 characters.
    pub fn row_id(&self, key: &StorageKey) -> Result<String> {
        let id = self.key_builder.build(key)?;
        check_row_id(&id)?;
        Ok(id)
    }

    /// The data of a row written by its id (`fsmstore copy`,
    /// [`Inspect::put_row`](crate::Inspect::put_row)) as text, once the id, the state and
    /// the data are checked as every write checks them.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for an id over 255 characters or with a NUL;
    /// [`Error::InvalidInput`] for a bad state or a row holding nothing;
    /// [`Error::ValueTooLarge`] for data over the limit.
    pub fn put_row_text(
        &self,
        id: &str,
        state: Option<&str>,
        data: &crate::data::Data,
    ) -> Result<String> {
        check_row_id(id)?;
        if let Some(state) = state {
            crate::data::validate_state(state)?;
        } else if data.is_empty() {
            return Err(Error::InvalidInput(format!(
                "row {id:?} holds neither a state nor data: there is nothing to write"
            )));
        }
        crate::data::validate_data(id, data, self.max_data_bytes)
    }

    /// The new contents of a row rewritten by [`Inspect::rewrite_row`](crate::Inspect::rewrite_row)
    /// (`None`: deleted) as its state and data text, checked as [`put_row_text`](Self::put_row_text)
    /// checks them.
    ///
    /// # Errors
    /// As [`put_row_text`](Self::put_row_text).
    pub fn rewrite_text(
        &self,
        id: &str,
        new: Option<(Option<&str>, &crate::data::Data)>,
    ) -> Result<Option<(Option<String>, String)>> {
        new.map(|(state, data)| {
            let text = self.put_row_text(id, state, data)?;
            Ok((state.map(str::to_owned), text))
        })
        .transpose()
    }

    /// The row id of `key` for a `transition` to `state` with `patch`, once both are
    /// checked: every backend refuses the same input before writing anything.
    ///
    /// # Errors
    /// [`Error::InvalidKey`], [`Error::InvalidInput`] for a bad state,
    /// [`Error::ValueTooLarge`] for a patch over the limit.
    pub fn transition_row_id(
        &self,
        key: &StorageKey,
        state: Option<&str>,
        patch: &crate::data::Data,
    ) -> Result<String> {
        self.record_row_id(key, state, patch).map(|(id, _)| id)
    }

    /// The row id of `key` and `data` serialized, for writing `state` and `data` together,
    /// once both are checked (as [`StorageOptions::transition_row_id`]).
    ///
    /// # Errors
    /// As [`StorageOptions::transition_row_id`].
    pub fn record_row_id(
        &self,
        key: &StorageKey,
        state: Option<&str>,
        data: &crate::data::Data,
    ) -> Result<(String, String)> {
        let id = self.row_id(key)?;
        if let Some(state) = state {
            crate::data::validate_state(state)?;
        }
        let text = crate::data::validate_data(&id, data, self.max_data_bytes)?;
        Ok((id, text))
    }

    /// The migrations for `dialect`, rendered for this FSM table.
    ///
    /// # Errors
    /// [`Error::Migration`] for a custom list that is not contiguous.
    pub fn migration_set(&self, dialect: Dialect) -> Result<MigrationSet> {
        migrations::resolve(self.migrations.as_ref(), dialect, &self.table)
    }
}

/// What every row id must be: at most 255 characters, no NUL.
fn check_row_id(id: &str) -> Result<()> {
    if id.chars().count() > MAX_KEY_BYTES {
        return Err(Error::InvalidKey(format!(
            "row id is longer than {MAX_KEY_BYTES} characters"
        )));
    }
    // PostgreSQL can not store NUL in text; the other backends could, so no one does.
    if id.contains('\0') {
        return Err(Error::InvalidKey(
            "a key part (destiny, business connection, prefix) contains a NUL character".to_owned(),
        ));
    }
    Ok(())
}
