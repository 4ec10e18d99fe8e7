//! The README's quick start, compiled and run by CI: `cargo run --example quick_start`.

use fsmstore::{serde_json::json, BotId, ChatId, StorageExt, StorageKey, UserId};
use fsmstore::{DefaultKeyBuilder, SchemaPolicy, StorageOptions};

#[tokio::main]
async fn main() -> fsmstore::Result<()> {
    // schema=upgrade: create or upgrade the table at start-up (idempotent, safe with
    // many instances). Without it, an outdated schema is an error naming the fix.
    let storage = fsmstore::connect("sqlite://bot.db?schema=upgrade").await?;

    let key = StorageKey::new(BotId(42), ChatId(-100), UserId(7)); // bot, chat, user
    storage.set_state(&key, Some("Form:name")).await?; // None clears
    storage
        .set_data(&key, &json!({"lang": "en"}).as_object().unwrap().clone())
        .await?;
    let data = storage // shallow merge, atomic
        .update_data(&key, &json!({"name": "Ann"}).as_object().unwrap().clone())
        .await?;
    assert_eq!(data["name"], "Ann");
    let record = storage.get_record(&key).await?; // state + data, one round trip
    let name: Option<String> = storage.get_value_as(&key, "name").await?;
    println!("{:?} {:?} {name:?}", record.state, record.data);
    storage.clear(&key).await?; // deletes the row
    storage.close().await?;

    // Another table and key layout, through the options.
    let options = StorageOptions::default()
        .table("dev_aiogram_fsm_data")? // per environment
        .key_builder(
            DefaultKeyBuilder::default()
                .with_bot_id(true)
                .with_destiny(true),
        )
        .schema(SchemaPolicy::Upgrade);
    let storage = fsmstore::open_with("sqlite://bot.db", options)
        .await?
        .storage();
    storage
        .set_state(&key.for_destiny("album"), Some("Album:photos"))
        .await?;
    println!(
        "{} keys in dev_aiogram_fsm_data",
        storage.key_count().await?
    );
    storage.close().await
}
