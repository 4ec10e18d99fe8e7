//! Hostile input: every backend gives the answer `MemoryStorage` gives, decided in core
//! before any SQL runs. NUL characters, nesting at and past the limit, numbers at the
//! edges of `f64` and `i64`/`u64`, ids that differ only in trailing spaces or case, and a
//! property test over generated keys, states and data.

use std::sync::Arc;

use fsmstore_core::{
    Data, DefaultKeyBuilder, Error, ErrorKind, MemoryStorage, Record, Storage, StorageKey,
    MAX_DATA_DEPTH,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

use super::{key, obj};
use crate::Ctx;

/// Whether `got` equals `want` by value: an integer must come back as the same integer; a
/// float as a number equal to it as `f64` (PostgreSQL returns `1e16` as `10000000000000000`
/// and `-0.0` as `0.0`); everything else exactly.
pub fn same_value(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Number(x), Value::Number(y)) => match (y.as_i64(), y.as_u64()) {
            (Some(want), _) => x.as_i64() == Some(want),
            (None, Some(want)) => x.as_u64() == Some(want),
            (None, None) => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(got, want)| same_value(got, want))
        }
        (Value::Object(x), Value::Object(y)) => same_data(x, y),
        _ => got == want,
    }
}

/// [`same_value`] for whole data objects.
pub fn same_data(got: &Data, want: &Data) -> bool {
    got.len() == want.len()
        && want
            .iter()
            .all(|(field, value)| got.get(field).is_some_and(|other| same_value(other, value)))
}

fn same_record(got: &Record, want: &Record) -> bool {
    got.state == want.state && same_data(&got.data, &want.data)
}

/// An object nesting `depth` levels, the object itself included.
fn nested(depth: usize) -> Data {
    let mut value = json!(1);
    for level in 1..depth {
        value = if level % 2 == 0 {
            json!({ "k": value })
        } else {
            json!([value])
        };
    }
    obj(json!({ "deep": value }))
}

/// Refused with `kind`, and the record of `k` is still `before`.
async fn refused(
    s: &Arc<dyn Storage>,
    k: &StorageKey,
    before: &Record,
    kind: ErrorKind,
    result: fsmstore_core::Result<()>,
    what: &str,
) {
    match result {
        Err(err) => assert_eq!(err.kind(), kind, "{what}: {err:?}"),
        Ok(()) => panic!("{what}: accepted"),
    }
    assert_eq!(
        &s.get_record(k).await.unwrap(),
        before,
        "{what}: something was written"
    );
}

/// NUL in a state, a field name, a string value (also nested) or a key part is refused
/// before anything is written.
pub async fn nul_characters_are_refused_everywhere(ctx: Ctx) {
    let s = ctx
        .open(
            ctx.options()
                .key_builder(DefaultKeyBuilder::default().with_destiny(true)),
        )
        .await;
    let k = key(1);
    s.set_state(&k, Some("Form:name")).await.unwrap();
    s.set_data(&k, &obj(json!({"keep": 1}))).await.unwrap();
    let before = s.get_record(&k).await.unwrap();
    let bad_data = [
        obj(json!({"a\u{0}b": 1})),
        obj(json!({"a": "x\u{0}y"})),
        obj(json!({"a": {"b": ["ok", "\u{0}"]}})),
    ];
    for data in &bad_data {
        refused(
            &s,
            &k,
            &before,
            ErrorKind::InvalidInput,
            s.set_data(&k, data).await,
            "set_data",
        )
        .await;
        refused(
            &s,
            &k,
            &before,
            ErrorKind::InvalidInput,
            s.update_data(&k, data).await.map(drop),
            "update_data",
        )
        .await;
        refused(
            &s,
            &k,
            &before,
            ErrorKind::InvalidInput,
            s.transition(&k, Some("Form:age"), data).await.map(drop),
            "transition",
        )
        .await;
    }
    refused(
        &s,
        &k,
        &before,
        ErrorKind::InvalidInput,
        s.set_state(&k, Some("Form:\u{0}")).await,
        "set_state",
    )
    .await;
    refused(
        &s,
        &k,
        &before,
        ErrorKind::InvalidInput,
        s.transition(&k, Some("\u{0}"), &Data::new())
            .await
            .map(drop),
        "transition state",
    )
    .await;
    assert_eq!(
        s.get_value(&k, "a\u{0}b").await.unwrap_err().kind(),
        ErrorKind::InvalidInput,
        "get_value of a field name no backend can hold"
    );
    let nul_destiny = k.clone().for_destiny("al\u{0}bum");
    assert_eq!(
        s.set_state(&nul_destiny, Some("S"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    let nul_business = k.clone().with_business_connection("b\u{0}c");
    let s2 = ctx
        .open(
            ctx.options()
                .key_builder(DefaultKeyBuilder::default().with_business_connection_id(true)),
        )
        .await;
    assert!(matches!(
        s2.set_state(&nul_business, Some("S")).await,
        Err(Error::InvalidKey(_))
    ));
    assert_eq!(s.get_record(&k).await.unwrap(), before);
    assert_eq!(s.key_count().await.unwrap(), 1);
}

/// Data nesting exactly [`MAX_DATA_DEPTH`] levels round-trips on every backend; one level
/// more is refused before anything is written.
pub async fn nesting_at_the_limit_round_trips_and_deeper_is_refused(ctx: Ctx) {
    let s = ctx.storage().await;
    let deepest = nested(MAX_DATA_DEPTH);
    s.set_data(&key(1), &deepest).await.unwrap();
    assert_eq!(s.get_data(&key(1)).await.unwrap(), deepest);
    let merged = s.update_data(&key(2), &deepest).await.unwrap();
    assert_eq!(merged, deepest);
    let before = s.get_record(&key(1)).await.unwrap();
    let too_deep = nested(MAX_DATA_DEPTH + 1);
    refused(
        &s,
        &key(1),
        &before,
        ErrorKind::InvalidInput,
        s.set_data(&key(1), &too_deep).await,
        "set_data",
    )
    .await;
    refused(
        &s,
        &key(1),
        &before,
        ErrorKind::InvalidInput,
        s.update_data(&key(1), &too_deep).await.map(drop),
        "update_data",
    )
    .await;
    refused(
        &s,
        &key(1),
        &before,
        ErrorKind::InvalidInput,
        s.transition(&key(1), None, &too_deep).await.map(drop),
        "transition",
    )
    .await;
}

/// Numbers at the edges come back with the same value (PostgreSQL may change how they are
/// written: `1e16` as `10000000000000000`, `-0.0` as `0.0`).
pub async fn numbers_round_trip_by_value(ctx: Ctx) {
    let s = ctx.storage().await;
    let numbers = obj(json!({
        "f64_max": f64::MAX,
        "f64_min": f64::MIN,
        "min_positive": f64::MIN_POSITIVE,
        "subnormal": 5e-324,
        "negative_zero": -0.0,
        "e16": 1e16,
        "tenth": 0.1,
        "e300": 1e300,
        "u64_max": u64::MAX,
        "i64_min": i64::MIN,
        "i64_max": i64::MAX,
        "above_2_53": 9_007_199_254_740_993_u64,
        "in_array": [1.5, -2, 1e-300],
    }));
    s.set_data(&key(1), &numbers).await.unwrap();
    let back = s.get_data(&key(1)).await.unwrap();
    assert!(same_data(&back, &numbers), "{back:?}");
    let merged = s
        .update_data(&key(1), &obj(json!({"more": 2.5e-8})))
        .await
        .unwrap();
    assert!(
        same_value(&merged["f64_max"], &json!(f64::MAX)),
        "{merged:?}"
    );
    assert!(
        same_value(&merged["u64_max"], &json!(u64::MAX)),
        "{merged:?}"
    );
    let record = s.get_record(&key(1)).await.unwrap();
    assert!(
        same_value(&record.data["i64_min"], &json!(i64::MIN)),
        "{record:?}"
    );
    assert_eq!(
        s.get_value(&key(1), "above_2_53")
            .await
            .unwrap()
            .and_then(|v| v.as_u64()),
        Some(9_007_199_254_740_993)
    );
}

/// Whether the case's table compares ids ignoring trailing spaces (the aiogram layout on a
/// backend with collated ids), where the backend refuses ids ending in a space.
fn pads_trailing_spaces(ctx: &Ctx) -> bool {
    ctx.layout() == fsmstore_core::Layout::AiogramSqlalchemy
        && ctx.backend().capabilities().collated_ids
}

/// Ids that differ only in trailing spaces or case are different rows on every backend.
/// The one exception is refused, never merged: MySQL's table in the aiogram layout compares
/// ids ignoring trailing spaces, so there an id ending in a space is an invalid key.
pub async fn ids_differing_in_trailing_space_or_case_are_distinct(ctx: Ctx) {
    let s = ctx
        .open(
            ctx.options()
                .key_builder(DefaultKeyBuilder::default().with_destiny(true)),
        )
        .await;
    let pad_space = pads_trailing_spaces(&ctx);
    if pad_space {
        for destiny in ["album ", "album  "] {
            let err = s
                .set_state(&key(1).for_destiny(destiny), Some("S"))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), fsmstore_core::ErrorKind::InvalidInput, "{err}");
        }
        assert_eq!(s.key_count().await.unwrap(), 0, "a refused key wrote");
    }
    let destinies: &[&str] = if pad_space {
        &["album", " album", "Album", "ALBUM", "albüm"]
    } else {
        &[
            "album", "album ", "album  ", " album", "Album", "ALBUM", "albüm",
        ]
    };
    for (i, destiny) in destinies.iter().enumerate() {
        let state = format!("S{i}");
        s.set_state(&key(1).for_destiny(*destiny), Some(&state))
            .await
            .unwrap();
    }
    for (i, destiny) in destinies.iter().enumerate() {
        assert_eq!(
            s.get_state(&key(1).for_destiny(*destiny)).await.unwrap(),
            Some(format!("S{i}")),
            "destiny {destiny:?}"
        );
    }
    assert_eq!(s.key_count().await.unwrap(), destinies.len() as u64);
    s.clear(&key(1).for_destiny(destinies[1])).await.unwrap();
    assert_eq!(
        s.get_state(&key(1).for_destiny("album"))
            .await
            .unwrap()
            .as_deref(),
        Some("S0")
    );
    assert_eq!(s.key_count().await.unwrap(), destinies.len() as u64 - 1);
}

/// One generated operation.
#[derive(Debug, Clone)]
enum Op {
    SetState(Option<String>),
    SetData(Data),
    Update(Data),
    Transition(Option<String>, Data),
    SetRecord(Option<String>, Data),
    Clear,
}

fn text() -> impl Strategy<Value = String> {
    // Any character, weighted towards the hostile ones.
    let hostile = prop_oneof![
        Just('\u{0}'),
        Just(' '),
        Just('\u{7f}'),
        Just('\u{FEFF}'),
        Just('\u{1F600}'),
        Just('\u{10FFFF}'),
        Just('"'),
        Just('\\'),
        Just('\''),
        Just('%'),
        Just('_'),
    ];
    prop::collection::vec(
        prop_oneof![3 => any::<char>(), 2 => hostile, 3 => prop::char::range('a', 'e')],
        0..12,
    )
    .prop_map(String::from_iter)
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        prop_oneof![
            Just(-0.0),
            Just(f64::MAX),
            Just(f64::MIN_POSITIVE),
            Just(1e16)
        ]
        .prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(40, 64, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..3)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

fn data() -> impl Strategy<Value = Data> {
    prop::collection::vec((text(), value()), 0..4).prop_map(|fields| fields.into_iter().collect())
}

fn state() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        4 => text().prop_map(Some),
        1 => prop::collection::vec(Just('s'), 250..260).prop_map(|s| Some(String::from_iter(s))),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        state().prop_map(Op::SetState),
        data().prop_map(Op::SetData),
        data().prop_map(Op::Update),
        (state(), data()).prop_map(|(s, d)| Op::Transition(s, d)),
        (state(), data()).prop_map(|(s, d)| Op::SetRecord(s, d)),
        Just(Op::Clear),
    ]
}

fn destiny() -> impl Strategy<Value = String> {
    prop_oneof![3 => Just("default".to_owned()), 2 => text()]
}

/// `count` generated operations (deterministic: the same sequence every run), made before
/// any `await` (proptest's strategies are not `Send`).
fn generate(count: usize) -> Vec<(i64, String, Op)> {
    let mut runner = TestRunner::new(Config {
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        ..Config::default()
    });
    let strategy = (0_i64..3, destiny(), op());
    (0..count)
        .map(|_| {
            strategy
                .new_tree(&mut runner)
                .expect("a generated case")
                .current()
        })
        .collect()
}

/// 160 generated operations on hostile keys, states and data, each applied to the backend
/// and to `MemoryStorage`: the same result (numbers by value) or the same error kind, and
/// afterwards the same record: nothing written on error.
pub async fn hostile_inputs_match_memory_storage(ctx: Ctx) {
    let builder = DefaultKeyBuilder::default().with_destiny(true);
    let options = ctx.options().key_builder(builder);
    let s = ctx.open(options.clone()).await;
    let reference = MemoryStorage::with_options(options);
    let pad_space = pads_trailing_spaces(&ctx);
    for (step, (n, destiny, op)) in generate(160).into_iter().enumerate() {
        let k = key(n).for_destiny(destiny);
        let context = format!("step {step}: {op:?} on {k:?}");
        if pad_space && s.options().row_id(&k).is_ok_and(|id| id.ends_with(' ')) {
            // Refused before anything is written (see `pads_trailing_spaces`).
            let err = s.get_record(&k).await.unwrap_err();
            assert_eq!(
                err.kind(),
                fsmstore_core::ErrorKind::InvalidInput,
                "{context}"
            );
            continue;
        }
        let (got, want) = match &op {
            Op::SetState(state) => (
                s.set_state(&k, state.as_deref()).await.map(|()| None),
                reference
                    .set_state(&k, state.as_deref())
                    .await
                    .map(|()| None),
            ),
            Op::SetData(data) => (
                s.set_data(&k, data).await.map(|()| None),
                reference.set_data(&k, data).await.map(|()| None),
            ),
            Op::Update(patch) => (
                s.update_data(&k, patch).await.map(Some),
                reference.update_data(&k, patch).await.map(Some),
            ),
            Op::Transition(state, patch) => (
                s.transition(&k, state.as_deref(), patch).await.map(Some),
                reference
                    .transition(&k, state.as_deref(), patch)
                    .await
                    .map(Some),
            ),
            Op::SetRecord(state, data) => (
                s.set_record(&k, state.as_deref(), data)
                    .await
                    .map(|()| None),
                reference
                    .set_record(&k, state.as_deref(), data)
                    .await
                    .map(|()| None),
            ),
            Op::Clear => {
                let (got, want) = (s.clear(&k).await, reference.clear(&k).await);
                if let (Ok(got), Ok(want)) = (&got, &want) {
                    assert_eq!(got, want, "{context}: whether clear found a row");
                }
                (got.map(|_| None), want.map(|_| None))
            }
        };
        match (&got, &want) {
            (Ok(Some(a)), Ok(Some(b))) => assert!(same_data(a, b), "{context}: {a:?} != {b:?}"),
            (Ok(_), Ok(_)) => {}
            (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind(), "{context}: {a:?} vs {b:?}"),
            _ => panic!("{context}: backend {got:?}, reference {want:?}"),
        }
        if let Ok(record) = reference.get_record(&k).await {
            let stored = s.get_record(&k).await.unwrap();
            assert!(
                same_record(&stored, &record),
                "{context}: stored {stored:?}, reference {record:?}"
            );
        }
    }
    assert_eq!(
        s.key_count().await.unwrap(),
        reference.key_count().await.unwrap()
    );
}
