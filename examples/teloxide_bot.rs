//! teloxide's dialogue example bot (`examples/dialogue.rs` of teloxide 0.17) with its
//! dialogues in fsmstore instead of `InMemStorage`: they survive restarts, and
//! `fsmstore inspect stats` counts them by state.
//!
//! ```text
//! TELOXIDE_TOKEN=123456:ABC… cargo run --example teloxide_bot --features teloxide-rustls
//! DATABASE_URL=postgres://user:pass@host/db TELOXIDE_TOKEN=… cargo run --example teloxide_bot --features teloxide-rustls,postgres
//! ```
//!
//! SQLite (`teloxide_bot.db`) by default; `DATABASE_URL` picks another database (the table
//! is created or upgraded on start, `schema=upgrade`). The real Bot API needs TLS: build with
//! `teloxide-rustls`. With only `teloxide` it builds, and reaches a local plain-HTTP Bot API
//! server named by `TELOXIDE_API_URL`.

use std::sync::Arc;

use fsmstore::teloxide::TeloxideStorage;
use serde::{Deserialize, Serialize};
use teloxide::dispatching::dialogue::Dialogue;
use teloxide::dispatching::{HandlerExt, UpdateFilterExt};
use teloxide::dptree;
use teloxide::prelude::{Dispatcher, Requester};
use teloxide::types::{Message, Update};
use teloxide::Bot;

#[derive(Clone, Default, Debug, Serialize, Deserialize)]
enum State {
    #[default]
    Start,
    ReceiveFullName,
    ReceiveAge {
        full_name: String,
    },
    ReceiveLocation {
        full_name: String,
        age: u8,
    },
}

type MyDialogue = Dialogue<State, TeloxideStorage>;
type HandlerResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let token = std::env::var("TELOXIDE_TOKEN").map_err(|_| "set TELOXIDE_TOKEN")?;
    // A local Bot API server (plain HTTP) instead of api.telegram.org, if set.
    let api_url = std::env::var("TELOXIDE_API_URL").ok();
    if api_url.is_none() && !cfg!(feature = "teloxide-rustls") {
        return Err("api.telegram.org needs TLS: build with --features teloxide-rustls (or set TELOXIDE_API_URL to a local plain-HTTP Bot API server)".into());
    }
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://teloxide_bot.db?schema=upgrade".to_owned());
    let db = fsmstore::open(&url).await?;
    // Keys like aiogram's FSMStrategy.CHAT with this bot's id: a Python aiogram bot on the
    // same table (with_bot_id=True) sees the same rows.
    let storage = Arc::new(TeloxideStorage::from(&db).bot_id_from_token(&token)?);

    let handler = Update::filter_message()
        .enter_dialogue::<Message, TeloxideStorage, State>()
        .branch(dptree::case![State::Start].endpoint(start))
        .branch(dptree::case![State::ReceiveFullName].endpoint(receive_full_name))
        .branch(dptree::case![State::ReceiveAge { full_name }].endpoint(receive_age))
        .branch(
            dptree::case![State::ReceiveLocation { full_name, age }].endpoint(receive_location),
        );
    let mut bot = Bot::new(token);
    if let Some(url) = api_url {
        bot = bot.set_api_url(url.parse()?);
    }
    Dispatcher::builder(bot, handler)
        .dependencies(dptree::deps![storage])
        .build()
        .dispatch()
        .await;
    db.close().await?;
    Ok(())
}

async fn start(bot: Bot, dialogue: MyDialogue, msg: Message) -> HandlerResult {
    bot.send_message(msg.chat.id, "Let's start! What's your full name?")
        .await?;
    dialogue.update(State::ReceiveFullName).await?;
    Ok(())
}

async fn receive_full_name(bot: Bot, dialogue: MyDialogue, msg: Message) -> HandlerResult {
    match msg.text() {
        Some(text) => {
            bot.send_message(msg.chat.id, "How old are you?").await?;
            dialogue
                .update(State::ReceiveAge {
                    full_name: text.into(),
                })
                .await?;
        }
        None => {
            bot.send_message(msg.chat.id, "Send me plain text.").await?;
        }
    }
    Ok(())
}

async fn receive_age(
    bot: Bot,
    dialogue: MyDialogue,
    full_name: String,
    msg: Message,
) -> HandlerResult {
    match msg.text().map(|text| text.parse::<u8>()) {
        Some(Ok(age)) => {
            bot.send_message(msg.chat.id, "What's your location?")
                .await?;
            dialogue
                .update(State::ReceiveLocation { full_name, age })
                .await?;
        }
        _ => {
            bot.send_message(msg.chat.id, "Send me a number.").await?;
        }
    }
    Ok(())
}

async fn receive_location(
    bot: Bot,
    dialogue: MyDialogue,
    (full_name, age): (String, u8),
    msg: Message,
) -> HandlerResult {
    match msg.text() {
        Some(location) => {
            let report = format!("Full name: {full_name}\nAge: {age}\nLocation: {location}");
            bot.send_message(msg.chat.id, report).await?;
            dialogue.exit().await?;
        }
        None => {
            bot.send_message(msg.chat.id, "Send me plain text.").await?;
        }
    }
    Ok(())
}
