//! Every serde shape a dialogue can take round-trips through the adapter on every backend:
//! unit, newtype, tuple and struct variants, nested enums, `Option`s, renamed variants, and
//! non-enum dialogues (a struct, a string, a number), with generated contents (proptest).
//! Each test runs once per backend (`<test>::<backend>`); a backend whose server is not
//! there has its tests listed as ignored with the reason (a failure under `CI`), never as
//! passed.

mod common;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use common::Target;
use fsmstore_conformance::Suite;
use fsmstore_teloxide::TeloxideStorage;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde::{Deserialize, Serialize};
use teloxide::dispatching::dialogue::Storage;
use teloxide::types::ChatId;

fn main() -> ExitCode {
    let servers = common::Servers::probe();
    let mut suite = Suite::new();
    common::each_target(
        &mut suite,
        &servers,
        "every_serde_shape_round_trips_on_every_backend",
        "shapes",
        every_serde_shape_round_trips_on_every_backend,
    );
    common::each_target(
        &mut suite,
        &servers,
        "a_zero_field_tuple_variant_reads_back",
        "empty_tuple",
        a_zero_field_tuple_variant_reads_back,
    );
    suite.run()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Inner {
    Idle,
    Waiting { since: i64 },
    Count(u32),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Form {
    name: String,
    tags: Vec<String>,
    score: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Shape {
    Unit,
    Newtype(i64),
    NewtypeString(String),
    NewtypeStruct(Form),
    Tuple(i32, String, bool),
    Struct {
        text: String,
        count: u64,
    },
    EmptyStruct {},
    EmptyTuple(),
    Nested(Inner),
    NestedStruct {
        inner: Inner,
        maybe: Option<Inner>,
    },
    Optional(Option<String>),
    #[serde(rename = "renamed:state")]
    Renamed {
        value: i8,
    },
    Map(BTreeMap<String, i64>),
}

/// A dialogue of any shape, enum or not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum AnyDialogue {
    Shape(Shape),
    Text(String),
    Number(i64),
    Form(Form),
}

fn text() -> impl Strategy<Value = String> {
    // Unicode of every plane, control characters (no NUL: refused by the input contract),
    // and lengths across the 255-character state limit.
    prop_oneof![
        "[a-zA-Z0-9 :._-]{0,12}",
        "\\PC{0,40}",
        "[\u{1}-\u{1f}]{1,4}",
        "x{250,260}",
    ]
}

fn inner() -> impl Strategy<Value = Inner> {
    prop_oneof![
        Just(Inner::Idle),
        any::<i64>().prop_map(|since| Inner::Waiting { since }),
        any::<u32>().prop_map(Inner::Count),
    ]
}

fn form() -> impl Strategy<Value = Form> {
    (
        text(),
        prop::collection::vec(text(), 0..3),
        prop::option::of(-1e300f64..1e300),
    )
        .prop_map(|(name, tags, score)| Form { name, tags, score })
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Unit),
        any::<i64>().prop_map(Shape::Newtype),
        text().prop_map(Shape::NewtypeString),
        form().prop_map(Shape::NewtypeStruct),
        (any::<i32>(), text(), any::<bool>()).prop_map(|(a, b, c)| Shape::Tuple(a, b, c)),
        (text(), any::<u64>()).prop_map(|(text, count)| Shape::Struct { text, count }),
        Just(Shape::EmptyStruct {}),
        Just(Shape::EmptyTuple()),
        inner().prop_map(Shape::Nested),
        (inner(), prop::option::of(inner()))
            .prop_map(|(inner, maybe)| Shape::NestedStruct { inner, maybe }),
        prop::option::of(text()).prop_map(Shape::Optional),
        any::<i8>().prop_map(|value| Shape::Renamed { value }),
        prop::collection::btree_map(text(), any::<i64>(), 0..3).prop_map(Shape::Map),
    ]
}

fn dialogue() -> impl Strategy<Value = AnyDialogue> {
    prop_oneof![
        4 => shape().prop_map(AnyDialogue::Shape),
        1 => text().prop_map(AnyDialogue::Text),
        1 => any::<i64>().prop_map(AnyDialogue::Number),
        1 => form().prop_map(AnyDialogue::Form),
    ]
}

/// Numbers may come back written differently (PostgreSQL's `jsonb`), so compare the JSON of
/// both by value.
fn same(a: &AnyDialogue, b: &AnyDialogue) -> bool {
    serde_json::to_value(a).unwrap() == serde_json::to_value(b).unwrap() || a == b
}

/// The mapping's own edge cases, written to every database (the generators rarely hit
/// them): the reserved `$value` and `$dialogue` as keys and strings, empty keys, empty
/// payloads, a 255- and a 256-character variant name.
fn edge_cases() -> Vec<serde_json::Value> {
    use serde_json::json;
    vec![
        json!("$dialogue"),
        json!("$value"),
        json!({"$value": 1}),
        json!({"$dialogue": {"a": 1}}),
        json!({"V": {"$value": {"$value": null}}}),
        json!({"V": {}}),
        json!({"": 1}),
        json!({}),
        json!(""),
        json!("x".repeat(255)),
        json!({ "y".repeat(256): [1] }),
        json!(null),
        json!([{"$value": 2}]),
    ]
}

fn every_serde_shape_round_trips_on_every_backend(target: Target) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let db = runtime.block_on(common::open(&target, target.options("shapes")));
    let storage = Arc::new(TeloxideStorage::from(&db));
    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&(dialogue(), -5i64..5), |(dialogue, chat)| {
        let chat = ChatId(chat);
        let back: Option<AnyDialogue> = runtime.block_on(async {
            Arc::clone(&storage)
                .update_dialogue(chat, dialogue.clone())
                .await
                .unwrap();
            Arc::clone(&storage).get_dialogue(chat).await.unwrap()
        });
        let back = back.expect("a stored dialogue");
        prop_assert!(same(&back, &dialogue), "wrote {dialogue:?}, read {back:?}");
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{}: {failure}", target.name);
    }
    for (chat, value) in edge_cases().into_iter().enumerate() {
        let chat = ChatId(100 + chat as i64);
        let back: Option<serde_json::Value> = runtime.block_on(async {
            Arc::clone(&storage)
                .update_dialogue(chat, value.clone())
                .await
                .unwrap();
            Arc::clone(&storage).get_dialogue(chat).await.unwrap()
        });
        assert_eq!(back.as_ref(), Some(&value), "{}: {chat:?}", target.name);
    }
    runtime.block_on(common::drop_tables(db));
}

/// A zero-field tuple variant (`{"EmptyTuple": []}`) reads back as itself on every backend:
/// `serde_json::from_value` reads the empty array as unit, so it was written and then
/// never read (`DataMismatch`).
fn a_zero_field_tuple_variant_reads_back(target: Target) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let db = runtime.block_on(common::open(&target, target.options("empty_tuple")));
    let storage = Arc::new(TeloxideStorage::from(&db));
    for (chat, shape) in [Shape::EmptyTuple(), Shape::EmptyStruct {}, Shape::Unit]
        .into_iter()
        .enumerate()
    {
        let chat = ChatId(chat as i64 + 1);
        let back: Option<Shape> = runtime.block_on(async {
            Arc::clone(&storage)
                .update_dialogue(chat, shape.clone())
                .await
                .unwrap();
            Arc::clone(&storage).get_dialogue(chat).await.unwrap()
        });
        assert_eq!(back, Some(shape), "{}", target.name);
    }
    runtime.block_on(common::drop_tables(db));
}
