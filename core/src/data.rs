//! The data model: a JSON object per key, and the rules every backend shares for it.

use crate::error::{Error, Result};
use serde_json::{Map, Value};

/// The data of one conversation: a JSON object.
pub type Data = Map<String, Value>;

/// The longest state, in characters, every dialect stores.
pub const MAX_STATE_CHARS: usize = 255;

/// How deeply data may nest, counting the data object itself as level 1: `{"a": [[1]]}` is
/// 3 levels. MariaDB's JSON parser refuses 32, so 31 is what every backend stores and
/// reads back.
pub const MAX_DATA_DEPTH: usize = 31;

/// State and data of one key, read together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// The state, `None` when not set.
    pub state: Option<String>,
    /// The data, empty when not set.
    pub data: Data,
}

impl Record {
    /// Whether the record holds neither a state nor data (its row does not exist).
    pub fn is_empty(&self) -> bool {
        self.state.is_none() && self.data.is_empty()
    }
}

/// Merges `patch` into `data` the way Python's `dict.update` does: top-level keys of `patch`
/// replace those of `data`; `null` is stored as `null`; nested objects are replaced, not
/// merged.
///
/// ```
/// use fsmstore_core::{merge_shallow, serde_json::json};
/// let mut data = json!({"a": 1, "nested": {"x": 1}}).as_object().unwrap().clone();
/// let patch = json!({"b": null, "nested": {"y": 2}}).as_object().unwrap().clone();
/// merge_shallow(&mut data, &patch);
/// assert_eq!(serde_json::Value::Object(data), json!({"a": 1, "b": null, "nested": {"y": 2}}));
/// ```
pub fn merge_shallow(data: &mut Data, patch: &Data) {
    for (field, value) in patch {
        data.insert(field.clone(), value.clone());
    }
}

/// Checks a state before it is written.
///
/// # Errors
/// [`Error::InvalidInput`] for an empty state or one longer than [`MAX_STATE_CHARS`].
pub fn validate_state(state: &str) -> Result<()> {
    if state.is_empty() {
        return Err(Error::InvalidInput(
            "state is empty: pass None to clear it".to_owned(),
        ));
    }
    let chars = state.chars().count();
    if chars > MAX_STATE_CHARS {
        return Err(Error::InvalidInput(format!(
            "state is {chars} characters, over the limit of {MAX_STATE_CHARS}"
        )));
    }
    if state.contains('\0') {
        return Err(Error::InvalidInput(
            "state contains a NUL character".to_owned(),
        ));
    }
    Ok(())
}

/// Serializes `data` for storage and checks it: the input contract every backend enforces
/// before writing (see [`Storage`](crate::Storage)).
///
/// # Errors
/// * [`Error::InvalidInput`] for a NUL character in a field name or a string (PostgreSQL
///   can not store one in `jsonb`, so no backend does), or nesting deeper than
///   [`MAX_DATA_DEPTH`];
/// * [`Error::ValueTooLarge`] when the JSON text is longer than `limit`.
pub fn validate_data(key: &str, data: &Data, limit: usize) -> Result<String> {
    check_tree(data, 1)?;
    let text = serde_json::to_string(data).map_err(Error::Serialization)?;
    if text.len() > limit {
        return Err(Error::ValueTooLarge {
            key: key.to_owned(),
            size: text.len(),
            limit,
        });
    }
    Ok(text)
}

/// A [`Data`] object from a JSON object literal, as `serde_json::json!` takes it.
///
/// ```
/// let data = fsmstore_core::data!({"name": "Ann", "age": 30, "tags": ["a"]});
/// assert_eq!(data["age"], 30);
/// ```
#[macro_export]
macro_rules! data {
    ({ $($body:tt)* }) => {
        match $crate::serde_json::json!({ $($body)* }) {
            $crate::serde_json::Value::Object(map) => map,
            // Invariant: an object literal always makes an object.
            _ => ::std::unreachable!("a JSON object literal is an object"),
        }
    };
}

/// Checks a field name given to `get_value`: a NUL can never be stored, so asking for one is
/// refused the same way on every backend (PostgreSQL would fail binding it).
///
/// # Errors
/// [`Error::InvalidInput`] for a NUL character.
pub fn validate_field(field: &str) -> Result<()> {
    if field.contains('\0') {
        return Err(Error::InvalidInput(format!(
            "field name {field:?} contains a NUL character"
        )));
    }
    Ok(())
}

/// Checks field names, strings and nesting of an object at `depth`.
fn check_tree(object: &Data, depth: usize) -> Result<()> {
    if depth > MAX_DATA_DEPTH {
        return Err(Error::InvalidInput(format!(
            "data nests deeper than {MAX_DATA_DEPTH} levels"
        )));
    }
    for (field, value) in object {
        if field.contains('\0') {
            return Err(Error::InvalidInput(format!(
                "field name {field:?} contains a NUL character"
            )));
        }
        check_value(value, depth)?;
    }
    Ok(())
}

/// Checks a value inside a container at `depth`.
fn check_value(value: &Value, depth: usize) -> Result<()> {
    match value {
        Value::String(text) if text.contains('\0') => Err(Error::InvalidInput(
            "a string in the data contains a NUL character".to_owned(),
        )),
        Value::Object(object) => check_tree(object, depth + 1),
        Value::Array(items) => {
            if depth + 1 > MAX_DATA_DEPTH {
                return Err(Error::InvalidInput(format!(
                    "data nests deeper than {MAX_DATA_DEPTH} levels"
                )));
            }
            items
                .iter()
                .try_for_each(|item| check_value(item, depth + 1))
        }
        _ => Ok(()),
    }
}

/// Deserializes `value` as `T`, exactly as from its JSON text.
///
/// `serde_json::from_value` reads an empty array as unit, so a zero-field tuple variant
/// (`State::Empty()`, written as `{"Empty": []}`) never read back from a value
/// (`DataMismatch`), though it reads from text. This tries the value first and falls back
/// to its text only when that fails.
///
/// # Errors
/// The deserializer's error when the text does not fit `T` either.
pub fn deserialize_value<T: serde::de::DeserializeOwned>(value: &Value) -> serde_json::Result<T> {
    match T::deserialize(value) {
        Ok(decoded) => Ok(decoded),
        Err(_) => serde_json::from_str(&value.to_string()),
    }
}

/// Parses stored JSON text back into [`Data`].
///
/// # Errors
/// [`Error::CorruptData`] when the text is not a JSON object.
pub fn parse_data(key: &str, text: &str) -> Result<Data> {
    if text.is_empty() {
        return Ok(Data::new());
    }
    let data = data_from_value(
        key,
        serde_json::from_str(text).map_err(|e| corrupt(key, e))?,
    )?;
    // A NUL can only be written as `\u0000` in JSON text: look deeper only then. fsmstore
    // never writes one, and PostgreSQL can not hold one, so a row another program wrote
    // with it reads as corrupt on every backend alike.
    if text.contains("\\u0000") && data.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)) {
        return Err(corrupt(key, "a string holds a NUL character"));
    }
    Ok(data)
}

/// Whether `value` has a string or a field name with a NUL character.
fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(object) => object.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// Parses a stored data column that may be SQL `NULL` (the aiogram layout): `NULL` and `''`
/// are empty data.
///
/// # Errors
/// As [`parse_data`].
pub fn parse_stored(key: &str, text: Option<&str>) -> Result<Data> {
    text.map_or_else(|| Ok(Data::new()), |text| parse_data(key, text))
}

/// Checks that a stored JSON value is an object.
///
/// # Errors
/// [`Error::CorruptData`] when it is not.
pub fn data_from_value(key: &str, value: Value) -> Result<Data> {
    match value {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(Data::new()),
        other => Err(corrupt(key, format!("found {}", json_type(&other)))),
    }
}

fn corrupt(key: &str, reason: impl ToString) -> Error {
    Error::CorruptData {
        key: key.to_owned(),
        reason: reason.to_string(),
    }
}

/// The JSON type name of `value`, for error messages.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{"x": …}` whose deepest container is an object (`object_last`) or an array, nesting
    /// `depth` levels with the data object itself.
    fn nested(depth: usize, object_last: bool) -> Data {
        let mut value = if object_last {
            serde_json::json!({})
        } else {
            serde_json::json!([])
        };
        for level in 2..depth {
            value = if (level % 2 == 0) == object_last {
                serde_json::json!([value])
            } else {
                serde_json::json!({ "k": value })
            };
        }
        let mut data = Data::new();
        data.insert("x".into(), value);
        data
    }

    /// The JSON text forms of Python's `json.dumps` (the aiogram layout stores them): each
    /// pair is what Python writes and what serde_json writes for the same value; both read
    /// as the same data, so rows written by either side compare equal by value.
    #[test]
    fn python_json_text_forms_read_by_value() {
        let vectors = [
            // ensure_ascii escapes, ", " and ": " separators
            (
                r#"{"name": "\u0416\u0435\u043d\u044f"}"#,
                r#"{"name":"Женя"}"#,
            ),
            // a character outside the BMP: a surrogate pair
            (r#"{"e": "\ud83d\ude00"}"#, r#"{"e":"😀"}"#),
            // escapes both write
            (
                r#"{"q": "say \"hi\"\n", "p": "a/b"}"#,
                r#"{"q":"say \"hi\"\n","p":"a/b"}"#,
            ),
            // numbers: Python writes 1.0 and 1e+100; a big integer stays exact
            (
                r#"{"f": 1.0, "g": 1e+100, "big": 9007199254740993}"#,
                r#"{"f":1.0,"g":1e100,"big":9007199254740993}"#,
            ),
            // nesting, null, booleans, empty containers
            (
                r#"{"n": {"a": null, "b": [true, false, []], "c": {}}}"#,
                r#"{"n":{"a":null,"b":[true,false,[]],"c":{}}}"#,
            ),
        ];
        for (python, serde) in vectors {
            let (a, b) = (
                parse_data("k", python).unwrap(),
                parse_data("k", serde).unwrap(),
            );
            assert_eq!(a, b, "{python}");
            // What fsmstore writes back reads the same again.
            let written = serde_json::to_string(&a).unwrap();
            assert_eq!(parse_data("k", &written).unwrap(), a, "{python}");
        }
        // Python can also write what is not JSON: NaN and lone surrogates are corrupt
        // data for fsmstore, never silently changed.
        for python in [r#"{"x": NaN}"#, r#"{"x": Infinity}"#, r#"{"s": "\ud800"}"#] {
            assert!(
                matches!(parse_data("k", python), Err(Error::CorruptData { .. })),
                "{python}"
            );
        }
        // '' and NULL are empty data in the aiogram layout.
        assert!(parse_stored("k", None).unwrap().is_empty());
        assert!(parse_stored("k", Some("")).unwrap().is_empty());
    }

    #[test]
    fn nesting_is_limited_at_exactly_the_stated_depth() {
        for object_last in [true, false] {
            let at_limit = nested(MAX_DATA_DEPTH, object_last);
            assert!(
                validate_data("k", &at_limit, usize::MAX).is_ok(),
                "{object_last}"
            );
            let over = nested(MAX_DATA_DEPTH + 1, object_last);
            assert!(
                matches!(
                    validate_data("k", &over, usize::MAX),
                    Err(Error::InvalidInput(_))
                ),
                "{object_last}"
            );
        }
    }
    use serde_json::json;

    #[test]
    fn state_limits() {
        assert!(validate_state("Form:name").is_ok());
        assert!(validate_state("").is_err());
        assert!(validate_state(&"é".repeat(255)).is_ok());
        assert!(validate_state(&"é".repeat(256)).is_err());
    }

    #[test]
    fn data_limit_counts_serialized_bytes() {
        let data = json!({"k": "x".repeat(100)}).as_object().unwrap().clone();
        assert!(validate_data("k", &data, 200).is_ok());
        assert!(matches!(
            validate_data("k", &data, 50),
            Err(Error::ValueTooLarge {
                size: 108,
                limit: 50,
                ..
            })
        ));
    }

    #[test]
    fn parse_accepts_python_escapes_and_empty_text() {
        let data = parse_data("k", r#"{"name": "Ren\u00e9"}"#).unwrap();
        assert_eq!(data["name"], json!("René"));
        assert!(parse_data("k", "").unwrap().is_empty());
        assert!(matches!(
            parse_data("k", "[1]"),
            Err(Error::CorruptData { .. })
        ));
        assert!(matches!(
            parse_data("k", "{oops"),
            Err(Error::CorruptData { .. })
        ));
    }
}
