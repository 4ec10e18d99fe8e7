//! The bot of `examples/teloxide_bot.rs` (teloxide's dialogue example: Start →
//! ReceiveFullName → ReceiveAge → ReceiveLocation, from `examples/dialogue_bot/mod.rs`)
//! run by a real `Dispatcher` against a mock Bot API, with `TeloxideStorage` on SQLite,
//! PostgreSQL, MariaDB and Redis. The dispatcher is stopped mid-dialogue; two new ones (two
//! bot instances, each with its own handle to the same database and its share of the
//! updates) carry every conversation on where it stopped. Then two instances race on
//! the same chats with `lock_chat`: no step is lost and each chat's replies come in order.
//! Each test runs once per database (`<test>::<database>`); a database whose server is not
//! there has its tests listed as ignored with the reason (a failure under `CI`), never as
//! passed.

mod common;

use std::process::ExitCode;
use std::sync::Arc;

use common::bot_api::{BotApi, Sent, TOKEN};
use common::Target;
use fsmstore_conformance::{block_on_threads, Suite};
use fsmstore_teloxide::{lock_chat, TeloxideStorage};
use teloxide::dispatching::dialogue::Storage;
use teloxide::dispatching::{HandlerExt, ShutdownToken, UpdateFilterExt, UpdateHandler};
use teloxide::dptree;
use teloxide::prelude::Dispatcher;
use teloxide::types::ChatId;
use teloxide::Bot;

/// The very bot of `examples/teloxide_bot.rs`.
#[path = "../../examples/dialogue_bot/mod.rs"]
mod dialogue_bot;

use dialogue_bot::State;

fn main() -> ExitCode {
    let servers = common::Servers::probe();
    let mut suite = Suite::new().one_at_a_time();
    common::each_target(
        &mut suite,
        &servers,
        "a_real_dispatcher_carries_dialogues_across_a_restart",
        "dispatch",
        |target| {
            block_on_threads(
                2,
                a_real_dispatcher_carries_dialogues_across_a_restart(target),
            )
        },
    );
    common::each_target(
        &mut suite,
        &servers,
        "two_instances_with_lock_chat_lose_no_step",
        "twoinst",
        |target| block_on_threads(2, two_instances_with_lock_chat_lose_no_step(target)),
    );
    suite.run()
}

/// Starts the example's dispatcher on `storage` against `api`.
fn start_bot(
    api: &BotApi,
    storage: Arc<TeloxideStorage>,
) -> (ShutdownToken, tokio::task::JoinHandle<()>) {
    start_instance(api, TOKEN, storage, dialogue_bot::schema())
}

/// Starts a dispatcher of `schema` with token `token` (its share of the mock's updates).
fn start_instance(
    api: &BotApi,
    token: &str,
    storage: Arc<TeloxideStorage>,
    schema: UpdateHandler<Box<dyn std::error::Error + Send + Sync>>,
) -> (ShutdownToken, tokio::task::JoinHandle<()>) {
    let bot = Bot::new(token).set_api_url(api.url.parse().expect("the mock's URL"));
    let mut dispatcher = Dispatcher::builder(bot, schema)
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

/// The second instance's token (the same bot: the same keys).
const SECOND: &str = "4242:SECOND";

/// Sends step `step` of every chat that has one, and waits for the replies; with
/// `instances`, a chat's steps go to them in turn.
async fn play_step(api: &BotApi, step: usize, replies_so_far: &mut usize, instances: &[&str]) {
    for (i, (chat, lines)) in SCRIPT.iter().enumerate() {
        if let Some((said, _)) = lines.get(step) {
            api.user_says_to(instances[(i + step) % instances.len()], *chat, said);
            *replies_so_far += 1;
        }
    }
    api.wait_for_replies(*replies_so_far).await;
}

async fn a_real_dispatcher_carries_dialogues_across_a_restart(target: Target) {
    let options = target.options("dispatch");
    let db = common::open(&target, options.clone()).await;
    let api = BotApi::start().await;
    let mut replies = 0;

    // First run: two messages of every chat, then the dispatcher stops.
    let (token, handle) = start_bot(&api, Arc::new(TeloxideStorage::from(&db)));
    play_step(&api, 0, &mut replies, &[TOKEN]).await;
    play_step(&api, 1, &mut replies, &[TOKEN]).await;
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

    // Second run: two instances, each with a handle of its own on the same database,
    // a chat's steps going to one and then the other.
    let db = common::reopen(&target, options.clone()).await;
    let other = common::reopen(&target, options).await;
    let storage = Arc::new(TeloxideStorage::from(&db));
    let (token, handle) = start_bot(&api, Arc::clone(&storage));
    let (token2, handle2) = start_instance(
        &api,
        SECOND,
        Arc::new(TeloxideStorage::from(&other)),
        dialogue_bot::schema(),
    );
    for step in 2..5 {
        play_step(&api, step, &mut replies, &[TOKEN, SECOND]).await;
    }
    stop_bot(token, handle).await;
    stop_bot(token2, handle2).await;
    other.close().await.unwrap();

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

/// A dialogue that counts the messages of its chat.
#[derive(Clone, Default, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum Tally {
    #[default]
    Start,
    Counted {
        n: u32,
    },
}

type TallyDialogue = teloxide::dispatching::dialogue::Dialogue<Tally, TeloxideStorage>;

/// Reads the count, takes a while (the window two instances race in), writes count + 1
/// and answers it.
async fn tally(
    bot: Bot,
    dialogue: TallyDialogue,
    state: Tally,
    msg: teloxide::types::Message,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use teloxide::prelude::Requester;
    let n = match state {
        Tally::Start => 1,
        Tally::Counted { n } => n + 1,
    };
    tokio::time::sleep(std::time::Duration::from_millis(15)).await;
    dialogue.update(Tally::Counted { n }).await?;
    bot.send_message(msg.chat.id, n.to_string()).await?;
    Ok(())
}

fn tally_schema(locked: bool) -> UpdateHandler<Box<dyn std::error::Error + Send + Sync>> {
    let messages = teloxide::types::Update::filter_message();
    let messages = if locked {
        messages.chain(lock_chat::<teloxide::types::Message, _>())
    } else {
        messages
    };
    messages
        .enter_dialogue::<teloxide::types::Message, TeloxideStorage, Tally>()
        .endpoint(tally)
}

/// Two instances of a bot on one database get the messages of the same chats at once
/// (each message to one of them, in turn), as webhooks behind a load balancer do. With
/// `lock_chat` every chat counts every message, and its replies are 1, 2, 3, … in order:
/// each handler read the step the one before wrote. (Without the lock both instances read
/// the same count and steps are lost; the test prints how many, for the record.)
async fn two_instances_with_lock_chat_lose_no_step(target: Target) {
    const CHATS: i64 = 8;
    const MESSAGES: usize = 6;
    for locked in [false, true] {
        let options = target.options(if locked { "twoinst_l" } else { "twoinst_u" });
        let db = common::open(&target, options.clone()).await;
        let other = common::reopen(&target, options).await;
        let api = BotApi::start().await;
        let (t1, h1) = start_instance(
            &api,
            TOKEN,
            Arc::new(TeloxideStorage::from(&db)),
            tally_schema(locked),
        );
        let (t2, h2) = start_instance(
            &api,
            SECOND,
            Arc::new(TeloxideStorage::from(&other)),
            tally_schema(locked),
        );
        for m in 0..MESSAGES {
            for chat in 1..=CHATS {
                let to = if (chat as usize + m) % 2 == 0 {
                    TOKEN
                } else {
                    SECOND
                };
                api.user_says_to(to, chat, &format!("message {m}"));
            }
        }
        let expected = CHATS as usize * MESSAGES;
        api.wait_for_replies(expected).await;
        stop_bot(t1, h1).await;
        stop_bot(t2, h2).await;
        let storage = Arc::new(TeloxideStorage::from(&db));
        let mut lost = 0;
        for chat in 1..=CHATS {
            let counted: Option<Tally> = Arc::clone(&storage)
                .get_dialogue(ChatId(chat))
                .await
                .unwrap();
            let n = match counted {
                Some(Tally::Counted { n }) => n as usize,
                _ => 0,
            };
            lost += MESSAGES - n;
            if locked {
                assert_eq!(n, MESSAGES, "{}: chat {chat} counted {n}", target.name);
                let replies: Vec<String> = api
                    .sent()
                    .into_iter()
                    .filter(|sent| sent.chat == chat)
                    .map(|sent| sent.text)
                    .collect();
                let want: Vec<String> = (1..=MESSAGES).map(|n| n.to_string()).collect();
                assert_eq!(replies, want, "{}: chat {chat}", target.name);
            }
        }
        eprintln!(
            "{}: {} of {expected} steps lost {} lock_chat",
            target.name,
            lost,
            if locked { "with" } else { "without" }
        );
        other.close().await.unwrap();
        common::drop_tables(db).await;
    }
}
