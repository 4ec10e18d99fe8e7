//! The README's quick start, compiled and run by CI: `cargo run --example quick_start`.

use fsmstore::{data, BotId, ChatId, SchemaPolicy, StorageKey, StorageOptions, UserId};

fsmstore::states! {
    /// The questions of a sign-up form, stored as "Form:name", "Form:age".
    enum Form in "Form" {
        Name => "name",
        Age => "age",
    }
}

/// The answers: `None` fields are left out of a typed patch, never written as null.
#[derive(serde::Serialize, serde::Deserialize, Default, Debug)]
struct Answers {
    name: Option<String>,
    age: Option<u32>,
}

#[tokio::main]
async fn main() -> fsmstore::Result<()> {
    // One handle per database. schema=upgrade: create or upgrade the table at start-up
    // (idempotent, safe with many instances). Without it, an outdated schema is an error
    // naming the command that fixes it.
    let db = fsmstore::open("sqlite://bot.db?schema=upgrade").await?;
    let key = StorageKey::new(BotId(42), ChatId(-100), UserId(7));

    // A handler's view: one conversation.
    let dialogue = db.dialogue(key.clone());
    dialogue.set_state(Form::Name).await?;
    let answers = Answers {
        name: Some("Ann".into()),
        ..Default::default()
    };
    dialogue.transition(Form::Age, &answers).await?; // answer + next question, atomic
    let state: Option<Form> = dialogue.state_as().await?;
    let answers: Answers = dialogue.data_as().await?;
    println!("{state:?} {answers:?}");

    // The plain calls, on the same database.
    let storage = db.storage();
    let merged = storage.update_data(&key, &data!({"lang": "en"})).await?; // shallow merge, atomic
    assert_eq!(merged["name"], "Ann");
    let record = storage.get_record(&key).await?; // state + data, one round trip
    println!("{:?} {:?}", record.state, record.data);
    dialogue.finish().await?; // deletes the row

    // Operators' views on the same pool.
    println!("rows: {}", db.inspect().stats().await?.rows);
    println!("schema version: {}", db.migrator()?.current().await?);
    db.close().await?;

    // Another table and key layout, through the shared options.
    let options = StorageOptions::default()
        .table("dev_aiogram_fsm_data")? // per environment
        .key_builder(
            fsmstore::DefaultKeyBuilder::default()
                .with_bot_id(true)
                .with_destiny(true),
        )
        .schema(SchemaPolicy::Upgrade);
    let db = fsmstore::open_with("sqlite://bot.db", options).await?;
    db.storage()
        .set_state(&key.for_destiny("album"), Some("Album:photos"))
        .await?;
    println!(
        "{} keys in dev_aiogram_fsm_data",
        db.storage().key_count().await?
    );
    db.close().await
}
