//! The bot of `examples/teloxide_bot.rs` (teloxide's dialogue example: Start →
//! ReceiveFullName → ReceiveAge → ReceiveLocation, from `examples/dialogue_bot/mod.rs`)
//! run by a real `Dispatcher` against a mock Bot API, with `TeloxideStorage` on SQLite,
//! PostgreSQL and MariaDB. The dispatcher is stopped mid-dialogue; a new one, on a new
//! handle to the same database, carries every conversation on where it stopped.

mod common;

use std::sync::Arc;

use common::bot_api::{BotApi, Sent};
use fsmstore_teloxide::TeloxideStorage;
use teloxide::dispatching::dialogue::Storage;
use teloxide::dispatching::ShutdownToken;
use teloxide::dptree;
use teloxide::prelude::Dispatcher;
use teloxide::types::ChatId;
use teloxide::Bot;

/// The very bot of `examples/teloxide_bot.rs`.
#[path = "../../examples/dialogue_bot/mod.rs"]
mod dialogue_bot;

use dialogue_bot::State;

/// Starts the example's dispatcher on `storage` against `api`.
fn start_bot(
    api: &BotApi,
    storage: Arc<TeloxideStorage>,
) -> (ShutdownToken, tokio::task::JoinHandle<()>) {
    let bot = Bot::new("4242:TEST").set_api_url(api.url.parse().expect("the mock's URL"));
    let mut dispatcher = Dispatcher::builder(bot, dialogue_bot::schema())
        .dependencies(dptree::deps![storage])
        .build();
    let token = dispatcher.shutdown_token();
    let handle = tokio::spawn(async move { dispatcher.dispatch().await });
    (token, handle)
}

/// Stops a dispatcher gracefully (its last `getUpdates` confirms what it handled).
async fn stop_bot(token: ShutdownToken, handle: tokio::task::JoinHandle<()>) {
    // `shutdown` fails while the dispatcher is still starting: try until it is running.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(stopping) = token.shutdown() {
            stopping.await;
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dispatcher never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    handle.await.expect("the dispatcher task");
}

/// What each chat says, in order, and what the bot must answer to each message.
const SCRIPT: &[(i64, &[(&str, &str)])] = &[
    (
        101,
        &[
            ("/start", "Let's start! What's your full name?"),
            ("Ann Lee", "How old are you?"),
            ("abc", "Send me a number."),
            ("33", "What's your location?"),
            ("Paris", "Full name: Ann Lee\nAge: 33\nLocation: Paris"),
        ],
    ),
    (
        102,
        &[
            ("hi", "Let's start! What's your full name?"),
            ("Bo", "How old are you?"),
            ("41", "What's your location?"),
            ("Oslo", "Full name: Bo\nAge: 41\nLocation: Oslo"),
        ],
    ),
    (
        103,
        &[
            ("hello", "Let's start! What's your full name?"),
            ("Cy", "How old are you?"),
            ("29", "What's your location?"),
        ],
    ),
    (104, &[("hey", "Let's start! What's your full name?")]),
];

/// Sends step `step` of every chat that has one, and waits for the replies.
async fn play_step(api: &BotApi, step: usize, replies_so_far: &mut usize) {
    for (chat, lines) in SCRIPT {
        if let Some((said, _)) = lines.get(step) {
            api.user_says(*chat, said);
            *replies_so_far += 1;
        }
    }
    api.wait_for_replies(*replies_so_far).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_dispatcher_carries_dialogues_across_a_restart() {
    for target in common::targets("dispatch") {
        let options = target.options("dispatch");
        let Some(db) = common::open(&target, options.clone()).await else {
            continue;
        };
        let api = BotApi::start().await;
        let mut replies = 0;

        // First run: two messages of every chat, then the dispatcher stops.
        let (token, handle) = start_bot(&api, Arc::new(TeloxideStorage::from(&db)));
        play_step(&api, 0, &mut replies).await;
        play_step(&api, 1, &mut replies).await;
        stop_bot(token, handle).await;
        let stats = db.inspect().stats().await.unwrap();
        assert_eq!(
            stats.per_state,
            vec![
                (Some("ReceiveAge".to_owned()), 3),
                (Some("ReceiveFullName".to_owned()), 1)
            ],
            "{}: the states after the first run",
            target.name
        );
        db.close().await.unwrap();

        // Second run: a new handle on the same database, a new dispatcher.
        let db = common::reopen(&target, options).await;
        let storage = Arc::new(TeloxideStorage::from(&db));
        let (token, handle) = start_bot(&api, Arc::clone(&storage));
        for step in 2..5 {
            play_step(&api, step, &mut replies).await;
        }
        stop_bot(token, handle).await;

        // Every reply, per chat, in order, and no other.
        let sent = api.sent();
        assert_eq!(sent.len(), replies, "{}: {sent:#?}", target.name);
        for (chat, lines) in SCRIPT {
            let got: Vec<&str> = sent
                .iter()
                .filter(|Sent { chat: to, .. }| to == chat)
                .map(|sent| sent.text.as_str())
                .collect();
            let want: Vec<&str> = lines.iter().map(|(_, reply)| *reply).collect();
            assert_eq!(got, want, "{}: chat {chat}", target.name);
        }
        // Finished dialogues are gone; the others wait where they stopped.
        let get = |chat| {
            <TeloxideStorage as Storage<State>>::get_dialogue(Arc::clone(&storage), ChatId(chat))
        };
        assert_eq!(get(101).await.unwrap(), None);
        assert_eq!(get(102).await.unwrap(), None);
        assert_eq!(
            get(103).await.unwrap(),
            Some(State::ReceiveLocation {
                full_name: "Cy".into(),
                age: 29
            })
        );
        assert_eq!(get(104).await.unwrap(), Some(State::ReceiveFullName));
        assert_eq!(db.inspect().stats().await.unwrap().rows, 2);
        assert!(api.calls().iter().any(|call| call == "getme"));
        common::drop_tables(db).await;
    }
}
