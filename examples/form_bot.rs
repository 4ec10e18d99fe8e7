//! A simulated form dialogue for three users, persisted in SQLite. No network: each run
//! delivers the next two messages of every user, so a second run continues where the
//! first stopped.
//!
//! ```text
//! cargo run --example form_bot            # uses ./form_bot.db
//! cargo run --example form_bot -- reset   # starts over
//! FORM_BOT_URL=postgres://… cargo run --example form_bot --features postgres
//! ```

use std::sync::Arc;

use fsmstore::serde_json::{json, Value};
use fsmstore::{BotId, ChatId, Data, Isolation, Storage, StorageKey, UserId};

const BOT_ID: i64 = 42;

/// The form: each state asks one question and stores the answer under a field.
const STEPS: [(&str, &str, &str); 3] = [
    ("Form:name", "name", "What is your name?"),
    ("Form:age", "age", "How old are you?"),
    ("Form:city", "city", "Where do you live?"),
];

/// Every user's messages, in order: `/start`, then the answers.
fn script(user: i64) -> Vec<&'static str> {
    match user {
        1 => vec!["/start", "Ann", "31", "Lisbon"],
        2 => vec!["/start", "Борис", "27", "Київ"],
        _ => vec!["/start", "李雷", "45", "東京"],
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("FORM_BOT_URL").unwrap_or_else(|_| "sqlite://form_bot.db".into());
    // `schema=upgrade`: create or upgrade the table at start-up (strategy 3 of the
    // migration guide); safe with many instances starting at once.
    let separator = if url.contains('?') { '&' } else { '?' };
    let db = fsmstore::open(&format!("{url}{separator}schema=upgrade")).await?;
    let storage = db.storage();
    // Per-key locks: on PostgreSQL and MySQL they hold across every bot instance on the
    // database; on SQLite, across the tasks of this process.
    let isolation = db.isolation();
    if std::env::args().nth(1).as_deref() == Some("reset") {
        for user in 1..=3 {
            storage.clear(&chat_key(user)).await?;
        }
        println!("cleared every dialogue");
        return Ok(());
    }
    // The three users' updates are handled at once, as a dispatcher would.
    let (one, two, three) = tokio::join!(
        run_user(&storage, &*isolation, 1),
        run_user(&storage, &*isolation, 2),
        run_user(&storage, &*isolation, 3),
    );
    one?;
    two?;
    three?;
    println!(
        "\n{} conversations stored in {url}",
        storage.key_count().await?
    );
    storage.close().await?;
    Ok(())
}

fn chat_key(user: i64) -> StorageKey {
    // A private chat: chat id = user id.
    StorageKey::new(BotId(BOT_ID), ChatId(user), UserId(user))
}

/// Delivers the next two messages of `user`, resuming from what the storage holds.
async fn run_user(
    storage: &Arc<dyn Storage>,
    isolation: &dyn Isolation,
    user: i64,
) -> fsmstore::Result<()> {
    let key = chat_key(user);
    // The key's lock around the whole handling, reads included: another update of this
    // chat (another instance, a parallel dispatcher) waits instead of interleaving its
    // reads and writes with these. Released when `_guard` goes, even on an error or a
    // panic.
    let _guard = isolation.lock(&key).await?;
    let record = storage.get_record(&key).await?;
    let delivered = record
        .data
        .get("_delivered")
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize;
    println!(
        "user {user}: resuming at state {:?} after {delivered} messages",
        record.state.as_deref().unwrap_or("<none>")
    );
    let messages = script(user);
    for (offset, text) in messages.iter().enumerate().skip(delivered).take(2) {
        let reply = handle(storage, &key, text).await?;
        storage
            .update_data(&key, &object(json!({ "_delivered": offset + 1 })))
            .await?;
        println!("  user {user} > {text}\n  bot      < {reply}");
    }
    if delivered >= messages.len() {
        let data = storage.get_data(&key).await?;
        println!("  finished form: {}", Value::Object(visible(data)));
    }
    Ok(())
}

/// The bot's handler: what a Telegram handler with an FSM context would do.
async fn handle(
    storage: &Arc<dyn Storage>,
    key: &StorageKey,
    text: &str,
) -> fsmstore::Result<String> {
    if text == "/start" {
        storage.set_state(key, Some(STEPS[0].0)).await?;
        return Ok(STEPS[0].2.to_owned());
    }
    let state = storage.get_state(key).await?;
    let Some(index) = STEPS
        .iter()
        .position(|(s, _, _)| Some(*s) == state.as_deref())
    else {
        return Ok("Send /start to fill in the form.".to_owned());
    };
    let (_, field, _) = STEPS[index];
    let data = storage
        .update_data(key, &object(json!({ field: text })))
        .await?;
    match STEPS.get(index + 1) {
        Some((next, _, question)) => {
            storage.set_state(key, Some(next)).await?;
            Ok(question.to_string())
        }
        None => {
            storage.set_state(key, None).await?;
            Ok(format!("Thanks! Saved {}", Value::Object(visible(data))))
        }
    }
}

fn object(value: Value) -> Data {
    value.as_object().cloned().unwrap_or_default()
}

fn visible(mut data: Data) -> Data {
    data.remove("_delivered");
    data
}
