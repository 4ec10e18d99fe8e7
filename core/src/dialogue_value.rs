//! How a whole dialogue value (teloxide's dialogue `D`, or any serde value) becomes a row's
//! state and data, and back. `fsmstore-teloxide` stores dialogues this way, and
//! the CLI's `teloxide-import` moves teloxide's own `teloxide_dialogues` rows with it.
//!
//! The dialogue is serialized with `serde_json` (serde's default, externally tagged enums)
//! and mapped by its JSON shape, so the mapping is reversible for every value, not just
//! for the shapes it makes readable:
//!
//! | dialogue value (JSON) | state | data |
//! |---|---|---|
//! | unit variant `"Start"`, or any string of 1–255 characters | `"Start"` | `{}` |
//! | struct variant `{"ReceiveAge": {"full_name": "Ann"}}` | `"ReceiveAge"` | `{"full_name": "Ann"}` |
//! | newtype/tuple variant `{"Age": 30}`, `{"Pair": [1, 2]}` | `"Age"`, `"Pair"` | `{"$value": 30}`, `{"$value": [1, 2]}` |
//! | variant with an empty payload `{"Empty": {}}` | `"Empty"` | `{"$value": {}}` |
//! | anything else: a number, `null`, an array, an object with ≠ 1 field, a longer string | `"$dialogue"` | `{"$value": …}` |
//!
//! A payload that is itself an object with the single field `$value` is wrapped once more
//! (`{"$value": {"$value": …}}`), and a one-field object whose field is not a valid state
//! (empty, over 255 characters, or `$dialogue`) goes the "anything else" way, so decoding
//! always gives back the JSON that was written. A payload kept under `$value` is one level
//! deeper than it was, which counts against the nesting limit
//! ([`MAX_DATA_DEPTH`](crate::MAX_DATA_DEPTH)).

use crate::data::{validate_state, Data};
use serde_json::Value;

/// The state of a dialogue that is not an enum variant (a number, a struct, …).
pub const VALUE_STATE: &str = "$dialogue";

/// The data field holding a payload that is not a non-empty object.
pub const VALUE_FIELD: &str = "$value";

/// The row's state and data for a dialogue serialized to `value`.
pub fn encode(value: Value) -> (String, Data) {
    match value {
        Value::String(state) if is_state(&state) => (state, Data::new()),
        Value::Object(mut object) if object.len() == 1 => {
            let tag = object.keys().next().cloned().unwrap_or_default();
            if is_state(&tag) {
                let payload = object.remove(&tag).unwrap_or(Value::Null);
                (tag, wrap(payload))
            } else {
                (VALUE_STATE.to_owned(), wrap(Value::Object(object)))
            }
        }
        other => (VALUE_STATE.to_owned(), wrap(other)),
    }
}

/// The dialogue's JSON for a row holding `state` and `data`: the inverse of [`encode`].
pub fn decode(state: String, data: Data) -> Value {
    if state == VALUE_STATE {
        return unwrap(data);
    }
    if data.is_empty() {
        return Value::String(state);
    }
    let mut object = Data::new();
    object.insert(state, unwrap(data));
    Value::Object(object)
}

/// Whether `text` can be a state that reads back as itself.
fn is_state(text: &str) -> bool {
    text != VALUE_STATE && validate_state(text).is_ok()
}

fn wrap(payload: Value) -> Data {
    match payload {
        Value::Object(object) if !object.is_empty() && !is_wrapped(&object) => object,
        other => {
            let mut data = Data::new();
            data.insert(VALUE_FIELD.to_owned(), other);
            data
        }
    }
}

fn unwrap(mut data: Data) -> Value {
    if is_wrapped(&data) {
        data.remove(VALUE_FIELD).unwrap_or(Value::Null)
    } else {
        Value::Object(data)
    }
}

fn is_wrapped(object: &Data) -> bool {
    object.len() == 1 && object.contains_key(VALUE_FIELD)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(value: Value) -> (String, Value) {
        let (state, data) = encode(value.clone());
        let back = decode(state.clone(), data.clone());
        assert_eq!(back, value, "state {state:?}, data {data:?}");
        (state, Value::Object(data))
    }

    #[test]
    fn enum_shapes_are_readable() {
        assert_eq!(round_trip(json!("Start")), ("Start".into(), json!({})));
        assert_eq!(
            round_trip(json!({"ReceiveAge": {"full_name": "Ann"}})),
            ("ReceiveAge".into(), json!({"full_name": "Ann"}))
        );
        assert_eq!(
            round_trip(json!({"Age": 30})),
            ("Age".into(), json!({"$value": 30}))
        );
        assert_eq!(
            round_trip(json!({"Pair": [1, 2]})),
            ("Pair".into(), json!({"$value": [1, 2]}))
        );
        assert_eq!(
            round_trip(json!({"Empty": {}})),
            ("Empty".into(), json!({"$value": {}}))
        );
    }

    #[test]
    fn other_values_go_under_the_value_state() {
        for value in [
            json!(5),
            json!(null),
            json!(true),
            json!([1, "a"]),
            json!({}),
            json!({"a": 1, "b": 2}),
            json!(""),
            json!("x".repeat(256)),
            json!("$dialogue"),
            json!({"$dialogue": 1}),
            json!({"": 1}),
        ] {
            assert_eq!(round_trip(value).0, VALUE_STATE);
        }
    }

    #[test]
    fn the_value_field_itself_round_trips() {
        round_trip(json!({"V": {"$value": 1}}));
        round_trip(json!({"$value": 1}));
        round_trip(json!({"$value": {"$value": null}}));
        round_trip(json!({"V": {"$value": 1, "other": 2}}));
    }

    #[test]
    fn empty_tuple_and_struct_variants_read_back_as_themselves() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        enum S {
            EmptyTuple(),
            EmptyStruct {},
            Unit,
        }
        for dialogue in [S::EmptyTuple(), S::EmptyStruct {}, S::Unit] {
            let (state, data) = encode(serde_json::to_value(&dialogue).unwrap());
            let back: S = crate::data::deserialize_value(&decode(state.clone(), data.clone()))
                .unwrap_or_else(|err| panic!("{dialogue:?} as {state:?} {data:?}: {err}"));
            assert_eq!(back, dialogue);
        }
    }
}
