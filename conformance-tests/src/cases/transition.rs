//! `transition`: a new state and a data patch in one atomic write.

use std::sync::Arc;

use fsmstore_core::{Data, Storage};
use serde_json::json;

use super::{key, obj};
use crate::Ctx;

/// On an absent key, a transition creates the row with the state and the patch.
pub async fn transition_on_absent_key_creates(ctx: Ctx) {
    let s = ctx.storage().await;
    let data = s
        .transition(&key(1), Some("Form:age"), &obj(json!({"name": "Ann"})))
        .await
        .unwrap();
    assert_eq!(data, obj(json!({"name": "Ann"})));
    let record = s.get_record(&key(1)).await.unwrap();
    assert_eq!(record.state.as_deref(), Some("Form:age"));
    assert_eq!(record.data, data);
}

/// The state is replaced and the patch merged shallowly into the data already there.
pub async fn transition_sets_state_and_merges(ctx: Ctx) {
    let s = ctx.storage().await;
    s.set_state(&key(1), Some("Form:name")).await.unwrap();
    s.set_data(&key(1), &obj(json!({"lang": "en", "n": {"x": 1}})))
        .await
        .unwrap();
    let data = s
        .transition(
            &key(1),
            Some("Form:age"),
            &obj(json!({"name": "Ann", "n": {"y": 2}, "z": null})),
        )
        .await
        .unwrap();
    let expected = obj(json!({"lang": "en", "n": {"y": 2}, "name": "Ann", "z": null}));
    assert_eq!(data, expected);
    let record = s.get_record(&key(1)).await.unwrap();
    assert_eq!(record.state.as_deref(), Some("Form:age"));
    assert_eq!(record.data, expected);
}

/// `None` clears the state and keeps the merged data; with no data left the row goes.
pub async fn transition_to_no_state(ctx: Ctx) {
    let s = ctx.storage().await;
    s.set_state(&key(1), Some("Form:age")).await.unwrap();
    let data = s
        .transition(&key(1), None, &obj(json!({"age": 30})))
        .await
        .unwrap();
    assert_eq!(data, obj(json!({"age": 30})));
    assert_eq!(s.get_state(&key(1)).await.unwrap(), None);
    assert_eq!(s.key_count().await.unwrap(), 1);
    // A finished dialogue with nothing collected leaves no row.
    s.set_state(&key(2), Some("Form:name")).await.unwrap();
    let data = s.transition(&key(2), None, &Data::new()).await.unwrap();
    assert!(data.is_empty());
    assert_eq!(s.get_record(&key(2)).await.unwrap(), Default::default());
    assert_eq!(s.key_count().await.unwrap(), 1);
    // The same on a key that never existed writes nothing.
    assert!(s
        .transition(&key(3), None, &Data::new())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.key_count().await.unwrap(), 1);
}

/// An empty patch only moves the state and returns the data as it is.
pub async fn transition_with_empty_patch_moves_the_state(ctx: Ctx) {
    let s = ctx.storage().await;
    s.set_data(&key(1), &obj(json!({"a": 1}))).await.unwrap();
    let data = s
        .transition(&key(1), Some("Form:done"), &Data::new())
        .await
        .unwrap();
    assert_eq!(data, obj(json!({"a": 1})));
    assert_eq!(
        s.get_state(&key(1)).await.unwrap().as_deref(),
        Some("Form:done")
    );
}

/// A bad state or an oversized patch is refused and writes nothing.
pub async fn invalid_transition_writes_nothing(ctx: Ctx) {
    let s = ctx.open(ctx.options().max_data_bytes(64)).await;
    s.set_state(&key(1), Some("Form:name")).await.unwrap();
    s.set_data(&key(1), &obj(json!({"a": 1}))).await.unwrap();
    let long = "s".repeat(300);
    assert!(s
        .transition(&key(1), Some(&long), &obj(json!({"b": 2})))
        .await
        .is_err());
    assert!(s
        .transition(&key(1), Some(""), &obj(json!({"b": 2})))
        .await
        .is_err());
    let big = obj(json!({"big": "x".repeat(100)}));
    assert!(s.transition(&key(1), Some("Form:age"), &big).await.is_err());
    let record = s.get_record(&key(1)).await.unwrap();
    assert_eq!(record.state.as_deref(), Some("Form:name"));
    assert_eq!(record.data, obj(json!({"a": 1})));
}

/// 32 concurrent transitions of one key, each adding its own field: every field survives
/// and the state is one of the states written.
pub async fn concurrent_transitions_lose_nothing(ctx: Ctx) {
    const WRITERS: usize = 32;
    let s = ctx.storage().await;
    s.set_data(&key(1), &obj(json!({"base": true})))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|i| {
            let s: Arc<dyn Storage> = Arc::clone(&s);
            tokio::spawn(async move {
                let state = format!("Step:{i}");
                s.transition(&key(1), Some(&state), &obj(json!({ format!("f{i}"): i })))
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task panicked").unwrap();
    }
    let record = s.get_record(&key(1)).await.unwrap();
    let lost: Vec<_> = (0..WRITERS)
        .filter(|i| record.data.get(&format!("f{i}")) != Some(&json!(i)))
        .collect();
    assert!(lost.is_empty(), "lost fields {lost:?}");
    assert_eq!(record.data.get("base"), Some(&json!(true)));
    let state = record.state.expect("a state");
    assert!(state.starts_with("Step:"), "{state}");
}

fsmstore_core::states! {
    enum Form in "Form" {
        Name => "name",
        Age => "age",
    }
}

/// A typed form walked through [`Dialogue`](fsmstore_core::Dialogue) on the backend:
/// typed states round-trip, `None` fields of a typed patch do not overwrite stored ones,
/// an unknown stored state is its own error.
pub async fn dialogue_walks_a_typed_form(ctx: Ctx) {
    #[derive(serde::Serialize, serde::Deserialize, Default, Debug, PartialEq)]
    struct Answers {
        name: Option<String>,
        age: Option<u32>,
    }
    let s = ctx.storage().await;
    let dialogue = fsmstore_core::Dialogue::new(Arc::clone(&s), key(1));
    dialogue.set_state(Form::Name).await.unwrap();
    let answers = Answers {
        name: Some("Ann".into()),
        ..Default::default()
    };
    dialogue.transition(Form::Age, &answers).await.unwrap();
    let answers = Answers {
        age: Some(30),
        ..Default::default()
    };
    dialogue.update(&answers).await.unwrap();
    assert_eq!(dialogue.state_as::<Form>().await.unwrap(), Some(Form::Age));
    assert_eq!(
        dialogue.data_as::<Answers>().await.unwrap(),
        Answers {
            name: Some("Ann".into()),
            age: Some(30)
        }
    );
    s.set_state(&key(1), Some("Form:nmae")).await.unwrap();
    assert!(matches!(
        dialogue.state_as::<Form>().await,
        Err(fsmstore_core::Error::UnknownState { .. })
    ));
    dialogue.finish().await.unwrap();
    assert_eq!(s.key_count().await.unwrap(), 0);
}
