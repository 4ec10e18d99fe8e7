//! teloxide's dialogue example bot (`examples/dialogue.rs` of teloxide 0.17): its states,
//! handlers and handler tree, with the dialogues in [`TeloxideStorage`]. Shared by
//! `examples/teloxide_bot.rs` (the real Bot API) and `teloxide/tests/dispatcher.rs` (a real
//! dispatcher against a mock Bot API), which include this file: the including crate
//! brings `TeloxideStorage` and `lock_chat` into scope.
//!
//! One change to teloxide's example: `lock_chat` before `enter_dialogue`, so two instances
//! of the bot on one database never handle one chat at once (each would read the same
//! step and one answer would be lost).

use serde::{Deserialize, Serialize};
use teloxide::dispatching::dialogue::Dialogue;
use teloxide::dispatching::{HandlerExt, UpdateFilterExt, UpdateHandler};
use teloxide::dptree;
use teloxide::prelude::Requester;
use teloxide::types::{Message, Update};
use teloxide::Bot;

use super::{lock_chat, TeloxideStorage};

/// The dialogue: where a user is in the form.
#[derive(Clone, Default, Debug, PartialEq, Serialize, Deserialize)]
pub enum State {
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
type HandlerError = Box<dyn std::error::Error + Send + Sync>;
type HandlerResult = Result<(), HandlerError>;

/// The handler tree: `Dispatcher::builder(bot, schema())` with the storage as a dependency.
pub fn schema() -> UpdateHandler<HandlerError> {
    Update::filter_message()
        // The chat's lock, held until the handler returns (the storage must come from the
        // database: `TeloxideStorage::from(&db)`).
        .chain(lock_chat::<Message, _>())
        .enter_dialogue::<Message, TeloxideStorage, State>()
        .branch(dptree::case![State::Start].endpoint(start))
        .branch(dptree::case![State::ReceiveFullName].endpoint(receive_full_name))
        .branch(dptree::case![State::ReceiveAge { full_name }].endpoint(receive_age))
        .branch(dptree::case![State::ReceiveLocation { full_name, age }].endpoint(receive_location))
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
