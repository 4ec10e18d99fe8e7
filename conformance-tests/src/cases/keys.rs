//! Key semantics: which keys address the same row.

use fsmstore_core::{BotId, ChatId, DefaultKeyBuilder, Error, StorageKey, UserId};

use super::key;
use crate::Ctx;

/// Two users of one chat have separate states.
pub async fn users_in_one_chat_are_independent(ctx: Ctx) {
    let s = ctx.storage().await;
    let (a, b) = (
        StorageKey::new(BotId(42), ChatId(-100), UserId(1)),
        StorageKey::new(BotId(42), ChatId(-100), UserId(2)),
    );
    s.set_state(&a, Some("A")).await.unwrap();
    s.set_state(&b, Some("B")).await.unwrap();
    assert_eq!(s.get_state(&a).await.unwrap().as_deref(), Some("A"));
    assert_eq!(s.get_state(&b).await.unwrap().as_deref(), Some("B"));
    s.clear(&a).await.unwrap();
    assert_eq!(s.get_state(&b).await.unwrap().as_deref(), Some("B"));
}

/// Negative chat and user ids are keys of their own, distinct from the positive ones.
pub async fn negative_ids_are_distinct_keys(ctx: Ctx) {
    let s = ctx.storage().await;
    let keys = [
        StorageKey::new(BotId(42), ChatId(-100), UserId(7)),
        StorageKey::new(BotId(42), ChatId(100), UserId(7)),
        StorageKey::new(BotId(42), ChatId(-100), UserId(-7)),
        StorageKey::new(BotId(42), ChatId(i64::MIN), UserId(i64::MAX)),
    ];
    for (i, k) in keys.iter().enumerate() {
        s.set_state(k, Some(&format!("S{i}"))).await.unwrap();
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            s.get_state(k).await.unwrap(),
            Some(format!("S{i}")),
            "{k:?}"
        );
    }
    assert_eq!(s.key_count().await.unwrap(), 4);
}

/// A forum thread is its own key; thread 0 is the same as no thread (aiogram).
pub async fn threads_are_distinct_keys(ctx: Ctx) {
    let s = ctx.storage().await;
    let plain = StorageKey::new(BotId(42), ChatId(-100), UserId(7));
    s.set_state(&plain, Some("plain")).await.unwrap();
    s.set_state(&plain.clone().with_thread(9), Some("thread"))
        .await
        .unwrap();
    assert_eq!(s.get_state(&plain).await.unwrap().as_deref(), Some("plain"));
    assert_eq!(
        s.get_state(&plain.clone().with_thread(0))
            .await
            .unwrap()
            .as_deref(),
        Some("plain")
    );
    assert_eq!(
        s.get_state(&plain.with_thread(9)).await.unwrap().as_deref(),
        Some("thread")
    );
}

/// The default key builder leaves the bot id out (aiogram's default): two bots share a
/// row; `with_bot_id` separates them.
pub async fn bot_ids_share_rows_unless_asked(ctx: Ctx) {
    let shared = ctx.storage().await;
    shared
        .set_state(
            &StorageKey::new(BotId(1), ChatId(5), UserId(5)),
            Some("one"),
        )
        .await
        .unwrap();
    assert_eq!(
        shared
            .get_state(&StorageKey::new(BotId(2), ChatId(5), UserId(5)))
            .await
            .unwrap()
            .as_deref(),
        Some("one")
    );
    let separate = ctx
        .open(
            ctx.options()
                .key_builder(DefaultKeyBuilder::default().with_bot_id(true)),
        )
        .await;
    separate
        .set_state(
            &StorageKey::new(BotId(1), ChatId(5), UserId(5)),
            Some("bot1"),
        )
        .await
        .unwrap();
    assert_eq!(
        separate
            .get_state(&StorageKey::new(BotId(2), ChatId(5), UserId(5)))
            .await
            .unwrap(),
        None
    );
}

/// A non-default destiny without `with_destiny` is an error, not a silent collision; with
/// it, destinies are separate rows.
pub async fn non_default_destiny_needs_with_destiny(ctx: Ctx) {
    let s = ctx.storage().await;
    let album = key(3).for_destiny("album");
    let err = s.set_state(&album, Some("X")).await.unwrap_err();
    assert!(matches!(err, Error::InvalidKey(_)), "{err:?}");
    assert!(matches!(
        s.get_state(&album).await,
        Err(Error::InvalidKey(_))
    ));
    assert_eq!(s.key_count().await.unwrap(), 0, "nothing may be written");

    let d = ctx
        .open(
            ctx.options()
                .key_builder(DefaultKeyBuilder::default().with_destiny(true)),
        )
        .await;
    d.set_state(&album, Some("album")).await.unwrap();
    d.set_state(&key(3), Some("default")).await.unwrap();
    assert_eq!(d.get_state(&album).await.unwrap().as_deref(), Some("album"));
    assert_eq!(
        d.get_state(&key(3)).await.unwrap().as_deref(),
        Some("default")
    );
}
