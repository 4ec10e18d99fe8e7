//! The read-merge-write of `update_data` and `transition` on a database without a shallow
//! JSON merge (SQLite, MySQL/MariaDB): one pure plan, from the record as stored and the
//! patch to what the backend writes, which every such backend executes under its lock.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use crate::data::{merge_shallow, parse_stored, Data};
use crate::error::{Error, Result};

/// What the state becomes in a merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextState<'a> {
    /// `update_data`: the stored state stays.
    Keep,
    /// `transition`: the state becomes this (`None` clears it; the row goes when the
    /// data ends up empty too).
    Set(Option<&'a str>),
}

/// What the backend writes for a merge: a row holds a state or data, or is not there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeWrite {
    /// Write the row (insert or replace) with this state and this data text.
    Upsert {
        /// The state to write.
        state: Option<String>,
        /// The merged object as JSON text: the patch's fields serialized, every other
        /// field exactly as it was stored.
        data: String,
    },
    /// Delete the row: it holds neither a state nor data.
    Delete,
}

/// A planned merge: the object the call returns and what to write.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MergePlan {
    /// The merged data, as the call returns it.
    pub data: Data,
    /// What to write.
    pub write: MergeWrite,
}

/// Plans merging `patch` into the record of row `id`, stored as `state` and the data
/// column's text (`None`, `''` and `null` are empty data, as [`parse_stored`] reads them).
///
/// The merge is `dict.update`: the patch's top-level fields replace the stored ones. The
/// fields the patch does not name are written back as the text they were stored as, not
/// re-encoded, so a number `serde_json` can only approximate (`123456789012345678901234567890`,
/// written by Python) is kept digit for digit.
///
/// ```
/// use fsmstore_core::{data, plan_merge, MergeWrite, NextState};
/// let stored = r#"{"big": 123456789012345678901234567890, "name": "Ann"}"#;
/// let plan = plan_merge("fsm:1:1", Some("Form:name".into()), Some(stored), &data!({"age": 30}), NextState::Keep)?;
/// assert_eq!(plan.write, MergeWrite::Upsert {
///     state: Some("Form:name".into()),
///     data: r#"{"age":30,"big":123456789012345678901234567890,"name":"Ann"}"#.into(),
/// });
/// # Ok::<(), fsmstore_core::Error>(())
/// ```
///
/// # Errors
/// [`Error::CorruptData`] when the stored text is not a JSON object that can be read
/// (not JSON, an array, a number past `f64`): nothing is to be written then.
pub fn plan_merge(
    id: &str,
    state: Option<String>,
    stored: Option<&str>,
    patch: &Data,
    next: NextState<'_>,
) -> Result<MergePlan> {
    let mut data = parse_stored(id, stored)?;
    merge_shallow(&mut data, patch);
    let state = match next {
        NextState::Keep => state,
        NextState::Set(state) => state.map(str::to_owned),
    };
    if state.is_none() && data.is_empty() {
        return Ok(MergePlan {
            data,
            write: MergeWrite::Delete,
        });
    }
    let text = merged_text(id, stored, &data, patch)?;
    Ok(MergePlan {
        data,
        write: MergeWrite::Upsert { state, data: text },
    })
}

/// `merged` as JSON text, each field the patch did not name taken from `stored` as it was.
fn merged_text(id: &str, stored: Option<&str>, merged: &Data, patch: &Data) -> Result<String> {
    let stored_fields: BTreeMap<String, &RawValue> = match stored.filter(|t| !t.is_empty()) {
        // Already read as an object (or null) by `parse_stored`: this second look only
        // keeps each field's text.
        Some(text) => serde_json::from_str::<Option<BTreeMap<String, &RawValue>>>(text)
            .map_err(|err| Error::CorruptData {
                key: id.to_owned(),
                reason: err.to_string(),
            })?
            .unwrap_or_default(),
        None => BTreeMap::new(),
    };
    let mut text = String::with_capacity(stored.map_or(0, str::len) + 64);
    text.push('{');
    for (index, (field, value)) in merged.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        text.push_str(&serde_json::to_string(field).map_err(Error::Serialization)?);
        text.push(':');
        match stored_fields.get(field) {
            Some(raw) if !patch.contains_key(field) => text.push_str(raw.get()),
            _ => text.push_str(&serde_json::to_string(value).map_err(Error::Serialization)?),
        }
    }
    text.push('}');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data;
    use serde_json::Value;

    fn upsert(plan: &MergePlan) -> (&Option<String>, &str) {
        match &plan.write {
            MergeWrite::Upsert { state, data } => (state, data),
            MergeWrite::Delete => panic!("expected an upsert"),
        }
    }

    #[test]
    fn untouched_fields_keep_their_stored_text() {
        let stored = r#"{"a": 123456789012345678901234567890, "f": 0.1000000000000000055511151231257827, "n": {"x": [1, 2.50]}, "s": "\u00e9"}"#;
        let plan = plan_merge("k", None, Some(stored), &data!({"x": 1}), NextState::Keep).unwrap();
        let (state, text) = upsert(&plan);
        assert_eq!(*state, None);
        assert_eq!(
            text,
            r#"{"a":123456789012345678901234567890,"f":0.1000000000000000055511151231257827,"n":{"x": [1, 2.50]},"s":"\u00e9","x":1}"#
        );
        // The text is JSON that reads as the merged object.
        let reread: Value = serde_json::from_str(text).unwrap();
        assert_eq!(reread, Value::Object(plan.data.clone()));
    }

    #[test]
    fn patched_fields_replace_stored_ones_and_nulls_are_stored() {
        let plan = plan_merge(
            "k",
            Some("S".into()),
            Some(r#"{"a": 1e2, "b": 2}"#),
            &data!({"a": null, "c": {"d": 1}}),
            NextState::Set(Some("T")),
        )
        .unwrap();
        let (state, text) = upsert(&plan);
        assert_eq!(state.as_deref(), Some("T"));
        assert_eq!(text, r#"{"a":null,"b":2,"c":{"d":1}}"#);
    }

    #[test]
    fn empty_forms_and_deletes() {
        for stored in [None, Some(""), Some("null"), Some("{}")] {
            let plan = plan_merge("k", None, stored, &data!({"a": 1}), NextState::Keep).unwrap();
            assert_eq!(upsert(&plan).1, r#"{"a":1}"#, "{stored:?}");
        }
        let plan = plan_merge(
            "k",
            Some("S".into()),
            Some("{}"),
            &Data::new(),
            NextState::Set(None),
        )
        .unwrap();
        assert_eq!(plan.write, MergeWrite::Delete);
    }

    #[test]
    fn unreadable_stored_data_plans_nothing() {
        for stored in [
            "[]",
            "1",
            "\"x\"",
            "{",
            r#"{"a": 1e400}"#,
            r#"{"a": -1e309}"#,
        ] {
            let err =
                plan_merge("k", None, Some(stored), &data!({"x": 1}), NextState::Keep).unwrap_err();
            assert!(matches!(err, Error::CorruptData { .. }), "{stored}: {err}");
        }
    }
}
