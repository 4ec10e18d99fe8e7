//! Property tests over the parsers and printers users feed: durations, migration targets,
//! the key builder and the dialogue-value mapping. None panics on any input, none
//! reinterprets what it can not represent, and each form that can be printed back reads
//! back as itself. (URLs: `url.rs`.)

use std::time::Duration;

use proptest::prelude::*;
use serde_json::Value;

use crate::dialogue_value::{decode, encode};
use crate::duration::{parse_duration, MAX_DURATION};
use crate::key::{BotId, ChatId, DefaultKeyBuilder, KeyBuilder, StorageKey, UserId};
use crate::planner::MigrationTarget;

/// Any JSON value, nested a few levels, with the keys the mapping reserves.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        prop_oneof![
            Just("$value".to_owned()),
            Just("$dialogue".to_owned()),
            "\\PC{0,12}",
            "x{250,260}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("$value".to_owned()),
                    Just("$dialogue".to_owned()),
                    "\\PC{0,8}"
                ],
                inner,
                0..4
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A key part without the separator `:`.
fn part() -> impl Strategy<Value = String> {
    "[^:\\x00]{1,12}"
}

proptest! {
    /// Any text: a duration or a typed error, never a panic, never past the limit.
    #[test]
    fn durations_never_panic_nor_exceed_the_limit(text in "\\PC{0,24}") {
        if let Ok(duration) = parse_duration(&text) {
            prop_assert!(duration <= MAX_DURATION);
        }
    }

    /// Every duration up to the limit prints as milliseconds and reads back exactly; one
    /// past it is refused, never wrapped.
    #[test]
    fn durations_round_trip_and_past_the_limit_are_refused(ms in 0..=MAX_DURATION.as_millis() as u64, over in 1u64..) {
        prop_assert_eq!(parse_duration(&format!("{ms}ms")).unwrap(), Duration::from_millis(ms));
        let past = (MAX_DURATION.as_millis() as u64).saturating_add(over);
        let past = format!("{past}ms");
        prop_assert!(parse_duration(&past).is_err());
    }

    /// Targets print as they parse.
    #[test]
    fn migration_targets_round_trip(version in 0i64.., step in any::<i64>().prop_filter("a step", |k| *k != 0)) {
        for target in [
            MigrationTarget::Head,
            MigrationTarget::Base,
            MigrationTarget::Version(version),
            MigrationTarget::Relative(step),
        ] {
            prop_assert_eq!(target.to_string().parse::<MigrationTarget>().unwrap(), target);
        }
    }

    /// Any text: a target or a typed error, never a panic.
    #[test]
    fn migration_targets_never_panic(text in "\\PC{0,24}") {
        let _ = text.parse::<MigrationTarget>();
    }

    /// With every part in the id, the id splits back into exactly the key's parts:
    /// numbers as written, nothing dropped, nothing merged.
    #[test]
    fn key_ids_split_back_into_their_parts(
        bot in any::<i64>(), chat in any::<i64>(), user in any::<i64>(),
        thread in prop::option::of(any::<i64>().prop_filter("a thread", |t| *t != 0)),
        business in prop::option::of(part()), destiny in part(),
    ) {
        let builder = DefaultKeyBuilder::default()
            .with_bot_id(true)
            .with_business_connection_id(true)
            .with_destiny(true);
        let mut key = StorageKey::new(BotId(bot), ChatId(chat), UserId(user)).for_destiny(destiny.clone());
        if let Some(thread) = thread {
            key = key.with_thread(thread);
        }
        if let Some(business) = &business {
            key = key.with_business_connection(business.clone());
        }
        let id = builder.build(&key).unwrap();
        let mut expected = vec!["fsm".to_owned(), bot.to_string()];
        expected.extend(business.clone());
        expected.push(chat.to_string());
        expected.extend(thread.map(|t| t.to_string()));
        expected.push(user.to_string());
        expected.push(destiny);
        prop_assert_eq!(id.split(':').map(str::to_owned).collect::<Vec<_>>(), expected);
    }

    /// Any key: an id or a typed error (a destiny the layout can not hold), never a panic.
    #[test]
    fn key_building_never_panics(destiny in "\\PC{0,8}", business in "\\PC{0,8}", flags in any::<[bool; 3]>()) {
        let builder = DefaultKeyBuilder::default()
            .with_bot_id(flags[0])
            .with_business_connection_id(flags[1])
            .with_destiny(flags[2]);
        let key = StorageKey::new(BotId(1), ChatId(2), UserId(3))
            .with_business_connection(business)
            .for_destiny(destiny);
        let _ = builder.build(&key);
    }

    /// Every dialogue value maps to a state and data and back to itself.
    #[test]
    fn dialogue_values_round_trip(value in json()) {
        let (state, data) = encode(value.clone());
        prop_assert!(!state.is_empty());
        prop_assert_eq!(decode(state, data), value);
    }
}
